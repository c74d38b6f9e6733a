//! `SessionActor`: one SQLite-backed Durable Object per chat session, the one authority for
//! its live state. It keeps the session (owner, character, locale, name, ended), its last
//! turns for the engine's context, and every idempotency key it has bound with the exact
//! answer. The flow of a turn is `chat_core::turn::play`; this module is its adapter over the
//! object's storage, the turn queue, the engine and the clock, plus what only a Durable
//! Object can do: one turn at a time, and an alarm that drops answers when they expire.
//!
//! Storage is created only when a session starts (or is adopted from D1): a request for a
//! session id that does not exist reads `sqlite_master`, answers 404, and leaves nothing.
//!
//! The chat Worker reaches an actor by the session id (`id_from_name`), over these internal
//! routes (a Durable Object is not reachable from the Internet):
//! - `POST /start` with a `SessionState`: creates the session (a second start changes nothing);
//! - `POST /turn` with a `TurnAsk`: plays one turn and answers as `POST /api/chat` does;
//! - `GET /state`: what the actor holds, for operators.

use crate::databases::database;
use crate::db;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::services::TURNS;
use chat_core::character::{Character, Locale};
use chat_core::record::TurnRecord;
use chat_core::session::{
    history_turns, message_sha256, AnsweredKey, SessionState, StoredTurn, TurnAsk, ANSWER_KEEP_MS,
    MAX_WAITING_TURNS,
};
use chat_core::sql::actor as sql;
use chat_core::turn::{self, Attempt, SessionStore, StoreError, TurnError, TurnQueue};
use futures_util::lock::Mutex;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::cell::Cell;
use uuid::Uuid;
use worker::{
    durable_object, DurableObject, Env, MessageBuilder, Method, QueueContentType, Request,
    Response, SqlStorage, SqlStorageValue, State,
};
use worker_support::clock::{now_ms, WorkerClock};
use worker_support::env::var;

/// The Durable Object binding of the session actors.
pub const SESSIONS: &str = "SESSIONS";
/// Set on a `POST /api/chat` answer that repeats an earlier one for the same key.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

#[durable_object]
pub struct SessionActor {
    state: State,
    env: Env,
    /// Held for the whole of a turn: one turn at a time per session, in arrival order
    /// (`futures` hands the lock over first come, first served).
    turn: Mutex<()>,
    /// Turns waiting for the lock.
    waiting: Cell<usize>,
    /// Whether this instance has seen its storage hold a current schema.
    ready: Cell<bool>,
    /// The alarm this instance knows of: `None` until read once, then its time if any.
    alarm: Cell<Option<Option<i64>>>,
}

impl DurableObject for SessionActor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: Mutex::new(()),
            waiting: Cell::new(0),
            ready: Cell::new(false),
            alarm: Cell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        Ok(match self.route(req).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        })
    }

    /// Drops the answers that expired and sets the alarm for the next one.
    async fn alarm(&self) -> worker::Result<Response> {
        if !self
            .open()
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?
        {
            return Response::ok("no session");
        }
        let store = self.store();
        let next = store
            .expire_answers(now_ms())
            .map_err(|e| worker::Error::RustError(e.0))?;
        if let Some(at) = next {
            self.state.storage().set_alarm(at - now_ms()).await?;
        }
        self.alarm.set(Some(next));
        Response::ok("answers expired")
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
    ApiError::NotFound {
        code: "session_not_found",
        message: "no session with this id for this player".into(),
    }
}

async fn json_body<T: DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let text = req.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::Internal(format!("the chat Worker sent the actor a bad body: {e}")))
}

fn int(n: i64) -> SqlStorageValue {
    SqlStorageValue::Integer(n)
}

fn text(s: impl ToString) -> SqlStorageValue {
    SqlStorageValue::String(s.to_string())
}

/// The `session` row as stored (enums as text).
#[derive(Deserialize)]
struct SessionRow {
    id: String,
    user_id: String,
    character_type: String,
    locale: String,
    username: String,
    created_at: i64,
    ended_at: Option<i64>,
}

impl SessionRow {
    fn into_state(self) -> Result<SessionState, StoreError> {
        let bad = |what: &str| StoreError(format!("the actor holds a bad {what}"));
        Ok(SessionState {
            id: self.id.parse().map_err(|_| bad("session id"))?,
            user_id: self.user_id.parse().map_err(|_| bad("user id"))?,
            character_type: Character::parse(&self.character_type)
                .ok_or_else(|| bad("character"))?,
            locale: Locale::parse(&self.locale).ok_or_else(|| bad("locale"))?,
            username: self.username,
            created_at: self.created_at,
            ended_at: self.ended_at,
        })
    }
}

#[derive(Deserialize)]
struct Counts {
    turns_held: i64,
    turns_unconfirmed: i64,
    keys_held: i64,
    answers_held: i64,
}

/// The object's SQLite storage as the turn flow's store (`chat_core::sql::actor`'s SQL).
/// Each write method is a run of statements with no `await` between them, which the runtime
/// commits as one transaction.
struct ActorStore {
    sql: SqlStorage,
}

fn store_error(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

impl ActorStore {
    fn exec(&self, statement: &str, params: Vec<SqlStorageValue>) -> Result<(), StoreError> {
        let params = if params.is_empty() {
            None
        } else {
            Some(params)
        };
        self.sql.exec(statement, params).map_err(store_error)?;
        Ok(())
    }

    fn rows<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, StoreError> {
        let params = if params.is_empty() {
            None
        } else {
            Some(params)
        };
        self.sql
            .exec(statement, params)
            .and_then(|c| c.to_array())
            .map_err(store_error)
    }

    fn start(&self, s: &SessionState) -> Result<(), StoreError> {
        for statement in sql::SCHEMA {
            self.exec(statement, vec![])?;
        }
        self.exec(
            sql::INSERT_SESSION,
            vec![
                text(s.id),
                text(s.user_id),
                text(s.character_type.as_str()),
                text(s.locale.as_str()),
                text(&s.username),
                int(s.created_at),
                s.ended_at.map_or(SqlStorageValue::Null, int),
            ],
        )
    }

    /// Drops the answers that expired by `now_ms`; returns when the next one expires.
    fn expire_answers(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        self.exec(sql::FORGET_ANSWERS, vec![int(now_ms - ANSWER_KEEP_MS)])?;
        #[derive(Deserialize)]
        struct Oldest {
            at: Option<i64>,
        }
        let oldest: Vec<Oldest> = self.rows(sql::OLDEST_ANSWER, vec![])?;
        Ok(oldest
            .into_iter()
            .next()
            .and_then(|o| o.at)
            .map(|at| at + ANSWER_KEEP_MS))
    }
}

fn turn_values(r: &TurnRecord) -> Vec<SqlStorageValue> {
    vec![
        text(r.turn_id),
        text(&r.user_message.content),
        text(&r.agent_message.content),
        int(i64::from(r.score.raw)),
        text(r.agent_message.emotion.as_str()),
        int(r.user_message.created_at),
    ]
}

impl SessionStore for ActorStore {
    fn session(&self) -> Result<Option<SessionState>, StoreError> {
        let rows: Vec<SessionRow> = self.rows(sql::SELECT_SESSION, vec![])?;
        rows.into_iter()
            .next()
            .map(SessionRow::into_state)
            .transpose()
    }

    fn answered_key(&self, key: &str) -> Result<Option<AnsweredKey>, StoreError> {
        Ok(self
            .rows(sql::SELECT_KEY, vec![text(key)])?
            .into_iter()
            .next())
    }

    fn unconfirmed(&self) -> Result<Vec<TurnRecord>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            record: String,
        }
        self.rows::<Row>(sql::UNCONFIRMED_TURNS, vec![])?
            .iter()
            .map(|r| TurnRecord::decode(&r.record).map_err(|e| StoreError(e.to_string())))
            .collect()
    }

    fn recent_turns(&self, n: u32) -> Result<Vec<StoredTurn>, StoreError> {
        self.rows(sql::RECENT_TURNS, vec![int(i64::from(n))])
    }

    fn bind(
        &self,
        record: &TurnRecord,
        key: &str,
        answer: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut values = turn_values(record);
        values.push(text(record.encode()));
        self.exec(sql::BIND_TURN, values)?;
        self.exec(
            sql::INSERT_KEY,
            vec![
                text(key),
                text(message_sha256(&record.user_message.content)),
                text(record.turn_id),
                text(answer),
                int(now_ms),
            ],
        )
    }

    fn confirm(&self, record: &TurnRecord, keep: u32) -> Result<(), StoreError> {
        self.exec(sql::CONFIRM_TURN, turn_values(record))?;
        self.exec(sql::PRUNE_TURNS, vec![int(i64::from(keep))])?;
        if record.game_over {
            self.exec(sql::END_SESSION, vec![int(record.user_message.created_at)])?;
        }
        Ok(())
    }
}

/// The turn queue as the flow's queue. In the local build the fault switch can reset the
/// actor right after a turn's first send (`[fault:reset]`): the instance panics, which
/// makes worker 0.8 start the wasm instance afresh on the next request, so that only what
/// was written survives. (`ctx.abort()` would be the runtime's own reset, but it stops the
/// wasm code mid-flight and leaves the isolate's futures hanging.)
struct ActorQueue<'a> {
    env: &'a Env,
    reset_after_first_send: bool,
}

impl TurnQueue for ActorQueue<'_> {
    async fn send(&self, record: &TurnRecord, attempt: Attempt) -> Result<(), String> {
        let message = MessageBuilder::new(record.encode())
            .content_type(QueueContentType::Text)
            .build();
        self.env
            .queue(TURNS)
            .map_err(|e| e.to_string())?
            .send(message)
            .await
            .map_err(|e| e.to_string())?;
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
        TurnError::KeyReused => ApiError::Unprocessable {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was already used for another message in this session; use a new key for each turn".into(),
        },
        TurnError::KeyExpired => ApiError::Unprocessable {
            code: "idempotency_key_expired",
            message: "this Idempotency-Key was answered more than 24 hours ago; use a new key".into(),
        },
        TurnError::Ended => ApiError::Conflict {
            code: "session_ended",
            message: "the game in this session is over; start a new session".into(),
        },
        TurnError::QueueUnavailable(detail) => ApiError::QueueUnavailable(detail),
        TurnError::Store(detail) => ApiError::Internal(format!("the actor's storage: {detail}")),
        TurnError::InvalidRecord(detail) => {
            ApiError::Internal(format!("the turn's record is invalid: {detail}"))
        }
    }
}

impl SessionActor {
    async fn route(&self, mut req: Request) -> Result<Response, ApiError> {
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/start") => {
                let session: SessionState = json_body(&mut req).await?;
                self.start(&session)?;
                Ok(Response::from_json(&json!({ "started": true }))?)
            }
            (Method::Post, "/turn") => {
                let ask: TurnAsk = json_body(&mut req).await?;
                self.turn(ask).await
            }
            (Method::Get, "/state") => self.describe(),
            _ => Err(ApiError::Internal(format!(
                "the actor has no route {} {}",
                req.method(),
                req.path()
            ))),
        }
    }

    fn store(&self) -> ActorStore {
        ActorStore {
            sql: self.state.storage().sql(),
        }
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
        let bad = |e: StoreError| ApiError::Internal(format!("the actor's storage: {}", e.0));
        let tables: Vec<String> = store
            .rows::<Name>(sql::EXISTING_TABLES, vec![])
            .map_err(bad)?
            .into_iter()
            .map(|n| n.name)
            .collect();
        let version = if tables.iter().any(|t| t == "actor_meta") {
            store
                .rows::<Version>(sql::SELECT_VERSION, vec![])
                .map_err(bad)?
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
                    store.exec(step, vec![]).map_err(bad)?;
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
        self.store()
            .start(s)
            .map_err(|e| ApiError::Internal(format!("the actor's storage: {}", e.0)))?;
        self.ready.set(true);
        Ok(())
    }

    fn session(&self) -> Result<Option<SessionState>, ApiError> {
        if !self.open()? {
            return Ok(None);
        }
        self.store().session().map_err(|e| ApiError::Internal(e.0))
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
        .map_err(|e| ApiError::Internal(e.0))?;
        self.start(&adopted)?;
        tracing::info!(session_id = %id, "session actor adopted its session from D1");
        self.session()
    }

    async fn turn(&self, ask: TurnAsk) -> Result<Response, ApiError> {
        let caller = ask.identity.user_id();
        // An unknown session, or another player's, is refused before it can wait in this
        // session's line.
        if !self
            .session_or_adopt(ask.session_id, caller)
            .await?
            .is_some_and(|s| s.owned_by(caller))
        {
            return Err(not_found());
        }
        if self.waiting.get() >= MAX_WAITING_TURNS {
            return Err(ApiError::Conflict {
                code: "turn_in_progress",
                message: format!(
                    "this session already has {MAX_WAITING_TURNS} turns waiting; send one at a time"
                ),
            });
        }
        let _turn = {
            let _waiting = Waiting::enter(&self.waiting);
            self.turn.lock().await
        };
        let keep = history_turns(var(&self.env, "SESSION_HISTORY_TURNS").as_deref())
            .map_err(ApiError::Internal)?;
        let queue = ActorQueue {
            env: &self.env,
            reset_after_first_send: crate::faults::resets_after_send(&self.env, &ask.message),
        };
        let answered = turn::play(
            &self.store(),
            &queue,
            &Engine::from_env(&self.env),
            &WorkerClock,
            &ask,
            keep,
        )
        .await
        .map_err(turn_error)?;
        if ask.idempotency_key.is_some() && !answered.replayed {
            self.expire_answer_at(now_ms() + ANSWER_KEEP_MS).await;
        }
        let mut response = json_text(answered.body)?;
        if answered.replayed {
            response.headers_mut().set(REPLAYED_HEADER, "true")?;
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

// ---- Reaching an actor from the chat Worker ------------------------------------------------

/// Calls the actor of session `id` on an internal route, with a JSON body when given.
async fn call(
    env: &Env,
    id: Uuid,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Response, ApiError> {
    let stub = env
        .durable_object(SESSIONS)?
        .id_from_name(&id.to_string())?
        .get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let request = Request::new_with_init(&format!("https://session-actor{path}"), &init)?;
    // The runtime fails the call when the object is overloaded, being reset or unreachable:
    // the client may retry, and a keyed retry is answered exactly once.
    stub.fetch_with_request(request)
        .await
        .map_err(|e| ApiError::SessionUnavailable(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Creates the session's state in its actor.
pub async fn start(env: &Env, session: &SessionState) -> Result<(), ApiError> {
    let response = call(
        env,
        session.id,
        Method::Post,
        "/start",
        Some(encode(session)?),
    )
    .await?;
    match response.status_code() {
        200 => Ok(()),
        status => Err(ApiError::Internal(format!(
            "the session actor answered /start with {status}"
        ))),
    }
}

/// Plays one turn in its session's actor; the actor's answer is the client's.
pub async fn turn(env: &Env, ask: &TurnAsk) -> Result<Response, ApiError> {
    call(
        env,
        ask.session_id,
        Method::Post,
        "/turn",
        Some(encode(ask)?),
    )
    .await
}

/// What the actor of session `id` holds (`GET /admin/sessions/{id}`).
pub async fn describe(env: &Env, id: Uuid) -> Result<Response, ApiError> {
    call(env, id, Method::Get, "/state", None).await
}
