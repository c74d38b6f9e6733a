//! Failures end to end: poison records of every permanent class, injected D1 faults, the
//! dead-letter archive, replay (dry run and real, twice), discard, reconcile and admin auth.

use chat_core::record::{sample, TurnRecord};
use e2e::{now_ms, wait_for, Options, Workers, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

async fn start() -> Workers {
    Workers::start_with(Options {
        consumer_vars: vec![
            ("FAULTS", "markers".into()),
            ("RETRY_BASE_SECONDS", "0".into()),
        ],
        ..Options::default()
    })
    .await
}

fn letters(w: &Workers, class: &str) -> i64 {
    w.count(&format!(
        "SELECT COUNT(*) FROM dead_letters WHERE error_class = '{class}'"
    ))
}

/// Runs `sql` on the first (or, with `last`, the last) database that holds users.
fn in_a_database_with_users(w: &Workers, last: bool, sql: &str) {
    let mut shards = w.shards();
    if last {
        shards.reverse();
    }
    let db = shards
        .into_iter()
        .map(|b| w.shard(b))
        .find(|db| {
            db.query_row("SELECT COUNT(*) FROM user_stats", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                > 0
        })
        .expect("a database with users");
    assert_eq!(db.execute(sql, []).unwrap(), 1, "{sql}");
}

/// Every page of a reconcile run: (users drifted, users fixed).
async fn reconcile_all(w: &Workers, dry_run: bool) -> (usize, i64) {
    let (mut cursor, mut drifted, mut fixed) = (Value::Null, 0, 0);
    for _ in 0..10 {
        let (status, page) = w
            .admin(
                "POST",
                "/admin/reconcile",
                Some(&json!({ "dryRun": dry_run, "cursor": cursor })),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        drifted += page["drifted"].as_array().unwrap().len();
        fixed += page["fixed"].as_i64().unwrap();
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            return (drifted, fixed);
        }
    }
    panic!("reconcile pages never end");
}

fn ledger_drift(w: &Workers) -> i64 {
    w.count("SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_dead_lettered_replayed_and_reconciled() {
    let w = start().await;
    let alice = "x:alice";
    let session = w.session(alice, "kai").await;
    let original = w.chat_ok(alice, &session, "hello there").await;
    let original_id = original["messageId"].as_str().unwrap().to_owned();
    assert!(wait_for(Duration::from_secs(30), || w.stored_turn(&original_id) == 1).await);

    // Poison of every permanent class, with valid turns in the same call (so the same batch).
    let session_id = Uuid::parse_str(&session).unwrap();
    let valid: Vec<TurnRecord> = (0..3)
        .map(|n| sample("bob", session_id, 900 + n, now_ms()))
        .collect();
    let mut invalid = sample("carol", session_id, 1, now_ms());
    invalid.user.id = Uuid::nil();
    let mut unknown: Value =
        serde_json::from_str(&sample("dave", session_id, 2, now_ms()).encode()).unwrap();
    unknown["v"] = 99.into();
    let stored_turn: Value = {
        let db = w.db();
        let (user_id, content): (String, String) = db
            .query_row(
                "SELECT user_id, content FROM chat_messages WHERE id = ?1",
                [&original_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        json!({ "user_id": user_id, "content": content })
    };
    assert!(stored_turn["content"] == "hello there");
    // Same turn id as Alice's stored turn, different words: a conflict.
    let mut conflict = sample("alice", session_id, 3, now_ms());
    conflict.turn_id = Uuid::parse_str(&original_id).unwrap();
    let ids = chat_core::ids::TurnIds::from_turn_id(conflict.turn_id).unwrap();
    conflict.agent_message.id = ids.agent_message;
    conflict.point_event.id = ids.point_event;
    conflict.session_id = session_id;
    conflict.user_message.content = "words Alice never said".into();
    let mut records: Vec<Value> = valid.iter().map(|r| Value::String(r.encode())).collect();
    records.extend([
        Value::String("this is not json {".into()),
        unknown,
        Value::String(invalid.encode()),
        Value::String(conflict.encode()),
    ]);
    let (status, body) = w
        .admin("POST", "/admin/turns", Some(&json!({ "records": records })))
        .await;
    assert_eq!((status, &body["queued"]), (200, &json!(7)), "{body}");
    let classes = ["undecodable", "unknown_version", "invalid", "conflict"];
    assert!(
        wait_for(Duration::from_secs(30), || classes
            .iter()
            .all(|c| letters(&w, c) == 1))
        .await,
        "every permanent class archived once\n{}",
        w.log_tail()
    );
    for r in &valid {
        assert!(
            w.stored_turn(&r.turn_id.to_string()) == 1,
            "valid turns of the poisoned batch are stored"
        );
    }
    let content: String = w
        .db()
        .query_row(
            "SELECT content FROM chat_messages WHERE id = ?1",
            [&original_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(content, "hello there", "the conflict changed nothing");
    let (payload, attempts): (String, i64) = w
        .db()
        .query_row(
            "SELECT payload, attempts FROM dead_letters WHERE error_class = 'undecodable'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (payload.as_str(), attempts),
        ("this is not json {", 1),
        "kept verbatim, not retried"
    );

    // A transient fault once: retried, then stored; nothing dead-lettered.
    let once = w
        .chat_ok(alice, &session, "retry me [fault:before-once]")
        .await;
    let once_id = once["messageId"].as_str().unwrap().to_owned();
    // A write that commits but whose handler fails: delivered again, stored once.
    let after = w
        .chat_ok(alice, &session, "twice delivered [fault:after-once]")
        .await;
    let after_id = after["messageId"].as_str().unwrap().to_owned();
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turn(&once_id) == 1
            && w.stored_turn(&after_id) == 1)
        .await,
        "{}",
        w.log_tail()
    );
    // A fault that outlasts max_retries: dead-lettered with its error on the last attempt.
    let until = now_ms() + 20_000;
    let stuck = w
        .chat_ok(
            "x:erin",
            &w.session("x:erin", "rin").await,
            &format!("stuck [fault:before-until={until}]"),
        )
        .await;
    let stuck_id = stuck["messageId"].as_str().unwrap().to_owned();
    assert!(
        wait_for(Duration::from_secs(60), || letters(&w, "transient") == 1).await,
        "{}",
        w.log_tail()
    );
    let (error, attempts, turn_id): (String, i64, String) = w
        .db()
        .query_row("SELECT error_text, attempts, turn_id FROM dead_letters WHERE error_class = 'transient'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert!(error.contains("injected fault before the write"), "{error}");
    assert_eq!(
        (attempts, turn_id.as_str()),
        (6, stuck_id.as_str()),
        "max_retries 5 = 6 deliveries"
    );
    assert_eq!(w.stored_turn(&stuck_id), 0);
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        5,
        "the once-faulted turns left no letter"
    );

    // Listing, filters and paging.
    let (status, page) = w.admin("GET", "/admin/dead-letters?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["letters"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let (_, rest) = w
        .admin(
            "GET",
            &format!("/admin/dead-letters?limit=10&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["letters"].as_array().unwrap().len(), 3);
    assert!(rest["nextCursor"].is_null());
    let (_, only) = w
        .admin(
            "GET",
            "/admin/dead-letters?class=transient&q=injected",
            None,
        )
        .await;
    assert_eq!(only["letters"][0]["turnId"], stuck_id.as_str());
    let letter_id = only["letters"][0]["id"].as_str().unwrap().to_owned();
    let (status, one) = w
        .admin("GET", &format!("/admin/dead-letters/{letter_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(one["payload"].as_str().unwrap().contains(&stuck_id));
    let (status, missing) = w
        .admin("GET", "/admin/dead-letters/no-such-letter", None)
        .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("letter_not_found"))
    );
    let (status, bad) = w
        .admin("GET", "/admin/dead-letters?class=cosmic", None)
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    // Dry run: classifies every letter and changes nothing.
    let before_dry = (
        w.count("SELECT COUNT(*) FROM point_events"),
        w.count("SELECT COUNT(*) FROM dead_letters WHERE status = 'pending'"),
    );
    let (status, dry) = w
        .admin(
            "POST",
            "/admin/dead-letters/replay",
            Some(&json!({ "dryRun": true })),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    let verdict = |report: &Value, class: &str| -> String {
        report["letters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["class"] == class)
            .unwrap()["verdict"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(verdict(&dry, "undecodable"), "invalid");
    assert_eq!(verdict(&dry, "unknown_version"), "invalid");
    assert_eq!(verdict(&dry, "invalid"), "invalid");
    assert_eq!(verdict(&dry, "conflict"), "conflict");
    assert_eq!(verdict(&dry, "transient"), "would_apply");
    assert_eq!(dry["counts"]["requeued"], 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_dry = (
        w.count("SELECT COUNT(*) FROM point_events"),
        w.count("SELECT COUNT(*) FROM dead_letters WHERE status = 'pending'"),
    );
    assert_eq!(before_dry, after_dry, "a dry run changes nothing");

    // Replay for real once the fault has passed, then replay every letter again.
    while now_ms() < until + 500 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, first) = w
        .admin(
            "POST",
            "/admin/dead-letters/replay",
            Some(&json!({ "runId": "run-1" })),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["counts"]["requeued"], 1,
        "only the replayable letter is queued: {first}"
    );
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turn(&stuck_id) == 1).await,
        "{}",
        w.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A filter replay with a limit pages on: the 4 letters left pending cannot be replayed
    // (they stay pending), and each call goes on from the last one's cursor.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for call in 0.. {
        assert!(call < 5, "the replay pages never end: {seen:?}");
        let (status, page) = w
            .admin(
                "POST",
                "/admin/dead-letters/replay",
                Some(&json!({ "limit": 3, "cursor": cursor, "runId": "run-paged" })),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["counts"]["requeued"], 0, "{page}");
        for l in page["letters"].as_array().unwrap() {
            seen.push(l["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        (seen.len(), distinct.len()),
        (4, 4),
        "each pending letter once: {seen:?}"
    );
    let (status, wrong) = w
        .admin(
            "POST",
            "/admin/dead-letters/replay",
            Some(&json!({ "ids": ["a"], "cursor": cursor })),
        )
        .await;
    assert_eq!(
        (status, wrong["error"]["code"].as_str()),
        (400, Some("invalid_field")),
        "{wrong}"
    );

    let totals = w.count("SELECT SUM(total_points) FROM user_stats");
    let turns = w.count("SELECT COUNT(*) FROM point_events");
    let all_ids: Vec<Value> = {
        let (_, list) = w.admin("GET", "/admin/dead-letters?limit=100", None).await;
        list["letters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].clone())
            .collect()
    };
    let (status, second) = w
        .admin(
            "POST",
            "/admin/dead-letters/replay",
            Some(&json!({ "ids": all_ids, "runId": "run-2" })),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(verdict(&second, "transient"), "already_applied");
    tokio::time::sleep(Duration::from_secs(3)).await; // more than max_batch_timeout
    assert_eq!(
        w.count("SELECT SUM(total_points) FROM user_stats"),
        totals,
        "the second replay moved no point"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM point_events"), turns);
    assert_eq!(
        ledger_drift(&w),
        0,
        "total_points = SUM(delta) for every user"
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM replay_runs WHERE dry_run = 0"),
        3
    );
    assert_eq!(
        w.count("SELECT replay_count FROM dead_letters WHERE error_class = 'transient'"),
        2
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        5,
        "replays made no new letter"
    );

    // Discard the conflict.
    let conflict_id = w
        .db()
        .query_row(
            "SELECT id FROM dead_letters WHERE error_class = 'conflict'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap();
    let (status, discarded) = w
        .admin(
            "POST",
            "/admin/dead-letters/discard",
            Some(&json!({ "ids": [conflict_id] })),
        )
        .await;
    assert_eq!(
        (status, &discarded["discarded"]),
        (200, &json!(1)),
        "{discarded}"
    );
    let (_, pending) = w
        .admin("GET", "/admin/dead-letters?status=pending", None)
        .await;
    assert_eq!(
        pending["letters"].as_array().unwrap().len(),
        3,
        "the three invalid payloads stay pending"
    );

    // Reconcile finds a drift made by hand, a dry run only reports it, a real run repairs it.
    // Its pages walk every database.
    in_a_database_with_users(&w, false, "UPDATE user_stats SET total_points = total_points + 1000, intimacy_level = 0 WHERE user_id = (SELECT MIN(user_id) FROM user_stats)");
    let (drifted, fixed) = reconcile_all(&w, true).await;
    assert_eq!((drifted, fixed), (1, 0));
    assert_eq!(ledger_drift(&w), 1);
    assert_eq!(reconcile_all(&w, false).await, (1, 1));
    assert_eq!(ledger_drift(&w), 0);
    assert_eq!(reconcile_all(&w, true).await, (0, 0));

    // Page by page, one user at a time: a drift on the last user of the last database is
    // found on the last page, and the pages check every user once.
    in_a_database_with_users(
        &w,
        true,
        "UPDATE user_stats SET total_points = total_points - 7 WHERE user_id = (SELECT MAX(id) FROM users)",
    );
    let users = w.count("SELECT COUNT(*) FROM users");
    let (mut cursor, mut checked, mut fixed_total) = (Value::Null, 0, 0);
    for _ in 0..=users + 2 * w.shards().len() as i64 {
        let (status, page) = w
            .admin(
                "POST",
                "/admin/reconcile",
                Some(&json!({ "limit": 1, "cursor": cursor })),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        checked += page["checked"].as_i64().unwrap();
        fixed_total += page["fixed"].as_i64().unwrap();
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert!(cursor.is_null(), "the pages end");
    // Each database's last full page is followed by an empty one that moves on.
    assert_eq!(checked, users, "every user checked once");
    assert_eq!(fixed_total, 1);
    assert_eq!(ledger_drift(&w), 0);

    let (status, stats) = w.admin("GET", "/admin/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["deadLetters"]["pending"], 3);
    assert_eq!(stats["deadLetters"]["pendingByClass"]["invalid"], 1);
    assert!(!w.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_a_missing_or_wrong_token() {
    let w = Workers::start().await;
    let routes = [
        ("GET", "/admin/dead-letters"),
        ("GET", "/admin/dead-letters/abc"),
        ("POST", "/admin/dead-letters/replay"),
        ("POST", "/admin/dead-letters/discard"),
        ("POST", "/admin/reconcile"),
        ("POST", "/admin/turns"),
        ("GET", "/admin/stats"),
        ("GET", "/admin/no-such-route"),
        ("DELETE", "/admin/stats"),
    ];
    let wrong = format!("{ADMIN_TOKEN}x");
    for (method, path) in routes {
        for auth in [
            None,
            Some(format!("Bearer {wrong}")),
            Some(format!("Basic {ADMIN_TOKEN}")),
            Some("Bearer ".to_owned()),
        ] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut req = w
                .http
                .request(m, w.url(path))
                .header("Content-Type", "application/json")
                .body("{}");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {auth:?}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // With the token, bad bodies get clear 4xx errors and queue nothing.
    for (path, body, code) in [
        (
            "/admin/turns",
            json!({ "records": "nope" }),
            "invalid_field",
        ),
        ("/admin/turns", json!({}), "invalid_field"),
        (
            "/admin/dead-letters/replay",
            json!({ "ids": [] }),
            "invalid_field",
        ),
        (
            "/admin/dead-letters/replay",
            json!({ "dryRun": "yes" }),
            "invalid_field",
        ),
        (
            "/admin/dead-letters/discard",
            json!({ "filter": { "status": "lost" } }),
            "invalid_field",
        ),
        ("/admin/reconcile", json!({ "dryRun": 1 }), "invalid_field"),
    ] {
        let (status, answer) = w.admin("POST", path, Some(&body)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{path} {body}"
        );
    }
    let (status, _) = w.admin("GET", "/admin/turns", None).await;
    assert_eq!(status, 405);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM dead_letters"), 0);
}

// A D1 outage of the archive that outlasts every delivery the dead-letter queue allows is
// proved natively now (`core/tests/consumer_flow.rs`, the real `letters::archive` flow with the
// queue's drop-on-last-retry rule): each letter's last delivery re-queues it. The wiring it
// needs here (the consumer's `DEAD_LETTERS` binding, `LETTER_MAX_RETRIES` equal to the
// queue's `max_retries`) is checked by the tests above and by `config.rs`.
