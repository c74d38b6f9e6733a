-- The four tables of the turn pipeline. Times are integer milliseconds since the Unix epoch.
-- Never edit this file once shipped: add a numbered migration instead.

CREATE TABLE users (
  id TEXT PRIMARY KEY NOT NULL,                 -- UUIDv5 of '<provider>:<provider user id>'
  auth_provider TEXT NOT NULL CHECK (auth_provider IN ('x', 'privy')),
  auth_provider_user_id TEXT NOT NULL,
  display_name TEXT,
  wallet_address TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (auth_provider, auth_provider_user_id)
);

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
);
CREATE INDEX chat_messages_user_session_created ON chat_messages (user_id, session_id, created_at);

CREATE TABLE point_events (
  id TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL REFERENCES users (id),
  session_id TEXT NOT NULL,
  message_id TEXT REFERENCES chat_messages (id), -- the turn it came from; NULL for manual grants
  delta INTEGER NOT NULL,
  reason TEXT NOT NULL,
  metadata_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata_json)),
  created_at INTEGER NOT NULL
);
CREATE INDEX point_events_user_created ON point_events (user_id, created_at);

-- A snapshot for fast reads; the ledger is point_events.
CREATE TABLE user_stats (
  user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
  total_points INTEGER NOT NULL DEFAULT 0,
  intimacy_level INTEGER NOT NULL DEFAULT 0,
  last_message_at INTEGER,
  updated_at INTEGER NOT NULL
);
