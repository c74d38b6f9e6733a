//! What the consumer's flows need from the world, as small traits: the Worker implements
//! them over its bindings (`consumer/src/bindings.rs`), the native tests over SQLite and
//! in-memory queues (`native::consumer`), and the local build's fault switch wraps them
//! (`consumer::faulty`).

use crate::batch::StoredTurn;
use crate::record::TurnRecord;
use crate::shards::Override;

/// One message of a queue batch, as the runtime delivers it.
pub trait Delivery {
    fn id(&self) -> &str;
    /// The body as text.
    fn body(&self) -> &str;
    /// Deliveries so far, 1 on the first.
    fn attempts(&self) -> u32;
    /// When it was sent, in epoch milliseconds.
    fn sent_at(&self) -> i64;
    /// Done with it: the queue forgets it.
    fn ack(&self);
    /// Deliver it again after `delay_seconds`. After the queue's `max_retries` the runtime
    /// moves it to the dead-letter queue (or, on the dead-letter queue, drops it).
    fn retry(&self, delay_seconds: u32);
}

/// One chunk of one database's turns, written in one atomic batch.
pub struct Write<'a> {
    /// The chunk as the one JSON parameter the SQL reads (`batch::turn_chunks`).
    pub json: &'a str,
    /// Its deliveries: each record with its delivery count.
    pub turns: Vec<(&'a TurnRecord, u32)>,
}

/// What one chunk's batch found and did.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The buckets (prefixes) of the chunk that this database has fenced: their turns were
    /// not written, and wait in the queue.
    pub fenced: Vec<String>,
    /// The turns already stored under the chunk's turn ids, before it ran.
    pub before: Vec<StoredTurn>,
    /// Turns of the chunk that D1 does not hold and whose time falls in what the archive
    /// holds of their player. The write skipped them (`sql::archive::SELECT_ARCHIVED`).
    pub archived: Vec<ArchivedHit>,
    /// Turns of the chunk refused as an erased player's (`sql::SELECT_ERASED`): written
    /// nowhere, acked.
    pub erased: Vec<String>,
    /// Turns newly inserted (the point-event statement's `changes`).
    pub inserted: usize,
    /// Statements sent in the batch (the same for 1 turn and for 100).
    pub statements: usize,
}

/// A turn that may be archived (a row of `sql::archive::SELECT_ARCHIVED`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ArchivedHit {
    pub turn_id: String,
    /// The player's objects committed so far (`archive_players.objects`).
    pub objects: u32,
}

/// The players' databases (the ledger), each by its binding name, and the archive that
/// holds their older turns.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait Ledgers {
    /// Every database this Worker is bound to, `DB_0` first.
    fn bindings(&self) -> Vec<String>;
    /// Whether this Worker is bound to `binding`.
    fn has(&self, binding: &str) -> bool;
    /// Stores a chunk's first deliveries of each turn id, atomically: all or nothing.
    async fn apply_turns(&self, binding: &str, write: &Write<'_>) -> Result<Stored, String>;
    /// The newest migration applied to `binding` (`None` if it has none).
    async fn applied_migration(&self, binding: &str) -> Result<Option<String>, String>;
    /// The turns the archive holds of those `lookups` name (`archive::stored_turns`).
    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<StoredTurn>, String>;
    /// Why this delivery of a turn cannot be written now, before any write; it then fails
    /// alone, as a failed write would. The real databases never refuse this way; the local
    /// build's fault switch does.
    fn refuses(&self, _record: &TurnRecord, _attempts: u32) -> Option<String> {
        None
    }
}

/// The control database (`DB_0`): the bucket map's live part, the probes' reports, and the
/// dead-letter archive.
#[allow(async_fn_in_trait)]
pub trait Control {
    /// The bucket map's overrides.
    async fn overrides(&self) -> Result<Vec<Override>, String>;
    /// Reports what this Worker can reach, in answer to a move's probe: each binding and
    /// the newest migration applied to it (`None` if it cannot be read).
    async fn report_databases(
        &self,
        reports: &[(String, Option<String>)],
        probe_at: i64,
    ) -> Result<(), String>;
    /// Archives dead letters in one statement; `letters_json` is a JSON array of envelopes
    /// under D1's value limit. A letter stored twice is kept once.
    async fn store_letters(&self, letters_json: &str, now_ms: i64) -> Result<(), String>;
}

/// The queues this Worker sends to.
#[allow(async_fn_in_trait)]
pub trait Queues {
    /// Puts turn bodies back on the turn queue as fresh messages.
    async fn send_turns(&self, bodies: &[String]) -> Result<(), String>;
    /// Puts letters (encoded envelopes) on the dead-letter queue.
    async fn send_letters(&self, texts: &[String]) -> Result<(), String>;
}

// A borrowed port is a port: the fault wrapper and the tests wrap references.
impl<P: Ledgers> Ledgers for &P {
    fn bindings(&self) -> Vec<String> {
        (**self).bindings()
    }
    fn has(&self, binding: &str) -> bool {
        (**self).has(binding)
    }
    async fn apply_turns(&self, binding: &str, write: &Write<'_>) -> Result<Stored, String> {
        (**self).apply_turns(binding, write).await
    }
    async fn applied_migration(&self, binding: &str) -> Result<Option<String>, String> {
        (**self).applied_migration(binding).await
    }
    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<StoredTurn>, String> {
        (**self).archived_turns(lookups).await
    }
    fn refuses(&self, record: &TurnRecord, attempts: u32) -> Option<String> {
        (**self).refuses(record, attempts)
    }
}

impl<P: Control> Control for &P {
    async fn overrides(&self) -> Result<Vec<Override>, String> {
        (**self).overrides().await
    }
    async fn report_databases(
        &self,
        reports: &[(String, Option<String>)],
        probe_at: i64,
    ) -> Result<(), String> {
        (**self).report_databases(reports, probe_at).await
    }
    async fn store_letters(&self, letters_json: &str, now_ms: i64) -> Result<(), String> {
        (**self).store_letters(letters_json, now_ms).await
    }
}
