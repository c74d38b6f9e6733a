//! `SessionActor`: one SQLite-backed Durable Object per chat session, the one authority for
//! its live state. It keeps the session (owner, character, locale, name, ended), its last
//! turns for the engine's context, every idempotency key it has bound with the exact answer,
//! and the session's live sockets. The flow of a turn is `chat_core::turn`; this module is
//! its adapter over the object's storage, the turn queue, the engine and the clock, plus what
//! only a Durable Object can do: one turn at a time whatever the transport, the sockets of
//! the session (hibernatable: an idle socket costs nothing, and `ping` is answered without
//! waking the object), and an alarm that drops answers when they expire.
//!
//! - [`store`]: its rows (the turn flow's store, tickets, the last live turn).
//! - [`live`]: frames to every socket, the SSE answer, stops, reconnects, floods.
//! - [`sockets`]: the live socket's handlers: tickets, connecting, missed turns, frames.
//! - [`client`]: how the chat Worker calls it.
//!
//! Storage is created only when a session starts (or is adopted from D1): a request for a
//! session id that does not exist reads `sqlite_master`, answers 404, and leaves nothing
//! (and the chat Worker calls an actor only for ids it issued, or that D1 holds).
//!
//! Internal routes (a Durable Object is not reachable from the Internet):
//! - `POST /start` with a `SessionState`: creates the session (a second start changes nothing);
//! - `POST /turn` with a `TurnAsk`: plays one turn and answers as `POST /api/chat` does;
//!   `?sse=1` answers `text/event-stream` as the turn is written;
//! - `POST /ticket` with the player's `Identity`: a ticket for the live socket;
//! - `GET /live?nonce=&after=` with `Upgrade: websocket`: the live socket of a ticket;
//! - `GET /state`: what the actor holds, for operators.

pub mod client;
pub mod live;
mod sockets;
mod store;

use crate::config::{Config, TURNS};
use crate::databases::database;
use crate::db;
use crate::engine::Engine;
use crate::error::ApiError;
use chat_core::identity::Identity;
use chat_core::record::TurnRecord;
use chat_core::refusal::Kind;
use chat_core::session::{SessionState, TurnAsk, ANSWER_KEEP_MS, MAX_WAITING_TURNS};
use chat_core::sql::actor as sql;
use chat_core::turn::{self, Answered, Attempt, Begun, SessionStore, TurnError, TurnQueue};
use futures_util::lock::{Mutex, OwnedMutexGuard};
use futures_util::StreamExt;
use live::{Attachment, Audience, Flood, Frames, LiveSink, Stop};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use store::{ActorStore, Counts, SessionRow};
use uuid::Uuid;
use worker::{
    durable_object, DurableObject, Env, MessageBuilder, Method, QueueContentType, Request,
    Response, State, WebSocket, WebSocketIncomingMessage,
};
use worker_support::clock::{now_ms, WorkerClock};

/// Set on a `POST /api/chat` answer that repeats an earlier one for the same key.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

#[durable_object]
pub struct SessionActor {
    actor: Rc<Actor>,
}

/// The object's state. Shared (`Rc`) so that a streamed answer can go on writing after the
/// request that asked for it returned its response.
pub struct Actor {
    state: State,
    env: Env,
    /// Held for the whole of a turn: one turn at a time per session, in arrival order
    /// (`futures` hands the lock over first come, first served), whatever the transport.
    turn: Arc<Mutex<()>>,
    /// Turns waiting for the lock.
    waiting: Cell<usize>,
    /// Whether this instance has seen its storage hold a current schema.
    ready: Cell<bool>,
    /// The alarm this instance knows of: `None` until read once, then its time if any.
    alarm: Cell<Option<Option<i64>>>,
    /// The frames a reconnecting socket may have missed.
    frames: RefCell<Frames>,
    /// The stops a socket may ask, by the key of the turn in progress.
    stops: RefCell<HashMap<String, Rc<Stop>>>,
    flood: RefCell<Flood>,
    /// What it is handling now, for the usage meter's active time.
    busy: Busy,
}

impl DurableObject for SessionActor {
    fn new(state: State, env: Env) -> Self {
        // `ping` is answered by the runtime, without waking the object.
        match worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(e) => tracing::error!(error = ?e, "the ping auto-response could not be set"),
        }
        Self {
            actor: Rc::new(Actor {
                state,
                env,
                turn: Arc::new(Mutex::new(())),
                waiting: Cell::new(0),
                ready: Cell::new(false),
                alarm: Cell::new(None),
                frames: RefCell::new(Frames::default()),
                stops: RefCell::new(HashMap::new()),
                flood: RefCell::new(Flood::default()),
                busy: Busy::default(),
            }),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let _active = self.actor.active(Billed::Request);
        Ok(match self.actor.clone().route(req).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        })
    }

    /// Drops the answers that expired and sets the alarm for the next one.
    async fn alarm(&self) -> worker::Result<Response> {
        let actor = &self.actor;
        let _active = actor.active(Billed::Request);
        if !actor
            .open()
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?
        {
            return Response::ok("no session");
        }
        let next = actor
            .store()
            .expire_answers(now_ms())
            .map_err(|e| worker::Error::RustError(e.0))?;
        if let Some(at) = next {
            actor.state.storage().set_alarm(at - now_ms()).await?;
        }
        actor.alarm.set(Some(next));
        Response::ok("answers expired")
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let _active = self.actor.active(Billed::SocketMessage);
        self.actor.on_frame(ws, message).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        if let Ok(Some(a)) = ws.deserialize_attachment::<Attachment>() {
            self.actor.flood.borrow_mut().forget(a.socket);
        }
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, error: worker::Error) -> worker::Result<()> {
        tracing::warn!(error = %error, "a live socket failed");
        Ok(())
    }
}

/// What starting some work is billed as.
enum Billed {
    /// An HTTP request or an alarm: one Durable Object request.
    Request,
    /// A WebSocket message received (billed 20 to a request).
    SocketMessage,
    /// Work that goes on after its request answered (a streamed answer).
    Nothing,
}

/// The actor's active time for the usage meter: wall-clock time while it handles anything,
/// overlapping work counted once (the way Cloudflare bills a Durable Object's duration).
/// It also counts what the storage grew by (`databaseSize`), read when work starts and
/// ends: a write is committed after its handler returns, so its growth shows at the next read.
#[derive(Default)]
struct Busy {
    handling: Cell<usize>,
    since_ms: Cell<i64>,
    size_seen: Cell<Option<i64>>,
}

impl Actor {
    fn active(&self, billed: Billed) -> Active<'_> {
        worker_support::usage::count(|u| match billed {
            Billed::Request => u.do_requests += 1,
            Billed::SocketMessage => u.ws_messages_in += 1,
            Billed::Nothing => {}
        });
        let busy = &self.busy;
        if busy.handling.get() == 0 {
            busy.since_ms.set(now_ms());
            self.count_growth();
        }
        busy.handling.set(busy.handling.get() + 1);
        Active(self)
    }

    /// Counts what the storage grew by since it was last read.
    fn count_growth(&self) {
        let size = self.state.storage().sql().database_size() as i64;
        if let Some(seen) = self.busy.size_seen.replace(Some(size)) {
            worker_support::usage::count(|u| u.actor_bytes += size - seen);
        }
    }
}

/// Work in progress; its drop ends it.
struct Active<'a>(&'a Actor);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let busy = &self.0.busy;
        busy.handling.set(busy.handling.get().saturating_sub(1));
        if busy.handling.get() == 0 {
            let us = (now_ms() - busy.since_ms.get()).max(0) as u64 * 1000;
            worker_support::usage::count(|u| u.actor_active_us += us);
            self.0.count_growth();
        }
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

fn not_found() -> ApiError {
    ApiError::not_found(
        "session_not_found",
        "no session with this id for this player",
    )
}

fn storage_error(e: chat_core::turn::StoreError) -> ApiError {
    ApiError::Internal(format!("the actor's storage: {}", e.0))
}

async fn json_body<T: DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let text = req.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::Internal(format!("the chat Worker sent the actor a bad body: {e}")))
}

/// The turn queue as the flow's queue. In the local build the fault switch can reset the
/// actor right after a turn's first send (`[fault:reset]`): the instance panics, which
/// makes worker 0.8 start the wasm instance afresh on the next request, so that only what
/// was written survives. (`ctx.abort()` would be the runtime's own reset, but it stops the
/// wasm code mid-flight and leaves the isolate's futures hanging.)
struct ActorQueue {
    env: Env,
    reset_after_first_send: bool,
    fail_first_send: bool,
}

impl TurnQueue for ActorQueue {
    async fn send(&self, record: &TurnRecord, attempt: Attempt) -> Result<(), String> {
        if self.fail_first_send && attempt == Attempt::First {
            return Err("injected fault: the queue refused the turn's first send".into());
        }
        let body = record.encode();
        let bytes = body.len();
        let message = MessageBuilder::new(body)
            .content_type(QueueContentType::Text)
            .build();
        self.env
            .queue(TURNS)
            .map_err(|e| e.to_string())?
            .send(message)
            .await
            .map_err(|e| e.to_string())?;
        worker_support::usage::count(|u| u.sent([bytes]));
        if self.reset_after_first_send && attempt == Attempt::First {
            panic!("injected fault: the session actor is reset between the queue send and the confirmation");
        }
        Ok(())
    }
}

/// A turn's failure as the client sees it.
fn turn_error(e: TurnError) -> ApiError {
    match e {
        TurnError::NotFound => not_found(),
        TurnError::KeyReused => ApiError::refused(Kind::Unprocessable, "idempotency_key_reused", "this Idempotency-Key was already used for another message in this session; use a new key for each turn"),
        TurnError::KeyExpired => ApiError::refused(Kind::Unprocessable, "idempotency_key_expired", "this Idempotency-Key was answered more than 24 hours ago; use a new key"),
        TurnError::Ended => ApiError::refused(Kind::Conflict, "session_ended", "the game in this session is over; start a new session"),
        TurnError::QueueUnavailable(detail) => ApiError::QueueUnavailable(detail),
        TurnError::Store(detail) => ApiError::Internal(format!("the actor's storage: {detail}")),
        TurnError::InvalidRecord(detail) => {
            ApiError::Internal(format!("the turn's record is invalid: {detail}"))
        }
        TurnError::Stopped => ApiError::refused(Kind::Conflict, "stopped", "the turn was stopped before it was queued: nothing was scored; send it again with the same key to play it"),
    }
}

/// A failure as a frame or an SSE event says it: the code and the message the HTTP answer
/// would have (an internal error's details stay in the log).
fn code_and_message(e: ApiError) -> (&'static str, String) {
    if let ApiError::Internal(detail) | ApiError::QueueUnavailable(detail) = &e {
        tracing::error!(error = %detail, "a live turn failed");
    }
    let (_, code, message) = e.status_code_message();
    (code, message)
}

/// A turn's failure as the session's sockets are told it (the client that asked gets the
/// same code from its own answer, where the details are logged).
fn told(e: &TurnError) -> (&'static str, String) {
    let (_, code, message) = turn_error(e.clone()).status_code_message();
    (code, message)
}

/// What a turn needs besides the store: its queue, engine and how many turns to keep.
/// A turn begun: the session's turn held until `guard` drops, and what finishing it needs.
struct Started {
    guard: OwnedMutexGuard<()>,
    play: Play,
    store: ActorStore,
    begun: Begun,
}

struct Play {
    queue: ActorQueue,
    engine: Engine,
    keep: u32,
}

impl Play {
    /// The turn's second half (`chat_core::turn::finish`) on the runtime's clock.
    async fn finish(
        &self,
        store: &ActorStore,
        ask: &TurnAsk,
        session: &SessionState,
        sink: &mut LiveSink<'_>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Answered, TurnError> {
        turn::finish(
            store,
            &self.queue,
            &self.engine,
            &WorkerClock,
            ask,
            self.keep,
            session,
            sink,
            stop,
        )
        .await
    }
}

impl Actor {
    async fn route(self: Rc<Self>, mut req: Request) -> Result<Response, ApiError> {
        let url = req.url()?;
        match (req.method(), url.path()) {
            (Method::Post, "/start") => {
                let session: SessionState = json_body(&mut req).await?;
                self.start(&session)?;
                Ok(Response::from_json(&json!({ "started": true }))?)
            }
            (Method::Post, "/turn") => {
                let ask: TurnAsk = json_body(&mut req).await?;
                let sse = url.query_pairs().any(|(k, v)| k == "sse" && v == "1");
                self.http_turn(ask, sse).await
            }
            (Method::Post, "/ticket") => {
                let identity: Identity = json_body(&mut req).await?;
                self.ticket(&identity)
            }
            (Method::Get, "/live") => {
                let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
                self.connect(&query)
            }
            (Method::Get, "/state") => self.describe(),
            (method, path) => Err(ApiError::Internal(format!(
                "the actor has no route {method} {path}"
            ))),
        }
    }

    fn store(&self) -> ActorStore {
        ActorStore::new(self.state.storage().sql())
    }

    /// Opens the storage: upgrades an older schema in place, and answers whether a session
    /// was ever started here. It writes nothing when none was: reading `sqlite_master`
    /// creates no table.
    fn open(&self) -> Result<bool, ApiError> {
        if self.ready.get() {
            return Ok(true);
        }
        #[derive(Deserialize)]
        struct Name {
            name: String,
        }
        #[derive(Deserialize)]
        struct Version {
            schema_version: i64,
        }
        let store = self.store();
        let tables: Vec<String> = store
            .rows::<Name>(sql::EXISTING_TABLES, vec![])
            .map_err(storage_error)?
            .into_iter()
            .map(|n| n.name)
            .collect();
        let version = if tables.iter().any(|t| t == "actor_meta") {
            store
                .rows::<Version>(sql::SELECT_VERSION, vec![])
                .map_err(storage_error)?
                .first()
                .map(|v| v.schema_version)
        } else {
            None
        };
        match sql::schema(&tables, version).map_err(ApiError::Internal)? {
            sql::Schema::Empty => return Ok(false),
            sql::Schema::Ready => {}
            sql::Schema::Upgrade(steps) => {
                for step in steps {
                    store.exec(step, vec![]).map_err(storage_error)?;
                }
                tracing::info!(to = sql::SCHEMA_VERSION, "session actor storage upgraded");
            }
        }
        self.ready.set(true);
        Ok(true)
    }

    fn start(&self, s: &SessionState) -> Result<(), ApiError> {
        // Upgrade first: the schema's `CREATE TABLE IF NOT EXISTS` would leave an old table
        // as it is.
        self.open()?;
        self.store().start(s).map_err(storage_error)?;
        self.ready.set(true);
        Ok(())
    }

    fn session(&self) -> Result<Option<SessionState>, ApiError> {
        if !self.open()? {
            return Ok(None);
        }
        self.store().session().map_err(storage_error)
    }

    /// The session, adopting it from D1 when this actor has never seen it: a session started
    /// before the actors existed, or one whose `/start` was lost after its D1 row was written.
    /// The row is looked for in the asking player's database: a session of another player
    /// is not theirs to adopt anyway. An unknown id writes nothing anywhere.
    async fn session_or_adopt(
        &self,
        id: Uuid,
        player: Uuid,
    ) -> Result<Option<SessionState>, ApiError> {
        if let Some(session) = self.session()? {
            return Ok(Some(session));
        }
        let binding = crate::shard_map::player_binding(&self.env, player).await?;
        let db = crate::services::Db {
            db: database(&self.env, &binding)?,
            binding,
        };
        let Some(row) = db::find_session(&db, id).await? else {
            return Ok(None);
        };
        let adopted = SessionRow {
            id: id.to_string(),
            user_id: row.user_id,
            character_type: row.character_type,
            locale: row.locale,
            username: row.username,
            created_at: row.created_at,
            ended_at: row.ended_at,
        }
        .into_state()
        .map_err(storage_error)?;
        self.start(&adopted)?;
        tracing::info!(session_id = %id, "session actor adopted its session from D1");
        self.session()
    }

    /// The session if `player` may play it (404 otherwise, before anything waits).
    async fn owned_session(
        &self,
        session_id: Uuid,
        player: Uuid,
    ) -> Result<SessionState, ApiError> {
        self.session_or_adopt(session_id, player)
            .await?
            .filter(|s| s.owned_by(player))
            .ok_or_else(not_found)
    }

    /// Waits for the session's turn, or refuses when too many wait already.
    async fn queue_up(&self) -> Result<OwnedMutexGuard<()>, ApiError> {
        if self.waiting.get() >= MAX_WAITING_TURNS {
            return Err(ApiError::refused(
                Kind::Busy,
                "turn_in_progress",
                format!(
                    "this session already has {MAX_WAITING_TURNS} turns waiting; send one at a time"
                ),
            ));
        }
        let _waiting = Waiting::enter(&self.waiting);
        Ok(self.turn.clone().lock_owned().await)
    }

    fn play(&self, message: &str) -> Result<Play, ApiError> {
        let config = Config::of(&self.env);
        Ok(Play {
            queue: ActorQueue {
                env: self.env.clone(),
                reset_after_first_send: crate::faults::resets_after_send(&self.env, message),
                fail_first_send: crate::faults::fails_first_send(&self.env, message),
            },
            engine: Engine::from_config(&self.env, &config),
            keep: config.history_turns.clone().map_err(ApiError::Internal)?,
        })
    }

    /// Takes the session's turn (one at a time, whatever the transport), then begins `ask`:
    /// played anew, or replayed from its key. The frames' numbering is read from storage
    /// first, so a fresh instance goes on where the last one stopped.
    async fn start_turn(&self, ask: &TurnAsk) -> Result<Started, ApiError> {
        let guard = self.queue_up().await?;
        let play = self.play(&ask.message)?;
        let store = self.store();
        self.frames_from_storage()?;
        let begun = turn::begin(&store, &play.queue, &WorkerClock, ask, play.keep)
            .await
            .map_err(turn_error)?;
        Ok(Started {
            guard,
            play,
            store,
            begun,
        })
    }

    /// The frames of this instance start from the newest turn's base in storage.
    fn frames_from_storage(&self) -> Result<(), ApiError> {
        if self.frames.borrow().last_base.is_none() {
            let base = self.store().last_frame_base().map_err(storage_error)?;
            self.frames.borrow_mut().last_base = base;
        }
        Ok(())
    }

    /// After a keyed turn was answered: makes sure the alarm drops its answer on time.
    async fn after_turn(&self, ask: &TurnAsk, answered: &Answered) {
        if ask.idempotency_key.is_some() && !answered.replayed {
            self.expire_answer_at(now_ms() + ANSWER_KEEP_MS).await;
        }
    }

    /// A turn over HTTP: plain JSON, or SSE events as it is written. Its frames go to every
    /// socket of the session too.
    async fn http_turn(self: Rc<Self>, ask: TurnAsk, sse: bool) -> Result<Response, ApiError> {
        self.owned_session(ask.session_id, ask.identity.user_id())
            .await?;
        let Started {
            guard,
            play,
            store,
            begun,
        } = self.start_turn(&ask).await?;
        if !sse {
            let answered = match begun {
                Begun::Replay(answered) => answered,
                Begun::Play(session) => {
                    let mut sink = LiveSink::new(
                        &self.state,
                        &self.frames,
                        ask.idempotency_key.clone(),
                        store.frame_base.clone(),
                    );
                    let outcome = play
                        .finish(&store, &ask, &session, &mut sink, std::future::pending())
                        .await;
                    sink.end(&outcome.clone().map_err(|e| told(&e)));
                    outcome.map_err(turn_error)?
                }
            };
            drop(guard);
            self.after_turn(&ask, &answered).await;
            let mut response = json_text(answered.body.clone())?;
            if answered.replayed {
                response.headers_mut().set(REPLAYED_HEADER, "true")?;
            }
            return Ok(response);
        }

        // SSE: the response goes back now, and the turn writes its body as it goes.
        let (tx, rx) = futures_channel::mpsc::unbounded::<Vec<u8>>();
        let replayed = matches!(begun, Begun::Replay(_));
        let actor = self.clone();
        worker::wasm_bindgen_futures::spawn_local(async move {
            // The answer goes on after the response: the actor is still active (billed).
            let _active = actor.active(Billed::Nothing);
            let _guard = guard;
            let mut sink = LiveSink::new(
                &actor.state,
                &actor.frames,
                ask.idempotency_key.clone(),
                store.frame_base.clone(),
            );
            sink.sse = Some(tx);
            let outcome = match begun {
                Begun::Replay(answered) => {
                    sink.audience = Audience::Nobody;
                    turn::replay(&answered, &ask, &mut sink);
                    Ok(answered)
                }
                Begun::Play(session) => play
                    .finish(&store, &ask, &session, &mut sink, std::future::pending())
                    .await
                    .map_err(|e| code_and_message(turn_error(e))),
            };
            sink.end(&outcome);
            drop(sink);
            if let Ok(answered) = &outcome {
                actor.after_turn(&ask, answered).await;
            }
        });
        let mut response = Response::from_stream(rx.map(Ok::<Vec<u8>, worker::Error>))?;
        let headers = response.headers_mut();
        headers.set("Content-Type", "text/event-stream; charset=utf-8")?;
        headers.set("Cache-Control", "no-cache")?;
        if replayed {
            headers.set(REPLAYED_HEADER, "true")?;
        }
        Ok(response)
    }

    /// Makes sure the alarm runs by `at`, when an answer given now expires. Answers are
    /// given in time order, so an alarm already set is never later than `at`.
    async fn expire_answer_at(&self, at: i64) {
        let storage = self.state.storage();
        let known = match self.alarm.get() {
            Some(known) => known,
            None => storage.get_alarm().await.ok().flatten(),
        };
        if known.is_some() {
            self.alarm.set(Some(known));
            return;
        }
        match storage.set_alarm(at - now_ms()).await {
            Ok(()) => self.alarm.set(Some(Some(at))),
            Err(e) => tracing::error!(error = %e, "setting the answers' alarm failed"),
        }
    }

    fn describe(&self) -> Result<Response, ApiError> {
        let session = self.session()?.ok_or_else(not_found)?;
        let counts: Counts = self.state.storage().sql().exec(sql::COUNTS, None)?.one()?;
        Ok(Response::from_json(&json!({
            "session": session,
            "turnsHeld": counts.turns_held,
            "turnsUnconfirmed": counts.turns_unconfirmed,
            "keysHeld": counts.keys_held,
            "answersHeld": counts.answers_held,
            "turnsWaiting": self.waiting.get(),
            "liveSockets": self.state.get_websockets().len(),
            "storageBytes": self.state.storage().sql().database_size(),
            "wasmMemoryBytes": worker_support::memory::wasm_memory_bytes(),
        }))?)
    }
}

/// A JSON response whose body is exactly `body`.
fn json_text(body: String) -> Result<Response, ApiError> {
    let mut response = Response::ok(body)?;
    response
        .headers_mut()
        .set("Content-Type", "application/json")?;
    Ok(response)
}
