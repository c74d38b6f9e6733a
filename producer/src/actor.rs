//! `SessionActor`: one SQLite-backed Durable Object per chat session, the one authority for
//! its live state. It keeps the session (owner, character, locale, name, ended), its last
//! turns for the engine's context, and every idempotency key it has answered with the exact
//! answer. The rules are `chat_core::session`'s; the SQL is `chat_core::sql`'s `ACTOR_*`.
//!
//! A turn: check the owner, wait for the session's previous turn, decide (replay, refuse, or
//! go on), ask the engine with the last turns, await the queue's `send` of the turn record,
//! then record the turn and its key and answer. A failed `send` records nothing, so the
//! client's retry with the same key is a fresh attempt. The writes after the `send` run with
//! no `await` between them, so the runtime commits them together, and it holds the answer
//! until they are durable.
//!
//! The chat Worker reaches an actor by the session id (`id_from_name`), over these internal
//! routes (a Durable Object is not reachable from the Internet):
//! - `POST /start` with a `SessionState`: creates the session (a second start changes nothing);
//! - `POST /turn` with a `TurnAsk`: plays one turn and answers as `POST /api/chat` does;
//! - `GET /state`: what the actor holds, for operators.

use crate::db;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::services::TURNS;
use chat_core::character::{Character, Locale};
use chat_core::engine::{ReplyEngine, ReplyInput};
use chat_core::ids::TurnIds;
use chat_core::record::{TurnInput, TurnRecord};
use chat_core::session::{
    decide_turn, history_turns, message_sha256, AnsweredKey, Decision, SessionState, StoredTurn,
    TurnAnswer, TurnAsk, ANSWER_KEEP_MS, MAX_WAITING_TURNS,
};
use chat_core::sql;
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
use worker_support::clock::{now_ms, random10};
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
    schema_ready: Cell<bool>,
}

impl DurableObject for SessionActor {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            turn: Mutex::new(()),
            waiting: Cell::new(0),
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        Ok(match self.route(req).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        })
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
    fn into_state(self) -> Result<SessionState, ApiError> {
        let bad = |what: &str| ApiError::Internal(format!("the actor holds a bad {what}"));
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
    keys_held: i64,
    answers_held: i64,
}

impl SessionActor {
    async fn route(&self, mut req: Request) -> Result<Response, ApiError> {
        self.ensure_schema()?;
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

    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn ensure_schema(&self) -> Result<(), ApiError> {
        if !self.schema_ready.get() {
            let sql = self.sql();
            for statement in sql::ACTOR_SCHEMA {
                sql.exec(statement, None)?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    fn start(&self, s: &SessionState) -> Result<(), ApiError> {
        self.sql().exec(
            sql::ACTOR_INSERT_SESSION,
            vec![
                text(s.id),
                text(s.user_id),
                text(s.character_type.as_str()),
                text(s.locale.as_str()),
                text(&s.username),
                int(s.created_at),
                s.ended_at.map_or(SqlStorageValue::Null, int),
            ],
        )?;
        Ok(())
    }

    fn session(&self) -> Result<Option<SessionState>, ApiError> {
        let rows: Vec<SessionRow> = self
            .sql()
            .exec(sql::ACTOR_SELECT_SESSION, None)?
            .to_array()?;
        rows.into_iter()
            .next()
            .map(SessionRow::into_state)
            .transpose()
    }

    /// The session, adopting it from D1 when this actor has never seen it: a session started
    /// before the actors existed, or one whose `/start` was lost after its D1 row was written.
    /// The row is looked for in the asking player's database: a session of another player
    /// is not theirs to adopt anyway.
    async fn session_or_adopt(
        &self,
        id: Uuid,
        player: Uuid,
    ) -> Result<Option<SessionState>, ApiError> {
        if let Some(session) = self.session()? {
            return Ok(Some(session));
        }
        let db = crate::shard_map::player_db(&self.env, player).await?;
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
        .into_state()?;
        self.start(&adopted)?;
        tracing::info!(session_id = %id, "session actor adopted its session from D1");
        self.session()
    }

    fn answered_key(&self, key: &str) -> Result<Option<AnsweredKey>, ApiError> {
        let rows: Vec<AnsweredKey> = self
            .sql()
            .exec(sql::ACTOR_SELECT_KEY, vec![text(key)])?
            .to_array()?;
        Ok(rows.into_iter().next())
    }

    fn recent_turns(&self, n: u32) -> Result<Vec<StoredTurn>, ApiError> {
        Ok(self
            .sql()
            .exec(sql::ACTOR_RECENT_TURNS, vec![int(i64::from(n))])?
            .to_array()?)
    }

    async fn turn(&self, ask: TurnAsk) -> Result<Response, ApiError> {
        let caller = ask.identity.user_id();
        // Another player's turn is refused before it can wait in this session's line.
        if !self
            .session_or_adopt(ask.session_id, ask.identity.user_id())
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

        // Read again under the lock: the turn before may have ended the game or used the key.
        let session = self.session()?;
        let known = match &ask.idempotency_key {
            Some(key) => self.answered_key(key)?,
            None => None,
        };
        match decide_turn(session.as_ref(), caller, &ask.message, known.as_ref()) {
            Decision::NotFound => return Err(not_found()),
            Decision::Replay(answer) => {
                let mut response = json_text(answer.to_owned())?;
                response.headers_mut().set(REPLAYED_HEADER, "true")?;
                return Ok(response);
            }
            Decision::KeyReused => {
                return Err(ApiError::Unprocessable {
                    code: "idempotency_key_reused",
                    message: "this Idempotency-Key was already used for another message in this session; use a new key for each turn".into(),
                })
            }
            Decision::KeyExpired => {
                return Err(ApiError::Unprocessable {
                    code: "idempotency_key_expired",
                    message: "this Idempotency-Key was answered more than 24 hours ago; use a new key".into(),
                })
            }
            Decision::Ended => {
                return Err(ApiError::Conflict {
                    code: "session_ended",
                    message: "the game in this session is over; start a new session".into(),
                })
            }
            Decision::Proceed => {}
        }
        let session = session.ok_or_else(not_found)?;
        self.play(&session, &ask).await
    }

    /// Asks the engine, queues the turn, records it, answers.
    async fn play(&self, session: &SessionState, ask: &TurnAsk) -> Result<Response, ApiError> {
        let keep = history_turns(var(&self.env, "SESSION_HISTORY_TURNS").as_deref())
            .map_err(ApiError::Internal)?;
        let history: Vec<_> = self
            .recent_turns(keep)?
            .iter()
            .map(StoredTurn::history)
            .collect();
        let locale = ask.locale.unwrap_or(session.locale);
        let message_at = now_ms();
        let reply = Engine::from_env(&self.env)
            .reply(&ReplyInput {
                character: session.character_type,
                locale,
                player_name: &session.username,
                history: &history,
                message: &ask.message,
            })
            .await;
        let key = ask.idempotency_key.as_deref();
        let ids = match key {
            // The same key in the same session names the same turn on every attempt, so even a
            // turn queued by an attempt that failed before it was recorded is stored once.
            Some(key) => TurnIds::keyed(session.id, session.created_at, key),
            None => TurnIds::random(message_at, random10()),
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
            reply_at: now_ms(),
            idempotency_key: key,
        });
        // Never queue what the consumer would dead-letter as invalid: the answer would be a
        // promise the pipeline cannot keep.
        record
            .validate()
            .map_err(|e| ApiError::Internal(format!("the turn's record is invalid: {e}")))?;
        let message = MessageBuilder::new(record.encode())
            .content_type(QueueContentType::Text)
            .build();
        self.env
            .queue(TURNS)?
            .send(message)
            .await
            .map_err(|e| ApiError::QueueUnavailable(e.to_string()))?;

        let answer = TurnAnswer::of(&record).to_json();
        self.record(&record, key, &answer, keep)?;
        json_text(answer)
    }

    /// Everything a queued turn changes in the actor, with no `await` in between.
    fn record(
        &self,
        record: &TurnRecord,
        key: Option<&str>,
        answer: &str,
        keep: u32,
    ) -> Result<(), ApiError> {
        let sql = self.sql();
        let now = now_ms();
        sql.exec(
            sql::ACTOR_INSERT_TURN,
            vec![
                text(record.turn_id),
                text(&record.user_message.content),
                text(&record.agent_message.content),
                int(i64::from(record.score.raw)),
                text(record.agent_message.emotion.as_str()),
                int(record.user_message.created_at),
            ],
        )?;
        sql.exec(sql::ACTOR_PRUNE_TURNS, vec![int(i64::from(keep))])?;
        if let Some(key) = key {
            sql.exec(
                sql::ACTOR_INSERT_KEY,
                vec![
                    text(key),
                    text(message_sha256(&record.user_message.content)),
                    text(record.turn_id),
                    text(answer),
                    int(now),
                ],
            )?;
        }
        sql.exec(sql::ACTOR_FORGET_ANSWERS, vec![int(now - ANSWER_KEEP_MS)])?;
        if record.game_over {
            sql.exec(
                sql::ACTOR_END_SESSION,
                vec![int(record.user_message.created_at)],
            )?;
        }
        Ok(())
    }

    fn describe(&self) -> Result<Response, ApiError> {
        let session = self.session()?.ok_or_else(not_found)?;
        let counts: Counts = self.sql().exec(sql::ACTOR_COUNTS, None)?.one()?;
        Ok(Response::from_json(&json!({
            "session": session,
            "turnsHeld": counts.turns_held,
            "keysHeld": counts.keys_held,
            "answersHeld": counts.answers_held,
            "turnsWaiting": self.waiting.get(),
            "storageBytes": self.sql().database_size(),
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
