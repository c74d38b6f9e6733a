//! The inline-write Worker: what the seed's plan (and most chat backends on Workers) does,
//! kept only to be measured beside the pipeline. Never deployed.
//!
//! `POST /api/chat` signs the player in exactly as the chat Worker does (Privy, WebCrypto,
//! the same token cache: `worker_support::privy_auth`), reads the session from D1, asks the
//! same offline engine, builds the same turn record, and writes the turn's statements
//! (`chat_core::sql::apply_turns`, the consumer's own SQL, one atomic D1 batch) before it
//! answers. No queue, no Durable Object. It skips what would only make it slower: no
//! idempotency keys, no rate limit, no conversation history for the engine.
//!
//! `POST /api/sessions` and `GET /healthz` are the chat Worker's, so the same load runs
//! against both. `GET /usage` answers the isolate's counts in billed units
//! (`worker_support::usage`), as the chat Worker's `GET /admin/usage` does. `FAULTS=slow=MS`
//! makes each D1 call wait MS first, as the chat Worker's local build does.

use chat_core::batch::{turns_json, user_json};
use chat_core::character::{Character, Locale};
use chat_core::engine::{OfflineEngine, ReplyInput};
use chat_core::identity::Identity;
use chat_core::ids::{time_ordered, TurnIds};
use chat_core::record::{TurnInput, TurnRecord};
use chat_core::request::{ChatTurn, NewSession, MAX_BODY_BYTES};
use chat_core::session::{SessionRow, TurnAnswer};
use chat_core::sql;
use serde_json::json;
use worker::wasm_bindgen::JsValue;
use worker::{event, Context, Env, Method, Request, Response};
use worker_support::clock::{now_ms, random10};
use worker_support::d1::{metered_batch, Metered};
use worker_support::privy_auth::{PrivyAuth, PrivySettings};
use worker_support::usage;

/// The one error type of this Worker, mapped to a status once.
enum Failure {
    Status(u16, &'static str, String),
    Internal(String),
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

impl Failure {
    fn response(self) -> Response {
        let (status, code, message) = match self {
            Self::Status(s, c, m) => (s, c, m),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (500, "internal", "something went wrong on our side".into())
            }
        };
        Response::from_json(&json!({ "error": { "code": code, "message": message } }))
            .map(|r| r.with_status(status))
            .unwrap_or_else(|_| Response::error("internal", 500).unwrap())
    }
}

#[event(start)]
fn start() {
    worker_support::logging::init();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let path = req.path();
    if path != "/usage" {
        usage::count(|u| u.worker_requests += 1);
    }
    slow_d1(&env);
    let result = match (req.method(), path.as_str()) {
        (Method::Get, "/healthz") => {
            Response::from_json(&json!({ "ok": true })).map_err(Into::into)
        }
        (Method::Get, "/usage") => Response::from_json(&usage::snapshot()).map_err(Into::into),
        (Method::Post, "/api/sessions") => create_session(req, &env).await,
        (Method::Post, "/api/chat") => chat(req, &env).await,
        _ => Err(Failure::Status(404, "not_found", "no such route".into())),
    };
    Ok(result.unwrap_or_else(Failure::response))
}

/// `FAULTS=slow=MS`, as the chat Worker's local build reads it: every D1 call waits MS
/// first, so both designs pay production's D1 round trip alike (this Worker is never
/// deployed, so it reads the switch in every build).
fn slow_d1(env: &Env) {
    let spec = env.var("FAULTS").map(|v| v.to_string()).unwrap_or_default();
    match chat_core::faults::Faults::parse(&spec) {
        Ok(faults) => worker_support::d1::set_delay_ms(faults.slow_ms),
        Err(e) => tracing::error!(error = %e, "FAULTS is malformed; D1 is not slowed"),
    }
}

async fn player(req: &Request, env: &Env) -> Result<Identity, Failure> {
    let auth =
        PrivyAuth::from_settings(&PrivySettings::from_env(env)).map_err(Failure::Internal)?;
    let header = req.headers().get("Authorization").ok().flatten();
    let token = header
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| Failure::Status(401, "missing_auth", "send a Privy access token".into()))?;
    let id_token = req.headers().get("privy-id-token").ok().flatten();
    auth.sign_in(token, id_token.as_deref(), now_ms())
        .await
        .map(|s| s.identity)
        .map_err(|e| Failure::Status(401, e.code, e.message))
}

async fn body(req: &mut Request) -> Result<Vec<u8>, Failure> {
    let bytes = req.bytes().await?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Failure::Status(
            413,
            "body_too_large",
            "the body is too large".into(),
        ));
    }
    Ok(bytes)
}

fn text(s: impl ToString) -> JsValue {
    JsValue::from(s.to_string())
}

async fn create_session(mut req: Request, env: &Env) -> Result<Response, Failure> {
    let identity = player(&req, env).await?;
    let new = NewSession::parse(&body(&mut req).await?)
        .map_err(|e| Failure::Status(400, e.code, e.message))?;
    let db = env.d1("DB_0")?;
    let now = now_ms();
    let id = time_ordered(now, random10());
    let upsert = db
        .prepare(sql::UPSERT_USERS)
        .bind(&[text(user_json(&identity, now))])?;
    let insert = db.prepare(sql::INSERT_SESSION).bind(&[
        text(id),
        text(identity.user_id()),
        text(new.character.as_str()),
        text(&new.username),
        text(new.locale.as_str()),
        JsValue::from(now as f64),
    ])?;
    metered_batch(&db, vec![upsert, insert]).await?;
    Ok(Response::from_json(&json!({ "sessionId": id }))?.with_status(201))
}

async fn chat(mut req: Request, env: &Env) -> Result<Response, Failure> {
    let identity = player(&req, env).await?;
    let turn = ChatTurn::parse(&body(&mut req).await?)
        .map_err(|e| Failure::Status(400, e.code, e.message))?;
    let db = env.d1("DB_0")?;
    // Inside the request: read the session, then write the turn.
    let session: SessionRow = db
        .prepare(sql::SELECT_SESSION)
        .bind(&[text(turn.session_id)])?
        .metered_first::<SessionRow>()
        .await?
        .filter(|s: &SessionRow| s.user_id == identity.user_id().to_string())
        .ok_or_else(|| Failure::Status(404, "session_not_found", "no such session".into()))?;
    if session.ended_at.is_some() {
        return Err(Failure::Status(
            409,
            "session_ended",
            "the game is over".into(),
        ));
    }
    let character = Character::parse(&session.character_type)
        .ok_or_else(|| Failure::Internal("a stored session names no character".into()))?;
    let locale = turn
        .locale
        .or_else(|| Locale::parse(&session.locale))
        .unwrap_or(Locale::En);
    let message_at = now_ms();
    let reply = OfflineEngine::answer(&ReplyInput {
        character,
        locale,
        player_name: &session.username,
        history: &[],
        message: &turn.message,
    });
    let record = TurnRecord::build(TurnInput {
        ids: TurnIds::random(message_at, random10()),
        session_id: turn.session_id.uuid(),
        identity: &identity,
        character,
        locale,
        message: &turn.message,
        message_at,
        reply: &reply,
        reply_at: now_ms(),
        idempotency_key: None,
    });
    record
        .validate()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let param = [JsValue::from_str(&turns_json([&record]))];
    let statements = sql::apply_turns()
        .iter()
        .map(|s| db.prepare(*s).bind(&param))
        .collect::<worker::Result<Vec<_>>>()?;
    metered_batch(&db, statements).await?;
    let answer = TurnAnswer::of(&record);
    let mut response = Response::ok(answer.to_json())?;
    response
        .headers_mut()
        .set("Content-Type", "application/json")?;
    Ok(response)
}
