//! Storage throughput: turn records enqueued as fast as the queue takes them (POST
//! /admin/turns, 100 per call) and timed until all are stored, at a given `max_batch_size`;
//! beside it, the limit: the same SQL on the same turns on native SQLite (rusqlite, the same
//! migrations, one transaction per batch of the same size).

use crate::load::median;
use crate::Params;
use chat_core::record::{sample, TurnRecord};
use e2e::now_ms;
use e2e::{Options, Workers};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct StorageRun {
    pub batch_size: i64,
    /// Local D1 databases the turns were spread over.
    pub databases: usize,
    /// Bytes the databases held after the run (pages in use), and turns stored in each.
    pub database_bytes: i64,
    pub per_database: Vec<i64>,
    pub turns: usize,
    pub enqueue_seconds: f64,
    pub store_seconds: f64,
    pub batches: Vec<Value>,
    pub native_seconds: f64,
}

impl StorageRun {
    pub fn workers_tps(&self) -> f64 {
        self.turns as f64 / self.store_seconds
    }

    pub fn native_tps(&self) -> f64 {
        self.turns as f64 / self.native_seconds
    }

    pub fn to_json(&self) -> Value {
        let nums = |key: &str| -> Vec<f64> {
            self.batches
                .iter()
                .filter_map(|b| b[key].as_f64())
                .collect()
        };
        let statements: Vec<f64> = nums("statements")
            .into_iter()
            .filter(|s| *s > 0.0)
            .collect();
        json!({
            "maxBatchSize": self.batch_size,
            "databases": self.databases,
            "turnsPerDatabase": self.per_database,
            "databaseBytes": self.database_bytes,
            "bytesPerTurn": self.database_bytes as f64 / self.turns as f64,
            "turns": self.turns,
            "enqueueSeconds": self.enqueue_seconds,
            "storeSeconds": self.store_seconds,
            "workersTurnsPerSecond": self.workers_tps(),
            "nativeTurnsPerSecond": self.native_tps(),
            "ratioToNative": self.workers_tps() / self.native_tps(),
            "consumerBatches": self.batches.len(),
            "medianTurnsPerBatch": median(nums("received")),
            // The rate of the D1 batch itself (turns per batch / D1 time per batch): what the
            // SQL sustains once a batch is delivered, beside the end-to-end figure above.
            "d1TurnsPerSecond": median(nums("received")) / (median(nums("d1_ms")).max(1.0) / 1000.0),
            "d1RatioToNative": median(nums("received")) / (median(nums("d1_ms")).max(1.0) / 1000.0) / self.native_tps(),
            "medianD1MsPerBatch": median(nums("d1_ms")),
            "medianTotalMsPerBatch": median(nums("total_ms")),
            "statementsPerBatch": statements.first().copied(),
            "statementsVary": statements.iter().any(|s| Some(*s) != statements.first().copied()),
        })
    }
}

/// `n` valid records over 50 players and 200 sessions.
pub fn records(n: usize, seed: u64) -> Vec<TurnRecord> {
    let at = now_ms();
    (0..n)
        .map(|i| {
            let session = Uuid::from_u128(u128::from(seed) << 64 | (i % 200) as u128);
            sample(
                &format!("bench-{}", i % 50),
                session,
                seed * 1_000_000 + i as u64,
                at + i as i64,
            )
        })
        .collect()
}

/// The same turns through the same SQL on native SQLite, `batch` per transaction.
pub fn native_seconds(records: &[TurnRecord], batch: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("native.sqlite"))?;
    chat_core::native::migrate(&conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let mut applied = 0;
    for chunk in records.chunks(batch) {
        applied += chat_core::native::apply_turns(&mut conn, chunk)?.applied;
    }
    anyhow::ensure!(
        applied == records.len(),
        "native run applied {applied} of {}",
        records.len()
    );
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run(params: &Params, batch: i64, databases: usize) -> anyhow::Result<StorageRun> {
    let turns = if batch <= 1 {
        params.turns / 10
    } else {
        params.turns
    };
    let records = records(turns, batch as u64 + 7);
    let w = Workers::start_with(Options {
        consumer_queue: vec![("max_batch_size", batch)],
        databases,
        ..Options::default()
    })
    .await;
    let bodies: Vec<Value> = records
        .chunks(100)
        .map(|c| json!({ "records": c.iter().map(|r| Value::String(r.encode())).collect::<Vec<_>>() }))
        .collect();
    let started = Instant::now();
    let results: Vec<(u16, Value)> = stream::iter(bodies.iter())
        .map(|b| w.admin("POST", "/admin/turns", Some(b)))
        .buffered(4)
        .collect()
        .await;
    let enqueue_seconds = started.elapsed().as_secs_f64();
    for (status, body) in &results {
        anyhow::ensure!(*status == 200, "enqueue failed: {status} {body}");
    }
    let drained = crate::check::wait_drained(&w, turns, Duration::from_secs(900)).await;
    let store_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        drained,
        "batch {batch}: only {} of {turns} stored",
        crate::check::stored(&w)
    );
    let ids: Vec<String> = records.iter().map(|r| r.turn_id.to_string()).collect();
    crate::check::all_stored(&w, &ids, &format!("storage batch {batch}")).await?;
    e2e::wait_for(Duration::from_secs(10), || {
        w.log_events("turn batch")
            .iter()
            .map(|b| b["applied"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= turns as u64
    })
    .await;
    let batches = w.log_events("turn batch");
    let native_seconds = native_seconds(&records, batch as usize)?;
    let per_database: Vec<i64> = w
        .shards()
        .into_iter()
        .map(|b| {
            w.shard(b)
                .query_row("SELECT COUNT(*) FROM point_events", [], |r| r.get(0))
                .unwrap()
        })
        .collect();
    let run = StorageRun {
        batch_size: batch,
        databases,
        database_bytes: w.database_bytes(),
        per_database,
        turns,
        enqueue_seconds,
        store_seconds,
        batches,
        native_seconds,
    };
    eprintln!(
        "storage batch {batch}, {databases} databases: {turns} turns stored in {store_seconds:.2} s = {:.0} turns/s; native {:.0} turns/s",
        run.workers_tps(),
        run.native_tps()
    );
    Ok(run)
}
