//! Persistence lag: under an open-loop chat load at half the pipeline's capacity, the time
//! from each answer to its turn being committed in D1. Every turn of the load is a probe:
//! the bench notes when each answer arrived, and a reader polls the local D1 files every
//! 20 ms for the answered turns not seen yet, by message id (so a lag is known to within
//! that), noting when each turn appeared.

use crate::load::open_loop;
use crate::target::Target;
use crate::Params;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

pub async fn run(t: &Target<'_>, params: &Params, rate: f64) -> anyhow::Result<Value> {
    let probes = params.lag_probes;
    let seconds = (probes as f64 / rate).ceil().max(params.lag_seconds) + 1.0;
    let answered_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let files: Vec<rusqlite::Connection> = t
        .instance
        .w
        .shards()
        .into_iter()
        .map(|b| t.instance.w.shard(b))
        .collect();
    // D1's local files are in WAL mode, where a reader never blocks the writer; recorded.
    let journal: String = files
        .first()
        .map(|db| db.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .transpose()?
        .unwrap_or_default();
    // The reader: each answered turn not seen yet, looked up by its message id (the primary
    // key) in every database. A turn committed before its answer was read is found at the
    // first poll after the answer: no lag, within the poll's resolution.
    let reader = {
        let (seen_at, answered_at, done) = (seen_at.clone(), answered_at.clone(), done.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let pending: Vec<String> = {
                    let seen = seen_at.lock().unwrap();
                    answered_at
                        .lock()
                        .unwrap()
                        .keys()
                        .filter(|id| !seen.contains_key(*id))
                        .cloned()
                        .collect()
                };
                if !pending.is_empty() {
                    let ids = serde_json::to_string(&pending)?;
                    for db in &files {
                        let mut st = db.prepare_cached(
                            "SELECT id FROM chat_messages WHERE id IN (SELECT value FROM json_each(?1))",
                        )?;
                        let rows: Vec<String> = st
                            .query_map([&ids], |r| r.get(0))?
                            .collect::<Result<_, _>>()?;
                        let now = Instant::now();
                        let mut seen = seen_at.lock().unwrap();
                        for id in rows {
                            seen.entry(id).or_insert(now);
                        }
                    }
                }
                std::thread::sleep(POLL);
            }
            Ok(())
        })
    };

    let request = t.requester();
    let stamps = answered_at.clone();
    let mut background = open_loop(rate, Duration::from_secs_f64(seconds), move |i| {
        let (request, stamps) = (request.clone(), stamps.clone());
        async move {
            let out = request(i).await;
            if let Ok(Some(id)) = &out {
                stamps.lock().unwrap().insert(id.clone(), Instant::now());
            }
            out
        }
    })
    .await;
    anyhow::ensure!(
        background.errors == 0,
        "lag load: {} requests failed",
        background.errors
    );
    t.instance.keep(&mut background.kept);
    let expected = answered_at.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen_at.lock().unwrap().len() < expected && Instant::now() < deadline {
        if !t.instance.w.running() {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            anyhow::bail!(
                "lag: wrangler dev stopped before every turn was stored:\n{}",
                t.instance.w.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.await??;

    let answered = answered_at.lock().unwrap();
    let seen = seen_at.lock().unwrap();
    let mut lag_ms = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut never = 0;
    for (id, at) in answered.iter() {
        match seen.get(id) {
            // A turn can be committed before its answer is read (the queue send precedes the
            // answer): that is no lag at all.
            Some(s) => {
                lag_ms.record((s.saturating_duration_since(*at).as_millis() as u64).max(1))?
            }
            None => never += 1,
        }
    }
    anyhow::ensure!(
        never == 0,
        "lag: {never} answered turns never appeared in D1"
    );
    anyhow::ensure!(
        lag_ms.len() as usize >= probes,
        "lag: {} probes, fewer than the {probes} asked",
        lag_ms.len()
    );
    let q = |p: f64| lag_ms.value_at_quantile(p);
    eprintln!(
        "lag at {rate:.0}/s: {} probes, p50 {} ms p99 {} ms max {} ms; chat p99 {:.1} ms",
        lag_ms.len(),
        q(0.5),
        q(0.99),
        lag_ms.max(),
        background.quantile_ms(0.99)
    );
    Ok(json!({
        "rate": rate,
        "seconds": seconds,
        "load": background.to_json(),
        "probes": lag_ms.len(),
        "pollMs": POLL.as_millis() as u64,
        "journalMode": journal,
        "p50Ms": q(0.5), "p90Ms": q(0.9), "p99Ms": q(0.99), "maxMs": lag_ms.max(),
        "maxBatchTimeoutMs": 1000,
    }))
}
