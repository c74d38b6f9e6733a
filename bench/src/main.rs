//! `bench`: one run that shows how fast a player gets a reply and how fast turns are stored,
//! each beside the floor or limit that bounds it, on this machine.
//!
//! - [`load`]: the load generator: fixed concurrency or fixed rate, bounded in count and
//!   time, loopback only, latencies in an HDR histogram.
//! - [`reply`]: POST /api/chat against GET /healthz (the runtime's floor).
//! - [`storage`]: turns stored per second at several `max_batch_size`s against the same SQL
//!   on native SQLite.
//! - [`lag`]: time from a chat answer to its row being readable, under steady load.
//! - [`size`]: each Worker's wasm and bundle, raw and gzip.
//! - [`check`]: every 200-answered turn stored exactly once, totals equal the ledger.
//! - [`report`]: the markdown table and the JSON of the run.

mod check;
mod lag;
mod load;
mod reply;
mod report;
mod size;
mod storage;

use clap::Parser;
use serde_json::json;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark the chat pipeline on wrangler dev (loopback only)")]
pub struct Params {
    /// Seconds of each latency measurement.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Runs of each measurement; the report gives medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Connections of the reply scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Consumer batch sizes of the storage scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub batch_sizes: Vec<i64>,
    /// Local D1 databases of the sharding scenario (storage at batch size 100 over each count).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub databases: Vec<usize>,
    /// Run only the sharding scenario, and write it to bench/results/databases.json.
    #[arg(long)]
    pub only_databases: bool,
    /// Turns enqueued per storage run (a tenth of it at batch size 1).
    #[arg(long, default_value_t = 4000)]
    pub turns: usize,
    /// Seconds of the persistence-lag load.
    #[arg(long, default_value_t = 15)]
    pub lag_seconds: u64,
    /// Where the JSON of the run goes.
    #[arg(long, default_value = "bench/results/latest.json")]
    pub out: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let params = Params::parse();
    eprintln!("bench: {params:?}");
    let started = chrono_now();
    if params.only_databases {
        return databases_only(&params, started).await;
    }
    let sizes = size::measure()?;
    let (reply, lag) = {
        let w = e2e::Workers::start().await;
        let reply = reply::run(&w, &params).await?;
        check::all_stored(&w, &reply.answered, "reply").await?;
        let chat_rps = reply.chat_rps_at(16);
        let lag = lag::run(&w, &params, chat_rps / 2.0).await?;
        let everything: Vec<String> = reply
            .answered
            .iter()
            .chain(&lag.answered)
            .cloned()
            .collect();
        check::all_stored(&w, &everything, "lag").await?;
        (reply, lag)
    };
    let mut storage_runs = Vec::new();
    for &batch in &params.batch_sizes {
        storage_runs.push(storage::run(&params, batch, 2).await?);
    }
    let report = json!({
        "date": started,
        "machine": report::machine(),
        "versions": report::versions(),
        "parameters": {
            "seconds": params.seconds, "runs": params.runs, "concurrency": params.concurrency,
            "batchSizes": params.batch_sizes, "turns": params.turns, "lagSeconds": params.lag_seconds,
            "maxBatchTimeoutSeconds": 1,
        },
        "reply": reply.to_json(),
        "storage": storage_runs.iter().map(storage::StorageRun::to_json).collect::<Vec<_>>(),
        "lag": lag.to_json(),
        "sizes": sizes,
    });
    if let Some(dir) = params.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&params.out, serde_json::to_string_pretty(&report)?)?;
    println!("{}", report::markdown(&report));
    eprintln!("bench: figures written to {}", params.out.display());
    Ok(())
}

/// Storage over 1, 2, 4… local databases in one run, written to `databases.json` beside
/// `--out`: the sharding issue's figure, apart from the latest full run.
async fn databases_only(params: &Params, started: String) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for &n in &params.databases {
        runs.push(storage::run(params, 100, n).await?.to_json());
    }
    let report = json!({
        "date": started,
        "machine": report::machine(),
        "versions": report::versions(),
        "parameters": { "turns": params.turns, "maxBatchSize": 100, "databases": params.databases },
        "storageByDatabases": runs,
    });
    let out = params.out.with_file_name("databases.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    for r in &runs {
        println!(
            "| {} | {:.0} turns/s | {:.0} bytes/turn | {:?} |",
            r["databases"],
            r["workersTurnsPerSecond"].as_f64().unwrap_or(0.0),
            r["bytesPerTurn"].as_f64().unwrap_or(0.0),
            r["turnsPerDatabase"]
        );
    }
    eprintln!("bench: figures written to {}", out.display());
    Ok(())
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
