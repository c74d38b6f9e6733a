//! The run's figures: a markdown table for the README and the machine and versions for the
//! JSON.

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

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

/// The README's table of a run.
pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    s += &format!(
        "Run {} on {} CPUs ({}), {} GiB, {}; wrangler {}, workerd {}. Medians of {} runs of {} s.\n\n",
        r["date"].as_str().unwrap_or(""),
        m["cpus"],
        m["cpuModel"].as_str().unwrap_or(""),
        m["memoryGiB"],
        m["os"].as_str().unwrap_or(""),
        r["versions"]["wrangler"].as_str().unwrap_or(""),
        r["versions"]["workerd"].as_str().unwrap_or(""),
        r["parameters"]["runs"],
        r["parameters"]["seconds"],
    );
    s += "**Reply** (POST /api/chat vs. the floor GET /healthz)\n\n";
    s += "| connections | floor req/s | chat req/s | floor p50 / p99 ms | chat p50 / p90 / p99 / p99.9 ms | errors | chat/floor p50 | p99 | throughput |\n";
    s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in r["reply"]["rows"].as_array().into_iter().flatten() {
        let (fl, ch, ra) = (
            &row["floor"]["median"],
            &row["chat"]["median"],
            &row["ratio"],
        );
        s += &format!(
            "| {} | {} | {} | {} / {} | {} / {} / {} / {} | {} | {}× | {}× | {}× |\n",
            row["concurrency"],
            f(&fl["rps"]),
            f(&ch["rps"]),
            f(&fl["p50Ms"]),
            f(&fl["p99Ms"]),
            f(&ch["p50Ms"]),
            f(&ch["p90Ms"]),
            f(&ch["p99Ms"]),
            f(&ch["p999Ms"]),
            ch["errors"],
            f(&ra["p50"]),
            f(&ra["p99"]),
            f(&ra["throughput"]),
        );
    }
    s += "\n**Storage** (turns stored per second until all are stored, vs. the same SQL on native SQLite)\n\n";
    s += "| max_batch_size | turns | Workers turns/s | native turns/s | ratio | turns per D1 batch | D1 ms per batch | D1-bound turns/s | D1/native | statements per batch |\n";
    s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for run in r["storage"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            run["maxBatchSize"],
            run["turns"],
            f(&run["workersTurnsPerSecond"]),
            f(&run["nativeTurnsPerSecond"]),
            f(&run["ratioToNative"]),
            f(&run["medianTurnsPerBatch"]),
            f(&run["medianD1MsPerBatch"]),
            f(&run["d1TurnsPerSecond"]),
            f(&run["d1RatioToNative"]),
            run["statementsPerBatch"],
        );
    }
    let lag = &r["lag"];
    s += &format!(
        "\n**Persistence lag** at {} req/s background ({} probes): p50 {} ms, p99 {} ms, max {} ms; max_batch_timeout 1000 ms.\n",
        f(&lag["background"]["rps"]), lag["probes"], lag["p50Ms"], lag["p99Ms"], lag["maxMs"],
    );
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
    s
}
