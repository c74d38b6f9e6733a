//! What people read: tables. With `--json` the API's own JSON is printed instead.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde_json::Value;

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub fn letters_table(letters: &[Value]) {
    let mut t = table(&[
        "id",
        "class",
        "status",
        "attempts",
        "replays",
        "last failure",
        "error",
    ]);
    for l in letters {
        t.add_row(vec![
            text(&l["id"]),
            text(&l["class"]),
            text(&l["status"]),
            text(&l["attempts"]),
            text(&l["replayCount"]),
            text(&l["lastFailedAt"]),
            short(&text(&l["error"]), 60),
        ]);
    }
    println!("{t}");
    println!("{} letters", letters.len());
}

pub fn letter_detail(l: &Value) {
    let mut t = table(&["field", "value"]);
    for (name, key) in [
        ("id", "id"),
        ("turn", "turnId"),
        ("class", "class"),
        ("status", "status"),
        ("error", "error"),
        ("attempts", "attempts"),
        ("first failure", "firstFailedAt"),
        ("last failure", "lastFailedAt"),
        ("replays", "replayCount"),
    ] {
        t.add_row(vec![name.to_owned(), text(&l[key])]);
    }
    println!("{t}");
    println!("payload:\n{}", text(&l["payload"]));
}

pub fn verdicts_table(letters: &[Value]) {
    let mut t = table(&["id", "class", "verdict", "requeued", "reason"]);
    for l in letters {
        t.add_row(vec![
            text(&l["id"]),
            text(&l["class"]),
            text(&l["verdict"]),
            text(&l["requeued"]),
            short(&text(&l["reason"]), 60),
        ]);
    }
    println!("{t}");
}

pub fn reconcile_report(r: &Value) {
    let drifted = r["drifted"].as_array().cloned().unwrap_or_default();
    let checked = r["checked"].as_u64().unwrap_or(0);
    if drifted.is_empty() {
        println!("no drift: every user's stats equal the ledger ({checked} users checked)");
        return;
    }
    let mut t = table(&[
        "user",
        "stored total",
        "ledger total",
        "stored level",
        "expected level",
        "stored last",
        "expected last",
    ]);
    for d in &drifted {
        t.add_row(
            [
                "userId",
                "storedTotal",
                "ledgerTotal",
                "storedLevel",
                "expectedLevel",
                "storedLastMessageAt",
                "expectedLastMessageAt",
            ]
            .iter()
            .map(|k| text(&d[*k]))
            .collect::<Vec<_>>(),
        );
    }
    println!("{t}");
    if r["dryRun"] == true {
        println!(
            "{} users drifted (dry run: nothing changed; run without --dry-run to fix)",
            drifted.len()
        );
    } else {
        println!(
            "{} users drifted, {} fixed",
            drifted.len(),
            text(&r["fixed"])
        );
    }
}

pub fn stats_table(s: &Value) {
    let mut t = table(&["figure", "value"]);
    for (name, v) in [
        ("users", &s["users"]),
        ("sessions", &s["sessions"]),
        ("turns stored", &s["turns"]),
        ("total points", &s["totalPoints"]),
        ("dead letters pending", &s["deadLetters"]["pending"]),
        ("dead letters replayed", &s["deadLetters"]["replayed"]),
        ("dead letters discarded", &s["deadLetters"]["discarded"]),
        ("replay runs", &s["replayRuns"]),
    ] {
        t.add_row(vec![name.to_owned(), text(v)]);
    }
    if let Some(classes) = s["deadLetters"]["pendingByClass"].as_object() {
        for (class, n) in classes {
            t.add_row(vec![format!("  pending {class}"), text(n)]);
        }
    }
    println!("{t}");
}

pub fn join_ids(ids: &Value) -> String {
    ids.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
