//! `chat-admin archive`: moving turns older than an age out of D1 into the archive (R2),
//! page by page (each page is one call of `POST /admin/archive`, safe to repeat: a page
//! stopped anywhere is finished by the next run), and reading a player's archived events.

use crate::client::Client;
use crate::output;
use clap::Subcommand;
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ArchiveCommand {
    /// Archive every turn older than --older-than (the Cron Trigger does it with HOT_DAYS).
    Run {
        /// 30d, 12h, 90m, 45s or whole seconds; 0 archives everything.
        #[arg(long, value_parser = parse_age)]
        older_than: i64,
        /// Count what would be archived, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Resume at this cursor (printed as each page ends).
        #[arg(long)]
        from: Option<String>,
    },
    /// A player's point events in the archive.
    Events {
        /// The player's user id (a UUID).
        user_id: String,
    },
}

pub fn run(client: &Client, command: &ArchiveCommand, as_json: bool) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Run {
            older_than,
            dry_run,
            from,
        } => {
            let mut cursor = from.clone();
            let mut total = json!({ "dryRun": dry_run, "sessions": 0, "parts": 0, "turns": 0,
                "messages": 0, "pointEvents": 0, "points": 0, "bytes": 0, "skipped": [] });
            loop {
                let page = client.post(
                    "/admin/archive",
                    &json!({ "olderThanSeconds": older_than, "cursor": cursor, "dryRun": dry_run }),
                )?;
                for k in [
                    "sessions",
                    "parts",
                    "turns",
                    "messages",
                    "pointEvents",
                    "points",
                    "bytes",
                ] {
                    total[k] =
                        json!(total[k].as_i64().unwrap_or(0) + page[k].as_i64().unwrap_or(0));
                }
                for s in page["skipped"].as_array().into_iter().flatten() {
                    eprintln!("skipped {}: {}", s["database"], s["error"]);
                    total["skipped"]
                        .as_array_mut()
                        .expect("an array")
                        .push(s.clone());
                }
                cursor = page["nextCursor"].as_str().map(str::to_owned);
                match &cursor {
                    Some(c) if !as_json => eprintln!(
                        "{} {} turns so far; resume with --from {c}",
                        if *dry_run {
                            "would archive"
                        } else {
                            "archived"
                        },
                        total["turns"]
                    ),
                    Some(_) => {}
                    None => break,
                }
            }
            if as_json {
                output::print_json(&total);
            } else {
                println!(
                    "{} {} turns of {} sessions ({} messages, {} point events, {} points) in {} objects, {} bytes",
                    if *dry_run { "would archive" } else { "archived" },
                    total["turns"], total["sessions"], total["messages"], total["pointEvents"],
                    total["points"], total["parts"], total["bytes"]
                );
            }
            // A database skipped (down) is archived by the next run: say so in the status.
            Ok(
                if total["skipped"].as_array().is_some_and(|s| !s.is_empty()) {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                },
            )
        }
        ArchiveCommand::Events { user_id } => {
            // Every page, each event once by its id (an object a run did not commit may
            // repeat events another object holds).
            let mut cursor: Option<String> = None;
            let mut by_id: std::collections::BTreeMap<String, Value> = Default::default();
            let mut archived: Value;
            loop {
                let query: Vec<(&str, String)> =
                    cursor.iter().map(|c| ("cursor", c.clone())).collect();
                let page =
                    client.get(&format!("/admin/players/{user_id}/archived-events"), &query)?;
                for e in page["events"].as_array().into_iter().flatten() {
                    let id = e["id"].as_str().unwrap_or_default().to_owned();
                    by_id.entry(id).or_insert_with(|| e.clone());
                }
                archived = page["archived"].clone();
                cursor = page["nextCursor"].as_str().map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
            let mut events: Vec<Value> = by_id.into_values().collect();
            events.sort_by_key(|e| e["createdAt"].as_i64().unwrap_or(0));
            let points: i64 = events
                .iter()
                .map(|e| e["delta"].as_i64().unwrap_or(0))
                .sum();
            // What D1 counts of the player's archive must be what the events add up to.
            let counted = archived["points"].as_i64().unwrap_or(0);
            if as_json {
                output::print_json(&json!({ "userId": user_id, "events": events,
                    "points": points, "archived": archived }));
            } else {
                for e in &events {
                    println!(
                        "{}  {:>5}  {}  {}",
                        e["createdAt"],
                        e["delta"],
                        e["reason"],
                        e["id"].as_str().unwrap_or("")
                    );
                }
                println!("{} archived events, {points} points", events.len());
            }
            if counted != points {
                eprintln!("the archive's events add up to {points} points where D1 counts {counted}: run chat-admin reconcile --dry-run");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The longest age the Worker takes (100 years), so a typo fails here, not there.
const MAX_SECONDS: i64 = 100 * 365 * 86_400;

/// An age as operators write it: `30d`, `12h`, `90m`, `45s`, or whole seconds; in seconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(format!("'{s}': use a number with d, h, m or s (30d, 12h)")),
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| (0..=MAX_SECONDS).contains(n))
        .ok_or_else(|| format!("'{s}': use a whole number from 0 with d, h, m or s (30d, 12h)"))
}

#[cfg(test)]
mod age_tests {
    #[test]
    fn ages_read_as_operators_write_them() {
        use super::parse_age;
        assert_eq!(parse_age("30d"), Ok(30 * 86_400));
        assert_eq!(parse_age("12h"), Ok(43_200));
        assert_eq!(parse_age("90m"), Ok(5_400));
        assert_eq!(parse_age("0"), Ok(0));
        assert_eq!(parse_age("45s"), Ok(45));
        for bad in ["", "d", "-1d", "1.5d", "3w", "99999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
