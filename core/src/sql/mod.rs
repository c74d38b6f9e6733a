//! Every SQL statement of both Workers, in one place, so the native tests run exactly what
//! D1 runs.
//!
//! The consumer's batch is [`apply_turns`]: a fixed list of statements, each binding the same
//! single JSON parameter (`batch::turns_json`) and reading it with `json_each`, so a batch of
//! 1 and a batch of 100 turns cost the same number of statements (D1 allows 100 bound
//! parameters and 100 KB of SQL per statement; the data rides in the parameter instead).
//!
//! Two SQLite details matter here:
//! - `INSERT … SELECT … FROM json_each(?1)` needs `WHERE true` before `ON CONFLICT`, or the
//!   parser reads `ON` as a join constraint (`near "DO": syntax error`).
//! - Statement order is the idempotency: `user_stats` moves by the events that are *not yet*
//!   in `point_events`, so it runs before the events are inserted, inside one transaction.
//!
//! Every write of a player's rows skips the players whose bucket the database has fenced
//! (`bucket_fences`, migration 0006): a bucket being moved away, or moved away already.
//! The fence is read inside the write's own transaction, so a write routed by a stale copy
//! of the bucket map can never land in a database that no longer holds the bucket; the
//! consumer reads the fenced buckets first ([`SELECT_FENCED`]) and holds those turns.

pub mod actor;
pub mod archive;
pub mod leaders;
pub mod privacy;
pub mod shards;

/// The newest migration: schema 2 with the archive's tables and the erasures
/// (`migrations/0011_erasures.sql`). A move's target must have it, so that every bucket moved
/// lands in the new tables.
pub const LATEST_MIGRATION: &str = "0011_erasures.sql";

/// The migrations a schema-1 database takes by hand (`wrangler d1 execute --file`), since it
/// cannot take them as migrations: each is `IF NOT EXISTS`, and applies again unchanged.
pub const BY_HAND_ON_SCHEMA_ONE: [&str; 2] = ["0010_archive.sql", LATEST_MIGRATION];

/// The migrations a database may have as its newest and serve turns: the same statements
/// run on schema 1 (rowid tables, as a database holding turns keeps them until its buckets
/// move; the tables of 0010 and 0011 added to it by hand, see [`SCHEMA_CHECK`]) and on
/// schema 2.
pub const SERVING_MIGRATIONS: [&str; 2] = ["0008_leaders.sql", LATEST_MIGRATION];

/// The tables every statement of this round needs (0010 and 0011). A schema-1 database
/// cannot take those as migrations (0009 comes first and refuses a database holding
/// turns), so an operator adds them by hand ([`BY_HAND_ON_SCHEMA_ONE`]).
pub const NEEDED_TABLES: [&str; 2] = ["archive_players", "erasures"];

/// The newest migration wrangler applied to a database.
pub const APPLIED_MIGRATION: &str = "SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1";

/// What `GET /readyz` asks each database: its newest migration, and how many of
/// [`NEEDED_TABLES`] it has.
pub static SCHEMA_CHECK: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = NEEDED_TABLES.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "SELECT (SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1) AS name,
       (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ({})) AS tables",
        names.join(", ")
    )
});

use crate::scoring::LEVEL_THRESHOLDS;
use std::sync::LazyLock;

/// True for a row `r` of `json_each(?1)` whose player's bucket this database has not fenced.
macro_rules! unfenced {
    () => {
        "NOT EXISTS (SELECT 1 FROM bucket_fences AS f WHERE f.bucket = substr(r.value ->> '$.user_id', 1, 2))"
    };
}

/// True for a row `r` of `json_each(?1)` whose turn may be written: its time is outside
/// what the archive holds of its player, or the consumer looked in the player's objects
/// since the last was committed (`archive_seen`; see `archive::SELECT_ARCHIVED`). A turn
/// inside may be archived already: the consumer looks for it in R2 first.
macro_rules! unarchived {
    () => {
        "NOT EXISTS (SELECT 1 FROM archive_players AS a
        WHERE a.user_id = r.value ->> '$.user_id'
          AND a.first_at <= r.value ->> '$.user_at' AND r.value ->> '$.user_at' <= a.last_at
          AND a.objects > COALESCE(r.value ->> '$.archive_seen', 0))"
    };
}

/// True for a row `r` of `json_each(?1)` whose player was not erased after the row was made
/// (`erasures`, migration 0011): the row's `erasure_tag` is the player's keyed hash, and
/// `$.{at}` the row's time. A returning player's new turns pass; the erased player's late
/// ones (still queued, retried, replayed) do not.
macro_rules! unerased {
    ($at:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM erasures AS e WHERE e.user_hash = r.value ->> '$.erasure_tag' AND r.value ->> '$.",
            $at,
            "' <= e.erased_at)"
        )
    };
}

/// True for a row `r` of `json_each(?1)` whose turn a write may store: its bucket is not
/// fenced here, the archive may not hold it, and its player was not erased since.
macro_rules! writable {
    () => {
        concat!(
            unfenced!(),
            " AND ",
            unarchived!(),
            " AND ",
            unerased!("user_at")
        )
    };
}

/// The buckets of `?1`'s players that this database has fenced (as the batch starts: it runs
/// first). Their turns are not written here; the consumer holds them.
pub const SELECT_FENCED: &str = "\
SELECT bucket FROM bucket_fences
WHERE bucket IN (SELECT DISTINCT substr(r.value ->> '$.user_id', 1, 2) FROM json_each(?1) AS r)";

/// Upserts the users of the rows in `?1` (`batch::UserRow` fields) whose turn is not stored
/// yet (rows without a `turn_id`, as when a session starts, always count). The id derives
/// from the identity, so it is the conflict target. Of two profiles, the one signed later
/// (`signed_at`, when the sign-in that gave it was made) wins, whatever order they arrive
/// in: a row is written only when a delivery carries a profile signed after the one stored,
/// and a row without a profile field keeps the one stored. The signing time moves even
/// when the profile is the same, so that an older profile delivered late never replaces
/// one signed since; it changes once per sign-in (a Privy identity token's life, an X
/// answer's cache), not per turn, and D1 bills every row an update writes. Duplicates and
/// conflicts touch nothing. `updated_at` is when the profile last changed.
pub const UPSERT_USERS: &str = concat!(
    "\
INSERT INTO users (id, auth_provider, auth_provider_user_id, display_name, wallet_address,
                   x_user_id, x_username, created_at, updated_at, profile_signed_at)
SELECT r.value ->> '$.user_id', r.value ->> '$.provider', r.value ->> '$.provider_user_id',
       r.value ->> '$.display_name', r.value ->> '$.wallet_address',
       r.value ->> '$.x_user_id', r.value ->> '$.x_username',
       r.value ->> '$.seen_at', r.value ->> '$.seen_at', r.value ->> '$.signed_at'
FROM json_each(?1) AS r
WHERE NOT EXISTS (SELECT 1 FROM chat_messages AS m WHERE m.id = r.value ->> '$.turn_id')
  AND ",
    unfenced!(),
    " AND ",
    unerased!("seen_at"),
    "
ON CONFLICT (id) DO UPDATE SET
  display_name = COALESCE(excluded.display_name, users.display_name),
  wallet_address = COALESCE(excluded.wallet_address, users.wallet_address),
  x_user_id = COALESCE(excluded.x_user_id, users.x_user_id),
  x_username = COALESCE(excluded.x_username, users.x_username),
  profile_signed_at = excluded.profile_signed_at,
  updated_at = CASE
    WHEN COALESCE(excluded.display_name, users.display_name) IS NOT users.display_name
      OR COALESCE(excluded.wallet_address, users.wallet_address) IS NOT users.wallet_address
      OR COALESCE(excluded.x_user_id, users.x_user_id) IS NOT users.x_user_id
      OR COALESCE(excluded.x_username, users.x_username) IS NOT users.x_username
    THEN excluded.updated_at ELSE users.updated_at END
WHERE excluded.profile_signed_at > users.profile_signed_at"
);

/// `CASE` expression giving the intimacy level of the total `expr`, from the same
/// thresholds as `scoring::intimacy_level`.
fn level_of(expr: &str) -> String {
    let mut case = String::from("CASE");
    for (i, t) in LEVEL_THRESHOLDS.iter().enumerate().rev() {
        case.push_str(&format!(" WHEN {expr} >= {t} THEN {}", i + 1));
    }
    case.push_str(" ELSE 0 END");
    case
}

/// Moves `user_stats` by the events of `?1` that are not stored yet. Must run before
/// [`INSERT_POINT_EVENTS`] in the same batch.
pub static ADD_NEW_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
INSERT INTO user_stats (user_id, total_points, intimacy_level, last_message_at, updated_at)
SELECT n.user_id, SUM(n.delta), {insert_level}, MAX(n.at), MAX(n.at)
FROM (
  SELECT r.value ->> '$.user_id' AS user_id, r.value ->> '$.delta' AS delta, r.value ->> '$.agent_at' AS at
  FROM json_each(?1) AS r
  WHERE NOT EXISTS (SELECT 1 FROM point_events AS p WHERE p.id = r.value ->> '$.event_id')
    AND {writable}
) AS n
GROUP BY n.user_id
ON CONFLICT (user_id) DO UPDATE SET
  total_points = user_stats.total_points + excluded.total_points,
  intimacy_level = {update_level},
  last_message_at = MAX(COALESCE(user_stats.last_message_at, 0), excluded.last_message_at),
  updated_at = MAX(user_stats.updated_at, excluded.updated_at)",
        insert_level = level_of("SUM(n.delta)"),
        update_level = level_of("(user_stats.total_points + excluded.total_points)"),
        writable = writable!(),
    )
});

/// Inserts both messages of each turn: the player's (scored) and the character's (with its
/// emotion). Existing ids are left alone.
pub const INSERT_MESSAGES: &str = concat!(
    "\
INSERT INTO chat_messages (id, user_id, session_id, role, content, score_raw, score_adjusted, emotion, created_at)
SELECT r.value ->> '$.turn_id', r.value ->> '$.user_id', r.value ->> '$.session_id', 'user',
       r.value ->> '$.user_content', r.value ->> '$.score_raw', r.value ->> '$.score_adjusted', NULL,
       r.value ->> '$.user_at'
FROM json_each(?1) AS r
WHERE ",
    writable!(),
    "
UNION ALL
SELECT r.value ->> '$.agent_id', r.value ->> '$.user_id', r.value ->> '$.session_id', 'agent',
       r.value ->> '$.agent_content', NULL, NULL, r.value ->> '$.emotion', r.value ->> '$.agent_at'
FROM json_each(?1) AS r
WHERE ",
    writable!(),
    "
ON CONFLICT (id) DO NOTHING"
);

/// Inserts each turn's point event. Its `changes` count is the number of turns newly applied.
pub const INSERT_POINT_EVENTS: &str = concat!(
    "\
INSERT INTO point_events (id, user_id, session_id, message_id, delta, reason, metadata_json, created_at)
SELECT r.value ->> '$.event_id', r.value ->> '$.user_id', r.value ->> '$.session_id', r.value ->> '$.turn_id',
       r.value ->> '$.delta', r.value ->> '$.reason', r.value ->> '$.metadata_json', r.value ->> '$.agent_at'
FROM json_each(?1) AS r
WHERE ",
    writable!(),
    "
ON CONFLICT (id) DO NOTHING"
);

/// Ends the sessions in which a new turn of `?1` ended the game. Deliveries come in any
/// order, so the earliest game-over time wins, whichever batch brought it. Must run before
/// [`INSERT_POINT_EVENTS`].
pub const END_SESSIONS: &str = concat!(
    "\
UPDATE chat_sessions
SET ended_at = MIN(COALESCE(ended_at, g.at), g.at)
FROM (
  SELECT r.value ->> '$.session_id' AS id, MIN(r.value ->> '$.user_at') AS at
  FROM json_each(?1) AS r
  WHERE r.value ->> '$.game_over' = 1
    AND NOT EXISTS (SELECT 1 FROM point_events AS p WHERE p.id = r.value ->> '$.event_id')
    AND ",
    writable!(),
    "
  GROUP BY r.value ->> '$.session_id'
) AS g
WHERE chat_sessions.id = g.id"
);

/// The turns of `?1` that this database refuses as an erased player's (as the batch starts:
/// it runs before the writes, which skip them). The consumer acks them, stored nowhere.
pub const SELECT_ERASED: &str = concat!(
    "SELECT r.value ->> '$.turn_id' AS turn_id FROM json_each(?1) AS r WHERE NOT (",
    unerased!("user_at"),
    ")"
);

/// What is already stored under the turn ids of `?1` (as the batch starts: it runs first).
/// The consumer compares it with each record to tell a duplicate from a conflict; a replay
/// dry run reads it the same way.
pub const SELECT_STORED_TURNS: &str = "\
SELECT m.id, m.user_id, m.session_id, m.content
FROM chat_messages AS m
WHERE m.id IN (SELECT r.value ->> '$.turn_id' FROM json_each(?1) AS r)";

/// The consumer's whole batch, in order; each statement binds `batch::turns_json` as `?1`.
/// Every write skips turns already stored, so duplicates and conflicts change nothing, and
/// turns of fenced buckets, which the consumer holds. Last, the batch's players' places in
/// the database's leaderboard ([`leaders::KEEP`]).
pub fn apply_turns() -> [&'static str; 17] {
    let [clear, requested, enter, refloor, refill, raise, trim, refilled] = leaders::KEEP;
    [
        SELECT_FENCED,
        SELECT_STORED_TURNS,
        archive::SELECT_ARCHIVED,
        SELECT_ERASED,
        UPSERT_USERS,
        ADD_NEW_POINTS.as_str(),
        END_SESSIONS,
        INSERT_MESSAGES,
        INSERT_POINT_EVENTS,
        clear,
        requested,
        enter,
        refloor,
        refill,
        raise,
        trim,
        refilled,
    ]
}

/// Position of [`SELECT_FENCED`] in [`apply_turns`]: the buckets whose turns were held.
pub const FENCED_STATEMENT: usize = 0;
/// Position of [`SELECT_STORED_TURNS`] in [`apply_turns`]: its rows are the pre-batch state.
pub const STORED_STATEMENT: usize = 1;
/// Position of [`archive::SELECT_ARCHIVED`] in [`apply_turns`]: the turns the consumer must
/// look for in the archive before it writes them.
pub const ARCHIVED_STATEMENT: usize = 2;
/// Position of [`SELECT_ERASED`] in [`apply_turns`]: the turns refused as an erased
/// player's.
pub const ERASED_STATEMENT: usize = 3;
/// Position of [`INSERT_POINT_EVENTS`] in [`apply_turns`]: its `changes` count new turns.
pub const APPLIED_STATEMENT: usize = 8;

/// Archives the dead-letter envelopes of `?1` (`dead_letter::Envelope`, camelCase) at time
/// `?2`. A letter delivered again widens its failure window and keeps its status. An erased
/// player's letter (its turn made before the erasure) is not stored.
pub const STORE_LETTERS: &str = "\
INSERT INTO dead_letters (id, turn_id, payload, error_class, error_text, attempts,
                          first_failed_at, last_failed_at, status, replay_count, created_at, updated_at)
SELECT r.value ->> '$.messageId', r.value ->> '$.turnId', r.value ->> '$.payload', r.value ->> '$.class',
       r.value ->> '$.error', r.value ->> '$.attempts', r.value ->> '$.firstFailedAt',
       r.value ->> '$.lastFailedAt', 'pending', 0, ?2, ?2
FROM json_each(?1) AS r
WHERE NOT EXISTS (SELECT 1 FROM erasures AS e
                  WHERE e.user_hash = r.value ->> '$.erasureTag' AND r.value ->> '$.turnAt' <= e.erased_at)
ON CONFLICT (id) DO UPDATE SET
  attempts = MAX(dead_letters.attempts, excluded.attempts),
  first_failed_at = MIN(dead_letters.first_failed_at, excluded.first_failed_at),
  last_failed_at = MAX(dead_letters.last_failed_at, excluded.last_failed_at),
  updated_at = excluded.updated_at";

/// Starts a session (after [`UPSERT_USERS`] in the same batch), unless the player's bucket
/// is fenced here: then no row changes, and the player is told to retry (the bucket is
/// moving, or this isolate's map is stale). Binds: id, user_id, character_type, username,
/// locale, created_at.
pub const INSERT_SESSION: &str = "\
INSERT INTO chat_sessions (id, user_id, character_type, username, locale, created_at)
SELECT ?1, ?2, ?3, ?4, ?5, ?6
WHERE NOT EXISTS (SELECT 1 FROM bucket_fences WHERE bucket = substr(?2, 1, 2))";

/// One session by id. Binds: id.
pub const SELECT_SESSION: &str = "\
SELECT id, user_id, character_type, username, locale, created_at, ended_at
FROM chat_sessions WHERE id = ?1";

/// A player's stats snapshot. Binds: user_id.
pub const SELECT_STATS: &str = "\
SELECT total_points, intimacy_level, last_message_at FROM user_stats WHERE user_id = ?1";

/// One page of a session's messages: the newest ?5 before the cursor (?3 = created_at, ?4 =
/// id; both NULL for the newest page), returned oldest first. A turn's two messages share a
/// timestamp and sort by id (the player's id ends in 00, the reply's in 01). The index on
/// (user_id, session_id, created_at) serves it. Binds: user_id, session_id, before_at,
/// before_id, limit.
pub const SELECT_SESSION_MESSAGES: &str = "\
SELECT id, role, content, score_raw, score_adjusted, emotion, created_at FROM (
  SELECT id, role, content, score_raw, score_adjusted, emotion, created_at
  FROM chat_messages
  WHERE user_id = ?1 AND session_id = ?2
    AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
  ORDER BY created_at DESC, id DESC LIMIT ?5
) ORDER BY created_at, id";

// ---- Admin: the dead-letter archive, replay runs, reconcile -------------------------------

/// The columns of a letter in a listing (no payload: it can be large).
const LETTER_COLUMNS: &str = "id, turn_id, error_class, error_text, attempts, first_failed_at, last_failed_at, status, replay_count";

/// The filter every letter query shares. Binds: ?1 status, ?2 class, ?3 text in the error,
/// ?4 from (ms, inclusive), ?5 to (ms, exclusive), ?6/?7 cursor (after this failure time and
/// id), ?8 limit. A NULL bind leaves that condition out, so one statement serves every filter.
const LETTER_FILTER: &str = "\
WHERE (?1 IS NULL OR status = ?1)
  AND (?2 IS NULL OR error_class = ?2)
  AND (?3 IS NULL OR instr(error_text, ?3) > 0)
  AND (?4 IS NULL OR last_failed_at >= ?4)
  AND (?5 IS NULL OR last_failed_at < ?5)
  AND (?6 IS NULL OR (last_failed_at, id) > (?6, ?7))
ORDER BY last_failed_at, id
LIMIT ?8";

/// Letters matching a filter, oldest failure first, without payloads.
pub static LIST_LETTERS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {LETTER_COLUMNS} FROM dead_letters {LETTER_FILTER}"));

/// Letters matching a filter, with payloads (for replay).
pub static LIST_LETTERS_FULL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {LETTER_COLUMNS}, payload FROM dead_letters {LETTER_FILTER}"));

/// Letters by id (`?1`, a JSON array of ids), with payloads.
pub static LETTERS_BY_IDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LETTER_COLUMNS}, payload FROM dead_letters \
         WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY last_failed_at, id"
    )
});

/// Marks the letters `?1` (JSON array of ids) replayed at `?2`.
pub const MARK_REPLAYED: &str = "\
UPDATE dead_letters SET status = 'replayed', replay_count = replay_count + 1, updated_at = ?2
WHERE id IN (SELECT value FROM json_each(?1))";

/// Marks the letters `?1` (JSON array of ids) discarded at `?2`; returns how many changed.
pub const DISCARD_LETTERS: &str = "\
UPDATE dead_letters SET status = 'discarded', updated_at = ?2
WHERE id IN (SELECT value FROM json_each(?1)) AND status != 'discarded'";

/// Records (or extends) a replay run. Binds: id, started_at, finished_at, dry_run,
/// filter_json, letters, requeued, would_apply, already_applied, conflicts, invalid.
pub const RECORD_REPLAY_RUN: &str = "\
INSERT INTO replay_runs (id, started_at, finished_at, dry_run, filter_json, letters, requeued,
                         would_apply, already_applied, conflicts, invalid)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (id) DO UPDATE SET
  finished_at = excluded.finished_at,
  letters = replay_runs.letters + excluded.letters,
  requeued = replay_runs.requeued + excluded.requeued,
  would_apply = replay_runs.would_apply + excluded.would_apply,
  already_applied = replay_runs.already_applied + excluded.already_applied,
  conflicts = replay_runs.conflicts + excluded.conflicts,
  invalid = replay_runs.invalid + excluded.invalid";

/// One page of users: ids after ?1 (NULL or '' for the first page), at most ?2, in id order,
/// of the buckets in ?3 (a JSON array of bucket prefixes: the ones the live map gives this
/// database and that are not moving, so a copy in progress or left behind is never
/// "repaired"). `id > COALESCE(?1, '')` keeps it a range scan of the primary key, so every
/// page costs the same however far the reconcile has gone.
const USER_PAGE: &str = "\
SELECT id FROM users
WHERE id > COALESCE(?1, '') AND substr(id, 1, 2) IN (SELECT value FROM json_each(?3))
ORDER BY id LIMIT ?2";

/// The users of one page whose `user_stats` snapshot differs from what the ledger (total,
/// level) and the messages (last message) say, with both sides. Both span the two tiers:
/// `archive_players` carries what the archive holds of each player. Each user's
/// ledger is read through the per-user indexes, so a page of 1,000 users stays far inside
/// D1's 30 s statement limit whatever the database's size.
static DRIFT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
WITH d AS (
  SELECT u.id AS user_id,
         s.total_points AS stored_total,
         (SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id = u.id)
           + (SELECT COALESCE(SUM(points), 0) FROM archive_players WHERE user_id = u.id) AS ledger_total,
         (SELECT COUNT(*) FROM point_events WHERE user_id = u.id)
           + (SELECT COALESCE(SUM(point_events), 0) FROM archive_players WHERE user_id = u.id) AS events,
         s.intimacy_level AS stored_level,
         s.last_message_at AS stored_last,
         (SELECT MAX(t) FROM (SELECT MAX(created_at) AS t FROM chat_messages WHERE user_id = u.id
                              UNION ALL
                              SELECT MAX(last_at) FROM archive_players WHERE user_id = u.id)) AS expected_last,
         s.user_id IS NULL AS missing
  FROM ({USER_PAGE}) AS u
  LEFT JOIN user_stats AS s ON s.user_id = u.id
)
SELECT user_id, stored_total, ledger_total, stored_level, {level} AS expected_level,
       stored_last, expected_last, missing
FROM d
WHERE (missing AND (events > 0 OR expected_last IS NOT NULL))
   OR (NOT missing AND (stored_total IS NOT ledger_total
                        OR stored_level IS NOT {level}
                        OR stored_last IS NOT expected_last))",
        level = level_of("ledger_total")
    )
});

/// How many users one page checked, and the last one (the next page's cursor). Binds: after,
/// limit, buckets.
pub static USER_PAGE_SPAN: LazyLock<String> =
    LazyLock::new(|| format!("SELECT COUNT(*) AS checked, MAX(id) AS last_id FROM ({USER_PAGE})"));

/// The drifted users of one page (see `DRIFT`), for a reconcile report. Binds: after, limit,
/// buckets.
pub static SELECT_DRIFT: LazyLock<String> =
    LazyLock::new(|| format!("{} ORDER BY user_id", *DRIFT));

/// Rewrites the snapshot of every drifted user of one page from the ledger, at `?4`. Run in
/// the same batch as [`SELECT_DRIFT`] so the report and the fix see the same state. Binds:
/// after, limit, buckets, now.
pub static FIX_DRIFT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
INSERT INTO user_stats (user_id, total_points, intimacy_level, last_message_at, updated_at)
SELECT d.user_id, d.ledger_total, d.expected_level, d.expected_last, ?4 FROM ({}) AS d
WHERE true
ON CONFLICT (user_id) DO UPDATE SET
  total_points = excluded.total_points,
  intimacy_level = excluded.intimacy_level,
  last_message_at = excluded.last_message_at,
  updated_at = excluded.updated_at",
        *DRIFT
    )
});

/// Marks a refill of the leaderboard table (`leaders::REBUILD_MARKED`, run after the
/// repair) when the page has drifted users, whose totals [`FIX_DRIFT`] then changes outside
/// a batch. Run before it, in the same batch. Binds: after, limit, buckets.
pub static MARK_LEADERS_IF_DRIFT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE leaders_floor SET refill = 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM ({}) AS d)",
        *DRIFT
    )
});

/// A database's player figures for `GET /admin/stats`, one row: only the players of the
/// buckets in ?1 (a JSON array of bucket prefixes: the ones the live map gives this
/// database), so a bucket's copy in progress, or its old copy before the purge, is never
/// counted twice.
pub const PLAYER_STATS: &str = "\
WITH b(prefix) AS (SELECT value FROM json_each(?1))
SELECT (SELECT COUNT(*) FROM users WHERE substr(id, 1, 2) IN (SELECT prefix FROM b)) AS users,
       (SELECT COUNT(*) FROM chat_sessions WHERE substr(user_id, 1, 2) IN (SELECT prefix FROM b))
         + (SELECT COALESCE(SUM(sessions), 0) FROM archive_players
            WHERE substr(user_id, 1, 2) IN (SELECT prefix FROM b)) AS sessions,
       (SELECT COUNT(*) FROM point_events WHERE substr(user_id, 1, 2) IN (SELECT prefix FROM b))
         + (SELECT COALESCE(SUM(point_events), 0) FROM archive_players
            WHERE substr(user_id, 1, 2) IN (SELECT prefix FROM b)) AS turns,
       (SELECT COALESCE(SUM(total_points), 0) FROM user_stats
        WHERE substr(user_id, 1, 2) IN (SELECT prefix FROM b)) AS total_points";

/// The control database's figures for `GET /admin/stats`, one row: dead letters by status
/// and pending class, replay runs.
pub const CONTROL_STATS: &str = "\
SELECT (SELECT COUNT(*) FROM dead_letters WHERE status = 'pending') AS pending,
       (SELECT COUNT(*) FROM dead_letters WHERE status = 'replayed') AS replayed,
       (SELECT COUNT(*) FROM dead_letters WHERE status = 'discarded') AS discarded,
       (SELECT COUNT(*) FROM replay_runs) AS replay_runs,
       (SELECT json_group_object(error_class, n) FROM
          (SELECT error_class, COUNT(*) AS n FROM dead_letters WHERE status = 'pending' GROUP BY error_class)) AS pending_by_class";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_fit_d1_limits() {
        for s in apply_turns() {
            assert!(s.len() < 100 * 1024, "D1 refuses statements over 100 KB");
            assert!(!s.contains("?2"), "every batch statement binds only ?1");
        }
        assert_eq!(apply_turns()[APPLIED_STATEMENT], INSERT_POINT_EVENTS);
    }

    #[test]
    fn level_case_lists_every_threshold() {
        let case = level_of("x");
        assert!(case.starts_with("CASE WHEN x >= 660 THEN 10"));
        assert!(case.ends_with("WHEN x >= 10 THEN 1 ELSE 0 END"));
    }
}
