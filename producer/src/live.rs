//! The live socket's routes on the chat Worker. A browser cannot set headers on a
//! WebSocket, so a signed-in player asks for a ticket first:
//!
//! - `POST /api/sessions/{id}/ticket` (normal sign-in): the session's actor mints a ticket
//!   for this player, single-use, for 60 s: 201 `{"ticket", "expiresAt"}`. Limited per
//!   player (`TICKET_LIMITER`, with `TURN_RATE_LIMIT`: 429 with `Retry-After`) and per
//!   session (a few unused at once). The ticket keeps the sign-in and when it ends: the
//!   socket plays no turn after that, and the page asks for a new ticket.
//! - `GET /api/sessions/{id}/live?ticket=…&after=<seq>` with `Upgrade: websocket`: the socket,
//!   handed to the session's actor. Refused before any upgrade, and before the actor is
//!   called: a page of another site (403 `forbidden_origin`: only the Worker's own origin
//!   and `LIVE_ORIGINS` may open it; a client that sends no `Origin` is no browser), and a
//!   missing, forged, expired or other session's ticket (401). A ticket used twice is
//!   refused by the actor (401 `ticket_used`).

use crate::actor::client;
use crate::error::ApiError;
use crate::rate_limit::{self, Limiter};
use crate::services::Services;
use chat_core::domain::SessionId;
use chat_core::refusal::Kind;
use chat_core::ticket::{check, TicketError};
use worker::{Env, Request, Response};
use worker_support::clock::now_ms;

pub async fn ticket(
    req: Request,
    env: &Env,
    services: &Services,
    id: SessionId,
) -> Result<Response, ApiError> {
    let sign_in = services.auth.sign_in(&req).await?;
    rate_limit::check(env, Limiter::Tickets, &sign_in.identity).await?;
    crate::sessions::reachable(env, services, &sign_in.identity, id).await?;
    client::ticket(env, id, &sign_in).await
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::unauthorized(code, message)
}

/// Whether `origin` may open a live socket here: the Worker's own origin, or one of
/// `LIVE_ORIGINS` (comma-separated, e.g. `https://game.example`).
fn origin_allowed(env: &Env, req: &Request, origin: &str) -> bool {
    let own = req.url().ok().map(|u| u.origin().ascii_serialization());
    own.as_deref() == Some(origin)
        || crate::config::Config::of(env)
            .live_origins
            .iter()
            .any(|o| o == origin)
}

pub async fn connect(req: Request, env: &Env, id: SessionId) -> Result<Response, ApiError> {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    if !header("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::UpgradeRequired);
    }
    if let Some(origin) = header("Origin") {
        if !origin_allowed(env, &req, &origin) {
            return Err(ApiError::refused(Kind::Forbidden, "forbidden_origin", format!(
                    "{origin} may not open this session's socket: only this API's own pages and LIVE_ORIGINS may"
                )));
        }
    }
    let url = req.url()?;
    let query = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let ticket = query("ticket").ok_or_else(|| {
        unauthorized(
            "missing_ticket",
            "open the socket with ?ticket= from POST /api/sessions/{id}/ticket",
        )
    })?;
    let after = match query("after") {
        None => None,
        Some(a) => Some(a.parse::<i64>().map_err(|_| {
            ApiError::invalid("invalid_query", "'after' must be the seq of a frame")
        })?),
    };
    let key = crate::sessions::id_key(env)
        .ok_or_else(|| unauthorized("invalid_ticket", "live sockets are not configured here"))?;
    let nonce = check(&ticket, &id.uuid(), key.as_bytes(), now_ms()).map_err(|e| match e {
        TicketError::Expired => {
            unauthorized("expired_ticket", "this ticket expired; ask for a new one")
        }
        TicketError::Malformed | TicketError::Forged => {
            unauthorized("invalid_ticket", "this is not a ticket for this session")
        }
    })?;
    client::live(env, id, &nonce, after).await
}
