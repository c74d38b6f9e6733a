-- The player's X account, from sign-in with X or an X account linked to their Privy login.
ALTER TABLE users ADD COLUMN x_user_id TEXT;
ALTER TABLE users ADD COLUMN x_username TEXT;
