-- Schema 2: the tables a turn writes, without rowid and keyed by their ids. A rowid table
-- writes its row and its primary key's index; a table without rowid is stored in its key,
-- so each message, point event and stats update writes one row fewer (D1 bills each). And
-- `point_events.message_id` is no longer a foreign key (below), so deleting a message
-- needs no index on it.
--
-- This rebuilds the tables, so it runs only on a database that holds none of their rows: a
-- database created now, or one whose buckets were all moved away and purged. Anywhere else
-- it fails on the guard below and changes nothing. A database holding turns reaches schema 2
-- by moving its buckets to a database at schema 2 (docs/operations.md, "Schema 2"): the
-- move's copy names its columns, which are the same, so the rows convert as they land.

CREATE TABLE schema_two_guard (
  player_rows INTEGER NOT NULL,
  CONSTRAINT holds_player_rows_move_its_buckets_to_a_database_at_schema_2_instead CHECK (player_rows = 0)
);
INSERT INTO schema_two_guard (player_rows)
SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM chat_messages LIMIT 1))
     + (SELECT COUNT(*) FROM (SELECT 1 FROM point_events LIMIT 1))
     + (SELECT COUNT(*) FROM (SELECT 1 FROM user_stats LIMIT 1))
     + (SELECT COUNT(*) FROM (SELECT 1 FROM leaders LIMIT 1));
DROP TABLE schema_two_guard;

DROP TABLE point_events;
DROP TABLE chat_messages;
DROP TABLE user_stats;

CREATE TABLE chat_messages (
  id TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL REFERENCES users (id),
  session_id TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('user', 'agent', 'system')),
  content TEXT NOT NULL,
  score_raw INTEGER,
  score_adjusted INTEGER,
  emotion TEXT,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX chat_messages_user_session_created ON chat_messages (user_id, session_id, created_at);

CREATE TABLE point_events (
  id TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL REFERENCES users (id),
  session_id TEXT NOT NULL,
  -- The turn it came from; NULL for manual grants. Not a foreign key any more: each deleted
  -- message (a purge, an archive) would have had to look for it here, which needs an index
  -- written with every turn. The consumer writes a turn's message and event together.
  message_id TEXT,
  delta INTEGER NOT NULL,
  reason TEXT NOT NULL,
  metadata_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata_json)),
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX point_events_user_created ON point_events (user_id, created_at);

-- A snapshot for fast reads; the ledger is point_events.
CREATE TABLE user_stats (
  user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
  total_points INTEGER NOT NULL DEFAULT 0,
  intimacy_level INTEGER NOT NULL DEFAULT 0,
  last_message_at INTEGER,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
