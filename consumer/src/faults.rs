//! The fault hooks of the batch handlers. The local build (cargo feature `local`) reads
//! `FAULTS` (see `chat_core::faults`); the deployable build has no switch at all: every hook
//! is a constant "no fault", so no variable can make it fail on purpose.

use chat_core::faults::Fault;
use chat_core::record::TurnRecord;
use worker::Env;

#[cfg(feature = "local")]
pub struct FaultSwitch(chat_core::faults::Faults);

#[cfg(feature = "local")]
impl FaultSwitch {
    pub fn from_env(env: &Env) -> Self {
        use chat_core::faults::Faults;
        let spec = worker_support::env::var(env, "FAULTS").unwrap_or_default();
        let faults = Faults::parse(&spec).unwrap_or_else(|e| {
            tracing::error!(error = %e, "FAULTS is malformed; fault injection stays off");
            Faults::default()
        });
        if !faults.is_off() {
            tracing::warn!(spec = %spec, "fault injection is ON (local testing only)");
        }
        Self(faults)
    }

    /// Whether this delivery of a turn is held back from the write, failing as D1 would.
    pub fn holds_back(&self, record: &TurnRecord, attempts: u32, now_ms: i64) -> bool {
        self.0.fails_turn(record, attempts, now_ms)
    }

    /// The fault for one D1 write.
    pub fn write<'a>(
        &self,
        write: impl IntoIterator<Item = (&'a TurnRecord, u32)>,
        unit: f64,
    ) -> Fault {
        self.0.decide(write, unit)
    }

    /// Whether storing dead letters fails now.
    pub fn fails_letters(&self, now_ms: i64) -> bool {
        self.0.fails_letters(now_ms)
    }

    /// Whether writes to database `binding` fail now.
    pub fn database_down(&self, binding: &str, now_ms: i64) -> bool {
        self.0.database_down(binding, now_ms)
    }
}

#[cfg(not(feature = "local"))]
pub struct FaultSwitch;

#[cfg(not(feature = "local"))]
impl FaultSwitch {
    /// `FAULTS` is ignored, with an error in the log so that whoever set it knows.
    pub fn from_env(env: &Env) -> Self {
        if worker_support::env::var(env, "FAULTS").is_some_and(|s| !s.trim().is_empty()) {
            tracing::error!(
                "FAULTS is set but ignored: fault injection exists only in the local build (cargo feature `local`)"
            );
        }
        Self
    }

    pub fn holds_back(&self, _: &TurnRecord, _: u32, _: i64) -> bool {
        false
    }

    pub fn write<'a>(&self, _: impl IntoIterator<Item = (&'a TurnRecord, u32)>, _: f64) -> Fault {
        Fault::None
    }

    pub fn fails_letters(&self, _: i64) -> bool {
        false
    }

    pub fn database_down(&self, _: &str, _: i64) -> bool {
        false
    }
}
