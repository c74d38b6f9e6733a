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

use crate::scoring::LEVEL_THRESHOLDS;
use std::sync::LazyLock;

/// Upserts the users of the rows in `?1`. The id derives from the identity, so it is the
/// conflict target; a profile (display name, wallet) only moves forward in time, and a row
/// without a profile field keeps the one stored.
pub const UPSERT_USERS: &str = "\
INSERT INTO users (id, auth_provider, auth_provider_user_id, display_name, wallet_address, created_at, updated_at)
SELECT r.value ->> '$.user_id', r.value ->> '$.provider', r.value ->> '$.provider_user_id',
       r.value ->> '$.display_name', r.value ->> '$.wallet_address',
       r.value ->> '$.seen_at', r.value ->> '$.seen_at'
FROM json_each(?1) AS r
WHERE true
ON CONFLICT (id) DO UPDATE SET
  display_name = COALESCE(excluded.display_name, users.display_name),
  wallet_address = COALESCE(excluded.wallet_address, users.wallet_address),
  updated_at = excluded.updated_at
WHERE excluded.updated_at > users.updated_at";

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
) AS n
GROUP BY n.user_id
ON CONFLICT (user_id) DO UPDATE SET
  total_points = user_stats.total_points + excluded.total_points,
  intimacy_level = {update_level},
  last_message_at = MAX(COALESCE(user_stats.last_message_at, 0), excluded.last_message_at),
  updated_at = MAX(user_stats.updated_at, excluded.updated_at)",
        insert_level = level_of("SUM(n.delta)"),
        update_level = level_of("(user_stats.total_points + excluded.total_points)"),
    )
});

/// Inserts both messages of each turn: the player's (scored) and the character's (with its
/// emotion). Existing ids are left alone.
pub const INSERT_MESSAGES: &str = "\
INSERT INTO chat_messages (id, user_id, session_id, role, content, score_raw, score_adjusted, emotion, created_at)
SELECT r.value ->> '$.turn_id', r.value ->> '$.user_id', r.value ->> '$.session_id', 'user',
       r.value ->> '$.user_content', r.value ->> '$.score_raw', r.value ->> '$.score_adjusted', NULL,
       r.value ->> '$.user_at'
FROM json_each(?1) AS r
UNION ALL
SELECT r.value ->> '$.agent_id', r.value ->> '$.user_id', r.value ->> '$.session_id', 'agent',
       r.value ->> '$.agent_content', NULL, NULL, r.value ->> '$.emotion', r.value ->> '$.agent_at'
FROM json_each(?1) AS r
WHERE true
ON CONFLICT (id) DO NOTHING";

/// Inserts each turn's point event. Its `changes` count is the number of turns newly applied.
pub const INSERT_POINT_EVENTS: &str = "\
INSERT INTO point_events (id, user_id, session_id, message_id, delta, reason, metadata_json, created_at)
SELECT r.value ->> '$.event_id', r.value ->> '$.user_id', r.value ->> '$.session_id', r.value ->> '$.turn_id',
       r.value ->> '$.delta', r.value ->> '$.reason', r.value ->> '$.metadata_json', r.value ->> '$.agent_at'
FROM json_each(?1) AS r
WHERE true
ON CONFLICT (id) DO NOTHING";

/// Ends the sessions in which a turn of `?1` ended the game. Deliveries come in any order,
/// so the earliest game-over time wins, whichever batch brought it.
pub const END_SESSIONS: &str = "\
UPDATE chat_sessions
SET ended_at = MIN(COALESCE(ended_at, g.at), g.at)
FROM (
  SELECT r.value ->> '$.session_id' AS id, MIN(r.value ->> '$.user_at') AS at
  FROM json_each(?1) AS r WHERE r.value ->> '$.game_over' = 1
  GROUP BY r.value ->> '$.session_id'
) AS g
WHERE chat_sessions.id = g.id";

/// The consumer's whole batch, in order; each statement binds `batch::turns_json` as `?1`.
/// Index [`APPLIED_STATEMENT`] is the point-event insert, whose `changes` count new turns.
pub fn apply_turns() -> [&'static str; 5] {
    [
        UPSERT_USERS,
        ADD_NEW_POINTS.as_str(),
        INSERT_MESSAGES,
        INSERT_POINT_EVENTS,
        END_SESSIONS,
    ]
}

/// Position of [`INSERT_POINT_EVENTS`] in [`apply_turns`].
pub const APPLIED_STATEMENT: usize = 3;

/// Starts a session (after [`UPSERT_USERS`] in the same batch).
/// Binds: id, user_id, character_type, username, locale, created_at.
pub const INSERT_SESSION: &str = "\
INSERT INTO chat_sessions (id, user_id, character_type, username, locale, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// One session by id. Binds: id.
pub const SELECT_SESSION: &str = "\
SELECT id, user_id, character_type, username, locale, created_at, ended_at
FROM chat_sessions WHERE id = ?1";

/// A player's stats snapshot. Binds: user_id.
pub const SELECT_STATS: &str = "\
SELECT total_points, intimacy_level, last_message_at FROM user_stats WHERE user_id = ?1";

/// A session's messages, oldest first (a turn's two messages share a timestamp and sort by
/// id: the player's id ends in 00, the reply's in 01). Binds: user_id, session_id, limit.
pub const SELECT_SESSION_MESSAGES: &str = "\
SELECT id, role, content, score_raw, score_adjusted, emotion, created_at
FROM chat_messages WHERE user_id = ?1 AND session_id = ?2
ORDER BY created_at, id LIMIT ?3";

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
