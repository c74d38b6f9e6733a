//! `chat-admin shards`: the bucket map, and moving a bucket to another database while the
//! game runs. A move is five steps of the admin API, each safe to repeat, so running the
//! same command again after a stop finishes the move:
//!
//! 1. hold: the bucket's turns wait in the queue (the chat keeps answering);
//! 2. wait `--grace` seconds, longer than the chat Worker's map cache, so that no isolate
//!    still writes the bucket where it was;
//! 3. copy the bucket's rows page by page, then flip: the Worker verifies row counts and
//!    point sums on both sides, maps the bucket to its new database, and lets its turns in;
//! 4. wait `--grace` again, so that no isolate still reads the old copy;
//! 5. purge the old copy, page by page.

use crate::client::Client;
use crate::output;
use clap::Subcommand;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

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
        /// Seconds to wait after holding and after flipping: more than the chat Worker's
        /// SHARD_MAP_CACHE_SECONDS.
        #[arg(long, default_value_t = 12)]
        grace: u64,
        /// Rows per copy or purge call (1..=100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        page: u32,
    },
}

pub fn run(client: &Client, command: &ShardsCommand, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        ShardsCommand::Status => {
            let status = client.get("/admin/shards", &[])?;
            if as_json {
                output::print_json(&status);
            } else {
                println!("map: {}", status["map"].as_str().unwrap_or(""));
                for o in status["overrides"].as_array().into_iter().flatten() {
                    println!(
                        "bucket {}: {}{}{}",
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
        let held = client.post("/admin/shards/hold", &json!({ "bucket": bucket }))?;
        let from = held["binding"].as_str().unwrap_or("").to_owned();
        say(format!(
            "bucket {bucket}: held in {from}; its turns wait in the queue"
        ));
        say(format!("waiting {grace} s for every isolate to see it"));
        std::thread::sleep(Duration::from_secs(grace));
        let mut cursor: Option<String> = None;
        loop {
            let step = client.post(
                "/admin/shards/copy",
                &json!({ "bucket": bucket, "to": to, "cursor": cursor, "limit": page }),
            )?;
            copied += step["copied"].as_u64().unwrap_or(0);
            cursor = step["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        say(format!("copied {copied} rows from {from} to {to}"));
        let flipped = client.post("/admin/shards/flip", &json!({ "bucket": bucket, "to": to }))?;
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
    let mut purged = 0;
    loop {
        let step = client.post(
            "/admin/shards/purge",
            &json!({ "bucket": bucket, "limit": page }),
        )?;
        purged += step["deleted"].as_u64().unwrap_or(0);
        if step["done"] == true {
            break;
        }
    }
    say(format!("purged {purged} rows of the old copy"));
    if as_json {
        output::print_json(&json!({
            "bucket": bucket,
            "to": to,
            "copied": copied,
            "purged": purged,
            "summary": summary,
        }));
    } else {
        println!("bucket {bucket} moved to {to}: {copied} rows copied, {purged} purged");
    }
    Ok(ExitCode::SUCCESS)
}
