//! The turn runner: one turn of a session, from the player's ask to the recorded answer,
//! for every transport. Plain HTTP, server-sent events and the live socket each give
//! [`Runner::run`] a [`TurnSink`] and a stop signal, and nothing else; the runner does the
//! rest over the actor's ports (its store, the turn queue, the engine, the clock, its
//! alarm, its gate and its frame log), so the native tests run exactly what the actor runs,
//! on SQLite with an in-memory queue and faults (`native::actor`).
//!
//! 1. **Who may play.** The session's owner, checked once, before the turn waits for its
//!    session: anyone else is "not found" and waits for nothing.
//! 2. **One turn at a time** ([`Gate`]), in arrival order, with a few waiting at most.
//! 3. **Finish what an earlier attempt left.** Every turn is bound (its record written, and
//!    a keyed turn's key and answer) before its send. If the send was never confirmed (the
//!    queue failed on a keyed turn, or the actor was reset between the send and the
//!    confirmation, keyed or not), the record may be on the queue: it is sent again, the
//!    same record, which the consumer stores once, and confirmed, ending the game it ended.
//!    So the actor and D1 never disagree about a turn: a game over is final after a reset,
//!    the character remembers the turn, and a key can never be played again with other
//!    words.
//! 4. **Decide** (`session::decide_turn`): a known key's answer, a key reused or expired,
//!    an ended game, or go on.
//! 5. **Play**: ask the engine with the last turns, each piece of the reply a numbered frame
//!    to the sink as it is written, unless the stop comes first; then bind, make sure the
//!    actor's alarm drops the answer on time, send, confirm, and tell the sink `done` (or
//!    `error`). An unkeyed turn whose send failed is forgotten: its retry is a new turn
//!    anyway, and it must not be sent again behind the player's back.
//!
//! Every frame takes its number from the session's [`FrameLog`], so a socket sees numbers
//! that only go up, whatever it is sent, and a reconnecting socket gets what it missed.

use crate::clock::Clock;
use crate::domain::IdempotencyKey;
use crate::engine::{ReplyEngine, ReplyInput};
use crate::ids::TurnIds;
use crate::live::{whole_turn, Frame, FrameLog};
use crate::record::{TurnInput, TurnRecord};
use crate::refusal::{Kind, Refusal};
use crate::session::{
    decide_turn, AnsweredKey, Decision, RememberedTurn, SessionState, TurnAnswer, TurnAsk,
    ANSWER_KEEP_MS, MAX_WAITING_TURNS,
};
use futures_util::future::{select, Either};
use futures_util::lock::{Mutex, MutexGuard};
use std::cell::{Cell, RefCell};
use std::future::Future;

/// A store that failed, with what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// A turn bound before its send: what [`SessionStore::bind`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Its place in the session's order: one past the newest turn remembered. It lives in
    /// slot `seq % keep`, the oldest turn's.
    pub seq: i64,
    pub record: &'a TurnRecord,
    /// The client's key, bound with the message's digest and the exact answer.
    pub key: Option<&'a IdempotencyKey>,
    pub answer: &'a str,
    /// The base of the turn's frame numbers, kept so that a client reconnecting after a
    /// restart gets the turn with the numbers it saw.
    pub frame_base: i64,
    /// Turns the character remembers: the turn takes the place of the oldest one.
    pub keep: u32,
    pub now_ms: i64,
}

/// A bound turn whose send is not confirmed, and the slot it is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Unconfirmed {
    pub slot: i64,
    pub record: TurnRecord,
}

/// What a session's actor keeps: its SQLite storage in the Worker, rusqlite in the tests.
/// Each method is one atomic write or one read.
pub trait SessionStore {
    /// The session, if this store holds one.
    fn session(&self) -> Result<Option<SessionState>, StoreError>;
    /// What the store knows of an idempotency key.
    fn answered_key(&self, key: &IdempotencyKey) -> Result<Option<AnsweredKey>, StoreError>;
    /// The bound turns whose send is not confirmed, oldest first.
    fn unconfirmed(&self) -> Result<Vec<Unconfirmed>, StoreError>;
    /// The newest `n` confirmed turns, oldest first: the engine's context.
    fn recent_turns(&self, n: u32) -> Result<Vec<RememberedTurn>, StoreError>;
    /// The base of the newest turn's frame numbers: where a fresh instance numbers on from.
    fn last_frame_base(&self) -> Result<Option<i64>, StoreError>;
    /// Binds a turn before its send, in one write: the turn with its record (in the place of
    /// the oldest one the character remembers), and its key with the answer when keyed.
    fn bind(&self, turn: &Binding<'_>) -> Result<(), StoreError>;
    /// Forgets the bound unkeyed turn in `slot` whose send failed: it is never sent again.
    fn unbind(&self, slot: i64, record: &TurnRecord) -> Result<(), StoreError>;
    /// The send of the turn in `slot` is confirmed: it is part of the conversation, a game
    /// over ends the session, and what a larger `keep` or an older schema left past the
    /// newest `keep` turns goes, in one write.
    fn confirm(&self, slot: i64, record: &TurnRecord, keep: u32) -> Result<(), StoreError>;
}

/// Whether a record goes on the queue for the first time or again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    First,
    Again,
}

/// The turn queue.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait TurnQueue {
    /// Puts the record on the queue; `Ok` means it is durably queued.
    async fn send(&self, record: &TurnRecord, attempt: Attempt) -> Result<(), String>;
}

/// The actor's alarm, which drops answers once they expire.
#[allow(async_fn_in_trait)]
pub trait Alarm {
    /// Makes sure the alarm runs by `at_ms`. A failure is the adapter's to log: the answer
    /// still expires on time for every retry (`AnsweredKey::expired`), it is only kept
    /// longer.
    async fn expire_by(&self, at_ms: i64);
}

/// Who hears a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every socket of the session: a turn being played. Kept for reconnecting sockets.
    Session,
    /// Only who asked: a key's earlier answer, replayed.
    Asker,
}

/// Where a transport takes a turn's frames as they happen.
pub trait TurnSink {
    /// A numbered frame of the turn.
    fn frame(&mut self, to: Audience, frame: &Frame);
    /// The turn is answered from here on, played or replayed from its key: everything
    /// refused before this was refused before any frame (an SSE response starts here).
    fn answering(&mut self, _replayed: bool) {}
}

/// A transport that wants no frames (a test, or a caller that only reads the answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TurnSink for Silent {
    fn frame(&mut self, _: Audience, _: &Frame) {}
}

/// A turn's answer: the exact JSON body of `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub body: String,
    /// The answer of an earlier attempt with the same key.
    pub replayed: bool,
}

/// Why a turn was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnError {
    /// No such session, or another player's.
    NotFound,
    KeyReused,
    KeyExpired,
    Ended,
    /// Too many turns of the session wait already.
    Busy,
    /// The record was not confirmed queued; retry with the same key.
    QueueUnavailable(String),
    /// The actor's storage failed.
    Store(String),
    /// The record built for the turn does not validate (a bug: never queue what the
    /// consumer would refuse).
    InvalidRecord(String),
    /// The player stopped the turn while the engine was writing: nothing was bound, queued
    /// or scored, and the key may be played again.
    Stopped,
}

impl TurnError {
    /// What the client is told: a code, words, and the status its kind decides. Internal
    /// details stay out of it ([`Self::detail`] is for the log).
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::NotFound => Refusal::not_found(
                "session_not_found",
                "no session with this id for this player",
            ),
            Self::KeyReused => Refusal::new(Kind::Unprocessable, "idempotency_key_reused", "this Idempotency-Key was already used for another message in this session; use a new key for each turn"),
            Self::KeyExpired => Refusal::new(Kind::Unprocessable, "idempotency_key_expired", "this Idempotency-Key was answered more than 24 hours ago; use a new key"),
            Self::Ended => Refusal::conflict(
                "session_ended",
                "the game in this session is over; start a new session",
            ),
            Self::Busy => Refusal::new(
                Kind::Busy,
                "turn_in_progress",
                format!(
                    "this session already has {MAX_WAITING_TURNS} turns waiting; send one at a time"
                ),
            ),
            Self::QueueUnavailable(_) => Refusal::new(
                Kind::Unavailable,
                "queue_unavailable",
                "the turn could not be queued; retry with the same Idempotency-Key",
            ),
            Self::Store(_) | Self::InvalidRecord(_) => Refusal::internal(),
            Self::Stopped => Refusal::conflict(
                "stopped",
                "the turn was stopped before it was queued: nothing was scored; send it again with the same key to play it",
            ),
        }
    }

    /// What went wrong inside, for the log (never for the client).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::QueueUnavailable(d) => Some(format!("the turn queue: {d}")),
            Self::Store(d) => Some(format!("the actor's storage: {d}")),
            Self::InvalidRecord(d) => Some(format!("the turn's record is invalid: {d}")),
            _ => None,
        }
    }
}

impl From<StoreError> for TurnError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.0)
    }
}

/// A turn that failed, and whether the sink was already told (an `error` frame ended it);
/// a refusal before the turn was answered was told nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub error: TurnError,
    pub told: bool,
}

impl Failed {
    fn before(error: TurnError) -> Self {
        Self { error, told: false }
    }
}

/// One turn at a time per session, in arrival order (`futures` hands the lock over first
/// come, first served), with at most `MAX_WAITING_TURNS` waiting: a player types one line
/// at a time, a deeper queue is a runaway client, and each waiting turn holds memory.
#[derive(Debug, Default)]
pub struct Gate {
    lock: Mutex<()>,
    waiting: Cell<usize>,
}

impl Gate {
    /// Waits for the session's turn, or refuses when too many wait already.
    pub async fn enter(&self) -> Result<MutexGuard<'_, ()>, TurnError> {
        if self.waiting.get() >= MAX_WAITING_TURNS {
            return Err(TurnError::Busy);
        }
        let _waiting = Waiting::enter(&self.waiting);
        Ok(self.lock.lock().await)
    }

    /// Turns waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }
}

/// Counts a turn as waiting while it is alive, even if its request goes away mid-wait.
struct Waiting<'a>(&'a Cell<usize>);

impl<'a> Waiting<'a> {
    fn enter(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What an instance of a session's actor holds in memory for its turns: lost on a reset,
/// and rebuilt from storage by the next turn.
#[derive(Debug, Default)]
pub struct InstanceMemory {
    /// One turn at a time.
    pub gate: Gate,
    /// Every frame's number, and what a reconnecting socket may have missed.
    pub frames: RefCell<FrameLog>,
    /// Whether every turn this instance bound was confirmed, so that storage holds none to
    /// finish: a fresh instance does not know, and looks once.
    settled: Cell<bool>,
}

/// A session's actor, as the runner uses it.
pub struct Runner<'a, S, Q, E, C, A> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub engine: &'a E,
    pub clock: &'a C,
    pub alarm: &'a A,
    pub memory: &'a InstanceMemory,
    /// Turns the character remembers.
    pub keep: u32,
}

impl<S, Q, E, C, A> Runner<'_, S, Q, E, C, A>
where
    S: SessionStore,
    Q: TurnQueue,
    E: ReplyEngine,
    C: Clock,
    A: Alarm,
{
    /// Runs one turn of `ask`: its frames go to `sink`, and `stop` ends it while the engine
    /// writes.
    pub async fn run(
        &self,
        ask: &TurnAsk,
        sink: &mut dyn TurnSink,
        stop: impl Future<Output = ()>,
    ) -> Result<Answered, Failed> {
        let owned = self
            .store
            .session()
            .map_err(|e| Failed::before(e.into()))?
            .is_some_and(|s| s.owned_by(ask.identity.user_id()));
        if !owned {
            return Err(Failed::before(TurnError::NotFound));
        }
        let _turn = self.memory.gate.enter().await.map_err(Failed::before)?;
        let session = self.prepare().await.map_err(Failed::before)?;
        let known = match &ask.idempotency_key {
            Some(key) => self
                .store
                .answered_key(key)
                .map_err(|e| Failed::before(e.into()))?,
            None => None,
        };
        let refused = |e| Err(Failed::before(e));
        match decide_turn(&session, &ask.message, known.as_ref(), self.clock.now_ms()) {
            Decision::Replay(answer) => {
                let answered = Answered {
                    body: answer.to_owned(),
                    replayed: true,
                };
                self.replay(ask, &answered, sink);
                Ok(answered)
            }
            Decision::KeyReused => refused(TurnError::KeyReused),
            Decision::KeyExpired => refused(TurnError::KeyExpired),
            Decision::Ended => refused(TurnError::Ended),
            Decision::Proceed => self.play(&session, ask, sink, stop).await,
        }
    }

    /// Sends again, and confirms, every bound turn whose send is not confirmed. Answers the
    /// number.
    pub async fn finish_unconfirmed(&self) -> Result<usize, TurnError> {
        let pending = self.store.unconfirmed()?;
        for Unconfirmed { slot, record } in &pending {
            self.queue
                .send(record, Attempt::Again)
                .await
                .map_err(TurnError::QueueUnavailable)?;
            self.store.confirm(*slot, record, self.keep)?;
            if record.idempotency_key.is_some() {
                // Bound no later than its message: its answer expires by then.
                self.alarm
                    .expire_by(record.user_message.created_at + ANSWER_KEEP_MS)
                    .await;
            }
        }
        Ok(pending.len())
    }

    /// Before a decision: the frame numbers known, what an earlier attempt left finished
    /// (looked for only when this instance may have left one, or never looked), and the
    /// session as it stands after that.
    async fn prepare(&self) -> Result<SessionState, TurnError> {
        let frames = &self.memory.frames;
        if !frames.borrow().knows_base() {
            let base = self.store.last_frame_base()?;
            frames.borrow_mut().restore(base);
        }
        if !self.memory.settled.get() {
            self.finish_unconfirmed().await?;
            self.memory.settled.set(true);
        }
        self.store.session()?.ok_or(TurnError::NotFound)
    }

    /// A key's earlier answer, to who asked: the message, the reply whole, the answer.
    fn replay(&self, ask: &TurnAsk, answered: &Answered, sink: &mut dyn TurnSink) {
        sink.answering(true);
        let reply = serde_json::from_str::<TurnAnswer>(&answered.body)
            .map(|a| a.reply)
            .unwrap_or_default();
        let base = self
            .memory
            .frames
            .borrow_mut()
            .aside_turn(self.clock.now_ms())
            .base;
        for frame in whole_turn(
            base,
            ask.idempotency_key.as_ref(),
            &ask.message,
            &reply,
            &answered.body,
        ) {
            sink.frame(Audience::Asker, &frame);
        }
    }

    /// A frame of the turn being played: kept for reconnects, and told to the session.
    fn tell(&self, sink: &mut dyn TurnSink, frame: Frame) {
        self.memory.frames.borrow_mut().keep(&frame, false);
        sink.frame(Audience::Session, &frame);
    }

    /// Plays a turn the decision let through.
    async fn play(
        &self,
        session: &SessionState,
        ask: &TurnAsk,
        sink: &mut dyn TurnSink,
        stop: impl Future<Output = ()>,
    ) -> Result<Answered, Failed> {
        let key = ask.idempotency_key.as_ref();
        let frames = &self.memory.frames;
        let seq = frames.borrow_mut().begin_turn(self.clock.now_ms());
        sink.answering(false);
        self.tell(
            sink,
            Frame::Player {
                key: key.cloned(),
                seq: seq.player(),
                message: ask.message.clone(),
            },
        );
        let mut rest = String::new();
        let composed = {
            let mut piece = |text: &str| {
                let number = frames.borrow_mut().delta();
                match number {
                    Some(seq) => self.tell(
                        sink,
                        Frame::Delta {
                            key: key.cloned(),
                            seq,
                            text: text.to_owned(),
                        },
                    ),
                    None => rest.push_str(text),
                }
            };
            let compose = std::pin::pin!(self.compose(session, ask, &mut piece));
            match select(compose, std::pin::pin!(stop)).await {
                Either::Left((record, _)) => record,
                Either::Right(((), _)) => Err(TurnError::Stopped),
            }
        };
        let outcome = match composed {
            Ok((record, turn)) => self.record(turn, &record, key, seq.base).await,
            Err(e) => Err(e),
        };
        // What did not get a number of its own, then the turn's last frame.
        if !rest.is_empty() {
            self.tell(
                sink,
                Frame::Delta {
                    key: key.cloned(),
                    seq: seq.rest(),
                    text: rest,
                },
            );
        }
        let last = match &outcome {
            Ok(answered) => Frame::Done {
                key: key.cloned(),
                seq: seq.last(),
                answer: answered.body.clone(),
            },
            Err(e) => {
                let refusal = e.refusal();
                Frame::Error {
                    key: key.cloned(),
                    seq: seq.last(),
                    code: refusal.code,
                    message: refusal.message,
                }
            }
        };
        self.tell(sink, last);
        frames.borrow_mut().end_turn();
        outcome.map_err(|error| Failed { error, told: true })
    }

    /// Bind turn number `turn`, make sure the answer expires, send, confirm.
    async fn record(
        &self,
        turn: i64,
        record: &TurnRecord,
        key: Option<&IdempotencyKey>,
        frame_base: i64,
    ) -> Result<Answered, TurnError> {
        let answer = TurnAnswer::of(record).to_json();
        let now = self.clock.now_ms();
        let slot = turn % i64::from(self.keep);
        // Until the confirmation, this instance has a turn to finish if anything fails.
        self.memory.settled.set(false);
        self.store.bind(&Binding {
            seq: turn,
            record,
            key,
            answer: &answer,
            frame_base,
            keep: self.keep,
            now_ms: now,
        })?;
        if key.is_some() {
            // Before the send: an actor reset after it must not leave an answer forever.
            self.alarm.expire_by(now + ANSWER_KEEP_MS).await;
        }
        if let Err(e) = self.queue.send(record, Attempt::First).await {
            if key.is_none() {
                // Nothing can ask for it again: forget it, so it is never sent.
                self.store.unbind(slot, record)?;
            }
            return Err(TurnError::QueueUnavailable(e));
        }
        self.store.confirm(slot, record, self.keep)?;
        self.memory.settled.set(true);
        Ok(Answered {
            body: answer,
            replayed: false,
        })
    }

    /// Asks the engine (its pieces go to `piece`) and builds the turn's record; answers it
    /// with the turn's number in the session (one past the newest remembered: at this point
    /// every bound turn is confirmed, so that is the newest of all).
    async fn compose(
        &self,
        session: &SessionState,
        ask: &TurnAsk,
        piece: &mut dyn FnMut(&str),
    ) -> Result<(TurnRecord, i64), TurnError> {
        let remembered = self.store.recent_turns(self.keep)?;
        let turn = remembered.last().map_or(1, |t| t.seq + 1);
        let history: Vec<_> = remembered.iter().map(RememberedTurn::history).collect();
        let locale = ask.locale.unwrap_or(session.locale);
        let message_at = self.clock.now_ms();
        let reply = self
            .engine
            .reply(
                &ReplyInput {
                    character: session.character_type,
                    locale,
                    player_name: &session.username,
                    history: &history,
                    message: &ask.message,
                },
                piece,
            )
            .await;
        let key = ask.idempotency_key.as_ref();
        let ids = match key {
            // The same key in the same session names the same turn on every attempt.
            Some(key) => TurnIds::keyed(session.id.uuid(), session.created_at, key),
            None => TurnIds::random(message_at, self.clock.random10()),
        };
        let record = TurnRecord::build(TurnInput {
            ids,
            session_id: session.id.uuid(),
            identity: &ask.identity,
            character: session.character_type,
            locale,
            message: &ask.message,
            message_at,
            reply: &reply,
            reply_at: self.clock.now_ms(),
            idempotency_key: key,
        });
        record
            .validate()
            .map_err(|e| TurnError::InvalidRecord(e.to_string()))?;
        Ok((record, turn))
    }
}
