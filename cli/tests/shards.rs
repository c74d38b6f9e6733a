//! `chat-admin shards move` under chat load: a bucket moves from DB_0 to DB_1 while its
//! players keep chatting. Every answered turn is stored once, in the new database, with
//! each player's total equal to the points their answers told them.

use chat_core::ids::user_id;
use chat_core::scoring::point_delta;
use chat_core::shards::bucket;
use e2e::{wait_for, Options, Workers, ADMIN_TOKEN};
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Players whose user ids share one bucket of DB_0 (0..=127), and players elsewhere.
fn players() -> (u8, Vec<String>, Vec<String>) {
    let name = |i: usize| format!("mover-{i}");
    let first = (0..)
        .map(name)
        .find(|n| bucket(&user_id("x", n)) < 128)
        .expect("a name in DB_0");
    let b = bucket(&user_id("x", &first));
    let (mut same, mut other) = (vec![first.clone()], Vec::new());
    for i in 0.. {
        let n = name(i);
        if n == first {
            continue;
        }
        let this = bucket(&user_id("x", &n));
        if this == b && same.len() < 4 {
            same.push(n);
        } else if this != b && other.len() < 4 {
            other.push(n);
        }
        if same.len() == 4 && other.len() == 4 {
            break;
        }
    }
    (b, same, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_moves_under_load_and_loses_nothing() {
    let (b, movers, others) = players();
    let w = Workers::start_with(Options {
        chat_vars: vec![("SHARD_MAP_CACHE_SECONDS", "1".into())],
        consumer_vars: vec![("RETRY_BASE_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    let mut sessions = Vec::new();
    for p in movers.iter().chain(&others) {
        sessions.push((format!("x:{p}"), w.session(&format!("x:{p}"), "kai").await));
    }

    // Chat load from every player, before, during and after the move.
    let stop = Arc::new(AtomicBool::new(false));
    let load = sessions.iter().enumerate().map(|(k, (user, session))| {
        let (http, url, stop) = (w.http.clone(), w.url("/api/chat"), stop.clone());
        let (user, session) = (user.clone(), session.clone());
        async move {
            let mut told: HashMap<String, i64> = HashMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .header("X-Dev-User", &user)
                    .header("Idempotency-Key", format!("load-{k}-{i}"))
                    .json(&json!({ "sessionId": session, "message": format!("hello {i}") }))
                    .send()
                    .await
                    .expect("answered");
                assert_eq!(r.status(), 200, "turns are answered during the move");
                let a: Value = r.json().await.unwrap();
                let points =
                    point_delta(a["score"].as_i64().unwrap() as i32, a["isGameOver"] == true);
                told.insert(
                    a["messageId"].as_str().unwrap().to_owned(),
                    i64::from(points),
                );
                i += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (user, told)
        }
    });
    let load = tokio::spawn(join_all(load));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let url = w.base.clone();
    let moved = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_chat-admin"))
            .args(["--url", &url, "--json", "shards", "move", "--bucket"])
            .arg(b.to_string())
            .args(["--to", "DB_1", "--grace", "3", "--page", "7"])
            .env("CHAT_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("chat-admin runs")
    })
    .await
    .unwrap();
    assert!(
        moved.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&moved.stderr),
        w.log_tail()
    );
    let report: Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert!(report["copied"].as_u64().unwrap() > 0, "{report}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let told: Vec<(String, HashMap<String, i64>)> = load.await.unwrap();
    let answered: usize = told.iter().map(|(_, t)| t.len()).sum();

    // Everything lands: once each, movers in DB_1 only, the others where they were.
    let stored = || w.count("SELECT COUNT(*) FROM point_events");
    assert!(
        wait_for(Duration::from_secs(90), || stored() as usize == answered).await,
        "{} of {answered} answered turns stored\n{}",
        stored(),
        w.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stored() as usize, answered, "nothing stored twice");
    let in_db = |binding: &str, user: &str| -> i64 {
        w.shard(binding)
            .query_row(
                "SELECT (SELECT COUNT(*) FROM users WHERE id = ?1) + (SELECT COUNT(*) FROM chat_messages WHERE user_id = ?1) + (SELECT COUNT(*) FROM point_events WHERE user_id = ?1)",
                [user],
                |r| r.get(0),
            )
            .unwrap()
    };
    for (user, turns) in &told {
        let id = user_id("x", user.trim_start_matches("x:")).to_string();
        let home = if bucket(&id.parse().unwrap()) == b {
            "DB_1"
        } else if bucket(&id.parse().unwrap()) < 128 {
            "DB_0"
        } else {
            "DB_1"
        };
        let away = if home == "DB_0" { "DB_1" } else { "DB_0" };
        assert!(in_db(home, &id) > 0, "{user} is in {home}");
        assert_eq!(in_db(away, &id), 0, "{user} left nothing in {away}");
        let total: i64 = w.count(&format!(
            "SELECT total_points FROM user_stats WHERE user_id = '{id}'"
        ));
        assert_eq!(
            total,
            turns.values().sum::<i64>(),
            "{user}'s total is what they were told"
        );
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)"),
        0
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "a move makes no dead letter"
    );
    let (_, shards) = w.admin("GET", "/admin/shards", None).await;
    let o = shards["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["bucket"] == json!(b))
        .cloned()
        .unwrap();
    assert_eq!(
        (&o["binding"], &o["moving"], &o["movedFrom"]),
        (&json!("DB_1"), &json!(false), &Value::Null),
        "{shards}"
    );
    let held: i64 = w
        .log_events("turn batch")
        .iter()
        .map(|e| e["held"].as_i64().unwrap_or(0))
        .sum();
    assert!(held > 0, "turns were held in the queue during the move");

    // Running the move again finds the bucket there and changes nothing.
    let again = Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args(["--url", &w.base, "--json", "shards", "move", "--bucket"])
        .arg(b.to_string())
        .args(["--to", "DB_1", "--grace", "1"])
        .env("CHAT_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((&again["copied"], &again["purged"]), (&json!(0), &json!(0)));
    assert_eq!(stored() as usize, answered);
}
