//! `SessionActor`: one SQLite-backed Durable Object per chat session, the one authority for
//! its live state. It keeps the session (owner, character, locale, name, ended), its last
//! turns for the engine's context, every idempotency key it has bound with the exact answer,
//! and the session's live sockets. A turn is the core's turn runner
//! (`chat_core::turn::Runner`) over this object's ports, whatever the transport; what only a
//! Durable Object can do is here: one turn at a time (the runner's gate lives here), the
//! sockets of the session (hibernatable: an idle socket costs nothing, and `ping` is
//! answered without waking the object), and an alarm that drops answers when they expire.
//!
//! - [`open`]: the storage opened (upgraded in place), a session started or adopted from
//!   D1, and what an operator sees of the actor.
//! - [`turns`]: the turns over HTTP, plain and streamed, and the one way every transport
//!   runs a turn.
//! - [`tickets`]: opening a live socket: tickets, connecting, the frames it missed.
//! - [`sockets`]: a live socket's frames: its turns and stops, its refusals, its close.
//! - [`live`]: where each transport's frames go, stops, the flood limit.
//! - [`store`]: its rows (the runner's store, tickets, the last live turn).
//! - [`queue`]: the turn queue as the runner's queue.
//! - [`alarm`]: the alarm as the runner's alarm port, and its work.
//! - [`meter`]: its share of the usage meter.
//! - [`privacy`]: what it holds for an export, and its erasure.
//! - [`client`]: how the chat Worker calls it.
//!
//! Internal routes (a Durable Object is not reachable from the Internet):
//! - `POST /start` with a `SessionState`: creates the session (a second start changes nothing);
//! - `POST /turn` with a `TurnAsk`: plays one turn and answers as `POST /api/chat` does;
//!   `?sse=1` answers `text/event-stream` as the turn is written;
//! - `POST /ticket` with the player's `SignIn`: a ticket for the live socket;
//! - `GET /live?nonce=&after=` with `Upgrade: websocket`: the live socket of a ticket;
//! - `GET /state`: what the actor holds, for operators;
//! - `GET /export`: every row it holds, for its player's export;
//! - `POST /erase`: everything deleted, its sockets closed (a player's erasure).

mod alarm;
pub mod client;
pub mod live;
mod meter;
mod open;
mod privacy;
mod queue;
mod sockets;
mod store;
mod tickets;
mod turns;

use crate::error::ApiError;
use chat_core::domain::IdempotencyKey;
use chat_core::identity::SignIn;
use chat_core::session::{SessionState, TurnAsk};
use chat_core::turn::InstanceMemory;
use live::{Flood, Stop};
use meter::{Billed, Busy};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, State, WebSocket,
    WebSocketIncomingMessage,
};
use worker_support::clock::now_ms;

#[durable_object]
pub struct SessionActor {
    actor: Rc<Actor>,
}

/// The object's state. Shared (`Rc`) so that a streamed answer can go on writing after the
/// request that asked for it returned its response.
pub struct Actor {
    state: State,
    /// The runtime's own handle on the object, for what the `worker` crate would unwrap
    /// (accepting a socket past the runtime's limit throws).
    raw: worker::worker_sys::DurableObjectState,
    env: Env,
    /// What the turn runner keeps in memory: the gate (one turn at a time per session,
    /// whatever the transport), every frame's number and what a reconnecting socket may
    /// have missed, and whether a bound turn is left to finish.
    memory: InstanceMemory,
    /// Whether this instance has seen its storage hold a current schema.
    ready: Cell<bool>,
    /// The alarm this instance knows of: `None` until read once, then its time if any.
    alarm: Cell<Option<Option<i64>>>,
    /// The stops a socket may ask, by the key of the turn in progress.
    stops: RefCell<HashMap<IdempotencyKey, Rc<Stop>>>,
    flood: RefCell<Flood>,
    /// What it is handling now, for the usage meter's active time.
    busy: Busy,
}

impl DurableObject for SessionActor {
    fn new(state: State, env: Env) -> Self {
        let raw = state._inner();
        // Two handles on the one object (`State` keeps its own and lends none).
        let state = State::from(worker::wasm_bindgen::JsCast::unchecked_into::<
            worker::worker_sys::DurableObjectState,
        >(raw.clone()));
        // `ping` is answered by the runtime, without waking the object.
        match worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(e) => tracing::error!(error = ?e, "the ping auto-response could not be set"),
        }
        Self {
            actor: Rc::new(Actor {
                state,
                raw,
                env,
                memory: InstanceMemory::default(),
                ready: Cell::new(false),
                alarm: Cell::new(None),
                stops: RefCell::new(HashMap::new()),
                flood: RefCell::new(Flood::default()),
                busy: Busy::default(),
            }),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let _active = self.actor.active(Billed::Request);
        crate::faults::slow_d1(&self.actor.env);
        Ok(match self.actor.clone().route(req).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        })
    }

    /// Drops the answers and tickets that expired, and sets the alarm for the next.
    async fn alarm(&self) -> worker::Result<Response> {
        let actor = &self.actor;
        let _active = actor.active(Billed::Request);
        if !actor
            .open()
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?
        {
            return Response::ok("no session");
        }
        let now = now_ms();
        let next = actor.ring(now).map_err(|e| worker::Error::RustError(e.0))?;
        // The alarm that ran is spent: whatever is due next is swept a day from now at the
        // soonest, with everything else that expires meanwhile.
        actor.alarm.set(Some(None));
        if let Some(due) = next {
            actor
                .alarm_by(chat_core::session::next_sweep(now, due))
                .await;
        }
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
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        self.actor.on_close(&ws, code);
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, error: worker::Error) -> worker::Result<()> {
        tracing::warn!(error = %error, "a live socket failed");
        Ok(())
    }
}

async fn json_body<T: DeserializeOwned>(req: &mut Request) -> Result<T, ApiError> {
    let text = req.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::Internal(format!("the chat Worker sent the actor a bad body: {e}")))
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
                let sign_in: SignIn = json_body(&mut req).await?;
                self.ticket(&sign_in).await
            }
            (Method::Get, "/live") => {
                let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
                self.connect(&query)
            }
            (Method::Get, "/state") => self.describe().await,
            (Method::Get, "/export") => self.export(),
            (Method::Post, "/erase") => self.erase().await,
            (method, path) => Err(ApiError::Internal(format!(
                "the actor has no route {method} {path}"
            ))),
        }
    }
}
