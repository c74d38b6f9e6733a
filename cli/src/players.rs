//! `chat-admin players`: a player's data, exported (JSON lines on stdout) or erased
//! everywhere it lives (after a question, unless `--yes`). An erasure is steps the Worker
//! repeats safely: run the same command again after a failure, and it finishes.

use crate::client::Client;
use crate::output;
use clap::Subcommand;
use std::io::{BufRead, Write};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PlayersCommand {
    /// Everything held on a player, as JSON lines on stdout.
    Export {
        /// The player's user id (a UUID).
        user_id: String,
    },
    /// Erase a player from every database, their sessions' actors, the dead letters and the
    /// archive; later turns of theirs are refused.
    Erase {
        user_id: String,
        /// List what would go, place by place, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask first.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(client: &Client, command: &PlayersCommand, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        PlayersCommand::Export { user_id } => {
            let text = client.get_text(&format!("/admin/players/{user_id}/export"))?;
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        PlayersCommand::Erase {
            user_id,
            dry_run,
            yes,
        } => {
            let path = format!("/admin/players/{user_id}/erase");
            let plan = client.post(&path, &serde_json::json!({ "dryRun": true }))?;
            if *dry_run {
                print_report(&plan, as_json, "would erase");
                return Ok(ExitCode::SUCCESS);
            }
            if !*yes {
                print_report(&plan, false, "will erase");
                eprint!("erase player {user_id} everywhere? This cannot be undone. Type yes: ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if answer.trim() != "yes" {
                    eprintln!("nothing erased");
                    return Ok(ExitCode::from(1));
                }
            }
            let done = client.post(&path, &serde_json::json!({ "dryRun": false }))?;
            print_report(&done, as_json, "erased");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_report(report: &serde_json::Value, as_json: bool, verb: &str) {
    if as_json {
        output::print_json(report);
        return;
    }
    if report["resumed"] == true {
        println!(
            "an earlier erasure of this player got at least as far as its tombstone; finishing it"
        );
    }
    for (db, tables) in report["databases"].as_object().into_iter().flatten() {
        let rows: Vec<String> = tables
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_i64().unwrap_or(0) > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        if !rows.is_empty() {
            println!("{verb} in {db}: {}", rows.join(", "));
        }
    }
    println!(
        "{verb}: {} sessions' actors, {} dead letters, {} archive objects",
        report["sessions"].as_array().map_or(0, Vec::len),
        report["deadLetters"],
        report["archiveObjects"]
    );
}
