//! One turn of a session, from the decision to the recorded answer: the flow the session's
//! actor runs, over small traits, so that the native tests run the same flow on SQLite with
//! an in-memory queue and faults (`native::actor`).
//!
//! 1. **Finish what an earlier attempt left.** A keyed turn is bound (its key, message,
//!    record and answer written) before its send. If the send was never confirmed (the queue
//!    failed, or the actor was reset between the send and the confirmation), the record may
//!    be on the queue: it is sent again, the same record, which the consumer stores once, and
//!    confirmed. So the actor and D1 never disagree about a turn, and a key can never be
//!    played again with other words: the same key and message get the bound answer, another
//!    message gets `idempotency_key_reused`.
//! 2. **Decide** (`session::decide_turn`): a known key's answer, a key reused or expired, an
//!    ended game, or go on.
//! 3. **Play**: ask the engine with the last turns, handing the reply's pieces to the
//!    transport's [`TurnSink`] as they are written, build and check the record, bind a keyed
//!    turn, send it, confirm it. An unkeyed turn is not bound: its retry is a new turn
//!    anyway, and a failed send of it must not be sent again behind the player's back.
//!
//! The same flow serves every transport: plain HTTP ignores the events, SSE writes them as
//! events of its response, and the WebSocket sends them as frames to every socket of the
//! session. A player's stop cancels the engine; the turn then ends with
//! [`TurnError::Stopped`] before anything is bound or queued.

use crate::engine::{ReplyEngine, ReplyInput};
use crate::ids::TurnIds;
use crate::record::{TurnInput, TurnRecord};
use crate::session::{
    decide_turn, AnsweredKey, Decision, SessionState, StoredTurn, TurnAnswer, TurnAsk,
};
use futures_util::future::{select, Either};
use std::future::Future;

/// A store that failed, with what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// What a session's actor keeps: its SQLite storage in the Worker, rusqlite in the tests.
/// Each method is one atomic write or one read.
pub trait SessionStore {
    /// The session, if this store holds one.
    fn session(&self) -> Result<Option<SessionState>, StoreError>;
    /// What the store knows of an idempotency key.
    fn answered_key(&self, key: &str) -> Result<Option<AnsweredKey>, StoreError>;
    /// The records of bound turns whose send is not confirmed, oldest first.
    fn unconfirmed(&self) -> Result<Vec<TurnRecord>, StoreError>;
    /// The newest `n` confirmed turns, oldest first: the engine's context.
    fn recent_turns(&self, n: u32) -> Result<Vec<StoredTurn>, StoreError>;
    /// Binds `key` to the turn before its send: the key with the message's digest and the
    /// answer, and the turn with its record, in one write.
    fn bind(
        &self,
        record: &TurnRecord,
        key: &str,
        answer: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The turn's send is confirmed: it joins the conversation (keeping the newest `keep`),
    /// and a game over ends the session, in one write.
    fn confirm(&self, record: &TurnRecord, keep: u32) -> Result<(), StoreError>;
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

/// The time and the randomness of ids.
pub trait Clock {
    fn now_ms(&self) -> i64;
    fn random10(&self) -> [u8; 10];
}

/// Where a transport takes a turn's events as they happen.
pub trait TurnSink {
    /// The turn is going to be answered (played, or replayed from its key): the player's
    /// message is part of the session now.
    fn begin(&mut self, message: &str);
    /// More of the reply's text, in order.
    fn delta(&mut self, text: &str);
}

/// A transport that wants no events (plain HTTP).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TurnSink for Silent {
    fn begin(&mut self, _: &str) {}
    fn delta(&mut self, _: &str) {}
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
    /// 404 `session_not_found`: no such session, or another player's.
    NotFound,
    /// 422 `idempotency_key_reused`.
    KeyReused,
    /// 422 `idempotency_key_expired`.
    KeyExpired,
    /// 409 `session_ended`.
    Ended,
    /// 503 `queue_unavailable`: the record was not confirmed queued; retry with the same key.
    QueueUnavailable(String),
    /// 500: the actor's storage failed.
    Store(String),
    /// 500: the record built for the turn does not validate (a bug: never queue what the
    /// consumer would refuse).
    InvalidRecord(String),
    /// The player stopped the turn while the engine was writing: nothing was bound, queued
    /// or scored, and the key may be played again.
    Stopped,
}

/// What [`begin`] found: a key's earlier answer, or a turn to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    Replay(Answered),
    Play(SessionState),
}

impl From<StoreError> for TurnError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.0)
    }
}

/// Sends again, and confirms, every bound turn whose send is not confirmed.
pub async fn finish_unconfirmed<S: SessionStore, Q: TurnQueue>(
    store: &S,
    queue: &Q,
    keep: u32,
) -> Result<usize, TurnError> {
    let pending = store.unconfirmed()?;
    for record in &pending {
        queue
            .send(record, Attempt::Again)
            .await
            .map_err(TurnError::QueueUnavailable)?;
        store.confirm(record, keep)?;
    }
    Ok(pending.len())
}

/// Plays one turn of `ask` in the session `store` holds, keeping the newest `keep` turns,
/// with no way to stop it: [`begin`], then [`finish`] or the replay.
pub async fn play<S: SessionStore, Q: TurnQueue, E: ReplyEngine, C: Clock>(
    store: &S,
    queue: &Q,
    engine: &E,
    clock: &C,
    ask: &TurnAsk,
    keep: u32,
    sink: &mut dyn TurnSink,
) -> Result<Answered, TurnError> {
    match begin(store, queue, clock, ask, keep).await? {
        Begun::Replay(answered) => {
            replay(&answered, ask, sink);
            Ok(answered)
        }
        Begun::Play(session) => {
            finish(
                store,
                queue,
                engine,
                clock,
                ask,
                keep,
                &session,
                sink,
                std::future::pending(),
            )
            .await
        }
    }
}

/// Tells a sink about a replayed answer: the message, then the whole reply as one piece.
pub fn replay(answered: &Answered, ask: &TurnAsk, sink: &mut dyn TurnSink) {
    sink.begin(&ask.message);
    if let Ok(answer) = serde_json::from_str::<TurnAnswer>(&answered.body) {
        sink.delta(&answer.reply);
    }
}

/// The turn's first half: who may play, what an earlier attempt left, and the decision.
/// Everything it refuses is known before any event is sent.
pub async fn begin<S: SessionStore, Q: TurnQueue, C: Clock>(
    store: &S,
    queue: &Q,
    clock: &C,
    ask: &TurnAsk,
    keep: u32,
) -> Result<Begun, TurnError> {
    let caller = ask.identity.user_id();
    if !store.session()?.is_some_and(|s| s.owned_by(caller)) {
        return Err(TurnError::NotFound);
    }
    finish_unconfirmed(store, queue, keep).await?;

    let session = store.session()?;
    let known = match &ask.idempotency_key {
        Some(key) => store.answered_key(key)?,
        None => None,
    };
    match decide_turn(
        session.as_ref(),
        caller,
        &ask.message,
        known.as_ref(),
        clock.now_ms(),
    ) {
        Decision::NotFound => Err(TurnError::NotFound),
        Decision::Replay(answer) => Ok(Begun::Replay(Answered {
            body: answer.to_owned(),
            replayed: true,
        })),
        Decision::KeyReused => Err(TurnError::KeyReused),
        Decision::KeyExpired => Err(TurnError::KeyExpired),
        Decision::Ended => Err(TurnError::Ended),
        Decision::Proceed => session.map(Begun::Play).ok_or(TurnError::NotFound),
    }
}

/// The turn's second half, for a turn [`begin`] let through: the engine writes (its pieces
/// go to `sink`) unless `stop` comes first; then bind, send, confirm.
#[allow(clippy::too_many_arguments)]
pub async fn finish<S: SessionStore, Q: TurnQueue, E: ReplyEngine, C: Clock>(
    store: &S,
    queue: &Q,
    engine: &E,
    clock: &C,
    ask: &TurnAsk,
    keep: u32,
    session: &SessionState,
    sink: &mut dyn TurnSink,
    stop: impl Future<Output = ()>,
) -> Result<Answered, TurnError> {
    sink.begin(&ask.message);
    let record = {
        let compose = std::pin::pin!(compose(store, engine, clock, session, ask, keep, sink));
        match select(compose, std::pin::pin!(stop)).await {
            Either::Left((record, _)) => record?,
            Either::Right(((), _)) => return Err(TurnError::Stopped),
        }
    };
    let answer = TurnAnswer::of(&record).to_json();
    let key = ask.idempotency_key.as_deref();
    if let Some(key) = key {
        store.bind(&record, key, &answer, clock.now_ms())?;
    }
    queue
        .send(&record, Attempt::First)
        .await
        .map_err(TurnError::QueueUnavailable)?;
    store.confirm(&record, keep)?;
    Ok(Answered {
        body: answer,
        replayed: false,
    })
}

/// Asks the engine (its pieces go to `sink`) and builds the turn's record.
async fn compose<S: SessionStore, E: ReplyEngine, C: Clock>(
    store: &S,
    engine: &E,
    clock: &C,
    session: &SessionState,
    ask: &TurnAsk,
    keep: u32,
    sink: &mut dyn TurnSink,
) -> Result<TurnRecord, TurnError> {
    let history: Vec<_> = store
        .recent_turns(keep)?
        .iter()
        .map(StoredTurn::history)
        .collect();
    let locale = ask.locale.unwrap_or(session.locale);
    let message_at = clock.now_ms();
    let reply = engine
        .reply(
            &ReplyInput {
                character: session.character_type,
                locale,
                player_name: &session.username,
                history: &history,
                message: &ask.message,
            },
            &mut |piece| sink.delta(piece),
        )
        .await;
    let key = ask.idempotency_key.as_deref();
    let ids = match key {
        // The same key in the same session names the same turn on every attempt.
        Some(key) => TurnIds::keyed(session.id, session.created_at, key),
        None => TurnIds::random(message_at, clock.random10()),
    };
    let record = TurnRecord::build(TurnInput {
        ids,
        session_id: session.id,
        identity: &ask.identity,
        character: session.character_type,
        locale,
        message: &ask.message,
        message_at,
        reply: &reply,
        reply_at: clock.now_ms(),
        idempotency_key: key,
    });
    record
        .validate()
        .map_err(|e| TurnError::InvalidRecord(e.to_string()))?;
    Ok(record)
}
