//! The archive's SQL: finding a database's turns older than a cutoff, one session at a time,
//! and committing an object written to R2 by deleting the rows it holds, atomically with
//! its index row (`archive_parts`, migration 0010).
//!
//! A turn is archived whole: its player's message (id ending in `00`), its reply (`01`) and
//! its point event (`02`) share a stem (`ids`), so the reply and the event are found by
//! key from the player's message, never by a scan.

/// The sessions of a database with a turn older than `?3` (ms), after `?1` (a session id,
/// `''` for the first), created before `?2` (the text of the smallest UUIDv7 of the cutoff:
/// session ids are time-ordered, so the walk never visits a session started since), of the
/// buckets in `?4` (a JSON array of prefixes: the ones the live map gives this database and
/// that are not moving), at most `?5`, in id order. Each candidate is one probe of the
/// messages index.
pub const SESSIONS_TO_ARCHIVE: &str = "\
SELECT s.id AS session_id, s.user_id AS user_id
FROM chat_sessions AS s
WHERE s.id > ?1 AND s.id < ?2
  AND substr(s.user_id, 1, 2) IN (SELECT value FROM json_each(?4))
  AND EXISTS (SELECT 1 FROM chat_messages AS m
              WHERE m.user_id = s.user_id AND m.session_id = s.id AND m.created_at < ?3)
ORDER BY s.id
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

/// Commits an object: its index row, written only if every row it holds is still in this
/// database (no other run archived any of them since they were read) and the player's
/// bucket is not fenced (a move started since). `?1` is `archive::PartCommit` as JSON. An
/// object committed before under the same key (a run that stopped after its commit, run
/// again) changes nothing: the same key is the same rows.
pub const COMMIT_PART: &str = "\
INSERT INTO archive_parts (key, user_id, session_id, first_at, last_at, turns, messages,
                           point_events, points, bytes, archived_at)
SELECT ?1 ->> '$.key', ?1 ->> '$.user_id', ?1 ->> '$.session_id', ?1 ->> '$.first_at',
       ?1 ->> '$.last_at', ?1 ->> '$.turns', ?1 ->> '$.messages', ?1 ->> '$.point_events',
       ?1 ->> '$.points', ?1 ->> '$.bytes', ?1 ->> '$.archived_at'
WHERE (SELECT COUNT(*) FROM chat_messages
       WHERE id IN (SELECT value FROM json_each(?1, '$.message_ids'))) = ?1 ->> '$.messages'
  AND (SELECT COUNT(*) FROM point_events
       WHERE id IN (SELECT value FROM json_each(?1, '$.event_ids'))) = ?1 ->> '$.point_events'
  AND NOT EXISTS (SELECT 1 FROM bucket_fences WHERE bucket = substr(?1 ->> '$.user_id', 1, 2))
ON CONFLICT (key) DO NOTHING";

/// Deletes the messages of a committed object (after [`COMMIT_PART`], in its batch): only
/// when its index row exists, so a lost race deletes nothing.
pub const DELETE_PART_MESSAGES: &str = "\
DELETE FROM chat_messages
WHERE id IN (SELECT value FROM json_each(?1, '$.message_ids'))
  AND EXISTS (SELECT 1 FROM archive_parts WHERE key = ?1 ->> '$.key')";

/// Deletes the point events of a committed object, as [`DELETE_PART_MESSAGES`].
pub const DELETE_PART_EVENTS: &str = "\
DELETE FROM point_events
WHERE id IN (SELECT value FROM json_each(?1, '$.event_ids'))
  AND EXISTS (SELECT 1 FROM archive_parts WHERE key = ?1 ->> '$.key')";

/// Whether the object is committed (last in the commit's batch).
pub const PART_COMMITTED: &str =
    "SELECT EXISTS (SELECT 1 FROM archive_parts WHERE key = ?1 ->> '$.key') AS committed";

/// The commit's batch, in order; each statement binds the part's JSON as `?1`.
pub const COMMIT: [&str; 4] = [
    COMMIT_PART,
    DELETE_PART_MESSAGES,
    DELETE_PART_EVENTS,
    PART_COMMITTED,
];

/// The columns of an index row.
const PART_COLUMNS: &str =
    "key, user_id, session_id, first_at, last_at, turns, messages, point_events, points, bytes, archived_at";

/// The objects a history page lists at most ([`SESSION_PARTS`]'s `?4`). Each holds at least
/// one message before the cursor, so this many always fill the largest page (100) and more:
/// a page walks them newest first and stops once the rest are older than what it holds.
pub const PARTS_PER_PAGE: i64 = 128;

/// The objects of a session that may hold messages before `?3` (ms; NULL: all), newest
/// first, at most `?4`. A history page walks them until it has its messages. Binds: user,
/// session, before_at, limit.
pub static SESSION_PARTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {PART_COLUMNS} FROM archive_parts
WHERE session_id = ?2 AND user_id = ?1 AND (?3 IS NULL OR first_at <= ?3)
ORDER BY last_at DESC, key DESC
LIMIT ?4"
    )
});

/// A player's objects, oldest first, after the key `?2` (`''` for the first), at most `?3`.
/// Binds: user, after, limit.
pub static USER_PARTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {PART_COLUMNS} FROM archive_parts
WHERE user_id = ?1 AND key > ?2
ORDER BY key
LIMIT ?3"
    )
});

/// For a consumer batch: the turns of `?1` that are not in this database but fall in the
/// time range of one of their session's objects that the turn's row has not been checked
/// against (`archive_seen`, the number of such objects seen when the consumer last looked
/// in R2), with each such object's key. The consumer looks for them in those objects
/// before it writes them (`consumer::turns`).
pub const SELECT_ARCHIVED: &str = "\
SELECT r.value ->> '$.turn_id' AS turn_id, a.key AS key,
       (SELECT COUNT(*) FROM archive_parts AS c
        WHERE c.session_id = r.value ->> '$.session_id'
          AND c.first_at <= r.value ->> '$.user_at' AND c.last_at >= r.value ->> '$.user_at') AS covering
FROM json_each(?1) AS r
JOIN archive_parts AS a
  ON a.session_id = r.value ->> '$.session_id'
 AND a.first_at <= r.value ->> '$.user_at' AND a.last_at >= r.value ->> '$.user_at'
WHERE NOT EXISTS (SELECT 1 FROM chat_messages AS m WHERE m.id = r.value ->> '$.turn_id')
  AND covering > COALESCE(r.value ->> '$.archive_seen', 0)
ORDER BY r.key, a.key";

#[cfg(test)]
mod tests {
    #[test]
    fn statements_bind_one_part() {
        for s in super::COMMIT {
            assert!(s.contains("?1") && !s.contains("?2"));
        }
    }
}
