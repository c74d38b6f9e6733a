//! `chat-admin`: the operators' tool over the chat Worker's admin API.
//!
//! - [`client`]: the HTTP client, with errors that say what to do.
//! - [`replay`]: a resumable, rate-limited replay (or dry run) with progress.
//! - [`output`]: tables for people, `--json` for programs.
//! - [`shards`]: the bucket map, and moving a bucket to another database.
//! - [`archive`]: moving old turns out of D1 into R2, and a player's archived events.
//! - [`players`]: a player's data exported, or erased everywhere it lives.
//!
//! ```text
//! export CHAT_ADMIN_TOKEN=…            # the Worker's ADMIN_TOKEN
//! chat-admin list --status pending
//! chat-admin replay --dry-run
//! chat-admin replay --rate 20
//! chat-admin reconcile --dry-run
//! chat-admin stats
//! chat-admin shards move --bucket 17 --to DB_1
//! chat-admin archive run --older-than 30d --dry-run
//! ```

mod archive;
mod client;
mod output;
mod players;
mod replay;
mod shards;

use clap::{Args, Parser, Subcommand};
use client::Client;
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chat-admin",
    version,
    about = "Inspect, replay and reconcile the chat pipeline's dead letters"
)]
struct Cli {
    /// The chat Worker's base URL.
    #[arg(
        long,
        env = "CHAT_ADMIN_URL",
        default_value = "http://localhost:8787",
        global = true
    )]
    url: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which letters.
#[derive(Args, Clone, Default)]
struct Filter {
    /// pending, replayed or discarded.
    #[arg(long)]
    status: Option<String>,
    /// undecodable, unknown_version, invalid, conflict, transient or retries_exhausted.
    #[arg(long)]
    class: Option<String>,
    /// Text the error contains.
    #[arg(long)]
    grep: Option<String>,
    /// Last failure at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    since: Option<String>,
    /// Last failure before this time (RFC 3339 or epoch ms).
    #[arg(long)]
    until: Option<String>,
}

impl Filter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("class", &self.class),
            ("q", &self.grep),
            ("from", &self.since),
            ("to", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn json(&self) -> Value {
        Value::Object(
            self.pairs()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect(),
        )
    }
}

#[derive(Subcommand)]
enum Command {
    /// List dead letters, oldest failure first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Most letters to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
    /// Show one dead letter with its payload.
    Show { id: String },
    /// Replay dead letters onto the turn queue (pending ones unless --status says otherwise).
    Replay(replay::ReplayArgs),
    /// Mark dead letters discarded.
    Discard {
        /// Letter ids (otherwise the filter chooses).
        #[arg(long, value_delimiter = ',')]
        ids: Vec<String>,
        #[command(flatten)]
        filter: Filter,
        /// Say what would be discarded, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most letters to discard.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Recompute user_stats from the ledger and report (and fix) drift, a page of users at a
    /// time until every user is checked.
    Reconcile {
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        /// Users per page (1..=1000); each page is one atomic check and fix.
        #[arg(long, default_value_t = 500)]
        page: u32,
        /// Resume after this cursor (printed as each page ends).
        #[arg(long)]
        from: Option<String>,
    },
    /// Pipeline figures: users, turns, dead letters by status and class.
    Stats,
    /// The bucket map over the D1 databases, and bucket moves.
    #[command(subcommand)]
    Shards(shards::ShardsCommand),
    /// The archive: turns older than an age move out of D1 into R2.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// A player's data: export it, or erase it everywhere it lives.
    #[command(subcommand)]
    Players(players::PlayersCommand),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(&cli.url)?;
    match cli.command {
        Command::List { filter, limit } => {
            let letters = client.list_all(&filter.pairs(), limit)?;
            if cli.json {
                output::print_json(&json!({ "letters": letters }));
            } else if letters.is_empty() {
                eprintln!("no dead letters match these filters");
            } else {
                output::letters_table(&letters);
            }
        }
        Command::Show { id } => {
            let letter = client.get(&format!("/admin/dead-letters/{id}"), &[])?;
            if cli.json {
                output::print_json(&letter);
            } else {
                output::letter_detail(&letter);
            }
        }
        Command::Replay(args) => return replay::run(&client, &args, cli.json),
        Command::Discard {
            ids,
            filter,
            dry_run,
            limit,
        } => {
            let mut body = json!({ "dryRun": dry_run, "limit": limit });
            if ids.is_empty() {
                body["filter"] = filter.json();
            } else {
                body["ids"] = json!(ids);
            }
            let answer = client.post("/admin/dead-letters/discard", &body)?;
            let matched = answer["matched"].as_array().map_or(0, Vec::len);
            if matched == 0 {
                eprintln!("nothing matched: no letter to discard with these ids or filters (already discarded?)");
                return Ok(ExitCode::from(1));
            }
            if cli.json {
                output::print_json(&answer);
            } else if dry_run {
                println!(
                    "would discard {matched} letters: {}",
                    output::join_ids(&answer["matched"])
                );
            } else {
                println!("discarded {} letters", answer["discarded"]);
            }
        }
        Command::Reconcile {
            dry_run,
            page,
            from,
        } => {
            // Page by page: each call checks `page` users after the cursor, so the run
            // scales with the number of users and can resume where it stopped.
            let mut cursor = from;
            let (mut checked, mut fixed) = (0, 0);
            let mut drifted = Vec::new();
            loop {
                let answer = client.post(
                    "/admin/reconcile",
                    &json!({ "dryRun": dry_run, "limit": page, "cursor": cursor }),
                )?;
                checked += answer["checked"].as_u64().unwrap_or(0);
                fixed += answer["fixed"].as_u64().unwrap_or(0);
                drifted.extend(answer["drifted"].as_array().cloned().unwrap_or_default());
                cursor = answer["nextCursor"].as_str().map(str::to_owned);
                match &cursor {
                    Some(c) if !cli.json => {
                        eprintln!("checked {checked} users; resume with --from {c}")
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let total = json!({ "dryRun": dry_run, "checked": checked, "drifted": drifted, "fixed": fixed });
            if cli.json {
                output::print_json(&total);
            } else {
                output::reconcile_report(&total);
            }
        }
        Command::Shards(command) => return shards::run(&client, &command, cli.json),
        Command::Archive(command) => return archive::run(&client, &command, cli.json),
        Command::Players(command) => return players::run(&client, &command, cli.json),
        Command::Stats => {
            let stats = client.get("/admin/stats", &[])?;
            if cli.json {
                output::print_json(&stats);
            } else {
                output::stats_table(&stats);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
