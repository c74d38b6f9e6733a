//! Live turns, measured in one run beside the floor and the plain HTTP turn:
//!
//! - a turn over the session's socket at 1 player and 16 (one socket each), a closed loop
//!   like the fixed-connections scenario, against `GET /healthz` (the floor) and plain
//!   `POST /api/chat` on the same instance (the production build, Privy sign-in);
//! - the time to the first piece of the reply against the time to the whole answer, with
//!   the offline engine writing a piece every `PIECE_MS`;
//! - the load generator checked against `wrk` on the floor at the same connections, so the
//!   ratios are known to measure the Workers and not the generator.
//!
//! Every answered turn is kept for the instance's final check: stored once, totals equal
//! to the ledger.

use crate::load::{closed_loop, median, LoadResult};
use crate::target::{Instance, Spec, Target};
use crate::Params;
use e2e::live::Live;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The offline engine's pace in the time-to-first-piece measurement.
pub const PIECE_MS: u64 = 20;

/// Opens one socket per session of the first `n` sessions.
pub async fn sockets(instance: &Instance, n: usize) -> anyhow::Result<Vec<Arc<Mutex<Live>>>> {
    let mut out = Vec::new();
    for (player, session) in instance.sessions.iter().take(n) {
        let live = Live::open_as(
            &instance.w,
            (player.header.0, &player.header.1),
            session,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("a live socket: {e}"))?;
        out.push(Arc::new(Mutex::new(live)));
    }
    anyhow::ensure!(
        out.len() == n,
        "only {} sessions for {n} sockets",
        out.len()
    );
    Ok(out)
}

/// One turn over `socket`: the answer's message id, and when the first piece and the end
/// came (from the send).
pub async fn socket_turn(
    socket: &Mutex<Live>,
    i: usize,
) -> Result<(String, Duration, Duration), String> {
    let mut live = socket.lock().await;
    let key = format!("live-{i}-{}", uuid::Uuid::now_v7());
    let sent = Instant::now();
    live.send(&json!({ "type": "turn", "key": key, "message": format!("hello there, turn {i}") }))
        .await;
    let mut first = None;
    loop {
        let frame = live
            .next(Duration::from_secs(30))
            .await
            .ok_or("the socket closed or went quiet")?;
        if frame["key"] != json!(key) {
            continue;
        }
        match frame["type"].as_str() {
            Some("delta") => {
                first.get_or_insert_with(|| sent.elapsed());
            }
            Some("done") => {
                let end = sent.elapsed();
                let id = frame["answer"]["messageId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                return Ok((id, first.unwrap_or(end), end));
            }
            Some("error") => return Err(frame["error"]["code"].to_string()),
            _ => {}
        }
    }
}

fn summary(runs: &[LoadResult]) -> Value {
    let med = |f: &dyn Fn(&LoadResult) -> f64| median(runs.iter().map(f).collect());
    json!({
        "rps": med(&LoadResult::rps),
        "p50Ms": med(&|r| r.quantile_ms(0.5)),
        "p90Ms": med(&|r| r.quantile_ms(0.9)),
        "p99Ms": med(&|r| r.quantile_ms(0.99)),
        "errors": runs.iter().map(|r| r.errors).sum::<usize>(),
    })
}

/// `wrk` on `url` at `connections` for `seconds`: requests per second and the p50, in ms.
fn wrk(url: &str, connections: usize, seconds: f64) -> Option<Value> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", seconds.ceil() as u64),
            "--latency",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p50 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("50%"))
        .and_then(|v| duration_ms(v.trim()))?;
    Some(json!({ "rps": rps, "p50Ms": p50 }))
}

/// `wrk`'s durations: `812.00us`, `2.10ms`, `1.02s`.
fn duration_ms(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

pub async fn run(spec: &Spec, params: &Params) -> anyhow::Result<Value> {
    let duration = Duration::from_secs_f64(params.seconds);
    let most = params.concurrency.iter().copied().max().unwrap_or(1);
    // One session per player: each socket is its own player's, as in a game. A socket here
    // sends far more than a player's frames.
    let unlimited = || vec![("LIVE_FRAME_LIMIT", "1000000".to_string())];
    let instance = Instance::start_with(spec, params.players.max(most), 1, unlimited()).await?;
    let floor = Target {
        label: "floor",
        instance: &instance,
        chat: false,
    };
    let chat = Target {
        label: "chat",
        instance: &instance,
        chat: true,
    };
    let mut rows = Vec::new();
    for &connections in &params.concurrency {
        let (mut floors, mut chats, mut lives) = (Vec::new(), Vec::new(), Vec::new());
        let open = sockets(&instance, connections).await?;
        for run in 0..params.runs {
            let request = floor.requester();
            floors.push(closed_loop(connections, duration, move |i| request(i)).await);
            let request = chat.requester();
            let mut r = closed_loop(connections, duration, move |i| request(i)).await;
            instance.keep(&mut r.kept);
            chats.push(r);
            let socks = open.clone();
            let mut r = closed_loop(connections, duration, move |i| {
                let socket = socks[i % socks.len()].clone();
                async move { socket_turn(&socket, i).await.map(|(id, _, _)| Some(id)) }
            })
            .await;
            instance.keep(&mut r.kept);
            eprintln!(
                "live {connections} run {run}: floor {:.0}/s p50 {:.2} ms, chat {:.0}/s p50 {:.2} ms, socket {:.0}/s p50 {:.2} ms, errors {}",
                floors[run].rps(), floors[run].quantile_ms(0.5), chats[run].rps(), chats[run].quantile_ms(0.5),
                r.rps(), r.quantile_ms(0.5), r.errors
            );
            anyhow::ensure!(
                r.errors == 0 && chats[run].errors == 0,
                "turns failed at {connections}"
            );
            lives.push(r);
            instance.settle().await;
        }
        let url = instance.w.url("/healthz");
        let wrk = wrk(&url, connections, params.seconds);
        rows.push(json!({
            "connections": connections,
            "floor": summary(&floors),
            "chat": summary(&chats),
            "socket": summary(&lives),
            "wrkFloor": wrk,
        }));
        for s in open {
            let live = Arc::try_unwrap(s).ok().map(Mutex::into_inner);
            if let Some(live) = live {
                live.close().await;
            }
        }
    }
    instance.check().await?;
    drop(instance);

    // Time to the first piece, with the engine writing a piece every PIECE_MS.
    let mut vars = unlimited();
    vars.push(("OFFLINE_STREAM_MS", PIECE_MS.to_string()));
    let paced = Instance::start_with(spec, 1, 1, vars).await?;
    let turns = if params.quick { 5 } else { 200 };
    let socket = sockets(&paced, 1).await?.remove(0);
    let (mut firsts, mut ends, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..turns {
        let (id, first, end) = socket_turn(&socket, i)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        ids.push(id);
        firsts.push(first.as_secs_f64() * 1000.0);
        ends.push(end.as_secs_f64() * 1000.0);
    }
    paced.keep(&mut ids);
    let request = Target {
        label: "floor",
        instance: &paced,
        chat: false,
    }
    .requester();
    let paced_floor = closed_loop(1, duration, move |i| request(i)).await;
    paced.check().await?;
    let pct = |xs: &[f64], q: f64| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    Ok(json!({
        "connections": rows,
        "firstPiece": {
            "pieceMs": PIECE_MS,
            "turns": turns,
            "firstP50Ms": pct(&firsts, 0.5),
            "firstP99Ms": pct(&firsts, 0.99),
            "wholeP50Ms": pct(&ends, 0.5),
            "wholeP99Ms": pct(&ends, 0.99),
            "floorP50Ms": paced_floor.quantile_ms(0.5),
        },
        "generator": "the bench's own closed loop (tokio, reqwest, tokio-tungstenite), checked against wrk 4.1 on the floor",
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_durations_read() {
        assert_eq!(super::duration_ms("812.00us"), Some(0.812));
        assert_eq!(super::duration_ms("2.10ms"), Some(2.1));
        assert_eq!(super::duration_ms("1.50s"), Some(1500.0));
        assert_eq!(super::duration_ms("x"), None);
    }
}
