-- Erasures (docs/design.md, "Erasing a player"): one row per erased player, holding no
-- personal data. `user_hash` is a keyed hash of the player's id (HMAC-SHA256 under the
-- ERASURE_KEY secret), never the id; `erased_at` tells a turn of the erased player (made
-- before it) from one of a returning player (made after). Every write of the consumer's
-- batch skips a turn whose player's hash is here with a later `erased_at`, inside its own
-- transaction, as it skips a fenced bucket's. `bucket` (the player's two hex digits, one
-- byte of a hash) lets a bucket move carry the rows with the bucket.
--
-- IF NOT EXISTS: a database still at schema 1 takes this file with `wrangler d1 execute
-- --file`, as it takes 0010, and takes it again unchanged once it reaches schema 2.

CREATE TABLE IF NOT EXISTS erasures (
  user_hash TEXT PRIMARY KEY NOT NULL,
  bucket TEXT NOT NULL,
  erased_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS erasures_bucket ON erasures (bucket, user_hash);
