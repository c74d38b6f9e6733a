//! `chat-admin shards`: the bucket map, and moving a bucket to another database while the
//! game runs. A move is steps of the admin API, each safe to repeat, so running the same
//! command again after a stop finishes the move:
//!
//! 1. hold: the target is checked (bound, migrated, reachable by the consumer), then the
//!    bucket's database refuses its writes and its turns wait in the queue (the chat keeps
//!    answering);
//! 2. wait `--grace` seconds, longer than the Workers' map cache, so that no isolate still
//!    routes the bucket as before;
//! 3. copy the bucket's rows page by page, then flip: the Worker verifies row counts and
//!    point sums on both sides, maps the bucket to its new database, and lets its turns in;
//! 4. wait `--grace` again, so that no isolate still reads the old copy;
//! 5. purge the old copy, page by page.
//!
//! The Worker refuses each step that would come too early (409 with `Retry-After`): this
//! tool waits and goes on. A step refused for any other reason stops the command with the
//! Worker's message, which names what to run.

use crate::client::{Client, Refusal, SERVER_FAILED};
use crate::output;
use anyhow::bail;
use clap::Subcommand;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum ShardsCommand {
    /// The live bucket map: which database holds each bucket, and any bucket moving.
    Status,
    /// Move one bucket of players to another database while the game runs.
    Move {
        /// The bucket (0..=255): the first byte of the players' user ids.
        #[arg(long, value_parser = clap::value_parser!(u8))]
        bucket: u8,
        /// The database binding it goes to (DB_1, DB_2, …), bound in both wrangler.toml files.
        #[arg(long)]
        to: String,
        /// Seconds to wait after holding and after flipping: more than the Workers' map
        /// cache (`mapCacheSeconds` in `shards status --json`), which is checked.
        #[arg(long, default_value_t = 12)]
        grace: u64,
        /// Rows per copy or purge call (1..=100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        page: u32,
    },
    /// Give up a held move: the bucket's turns go through where it is, and the copy the move
    /// started is purged.
    Release {
        #[arg(long, value_parser = clap::value_parser!(u8))]
        bucket: u8,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        page: u32,
    },
    /// Purge what a move left behind: the old copy of a flipped move (once every isolate has
    /// seen the flip), or the copy of a released one.
    Purge {
        #[arg(long, value_parser = clap::value_parser!(u8))]
        bucket: u8,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        page: u32,
    },
}

pub fn run(client: &Client, command: &ShardsCommand, as_json: bool) -> anyhow::Result<ExitCode> {
    let say = |s: String| {
        if !as_json {
            eprintln!("{s}");
        }
    };
    match command {
        ShardsCommand::Status => {
            let status = client.get("/admin/shards", &[])?;
            if as_json {
                output::print_json(&status);
            } else {
                println!("map: {}", status["map"].as_str().unwrap_or(""));
                println!(
                    "map cache: {} s (a move's --grace must be longer)",
                    status["mapCacheSeconds"]
                );
                for o in status["overrides"].as_array().into_iter().flatten() {
                    println!(
                        "bucket {}: {}{}{}{}",
                        o["bucket"],
                        o["binding"].as_str().unwrap_or(""),
                        if o["moving"] == true {
                            " (held: moving)"
                        } else {
                            ""
                        },
                        o["movedFrom"]
                            .as_str()
                            .map(|f| format!(" (old copy in {f} not purged yet)"))
                            .unwrap_or_default(),
                        o["copyTo"]
                            .as_str()
                            .filter(|_| o["moving"] != true)
                            .map(|c| format!(" (abandoned copy in {c} not purged yet)"))
                            .unwrap_or_default(),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ShardsCommand::Move {
            bucket,
            to,
            grace,
            page,
        } => move_bucket(client, *bucket, to, *grace, *page, as_json),
        ShardsCommand::Release { bucket, page } => {
            let released = step(client, "release", &json!({ "bucket": bucket }), &say)?;
            say(format!(
                "bucket {bucket}: released; its turns go through in {}",
                released["binding"].as_str().unwrap_or("")
            ));
            let purged = purge_all(client, *bucket, *page, &say)?;
            finish(
                as_json,
                json!({ "bucket": bucket, "released": true, "purged": purged }),
                format!("bucket {bucket} released: {purged} rows of its abandoned copy purged"),
            )
        }
        ShardsCommand::Purge { bucket, page } => {
            let purged = purge_all(client, *bucket, *page, &say)?;
            finish(
                as_json,
                json!({ "bucket": bucket, "purged": purged }),
                format!("bucket {bucket}: {purged} rows purged"),
            )
        }
    }
}

fn finish(as_json: bool, value: Value, text: String) -> anyhow::Result<ExitCode> {
    if as_json {
        output::print_json(&value);
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Codes of refusals that waiting cures, with how long this tool waits for them at most.
const WAIT_FOR: [&str; 2] = ["grace_not_elapsed", "consumer_unconfirmed"];
const MAX_WAIT: Duration = Duration::from_secs(600);

/// How often a step the Worker failed (5xx: a database or the Worker itself) is tried in all.
/// Every step can run again: a hold, copy page, flip, purge page or release repeated ends
/// where one run would.
const SERVER_TRIES: u32 = 5;

/// Runs one step, waiting and trying again while the Worker says it is too early, or failed.
fn step(client: &Client, name: &str, body: &Value, say: &dyn Fn(String)) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match client.post_step(&format!("/admin/shards/{name}"), body)? {
            Ok(answer) => return Ok(answer),
            Err(Refusal {
                code,
                message,
                retry_after,
            }) => {
                if code.starts_with(SERVER_FAILED) {
                    failures += 1;
                    if failures >= SERVER_TRIES {
                        bail!(
                            "{name} failed {failures} times ({code}): {message}; check the Worker's logs, then run the same command again: it goes on where it stopped"
                        );
                    }
                    let wait = retry_after.unwrap_or(2).clamp(1, 60);
                    say(format!(
                        "{name}: the Worker failed ({code}); trying again in {wait} s"
                    ));
                    std::thread::sleep(Duration::from_secs(wait));
                    continue;
                }
                if !WAIT_FOR.contains(&code.as_str()) || started.elapsed() > MAX_WAIT {
                    bail!("{name} refused ({code}): {message}");
                }
                let wait = retry_after.unwrap_or(1).clamp(1, 60);
                say(format!("{name}: {message}; waiting {wait} s"));
                std::thread::sleep(Duration::from_secs(wait));
            }
        }
    }
}

/// Purges page by page until nothing is left; returns the rows deleted.
fn purge_all(client: &Client, bucket: u8, page: u32, say: &dyn Fn(String)) -> anyhow::Result<u64> {
    let mut purged = 0;
    loop {
        let answer = step(
            client,
            "purge",
            &json!({ "bucket": bucket, "limit": page }),
            say,
        )?;
        purged += answer["deleted"].as_u64().unwrap_or(0);
        if answer["done"] == true {
            return Ok(purged);
        }
    }
}

fn move_bucket(
    client: &Client,
    bucket: u8,
    to: &str,
    grace: u64,
    page: u32,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let say = |s: String| {
        if !as_json {
            eprintln!("{s}");
        }
    };
    let status = client.get("/admin/shards", &[])?;
    let cache = status["mapCacheSeconds"].as_u64().unwrap_or(0);
    if grace <= cache {
        bail!(
            "--grace {grace} is not longer than the Workers' map cache ({cache} s, SHARD_MAP_CACHE_SECONDS): \
             an isolate could still route bucket {bucket} the old way; use --grace {}",
            cache + 1
        );
    }
    let this = status["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["bucket"] == json!(bucket))
        .cloned();
    let already = this
        .as_ref()
        .is_some_and(|o| o["binding"] == json!(to) && o["moving"] != true);
    let mut copied = 0;
    let mut summary = Value::Null;
    if !already {
        let held = step(client, "hold", &json!({ "bucket": bucket, "to": to }), &say)?;
        let from = held["binding"].as_str().unwrap_or("").to_owned();
        say(format!(
            "bucket {bucket}: held in {from}, which refuses its writes now; its turns wait in the queue"
        ));
        say(format!("waiting {grace} s for every isolate to see it"));
        std::thread::sleep(Duration::from_secs(grace));
        let mut cursor: Option<String> = None;
        loop {
            let answer = step(
                client,
                "copy",
                &json!({ "bucket": bucket, "to": to, "cursor": cursor, "limit": page }),
                &say,
            )?;
            copied += answer["copied"].as_u64().unwrap_or(0);
            cursor = answer["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        say(format!("copied {copied} rows from {from} to {to}"));
        let flipped = step(client, "flip", &json!({ "bucket": bucket, "to": to }), &say)?;
        summary = flipped["summary"].clone();
        say(format!(
            "verified and flipped: bucket {bucket} is in {to} ({summary}); its turns land there now"
        ));
        say(format!("waiting {grace} s before purging the old copy"));
        std::thread::sleep(Duration::from_secs(grace));
    } else {
        say(format!(
            "bucket {bucket} is already in {to}; finishing the purge"
        ));
    }
    let purged = purge_all(client, bucket, page, &say)?;
    say(format!("purged {purged} rows of the old copy"));
    finish(
        as_json,
        json!({
            "bucket": bucket,
            "to": to,
            "copied": copied,
            "purged": purged,
            "summary": summary,
        }),
        format!("bucket {bucket} moved to {to}: {copied} rows copied, {purged} purged"),
    )
}
