-- The dead-letter archive: every turn the consumer could not store, with why, and every
-- replay run operators made. Filled by the consumer from the dead-letter queue.

CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY NOT NULL,       -- the failed queue message's id: a letter delivered twice is stored once
  turn_id TEXT,                       -- the turn the payload names, when it names one
  payload TEXT NOT NULL,              -- the original message body, verbatim
  error_class TEXT NOT NULL CHECK (error_class IN
    ('undecodable', 'unknown_version', 'invalid', 'conflict', 'transient', 'retries_exhausted')),
  error_text TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  last_failed_at INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed', 'discarded')),
  replay_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX dead_letters_status_failed ON dead_letters (status, last_failed_at, id);
CREATE INDEX dead_letters_class_failed ON dead_letters (error_class, last_failed_at);
CREATE INDEX dead_letters_turn ON dead_letters (turn_id);

CREATE TABLE replay_runs (
  id TEXT PRIMARY KEY NOT NULL,       -- chosen by the caller, so one CLI run spanning many calls is one row
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  dry_run INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
  filter_json TEXT NOT NULL CHECK (json_valid(filter_json)),
  letters INTEGER NOT NULL DEFAULT 0,
  requeued INTEGER NOT NULL DEFAULT 0,
  would_apply INTEGER NOT NULL DEFAULT 0,
  already_applied INTEGER NOT NULL DEFAULT 0,
  conflicts INTEGER NOT NULL DEFAULT 0,
  invalid INTEGER NOT NULL DEFAULT 0
);
