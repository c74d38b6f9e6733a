-- Moves that keep every promise, whatever a Worker's copy of the bucket map says.
--
-- Every database refuses the writes of a bucket it has given away or is giving away: the
-- hold step fences the bucket in its database before the copy, the fence stays there after
-- the flip, and only a flip back to that database lifts it. The consumer's batch and the
-- session start read the fence inside their own transaction, so a write routed by a stale
-- map (an isolate's cache, or the last map seen before the control database went down)
-- can never land where the bucket no longer lives: it waits in the queue instead.
CREATE TABLE bucket_fences (
  bucket TEXT PRIMARY KEY NOT NULL CHECK (length(bucket) = 2),  -- substr(user_id, 1, 2)
  reason TEXT NOT NULL CHECK (reason IN ('moving', 'moved')),
  fenced_at INTEGER NOT NULL
);

-- The steps of a move, in the control database: when the bucket was held (the copy waits a
-- map cache's lifetime after it), where a copy was started (until it is flipped to or
-- purged), and when it was flipped (the purge waits a map cache's lifetime after it).
ALTER TABLE shard_buckets ADD COLUMN held_at INTEGER;
ALTER TABLE shard_buckets ADD COLUMN copy_to TEXT;
ALTER TABLE shard_buckets ADD COLUMN flipped_at INTEGER;

-- What the consumer reported it can reach, in answer to a probe on the turn queue: a move
-- refuses a target the consumer has no binding for, or that lacks the newest migration there.
CREATE TABLE consumer_databases (
  binding TEXT PRIMARY KEY NOT NULL CHECK (binding GLOB 'DB_[0-9]*'),
  migration TEXT,                     -- the newest migration the consumer saw applied
  reported_at INTEGER NOT NULL
);
