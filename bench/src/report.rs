//! A run's figures as `bench/README.md` shows them, the goals they are judged against, and the
//! machine and versions recorded with them.

use serde_json::{json, Value};
use std::process::Command;

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(e2e::root())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpuModel": model,
        "memoryGiB": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "os": first_line("uname", &["-sr"]),
    })
}

pub fn versions() -> Value {
    json!({
        "rustc": first_line("rustc", &["--version"]),
        "wrangler": first_line("node_modules/.bin/wrangler", &["--version"]),
        "workerd": first_line("node_modules/.bin/workerd", &["--version"]),
        "node": first_line("node", &["--version"]),
        "worker": "0.8.7",
    })
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

/// A figure as `bench/README.md` writes it: whole above 100, else two decimals.
pub fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The row of the fixed-connections scenario at `connections`.
fn at(run: &Value, connections: u64) -> &Value {
    run["connections"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["connections"] == connections))
        .unwrap_or(&Value::Null)
}

/// Each goal of the issue, measured in this run: what, the measured ratio, the bound, met.
pub fn goals(run: &Value) -> Value {
    let cap = |t: &str| num(&run["capacity"][t]["highestRate"]);
    let c1 = at(run, 1);
    let c16 = at(run, 16);
    let lag_bound = num(&run["lag"]["maxBatchTimeoutMs"]) + 1000.0;
    let goal = |name: &str, measured: Option<f64>, bound: f64, at_least: bool| {
        let met = measured.is_some_and(|m| if at_least { m >= bound } else { m <= bound });
        json!({ "goal": name, "measured": measured, "bound": bound, "atLeast": at_least, "met": met })
    };
    json!([
        goal(
            "pipeline capacity / floor capacity",
            ratio(cap("chat"), cap("floor")),
            0.6,
            true
        ),
        goal(
            "pipeline capacity / inline-write capacity",
            ratio(cap("chat"), cap("inline")),
            4.0,
            true
        ),
        goal(
            "chat p99 / inline-write p99 at 16 connections",
            ratio(num(&c16["chat"]["p99Ms"]), num(&c16["inline"]["p99Ms"])),
            0.4,
            false
        ),
        goal(
            "chat p50 / floor p50 at 1 connection",
            ratio(num(&c1["chat"]["p50Ms"]), num(&c1["floor"]["p50Ms"])),
            1.3,
            false
        ),
        goal(
            "lag p99 at half the pipeline's capacity, ms",
            run["lag"]["p99Ms"].as_f64(),
            lag_bound,
            false
        ),
        goal(
            "Privy sign-in throughput / dev header throughput at 16 connections",
            ratio(num(&c16["chat"]["rps"]), num(&c16["chatDev"]["rps"])),
            0.9,
            true
        ),
        goal(
            "socket turn p50 / floor p50 at 1 player",
            ratio(
                num(&live_at(run, 1)["socket"]["p50Ms"]),
                num(&live_at(run, 1)["floor"]["p50Ms"])
            ),
            1.3,
            false
        ),
        goal(
            "socket turns/s at 16 players / floor req/s at 16 connections",
            ratio(
                num(&live_at(run, 16)["socket"]["rps"]),
                num(&live_at(run, 16)["floor"]["rps"])
            ),
            0.6,
            true
        ),
        goal(
            "first piece p50 − floor p50 − one piece's pause, ms",
            first_piece_margin(run),
            5.0,
            false
        ),
        goal(
            "WebSocket $ per million turns, as production bills it",
            per_million(run, "ws"),
            10.0,
            false
        ),
        goal(
            "keyed plain HTTP $ per million turns, as production bills it",
            per_million(run, "http"),
            11.0,
            false
        ),
        goal(
            "the dearest keyed transport (HTTP, SSE, socket) $ / inline-write $ per million turns",
            ["http", "sse", "ws"]
                .iter()
                .filter_map(|d| cost_ratio(run, d))
                .reduce(f64::max),
            1.3,
            false
        ),
        goal(
            "rows written per socket turn, D1 and actor (each setAlarm one, the alarm's later ones too)",
            rows_written(run, "ws"),
            AGENT_SDK_ROWS_PER_TURN / 3.0,
            false
        ),
        goal(
            "chat p99 / inline-write p99 at 16 connections, every D1 call made late",
            ratio(
                num(&run["slowD1"]["chat"]["16"]["p99Ms"]),
                num(&run["slowD1"]["inline"]["16"]["p99Ms"])
            ),
            0.5,
            false
        ),
        goal(
            "WebSocket CPU per turn (its setup shares left out) / CPU of one floor request",
            ratio(
                num(turn_only(&run["costs"]["ws"])),
                num(&run["costs"]["floor"]["perRequest"]["cpuMs"])
            ),
            1.5,
            false
        ),
    ])
}

/// Billed rows written per turn by Cloudflare's Agents SDK chat agent (`AIChatAgent`,
/// @cloudflare/ai-chat 0.12.2 on agents 0.32.0, a mock model streaming 6 chunks, its default
/// SQLite persistence), measured for issue 28: 28 SQL rows, 5 key-value rows and 5
/// `setAlarm`s a turn, the same at turn 2 and turn 40.
pub const AGENT_SDK_ROWS_PER_TURN: f64 = 38.0;

/// A design's dollars per million turns at list price.
fn per_million(run: &Value, design: &str) -> Option<f64> {
    let prices = crate::cost::Prices::load().ok()?;
    crate::cost::design_per_million(run, design, &prices)
}

/// A design's CPU for the turn alone: without the shares of a session start and a socket's
/// setup that its priced turn carries (runs before those shares have only `perTurn`).
fn turn_only(design: &Value) -> &Value {
    if design["turnOnly"].is_object() {
        &design["turnOnly"]["cpuMs"]
    } else {
        &design["perTurn"]["cpuMs"]
    }
}

/// A design's rows written per turn, D1's and the actor's together.
fn rows_written(run: &Value, design: &str) -> Option<f64> {
    let t = &run["costs"][design]["perTurn"];
    t.is_object().then(|| {
        num(&t["d1RowsWritten"])
            + num(&t["actorRowsWritten"])
            + t["actorRowsOwed"].as_f64().unwrap_or(0.0)
    })
}

/// A design's dollars per million turns over the inline-write design's, at list price.
fn cost_ratio(run: &Value, design: &str) -> Option<f64> {
    ratio(per_million(run, design)?, per_million(run, "inline")?)
}

/// The row of the live scenario at `connections`.
fn live_at(run: &Value, connections: u64) -> &Value {
    run["live"]["connections"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["connections"] == connections))
        .unwrap_or(&Value::Null)
}

/// How far the first piece comes after the floor and one piece's pause.
fn first_piece_margin(run: &Value) -> Option<f64> {
    let f = &run["live"]["firstPiece"];
    let m = num(&f["firstP50Ms"]) - num(&f["floorP50Ms"]) - num(&f["pieceMs"]);
    m.is_finite().then_some(m)
}

fn pair(v: &Value) -> String {
    format!("{} / {}", f(&v["p50Ms"]), f(&v["p99Ms"]))
}

/// The text of a run in `bench/README.md` (between its `bench:start` and `bench:end` marks).
pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let p = &r["parameters"];
    s += &format!(
        "Run {} on {} CPUs ({}), {} GiB, {}; wrangler {}, {}. Fixed connections: medians of {} runs of {} s. Capacity: steps of {} s from {}/s, ×{}, p99 bound {} ms.\n\n",
        r["date"].as_str().unwrap_or(""),
        m["cpus"],
        m["cpuModel"].as_str().unwrap_or(""),
        m["memoryGiB"],
        m["os"].as_str().unwrap_or(""),
        r["versions"]["wrangler"].as_str().unwrap_or(""),
        r["versions"]["workerd"].as_str().unwrap_or(""),
        p["runs"],
        p["seconds"],
        p["stepSeconds"],
        p["startRate"],
        p["growth"],
        p["p99BoundMs"],
    );
    if let Some(costs_date) = r["costsDate"].as_str() {
        s += &format!(
            "The cost scenario (what a turn costs) was run again on {costs_date} with `--costs-only --merge`, after a change that moved only what a turn costs.\n\n"
        );
    }

    s += "**Sign-in** (POST /api/chat on the deployable build with Privy ES256 tokens, beside the local build's development header)\n\n";
    s += "| connections | p50 ms: wasm, no cache | WebCrypto, no cache | WebCrypto + cache | dev header | req/s: wasm, no cache | WebCrypto, no cache | WebCrypto + cache | dev header | cache / dev req/s |\n";
    s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in r["connections"].as_array().into_iter().flatten() {
        let v = |t: &str, k: &str| f(&row[t][k]);
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row["connections"],
            v("chatBefore", "p50Ms"),
            v("chatWebCrypto", "p50Ms"),
            v("chat", "p50Ms"),
            v("chatDev", "p50Ms"),
            v("chatBefore", "rps"),
            v("chatWebCrypto", "rps"),
            v("chat", "rps"),
            v("chatDev", "rps"),
            f(&json!(ratio(
                num(&row["chat"]["rps"]),
                num(&row["chatDev"]["rps"])
            ))),
        );
    }

    s += "\n**Fixed connections** (closed loop: the floor GET /healthz, the pipeline, the inline-write Worker; p50 / p99 ms)\n\n";
    s += "| connections | floor | chat | inline | req/s floor / chat / inline | chat / floor p50 | chat / inline p99 |\n";
    s += "|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in r["connections"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} | {} / {} / {} | {}× | {}× |\n",
            row["connections"],
            pair(&row["floor"]),
            pair(&row["chat"]),
            pair(&row["inline"]),
            f(&row["floor"]["rps"]),
            f(&row["chat"]["rps"]),
            f(&row["inline"]["rps"]),
            f(&json!(ratio(
                num(&row["chat"]["p50Ms"]),
                num(&row["floor"]["p50Ms"])
            ))),
            f(&json!(ratio(
                num(&row["chat"]["p99Ms"]),
                num(&row["inline"]["p99Ms"])
            ))),
        );
    }

    let cap = &r["capacity"];
    s += "\n**Capacity** (open loop at fixed rates, latency from each request's intended send time; p50 / p99 ms, and whether the rate passed: no error, p99 within the bound, and for the Workers that store, everything stored within the drain grace)\n\n";
    s += "| rate /s | floor | chat | chat: all stored within (checked every 200 ms) | inline |\n|---:|---:|---:|---:|---:|\n";
    let steps = |t: &str| cap[t]["steps"].as_array().cloned().unwrap_or_default();
    let (fl, ch, il) = (steps("floor"), steps("chat"), steps("inline"));
    let mut rates: Vec<f64> = fl
        .iter()
        .chain(&ch)
        .chain(&il)
        .filter_map(|x| x["rate"].as_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let cell = |list: &[Value], rate: f64| {
        list.iter()
            .find(|x| x["rate"].as_f64() == Some(rate))
            .map(|x| format!("{}{}", pair(x), if x["passed"] == true { "" } else { " ✗" }))
            .unwrap_or_else(|| "–".into())
    };
    for rate in rates {
        let drain = ch
            .iter()
            .find(|x| x["rate"].as_f64() == Some(rate))
            .and_then(|x| x["drainMs"].as_u64())
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "–".into());
        s += &format!(
            "| {rate:.0} | {} | {} | {drain} | {} |\n",
            cell(&fl, rate),
            cell(&ch, rate),
            cell(&il, rate)
        );
    }
    let best = |t: &str| {
        cap[t]["highestRate"]
            .as_f64()
            .map(|x| format!("{x:.0}/s"))
            .unwrap_or_else(|| "none".into())
    };
    s += &format!(
        "\nHighest rate that passed: floor {}, pipeline {}, inline-write {} (✗: failed; drain grace {} ms).\n",
        best("floor"),
        best("chat"),
        best("inline"),
        cap["drainGraceMs"]
    );

    let live = &r["live"];
    if !live.is_null() {
        s += "\n**Live turns** (closed loop, one socket per player; the floor GET /healthz and the HTTP turn POST /api/chat on the same instance, production build, Privy sign-in; p50 / p99 ms; `wrk` on the floor at the same connections checks the generator)\n\n";
        s += "| players | floor | HTTP turn | socket turn | req/s floor / HTTP / socket | socket / floor p50 | socket / floor req/s | wrk floor p50 ms / req/s | generator / wrk req/s |\n";
        s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for row in live["connections"].as_array().into_iter().flatten() {
            s += &format!(
                "| {} | {} | {} | {} | {} / {} / {} | {}× | {}× | {} / {} | {} |\n",
                row["connections"],
                pair(&row["floor"]),
                pair(&row["chat"]),
                pair(&row["socket"]),
                f(&row["floor"]["rps"]),
                f(&row["chat"]["rps"]),
                f(&row["socket"]["rps"]),
                f(&json!(ratio(
                    num(&row["socket"]["p50Ms"]),
                    num(&row["floor"]["p50Ms"])
                ))),
                f(&json!(ratio(
                    num(&row["socket"]["rps"]),
                    num(&row["floor"]["rps"])
                ))),
                f(&row["wrkFloor"]["p50Ms"]),
                f(&row["wrkFloor"]["rps"]),
                f(&json!(ratio(
                    num(&row["floor"]["rps"]),
                    num(&row["wrkFloor"]["rps"])
                ))),
            );
        }
        let fp = &live["firstPiece"];
        s += &format!(
            "\n**Time to the first piece** (the offline engine pausing {} ms before each piece, {} turns over one socket): first piece p50 {} ms (p99 {}), whole answer p50 {} ms (p99 {}); the floor's p50 meanwhile {} ms.\n",
            fp["pieceMs"],
            fp["turns"],
            f(&fp["firstP50Ms"]),
            f(&fp["firstP99Ms"]),
            f(&fp["wholeP50Ms"]),
            f(&fp["wholeP99Ms"]),
            f(&fp["floorP50Ms"]),
        );
    }

    let lag = &r["lag"];
    s += &format!(
        "\n**Persistence lag** (answer → committed in D1, every turn of an open-loop load at half the pipeline's capacity, polled every {} ms): {} turns at {}/s, p50 {} ms, p99 {} ms, max {} ms; chat p99 meanwhile {} ms.\n",
        lag["pollMs"],
        lag["probes"],
        f(&lag["rate"]),
        lag["p50Ms"],
        lag["p99Ms"],
        lag["maxMs"],
        f(&lag["load"]["p99Ms"]),
    );

    s += "\n**Storage** (turns stored per second until all are stored, vs. the same SQL on native SQLite)\n\n";
    s += "| max_batch_size | databases | turns | Workers turns/s | native turns/s | ratio | turns per D1 batch | D1 ms per batch | D1-bound turns/s | bytes per turn |\n";
    s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for run in r["storage"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(r["storageByDatabases"].as_array().into_iter().flatten())
    {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            run["maxBatchSize"],
            run["databases"],
            run["turns"],
            f(&run["workersTurnsPerSecond"]),
            f(&run["nativeTurnsPerSecond"]),
            f(&run["ratioToNative"]),
            f(&run["medianTurnsPerBatch"]),
            f(&run["medianD1MsPerBatch"]),
            f(&run["d1TurnsPerSecond"]),
            f(&run["bytesPerTurn"]),
        );
    }

    if r["archive"].is_object() {
        s += "\n**The archive** (`bench::archive`: a run of `POST /admin/archive` pages over one database, the turns' text of a chat's length; a history page of 50 read before and after)\n\n";
        if let Some(date) = r["archiveDate"].as_str() {
            s += &format!("Run on {date} with `--archive-only --merge`.\n\n");
        }
        s += "| D1 delay ms | turns | turns archived/s | D1 bytes/turn | R2 bytes/turn | D1 rows written/turn | D1 rows read/turn | D1 page p50 ms | archived page p50 ms | ratio |\n";
        s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for key in ["slowD1", "localD1"] {
            let a = &r["archive"][key];
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                a["d1DelayMs"],
                a["turns"],
                f(&a["turnsPerSecond"]),
                f(&a["d1BytesPerTurn"]),
                f(&a["r2BytesPerTurn"]),
                f(&a["d1RowsWrittenPerTurn"]),
                f(&a["d1RowsReadPerTurn"]),
                f(&a["d1PageP50Ms"]),
                f(&a["archivedPageP50Ms"]),
                f(&a["archivedToD1PageP50"]),
            );
        }
        if let Ok(prices) = crate::cost::Prices::load() {
            s += &crate::cost::archive_markdown(r, &prices);
        }
    }

    s += "\n**What a turn costs** (`bench::cost`)\n\n";
    s += &match crate::cost::Prices::load() {
        Ok(prices) => crate::cost::markdown(r, &prices),
        Err(e) => format!("(bench/prices.json cannot be read: {e})\n"),
    };

    let slow = &r["slowD1"];
    if slow.is_object() {
        s += &format!(
            "\n**D1 as deployed** (`bench::slow_d1`: every D1 call made {} ms late, `FAULTS=slow={}`, in the chat Worker, its consumer and the inline-write Worker; a closed loop at each count of connections, keyed chat turns, medians of {} loads of {} s)\n\n",
            slow["delayMs"], slow["delayMs"], slow["runs"], slow["seconds"]
        );
        s += "| connections | chat p50 / p99 ms | inline-write p50 / p99 ms | chat turns/s | inline-write turns/s |\n|---:|---:|---:|---:|---:|\n";
        for c in crate::SLOW_D1_CONNECTIONS {
            let (chat, inline) = (&slow["chat"][c.to_string()], &slow["inline"][c.to_string()]);
            s += &format!(
                "| {c} | {} | {} | {} | {} |\n",
                pair(chat),
                pair(inline),
                f(&chat["rps"]),
                f(&inline["rps"])
            );
        }
    }

    s += "\n**Size**\n\n| Worker | file | raw KiB | gzip KiB |\n|---|---|---:|---:|\n";
    for file in r["sizes"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            file["worker"].as_str().unwrap_or(""),
            file["file"].as_str().unwrap_or(""),
            file["rawBytes"].as_u64().unwrap_or(0) / 1024,
            file["gzipBytes"].as_u64().unwrap_or(0) / 1024,
        );
    }

    s += "\n**Goals** (ratios measured in this run)\n\n";
    for g in r["goals"].as_array().into_iter().flatten() {
        s += &format!(
            "- {}: {} (goal {} {}): **{}**\n",
            g["goal"].as_str().unwrap_or(""),
            f(&g["measured"]),
            if g["atLeast"] == true { "≥" } else { "≤" },
            f(&g["bound"]),
            if g["met"] == true { "met" } else { "not met" },
        );
    }
    s
}
