-- The archive's index: one row per object in R2 (ARCHIVE), each holding some of one session's
-- oldest turns, moved there by the archiver (docs/design.md, "The archive"). The object is
-- the record; this row says it is committed: an object no row names was never committed
-- (a run stopped before its commit, or lost a race) and nothing reads it.
--
-- A player's ledger balance is `SUM(points)` of their rows here plus `SUM(delta)` of their
-- point events still in D1. A turn redelivered after its turn was archived is found through
-- these rows' time ranges (`first_at`..`last_at` of a session): the consumer looks for it in
-- the objects they name before it writes.
--
-- IF NOT EXISTS: a database still at schema 1 (0008, holding turns until its buckets move)
-- takes this file with `wrangler d1 execute --file` (docs/operations.md, "The archive"),
-- and takes it again, unchanged, as a migration once it reaches schema 2.

CREATE TABLE IF NOT EXISTS archive_parts (
  key TEXT PRIMARY KEY NOT NULL,         -- the R2 object: <user_id>/<session_id>/<first_at>-<hash>.jsonl.gz
  user_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  first_at INTEGER NOT NULL,             -- the oldest and newest created_at of its rows
  last_at INTEGER NOT NULL,
  turns INTEGER NOT NULL,
  messages INTEGER NOT NULL,
  point_events INTEGER NOT NULL,
  points INTEGER NOT NULL,               -- SUM(delta) of its point events
  bytes INTEGER NOT NULL,                -- the object's size (compressed)
  archived_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS archive_parts_session ON archive_parts (session_id, first_at);
CREATE INDEX IF NOT EXISTS archive_parts_user ON archive_parts (user_id);
