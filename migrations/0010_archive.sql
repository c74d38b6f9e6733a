-- The archive (docs/design.md, "The archive"): turns older than HOT_DAYS move out of D1 into
-- R2 (ARCHIVE), one object per session per archive run, and a session's row follows its
-- last turn. D1 keeps one row per player that has anything archived: what the archive holds
-- of them, so that their ledger balances across the tiers and a turn delivered again after
-- it was archived is looked for there. Nothing in D1 grows with archived history.
--
-- A player's balance is `archive_players.points` plus `SUM(delta)` of their point events
-- still in D1. A turn whose time falls in `first_at`..`last_at` and that D1 does not hold
-- may be archived: the consumer looks in the player's objects before it writes it.
--
-- IF NOT EXISTS: a database still at schema 1 (0008, holding turns until its buckets move)
-- takes this file with `wrangler d1 execute --file` (docs/operations.md, "The archive"),
-- and takes it again, unchanged, as a migration once it reaches schema 2.

CREATE TABLE IF NOT EXISTS archive_players (
  user_id TEXT PRIMARY KEY NOT NULL,
  objects INTEGER NOT NULL,        -- objects committed (a counter: the consumer's check)
  sessions INTEGER NOT NULL,       -- chat_sessions rows archived
  turns INTEGER NOT NULL,
  messages INTEGER NOT NULL,
  point_events INTEGER NOT NULL,
  points INTEGER NOT NULL,         -- SUM(delta) of the archived point events
  bytes INTEGER NOT NULL,          -- compressed bytes of the objects
  first_at INTEGER NOT NULL,       -- the oldest and newest created_at archived
  last_at INTEGER NOT NULL,
  archived_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Scratch for an archive commit's batch: a row is written when the commit's guard passes,
-- read by the batch's other statements, and deleted at its end, so the table is empty
-- between batches.
CREATE TABLE IF NOT EXISTS archive_commits (
  key TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;
