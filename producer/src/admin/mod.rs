//! The operators' API under `/admin`, behind `Authorization: Bearer <ADMIN_TOKEN>` (a
//! secret; `.dev.vars` or `--var` locally). The token is checked before any routing, so
//! without it every admin path answers the same 401 and reveals nothing.
//!
//! - [`letters`]: list, show, replay (with dry run) and discard dead letters.
//! - [`ops`]: reconcile stats with the ledger, enqueue raw turn records, figures.
//! - [`shards`]: the bucket map, and moving a bucket to another database.
//! - `archive`: one page of an archive run (`chat_core::archive`), and
//!   `players/{userId}/archived-events`: a player's point events in the archive.
//! - `sessions/{id}`: what a session's actor holds (its state, turns and keys kept).
//! - `runtime`: this isolate's wasm memory (the soak test's leak signal).
//! - `usage`: this isolate's counts in billed units since it started
//!   (`chat_core::usage::Usage`; on `wrangler dev` the whole Worker, its actors included;
//!   on Cloudflare one isolate's share). The benchmark's cost scenario reads it.

mod letters;
mod ops;
mod shards;

use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::bearer_matches;
use worker::{Env, Method, Request, Response};

fn configured_token(env: &Env) -> Option<String> {
    crate::config::Config::of(env).admin_token.clone()
}

/// Routes `/admin/...` (`rest` is the path after `admin`).
pub async fn handle(req: Request, env: &Env, rest: &[&str]) -> Result<Response, ApiError> {
    let header = req.headers().get("Authorization").ok().flatten();
    if !bearer_matches(header.as_deref(), configured_token(env).as_deref()) {
        return Err(ApiError::unauthorized(
            "unauthorized",
            "admin routes need Authorization: Bearer <ADMIN_TOKEN>",
        ));
    }
    let method = req.method();
    let only = |allowed: &'static str, wanted: Method| crate::error::only(&method, allowed, wanted);
    let services = || Services::from_env(env);
    match rest {
        ["dead-letters"] => {
            only("GET", Method::Get)?;
            letters::list(req, &services()?).await
        }
        ["dead-letters", "replay"] => {
            only("POST", Method::Post)?;
            letters::replay(req, &services()?).await
        }
        ["dead-letters", "discard"] => {
            only("POST", Method::Post)?;
            letters::discard(req, &services()?).await
        }
        ["dead-letters", id] => {
            only("GET", Method::Get)?;
            letters::show(&services()?, id).await
        }
        ["reconcile"] => {
            only("POST", Method::Post)?;
            ops::reconcile(req, &services()?).await
        }
        ["turns"] => {
            only("POST", Method::Post)?;
            ops::enqueue_turns(req, &services()?).await
        }
        ["stats"] => {
            only("GET", Method::Get)?;
            ops::stats(&services()?).await
        }
        ["shards"] => {
            only("GET", Method::Get)?;
            shards::status(&services()?).await
        }
        ["shards", step] => {
            only("POST", Method::Post)?;
            let services = services()?;
            match *step {
                "hold" => shards::hold(req, &services).await,
                "copy" => shards::copy(req, &services).await,
                "verify" => shards::verify(req, &services).await,
                "flip" => shards::flip(req, &services).await,
                "purge" => shards::purge(req, &services).await,
                "release" => shards::release(req, &services).await,
                _ => Err(ApiError::not_found(
                    "not_found",
                    "no such shard step: hold, copy, verify, flip, purge or release",
                )),
            }
        }
        ["archive"] => {
            only("POST", Method::Post)?;
            crate::archive::run(req, &services()?).await
        }
        ["players", user, "export"] => {
            only("GET", Method::Get)?;
            let user = crate::privacy::parse_user(user)?;
            crate::privacy::export(&services()?, user).await
        }
        ["players", user, "erase"] => {
            only("POST", Method::Post)?;
            crate::privacy::erase(req, &services()?, user).await
        }
        ["players", user, "archived-events"] => {
            only("GET", Method::Get)?;
            crate::archive::archived_events(req, &services()?, user).await
        }
        ["usage"] => {
            only("GET", Method::Get)?;
            Ok(Response::from_json(&worker_support::usage::snapshot())?)
        }
        ["runtime"] => {
            only("GET", Method::Get)?;
            Ok(Response::from_json(&serde_json::json!({
                "wasmMemoryBytes": worker_support::memory::wasm_memory_bytes(),
            }))?)
        }
        ["sessions", id] => {
            only("GET", Method::Get)?;
            let not_found = || ApiError::not_found("session_not_found", "no session with this id");
            let id = chat_core::domain::SessionId::parse(id).ok_or_else(not_found)?;
            // Calling an actor creates it: only an id this Worker issued, or one D1 holds,
            // reaches one.
            let issued =
                crate::sessions::id_key(env).is_some_and(|key| id.is_issued(key.as_bytes()));
            if !issued && !ops::session_in_d1(&services()?, id.uuid()).await? {
                return Err(not_found());
            }
            crate::actor::client::describe(env, id).await
        }
        _ => Err(ApiError::not_found("not_found", "no such admin route")),
    }
}
