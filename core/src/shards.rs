//! Players sharded over many D1 databases.
//!
//! Every player belongs to one of [`BUCKETS`] buckets: the first byte of the user id, which
//! is a UUIDv5 (a SHA-1 hash of the external identity), so buckets are even and a player's
//! bucket never changes. All of a player's rows (`users`, `user_stats`, `chat_sessions`,
//! `chat_messages`, `point_events`) live in the database of its bucket, so each player's
//! invariants stay inside one atomic batch.
//!
//! The bucket map says which D1 binding (`DB_0`, `DB_1`, …) holds each bucket. It starts
//! from the `SHARD_MAP` variable, and the control database (`DB_0`, which also holds the dead
//! letters and replay runs) keeps per-bucket overrides: the new home of a moved bucket, and
//! the `moving` mark that holds a bucket's turns in the queue while its rows are copied. A
//! variable cannot change without a redeploy, and a redeploy reaches isolates over time, so
//! the live part of the map is data that both Workers read (see `docs/design.md`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Buckets players are spread over.
pub const BUCKETS: usize = 256;

/// The binding of the control database: dead letters, replay runs, the map's overrides.
pub const CONTROL: &str = "DB_0";

/// The bucket of a user id: its first byte.
pub fn bucket(user_id: &Uuid) -> u8 {
    user_id.as_bytes()[0]
}

/// The bucket of a user id written as text (its first two hex digits), for SQL and TS
/// readers: `substr(user_id, 1, 2)`.
pub fn bucket_prefix(bucket: u8) -> String {
    format!("{bucket:02x}")
}

/// The user ids of a bucket: `lo <= id < hi`.
pub fn bucket_range(bucket: u8) -> (String, String) {
    let lo = bucket_prefix(bucket);
    let mut hi = lo.clone().into_bytes();
    // The next string after every id with this prefix: the last digit plus one byte ('9'
    // becomes ':', 'f' becomes 'g'), which sorts after it in SQLite's byte order.
    *hi.last_mut().expect("two digits") += 1;
    (lo, String::from_utf8(hi).expect("ASCII"))
}

/// How many tables a bucket's copy goes through (`sql::shards::TABLES`, whose length is
/// this constant, so the two cannot disagree).
pub const COPIED_TABLES: usize = 7;

/// Whether `name` is a player database binding: `DB_` and a number.
pub fn valid_binding(name: &str) -> bool {
    name.strip_prefix("DB_")
        .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// One bucket's override, as the control database keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub bucket: u8,
    pub binding: String,
    pub moving: bool,
}

/// A row of `sql::shards::SELECT_OVERRIDES`, as D1 gives it (SQLite has no booleans).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct OverrideRow {
    pub bucket: u8,
    pub binding: String,
    pub moving: u8,
    /// The database the last move copied from, until that copy is purged.
    pub moved_from: Option<String>,
    /// When the bucket was held (epoch ms), while it is.
    #[serde(default)]
    pub held_at: Option<i64>,
    /// Where a copy of the bucket was started, until it is flipped to or purged.
    #[serde(default)]
    pub copy_to: Option<String>,
    /// When the bucket was last flipped to its binding (epoch ms).
    #[serde(default)]
    pub flipped_at: Option<i64>,
}

impl From<&OverrideRow> for Override {
    fn from(r: &OverrideRow) -> Self {
        Self {
            bucket: r.bucket,
            binding: r.binding.clone(),
            moving: r.moving != 0,
        }
    }
}

/// Which binding holds each bucket, and which buckets are moving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    binding: Vec<String>,
    moving: Vec<bool>,
}

impl ShardMap {
    /// Parses `SHARD_MAP`: `DB_0` (every bucket in one database) or comma-separated
    /// `FIRST-LAST=DB_k` ranges (inclusive, decimal) that name every bucket exactly once,
    /// e.g. `0-127=DB_0,128-255=DB_1`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let mut binding: Vec<Option<String>> = vec![None; BUCKETS];
        if valid_binding(spec) {
            binding.iter_mut().for_each(|b| *b = Some(spec.to_owned()));
        } else {
            for part in spec.split(',').map(str::trim) {
                let (range, name) = part
                    .split_once('=')
                    .ok_or_else(|| format!("{part:?} is not FIRST-LAST=DB_k"))?;
                let name = name.trim();
                if !valid_binding(name) {
                    return Err(format!(
                        "{name:?} is not a database binding (DB_0, DB_1, …)"
                    ));
                }
                let (first, last) = match range.trim().split_once('-') {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (range.trim(), range.trim()),
                };
                let number = |s: &str| {
                    s.parse::<usize>()
                        .ok()
                        .filter(|&n| n < BUCKETS)
                        .ok_or_else(|| format!("{s:?} is not a bucket from 0 to 255"))
                };
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("range {first}-{last} is backwards"));
                }
                for (b, slot) in binding.iter_mut().enumerate().take(last + 1).skip(first) {
                    if slot.is_some() {
                        return Err(format!("bucket {b} is named twice"));
                    }
                    *slot = Some(name.to_owned());
                }
            }
        }
        let missing: Vec<usize> = (0..BUCKETS).filter(|&b| binding[b].is_none()).collect();
        if let Some(first) = missing.first() {
            return Err(format!(
                "{} buckets have no database, the first is {first}",
                missing.len()
            ));
        }
        Ok(Self {
            binding: binding.into_iter().map(Option::unwrap_or_default).collect(),
            moving: vec![false; BUCKETS],
        })
    }

    /// The map with the control database's overrides applied.
    pub fn with_overrides(mut self, overrides: &[Override]) -> Result<Self, String> {
        for o in overrides {
            if !valid_binding(&o.binding) {
                return Err(format!(
                    "bucket {} is mapped to {:?}, not a database binding",
                    o.bucket, o.binding
                ));
            }
            self.binding[usize::from(o.bucket)] = o.binding.clone();
            self.moving[usize::from(o.bucket)] = o.moving;
        }
        Ok(self)
    }

    pub fn binding_of_bucket(&self, bucket: u8) -> &str {
        &self.binding[usize::from(bucket)]
    }

    /// The binding holding this player's rows.
    pub fn binding(&self, user_id: &Uuid) -> &str {
        self.binding_of_bucket(bucket(user_id))
    }

    /// Whether this player's bucket is being moved: its turns wait in the queue.
    pub fn is_moving(&self, user_id: &Uuid) -> bool {
        self.moving[usize::from(bucket(user_id))]
    }

    pub fn bucket_is_moving(&self, bucket: u8) -> bool {
        self.moving[usize::from(bucket)]
    }

    /// The buckets the map gives `binding`.
    pub fn buckets_of(&self, binding: &str) -> Vec<u8> {
        (0..=255u8)
            .filter(|&b| self.binding_of_bucket(b) == binding)
            .collect()
    }

    /// The buckets the map gives `binding` as a JSON array of their prefixes (see
    /// [`bucket_prefix`]): what the reading SQL binds so that each database counts only its
    /// own players, never a copy in progress or one not purged yet. `settled` leaves out the
    /// buckets that are moving, for the statements that write what they read (reconcile).
    pub fn prefixes_json(&self, binding: &str, settled: bool) -> String {
        let prefixes: Vec<String> = self
            .buckets_of(binding)
            .into_iter()
            .filter(|&b| !(settled && self.bucket_is_moving(b)))
            .map(bucket_prefix)
            .collect();
        serde_json::to_string(&prefixes).expect("strings serialize")
    }

    /// Every binding the map names, each once, in order of their number.
    pub fn bindings(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.binding.iter().map(String::as_str).collect();
        all.sort_by_key(|b| (b.len(), *b));
        all.dedup();
        all
    }

    /// The buckets each binding holds, as `FIRST-LAST=DB_k` ranges: the map's own syntax.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut start = 0;
        for b in 1..=BUCKETS {
            if b == BUCKETS || self.binding[b] != self.binding[start] {
                parts.push(format!("{start}-{}={}", b - 1, self.binding[start]));
                start = b;
            }
        }
        parts.join(",")
    }
}

/// Where a bucket's copy goes on: the table (index into `sql::shards::TABLES`) and the last
/// `(user, key)` copied from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCursor {
    pub table: usize,
    pub user: String,
    pub key: String,
}

impl CopyCursor {
    /// The start of bucket `bucket`'s copy.
    pub fn start(bucket: u8) -> Self {
        Self {
            table: 0,
            user: bucket_range(bucket).0,
            key: String::new(),
        }
    }

    /// `table.user.key`: user ids and keys are UUIDs (or empty), which hold no dot.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.table, self.user, self.key)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let table = parts.next()?.parse().ok()?;
        let (user, key) = (parts.next()?, parts.next()?);
        let fits =
            |s: &str| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        (table < COPIED_TABLES && fits(user) && fits(key)).then(|| Self {
            table,
            user: user.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Where the copy goes on after a page of `n` rows (at most `limit`) that ended at
    /// `last`: the same table after `last` if the page was full, else the next table, or
    /// `None` once the last table is done.
    pub fn after(
        self,
        bucket: u8,
        n: usize,
        limit: usize,
        last: Option<(String, String)>,
    ) -> Option<Self> {
        match last {
            Some((user, key)) if n >= limit => Some(Self {
                table: self.table,
                user,
                key,
            }),
            _ if self.table + 1 < COPIED_TABLES => Some(Self {
                table: self.table + 1,
                ..Self::start(bucket)
            }),
            _ => None,
        }
    }
}

/// What one database holds of a bucket (a row of `sql::shards::BUCKET_SUMMARY`): both sides
/// of a move must agree before the map flips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSummary {
    pub users: i64,
    pub chat_sessions: i64,
    pub chat_messages: i64,
    pub point_events: i64,
    pub user_stats: i64,
    /// Players with something archived (`#[serde(default)]`: a summary from before the archive).
    #[serde(default)]
    pub archive_players: i64,
    /// Erased players' rows (`#[serde(default)]`: a summary from before erasures).
    #[serde(default)]
    pub erasures: i64,
    pub points: i64,
    pub total_points: i64,
}

/// One player on the leaderboard (a row of `sql::leaders::LEADERBOARD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub user_id: String,
    pub display_name: Option<String>,
    pub x_username: Option<String>,
    pub total_points: i64,
    pub intimacy_level: i64,
}

/// The top `limit` across databases, from each database's own top `limit`: highest total
/// first, ties broken by user id (ascending), the same order each database used.
pub fn merge_leaders(pages: impl IntoIterator<Item = Vec<Leader>>, limit: usize) -> Vec<Leader> {
    let mut all: Vec<Leader> = pages.into_iter().flatten().collect();
    all.sort_by(|a, b| {
        b.total_points
            .cmp(&a.total_points)
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_first_byte_and_spread_evenly() {
        let id = Uuid::parse_str("a1b2c3d4-0000-5000-8000-000000000000").unwrap();
        assert_eq!(bucket(&id), 0xa1);
        assert_eq!(bucket_prefix(0xa1), "a1");
        assert_eq!(bucket_prefix(7), "07");
        let mut counts = [0usize; BUCKETS];
        for n in 0..25_600 {
            counts[usize::from(bucket(&crate::ids::user_id("x", &format!("p{n}"))))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=170).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn maps_parse_and_refuse() {
        let one = ShardMap::parse("DB_0").unwrap();
        assert_eq!(one.bindings(), vec!["DB_0"]);
        assert_eq!(one.describe(), "0-255=DB_0");
        let two = ShardMap::parse("0-127=DB_0, 128-255=DB_1").unwrap();
        assert_eq!(two.binding_of_bucket(127), "DB_0");
        assert_eq!(two.binding_of_bucket(128), "DB_1");
        assert_eq!(two.bindings(), vec!["DB_0", "DB_1"]);
        let many = ShardMap::parse("0-9=DB_10,10-255=DB_2").unwrap();
        assert_eq!(
            many.bindings(),
            vec!["DB_2", "DB_10"],
            "by number, not by text"
        );
        for bad in [
            "",
            "DB",
            "DB_x",
            "0-127=DB_0",
            "0-127=DB_0,127-255=DB_1",
            "0-256=DB_0",
            "5-1=DB_0,0-255=DB_1",
            "0-255=db_0",
            "0-255",
        ] {
            assert!(ShardMap::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn copy_cursors_walk_every_table_and_round_trip() {
        let c = CopyCursor::start(0xa1);
        assert_eq!(c.encode(), "0.a1.");
        assert_eq!(CopyCursor::parse(&c.encode()), Some(c.clone()));
        let full = c
            .clone()
            .after(0xa1, 10, 10, Some(("a1x".into(), "k".into())))
            .unwrap();
        assert_eq!(
            (full.table, full.user.as_str(), full.key.as_str()),
            (0, "a1x", "k")
        );
        let mut at = Some(c);
        let mut tables = 0;
        while let Some(cursor) = at {
            tables += 1;
            at = cursor.after(0xa1, 3, 10, Some(("u".into(), "k".into())));
        }
        assert_eq!(tables, COPIED_TABLES);
        for bad in ["", "9.a1.", "x.a1.", "0.a1", "0.a'1.k", "0.a1.k;drop"] {
            assert_eq!(CopyCursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leaders_merge_by_points_then_user_id() {
        let l = |id: &str, points| Leader {
            user_id: id.into(),
            display_name: None,
            x_username: None,
            total_points: points,
            intimacy_level: 0,
        };
        let merged = merge_leaders(
            [
                vec![l("b", 50), l("d", 10)],
                vec![l("a", 50), l("c", 30), l("e", -5)],
            ],
            4,
        );
        let ids: Vec<&str> = merged.iter().map(|x| x.user_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn each_database_owns_exactly_its_buckets() {
        let map = ShardMap::parse("0-1=DB_0,2-255=DB_1")
            .unwrap()
            .with_overrides(&[Override {
                bucket: 1,
                binding: "DB_0".into(),
                moving: true,
            }])
            .unwrap();
        assert_eq!(map.buckets_of("DB_0"), vec![0, 1]);
        assert_eq!(map.prefixes_json("DB_0", false), r#"["00","01"]"#);
        assert_eq!(
            map.prefixes_json("DB_0", true),
            r#"["00"]"#,
            "moving left out"
        );
        assert_eq!(map.buckets_of("DB_1").len(), 254);
        assert_eq!(map.prefixes_json("DB_7", false), "[]");
    }

    #[test]
    fn overrides_move_and_hold_buckets() {
        let map = ShardMap::parse("0-127=DB_0,128-255=DB_1")
            .unwrap()
            .with_overrides(&[
                Override {
                    bucket: 3,
                    binding: "DB_1".into(),
                    moving: false,
                },
                Override {
                    bucket: 200,
                    binding: "DB_1".into(),
                    moving: true,
                },
            ])
            .unwrap();
        assert_eq!(map.binding_of_bucket(3), "DB_1");
        assert!(map.bucket_is_moving(200) && !map.bucket_is_moving(3));
        assert_eq!(map.describe(), "0-2=DB_0,3-3=DB_1,4-127=DB_0,128-255=DB_1");
        let user = Uuid::from_bytes([200; 16]);
        assert!(map.is_moving(&user));
        assert_eq!(map.binding(&user), "DB_1");
        assert!(ShardMap::parse("DB_0")
            .unwrap()
            .with_overrides(&[Override {
                bucket: 1,
                binding: "nope".into(),
                moving: false
            }])
            .is_err());
    }
}
