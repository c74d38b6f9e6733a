//! The archive end to end, on workerd through `wrangler dev` with the real local D1, queue
//! and R2: a session's turns moved out of D1 by `POST /admin/archive` (dry run first), its
//! history read back whole across both tiers (even with a run between two pages), turns
//! delivered again after they were archived recognised and never counted twice, a late turn
//! whose time falls inside an archived object applied once, the ledger balanced across the
//! tiers (reconcile finds nothing, the archived events add up), the Cron Trigger running
//! the archiver, and bad input refused with a stable code.

use chat_core::record::{sample, TurnRecord};
use e2e::{now_ms, wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const PLAYER: &str = "x:archivist";
const NAME: &str = "archivist";

/// Runs an archive to its end: the pages' sums (turns, messages, pointEvents, bytes).
async fn archive(w: &Workers, older_than: i64, dry_run: bool) -> (i64, i64, i64, i64) {
    let mut sums = (0, 0, 0, 0);
    for page in w.archive_run(older_than, dry_run).await {
        assert_eq!(page["skipped"], json!([]), "{page}");
        sums.0 += page["turns"].as_i64().unwrap();
        sums.1 += page["messages"].as_i64().unwrap();
        sums.2 += page["pointEvents"].as_i64().unwrap();
        sums.3 += page["bytes"].as_i64().unwrap();
    }
    sums
}

/// The session's whole history, walked back `limit` at a time (with an archive run after
/// the first page when `run_between`): (createdAt, id) oldest first.
async fn walk(
    w: &Workers,
    session: &str,
    limit: usize,
    run_between: bool,
) -> Vec<(String, String)> {
    let mut first = true;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..200 {
        let path = match &before {
            None => format!("/api/sessions/{session}/messages?limit={limit}"),
            Some(b) => format!("/api/sessions/{session}/messages?limit={limit}&before={b}"),
        };
        let (status, page) = w.get(&path, PLAYER).await;
        assert_eq!(status, 200, "{page}");
        let rows: Vec<(String, String)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["createdAt"].as_str().unwrap().to_owned(),
                    m["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert!(rows.len() <= limit);
        out.splice(0..0, rows);
        match page["nextBefore"].as_str() {
            None => return out,
            Some(b) => before = Some(b.to_owned()),
        }
        if run_between && first {
            archive(w, 0, false).await;
        }
        first = false;
    }
    panic!("the walk never ended");
}

async fn total(w: &Workers) -> i64 {
    let (status, stats) = w.get("/api/me/stats", PLAYER).await;
    assert_eq!(status, 200, "{stats}");
    stats["totalPoints"].as_i64().unwrap()
}

async fn queue(w: &Workers, records: &[TurnRecord]) {
    let records: Vec<Value> = records.iter().map(|r| Value::String(r.encode())).collect();
    let (status, body) = w
        .admin("POST", "/admin/turns", Some(&json!({ "records": records })))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Deliveries the consumer found in the archive, so far.
fn found_in_archive(w: &Workers) -> i64 {
    w.log_events("turn batch")
        .iter()
        .map(|e| e["archived"].as_i64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_the_ledger_span_d1_and_the_archive() {
    let w = Workers::start().await;
    let session = w.session(PLAYER, "kai").await;
    let sid = Uuid::parse_str(&session).unwrap();
    // Turns played through the API, and turns queued as records (kept to deliver again).
    for i in 0..6 {
        w.chat_ok(PLAYER, &session, &format!("hello {i}")).await;
    }
    let start = now_ms();
    let records: Vec<TurnRecord> = (0..4)
        .map(|n| sample(NAME, sid, 9_000 + n, start + 10 * n as i64))
        .collect();
    queue(&w, &records).await;
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_in(&session) == 10).await,
        "ten turns stored\n{}",
        w.log_tail()
    );
    let before = walk(&w, &session, 3, false).await;
    assert_eq!(before.len(), 20);
    let points = total(&w).await;
    let d1_messages = w.count("SELECT COUNT(*) FROM chat_messages");

    // A dry run counts and changes nothing.
    let dry = archive(&w, 0, true).await;
    assert_eq!(dry.0, 10, "{dry:?}");
    assert_eq!((dry.1, dry.2), (20, 10));
    assert_eq!(w.count("SELECT COUNT(*) FROM chat_messages"), d1_messages);
    assert_eq!(w.count("SELECT COUNT(*) FROM archive_players"), 0);

    // The run moves every turn, and the session's row with its last turn; D1 keeps one row
    // for the player: what the archive holds of them, their archived points among it.
    let done = archive(&w, 0, false).await;
    assert_eq!((done.0, done.1, done.2), (10, 20, 10), "{done:?}");
    assert!(done.3 > 0);
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM chat_messages WHERE session_id = '{session}'"
        )),
        0
    );
    assert_eq!(w.stored_in(&session), 0);
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM chat_sessions WHERE id = '{session}'"
        )),
        0,
        "the session's row went with its last turn"
    );
    assert_eq!(
        w.count("SELECT COALESCE(SUM(points), 0) FROM archive_players"),
        points,
        "the archived balance is the total"
    );
    let (status, stats) = w.admin("GET", "/admin/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["sessions"], json!(1), "{stats}");
    assert_eq!(stats["turns"], json!(10), "{stats}");
    // A second run finds nothing.
    assert_eq!(archive(&w, 0, false).await.0, 0);
    assert_eq!(
        walk(&w, &session, 3, false).await,
        before,
        "history reads whole from R2"
    );
    assert_eq!(total(&w).await, points);

    // The queued turns delivered again: recognised in the archive, never stored again.
    queue(&w, &records).await;
    assert!(
        wait_for(Duration::from_secs(30), || found_in_archive(&w) >= 4).await,
        "four deliveries found in the archive\n{}",
        w.log_tail()
    );
    assert_eq!(w.stored_in(&session), 0);
    assert_eq!(total(&w).await, points);

    // A dead letter of an archived turn (a transient failure whose turn a retry stored
    // before it was archived): the replay's dry run calls it already applied, from R2.
    let now = now_ms();
    w.shard("DB_0")
        .execute(
            "INSERT INTO dead_letters (id, turn_id, payload, error_class, error_text, attempts,
                 first_failed_at, last_failed_at, status, replay_count, created_at, updated_at)
             VALUES ('letter-archived', ?1, ?2, 'transient', 'D1 was down', 6, ?3, ?3, 'pending', 0, ?3, ?3)",
            rusqlite::params![records[1].turn_id.to_string(), records[1].encode(), now],
        )
        .unwrap();
    let (status, dry) = w
        .admin(
            "POST",
            "/admin/dead-letters/replay",
            Some(&json!({ "dryRun": true, "ids": ["letter-archived"] })),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["letters"][0]["verdict"], "already_applied", "{dry}");
    assert_eq!(dry["counts"]["alreadyApplied"], 1, "{dry}");

    // A late turn, its time inside the archived object's range: applied once, in D1.
    let late = sample(NAME, sid, 9_100, start + 15);
    queue(&w, std::slice::from_ref(&late)).await;
    let late_id = late.turn_id.to_string();
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turn(&late_id) == 1).await,
        "the late turn is stored\n{}",
        w.log_tail()
    );
    let points = points + i64::from(late.point_event.delta);
    assert_eq!(total(&w).await, points);

    // More turns, then a walk with an archive run between its pages: every message once.
    for i in 0..3 {
        w.chat_ok(PLAYER, &session, &format!("later {i}")).await;
    }
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_in(&session) == 4).await,
        "{}",
        w.log_tail()
    );
    let expected = walk(&w, &session, 100, false).await;
    assert_eq!(expected.len(), 28);
    let got = walk(&w, &session, 3, true).await;
    assert_eq!(
        got, expected,
        "a run between two pages: no gap, no duplicate"
    );
    assert_eq!(w.stored_in(&session), 0, "everything archived");

    // The ledger balances across tiers: reconcile finds no drift, the events add up.
    let (status, report) = w
        .admin("POST", "/admin/reconcile", Some(&json!({ "dryRun": true })))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["drifted"], json!([]), "{report}");
    let user = chat_core::identity::Identity::new(chat_core::identity::AuthProvider::X, NAME)
        .unwrap()
        .user_id();
    let (status, events) = w
        .admin(
            "GET",
            &format!("/admin/players/{user}/archived-events"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let listed = events["events"].as_array().unwrap();
    assert_eq!(listed.len(), 14);
    let sum: i64 = listed.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(
        (sum, events["archived"]["points"].as_i64().unwrap()),
        (points, points)
    );
    assert_eq!(events["nextCursor"], Value::Null);
    assert_eq!(total(&w).await, points);

    // Bad input: a stable code, nothing changed.
    for (body, code) in [
        (json!({ "olderThanSeconds": "30d" }), "invalid_older_than"),
        (json!({ "olderThanSeconds": -1 }), "invalid_older_than"),
        (
            json!({ "olderThanSeconds": 0, "cursor": "DB_7/" }),
            "invalid_cursor",
        ),
        (
            json!({ "olderThanSeconds": 0, "cursor": "DB_0/x" }),
            "invalid_cursor",
        ),
    ] {
        let (status, answer) = w.admin("POST", "/admin/archive", Some(&body)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let other = w.session(PLAYER, "kai").await;
    w.chat_ok(PLAYER, &other, "elsewhere").await;
    let (_, page) = w
        .get(&format!("/api/sessions/{session}/messages?limit=2"), PLAYER)
        .await;
    let cursor = page["nextBefore"].as_str().unwrap().to_owned();
    let (status, answer) = w
        .get(
            &format!("/api/sessions/{other}/messages?before={cursor}"),
            PLAYER,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{answer}"
    );
    let (status, answer) = w
        .admin(
            "GET",
            &format!("/admin/players/{user}/archived-events?cursor=someone-else/x"),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{answer}"
    );
    let (status, answer) = w
        .admin("GET", "/admin/players/nope/archived-events", None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_user_id")),
        "{answer}"
    );

    // The Cron Trigger queues a job per database (HOT_DAYS = 30: nothing that old here).
    let r = reqwest::get(w.url("/__scheduled?cron=17+3+*+*+*"))
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        wait_for(Duration::from_secs(20), || w
            .log_events("archive page")
            .len()
            >= 2)
        .await,
        "a page of each database's job\n{}",
        w.log_tail()
    );
}

/// The Cron Trigger archives through its job queue: with `HOT_DAYS = 0` every turn goes,
/// database by database, a few pages a delivery, and history and totals read the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_trigger_archives_through_its_job_queue() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("HOT_DAYS", "0".into())],
        ..Options::default()
    })
    .await;
    let mut sessions = Vec::new();
    for p in 0..4 {
        let player = format!("x:cron-{p}");
        let session = w.session(&player, "kai").await;
        for i in 0..3 {
            w.chat_ok(&player, &session, &format!("turn {i}")).await;
        }
        sessions.push((player, session));
    }
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turns() == 12).await,
        "{}",
        w.log_tail()
    );
    let r = reqwest::get(w.url("/__scheduled?cron=17+3+*+*+*"))
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        wait_for(Duration::from_secs(60), || w.stored_turns() == 0).await,
        "every turn archived by the jobs\n{}",
        w.log_tail()
    );
    assert_eq!(
        w.count("SELECT COALESCE(SUM(turns), 0) FROM archive_players"),
        12
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM chat_sessions"), 0);
    for (player, session) in &sessions {
        let (status, page) = w
            .get(&format!("/api/sessions/{session}/messages"), player)
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["messages"].as_array().map(Vec::len), Some(6), "{page}");
    }
}

/// A database that is down is skipped and named, and the others are archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_skipped_and_named() {
    let until = now_ms() + 180_000;
    let w = Workers::start_with(Options {
        databases: 3,
        chat_vars: vec![("FAULTS", format!("down=DB_2@{until}"))],
        ..Options::default()
    })
    .await;
    // A player of DB_1 (buckets 85 to 169 of `0-84=DB_0,85-169=DB_1,170-255=DB_2`).
    let name = (0..)
        .map(|i| format!("skip-{i}"))
        .find(|n| {
            let user = chat_core::identity::Identity::new(chat_core::identity::AuthProvider::X, n)
                .unwrap()
                .user_id();
            (85..170).contains(&chat_core::shards::bucket(&user))
        })
        .unwrap();
    let player = format!("x:{name}");
    let session = w.session(&player, "kai").await;
    w.chat_ok(&player, &session, "one").await;
    w.chat_ok(&player, &session, "two").await;
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_in(&session) == 2).await,
        "{}",
        w.log_tail()
    );
    let (mut turns, mut skipped) = (0, Vec::new());
    for page in w.archive_run(0, false).await {
        turns += page["turns"].as_i64().unwrap();
        skipped.extend(page["skipped"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(turns, 2, "DB_1's turns archived");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["database"], "DB_2");
    assert!(skipped[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
}
