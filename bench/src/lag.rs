//! Persistence lag: under a steady load at about half the measured reply throughput, the
//! time from a chat answer to its row being readable through GET /api/sessions/{id}/messages,
//! for a sample of probe turns, against `max_batch_timeout`.

use crate::load::{open_loop, LoadResult};
use crate::reply::{chat_turn, sessions};
use crate::Params;
use e2e::Workers;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Probes per second.
const PROBE_RATE: f64 = 4.0;

pub struct LagReport {
    pub rate: f64,
    pub background: LoadResult,
    pub lag_ms: Histogram<u64>,
    pub probes_lost: usize,
    pub answered: Vec<String>,
}

impl LagReport {
    pub fn to_json(&self) -> Value {
        let q = |p: f64| self.lag_ms.value_at_quantile(p);
        json!({
            "targetRps": self.rate,
            "background": self.background.to_json(),
            "probes": self.lag_ms.len(),
            "probesNotSeen": self.probes_lost,
            "p50Ms": q(0.5), "p90Ms": q(0.9), "p99Ms": q(0.99), "maxMs": self.lag_ms.max(),
            "maxBatchTimeoutMs": 1000,
        })
    }
}

async fn probe(
    http: reqwest::Client,
    base: String,
    user: String,
    session: String,
) -> Result<(String, u64), String> {
    let id = chat_turn(&http, &format!("{base}/api/chat"), &user, &session, 0)
        .await?
        .ok_or("no id")?;
    let answered = Instant::now();
    let url = format!("{base}/api/sessions/{session}/messages");
    while answered.elapsed() < Duration::from_secs(60) {
        let r = http
            .get(&url)
            .header("X-Dev-User", &user)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == id.as_str()))
        {
            return Ok((id, answered.elapsed().as_millis() as u64));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{id} not readable after 60 s"))
}

pub async fn run(w: &Workers, params: &Params, rate: f64) -> anyhow::Result<LagReport> {
    let duration = Duration::from_secs(params.lag_seconds);
    let load_sessions = Arc::new(sessions(w, "lag", 32).await);
    let probes = (params.lag_seconds as f64 * PROBE_RATE) as usize;
    let probe_sessions = sessions(w, "probe", probes).await;
    let (http, url) = (w.http.clone(), w.url("/api/chat"));
    let background = tokio::spawn(open_loop(rate, duration, move |i| {
        let (http, url, sessions) = (http.clone(), url.clone(), load_sessions.clone());
        async move {
            let (user, session) = &sessions[i % sessions.len()];
            chat_turn(&http, &url, user, session, i).await
        }
    }));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for (i, (user, session)) in probe_sessions.into_iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / PROBE_RATE);
        tokio::time::sleep_until(due.into()).await;
        tasks.push(tokio::spawn(probe(
            w.http.clone(),
            w.base.clone(),
            user,
            session,
        )));
    }
    let mut lag_ms = Histogram::<u64>::new_with_bounds(1, 600_000, 3).unwrap();
    let mut answered = Vec::new();
    let mut probes_lost = 0;
    for t in tasks {
        match t.await? {
            Ok((id, ms)) => {
                lag_ms.record(ms.max(1))?;
                answered.push(id);
            }
            Err(e) => {
                eprintln!("lag probe: {e}");
                probes_lost += 1;
            }
        }
    }
    let mut background = background.await?;
    answered.append(&mut background.kept);
    eprintln!(
        "lag: background {:.0} rps (target {rate:.0}); probe lag p50 {} ms p99 {} ms",
        background.rps(),
        lag_ms.value_at_quantile(0.5),
        lag_ms.value_at_quantile(0.99)
    );
    if probes_lost > 0 {
        anyhow::bail!("{probes_lost} probe turns were never readable");
    }
    Ok(LagReport {
        rate,
        background,
        lag_ms,
        probes_lost,
        answered,
    })
}
