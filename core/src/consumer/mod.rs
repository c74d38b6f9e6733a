//! The queue consumer's flows, as plain Rust over small traits: the Worker runs them over
//! its bindings, the native tests over SQLite and in-memory queues, with faults as a wrapper.
//!
//! - [`ports`]: the traits: a delivery, the ledgers (one per database), the control
//!   database, the queues, the clock.
//! - [`turns`]: a batch of the turn queue: decode, route by the live map, hold, write per
//!   database, judge, ack, retry, dead-letter, re-queue.
//! - [`letters`]: a batch of the dead-letter queue into the archive.
//! - [`faulty`]: the local build's fault switch, as a wrapper around the ports.

pub mod faulty;
pub mod letters;
pub mod ports;
pub mod turns;

use crate::backoff::Backoff;
use crate::shards::ShardMap;

/// The consumer's settings, read once from its variables.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The turn queue's `max_retries` (kept equal to wrangler.toml's).
    pub max_retries: u32,
    /// The dead-letter queue's `max_retries` (kept equal too).
    pub letter_max_retries: u32,
    pub backoff: Backoff,
    /// `SHARD_MAP`, the bucket map before the control database's overrides, or why it is
    /// unusable (then every turn batch is retried, and the log says why).
    pub shard_map: Result<ShardMap, String>,
    /// How long an isolate keeps the live map before reading the overrides again. A stale
    /// map is safe: fenced databases refuse what it misroutes, and those turns wait.
    pub map_cache_ms: i64,
    /// `ERASURE_KEY`: each turn's row carries its player's tag, so that the batch skips the
    /// turns of an erased player. `None`: no tags, and no erasure can be honoured.
    pub erasure_key: Option<crate::privacy::ErasureKey>,
}

impl Settings {
    /// The erasure tag of `user`'s rows.
    pub fn erasure_tag(&self, user: &uuid::Uuid) -> Option<String> {
        self.erasure_key.as_ref().map(|k| k.tag(user))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_retries: 5,
            letter_max_retries: 100,
            backoff: Backoff::default(),
            shard_map: ShardMap::parse(crate::shards::CONTROL),
            map_cache_ms: 5_000,
            erasure_key: None,
        }
    }
}

/// Retries `m` after the backoff of its attempt, with jitter.
pub(crate) fn retry_later<D: ports::Delivery, T: crate::clock::Clock>(
    m: &D,
    settings: &Settings,
    clock: &T,
) {
    m.retry(
        settings
            .backoff
            .delay_seconds(m.attempts(), clock.unit_random()),
    );
}

/// How loud an event's log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
    /// An error that pages someone: something waits on an operator.
    Alert,
}

/// Something a flow did that deserves a log line of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `SHARD_MAP` is unusable: the batch is retried.
    MapUnusable { error: String },
    /// The control database cannot be read: routing goes on with the last map read.
    ControlUnreadable { error: String, cached: bool },
    /// The map names a database this Worker has no binding for: its turns wait.
    Unbound { database: String, turns: usize },
    /// One chunk's write failed: its turns are retried or dead-lettered.
    WriteFailed {
        database: String,
        error: String,
        turns: usize,
    },
    /// The archive's objects covering some turns could not be read: those turns are retried.
    ArchiveUnreadable {
        database: String,
        error: String,
        turns: usize,
    },
    /// The judgement and the insert count disagree (a bug, never expected).
    CountsDisagree {
        database: String,
        judged: usize,
        inserted: usize,
    },
    /// Held turns re-queued on their last delivery.
    Requeued { turns: usize },
    /// Held turns could not be re-queued on their last delivery.
    RequeueFailed { error: String, turns: usize },
    /// A message goes to the dead-letter queue.
    DeadLettering {
        message_id: String,
        class: &'static str,
        error: String,
    },
    /// The dead-letter queue refused the letters: their messages are retried.
    LetterSendFailed { error: String, letters: usize },
    /// A move's probe was answered.
    ProbeAnswered {
        databases: Vec<(String, Option<String>)>,
    },
    /// A move's probe could not be answered: it is retried.
    ProbeFailed { error: String },
    /// The archive refused a chunk of letters: they are retried.
    LettersUnstored { error: String, letters: usize },
    /// Letters sent again on their last delivery: the archive failed all their retries.
    LettersRequeued { ids: Vec<String> },
    /// Letters could not be sent again on their last delivery, and may be dropped.
    LettersMayDrop { error: String, letters: usize },
}

impl Event {
    pub fn level(&self) -> Level {
        match self {
            Self::ProbeAnswered { .. } => Level::Info,
            Self::ControlUnreadable { .. }
            | Self::WriteFailed { .. }
            | Self::ArchiveUnreadable { .. }
            | Self::Requeued { .. }
            | Self::DeadLettering { .. }
            | Self::ProbeFailed { .. } => Level::Warn,
            Self::MapUnusable { .. }
            | Self::CountsDisagree { .. }
            | Self::LetterSendFailed { .. }
            | Self::LettersUnstored { .. } => Level::Error,
            Self::Unbound { .. }
            | Self::RequeueFailed { .. }
            | Self::LettersRequeued { .. }
            | Self::LettersMayDrop { .. } => Level::Alert,
        }
    }
}

impl Event {
    /// The log line's stable message, which operators' alerts and the tests search for; the
    /// details go beside it (`Display`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MapUnusable { .. } => "the bucket map cannot be read; retrying the batch",
            Self::ControlUnreadable { .. } => "the control database is unreadable: routing with the last bucket map read (or SHARD_MAP); fenced databases refuse what a stale map misroutes, and those turns wait",
            Self::Unbound { .. } => "the bucket map names a database this Worker has no binding for: its turns wait in the queue; bind it in consumer/wrangler.toml and deploy",
            Self::WriteFailed { .. } => "D1 batch failed",
            Self::ArchiveUnreadable { .. } => "the archive could not be read for turns its objects cover; retrying them",
            Self::CountsDisagree { .. } => "applied counts disagree",
            Self::Requeued { .. } => "turns of a moving bucket re-queued after their last delivery",
            Self::RequeueFailed { .. } => "turns of a moving bucket could not be re-queued; the queue may dead-letter them (replay them after the move)",
            Self::DeadLettering { .. } => "dead-lettering",
            Self::LetterSendFailed { .. } => "dead-letter queue send failed; retrying",
            Self::ProbeAnswered { .. } => "answered a move's probe",
            Self::ProbeFailed { .. } => "could not answer a move's probe; retrying it",
            Self::LettersUnstored { .. } => "storing dead letters failed; retrying",
            Self::LettersRequeued { .. } => "dead letters re-queued after their last delivery: D1 has been failing for all of the dead-letter queue's retries",
            Self::LettersMayDrop { .. } => "dead letters could not be re-queued on their last delivery and may be dropped",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MapUnusable { error } => write!(f, "the bucket map is unusable ({error}); retrying the batch"),
            Self::ControlUnreadable { error, cached } => write!(f, "the control database is unreadable ({error}): routing with the {} (fenced databases refuse what a stale map misroutes, and those turns wait)", if *cached { "last bucket map read" } else { "SHARD_MAP" }),
            Self::Unbound { database, turns } => write!(f, "the bucket map names {database}, which this Worker has no binding for: its {turns} turns wait in the queue; bind it in consumer/wrangler.toml and deploy"),
            Self::WriteFailed { database, error, turns } => write!(f, "the write of {turns} turns to {database} failed: {error}"),
            Self::ArchiveUnreadable { database, error, turns } => write!(f, "{turns} turns of {database} fall in archived time and the archive could not be read ({error}); retrying them"),
            Self::CountsDisagree { database, judged, inserted } => write!(f, "applied counts disagree in {database}: {judged} judged, {inserted} inserted"),
            Self::Requeued { turns } => write!(f, "{turns} turns of a moving bucket re-queued after their last delivery"),
            Self::RequeueFailed { error, turns } => write!(f, "{turns} turns of a moving bucket could not be re-queued ({error}); the queue may dead-letter them (replay them after the move)"),
            Self::DeadLettering { message_id, class, error } => write!(f, "dead-lettering {message_id} ({class}): {error}"),
            Self::LetterSendFailed { error, letters } => write!(f, "the dead-letter queue refused {letters} letters ({error}); retrying their messages"),
            Self::ProbeAnswered { databases } => write!(f, "answered a move's probe: {databases:?}"),
            Self::ProbeFailed { error } => write!(f, "could not answer a move's probe ({error}); retrying it"),
            Self::LettersUnstored { error, letters } => write!(f, "storing {letters} dead letters failed ({error}); retrying"),
            Self::LettersRequeued { ids } => write!(f, "dead letters re-queued after their last delivery, the archive having failed all of the dead-letter queue's retries: {ids:?}"),
            Self::LettersMayDrop { error, letters } => write!(f, "{letters} dead letters could not be re-queued on their last delivery ({error}) and may be dropped"),
        }
    }
}
