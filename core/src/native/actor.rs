//! The session actor's turn runner (`turn::Runner`) on native SQLite: the same statements
//! its Durable Object runs (`sql::actor`), an in-memory turn queue with faults, an alarm
//! that remembers when it is due, and a clock the test moves. A "reset" is a new
//! [`ActorDb`] (and a new gate and frame log) on the same connection: what was written
//! survives, nothing held in memory does.

use crate::clock::Clock;
use crate::domain::IdempotencyKey;
use crate::record::TurnRecord;
use crate::session::{message_sha256, AnsweredKey, RememberedTurn, SessionState};
use crate::sql::actor as sql;
use crate::turn::{Alarm, Attempt, Binding, SessionStore, StoreError, TurnQueue, Unconfirmed};
use rusqlite::{params, Connection, OptionalExtension};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

/// One actor's storage on a SQLite connection.
pub struct ActorDb<'c> {
    pub conn: &'c Connection,
}

impl<'c> ActorDb<'c> {
    /// Opens the storage as the actor does: upgrades an older schema in place, and creates
    /// nothing when no session was ever started.
    pub fn open(conn: &'c Connection) -> Result<Self, StoreError> {
        let tables: Vec<String> = {
            let mut st = conn.prepare(sql::EXISTING_TABLES).map_err(err)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        let version = if tables.iter().any(|t| t == "actor_meta") {
            conn.query_row(sql::SELECT_VERSION, [], |r| r.get(0))
                .optional()
                .map_err(err)?
        } else {
            None
        };
        if let sql::Schema::Upgrade(steps) = sql::schema(&tables, version).map_err(StoreError)? {
            for step in steps {
                conn.execute(step, []).map_err(err)?;
            }
        }
        Ok(Self { conn })
    }

    /// Starts the session, creating the schema first (as the actor's `/start` does).
    pub fn start(&self, s: &SessionState) -> Result<(), StoreError> {
        for statement in sql::SCHEMA {
            self.conn.execute(statement, []).map_err(err)?;
        }
        self.conn
            .execute(
                sql::INSERT_SESSION,
                params![
                    s.id.to_string(),
                    s.user_id.to_string(),
                    s.character_type.as_str(),
                    s.locale.as_str(),
                    s.username,
                    s.created_at,
                    s.ended_at
                ],
            )
            .map_err(err)?;
        Ok(())
    }

    /// The alarm's work at `now_ms`: drops the answers that expired; returns when the next
    /// one expires.
    pub fn expire_answers(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .execute(
                sql::FORGET_ANSWERS,
                [now_ms - crate::session::ANSWER_KEEP_MS],
            )
            .map_err(err)?;
        let oldest: Option<i64> = self
            .conn
            .query_row(sql::OLDEST_ANSWER, [], |r| r.get(0))
            .map_err(err)?;
        Ok(oldest.map(|at| at + crate::session::ANSWER_KEEP_MS))
    }

    /// (turns held, turns unconfirmed, keys held, answers held).
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        self.conn
            .query_row(sql::COUNTS, [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
    }
}

impl SessionStore for ActorDb<'_> {
    fn session(&self) -> Result<Option<SessionState>, StoreError> {
        let exists: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'session'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if exists.is_none() {
            return Ok(None);
        }
        let row = self
            .conn
            .query_row(sql::SELECT_SESSION, [], |r| {
                Ok(crate::session::SessionRow {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    character_type: r.get(2)?,
                    locale: r.get(3)?,
                    username: r.get(4)?,
                    created_at: r.get(5)?,
                    ended_at: r.get(6)?,
                })
            })
            .optional()
            .map_err(err)?;
        row.map(|r| r.into_state().map_err(StoreError)).transpose()
    }

    fn answered_key(&self, key: &IdempotencyKey) -> Result<Option<AnsweredKey>, StoreError> {
        self.conn
            .query_row(sql::SELECT_KEY, [key.as_str()], |r| {
                Ok(AnsweredKey {
                    message_sha256: r.get(0)?,
                    answer: r.get(1)?,
                    answered_at: r.get(2)?,
                })
            })
            .optional()
            .map_err(err)
    }

    fn unconfirmed(&self) -> Result<Vec<Unconfirmed>, StoreError> {
        let mut st = self.conn.prepare(sql::UNCONFIRMED_TURNS).map_err(err)?;
        let rows: Vec<(i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        rows.into_iter()
            .map(|(slot, text)| {
                TurnRecord::decode(&text)
                    .map(|record| Unconfirmed { slot, record })
                    .map_err(|e| StoreError(e.to_string()))
            })
            .collect()
    }

    fn recent_turns(&self, n: u32) -> Result<Vec<RememberedTurn>, StoreError> {
        let mut st = self.conn.prepare(sql::RECENT_TURNS).map_err(err)?;
        let rows = st
            .query_map([n], |r| {
                Ok(RememberedTurn {
                    seq: r.get(0)?,
                    user_content: r.get(1)?,
                    agent_content: r.get(2)?,
                    score_raw: r.get(3)?,
                    emotion: r.get(4)?,
                })
            })
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn last_frame_base(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(sql::LAST_FRAME_BASE, [], |r| r.get(0))
            .map_err(err)
    }

    fn bind(&self, turn: &Binding<'_>) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let r = turn.record;
        tx.execute(
            sql::BIND_TURN,
            params![
                turn.seq,
                turn.keep,
                r.turn_id.to_string(),
                r.user_message.content,
                r.agent_message.content,
                r.score.raw,
                r.agent_message.emotion.as_str(),
                r.user_message.created_at,
                turn.frame_base,
                r.encode()
            ],
        )
        .map_err(err)?;
        if let Some(key) = turn.key {
            tx.execute(
                sql::INSERT_KEY,
                params![
                    key.as_str(),
                    message_sha256(&r.user_message.content),
                    r.turn_id.to_string(),
                    turn.answer,
                    turn.now_ms
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn unbind(&self, slot: i64, record: &TurnRecord) -> Result<(), StoreError> {
        self.conn
            .execute(sql::UNBIND_TURN, params![slot, record.turn_id.to_string()])
            .map_err(err)?;
        Ok(())
    }

    fn confirm(&self, slot: i64, record: &TurnRecord, keep: u32) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        tx.execute(sql::CLEAR_RECORD, params![slot, record.turn_id.to_string()])
            .map_err(err)?;
        tx.execute(sql::PRUNE_TURNS, [keep]).map_err(err)?;
        if record.game_over {
            tx.execute(sql::END_SESSION, [record.user_message.created_at])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

/// The actor's alarm: when it is due, if set, and how many times it was set (each
/// `setAlarm` is billed). A Durable Object has one alarm; the actor's policy
/// (`session::alarm_to_set`, `session::next_sweep`) decides when to move it.
#[derive(Debug, Default)]
pub struct MemoryAlarm {
    pub at: Cell<Option<i64>>,
    pub sets: Cell<usize>,
}

impl Alarm for MemoryAlarm {
    async fn expire_by(&self, at_ms: i64) {
        if let Some(at) = crate::session::alarm_to_set(self.at.get(), at_ms) {
            self.at.set(Some(at));
            self.sets.set(self.sets.get() + 1);
        }
    }
}

impl MemoryAlarm {
    /// The alarm runs at `now_ms` if it is due: the actor's alarm handler's work (answers
    /// that expired dropped, the alarm set for the next one). Answers whether it ran.
    pub fn ring(&self, store: &ActorDb<'_>, now_ms: i64) -> bool {
        match self.at.get() {
            Some(at) if at <= now_ms => {
                let next = store.expire_answers(now_ms).unwrap();
                self.at
                    .set(next.map(|due| crate::session::next_sweep(now_ms, due)));
                self.sets.set(self.sets.get() + usize::from(next.is_some()));
                true
            }
            _ => false,
        }
    }
}

/// What the in-memory queue does to the next send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFault {
    /// The send fails and nothing is queued.
    Fail,
    /// The record is queued, then the actor is reset before it hears so: the send never
    /// returns, and nothing after it in the flow runs ([`run_until_reset`] drops the turn).
    ResetAfterSend,
}

/// The turn queue in memory: every record sent, in order, as the consumer would receive it.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: RefCell<Vec<String>>,
    faults: RefCell<VecDeque<QueueFault>>,
    /// Sends asked with [`Attempt::Again`].
    pub resent: Cell<usize>,
    /// Set when a send met [`QueueFault::ResetAfterSend`]: the actor is being reset.
    resetting: Cell<bool>,
}

impl MemoryQueue {
    /// The next sends meet these faults, in order.
    pub fn fail_next(&self, fault: QueueFault) {
        self.faults.borrow_mut().push_back(fault);
    }

    /// Whether the actor is being reset (a send met [`QueueFault::ResetAfterSend`]); asking
    /// clears it.
    pub fn take_reset(&self) -> bool {
        self.resetting.replace(false)
    }

    /// The records queued, decoded.
    pub fn records(&self) -> Vec<TurnRecord> {
        self.sent
            .borrow()
            .iter()
            .map(|t| TurnRecord::decode(t).unwrap())
            .collect()
    }
}

impl TurnQueue for MemoryQueue {
    async fn send(&self, record: &TurnRecord, attempt: Attempt) -> Result<(), String> {
        if attempt == Attempt::Again {
            self.resent.set(self.resent.get() + 1);
        }
        let fault = self.faults.borrow_mut().pop_front();
        match fault {
            Some(QueueFault::Fail) => Err("injected: the queue refused the send".into()),
            Some(QueueFault::ResetAfterSend) => {
                self.sent.borrow_mut().push(record.encode());
                self.resetting.set(true);
                std::future::pending().await
            }
            None => {
                self.sent.borrow_mut().push(record.encode());
                Ok(())
            }
        }
    }
}

/// A clock the test moves; ids draw on a counter.
pub struct TestClock {
    pub now: Cell<i64>,
    counter: Cell<u64>,
}

impl TestClock {
    pub fn at(now_ms: i64) -> Self {
        Self {
            now: Cell::new(now_ms),
            counter: Cell::new(0),
        }
    }

    pub fn advance(&self, ms: i64) {
        self.now.set(self.now.get() + ms);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    fn random10(&self) -> [u8; 10] {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let mut out = [0u8; 10];
        out[2..].copy_from_slice(&n.to_be_bytes());
        out
    }
}

/// Runs a future that waits on nothing outside the test (the offline engine, the memory
/// queue, [`Yield`]) to completion, polling it until it is done.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return v;
        }
    }
    panic!("the flow never finished")
}

/// Runs a turn as [`block_on`] does, unless the actor is reset on the way (a send met
/// [`QueueFault::ResetAfterSend`]): then the turn is dropped where it stands, as a reset
/// drops a Durable Object's work, and `None` is the answer.
pub fn run_until_reset<F: std::future::Future>(queue: &MemoryQueue, f: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    for _ in 0..1_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Some(v);
        }
        if queue.take_reset() {
            return None;
        }
    }
    panic!("the flow never finished")
}

/// A pause that gives way once, as a timer would, so that other futures run meanwhile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Yield;

impl crate::engine::Pause for Yield {
    async fn pause(&self, _: u64) {
        let mut yielded = false;
        std::future::poll_fn(|_| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                std::task::Poll::Pending
            }
        })
        .await
    }
}
