//! The SQL of sharding: the leaderboard of one database, the bucket map's overrides in the
//! control database, and moving a bucket's rows from one database to another.
//!
//! A bucket's rows are the rows whose user id starts with its two hex digits: the user ids
//! from [`bucket_range`]'s `lo` (inclusive) to `hi` (exclusive), a range of the primary key
//! or of the `user_id` index, never a scan.
//!
//! A move copies each table in pages, keyset-paged by `(user column, primary key)`: a page
//! is one JSON array (built by SQLite's `json_object`, so the Worker only passes text
//! through) upserted in the target: a row already there is replaced when it differs, so a
//! copy that stops and starts again, runs twice, or runs over what an abandoned move left
//! behind, ends with the target equal to the source. Tables go in foreign-key order, and a
//! purge deletes in the reverse order.
//!
//! A database refuses writes for the buckets it has fenced (`bucket_fences`): the hold step
//! fences a bucket in its database before the copy, and the fence stays after the flip, so
//! a writer with a stale map can never add to a copy that is being made or was left behind.

pub use crate::shards::bucket_range;
use crate::shards::COPIED_TABLES;
use std::sync::LazyLock;

/// A player table and the columns a move copies.
pub struct Table {
    pub name: &'static str,
    /// The column holding the user id (`id` for `users`).
    pub user: &'static str,
    /// The primary key.
    pub key: &'static str,
    pub columns: &'static [&'static str],
}

/// The player tables, in the order a copy writes them (foreign keys first).
pub const TABLES: [Table; COPIED_TABLES] = [
    Table {
        name: "users",
        user: "id",
        key: "id",
        columns: &[
            "id",
            "auth_provider",
            "auth_provider_user_id",
            "display_name",
            "wallet_address",
            "x_user_id",
            "x_username",
            "created_at",
            "updated_at",
            "profile_signed_at",
        ],
    },
    Table {
        name: "chat_sessions",
        user: "user_id",
        key: "id",
        columns: &[
            "id",
            "user_id",
            "character_type",
            "username",
            "locale",
            "created_at",
            "ended_at",
        ],
    },
    Table {
        name: "chat_messages",
        user: "user_id",
        key: "id",
        columns: &[
            "id",
            "user_id",
            "session_id",
            "role",
            "content",
            "score_raw",
            "score_adjusted",
            "emotion",
            "created_at",
        ],
    },
    Table {
        name: "point_events",
        user: "user_id",
        key: "id",
        columns: &[
            "id",
            "user_id",
            "session_id",
            "message_id",
            "delta",
            "reason",
            "metadata_json",
            "created_at",
        ],
    },
    Table {
        name: "user_stats",
        user: "user_id",
        key: "user_id",
        columns: &[
            "user_id",
            "total_points",
            "intimacy_level",
            "last_message_at",
            "updated_at",
        ],
    },
    // What the archive holds of each player moves with the bucket; the objects in R2 are
    // keyed by player and session, so they stay where they are.
    Table {
        name: "archive_players",
        user: "user_id",
        key: "user_id",
        columns: &[
            "user_id",
            "objects",
            "sessions",
            "turns",
            "messages",
            "point_events",
            "points",
            "bytes",
            "first_at",
            "last_at",
            "archived_at",
        ],
    },
    // The erasures of the bucket's players, keyed by a hash, found by the bucket they name.
    Table {
        name: "erasures",
        user: "bucket",
        key: "user_hash",
        columns: &["user_hash", "bucket", "erased_at"],
    },
];

impl Table {
    /// One page of the bucket's rows after the cursor `(?1 user, ?2 key)`, below `?3` (the
    /// bucket's `hi`), at most `?4` rows: one row with `rows` (a JSON array), `n`, and the
    /// last row's `last_user` and `last_key` (the next cursor).
    pub fn export_page(&self) -> String {
        let fields: Vec<String> = self.columns.iter().map(|c| format!("'{c}', {c}")).collect();
        format!(
            "\
WITH page AS (
  SELECT {user} AS u, {key} AS k, json_object({fields}) AS r
  FROM {name}
  WHERE ({user} = ?1 AND {key} > ?2) OR ({user} > ?1 AND {user} < ?3)
  ORDER BY {user}, {key}
  LIMIT ?4
)
SELECT COALESCE(json_group_array(json(r)), '[]') AS rows, COUNT(*) AS n,
       (SELECT u FROM page ORDER BY u DESC, k DESC LIMIT 1) AS last_user,
       (SELECT k FROM page ORDER BY u DESC, k DESC LIMIT 1) AS last_key
FROM page",
            user = self.user,
            key = self.key,
            name = self.name,
            fields = fields.join(", "),
        )
    }

    /// Upserts the rows of the JSON array `?1` (a page of [`Self::export_page`]): a row
    /// already there (left by an abandoned move, or by a copy that ran before) is replaced
    /// when it differs, and left unwritten when it is the same.
    pub fn import_page(&self) -> String {
        let values: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("r.value ->> '$.{c}'"))
            .collect();
        let rest: Vec<&str> = self
            .columns
            .iter()
            .copied()
            .filter(|c| *c != self.key)
            .collect();
        let sets: Vec<String> = rest.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let mine: Vec<String> = rest.iter().map(|c| format!("{}.{c}", self.name)).collect();
        let theirs: Vec<String> = rest.iter().map(|c| format!("excluded.{c}")).collect();
        format!(
            "INSERT INTO {name} ({columns})\nSELECT {values}\nFROM json_each(?1) AS r\nWHERE true\n\
             ON CONFLICT ({key}) DO UPDATE SET {sets}\nWHERE ({mine}) IS NOT ({theirs})",
            name = self.name,
            columns = self.columns.join(", "),
            values = values.join(", "),
            key = self.key,
            sets = sets.join(", "),
            mine = mine.join(", "),
            theirs = theirs.join(", "),
        )
    }

    /// Deletes at most `?3` of the bucket's rows (`?1 <= user < ?2`), by primary key: the
    /// tables of schema 2 have no rowid.
    pub fn purge_page(&self) -> String {
        format!(
            "DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {name} WHERE {user} >= ?1 AND {user} < ?2 LIMIT ?3)",
            name = self.name,
            key = self.key,
            user = self.user,
        )
    }
}

/// What a database holds of a bucket (`?1 <= user < ?2`): rows per table and the points, so
/// that both sides of a move can be compared.
pub static BUCKET_SUMMARY: LazyLock<String> = LazyLock::new(|| {
    let counts: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "(SELECT COUNT(*) FROM {name} WHERE {user} >= ?1 AND {user} < ?2) AS {name}",
                name = t.name,
                user = t.user
            )
        })
        .collect();
    format!(
        "SELECT {},\n(SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id >= ?1 AND user_id < ?2) AS points,\n(SELECT COALESCE(SUM(total_points), 0) FROM user_stats WHERE user_id >= ?1 AND user_id < ?2) AS total_points",
        counts.join(",\n")
    )
});

/// The bucket map's overrides (control database), with the state of each bucket's move.
pub const SELECT_OVERRIDES: &str = "\
SELECT bucket, binding, moving, moved_from, held_at, copy_to, flipped_at
FROM shard_buckets ORDER BY bucket";

/// Holds bucket `?1` (now in `?2`) while it moves, at time `?3`. Holding a held bucket again
/// keeps its first hold time, so repeating the step never restarts the wait before the copy.
pub const HOLD_BUCKET: &str = "\
INSERT INTO shard_buckets (bucket, binding, moving, held_at, updated_at) VALUES (?1, ?2, 1, ?3, ?3)
ON CONFLICT (bucket) DO UPDATE SET moving = 1,
  held_at = CASE WHEN shard_buckets.moving = 1 THEN shard_buckets.held_at ELSE excluded.held_at END,
  updated_at = excluded.updated_at";

/// Notes that bucket `?1` is being copied to `?2`, at time `?3`: until it is flipped there or
/// that copy is purged, the bucket cannot be held for another move.
pub const COPY_STARTED: &str =
    "UPDATE shard_buckets SET copy_to = ?2, updated_at = ?3 WHERE bucket = ?1";

/// Puts bucket `?1` in `?2`, copied from `?3`, and lets its turns through, at time `?4`.
pub const FLIP_BUCKET: &str = "\
INSERT INTO shard_buckets (bucket, binding, moving, moved_from, flipped_at, updated_at)
VALUES (?1, ?2, 0, ?3, ?4, ?4)
ON CONFLICT (bucket) DO UPDATE SET binding = excluded.binding, moving = 0,
  moved_from = excluded.moved_from, held_at = NULL, copy_to = NULL,
  flipped_at = excluded.flipped_at, updated_at = excluded.updated_at";

/// Lets bucket `?1`'s turns through where it is (an abandoned move), at time `?2`. A copy it
/// started stays noted in `copy_to` until it is purged.
pub const RELEASE_BUCKET: &str =
    "UPDATE shard_buckets SET moving = 0, held_at = NULL, updated_at = ?2 WHERE bucket = ?1";

/// Forgets where bucket `?1` came from once that copy is purged, at time `?2`.
pub const PURGED_SOURCE: &str =
    "UPDATE shard_buckets SET moved_from = NULL, updated_at = ?2 WHERE bucket = ?1";

/// Forgets the abandoned copy of bucket `?1` once it is purged, at time `?2`.
pub const PURGED_COPY: &str =
    "UPDATE shard_buckets SET copy_to = NULL, updated_at = ?2 WHERE bucket = ?1";

/// Fences bucket prefix `?1` in this database (`?2`: `moving` or `moved`) at time `?3`: its
/// players' rows are written here no more.
pub const FENCE_BUCKET: &str = "\
INSERT INTO bucket_fences (bucket, reason, fenced_at) VALUES (?1, ?2, ?3)
ON CONFLICT (bucket) DO UPDATE SET reason = excluded.reason, fenced_at = excluded.fenced_at";

/// Lifts the fence of bucket prefix `?1`: this database holds the bucket (again).
pub const UNFENCE_BUCKET: &str = "DELETE FROM bucket_fences WHERE bucket = ?1";

/// The fence of bucket prefix `?1` in this database, if any.
pub const SELECT_FENCE: &str = "SELECT reason FROM bucket_fences WHERE bucket = ?1";

/// Records what the consumer can reach (control database): binding `?1`, its newest
/// migration `?2` (NULL if unreadable), at time `?3`.
pub const REPORT_CONSUMER_DATABASE: &str = "\
INSERT INTO consumer_databases (binding, migration, reported_at) VALUES (?1, ?2, ?3)
ON CONFLICT (binding) DO UPDATE SET migration = excluded.migration,
  reported_at = excluded.reported_at";

/// What the consumer last reported of every database (control database).
pub const SELECT_CONSUMER_DATABASES: &str =
    "SELECT binding, migration, reported_at FROM consumer_databases ORDER BY binding";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_ranges_cover_exactly_their_prefix() {
        assert_eq!(bucket_range(0), ("00".into(), "01".into()));
        assert_eq!(bucket_range(0x19), ("19".into(), "1:".into()));
        assert_eq!(bucket_range(0xff), ("ff".into(), "fg".into()));
        for b in 0..=255u8 {
            let (lo, hi) = bucket_range(b);
            let id = format!("{}{}", lo, "f".repeat(34));
            assert!(
                lo.as_str() <= id.as_str() && id.as_str() < hi.as_str(),
                "{b}"
            );
            if b < 255 {
                let next = bucket_range(b + 1).0;
                assert!(hi.as_str() <= next.as_str(), "{b}");
            }
        }
    }
}
