//! Reply latency and throughput: POST /api/chat beside its floor, GET /healthz (the same
//! runtime answering a route that does no work), at fixed concurrency for a fixed time,
//! interleaved run by run so both see the same machine.

use crate::load::{closed_loop, median, LoadResult, Outcome};
use crate::Params;
use e2e::Workers;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Players and sessions the chat load spreads over.
const PLAYERS: usize = 32;

pub struct Row {
    pub concurrency: usize,
    pub floor: Vec<LoadResult>,
    pub chat: Vec<LoadResult>,
}

pub struct ReplyReport {
    pub rows: Vec<Row>,
    /// Message ids of every 200-answered chat turn.
    pub answered: Vec<String>,
}

fn med(runs: &[LoadResult], f: impl Fn(&LoadResult) -> f64) -> f64 {
    median(runs.iter().map(f).collect())
}

impl Row {
    fn to_json(&self) -> Value {
        let p50 = |r: &[LoadResult]| med(r, |x| x.quantile_ms(0.5));
        let p99 = |r: &[LoadResult]| med(r, |x| x.quantile_ms(0.99));
        let rps = |r: &[LoadResult]| med(r, LoadResult::rps);
        json!({
            "concurrency": self.concurrency,
            "floor": { "median": { "rps": rps(&self.floor), "p50Ms": p50(&self.floor), "p90Ms": med(&self.floor, |x| x.quantile_ms(0.9)), "p99Ms": p99(&self.floor), "p999Ms": med(&self.floor, |x| x.quantile_ms(0.999)), "errors": self.floor.iter().map(|r| r.errors).sum::<usize>() }, "runs": self.floor.iter().map(LoadResult::to_json).collect::<Vec<_>>() },
            "chat": { "median": { "rps": rps(&self.chat), "p50Ms": p50(&self.chat), "p90Ms": med(&self.chat, |x| x.quantile_ms(0.9)), "p99Ms": p99(&self.chat), "p999Ms": med(&self.chat, |x| x.quantile_ms(0.999)), "errors": self.chat.iter().map(|r| r.errors).sum::<usize>() }, "runs": self.chat.iter().map(LoadResult::to_json).collect::<Vec<_>>() },
            "ratio": {
                "p50": p50(&self.chat) / p50(&self.floor),
                "p99": p99(&self.chat) / p99(&self.floor),
                "throughput": rps(&self.chat) / rps(&self.floor),
            },
        })
    }
}

impl ReplyReport {
    pub fn to_json(&self) -> Value {
        json!({ "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(), "answered": self.answered.len() })
    }

    /// The median chat throughput at `concurrency` (or the highest measured).
    pub fn chat_rps_at(&self, concurrency: usize) -> f64 {
        let row = self
            .rows
            .iter()
            .find(|r| r.concurrency == concurrency)
            .or(self.rows.last())
            .expect("a row");
        med(&row.chat, LoadResult::rps)
    }
}

/// Starts `PLAYERS` sessions, returning (player header, session id).
pub async fn sessions(w: &Workers, prefix: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let user = format!("x:{prefix}-{}", i % PLAYERS);
        out.push((
            user.clone(),
            w.session(&user, ["sakura", "rin", "kai"][i % 3]).await,
        ));
    }
    out
}

/// One chat turn as the load sends it: Ok(message id) on a 200.
pub async fn chat_turn(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    session: &str,
    i: usize,
) -> Outcome {
    let r = http
        .post(url)
        .header("X-Dev-User", user)
        .json(&json!({ "sessionId": session, "message": format!("hello there, turn {i}") }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().as_u16() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(body["messageId"].as_str().map(str::to_owned))
}

pub async fn run(w: &Workers, params: &Params) -> anyhow::Result<ReplyReport> {
    let sessions = Arc::new(sessions(w, "reply", PLAYERS * 2).await);
    let duration = Duration::from_secs(params.seconds);
    let mut rows = Vec::new();
    let mut answered = Vec::new();
    for &concurrency in &params.concurrency {
        let mut row = Row {
            concurrency,
            floor: Vec::new(),
            chat: Vec::new(),
        };
        for run in 0..params.runs {
            let (http, url) = (w.http.clone(), w.url("/healthz"));
            let floor = closed_loop(concurrency, duration, move |_| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
                    if r.status().is_success() {
                        Ok(None)
                    } else {
                        Err(r.status().to_string())
                    }
                }
            })
            .await;
            let (http, url, sessions) = (w.http.clone(), w.url("/api/chat"), sessions.clone());
            let mut chat = closed_loop(concurrency, duration, move |i| {
                let (http, url, sessions) = (http.clone(), url.clone(), sessions.clone());
                async move {
                    let (user, session) = &sessions[i % sessions.len()];
                    chat_turn(&http, &url, user, session, i).await
                }
            })
            .await;
            eprintln!(
                "reply c={concurrency} run {run}: floor {:.0} rps p50 {:.2} ms p99 {:.2} ms | chat {:.0} rps p50 {:.2} ms p99 {:.2} ms errors {}",
                floor.rps(), floor.quantile_ms(0.5), floor.quantile_ms(0.99),
                chat.rps(), chat.quantile_ms(0.5), chat.quantile_ms(0.99), chat.errors
            );
            answered.append(&mut chat.kept);
            row.floor.push(floor);
            row.chat.push(chat);
            // Let the consumer drain between runs, so each run starts from the same state.
            crate::check::wait_drained(w, answered.len(), Duration::from_secs(120)).await;
        }
        rows.push(row);
    }
    Ok(ReplyReport { rows, answered })
}
