//! How the chat Worker reaches a session's actor: by the session id (`id_from_name`), over
//! the actor's internal routes. Calling an actor creates it, so the callers make sure the id
//! was issued (or is in D1) first.

use crate::error::ApiError;
use chat_core::domain::SessionId;
use chat_core::identity::SignIn;
use chat_core::session::{SessionState, TurnAsk};
use worker::{Env, Method, Request, Response};

/// The Durable Object binding of the session actors.
pub use crate::config::SESSIONS;

fn stub(env: &Env, id: SessionId) -> Result<worker::Stub, ApiError> {
    Ok(env
        .durable_object(SESSIONS)?
        .id_from_name(&id.to_string())?
        .get_stub()?)
}

/// Calls the actor of session `id` on an internal route, with a JSON body when given.
async fn call(
    env: &Env,
    id: SessionId,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Response, ApiError> {
    let mut init = worker::RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let request = Request::new_with_init(&format!("https://session-actor{path}"), &init)?;
    // The runtime fails the call when the object is overloaded, being reset or unreachable:
    // the client may retry, and a keyed retry is answered exactly once.
    stub(env, id)?
        .fetch_with_request(request)
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

/// Plays one turn in its session's actor; the actor's answer (JSON, or SSE when `sse`) is
/// the client's.
pub async fn turn(env: &Env, ask: &TurnAsk, sse: bool) -> Result<Response, ApiError> {
    let path = if sse { "/turn?sse=1" } else { "/turn" };
    call(env, ask.session_id, Method::Post, path, Some(encode(ask)?)).await
}

/// A live socket's ticket for `sign_in`'s player, from the session's actor (404 if not
/// theirs); the ticket keeps the sign-in, and its end.
pub async fn ticket(env: &Env, session: SessionId, sign_in: &SignIn) -> Result<Response, ApiError> {
    call(
        env,
        session,
        Method::Post,
        "/ticket",
        Some(encode(sign_in)?),
    )
    .await
}

/// Hands a WebSocket upgrade to the session's actor, for the ticket's `nonce`; the actor
/// answers 101 with the socket, or 401 for a ticket already used.
pub async fn live(
    env: &Env,
    session: SessionId,
    nonce: &str,
    after: Option<i64>,
) -> Result<Response, ApiError> {
    let mut path = format!("https://session-actor/live?nonce={nonce}");
    if let Some(after) = after {
        path.push_str(&format!("&after={after}"));
    }
    let headers = worker::Headers::new();
    headers.set("Upgrade", "websocket")?;
    let mut init = worker::RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&path, &init)?;
    stub(env, session)?
        .fetch_with_request(request)
        .await
        .map_err(|e| ApiError::SessionUnavailable(e.to_string()))
}

/// What the actor of session `id` holds (`GET /admin/sessions/{id}`).
pub async fn describe(env: &Env, id: SessionId) -> Result<Response, ApiError> {
    call(env, id, Method::Get, "/state", None).await
}

/// Every row the actor of session `id` holds, by table (`{}` for a session never started).
pub async fn export(env: &Env, id: SessionId) -> Result<serde_json::Value, ApiError> {
    let mut response = call(env, id, Method::Get, "/export", None).await?;
    match response.status_code() {
        200 => Ok(response.json().await?),
        status => Err(ApiError::SessionUnavailable(format!(
            "the session actor answered /export with {status}"
        ))),
    }
}

/// Erases the actor of session `id`: its storage deleted, its sockets closed; how many.
pub async fn erase(env: &Env, id: SessionId) -> Result<usize, ApiError> {
    let mut response = call(env, id, Method::Post, "/erase", None).await?;
    match response.status_code() {
        200 => {
            let body: serde_json::Value = response.json().await?;
            Ok(body["socketsClosed"].as_u64().unwrap_or(0) as usize)
        }
        status => Err(ApiError::SessionUnavailable(format!(
            "the session actor answered /erase with {status}"
        ))),
    }
}
