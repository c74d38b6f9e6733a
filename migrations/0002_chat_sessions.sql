-- Game sessions: started synchronously by the chat Worker, ended by the consumer when a turn
-- ends the game. chat_messages.session_id refers to them (no FK: 0001 has shipped).

CREATE TABLE chat_sessions (
  id TEXT PRIMARY KEY NOT NULL,
  user_id TEXT NOT NULL REFERENCES users (id),
  character_type TEXT NOT NULL,
  username TEXT NOT NULL,
  locale TEXT NOT NULL CHECK (locale IN ('ja', 'en')),
  created_at INTEGER NOT NULL,
  ended_at INTEGER
);
CREATE INDEX chat_sessions_user_created ON chat_sessions (user_id, created_at);
