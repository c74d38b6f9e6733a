//! The fault switch (`crate::faults`) as a wrapper around the consumer's ports: only the
//! local build wraps its bindings in it, so the write path itself has no fault branch, and
//! the deployable build has no switch at all. The native tests wrap SQLite in it too.
//!
//! - a database that is down fails every read and write, the control database's included;
//! - a marked turn is refused before the write, failing alone;
//! - a chunk's write fails before it (nothing stored) or after it (stored, but reported as
//!   failed, so the batch is delivered again);
//! - the archive fails while `letters-until` lasts.

use super::ports::{Control, Ledgers, Stored, Write};
use crate::clock::Clock;
use crate::faults::{Fault, Faults};
use crate::record::TurnRecord;
use crate::shards::{Override, CONTROL};

/// `inner`, failing as `faults` says, at `clock`'s time and with its randomness.
pub struct Faulty<'a, P, T> {
    pub inner: P,
    pub faults: &'a Faults,
    pub clock: &'a T,
}

impl<P, T: Clock> Faulty<'_, P, T> {
    fn down(&self, binding: &str) -> Result<(), String> {
        if self.faults.database_down(binding, self.clock.now_ms()) {
            Err(format!("injected fault: database {binding} is down"))
        } else {
            Ok(())
        }
    }
}

impl<P: Ledgers, T: Clock> Ledgers for Faulty<'_, P, T> {
    fn bindings(&self) -> Vec<String> {
        self.inner.bindings()
    }

    fn has(&self, binding: &str) -> bool {
        self.inner.has(binding)
    }

    async fn apply_turns(&self, binding: &str, write: &Write<'_>) -> Result<Stored, String> {
        self.down(binding)?;
        match self
            .faults
            .decide(write.turns.iter().copied(), self.clock.unit_random())
        {
            Fault::BeforeWrite => Err("injected fault before the write".into()),
            Fault::AfterWrite => {
                self.inner.apply_turns(binding, write).await?;
                Err("injected fault after the write".into())
            }
            Fault::None => self.inner.apply_turns(binding, write).await,
        }
    }

    async fn applied_migration(&self, binding: &str) -> Result<Option<String>, String> {
        self.down(binding)?;
        self.inner.applied_migration(binding).await
    }

    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<crate::batch::StoredTurn>, String> {
        self.inner.archived_turns(lookups).await
    }

    fn refuses(&self, record: &TurnRecord, attempts: u32) -> Option<String> {
        if self
            .faults
            .fails_turn(record, attempts, self.clock.now_ms())
        {
            Some("injected fault before the write (this turn only)".into())
        } else {
            self.inner.refuses(record, attempts)
        }
    }
}

impl<P: Control, T: Clock> Control for Faulty<'_, P, T> {
    async fn overrides(&self) -> Result<Vec<Override>, String> {
        self.down(CONTROL)?;
        self.inner.overrides().await
    }

    async fn report_databases(
        &self,
        reports: &[(String, Option<String>)],
        probe_at: i64,
    ) -> Result<(), String> {
        self.down(CONTROL)?;
        self.inner.report_databases(reports, probe_at).await
    }

    async fn store_letters(&self, letters_json: &str, now_ms: i64) -> Result<(), String> {
        if self.faults.fails_letters(self.clock.now_ms()) {
            return Err("injected fault: the dead-letter store is failing".into());
        }
        self.down(CONTROL)?;
        self.inner.store_letters(letters_json, now_ms).await
    }
}
