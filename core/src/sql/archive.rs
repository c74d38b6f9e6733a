//! The archive's SQL: finding a database's turns older than a cutoff, one session at a time,
//! and committing an object written to R2: the rows it holds deleted, and the player's
//! `archive_players` row moved by what it holds, in one transaction (migration 0010).
//!
//! A turn is archived whole: its player's message (id ending in `00`), its reply (`01`) and
//! its point event (`02`) share a stem (`ids`), so the reply and the event are found by key
//! from the player's message, never by a scan. A session's row follows its last turn.

/// The sessions of a database with a message older than `?3` (ms), after the session
/// `(?1 user, ?2 session)` (`''`, `''` for the first), of the buckets in `?4` (a JSON array
/// of prefixes: the ones the live map gives this database and that are not moving), at most
/// `?5`, in (user, session) order. It walks the messages' index, so it finds a late turn of
/// a session whose row is archived already, and costs what D1 holds (the hot turns), never
/// what the archive holds.
pub const SESSIONS_TO_ARCHIVE: &str = "\
SELECT user_id, session_id
FROM chat_messages
WHERE (user_id, session_id) > (?1, ?2)
  AND substr(user_id, 1, 2) IN (SELECT value FROM json_each(?4))
GROUP BY user_id, session_id
HAVING MIN(created_at) < ?3
ORDER BY user_id, session_id
LIMIT ?5";

/// The oldest turns of one session: its player messages older than `?3`, after the turn
/// `(?5 created_at, ?6 id)` (NULLs for the first), at most `?4`, oldest first. Binds: user,
/// session, cutoff, limit, after_at, after_id.
macro_rules! old_turns {
    () => {
        "\
WITH t AS (
  SELECT id FROM chat_messages
  WHERE user_id = ?1 AND session_id = ?2 AND created_at < ?3 AND role = 'user'
    AND (?5 IS NULL OR (created_at, id) > (?5, ?6))
  ORDER BY created_at, id
  LIMIT ?4
)"
    };
}

/// The messages of [`old_turns!`]: each turn's player message and reply, oldest first.
pub const OLD_TURN_MESSAGES: &str = concat!(
    old_turns!(),
    "
SELECT m.id, m.user_id, m.session_id, m.role, m.content, m.score_raw, m.score_adjusted,
       m.emotion, m.created_at
FROM t JOIN chat_messages AS m ON m.id IN (t.id, substr(t.id, 1, 34) || '01')
ORDER BY m.created_at, m.id"
);

/// The point events of [`old_turns!`], oldest first.
pub const OLD_TURN_EVENTS: &str = concat!(
    old_turns!(),
    "
SELECT p.id, p.user_id, p.session_id, p.message_id, p.delta, p.reason, p.metadata_json,
       p.created_at
FROM t JOIN point_events AS p ON p.id = substr(t.id, 1, 34) || '02'
ORDER BY p.created_at, p.id"
);

/// The session's row, if it started before the cutoff, and how many of its messages D1
/// holds in all: when an object takes all of them, it takes the row too. Read in the same
/// batch as the turns. Binds: user, session, cutoff.
pub const SESSION_TAIL: &str = "\
SELECT s.id, s.user_id, s.character_type, s.username, s.locale, s.created_at, s.ended_at,
       (SELECT COUNT(*) FROM chat_messages AS m WHERE m.user_id = ?1 AND m.session_id = ?2) AS messages
FROM chat_sessions AS s
WHERE s.id = ?2 AND s.user_id = ?1 AND s.created_at < ?3";

/// Commits an object (`?1` is `archive::ports::PartCommit` as JSON): marks the commit only
/// if every row the object holds is still in this database (no other run archived any of
/// them since they were read), the player's bucket is not fenced (a move started since),
/// and, when it takes the session's row, the row is unchanged and the object holds every
/// message of the session left. A lost race, or the same object committed before, marks
/// nothing, and the batch's other statements then change nothing.
pub const COMMIT_GUARD: &str = "\
INSERT INTO archive_commits (key)
SELECT ?1 ->> '$.key'
WHERE (SELECT COUNT(*) FROM chat_messages
       WHERE id IN (SELECT value FROM json_each(?1, '$.message_ids'))) = ?1 ->> '$.messages'
  AND (SELECT COUNT(*) FROM point_events
       WHERE id IN (SELECT value FROM json_each(?1, '$.event_ids'))) = ?1 ->> '$.point_events'
  AND NOT EXISTS (SELECT 1 FROM bucket_fences WHERE bucket = substr(?1 ->> '$.user_id', 1, 2))
  AND (?1 ->> '$.session_archived' = 0 OR (
        EXISTS (SELECT 1 FROM chat_sessions
                WHERE id = ?1 ->> '$.session_id' AND user_id = ?1 ->> '$.user_id'
                  AND ended_at IS ?1 ->> '$.session_ended_at')
        AND (SELECT COUNT(*) FROM chat_messages
             WHERE user_id = ?1 ->> '$.user_id' AND session_id = ?1 ->> '$.session_id')
            = ?1 ->> '$.messages'))
ON CONFLICT (key) DO NOTHING";

/// A committed object's part of the player's row: what the archive holds of them.
pub const ADD_TO_PLAYER: &str = "\
INSERT INTO archive_players (user_id, objects, sessions, turns, messages, point_events, points,
                             bytes, first_at, last_at, archived_at)
SELECT ?1 ->> '$.user_id', 1, ?1 ->> '$.session_archived', ?1 ->> '$.turns',
       ?1 ->> '$.messages', ?1 ->> '$.point_events', ?1 ->> '$.points', ?1 ->> '$.bytes',
       ?1 ->> '$.first_at', ?1 ->> '$.last_at', ?1 ->> '$.archived_at'
WHERE EXISTS (SELECT 1 FROM archive_commits WHERE key = ?1 ->> '$.key')
ON CONFLICT (user_id) DO UPDATE SET
  objects = archive_players.objects + 1,
  sessions = archive_players.sessions + excluded.sessions,
  turns = archive_players.turns + excluded.turns,
  messages = archive_players.messages + excluded.messages,
  point_events = archive_players.point_events + excluded.point_events,
  points = archive_players.points + excluded.points,
  bytes = archive_players.bytes + excluded.bytes,
  first_at = MIN(archive_players.first_at, excluded.first_at),
  last_at = MAX(archive_players.last_at, excluded.last_at),
  archived_at = excluded.archived_at";

/// Deletes the messages of a committed object.
pub const DELETE_PART_MESSAGES: &str = "\
DELETE FROM chat_messages
WHERE id IN (SELECT value FROM json_each(?1, '$.message_ids'))
  AND EXISTS (SELECT 1 FROM archive_commits WHERE key = ?1 ->> '$.key')";

/// Deletes the point events of a committed object.
pub const DELETE_PART_EVENTS: &str = "\
DELETE FROM point_events
WHERE id IN (SELECT value FROM json_each(?1, '$.event_ids'))
  AND EXISTS (SELECT 1 FROM archive_commits WHERE key = ?1 ->> '$.key')";

/// Deletes the session's row when the committed object took it.
pub const DELETE_PART_SESSION: &str = "\
DELETE FROM chat_sessions
WHERE id = ?1 ->> '$.session_id' AND ?1 ->> '$.session_archived' = 1
  AND EXISTS (SELECT 1 FROM archive_commits WHERE key = ?1 ->> '$.key')";

/// Whether this batch committed the object.
pub const PART_COMMITTED: &str =
    "SELECT EXISTS (SELECT 1 FROM archive_commits WHERE key = ?1 ->> '$.key') AS committed";

/// Leaves the scratch table empty.
pub const CLEAR_COMMIT: &str = "DELETE FROM archive_commits WHERE key = ?1 ->> '$.key'";

/// The commit's batch, in order; each statement binds the part's JSON as `?1`.
pub const COMMIT: [&str; 7] = [
    COMMIT_GUARD,
    ADD_TO_PLAYER,
    DELETE_PART_MESSAGES,
    DELETE_PART_EVENTS,
    DELETE_PART_SESSION,
    PART_COMMITTED,
    CLEAR_COMMIT,
];
/// Position of [`PART_COMMITTED`] in [`COMMIT`].
pub const COMMITTED_STATEMENT: usize = 5;

/// What the archive holds of a player (one row, or none). Binds: user.
pub const PLAYER_ARCHIVE: &str = "\
SELECT objects, sessions, turns, messages, point_events, points, bytes, first_at, last_at
FROM archive_players WHERE user_id = ?1";

/// For a consumer batch: the turns of `?1` that are not in this database but whose time
/// falls in what the archive holds of their player, beyond what the turn's row was checked
/// against (`archive_seen`: the player's `objects` when the consumer last looked in R2),
/// with the player's `objects` now. The consumer looks for them in the player's objects
/// before it writes them (`consumer::turns`).
pub const SELECT_ARCHIVED: &str = "\
SELECT r.value ->> '$.turn_id' AS turn_id, r.value ->> '$.user_id' AS user_id,
       r.value ->> '$.session_id' AS session_id, r.value ->> '$.user_at' AS at,
       a.objects AS objects
FROM json_each(?1) AS r
JOIN archive_players AS a ON a.user_id = r.value ->> '$.user_id'
WHERE a.first_at <= r.value ->> '$.user_at' AND r.value ->> '$.user_at' <= a.last_at
  AND a.objects > COALESCE(r.value ->> '$.archive_seen', 0)
  AND NOT EXISTS (SELECT 1 FROM chat_messages AS m WHERE m.id = r.value ->> '$.turn_id')";

#[cfg(test)]
mod tests {
    #[test]
    fn statements_bind_one_part() {
        for s in super::COMMIT {
            assert!(s.contains("?1") && !s.contains("?2"));
        }
        assert!(super::COMMIT[super::COMMITTED_STATEMENT].starts_with("SELECT"));
    }
}
