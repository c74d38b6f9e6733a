//! D1 as production pays it. The local D1 answers in microseconds, in the same process; a
//! deployed D1 is a network round trip away, and that is where the pipeline's promise (the
//! chat never waits on D1) shows. Both designs run with every D1 call made `d1_delay_ms`
//! late (`FAULTS=slow=MS`: the chat Worker's and the consumer's local builds, and the
//! inline-write Worker, which is never deployed), and each is loaded at 1 and 16
//! connections (a closed loop, medians of `runs` loads), after every session has played a
//! turn (an ongoing session's actor is warm). p50 and p99 of each; turns stored once, as
//! every scenario checks.

use crate::load::closed_loop;
use crate::target::{chat_turn_keyed, turn_key, Instance, Spec};
use crate::Params;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

use bench::SLOW_D1_CONNECTIONS as CONNECTIONS;

async fn load(instance: &Arc<Instance>, params: &Params) -> anyhow::Result<Value> {
    let mut out = Map::new();
    // Every session plays once first: its actor is open, as an ongoing session's is.
    let mut kept = instance.play_every_session(1, 4, false).await?;
    instance.keep(&mut kept);
    for connections in CONNECTIONS {
        // Medians of `runs` loads, as the fixed-connections scenario takes them: a CPU-bound
        // closed loop on 2 cores spreads widely from one load to the next.
        let mut runs = Vec::new();
        for _ in 0..params.runs {
            let i = instance.clone();
            let http = instance.w.http.clone();
            let url = instance.w.url("/api/chat");
            let mut r = closed_loop(
                connections,
                Duration::from_secs_f64(params.seconds),
                move |n| {
                    let (http, url, i) = (http.clone(), url.clone(), i.clone());
                    async move {
                        let (player, session) = &i.sessions[n % i.sessions.len()];
                        // The chat's turns keyed, as the page sends them; the inline design
                        // has no keys and ignores the header.
                        let key = turn_key();
                        chat_turn_keyed(&http, &url, player, session, n, Some(&key)).await
                    }
                },
            )
            .await;
            anyhow::ensure!(
                r.errors == 0,
                "{} at {connections}: {} turns failed",
                instance.name,
                r.errors
            );
            eprintln!(
                "slow D1 {} at {connections}: p50 {:.1} ms, p99 {:.1} ms",
                instance.name,
                r.quantile_ms(0.5),
                r.quantile_ms(0.99)
            );
            instance.keep(&mut r.kept);
            runs.push(r);
        }
        out.insert(connections.to_string(), crate::connections::summary(&runs));
    }
    instance.settle().await;
    instance.check().await?;
    Ok(Value::Object(out))
}

/// The chat (local build: the switch is there) and the inline design, each with D1 late.
pub async fn run(dev: &Spec, inline: &Spec, params: &Params) -> anyhow::Result<Value> {
    let faults = format!("slow={}", params.d1_delay_ms);
    let chat = Arc::new(
        Instance::start_full(
            dev,
            params.players,
            1,
            vec![("FAULTS", faults.clone())],
            vec![("FAULTS", faults.clone())],
        )
        .await?,
    );
    let chat_figures = load(&chat, params).await?;
    drop(chat);
    let inline = Arc::new(
        Instance::start_full(
            inline,
            params.players,
            1,
            vec![("FAULTS", faults.clone())],
            vec![("FAULTS", faults)],
        )
        .await?,
    );
    let inline_figures = load(&inline, params).await?;
    // The switch took: an inline turn makes two D1 calls, each made late, so none answers
    // sooner than both delays (a floor, never a timing goal: a slow machine only adds).
    let fastest_ms = inline_figures["1"]["p50Ms"].as_f64().unwrap_or(0.0);
    anyhow::ensure!(
        fastest_ms >= 2.0 * f64::from(params.d1_delay_ms),
        "FAULTS=slow={} did not reach the inline Worker's D1 calls: p50 {fastest_ms} ms",
        params.d1_delay_ms
    );
    Ok(json!({
        "delayMs": params.d1_delay_ms,
        "seconds": params.seconds,
        "runs": params.runs,
        "chat": chat_figures,
        "inline": inline_figures,
    }))
}
