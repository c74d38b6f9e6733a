-- Sharding over several D1 databases (see core/src/shards.rs). Every database gets the same
-- schema; the player tables hold the buckets the map gives that database, and the control
-- database (DB_0) also holds the dead letters, the replay runs and the map's overrides.

-- The leaderboard reads the top totals of each database, ties broken by user id.
CREATE INDEX user_stats_points ON user_stats (total_points DESC, user_id);

-- The live part of the bucket map: a bucket moved to another database, or held (moving = 1)
-- while its rows are copied. A bucket without a row is where SHARD_MAP puts it.
CREATE TABLE shard_buckets (
  bucket INTEGER PRIMARY KEY NOT NULL CHECK (bucket BETWEEN 0 AND 255),
  binding TEXT NOT NULL CHECK (binding GLOB 'DB_[0-9]*'),
  moving INTEGER NOT NULL DEFAULT 0 CHECK (moving IN (0, 1)),
  moved_from TEXT,                    -- the database the last move copied from, until purged
  updated_at INTEGER NOT NULL
);
