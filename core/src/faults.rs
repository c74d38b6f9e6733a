//! The fault switch, for tests: it makes chosen turns fail on purpose (held back from the
//! write, as if their D1 batch had failed, without taking their batchmates down), D1
//! batches fail before the write (nothing stored) or after it (stored, but the handler
//! fails, so the batch is delivered again), a database go down for both Workers, and a
//! session's actor reset between a turn's queue send and its confirmation. Only the local
//! builds (cargo feature `local`, run by `scripts/dev.sh` and the tests) read it, from the
//! `FAULTS` variable of each Worker; the deployable build has no switch at all.
//!
//! The spec is a comma-separated list:
//! - `markers`: a turn whose player message contains `[fault:before]` fails every attempt;
//!   `[fault:before-once]` fails its first attempt; `[fault:before-until=MS]` fails every
//!   attempt until the clock passes MS (epoch ms): it exhausts its retries and becomes a
//!   transient dead letter, yet a later replay succeeds. These fail the turn alone.
//!   `[fault:after-once]` fails its whole write after it, on its first attempt.
//!   `[fault:reset]` (chat Worker) resets the session's actor right after the turn's first
//!   queue send, before the actor confirms it: the client gets an error, the record is on
//!   the queue, and the actor's memory is gone. `[fault:send-fails]` (chat Worker) makes the
//!   turn's first queue send fail, queueing nothing.
//! - `before=R`, `after=R`: fail that share (0..=1) of batches at random.
//! - `letters-until=MS`: storing dead letters fails until the clock passes MS (epoch ms): a D1
//!   outage of the archive that outlasts every retry of the dead-letter queue, then clears.
//! - `down=DB_k@MS` (repeatable): every read and write of database `DB_k` fails until the
//!   clock passes MS, in the Worker whose `FAULTS` says so: one database's outage, which must
//!   hold back only its own players. For `DB_0`, the control database, that includes the
//!   bucket map's reads and the dead-letter archive.
//! - `slow=MS`: every D1 call of the Worker whose `FAULTS` says so waits MS milliseconds
//!   first (0 to 10,000): D1 as production pays it, a network round trip away, where the
//!   local D1 answers in microseconds. Set it in both Workers' `FAULTS` (and the inline
//!   Worker's) to compare the designs as production runs them.

use crate::record::TurnRecord;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    pub markers: bool,
    pub before_rate: f64,
    pub after_rate: f64,
    /// Storing dead letters fails until this time (epoch ms).
    pub letters_until: Option<i64>,
    /// Reads and writes of these database bindings fail until these times (epoch ms).
    pub down: Vec<(String, i64)>,
    /// Milliseconds every D1 call waits before it is made.
    pub slow_ms: u32,
}

/// The longest `slow=MS`.
pub const MAX_SLOW_MS: u32 = 10_000;

/// What to do to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Fail before writing: nothing is stored.
    BeforeWrite,
    /// Write, then fail: the batch is stored and delivered again.
    AfterWrite,
}

impl Faults {
    /// Parses a spec; an empty spec turns faults off.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut faults = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let rate = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("fault rate {v:?} is not a number from 0 to 1"))
            };
            match part.split_once('=') {
                None if part == "markers" => faults.markers = true,
                Some(("before", v)) => faults.before_rate = rate(v)?,
                Some(("after", v)) => faults.after_rate = rate(v)?,
                Some(("down", v)) => {
                    let parsed = v
                        .split_once('@')
                        .and_then(|(db, until)| Some((db.to_owned(), until.parse().ok()?)))
                        .filter(|(db, _)| crate::shards::valid_binding(db));
                    faults
                        .down
                        .push(parsed.ok_or_else(|| format!("down={v:?} is not DB_k@epoch-ms"))?);
                }
                Some(("slow", v)) => {
                    faults.slow_ms =
                        v.parse()
                            .ok()
                            .filter(|ms| *ms <= MAX_SLOW_MS)
                            .ok_or_else(|| {
                                format!("slow={v:?} is not milliseconds from 0 to {MAX_SLOW_MS}")
                            })?
                }
                Some(("letters-until", v)) => {
                    faults.letters_until = Some(
                        v.parse()
                            .map_err(|_| format!("letters-until={v:?} is not epoch ms"))?,
                    )
                }
                _ => return Err(format!("unknown fault {part:?}")),
            }
        }
        Ok(faults)
    }

    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Whether reads and writes of database `binding` fail at `now_ms`.
    pub fn database_down(&self, binding: &str, now_ms: i64) -> bool {
        self.down
            .iter()
            .any(|(db, until)| db == binding && now_ms < *until)
    }

    /// Whether the session's actor is reset right after the first send of this turn.
    pub fn resets_after_send(&self, message: &str) -> bool {
        self.markers && message.contains("[fault:reset]")
    }

    /// Whether the first send of this turn fails.
    pub fn fails_first_send(&self, message: &str) -> bool {
        self.markers && message.contains("[fault:send-fails]")
    }

    /// Whether storing dead letters fails at `now_ms`.
    pub fn fails_letters(&self, now_ms: i64) -> bool {
        self.letters_until.is_some_and(|until| now_ms < until)
    }

    /// Whether a marker holds back this delivery of a turn: it is not written, and fails
    /// as if D1 had.
    pub fn fails_turn(&self, record: &TurnRecord, attempts: u32, now_ms: i64) -> bool {
        if !self.markers {
            return false;
        }
        let text = &record.user_message.content;
        until_marker(text).is_some_and(|until| now_ms < until)
            || text.contains("[fault:before]")
            || (attempts == 1 && text.contains("[fault:before-once]"))
    }

    /// The fault for one D1 write of `(record, attempts)`; `unit` is random in [0, 1).
    pub fn decide<'a>(
        &self,
        write: impl IntoIterator<Item = (&'a TurnRecord, u32)>,
        unit: f64,
    ) -> Fault {
        if self.markers
            && write.into_iter().any(|(record, attempts)| {
                attempts == 1 && record.user_message.content.contains("[fault:after-once]")
            })
        {
            return Fault::AfterWrite;
        }
        if unit < self.before_rate {
            Fault::BeforeWrite
        } else if unit < self.before_rate + self.after_rate {
            Fault::AfterWrite
        } else {
            Fault::None
        }
    }
}

/// The MS of a `[fault:before-until=MS]` marker.
fn until_marker(text: &str) -> Option<i64> {
    let start = text.find("[fault:before-until=")? + "[fault:before-until=".len();
    let end = start + text[start..].find(']')?;
    text[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample;
    use uuid::Uuid;

    #[test]
    fn specs_parse() {
        assert!(Faults::parse("").unwrap().is_off());
        let f = Faults::parse("markers, before=0.2,after=0.1").unwrap();
        assert_eq!(
            f,
            Faults {
                markers: true,
                before_rate: 0.2,
                after_rate: 0.1,
                letters_until: None,
                down: Vec::new(),
                slow_ms: 0,
            }
        );
        assert_eq!(Faults::parse("slow=40").unwrap().slow_ms, 40);
        assert!(!Faults::parse("slow=40").unwrap().is_off());
        for bad in ["slow=", "slow=-1", "slow=fast", "slow=10001"] {
            assert!(Faults::parse(bad).is_err(), "{bad}");
        }
        let f = Faults::parse("down=DB_1@1000").unwrap();
        assert!(f.database_down("DB_1", 999) && !f.database_down("DB_1", 1000));
        assert!(!f.database_down("DB_0", 0));
        let f = Faults::parse("down=DB_0@5,down=DB_1@9,markers").unwrap();
        assert!(f.database_down("DB_0", 4) && f.database_down("DB_1", 8));
        assert!(f.resets_after_send("hi [fault:reset]") && !f.resets_after_send("hi"));
        assert!(!Faults::default().resets_after_send("[fault:reset]"));
        assert!(f.fails_first_send("x [fault:send-fails]") && !f.fails_first_send("x"));
        assert!(Faults::parse("down=DB_1").is_err() && Faults::parse("down=x@5").is_err());
        let f = Faults::parse("letters-until=1000").unwrap();
        assert!(f.fails_letters(999) && !f.fails_letters(1000));
        assert!(!Faults::default().fails_letters(0));
        assert!(Faults::parse("letters-until=soon").is_err());
        assert!(Faults::parse("before=2").is_err());
        assert!(Faults::parse("explode").is_err());
    }

    #[test]
    fn markers_and_rates_decide() {
        let mut r = sample("1", Uuid::nil(), 1, 1_700_000_000_000);
        let markers = Faults::parse("markers").unwrap();
        assert!(!markers.fails_turn(&r, 1, 0));
        assert_eq!(markers.decide([(&r, 1)], 0.0), Fault::None);
        r.user_message.content = "hi [fault:before-once]".into();
        assert!(markers.fails_turn(&r, 1, 0) && !markers.fails_turn(&r, 2, 0));
        r.user_message.content = "hi [fault:before]".into();
        assert!(markers.fails_turn(&r, 7, 0));
        assert_eq!(
            markers.decide([(&r, 1)], 0.9),
            Fault::None,
            "held back, not the write"
        );
        r.user_message.content = "hi [fault:before-until=1000]".into();
        assert!(markers.fails_turn(&r, 9, 999) && !markers.fails_turn(&r, 9, 1000));
        r.user_message.content = "hi [fault:after-once]".into();
        assert!(!markers.fails_turn(&r, 1, 0));
        assert_eq!(markers.decide([(&r, 1)], 0.9), Fault::AfterWrite);
        assert_eq!(markers.decide([(&r, 2)], 0.9), Fault::None);
        let off = Faults::default();
        assert_eq!(
            off.decide([(&r, 1)], 0.0),
            Fault::None,
            "off ignores markers"
        );
        r.user_message.content = "hi [fault:before]".into();
        assert!(!off.fails_turn(&r, 1, 0));
        let rates = Faults::parse("before=0.2,after=0.2").unwrap();
        assert_eq!(rates.decide([], 0.1), Fault::BeforeWrite);
        assert_eq!(rates.decide([], 0.3), Fault::AfterWrite);
        assert_eq!(rates.decide([], 0.5), Fault::None);
    }
}
