//! Capacity: open-loop load at fixed arrival rates, stepped up: the floor and the pipeline
//! one after another at each rate on the production variant, then the inline-write Worker
//! at the same rates, alone. Latency counts from each
//! request's intended send time (`load::open_loop`), so queueing is never hidden.
//!
//! A rate passes when every request got its 200, the p99 stayed within the bound, and, for
//! the Workers that store turns, everything answered was stored by `max_batch_timeout` plus
//! a second and a half after the step: the consumer kept up at the same time. A target stops
//! after two failed rates in a row; its capacity is the highest rate that passed.

use crate::load::{open_loop, LoadResult};
use crate::target::Target;
use crate::Params;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long after a step the turns it answered may take to be stored (max_batch_timeout 1 s,
/// plus the batch's write and the poll).
pub const DRAIN_GRACE: Duration = Duration::from_millis(2500);

struct Step {
    result: LoadResult,
    /// Time from the step's end until every answered turn was stored (chat targets).
    drain: Option<Duration>,
    passed: bool,
}

fn step_json(rate: f64, s: &Step) -> Value {
    let mut v = s.result.to_json();
    v["rate"] = json!(rate);
    v["passed"] = json!(s.passed);
    v["drainMs"] = json!(s.drain.map(|d| d.as_millis() as u64));
    v
}

async fn step(t: &Target<'_>, rate: f64, params: &Params) -> Step {
    let request = t.requester();
    let mut result = open_loop(
        rate,
        Duration::from_secs_f64(params.step_seconds),
        move |i| request(i),
    )
    .await;
    let mut drain = None;
    let mut drained = true;
    if t.chat {
        t.instance.keep(&mut result.kept);
        let ended = Instant::now();
        let expected = t.instance.answered_count();
        drained = crate::check::wait_drained(&t.instance.w, expected, DRAIN_GRACE).await;
        // Whatever happened, the next step starts with nothing waiting.
        t.instance.settle().await;
        drain = Some(ended.elapsed());
    }
    let passed = result.errors == 0 && result.quantile_ms(0.99) <= params.p99_bound_ms && drained;
    eprintln!(
        "capacity {} at {rate:.0}/s: {} ok {} errors, p50 {:.1} ms p99 {:.1} ms, drained in {:?}: {}",
        t.label,
        result.ok,
        result.errors,
        result.quantile_ms(0.5),
        result.quantile_ms(0.99),
        drain,
        if passed { "pass" } else { "FAIL" }
    );
    Step {
        result,
        drain,
        passed,
    }
}

/// The rates of the run: `start`, then ×`growth`, at most `max_steps` of them.
pub fn rates(params: &Params) -> Vec<f64> {
    (0..params.max_steps)
        .map(|k| (params.start_rate * params.growth.powi(k as i32)).round())
        .collect()
}

pub async fn run(targets: &[Target<'_>], params: &Params) -> anyhow::Result<Value> {
    // A fresh process is slower for its first seconds (code not yet optimized, caches
    // cold): warm each target at the first rate, unmeasured, before the steps.
    for t in targets {
        let request = t.requester();
        let mut warm = open_loop(params.start_rate, Duration::from_secs(2), move |i| {
            request(i)
        })
        .await;
        if t.chat {
            t.instance.keep(&mut warm.kept);
            t.instance.settle().await;
        }
    }
    let mut steps: Vec<Vec<Value>> = targets.iter().map(|_| Vec::new()).collect();
    let mut failures_in_a_row = vec![0usize; targets.len()];
    let mut best: Vec<Option<f64>> = vec![None; targets.len()];
    for rate in rates(params) {
        if failures_in_a_row.iter().all(|f| *f >= 2) {
            break;
        }
        for (k, t) in targets.iter().enumerate() {
            if failures_in_a_row[k] >= 2 {
                continue;
            }
            let s = step(t, rate, params).await;
            if s.passed {
                failures_in_a_row[k] = 0;
                best[k] = Some(best[k].map_or(rate, |b: f64| b.max(rate)));
            } else {
                failures_in_a_row[k] += 1;
            }
            steps[k].push(step_json(rate, &s));
        }
    }
    let mut out = json!({
        "p99BoundMs": params.p99_bound_ms,
        "stepSeconds": params.step_seconds,
        "drainGraceMs": DRAIN_GRACE.as_millis() as u64,
    });
    for (k, t) in targets.iter().enumerate() {
        out[t.label] = json!({ "highestRate": best[k], "steps": steps[k] });
    }
    Ok(out)
}
