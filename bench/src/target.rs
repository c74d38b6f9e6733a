//! What the load runs against: each variant of the chat Worker (and the inline-write Worker)
//! in its own `wrangler dev`, with its players and sessions, and the routes it is asked.
//!
//! Variants, all but one the deployable build:
//! - `before`: Privy tokens checked in wasm (the pure-Rust `p256` code), nothing cached;
//! - `webcrypto`: Privy tokens checked by WebCrypto, nothing cached;
//! - `after`: WebCrypto and the per-isolate token cache, the production settings;
//! - `dev`: the local build with the development header, no token at all;
//! - `inline`: the inline-write Worker (`bench/inline`), signed in as `after`.

use crate::load::Outcome;
use crate::players::{self, Player, SignIn};
use e2e::{Options, Workers};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long [`Instance::settle`] waits for the consumer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One running variant.
pub struct Instance {
    pub name: &'static str,
    pub w: Workers,
    pub sessions: Arc<Vec<(Player, String)>>,
    /// Message ids of every 200-answered turn, for the final check.
    pub answered: Mutex<Vec<String>>,
}

/// How to start a variant.
pub struct Spec {
    pub name: &'static str,
    pub deployable: bool,
    pub sign_in: SignIn,
    pub verifier: &'static str,
    pub cache: &'static str,
    pub first_worker: Option<&'static str>,
}

pub fn specs() -> Vec<Spec> {
    let privy = |name, verifier, cache, first_worker| Spec {
        name,
        deployable: true,
        sign_in: SignIn::Privy,
        verifier,
        cache,
        first_worker,
    };
    vec![
        privy("before", "wasm", "0", None),
        privy("webcrypto", "webcrypto", "0", None),
        privy("after", "webcrypto", "4096", None),
        Spec {
            name: "dev",
            deployable: false,
            sign_in: SignIn::DevHeader,
            verifier: "webcrypto",
            cache: "4096",
            first_worker: None,
        },
        privy("inline", "webcrypto", "4096", Some("bench/inline")),
    ]
}

impl Instance {
    pub async fn start(spec: &Spec, players: usize, sessions_each: usize) -> anyhow::Result<Self> {
        Self::start_with(spec, players, sessions_each, Vec::new()).await
    }

    /// A variant with more of the chat Worker's variables.
    pub async fn start_with(
        spec: &Spec,
        players: usize,
        sessions_each: usize,
        more: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_full(spec, players, sessions_each, more, Vec::new()).await
    }

    /// A variant with more variables for the chat Worker (or the Worker in its place) and
    /// for the consumer.
    pub async fn start_full(
        spec: &Spec,
        players: usize,
        sessions_each: usize,
        more: Vec<(&'static str, String)>,
        consumer_vars: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Self> {
        let mut chat_vars = more;
        if spec.sign_in == SignIn::Privy {
            chat_vars.extend([
                ("AUTH_MODE", "privy".to_string()),
                ("PRIVY_APP_ID", players::APP_ID.to_string()),
                ("PRIVY_VERIFICATION_KEY", players::verification_key_var()),
                ("PRIVY_VERIFIER", spec.verifier.to_string()),
                ("PRIVY_TOKEN_CACHE", spec.cache.to_string()),
            ]);
        }
        let w = Workers::start_with(Options {
            deployable: spec.deployable,
            dev_auth: spec.sign_in == SignIn::DevHeader,
            databases: if spec.first_worker.is_some() { 1 } else { 2 },
            first_worker: spec.first_worker,
            chat_vars,
            consumer_vars,
            ..Options::default()
        })
        .await;
        let people = players::players(players, spec.name, spec.sign_in);
        let sessions = players::sessions(&w.http, &w.base, &people, sessions_each).await?;
        eprintln!(
            "bench: {} is up at {} with {} sessions",
            spec.name,
            w.base,
            sessions.len()
        );
        Ok(Self {
            name: spec.name,
            w,
            sessions: Arc::new(sessions),
            answered: Mutex::new(Vec::new()),
        })
    }

    /// Plays `rounds` turns in every session, at most `concurrency` at once, each with a
    /// fresh `Idempotency-Key` when `keyed`: the message ids answered, or the first failure.
    pub async fn play_every_session(
        &self,
        rounds: usize,
        concurrency: usize,
        keyed: bool,
    ) -> anyhow::Result<Vec<String>> {
        use futures::StreamExt;
        let url = self.w.url("/api/chat");
        let turns = (0..rounds).flat_map(|r| (0..self.sessions.len()).map(move |s| (r, s)));
        let outcomes: Vec<Outcome> = futures::stream::iter(turns)
            .map(|(r, s)| {
                let url = &url;
                async move {
                    let (player, session) = &self.sessions[s];
                    let key = keyed.then(turn_key);
                    let i = r * 1_000_000 + s;
                    chat_turn_keyed(&self.w.http, url, player, session, i, key.as_deref()).await
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut ids = Vec::new();
        for outcome in outcomes {
            ids.extend(outcome.map_err(|e| anyhow::anyhow!("a warm-up turn failed: {e}"))?);
        }
        Ok(ids)
    }

    /// Keeps the message ids a measurement got 200s for.
    pub fn keep(&self, ids: &mut Vec<String>) {
        self.answered.lock().unwrap().append(ids);
    }

    /// Waits (up to 5 minutes) until every turn kept so far is stored, so that the next
    /// measurement starts with nothing waiting; whether it was, the final check tells.
    pub async fn settle(&self) {
        crate::check::wait_drained(&self.w, self.answered_count(), SETTLE_TIMEOUT).await;
    }

    pub fn answered_count(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// Every turn it answered is stored exactly once, and totals equal the ledger.
    pub async fn check(&self) -> anyhow::Result<()> {
        let answered = self.answered.lock().unwrap().clone();
        crate::check::all_stored(&self.w, &answered, self.name).await
    }
}

/// A route of an instance under load.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// How tables name it: `floor`, `chat`, `inline`, `chat (before)`…
    pub label: &'static str,
    pub instance: &'a Instance,
    /// POST /api/chat (a turn) or GET /healthz (the floor: the runtime, no work).
    pub chat: bool,
}

pub type Requester = Arc<dyn Fn(usize) -> BoxFuture<'static, Outcome> + Send + Sync>;

impl Target<'_> {
    /// The request number `i` of a load: a turn in session `i mod n`, or the floor.
    pub fn requester(&self) -> Requester {
        let http = self.instance.w.http.clone();
        if !self.chat {
            let url = self.instance.w.url("/healthz");
            return Arc::new(move |_| {
                let (http, url) = (http.clone(), url.clone());
                Box::pin(async move {
                    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
                    if r.status().is_success() {
                        Ok(None)
                    } else {
                        Err(r.status().to_string())
                    }
                })
            });
        }
        let url = self.instance.w.url("/api/chat");
        let sessions = self.instance.sessions.clone();
        Arc::new(move |i| {
            let (http, url, sessions) = (http.clone(), url.clone(), sessions.clone());
            Box::pin(async move {
                let (player, session) = &sessions[i % sessions.len()];
                chat_turn(&http, &url, player, session, i).await
            })
        })
    }
}

/// One chat turn: Ok(message id) on a 200, Err on anything else.
pub async fn chat_turn(
    http: &reqwest::Client,
    url: &str,
    player: &Player,
    session: &str,
    i: usize,
) -> Outcome {
    chat_turn_keyed(http, url, player, session, i, None).await
}

/// A fresh `Idempotency-Key`, a UUID for each turn as the page makes one.
pub fn turn_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One chat turn, with `Idempotency-Key: key` when given.
pub async fn chat_turn_keyed(
    http: &reqwest::Client,
    url: &str,
    player: &Player,
    session: &str,
    i: usize,
    key: Option<&str>,
) -> Outcome {
    let mut request = http
        .post(url)
        .header(player.header.0, &player.header.1)
        .json(&json!({ "sessionId": session, "message": format!("hello there, turn {i}") }));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let r = request.send().await.map_err(|e| e.to_string())?;
    if r.status().as_u16() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(body["messageId"].as_str().map(str::to_owned))
}
