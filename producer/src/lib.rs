//! The chat Worker: answers a player at once and puts the turn on the queue.
//!
//! It never writes D1 on the chat hot path: a 200 from `POST /api/chat` means the turn record
//! is durably queued, and the consumer Worker stores it. Each session's live state (owner,
//! game over, last turns, answered idempotency keys) lives in its own Durable Object.
//!
//! - [`actor`]: `SessionActor`, the Durable Object of one session (its turns over every
//!   transport, its rows, its live sockets), and how the Worker calls it.
//! - [`admin`]: the operators' API under `/admin` (dead letters, replay, reconcile).
//! - [`archive`]: the archiver (its Cron Trigger and `POST /admin/archive`) over D1 and R2,
//!   and history read across both tiers.
//! - [`routes`]: method + path → handler, 404 and 405.
//! - [`config`]: every binding name, and every variable and secret read once per isolate
//!   into one typed value.
//! - [`services`]: the bindings a request uses, with the configuration.
//! - [`auth`]: who is asking: Privy tokens, X tokens, or the local development header.
//! - [`engine`]: the reply engine: offline (default), an OpenAI-compatible LLM, or Workers AI.
//! - [`body`]: reading a JSON body within its size limit.
//! - [`chat`]: `POST /api/chat`, the hot path: authenticate, validate, hand to the actor
//!   (JSON, or server-sent events as the reply is written).
//! - [`sessions`]: starting a session and listing its messages.
//! - [`rate_limit`]: the per-player limits on turns and session starts (`[[ratelimits]]`).
//! - [`stats`]: a player's points and intimacy level.
//! - [`leaderboard`]: the top players across every database.
//! - [`privacy`]: a player's data exported, or erased everywhere it lives.
//! - [`live`]: the live socket's routes: tickets, and the socket handed to the session's actor.
//! - [`info`]: `GET /api/info`, what the play page needs to know: sign-in mode, characters.
//! - [`ready`]: `GET /readyz`, every database migrated.
//! - [`shard_map`]: the live bucket map: which database holds a player's rows.
//! - [`databases`]: the D1 databases by binding; a failing one is 503 for its players only.
//! - [`faults`]: the local build's fault hooks (a database down, an actor reset); constants
//!   in the deployable build.
//! - [`db`]: every D1 call of this Worker (its SQL lives in `chat_core::sql`).
//! - [`error`]: the one error type of this boundary, mapped to a status once.

mod actor;
mod admin;
mod archive;
mod auth;
mod body;
mod chat;
mod config;
mod databases;
mod db;
mod engine;
mod error;
mod faults;
mod info;
mod leaderboard;
mod live;
mod privacy;
mod rate_limit;
mod ready;
mod routes;
mod services;
mod sessions;
mod shard_map;
mod stats;

pub use actor::SessionActor;
use worker::{
    event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent,
};

#[event(start)]
fn start() {
    // No console_error_panic_hook here: worker 0.8 installs its own hook, which logs the panic
    // and re-initialises the instance; replacing it would lose that recovery.
    worker_support::logging::init();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // Reading the meter is not part of what it measures.
    if req.path() != "/admin/usage" {
        worker_support::usage::count(|u| u.worker_requests += 1);
    }
    faults::slow_d1(&env);
    Ok(routes::handle(req, &env).await)
}

/// The Cron Trigger (`[triggers]` in wrangler.toml): the archiver's jobs, one per database.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    archive::scheduled(&env).await;
}

/// The `chat-archive` queue: each job archives some pages of one database.
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    faults::slow_d1(&env);
    archive::jobs(batch, &env).await;
    Ok(())
}
