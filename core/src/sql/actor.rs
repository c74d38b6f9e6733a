//! The session actor's own SQLite: its Durable Object storage, not D1.
//!
//! One small database per session: the session row, its last turns for the engine's context
//! (and a turn whose queue send is not confirmed yet), and the idempotency keys it has
//! answered. The statements are plain SQLite, so the native tests run them on rusqlite
//! exactly as the actor runs them through `storage.sql`.
//!
//! The schema is versioned (`actor_meta`), because an actor's storage outlives deploys: an
//! actor created by older code is upgraded in place the first time newer code opens it.
//! Nothing is created until the actor holds a session, so a request for a session id that
//! does not exist leaves no storage behind.

/// The schema this code writes. 1: session, turns, answered_keys (no `actor_meta`).
/// 2: `turns.record` (the record of a keyed turn until its send is confirmed), `actor_meta`.
/// 3: `turns.frame_base` (the live frames' numbers of the turn), `tickets`.
/// 4: fewer rows written per turn (each is billed): `turns.turn_id` without its unique
/// index (a session holds a few dozen turns, and a turn's id is looked up only when its send
/// is confirmed), `answered_keys` without rowid (the key is the table) and without its
/// partial index on answers held (the alarm that reads it runs once a day).
/// 5: `turns` a ring of slots: every turn, keyed or not, is bound before its send and takes
/// the place of the oldest one the character remembers (one row written, where an insert
/// and a prune's delete were two), so an actor reset between a turn's send and its
/// confirmation never loses it; `tickets` without rowid (the nonce is the table).
pub const SCHEMA_VERSION: i64 = 5;

/// The columns of `turns` up to version 4 (see [`UPGRADE_3_TO_4`]).
macro_rules! turns_v4_columns {
    () => {
        "(
  seq INTEGER PRIMARY KEY,
  turn_id TEXT NOT NULL,
  user_content TEXT NOT NULL,
  agent_content TEXT NOT NULL,
  score_raw INTEGER NOT NULL,
  emotion TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  record TEXT,
  frame_base INTEGER
)"
    };
}

/// The columns of `turns` (see [`SCHEMA`]): `slot` is `seq` modulo the turns kept.
macro_rules! turns_columns {
    () => {
        "(
  slot INTEGER PRIMARY KEY,
  seq INTEGER NOT NULL,
  turn_id TEXT NOT NULL,
  user_content TEXT NOT NULL,
  agent_content TEXT NOT NULL,
  score_raw INTEGER NOT NULL,
  emotion TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  record TEXT,
  frame_base INTEGER
)"
    };
}

/// The columns of `answered_keys` (see [`SCHEMA`]).
macro_rules! answered_keys_columns {
    () => {
        "(
  key TEXT PRIMARY KEY,
  message_sha256 TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  answer TEXT,
  answered_at INTEGER NOT NULL
) WITHOUT ROWID"
    };
}

/// Which of the actor's tables exist: an empty result means a storage that was never
/// written (no session). Reading `sqlite_master` creates nothing.
pub const EXISTING_TABLES: &str =
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('session', 'actor_meta')";

/// The schema version an actor holds, once `actor_meta` exists.
pub const SELECT_VERSION: &str = "SELECT schema_version FROM actor_meta WHERE id = 1";

/// The whole schema at [`SCHEMA_VERSION`], for an actor that starts its session (each
/// statement on its own: the actor runs them one by one).
pub const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS session (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  character_type TEXT NOT NULL,
  locale TEXT NOT NULL,
  username TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ended_at INTEGER
)",
    // A ring: turn `seq` lives in slot `seq % keep`, in the place of the oldest turn kept.
    // `seq` orders the turns and never reuses a value. `record` holds a turn's record from
    // just before its queue send until the send is confirmed: a turn with a record may have
    // been queued, so it is sent again (the consumer stores it once) before the session
    // plays anything else. `frame_base` numbers the turn's live frames (`live::TurnSeq`),
    // so that a client reconnecting after the actor restarted gets the last turn with the
    // numbers it saw.
    concat!("CREATE TABLE IF NOT EXISTS turns ", turns_columns!()),
    // A key is bound to its message (by digest) before its turn is queued, for the session's
    // life, so reusing it for another message is always refused; its exact answer is kept
    // for `session::ANSWER_KEEP_MS` after `answered_at`.
    concat!("CREATE TABLE IF NOT EXISTS answered_keys ", answered_keys_columns!()),
    // A live socket's ticket, minted for a player, until it is used (once) or expires.
    TICKETS,
    "CREATE TABLE IF NOT EXISTS actor_meta (id INTEGER PRIMARY KEY CHECK (id = 1), schema_version INTEGER NOT NULL)",
    "INSERT INTO actor_meta (id, schema_version) VALUES (1, 5)
ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version",
];

/// `tickets` up to version 4.
const TICKETS_V3: &str = "CREATE TABLE IF NOT EXISTS tickets (
  nonce TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  expires_at INTEGER NOT NULL
)";

/// The columns of `tickets`: a live socket's ticket, until it is used or expires.
macro_rules! tickets_columns {
    () => {
        "(
  nonce TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID"
    };
}

const TICKETS: &str = concat!("CREATE TABLE IF NOT EXISTS tickets ", tickets_columns!());

/// Upgrades a version-1 actor (no `actor_meta`) to version 2.
pub const UPGRADE_1_TO_2: [&str; 3] = [
    "ALTER TABLE turns ADD COLUMN record TEXT",
    "CREATE TABLE IF NOT EXISTS actor_meta (id INTEGER PRIMARY KEY CHECK (id = 1), schema_version INTEGER NOT NULL)",
    "INSERT INTO actor_meta (id, schema_version) VALUES (1, 2)
ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version",
];

/// Upgrades a version-2 actor to version 3.
pub const UPGRADE_2_TO_3: [&str; 3] = [
    "ALTER TABLE turns ADD COLUMN frame_base INTEGER",
    TICKETS_V3,
    "UPDATE actor_meta SET schema_version = 3 WHERE id = 1",
];

/// Upgrades a version-3 actor to version 4: both tables rebuilt with their rows (a session's
/// few dozen turns and its keys), in the one transaction the actor's upgrade runs in.
pub const UPGRADE_3_TO_4: [&str; 9] = [
    concat!("CREATE TABLE turns_v4 ", turns_v4_columns!()),
    "INSERT INTO turns_v4 SELECT seq, turn_id, user_content, agent_content, score_raw, emotion, created_at, record, frame_base FROM turns",
    "DROP TABLE turns",
    "ALTER TABLE turns_v4 RENAME TO turns",
    concat!("CREATE TABLE answered_keys_v4 ", answered_keys_columns!()),
    "INSERT INTO answered_keys_v4 SELECT key, message_sha256, turn_id, answer, answered_at FROM answered_keys",
    "DROP TABLE answered_keys",
    "ALTER TABLE answered_keys_v4 RENAME TO answered_keys",
    "UPDATE actor_meta SET schema_version = 4 WHERE id = 1",
];

/// Upgrades a version-4 actor to version 5, in the one transaction the upgrade runs in: the
/// turns move into slots named by their own `seq` (which no new turn's `seq % keep` reaches
/// before they are the oldest: each new turn's confirmation prunes the turns past the newest
/// `keep`), and the tickets into a table without rowid.
pub const UPGRADE_4_TO_5: [&str; 9] = [
    concat!("CREATE TABLE turns_v5 ", turns_columns!()),
    "INSERT INTO turns_v5 SELECT seq, seq, turn_id, user_content, agent_content, score_raw, emotion, created_at, record, frame_base FROM turns",
    "DROP TABLE turns",
    "ALTER TABLE turns_v5 RENAME TO turns",
    concat!("CREATE TABLE tickets_v5 ", tickets_columns!()),
    "INSERT INTO tickets_v5 SELECT nonce, identity, expires_at FROM tickets",
    "DROP TABLE tickets",
    "ALTER TABLE tickets_v5 RENAME TO tickets",
    "UPDATE actor_meta SET schema_version = 5 WHERE id = 1",
];

/// Binds: id, user_id, character_type, locale, username, created_at, ended_at. A second
/// start of the same session changes nothing.
pub const INSERT_SESSION: &str = "\
INSERT INTO session (id, user_id, character_type, locale, username, created_at, ended_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING";

pub const SELECT_SESSION: &str = "\
SELECT id, user_id, character_type, locale, username, created_at, ended_at FROM session LIMIT 1";

/// Binds: ended_at. The first game over wins.
pub const END_SESSION: &str = "UPDATE session SET ended_at = ?1 WHERE ended_at IS NULL";

/// Binds: key.
pub const SELECT_KEY: &str =
    "SELECT message_sha256, answer, answered_at FROM answered_keys WHERE key = ?1";

/// Binds a key to its message and answer. Binds: key, message_sha256, turn_id, answer,
/// answered_at.
pub const INSERT_KEY: &str = "\
INSERT INTO answered_keys (key, message_sha256, turn_id, answer, answered_at)
VALUES (?1, ?2, ?3, ?4, ?5)";

/// Drops the answers (not the keys) answered at or before ?1 (ms since the epoch): the
/// actor's alarm runs it when the oldest answer expires.
pub const FORGET_ANSWERS: &str =
    "UPDATE answered_keys SET answer = NULL WHERE answer IS NOT NULL AND answered_at <= ?1";

/// When the oldest answer still held was given (NULL when none is held): the next alarm.
pub const OLDEST_ANSWER: &str =
    "SELECT MIN(answered_at) AS at FROM answered_keys WHERE answer IS NOT NULL";

/// A turn bound before its send: its row, with the record that may be on the queue, in the
/// slot of the oldest turn kept (one row written). Binds: seq, keep, turn_id, user_content,
/// agent_content, score_raw, emotion, created_at, frame_base, record. `seq` is one past the
/// newest turn the character remembers (which the runner has just read): no scan for it.
pub const BIND_TURN: &str = "\
INSERT INTO turns (slot, seq, turn_id, user_content, agent_content, score_raw, emotion, created_at, frame_base, record)
VALUES (?1 % ?2, ?1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (slot) DO UPDATE SET seq = excluded.seq, turn_id = excluded.turn_id,
  user_content = excluded.user_content, agent_content = excluded.agent_content,
  score_raw = excluded.score_raw, emotion = excluded.emotion, created_at = excluded.created_at,
  frame_base = excluded.frame_base, record = excluded.record";

/// A turn whose send is confirmed: its record cleared, found by its slot. Binds: slot,
/// turn_id.
pub const CLEAR_RECORD: &str =
    "UPDATE turns SET record = NULL WHERE slot = ?1 AND turn_id = ?2 AND record IS NOT NULL";

/// A bound unkeyed turn whose send failed: gone, so it is never sent. Binds: slot, turn_id.
pub const UNBIND_TURN: &str =
    "DELETE FROM turns WHERE slot = ?1 AND turn_id = ?2 AND record IS NOT NULL";

/// The newest frame base of the session's turns: where a fresh instance numbers on from.
pub const LAST_FRAME_BASE: &str = "SELECT MAX(frame_base) AS base FROM turns";

/// The last confirmed turn with live frames, as a reconnecting client is sent it again:
/// its frame base, words, key and answer.
pub const LAST_LIVE_TURN: &str = "\
SELECT t.frame_base AS base, t.user_content AS message, t.agent_content AS reply, k.key AS key,
       k.answer AS answer
FROM turns AS t LEFT JOIN answered_keys AS k ON k.turn_id = t.turn_id
WHERE t.record IS NULL AND t.frame_base IS NOT NULL
ORDER BY t.seq DESC LIMIT 1";

/// Keeps a live socket's ticket until ?3. Binds: nonce, identity (JSON), expires_at.
pub const INSERT_TICKET: &str =
    "INSERT INTO tickets (nonce, identity, expires_at) VALUES (?1, ?2, ?3)";

/// Uses a ticket: removes it and gives its player, if it is there and good at ?2.
pub const TAKE_TICKET: &str =
    "DELETE FROM tickets WHERE nonce = ?1 AND expires_at > ?2 RETURNING identity";

/// Drops the tickets that expired by ?1.
pub const PRUNE_TICKETS: &str = "DELETE FROM tickets WHERE expires_at <= ?1";

/// The tickets still good at ?1.
pub const LIVE_TICKETS: &str = "SELECT COUNT(*) AS n FROM tickets WHERE expires_at > ?1";

/// When the first ticket held expires (NULL when none is held).
pub const NEXT_TICKET_EXPIRY: &str = "SELECT MIN(expires_at) AS at FROM tickets";

/// The records of turns whose send is not confirmed, oldest first.
pub const UNCONFIRMED_TURNS: &str =
    "SELECT slot, record FROM turns WHERE record IS NOT NULL ORDER BY seq";

/// Keeps the newest ?1 turns (never one whose send is unconfirmed). The ring replaces the
/// oldest turn as each is bound, in slots below ?1; only a slot at ?1 or above holds a turn
/// the ring will not replace (left by a larger `keep`, or by an actor upgraded from version
/// 4, whose turns keep their `seq` as their slot). So this looks at those slots only: in
/// the steady state it reads no row and writes none.
pub const PRUNE_TURNS: &str = "\
DELETE FROM turns WHERE slot >= ?1 AND record IS NULL
  AND seq <= (SELECT MAX(seq) FROM turns) - ?1";

/// The newest ?1 confirmed turns, oldest first.
pub const RECENT_TURNS: &str = "\
SELECT seq, user_content, agent_content, score_raw, emotion FROM (
  SELECT seq, user_content, agent_content, score_raw, emotion FROM turns
  WHERE record IS NULL ORDER BY seq DESC LIMIT ?1
) ORDER BY seq";

/// What an operator sees of an actor: how much it holds.
pub const COUNTS: &str = "\
SELECT (SELECT COUNT(*) FROM turns) AS turns_held,
       (SELECT COUNT(*) FROM turns WHERE record IS NOT NULL) AS turns_unconfirmed,
       (SELECT COUNT(*) FROM answered_keys) AS keys_held,
       (SELECT COUNT(*) FROM answered_keys WHERE answer IS NOT NULL) AS answers_held,
       (SELECT COUNT(*) FROM tickets) AS tickets_held";

/// What opening an actor's storage needs, from the tables it has and its `actor_meta`
/// version (when that table exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// Nothing was ever written: no session. Nothing is created until one starts.
    Empty,
    /// The schema is current.
    Ready,
    /// Run these statements, then it is current.
    Upgrade(Vec<&'static str>),
}

/// The plan for an actor whose `sqlite_master` lists `tables` ([`EXISTING_TABLES`]) and
/// whose `actor_meta` says `version`. A version newer than this code's is refused: the
/// code was rolled back past a schema change, and writing with it could lose data.
pub fn schema(tables: &[String], version: Option<i64>) -> Result<Schema, String> {
    let has = |t: &str| tables.iter().any(|x| x == t);
    if !has("session") {
        return Ok(Schema::Empty);
    }
    let steps = |from: &[&[&'static str]]| {
        Ok(Schema::Upgrade(
            from.iter().flat_map(|s| s.iter()).copied().collect(),
        ))
    };
    match (has("actor_meta"), version) {
        (false, _) => steps(&[
            &UPGRADE_1_TO_2,
            &UPGRADE_2_TO_3,
            &UPGRADE_3_TO_4,
            &UPGRADE_4_TO_5,
        ]),
        (true, Some(2)) => steps(&[&UPGRADE_2_TO_3, &UPGRADE_3_TO_4, &UPGRADE_4_TO_5]),
        (true, Some(3)) => steps(&[&UPGRADE_3_TO_4, &UPGRADE_4_TO_5]),
        (true, Some(4)) => steps(&[&UPGRADE_4_TO_5]),
        (true, Some(SCHEMA_VERSION)) => Ok(Schema::Ready),
        (true, v) => Err(format!(
            "the actor's storage has schema version {v:?}; this code knows up to {SCHEMA_VERSION}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_what_the_storage_holds() {
        let t = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let chain = |steps: &[&[&'static str]]| {
            Ok(Schema::Upgrade(
                steps.iter().flat_map(|s| s.iter()).copied().collect(),
            ))
        };
        assert_eq!(schema(&t(&[]), None), Ok(Schema::Empty));
        assert_eq!(
            schema(&t(&["session"]), None),
            chain(&[
                &UPGRADE_1_TO_2,
                &UPGRADE_2_TO_3,
                &UPGRADE_3_TO_4,
                &UPGRADE_4_TO_5
            ])
        );
        assert_eq!(
            schema(&t(&["session", "actor_meta"]), Some(2)),
            chain(&[&UPGRADE_2_TO_3, &UPGRADE_3_TO_4, &UPGRADE_4_TO_5])
        );
        assert_eq!(
            schema(&t(&["session", "actor_meta"]), Some(3)),
            chain(&[&UPGRADE_3_TO_4, &UPGRADE_4_TO_5])
        );
        assert_eq!(
            schema(&t(&["session", "actor_meta"]), Some(4)),
            chain(&[&UPGRADE_4_TO_5])
        );
        assert_eq!(
            schema(&t(&["session", "actor_meta"]), Some(5)),
            Ok(Schema::Ready)
        );
        assert!(schema(&t(&["session", "actor_meta"]), Some(6)).is_err());
    }
}
