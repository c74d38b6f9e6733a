//! Fixed connections (a closed loop): each connection sends its next request when the last
//! one is answered. This is how the cost of each step shows at 1 connection (latency with
//! nothing queued) and at 16 (the machine busy): the floor, the chat Worker with each way of
//! signing in, and the inline-write Worker. On 2 cores a closed loop's latency is mostly its
//! throughput, so the capacity scenario (an open loop) is the one that gives rates.
//!
//! Each variant runs alone: run after run, every variant is started afresh, measured, checked
//! and stopped, in turn. Two `wrangler dev` processes of the very same configuration were
//! seen to differ by 40% in throughput on this machine, so every figure is the median over
//! separate processes, and no variant runs beside another.

use crate::load::{closed_loop, median, LoadResult};
use crate::target::{Instance, Spec, Target};
use crate::Params;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub fn summary(runs: &[LoadResult]) -> Value {
    let med = |f: &dyn Fn(&LoadResult) -> f64| median(runs.iter().map(f).collect());
    json!({
        "rps": med(&LoadResult::rps),
        "p50Ms": med(&|r| r.quantile_ms(0.5)),
        "p90Ms": med(&|r| r.quantile_ms(0.9)),
        "p99Ms": med(&|r| r.quantile_ms(0.99)),
        "errors": runs.iter().map(|r| r.errors).sum::<usize>(),
        "runs": runs.iter().map(LoadResult::to_json).collect::<Vec<_>>(),
    })
}

/// Every variant, started `params.runs` times in turn, each time measured at every
/// connection count on each of its targets.
pub async fn run(specs: &[Spec], params: &Params) -> anyhow::Result<Value> {
    let duration = Duration::from_secs_f64(params.seconds);
    let mut results: BTreeMap<(usize, &'static str), Vec<LoadResult>> = BTreeMap::new();
    for run in 0..params.runs {
        for spec in specs {
            let instance = Instance::start(spec, params.players, params.sessions).await?;
            for &connections in &params.concurrency {
                for t in targets_of(&instance) {
                    let request = t.requester();
                    let mut r = closed_loop(connections, duration, move |i| request(i)).await;
                    eprintln!(
                        "connections {connections} run {run} {}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms errors {}",
                        t.label,
                        r.rps(),
                        r.quantile_ms(0.5),
                        r.quantile_ms(0.99),
                        r.errors
                    );
                    anyhow::ensure!(
                        r.errors == 0,
                        "{} failed {} requests at {connections} connections",
                        t.label,
                        r.errors
                    );
                    if t.chat {
                        t.instance.keep(&mut r.kept);
                        t.instance.settle().await;
                    }
                    results.entry((connections, t.label)).or_default().push(r);
                }
            }
            instance.check().await?;
        }
    }
    let mut rows = Vec::new();
    for &connections in &params.concurrency {
        let mut row = json!({ "connections": connections });
        for ((c, label), runs) in &results {
            if *c == connections {
                row[*label] = summary(runs);
            }
        }
        rows.push(row);
    }
    Ok(Value::Array(rows))
}

/// What each variant is asked: the production variant also gives the floor.
fn targets_of(instance: &Instance) -> Vec<Target<'_>> {
    let chat = |label| Target {
        label,
        instance,
        chat: true,
    };
    match instance.name {
        "before" => vec![chat("chatBefore")],
        "webcrypto" => vec![chat("chatWebCrypto")],
        "after" => vec![
            Target {
                label: "floor",
                instance,
                chat: false,
            },
            chat("chat"),
        ],
        "dev" => vec![chat("chatDev")],
        _ => vec![chat("inline")],
    }
}
