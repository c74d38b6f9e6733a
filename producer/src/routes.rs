//! Method + path → handler. Every answer, success or error, is JSON; an unknown path is 404
//! and a known path with another method is 405 with `Allow`. The web pages (`/`, `/ops`) are
//! static assets that Cloudflare serves before the Worker runs (`[assets]` in wrangler.toml).

use crate::error::{only, ApiError};
use crate::services::Services;
use crate::{chat, sessions, stats};
use chat_core::domain::SessionId;
use serde_json::json;
use worker::{Env, Method, Request, Response};

pub async fn handle(req: Request, env: &Env) -> Response {
    let mut response = match route(req, env).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    // JSON is never to be sniffed into HTML or script by a browser.
    let _ = response
        .headers_mut()
        .set("X-Content-Type-Options", "nosniff");
    response
}

async fn route(req: Request, env: &Env) -> Result<Response, ApiError> {
    let path = req.path();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method();
    let only = |allowed: &'static str, wanted: Method| only(&method, allowed, wanted);
    match segments.as_slice() {
        ["healthz"] => {
            only("GET", Method::Get)?;
            Ok(Response::from_json(&json!({ "ok": true }))?)
        }
        ["readyz"] => {
            only("GET", Method::Get)?;
            crate::ready::check(env).await
        }
        ["api", "info"] => {
            only("GET", Method::Get)?;
            Ok(Response::from_json(&crate::info::public(env))?)
        }
        ["api", "sessions"] => {
            only("POST", Method::Post)?;
            sessions::create(req, env, &Services::from_env(env)?).await
        }
        ["api", "chat"] => {
            only("POST", Method::Post)?;
            chat::post(req, env, &Services::from_env(env)?).await
        }
        ["api", "leaderboard"] => {
            only("GET", Method::Get)?;
            crate::leaderboard::top(req, &Services::from_env(env)?).await
        }
        ["api", "me", "stats"] => {
            only("GET", Method::Get)?;
            stats::mine(req, &Services::from_env(env)?).await
        }
        ["api", "me", "export"] => {
            only("GET", Method::Get)?;
            crate::privacy::export_mine(req, &Services::from_env(env)?, None).await
        }
        ["api", "players", user, "export"] => {
            only("GET", Method::Get)?;
            crate::privacy::export_mine(req, &Services::from_env(env)?, Some(user)).await
        }
        ["api", "sessions", id, "ticket"] => {
            only("POST", Method::Post)?;
            let id = SessionId::parse(id).ok_or_else(session_not_found)?;
            crate::live::ticket(req, env, &Services::from_env(env)?, id).await
        }
        ["api", "sessions", id, "live"] => {
            only("GET", Method::Get)?;
            let id = SessionId::parse(id).ok_or_else(session_not_found)?;
            crate::live::connect(req, env, id).await
        }
        ["api", "sessions", id, "messages"] => {
            only("GET", Method::Get)?;
            let id = SessionId::parse(id).ok_or_else(session_not_found)?;
            sessions::messages(req, &Services::from_env(env)?, id).await
        }
        ["admin", rest @ ..] => crate::admin::handle(req, env, rest).await,
        _ => Err(ApiError::not_found(
            "not_found",
            format!("no route for {path}"),
        )),
    }
}

fn session_not_found() -> ApiError {
    ApiError::not_found(
        "session_not_found",
        "no session with this id for this player",
    )
}
