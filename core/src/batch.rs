//! From a queue batch of turn records to the one JSON parameter that each statement of the
//! consumer's D1 batch reads with `json_each` (see `sql::apply_turns`).
//!
//! The rows are flat and named after the columns they fill, so the SQL reads them with one
//! `->>` each and does not depend on the record's version.

use crate::identity::Identity;
use crate::record::{RecordUser, TurnRecord};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The user part of a row: what `sql::UPSERT_USERS` reads.
#[derive(Debug, Serialize)]
pub struct UserRow<'a> {
    pub user_id: Uuid,
    pub provider: &'a str,
    pub provider_user_id: &'a str,
    pub display_name: Option<&'a str>,
    pub wallet_address: Option<&'a str>,
    pub x_user_id: Option<&'a str>,
    pub x_username: Option<&'a str>,
    /// When this identity was seen: a new user's `created_at`.
    pub seen_at: i64,
    /// When its profile was signed (`Identity::signed_at`, 0 for none): the later wins.
    pub signed_at: i64,
}

impl<'a> UserRow<'a> {
    fn from_record(u: &'a RecordUser, seen_at: i64) -> Self {
        Self {
            user_id: u.id,
            provider: u.provider.as_str(),
            provider_user_id: &u.provider_user_id,
            display_name: u.display_name.as_deref(),
            wallet_address: u.wallet_address.as_deref(),
            x_user_id: u.x_user_id.as_deref(),
            x_username: u.x_username.as_deref(),
            seen_at,
            signed_at: u.signed_at.unwrap_or(0),
        }
    }

    pub fn from_identity(identity: &'a Identity, seen_at: i64) -> Self {
        Self {
            user_id: identity.user_id(),
            provider: identity.provider.as_str(),
            provider_user_id: identity.provider_user_id.as_str(),
            display_name: identity.display_name.as_deref(),
            wallet_address: identity.wallet_address.as_deref(),
            x_user_id: identity.x_user_id.as_deref(),
            x_username: identity.x_username.as_deref(),
            seen_at,
            signed_at: identity.signed_at.unwrap_or(0),
        }
    }
}

/// One turn, flattened for the batch SQL.
#[derive(Debug, Serialize)]
pub struct TurnRow<'a> {
    #[serde(flatten)]
    pub user: UserRow<'a>,
    pub turn_id: Uuid,
    pub session_id: Uuid,
    pub user_content: &'a str,
    pub user_at: i64,
    pub score_raw: i32,
    pub score_adjusted: i32,
    pub agent_id: Uuid,
    pub agent_content: &'a str,
    pub emotion: &'static str,
    pub agent_at: i64,
    pub event_id: Uuid,
    pub delta: i32,
    pub reason: &'a str,
    pub metadata_json: String,
    /// 0 or 1: SQLite has no boolean, and `->>` of JSON `true` is 1 anyway.
    pub game_over: u8,
    /// How many of the archive's objects covering this turn the consumer looked in and did
    /// not find it (`sql::archive::SELECT_ARCHIVED`); absent on a first write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_seen: Option<u32>,
    /// The player's keyed hash (`privacy::ErasureKey::tag`): the batch skips a turn whose
    /// player was erased after it was made (`sql::erasures`). Absent without a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure_tag: Option<String>,
}

impl<'a> TurnRow<'a> {
    pub fn new(r: &'a TurnRecord) -> Self {
        Self {
            user: UserRow::from_record(&r.user, r.user_message.created_at),
            turn_id: r.turn_id,
            session_id: r.session_id,
            user_content: &r.user_message.content,
            user_at: r.user_message.created_at,
            score_raw: r.score.raw,
            score_adjusted: r.score.adjusted,
            agent_id: r.agent_message.id,
            agent_content: &r.agent_message.content,
            emotion: r.agent_message.emotion.as_str(),
            agent_at: r.agent_message.created_at,
            event_id: r.point_event.id,
            delta: r.point_event.delta,
            reason: &r.point_event.reason,
            metadata_json: serde_json::to_string(&r.point_event.metadata)
                .expect("a map serializes"),
            game_over: u8::from(r.game_over),
            archive_seen: None,
            erasure_tag: None,
        }
    }
}

/// Whether `user`'s bucket is among `fenced` (the prefixes `sql::SELECT_FENCED` returned):
/// the database refused that player's rows, and the consumer holds the turn.
pub fn is_fenced(fenced: &[String], user: &Uuid) -> bool {
    let prefix = crate::shards::bucket_prefix(crate::shards::bucket(user));
    fenced.contains(&prefix)
}

/// The JSON array bound as `?1` to every statement of `sql::apply_turns`.
pub fn turns_json<'a>(records: impl IntoIterator<Item = &'a TurnRecord>) -> String {
    let rows: Vec<TurnRow<'_>> = records.into_iter().map(TurnRow::new).collect();
    serde_json::to_string(&rows).expect("rows always serialize")
}

/// The JSON array of a second write: turns the consumer looked for in the archive, each with
/// the number of objects it was not found in.
pub fn turns_json_seen<'a>(
    records: impl IntoIterator<Item = (&'a TurnRecord, u32)>,
    tag: &dyn Fn(&Uuid) -> Option<String>,
) -> String {
    let rows: Vec<TurnRow<'_>> = records
        .into_iter()
        .map(|(r, seen)| TurnRow {
            archive_seen: Some(seen),
            erasure_tag: tag(&r.user.id),
            ..TurnRow::new(r)
        })
        .collect();
    serde_json::to_string(&rows).expect("rows always serialize")
}

/// Some of a batch's deliveries, and the JSON array that stores their turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnChunk {
    /// Every delivery (index into the batch) of the turn ids this chunk stores, ascending.
    pub deliveries: Vec<usize>,
    /// The rows of the first arrival of each of those turn ids (see [`turns_json`]).
    pub json: String,
}

/// Cuts a batch into chunks whose JSON is at most `max_bytes` (see `d1_limits`), each
/// stored by its own atomic D1 batch. A turn id's first arrival and its duplicates go in
/// the same chunk, so each chunk judges its own deliveries with [`judge`]; a player's
/// turns may span chunks, which is safe because each chunk moves `user_stats` only by the
/// events it inserts.
pub fn turn_chunks<T>(
    items: &[T],
    record: impl Fn(&T) -> &TurnRecord,
    max_bytes: usize,
) -> Vec<TurnChunk> {
    turn_chunks_tagged(items, record, max_bytes, &|_| None)
}

/// [`turn_chunks`], each row carrying its player's erasure tag (`tag`).
pub fn turn_chunks_tagged<T>(
    items: &[T],
    record: impl Fn(&T) -> &TurnRecord,
    max_bytes: usize,
    tag: &dyn Fn(&Uuid) -> Option<String>,
) -> Vec<TurnChunk> {
    let firsts = first_arrivals(items, &record);
    let rows: Vec<TurnRow<'_>> = firsts
        .iter()
        .map(|&i| {
            let r = record(&items[i]);
            TurnRow {
                erasure_tag: tag(&r.user.id),
                ..TurnRow::new(r)
            }
        })
        .collect();
    let chunks = crate::d1_limits::json_chunks(&rows, max_bytes);
    let mut chunk_of: HashMap<Uuid, usize> = HashMap::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for &row in &chunk.items {
            chunk_of.insert(record(&items[firsts[row]]).turn_id, c);
        }
    }
    let mut out: Vec<TurnChunk> = chunks
        .into_iter()
        .map(|c| TurnChunk {
            deliveries: Vec::new(),
            json: c.json,
        })
        .collect();
    for (i, item) in items.iter().enumerate() {
        out[chunk_of[&record(item).turn_id]].deliveries.push(i);
    }
    out
}

/// The JSON array bound to `sql::UPSERT_USERS` for one identity.
pub fn user_json(identity: &Identity, seen_at: i64) -> String {
    serde_json::to_string(&[UserRow::from_identity(identity, seen_at)])
        .expect("rows always serialize")
}

/// A turn as stored, as far as "the same turn" goes (see `TurnRecord::identity`): a row of
/// `sql::SELECT_STORED_TURNS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StoredTurn {
    pub id: String,
    pub user_id: String,
    pub session_id: String,
    pub content: String,
}

impl StoredTurn {
    /// Whether `record` is the turn stored here.
    pub fn matches(&self, record: &TurnRecord) -> bool {
        let who = record.identity();
        self.user_id == who.user_id.to_string()
            && self.session_id == who.session_id.to_string()
            && self.content == who.content
    }
}

/// What a batch did with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first delivery of a turn not stored before: the batch stored it.
    Applied,
    /// The same turn as the one stored (before, or by this batch).
    Duplicate,
    /// A different turn under a stored (or just stored) turn id: nothing was written for it.
    Conflict,
}

/// The index of the first delivery of each turn id, in arrival order: the rows the batch
/// SQL receives.
pub fn first_arrivals<T>(items: &[T], record: impl Fn(&T) -> &TurnRecord) -> Vec<usize> {
    let mut seen = HashSet::new();
    (0..items.len())
        .filter(|&i| seen.insert(record(&items[i]).turn_id))
        .collect()
}

/// Judges every delivery of a batch. The reference for a turn id is what was stored before
/// the batch (the rows of `sql::SELECT_STORED_TURNS`) or, failing that, its first delivery
/// in the batch, which the batch stored.
pub fn judge<T>(
    items: &[T],
    record: impl Fn(&T) -> &TurnRecord,
    stored: &[StoredTurn],
) -> Vec<Outcome> {
    let stored: HashMap<&str, &StoredTurn> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut first: HashMap<Uuid, &TurnRecord> = HashMap::new();
    items
        .iter()
        .map(|item| {
            let r = record(item);
            if let Some(s) = stored.get(r.turn_id.to_string().as_str()) {
                return if s.matches(r) {
                    Outcome::Duplicate
                } else {
                    Outcome::Conflict
                };
            }
            match first.get(&r.turn_id) {
                None => {
                    first.insert(r.turn_id, r);
                    Outcome::Applied
                }
                Some(f) if f.identity() == r.identity() => Outcome::Duplicate,
                Some(_) => Outcome::Conflict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample;

    const SESSION: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);

    #[test]
    fn rows_carry_every_column() {
        let r = sample("7", SESSION, 4, 1_700_000_000_000);
        let json: serde_json::Value = serde_json::from_str(&turns_json([&r])).unwrap();
        let row = &json[0];
        assert_eq!(row["turn_id"], r.turn_id.to_string());
        assert_eq!(row["user_id"], r.user.id.to_string());
        assert_eq!(row["provider"], "x");
        assert_eq!(row["delta"], r.point_event.delta);
        assert_eq!(row["game_over"], 0);
        let meta: serde_json::Value =
            serde_json::from_str(row["metadata_json"].as_str().unwrap()).unwrap();
        assert_eq!(meta["engine"], "sample");
    }

    #[test]
    fn a_full_batch_of_the_largest_turns_is_cut_to_fit_d1() {
        use crate::d1_limits::{MAX_BOUND_JSON_BYTES, MAX_VALUE_BYTES};
        use crate::record::largest_sample;
        // The largest turns the chat builds come to about 1.97 MB for 100, at D1's limit;
        // records up to `MAX_RECORD_BYTES` (here padded through `xUsername`) pass it.
        let mut batch: Vec<TurnRecord> = (0..100)
            .map(|n| {
                let mut r = largest_sample(&format!("p{}", n % 7), SESSION, n, 1_700_000_000_000);
                if n % 2 == 0 {
                    r.user.x_username = Some("x".repeat(30_000));
                }
                assert_eq!(r.validate(), Ok(()));
                r
            })
            .collect();
        // Redeliveries of turns 3 and 97 arrive late in the batch.
        batch[98] = batch[3].clone();
        batch[99] = batch[97].clone();
        let whole = turns_json(first_arrivals(&batch, |r| r).iter().map(|&i| &batch[i]));
        assert!(
            whole.len() > MAX_VALUE_BYTES,
            "one value would be refused: {}",
            whole.len()
        );

        let chunks = turn_chunks(&batch, |r| r, MAX_BOUND_JSON_BYTES);
        assert!(
            chunks.len() >= whole.len() / MAX_BOUND_JSON_BYTES,
            "{}",
            chunks.len()
        );
        let mut seen: Vec<usize> = chunks.iter().flat_map(|c| c.deliveries.clone()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..100).collect::<Vec<_>>(),
            "every delivery in one chunk"
        );
        let mut rows = 0;
        for c in &chunks {
            assert!(c.json.len() <= MAX_BOUND_JSON_BYTES, "{}", c.json.len());
            let ids: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&c.json)
                .unwrap()
                .iter()
                .map(|row| row["turn_id"].as_str().unwrap().to_owned())
                .collect();
            rows += ids.len();
            // A chunk stores exactly the turn ids of its deliveries, each once.
            let mut wanted: Vec<String> = c
                .deliveries
                .iter()
                .map(|&i| batch[i].turn_id.to_string())
                .collect();
            wanted.dedup();
            wanted.sort();
            wanted.dedup();
            let mut got = ids.clone();
            got.sort();
            assert_eq!(got, wanted);
        }
        assert_eq!(rows, 98, "each turn id stored once");
        assert_eq!(
            turn_chunks(&batch[..5], |r| r, MAX_BOUND_JSON_BYTES).len(),
            1,
            "a small batch stays one atomic write"
        );
    }

    #[test]
    fn judging_splits_duplicates_and_conflicts() {
        let a = sample("7", SESSION, 1, 1_700_000_000_000);
        let b = sample("7", SESSION, 2, 1_700_000_000_000);
        let mut retry = a.clone();
        retry.agent_message.content = "another reply".into(); // same turn, different reply
        let mut clash = a.clone();
        clash.user_message.content = "different words".into();
        let batch = vec![a.clone(), b.clone(), retry, clash.clone(), a.clone()];
        assert_eq!(first_arrivals(&batch, |r| r), vec![0, 1]);
        use Outcome::*;
        assert_eq!(
            judge(&batch, |r| r, &[]),
            vec![Applied, Applied, Duplicate, Conflict, Duplicate]
        );
        // When the clash arrives first but the real turn is stored, the store decides.
        let stored = StoredTurn {
            id: a.turn_id.to_string(),
            user_id: a.user.id.to_string(),
            session_id: a.session_id.to_string(),
            content: a.user_message.content.clone(),
        };
        let batch = vec![clash, a];
        assert_eq!(judge(&batch, |r| r, &[stored]), vec![Conflict, Duplicate]);
    }
}
