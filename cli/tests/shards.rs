//! Bucket moves under chat load, end to end: `chat-admin shards move` takes a bucket from
//! DB_0 to DB_1 while its players keep chatting, and a second bucket is held, copied and
//! released (an abandoned move), then moved again to the same target. Throughout, the
//! leaderboard and the figures count every player once; at the end every answered turn is
//! stored once, each player's rows live in one database, and each total equals the points
//! their answers told them.

use chat_core::ids::user_id;
use chat_core::scoring::point_delta;
use chat_core::shards::bucket;
use e2e::{wait_for, Options, Workers, ADMIN_TOKEN};
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Players of bucket `b` (in DB_0), players of bucket `b2` (also in DB_0), and players of
/// DB_1.
fn players() -> (u8, u8, Vec<String>, Vec<String>, Vec<String>) {
    let name = |i: usize| format!("mover-{i}");
    let b_of = |n: &str| bucket(&user_id("x", n));
    let names: Vec<String> = (0..2000).map(name).collect();
    let b = names.iter().map(|n| b_of(n)).find(|&b| b < 128).unwrap();
    let b2 = names
        .iter()
        .map(|n| b_of(n))
        .find(|&x| x < 128 && x != b)
        .unwrap();
    let pick = |f: &dyn Fn(u8) -> bool, k: usize| -> Vec<String> {
        names
            .iter()
            .filter(|n| f(b_of(n)))
            .take(k)
            .cloned()
            .collect()
    };
    (
        b,
        b2,
        pick(&|x| x == b, 3),
        pick(&|x| x == b2, 2),
        pick(&|x| x >= 128, 3),
    )
}

fn chat_admin(w: &Workers, args: &[&str]) -> Output {
    run_chat_admin(&w.base, args)
}

fn run_chat_admin(base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-admin"))
        .args(["--url", base, "--json"])
        .args(args)
        .env("CHAT_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("chat-admin runs")
}

/// `chat-admin shards move` of `bucket` to DB_1, off the test's threads (the load goes on).
async fn move_bucket(w: &Workers, bucket: u8, grace: u32, page: u32) -> Output {
    let base = w.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        let (bucket, grace, page) = (bucket.to_string(), grace.to_string(), page.to_string());
        run_chat_admin(
            &base,
            &[
                "shards", "move", "--bucket", &bucket, "--to", "DB_1", "--grace", &grace, "--page",
                &page,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        w.log_tail()
    );
    output
}

/// What the leaderboard and the figures said, polled during the moves.
#[derive(Default)]
struct Watch {
    polls: usize,
    doubles: Vec<String>,
    user_counts: HashSet<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buckets_move_under_load_and_every_read_counts_each_player_once() {
    let (b, b2, movers, abandoned, others) = players();
    let w = Workers::start_with(Options {
        chat_vars: vec![("SHARD_MAP_CACHE_SECONDS", "1".into())],
        consumer_vars: vec![
            ("RETRY_BASE_SECONDS", "1".into()),
            ("SHARD_MAP_CACHE_SECONDS", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let everyone: Vec<String> = movers
        .iter()
        .chain(&abandoned)
        .chain(&others)
        .cloned()
        .collect();
    let mut sessions = Vec::new();
    for p in &everyone {
        sessions.push((format!("x:{p}"), w.session(&format!("x:{p}"), "kai").await));
    }

    // Chat load from every player, before, during and after the moves. A 503 or a dropped
    // connection is retried with the same key, as a client would.
    let stop = Arc::new(AtomicBool::new(false));
    let load = sessions.iter().enumerate().map(|(k, (user, session))| {
        let (http, url, stop) = (w.http.clone(), w.url("/api/chat"), stop.clone());
        let (user, session) = (user.clone(), session.clone());
        async move {
            let mut told: HashMap<String, i64> = HashMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load-{k}-{i}");
                let mut answer = None;
                for _ in 0..5 {
                    match http
                        .post(&url)
                        .header("X-Dev-User", &user)
                        .header("Idempotency-Key", &key)
                        .json(&json!({ "sessionId": session, "message": format!("hello {i}") }))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            answer = Some(r.json::<Value>().await.unwrap());
                            break;
                        }
                        Ok(r) if r.status().is_server_error() => {}
                        Err(_) => {}
                        Ok(r) => panic!("turn refused during a move: {}", r.status()),
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let a = answer.expect("every turn is answered, retried with its key");
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

    // The leaderboard and the figures, polled all along: never a player twice.
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watcher = {
        let (http, base, stop, watch) =
            (w.http.clone(), w.base.clone(), stop.clone(), watch.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let board: Value = http
                    .get(format!("{base}/api/leaderboard?limit=100"))
                    .header("X-Dev-User", "x:watcher")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let stats: Value = http
                    .get(format!("{base}/admin/stats"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                {
                    let mut seen = HashSet::new();
                    let mut watch = watch.lock().unwrap();
                    watch.polls += 1;
                    for l in board["leaders"].as_array().into_iter().flatten() {
                        let id = l["userId"].as_str().unwrap().to_owned();
                        if !seen.insert(id.clone()) {
                            watch.doubles.push(id);
                        }
                    }
                    watch
                        .user_counts
                        .insert(stats["users"].as_i64().unwrap_or(-1));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A grace no longer than the Workers' map cache is refused before anything happens.
    let short = chat_admin(
        &w,
        &[
            "shards",
            "move",
            "--bucket",
            &b.to_string(),
            "--to",
            "DB_1",
            "--grace",
            "1",
        ],
    );
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("--grace 2"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );

    // 1. A whole move with chat-admin.
    let moved = move_bucket(&w, b, 3, 7).await;
    let report: Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert!(report["copied"].as_u64().unwrap() > 0, "{report}");

    // 2. Another bucket: held, copied, then released, through the admin API.
    let step = |name: &'static str, body: Value| {
        let w = &w;
        async move {
            for _ in 0..30 {
                let (status, answer) = w
                    .admin("POST", &format!("/admin/shards/{name}"), Some(&body))
                    .await;
                let code = answer["error"]["code"].as_str().unwrap_or("");
                if status == 409 && ["consumer_unconfirmed", "grace_not_elapsed"].contains(&code) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                return (status, answer);
            }
            panic!("{name} never went through");
        }
    };
    let (status, held) = step("hold", json!({ "bucket": b2, "to": "DB_1" })).await;
    assert_eq!(status, 200, "{held}");
    let mut cursor = Value::Null;
    loop {
        let (status, page) = step(
            "copy",
            json!({ "bucket": b2, "to": "DB_1", "cursor": cursor, "limit": 5 }),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, released) = step("release", json!({ "bucket": b2 })).await;
    assert_eq!(
        (status, &released["abandonedCopy"]),
        (200, &json!("DB_1")),
        "{released}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The game goes on in DB_0; moving again first needs the abandoned copy purged.
    let refused = chat_admin(
        &w,
        &[
            "shards",
            "move",
            "--bucket",
            &b2.to_string(),
            "--to",
            "DB_1",
            "--grace",
            "2",
        ],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("purge_pending") && said.contains("shards purge"),
        "{said}"
    );
    let purged = chat_admin(&w, &["shards", "release", "--bucket", &b2.to_string()]);
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let purged: Value = serde_json::from_slice(&purged.stdout).unwrap();
    assert!(purged["purged"].as_u64().unwrap() > 0, "{purged}");
    // 3. The second move to the same target completes.
    move_bucket(&w, b2, 2, 9).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let told: Vec<(String, HashMap<String, i64>)> = load.await.unwrap();
    watcher.await.unwrap();
    let answered: usize = told.iter().map(|(_, t)| t.len()).sum();
    {
        let watch = watch.lock().unwrap();
        assert!(
            watch.polls > 10,
            "the leaderboard was watched: {} polls",
            watch.polls
        );
        assert!(
            watch.doubles.is_empty(),
            "a player listed twice: {:?}",
            watch.doubles
        );
        assert_eq!(
            watch.user_counts,
            HashSet::from([everyone.len() as i64]),
            "the figures counted every player once at every poll"
        );
    }

    // Everything lands: once each, each player in one database, totals as told.
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
        let this = bucket(&id.parse().unwrap());
        let home = if this == b || this == b2 || this >= 128 {
            "DB_1"
        } else {
            "DB_0"
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
    for bucket in [b, b2] {
        let o = shards["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["bucket"] == json!(bucket))
            .cloned()
            .unwrap();
        assert_eq!(
            (&o["binding"], &o["moving"], &o["movedFrom"], &o["copyTo"]),
            (&json!("DB_1"), &json!(false), &Value::Null, &Value::Null),
            "{shards}"
        );
    }
    let held: i64 = w
        .log_events("turn batch")
        .iter()
        .map(|e| e["held"].as_i64().unwrap_or(0))
        .sum();
    assert!(held > 0, "turns were held in the queue during the moves");

    // Running the move again finds the bucket there and changes nothing.
    let again = chat_admin(
        &w,
        &[
            "shards",
            "move",
            "--bucket",
            &b.to_string(),
            "--to",
            "DB_1",
            "--grace",
            "2",
        ],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((&again["copied"], &again["purged"]), (&json!(0), &json!(0)));
    assert_eq!(stored() as usize, answered);
}
