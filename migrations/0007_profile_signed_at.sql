-- When the profile in a user's row was signed, in ms since the epoch: the Privy identity
-- token's `iat`, or when X answered `users/me`. Of two profiles of one player, the one
-- signed later wins, whatever order their turns are delivered and stored in. 0 for rows
-- written before this column, and for players with no signed profile.
ALTER TABLE users ADD COLUMN profile_signed_at INTEGER NOT NULL DEFAULT 0;
