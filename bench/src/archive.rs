//! The archive: turns archived per second from one database (with every D1 call of the
//! chat Worker made `delay` ms late, as a deployed D1 answers, and with none), D1 bytes and
//! R2 bytes per turn, and a history page's read time from D1 and, once archived, from R2.
//! The turns carry text of a chat's length and variety (words drawn from a vocabulary), not
//! the samples' few bytes, so that the bytes and the compression are a chat's.

use crate::load::median;
use crate::Params;
use chat_core::record::{sample, TurnRecord};
use e2e::{now_ms, Options, Workers};
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Words of the turns' text.
const WORDS: &[&str] = &[
    "the",
    "you",
    "I",
    "and",
    "to",
    "a",
    "it",
    "is",
    "that",
    "of",
    "in",
    "what",
    "me",
    "my",
    "so",
    "do",
    "this",
    "was",
    "for",
    "are",
    "we",
    "just",
    "with",
    "have",
    "not",
    "but",
    "be",
    "like",
    "your",
    "really",
    "know",
    "think",
    "about",
    "today",
    "tomorrow",
    "love",
    "time",
    "game",
    "play",
    "sorry",
    "thank",
    "maybe",
    "sure",
    "happy",
    "sad",
    "tired",
    "coffee",
    "music",
    "movie",
    "walk",
    "rain",
    "sunny",
    "friend",
    "work",
    "dinner",
    "remember",
    "story",
    "again",
    "always",
    "never",
    "little",
    "great",
    "wonderful",
    "strange",
    "promise",
    "secret",
    "flowers",
    "evening",
    "morning",
    "quiet",
    "laugh",
    "smile",
    "dream",
    "window",
    "city",
];

fn text(rng: &mut StdRng, words: usize) -> String {
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    out.push('.');
    out
}

/// One history page of each session, `reads` times, timed (ms).
async fn page_times(w: &Workers, sessions: &[(String, String)], reads: usize) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..reads {
        for (player, session) in sessions {
            let started = Instant::now();
            let (status, page) = w
                .get(
                    &format!("/api/sessions/{session}/messages?limit=50"),
                    player,
                )
                .await;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{page}");
            assert_eq!(
                page["messages"].as_array().map(Vec::len),
                Some(50),
                "{page}"
            );
        }
    }
    times
}

/// The chat Worker's meter (`GET /admin/usage`): on wrangler dev, the whole Worker.
async fn usage(w: &Workers) -> anyhow::Result<chat_core::usage::Usage> {
    let (status, body) = w.admin("GET", "/admin/usage", None).await;
    anyhow::ensure!(status == 200, "GET /admin/usage answered {status}: {body}");
    Ok(serde_json::from_value(body)?)
}

/// One run at `delay_ms`.
pub async fn run_at(params: &Params, delay_ms: u32) -> anyhow::Result<Value> {
    let (players, turns_each) = if params.quick { (4, 40) } else { (40, 60) };
    let mut chat_vars = Vec::new();
    if delay_ms > 0 {
        chat_vars.push(("FAULTS", format!("slow={delay_ms}")));
    }
    let w = Workers::start_with(Options {
        chat_vars,
        ..Options::default()
    })
    .await;
    let mut sessions = Vec::new();
    for p in 0..players {
        let player = format!("x:archive-{p}");
        sessions.push((player.clone(), w.session(&player, "kai").await));
    }
    let empty = w.database_bytes();
    let mut rng = StdRng::seed_from_u64(29);
    // A second apart, all in the past: the run archives every one of them.
    let start = now_ms() - 10 * 60_000;
    let mut records: Vec<TurnRecord> = Vec::new();
    for (p, (player, session)) in sessions.iter().enumerate() {
        let name = player.trim_start_matches("x:");
        let sid = Uuid::parse_str(session)?;
        for t in 0..turns_each {
            let n = (p * 1000 + t) as u64;
            let mut r = sample(name, sid, n, start + (t * 1000) as i64);
            let (asked, answered) = (rng.gen_range(6..30), rng.gen_range(20..70));
            r.user_message.content = text(&mut rng, asked);
            r.agent_message.content = text(&mut rng, answered);
            records.push(r);
        }
    }
    let turns = records.len();
    let bodies: Vec<Value> = records
        .chunks(100)
        .map(|c| json!({ "records": c.iter().map(|r| Value::String(r.encode())).collect::<Vec<_>>() }))
        .collect();
    let sent: Vec<(u16, Value)> = stream::iter(bodies.iter())
        .map(|b| w.admin("POST", "/admin/turns", Some(b)))
        .buffered(4)
        .collect()
        .await;
    for (status, body) in &sent {
        anyhow::ensure!(*status == 200, "enqueue failed: {status} {body}");
    }
    anyhow::ensure!(
        crate::check::wait_drained(&w, turns, Duration::from_secs(600)).await,
        "only {} of {turns} stored",
        crate::check::stored(&w)
    );
    let hot_bytes = w.database_bytes();
    let reads = if params.quick { 1 } else { 5 };
    let d1_pages = page_times(&w, &sessions, reads).await;

    // The whole run, page after page, as `chat-admin archive run` sends it, metered.
    let usage_before = usage(&w).await?;
    let started = Instant::now();
    let mut cursor = Value::Null;
    let (mut archived, mut bytes, mut pages) = (0i64, 0i64, 0);
    loop {
        let (status, page) = w
            .admin(
                "POST",
                "/admin/archive",
                Some(&json!({ "olderThanSeconds": 0, "cursor": cursor })),
            )
            .await;
        anyhow::ensure!(status == 200, "archive page: {status} {page}");
        archived += page["turns"].as_i64().unwrap_or(0);
        bytes += page["bytes"].as_i64().unwrap_or(0);
        pages += 1;
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let used = usage(&w).await?.since(&usage_before);
    anyhow::ensure!(archived as usize == turns, "archived {archived} of {turns}");
    anyhow::ensure!(crate::check::stored(&w) == 0, "turns left in D1");
    let archived_pages = page_times(&w, &sessions, reads).await;
    let after_bytes = w.database_bytes();
    let archive_rows: i64 = w.count("SELECT COUNT(*) FROM archive_players");
    let d1_p50 = median(d1_pages.clone());
    let r2_p50 = median(archived_pages.clone());
    let run = json!({
        "d1DelayMs": delay_ms,
        "turns": turns,
        "sessions": players,
        "pages": pages,
        "seconds": seconds,
        "turnsPerSecond": turns as f64 / seconds,
        "d1BytesPerTurn": (hot_bytes - empty) as f64 / turns as f64,
        "r2BytesPerTurn": bytes as f64 / turns as f64,
        "databaseBytesEmpty": empty,
        "databaseBytesHot": hot_bytes,
        "databaseBytesAfter": after_bytes,
        "archivePlayerRows": archive_rows,
        "d1PageP50Ms": d1_p50,
        "archivedPageP50Ms": r2_p50,
        "archivedToD1PageP50": r2_p50 / d1_p50,
        "pageReads": d1_pages.len(),
        "d1RowsWrittenPerTurn": used.d1_rows_written as f64 / turns as f64,
        "d1RowsReadPerTurn": used.d1_rows_read as f64 / turns as f64,
        "d1StatementsPerTurn": used.d1_statements as f64 / turns as f64,
    });
    eprintln!("archive at {delay_ms} ms: {run}");
    Ok(run)
}

/// Both delays: the production-like one and none.
pub async fn run(params: &Params) -> anyhow::Result<Value> {
    let slow = run_at(params, params.d1_delay_ms).await?;
    let fast = run_at(params, 0).await?;
    Ok(json!({ "slowD1": slow, "localD1": fast }))
}
