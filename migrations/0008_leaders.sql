-- The leaderboard without an index write per turn, and purges that do not scan.
--
-- The leaderboard without an index write per turn. D1 bills every row an index writes, and
-- `user_stats_points` wrote one each time a player's total moved: a row per player a batch.
-- Instead each database keeps its top players in `leaders`, which the consumer's batch
-- touches only for players in it or entering it (core/src/sql/leaders.rs says how it stays
-- exact with negative deltas). Cheap on a database of any size: it reads the top through
-- the old index once, then drops the index.

-- The top players of this database among the buckets the map gives it: at least the top
-- 100 (the leaderboard's largest page) whose totals are above `leaders_floor.floor`.
CREATE TABLE leaders (
  user_id TEXT PRIMARY KEY NOT NULL,
  total_points INTEGER NOT NULL
) WITHOUT ROWID;

-- No player missing from `leaders` ranks above (`floor_points`, `floor_user`) in the
-- leaderboard's order (points down, then user id up). NULL: every player of the database is
-- in `leaders`. `refill` marks a refill: set within the one batch that refills `leaders`, or
-- outside a batch to ask the next batch to rebuild it.
CREATE TABLE leaders_floor (
  id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
  floor_points INTEGER,
  floor_user TEXT,
  refill INTEGER NOT NULL DEFAULT 0 CHECK (refill IN (0, 1))
);

INSERT INTO leaders (user_id, total_points)
SELECT user_id, total_points FROM user_stats
WHERE NOT EXISTS (SELECT 1 FROM bucket_fences AS f
                  WHERE f.bucket = substr(user_stats.user_id, 1, 2) AND f.reason = 'moved')
ORDER BY total_points DESC, user_id LIMIT 200;

-- `refill = 1`: the first batch of the Workers that keep the table rebuilds it, so that
-- totals written meanwhile by Workers that do not keep it never linger.
INSERT INTO leaders_floor (id, floor_points, floor_user, refill)
SELECT 1, n.total_points, n.user_id, 1
FROM (SELECT 1) LEFT JOIN (
  SELECT total_points, user_id FROM user_stats
  WHERE NOT EXISTS (SELECT 1 FROM bucket_fences AS f
                    WHERE f.bucket = substr(user_stats.user_id, 1, 2) AND f.reason = 'moved')
  ORDER BY total_points DESC, user_id LIMIT 1 OFFSET 200
) AS n;

DROP INDEX user_stats_points;

-- A move's purge deletes `chat_messages` rows, and the foreign key from
-- `point_events.message_id` made SQLite scan every point event for each one (5 s for 100
-- messages on a 1 GB database, while the database answers nobody else). This index makes
-- each check a lookup; it costs a row a turn on a database at schema 1, whose buckets move
-- away to reach schema 2, where that foreign key is gone (0009). A second or so per GB to
-- build.
CREATE INDEX point_events_message ON point_events (message_id);
