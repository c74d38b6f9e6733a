//! Replay: walk the matching letters oldest first, send them in chunks of `--rate` per
//! second, and show progress. Replayed letters leave the pending set, so running the same
//! command again after a stop resumes where it left off; `--run-id` keeps both runs in one
//! `replay_runs` row.

use crate::client::Client;
use crate::output;
use crate::Filter;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    filter: Filter,
    /// Replay these letter ids (otherwise the filter chooses; status defaults to pending).
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    /// Say per letter whether it would apply, is already applied or conflicts; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Letters sent per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    rate: u32,
    /// Most letters to handle in this run.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// Name of the run in replay_runs (reuse it to extend a stopped run).
    #[arg(long)]
    run_id: Option<String>,
}

pub fn run(client: &Client, args: &ReplayArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
    let limit = args.limit.unwrap_or(u32::MAX);
    let ids: Vec<Value> = if args.ids.is_empty() {
        let mut filter = args.filter.pairs();
        if args.filter.status.is_none() {
            filter.push(("status", "pending".into()));
        }
        client
            .list_all(&filter, limit.min(100_000))?
            .iter()
            .map(|l| l["id"].clone())
            .collect()
    } else {
        args.ids
            .iter()
            .take(limit as usize)
            .map(|id| json!(id))
            .collect()
    };
    if ids.is_empty() {
        eprintln!("nothing matched: no dead letter fits these filters (replays default to --status pending; try --status replayed)");
        return Ok(ExitCode::from(1));
    }

    let bar = ProgressBar::new(ids.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} letters {msg}").unwrap());
    let mut results: Vec<Value> = Vec::new();
    let mut counts = json!({ "letters": 0, "requeued": 0, "wouldApply": 0, "alreadyApplied": 0, "conflicts": 0, "invalid": 0 });
    for chunk in ids.chunks(args.rate as usize) {
        let started = Instant::now();
        let answer = client.post(
            "/admin/dead-letters/replay",
            &json!({ "ids": chunk, "dryRun": args.dry_run, "runId": run_id, "limit": chunk.len() }),
        )?;
        for (key, value) in answer["counts"].as_object().into_iter().flatten() {
            counts[key] = json!(counts[key].as_u64().unwrap_or(0) + value.as_u64().unwrap_or(0));
        }
        results.extend(answer["letters"].as_array().cloned().unwrap_or_default());
        bar.inc(chunk.len() as u64);
        if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
            if results.len() < ids.len() {
                std::thread::sleep(rest);
            }
        }
    }
    bar.finish_and_clear();
    let report =
        json!({ "runId": run_id, "dryRun": args.dry_run, "counts": counts, "letters": results });
    if as_json {
        output::print_json(&report);
    } else {
        output::verdicts_table(&results);
        println!(
            "{} run {run_id}: {} letters; would apply {}, already applied {}, conflicts {}, invalid {}; requeued {}",
            if args.dry_run { "dry" } else { "replay" },
            counts["letters"],
            counts["wouldApply"],
            counts["alreadyApplied"],
            counts["conflicts"],
            counts["invalid"],
            counts["requeued"],
        );
    }
    Ok(ExitCode::SUCCESS)
}
