//! The load generator. Requests go to loopback only (the Workers under `wrangler dev`), and
//! every loop is bounded twice: by time and by a request count.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Hard cap on requests of one measurement, whatever its duration.
pub const MAX_REQUESTS: usize = 2_000_000;

/// What one measurement saw.
pub struct LoadResult {
    pub latency_us: Histogram<u64>,
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Bodies of successful answers, when the caller keeps them (message ids).
    pub kept: Vec<String>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.ok + self.errors, "ok": self.ok, "errors": self.errors, "seconds": self.elapsed.as_secs_f64(),
            "rps": self.rps(), "p50Ms": self.quantile_ms(0.5), "p90Ms": self.quantile_ms(0.9),
            "p99Ms": self.quantile_ms(0.99), "p999Ms": self.quantile_ms(0.999),
        })
    }
}

/// One request: Ok(Some(kept)) / Ok(None) on success, Err on any failure (non-2xx included).
pub type Outcome = Result<Option<String>, String>;

type Shared = Arc<Mutex<LoadResult>>;

fn shared() -> Shared {
    Arc::new(Mutex::new(LoadResult {
        latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).unwrap(),
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        kept: Vec::new(),
    }))
}

/// Times one request from `since` and records its outcome.
async fn timed<Fut: Future<Output = Outcome>>(shared: &Shared, since: Instant, request: Fut) {
    let outcome = request.await;
    let us = since.elapsed().as_micros() as u64;
    let mut r = shared.lock().await;
    match outcome {
        Ok(kept) => {
            r.ok += 1;
            let _ = r.latency_us.record(us.max(1));
            r.kept.extend(kept);
        }
        Err(_) => r.errors += 1,
    }
}

fn finish(shared: Shared, started: Instant) -> LoadResult {
    let mut r = Arc::try_unwrap(shared)
        .ok()
        .expect("all requests ended")
        .into_inner();
    r.elapsed = started.elapsed();
    r
}

/// Runs `request` from `concurrency` loops for `duration`.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, request: F) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let shared = shared();
    let started = Instant::now();
    let deadline = started + duration;
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(MAX_REQUESTS));
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (request, shared, budget) = (request.clone(), shared.clone(), budget.clone());
            tokio::spawn(async move {
                let mut i = worker;
                while Instant::now() < deadline
                    && budget.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0
                {
                    timed(&shared, Instant::now(), request(i)).await;
                    i += concurrency;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    finish(shared, started)
}

/// Sends `request` at `rate` per second for `duration`: an open loop, one task per request,
/// each sent at its intended time whatever the earlier ones are doing. Latency counts from
/// the intended send time, not from when the task got to run, so a stalled generator or a
/// slow server cannot hide its queueing (coordinated omission).
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, request: F) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let request = Arc::new(request);
    let shared = shared();
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let total = ((duration.as_secs_f64() * rate).round() as usize).clamp(1, MAX_REQUESTS);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let intended = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(intended.into()).await;
        let (request, shared) = (request.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            timed(&shared, intended, request(i)).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    finish(shared, started)
}

/// `players` players, each sending `request` once every `pace` (start to start) for
/// `duration`, as people type: player `p`'s `k`-th request is number `p + k * players`, so
/// `i % players` names the player. Each starts at its own offset within the first `pace`, so
/// the load is steady at about `players / pace` per second, and the turns a consumer batch
/// gathers come from different players. A player whose answer takes longer than `pace`
/// sends its next at once. Latency counts from each request's intended time.
pub async fn paced_loop<F, Fut>(
    players: usize,
    pace: Duration,
    duration: Duration,
    request: F,
) -> LoadResult
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let shared = shared();
    let started = Instant::now();
    let deadline = started + duration;
    let players = players.max(1);
    let tasks: Vec<_> = (0..players)
        .map(|player| {
            let (request, shared) = (request.clone(), shared.clone());
            tokio::spawn(async move {
                let mut intended = started + pace.mul_f64(player as f64 / players as f64);
                let mut i = player;
                while intended < deadline && i < MAX_REQUESTS {
                    tokio::time::sleep_until(intended.into()).await;
                    timed(&shared, intended, request(i)).await;
                    intended = (intended + pace).max(Instant::now());
                    i += players;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    finish(shared, started)
}

/// The median of some numbers (the middle of several runs on a noisy machine).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return f64::NAN;
    }
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}
