//! The SQL of a player's export and erasure: every row of a player in one database, counted,
//! read, or deleted, by the `user_id` indexes (never a scan), and the tombstone.

/// The player tables, in the order an erasure deletes (what refers to `users` first).
pub const PLAYER_TABLES: [(&str, &str); 7] = [
    ("chat_messages", "user_id"),
    ("point_events", "user_id"),
    ("chat_sessions", "user_id"),
    ("user_stats", "user_id"),
    ("leaders", "user_id"),
    ("archive_players", "user_id"),
    ("users", "id"),
];

/// One row: how many rows of the player `?1` each table holds (columns named as the
/// tables), and whether the tombstone `?2` is here (`erased_at`, or NULL).
pub static PLAYER_COUNTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let counts: Vec<String> = PLAYER_TABLES
        .iter()
        .map(|(t, c)| format!("(SELECT COUNT(*) FROM {t} WHERE {c} = ?1) AS {t}"))
        .collect();
    format!(
        "SELECT {}, (SELECT erased_at FROM erasures WHERE user_hash = ?2) AS erased_at",
        counts.join(", ")
    )
});

/// The deletes of an erasure, in order, each binding the player's id as `?1`; the last marks
/// a refill of the leaderboard table, which a member's delete may leave short.
pub static ERASE_ROWS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let mut out: Vec<String> = PLAYER_TABLES
        .iter()
        .map(|(t, c)| format!("DELETE FROM {t} WHERE {c} = ?1"))
        .collect();
    out.push("UPDATE leaders_floor SET refill = 1 WHERE id = 1 AND ?1 IS NOT NULL".into());
    out
});

/// The tombstone: `?1` the player's keyed hash, `?2` the bucket, `?3` when. An erasure run
/// again keeps the first one's time.
pub const TOMBSTONE: &str = "\
INSERT INTO erasures (user_hash, bucket, erased_at) VALUES (?1, ?2, ?3)
ON CONFLICT (user_hash) DO NOTHING";

/// The player's sessions in this database: their rows, and the sessions their messages name
/// (a session whose row went to the archive may still have late messages here).
pub const PLAYER_SESSIONS: &str = "\
SELECT id AS session_id FROM chat_sessions WHERE user_id = ?1
UNION
SELECT DISTINCT session_id FROM chat_messages WHERE user_id = ?1";

/// The dead letters whose payload names the player `?1` (a turn record carries the user id).
pub const PLAYER_LETTERS: &str =
    "SELECT COUNT(*) AS letters FROM dead_letters WHERE instr(payload, ?1) > 0";

/// Deletes them.
pub const ERASE_LETTERS: &str = "DELETE FROM dead_letters WHERE instr(payload, ?1) > 0";

/// The player's rows, for an export: `?1` the player's id.
pub const EXPORT_PROFILE: &str = "\
SELECT id, auth_provider, auth_provider_user_id, display_name, wallet_address, x_user_id,
       x_username, created_at, updated_at
FROM users WHERE id = ?1";
pub const EXPORT_STATS: &str = "\
SELECT total_points, intimacy_level, last_message_at, updated_at FROM user_stats WHERE user_id = ?1";
pub const EXPORT_SESSIONS: &str = "\
SELECT id, user_id, character_type, username, locale, created_at, ended_at
FROM chat_sessions WHERE user_id = ?1 ORDER BY created_at, id";
pub const EXPORT_MESSAGES: &str = "\
SELECT id, user_id, session_id, role, content, score_raw, score_adjusted, emotion, created_at
FROM chat_messages WHERE user_id = ?1 ORDER BY created_at, id";
pub const EXPORT_EVENTS: &str = "\
SELECT id, user_id, session_id, message_id, delta, reason, metadata_json, created_at
FROM point_events WHERE user_id = ?1 ORDER BY created_at, id";
