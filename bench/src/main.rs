//! `bench`: one run that measures what production runs, each figure beside what bounds it,
//! on this machine: players signed in with Privy tokens on the deployable build, open-loop
//! load stepped up to the pipeline's capacity, the persistence lag under that load, the
//! inline-write design beside it, storage over 1, 2 and 4 databases, and the Workers' sizes.
//! `--quick` runs every scenario briefly with its invariant checks (the test suite runs it)
//! and never judges a timing.
//!
//! - [`load`]: the load generator: fixed connections (closed loop) or fixed arrival rates
//!   (open loop, latency from the intended send time), bounded in count and time.
//! - [`players`]: Privy tokens from the bench's own key, or the development header.
//! - [`target`]: each variant in its own `wrangler dev` (one at a time), and the routes the
//!   load asks.
//! - [`connections`]: 1 and 16 connections: floor, each way of signing in, inline writes.
//! - [`capacity`]: the highest rate under the p99 bound with everything stored.
//! - [`lag`]: answer → committed in D1, for every turn of a load at half capacity.
//! - [`live`]: turns over the session's socket against the floor and the HTTP turn, the time
//!   to the first piece of a reply, and the load generator checked against wrk.
//! - [`storage`]: turns stored per second by batch size and by number of databases, against
//!   the same SQL on native SQLite.
//! - [`counts`]: what a turn costs in billed units (CPU, requests, rows, queue operations,
//!   bytes) for plain HTTP (keyed and not), SSE, the socket and the inline-write Worker,
//!   players at a human pace, a session start and a socket's setup shared over its turns;
//!   `bench::cost` prices them.
//! - [`slow_d1`]: the chat and the inline design with every D1 call made late, as deployed.
//! - [`archive`]: turns archived per second from a database, D1 and R2 bytes per turn, and
//!   a history page read from D1 and from the archive.
//! - [`size`]: each Worker's wasm and bundle, raw and gzip.
//! - [`check`]: every 200-answered turn stored exactly once, totals equal to the ledger.
//! - `bench::report` (the library): the goals, and the text of a run for `bench/README.md`.

mod archive;
mod capacity;
mod check;
mod connections;
mod counts;
mod lag;
mod live;
mod load;
mod players;
mod size;
mod slow_d1;
mod storage;
mod target;

use bench::report;
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use target::{Instance, Target};

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark the chat pipeline on wrangler dev (loopback only)")]
pub struct Params {
    /// Every scenario briefly, with its invariant checks and no judgement of timings; the
    /// figures go to target/bench-quick.json, never to bench/results.
    #[arg(long)]
    pub quick: bool,
    /// Measure nothing: paste the text of the run in `--out` into bench/README.md, between its
    /// bench marks.
    #[arg(long)]
    pub readme: bool,
    /// Seconds of each fixed-connections measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Runs of each fixed-connections measurement; the report gives medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Connection counts of the fixed-connections scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub concurrency: Vec<usize>,
    /// The capacity scenario's first rate (requests per second).
    #[arg(long, default_value_t = 20.0)]
    pub start_rate: f64,
    /// Each next rate is the last times this.
    #[arg(long, default_value_t = 1.25)]
    pub growth: f64,
    /// Most rates tried.
    #[arg(long, default_value_t = 22)]
    pub max_steps: usize,
    /// Seconds at each rate.
    #[arg(long, default_value_t = 5.0)]
    pub step_seconds: f64,
    /// The p99 a rate must stay within, in ms.
    #[arg(long, default_value_t = 100.0)]
    pub p99_bound_ms: f64,
    /// Turns measured for persistence lag (at least).
    #[arg(long, default_value_t = 1000)]
    pub lag_probes: usize,
    /// Shortest lag load, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub lag_seconds: f64,
    /// Players of each variant (each with `sessions` sessions).
    #[arg(long, default_value_t = 64)]
    pub players: usize,
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// Consumer batch sizes of the storage scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub batch_sizes: Vec<i64>,
    /// Local D1 databases of the sharding scenario (storage at batch size 100).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub databases: Vec<usize>,
    /// Turns enqueued per storage run (a tenth of it at batch size 1).
    #[arg(long, default_value_t = 4000)]
    pub turns: usize,
    /// Seconds of each design's steady load in the cost scenario.
    #[arg(long, default_value_t = 10.0)]
    pub cost_seconds: f64,
    /// Connections of the cost scenario's floor load.
    #[arg(long, default_value_t = 8)]
    pub cost_connections: usize,
    /// Players of the cost scenario, each with a session (and a socket), each playing at
    /// `cost_pace_seconds`: a human pace, so a consumer batch holds different players.
    #[arg(long, default_value_t = 150)]
    pub cost_players: usize,
    /// Seconds from one of a player's turns to the next in the cost scenario.
    #[arg(long, default_value_t = 3.0)]
    pub cost_pace_seconds: f64,
    /// Milliseconds each D1 call is made late in the slow-D1 scenario (`FAULTS=slow=MS`):
    /// a deployed D1 a network round trip away, where the local one answers at once.
    #[arg(long, default_value_t = 30)]
    pub d1_delay_ms: u32,
    /// Only the cost scenario (with the sizes): for measuring a change to what a turn costs.
    #[arg(long)]
    pub costs_only: bool,
    /// Only the archive scenario: with `--merge`, its figures go into `--out` (dated
    /// `archiveDate`).
    #[arg(long)]
    pub archive_only: bool,
    /// With `--costs-only`: put its figures into `--out` (the run's `costs` replaced, dated
    /// `costsDate`), for a change that moves only what a turn costs.
    #[arg(long)]
    pub merge: bool,
    /// Where the JSON of the run goes.
    #[arg(long, default_value = "bench/results/latest.json")]
    pub out: PathBuf,
}

impl Params {
    /// `--quick`: every scenario, briefly.
    fn quickened(mut self) -> Self {
        if self.quick {
            self.seconds = 1.0;
            self.runs = 1;
            self.start_rate = 10.0;
            self.growth = 2.0;
            self.max_steps = 2;
            self.step_seconds = 1.0;
            self.p99_bound_ms = f64::INFINITY;
            self.lag_probes = 40;
            self.lag_seconds = 1.0;
            self.players = 8;
            self.sessions = 2;
            self.batch_sizes = vec![10];
            self.databases = vec![1, 2, 4];
            self.turns = 300;
            self.cost_seconds = 3.0;
            self.cost_players = 30;
            self.cost_pace_seconds = 2.0;
            self.out = e2e::root().join("target/bench-quick.json");
        }
        self
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let params = Params::parse().quickened();
    if params.readme {
        let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&params.out)?)?;
        let path = e2e::root().join("bench/README.md");
        let readme = std::fs::read_to_string(&path)?;
        let updated = bench::with_block(&readme, &report::markdown(&run))
            .ok_or_else(|| anyhow::anyhow!("bench/README.md lacks the bench marks"))?;
        std::fs::write(&path, updated)?;
        let path = e2e::root().join("README.md");
        let readme = std::fs::read_to_string(&path)?;
        let table = bench::cost::summary(&run, &bench::cost::Prices::load()?);
        let updated =
            bench::with_block_between(&readme, bench::COST_START, bench::COST_END, &table)
                .ok_or_else(|| anyhow::anyhow!("README.md lacks the cost marks"))?;
        std::fs::write(&path, updated)?;
        eprintln!(
            "bench: bench/README.md and README.md now show {}",
            params.out.display()
        );
        return Ok(());
    }
    eprintln!("bench: {params:?}");
    let started = report::now_rfc3339();
    let sizes = size::measure()?;

    // Each variant runs alone on the machine (see `connections`).
    let specs = target::specs();
    let spec = |name: &str| specs.iter().find(|s| s.name == name).unwrap();
    if params.archive_only {
        let figures = archive::run(&params).await?;
        println!("{}", serde_json::to_string_pretty(&figures)?);
        if params.merge {
            anyhow::ensure!(
                !params.quick,
                "--merge takes a full run's figures, not --quick's"
            );
            let mut whole: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&params.out)?)?;
            whole["archive"] = figures;
            whole["archiveDate"] = json!(started);
            std::fs::write(&params.out, serde_json::to_string_pretty(&whole)? + "\n")?;
            eprintln!(
                "bench: archive figures merged into {}",
                params.out.display()
            );
        }
        return Ok(());
    }
    if params.costs_only {
        let costs = counts::run(spec("after"), spec("inline"), &params).await?;
        let slow = slow_d1::run(spec("dev"), spec("inline"), &params).await?;
        let run = json!({ "date": started, "quick": params.quick, "costs": costs, "slowD1": slow, "sizes": sizes });
        let prices = bench::cost::Prices::load()?;
        println!("{}", bench::cost::markdown(&run, &prices));
        let out = e2e::root().join("target/bench-costs.json");
        std::fs::write(&out, serde_json::to_string_pretty(&run)? + "\n")?;
        eprintln!("bench: figures written to {}", out.display());
        if params.merge {
            anyhow::ensure!(
                !params.quick,
                "--merge takes a full run's figures, not --quick's"
            );
            let mut whole: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&params.out)?)?;
            whole["costs"] = run["costs"].clone();
            whole["slowD1"] = run["slowD1"].clone();
            whole["costsDate"] = json!(started);
            whole["sizes"] = run["sizes"].clone();
            whole["goals"] = report::goals(&whole);
            std::fs::write(&params.out, serde_json::to_string_pretty(&whole)? + "\n")?;
            eprintln!("bench: costs merged into {}", params.out.display());
        }
        return Ok(());
    }
    let connections = connections::run(&specs, &params).await?;

    let after = Instance::start(spec("after"), params.players, params.sessions).await?;
    let floor = Target {
        label: "floor",
        instance: &after,
        chat: false,
    };
    let chat = Target {
        label: "chat",
        instance: &after,
        chat: true,
    };
    let mut capacity = capacity::run(&[floor, chat], &params).await?;
    let half = capacity["chat"]["highestRate"]
        .as_f64()
        .unwrap_or(params.start_rate)
        / 2.0;
    let lag = lag::run(&chat, &params, half.max(1.0)).await?;
    after.check().await?;
    drop(after);
    let inline = Instance::start(spec("inline"), params.players, params.sessions).await?;
    let alone = capacity::run(
        &[Target {
            label: "inline",
            instance: &inline,
            chat: true,
        }],
        &params,
    )
    .await?;
    capacity["inline"] = alone["inline"].clone();
    inline.check().await?;
    drop(inline);

    let live = live::run(spec("after"), &params).await?;
    let costs = counts::run(spec("after"), spec("inline"), &params).await?;
    let slow = slow_d1::run(spec("dev"), spec("inline"), &params).await?;

    let mut storage_runs = Vec::new();
    for &batch in &params.batch_sizes {
        storage_runs.push(storage::run(&params, batch, 2).await?.to_json());
    }
    let mut by_databases = Vec::new();
    for &n in &params.databases {
        by_databases.push(storage::run(&params, 100, n).await?.to_json());
    }
    let archive = archive::run(&params).await?;
    let mut run = json!({
        "date": started,
        "quick": params.quick,
        "machine": report::machine(),
        "versions": report::versions(),
        "parameters": {
            "seconds": params.seconds, "runs": params.runs, "connections": params.concurrency,
            "startRate": params.start_rate, "growth": params.growth, "stepSeconds": params.step_seconds,
            "p99BoundMs": if params.p99_bound_ms.is_finite() { json!(params.p99_bound_ms) } else { json!(null) },
            "lagProbes": params.lag_probes, "players": params.players, "sessionsPerPlayer": params.sessions,
            "costPlayers": params.cost_players, "costPaceSeconds": params.cost_pace_seconds,
            "batchSizes": params.batch_sizes, "databases": params.databases, "turns": params.turns,
            "maxBatchTimeoutSeconds": 1,
        },
        "connections": connections,
        "capacity": capacity,
        "lag": lag,
        "live": live,
        "costs": costs,
        "slowD1": slow,
        "storage": storage_runs,
        "storageByDatabases": by_databases,
        "archive": archive,
        "sizes": sizes,
    });
    run["goals"] = report::goals(&run);
    if let Some(dir) = params.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&params.out, serde_json::to_string_pretty(&run)? + "\n")?;
    println!("{}", report::markdown(&run));
    eprintln!("bench: figures written to {}", params.out.display());
    Ok(())
}
