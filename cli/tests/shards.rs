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
    move_bucket_to(w, bucket, "DB_1", grace, page).await
}

/// `chat-admin shards move` of `bucket` to `to`, off the test's threads.
async fn move_bucket_to(w: &Workers, bucket: u8, to: &str, grace: u32, page: u32) -> Output {
    let (base, to) = (w.base.clone(), to.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        let (bucket, grace, page) = (bucket.to_string(), grace.to_string(), page.to_string());
        run_chat_admin(
            &base,
            &[
                "shards", "move", "--bucket", &bucket, "--to", &to, "--grace", &grace, "--page",
                &page,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}\nthe Workers' errors:\n{}",
        String::from_utf8_lossy(&output.stderr),
        w.log_tail(),
        w.log()
            .lines()
            .filter(|l| l.contains("\"ERROR\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
    output
}

/// What the leaderboard and the figures said, polled during the moves.
#[derive(Default)]
struct Watch {
    polls: usize,
    doubles: Vec<String>,
    user_counts: HashSet<i64>,
    /// The first figures of each different count.
    answers: Vec<Value>,
}

impl Watch {
    fn counted_each_player_once(&self, players: i64) {
        assert!(
            self.polls > 10,
            "the leaderboard was watched: {} polls",
            self.polls
        );
        assert!(
            self.doubles.is_empty(),
            "a player listed twice: {:?}",
            self.doubles
        );
        assert_eq!(
            self.user_counts,
            HashSet::from([players]),
            "the figures counted every player once at every poll: {:?}",
            self.answers
        );
    }
}

/// What each player was told, by message id: the points of each answered turn.
type Told = Vec<(String, HashMap<String, i64>)>;

/// Chat load from every player of `sessions` until `stop`. A 503 or a dropped connection is
/// retried with the same key, as a client would; any other refusal fails the test.
fn chat_load(
    w: &Workers,
    sessions: &[(String, String)],
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Told> {
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
    tokio::spawn(join_all(load))
}

/// The leaderboard and the figures, polled until `stop`: never a player twice.
fn watch_reads(
    w: &Workers,
    stop: &Arc<AtomicBool>,
) -> (Arc<Mutex<Watch>>, tokio::task::JoinHandle<()>) {
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
                    let users = stats["users"].as_i64().unwrap_or(-1);
                    if watch.user_counts.insert(users) {
                        watch.answers.push(stats.clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    (watch, watcher)
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

    let stop = Arc::new(AtomicBool::new(false));
    let load = chat_load(&w, &sessions, &stop);
    let (watch, watcher) = watch_reads(&w, &stop);
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
    watch
        .lock()
        .unwrap()
        .counted_each_player_once(everyone.len() as i64);

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

/// Turns of generated players written straight into `conn` (a local database file, beside
/// the running Workers) with the consumer's own statements: about 1 KB a turn, as a real
/// turn stores. Returns the players' ids.
fn preload(conn: &mut rusqlite::Connection, turns: usize) -> Vec<String> {
    use chat_core::identity::{AuthProvider, Identity};
    const TURNS_PER_PLAYER: usize = 20;
    const BATCH: usize = 500;
    // Written as fast as the disk takes it: the Workers are not writing this database's
    // players yet, and a lost preload would only be written again.
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    let t0 = e2e::now_ms() - 86_400_000;
    let players = turns.div_ceil(TURNS_PER_PLAYER);
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for p in 0..players {
        let name = format!("preloaded-{p}");
        let identity = Identity::new(AuthProvider::X, &name).unwrap();
        let session = uuid::Uuid::from_u128(0x5c4e_0000_0000_4000_8000_0000_0000_0000 + p as u128);
        chat_core::native::start_session(conn, &identity, session, t0).unwrap();
        ids.push(identity.user_id().to_string());
        for t in 0..TURNS_PER_PLAYER {
            let n = (p * TURNS_PER_PLAYER + t) as u64;
            let mut r = chat_core::record::sample(&name, session, n, t0 + n as i64);
            r.user_message.content = format!("{n} {}", "a player's words ".repeat(24));
            r.agent_message.content = format!("{n} {}", "the character's answer ".repeat(20));
            batch.push(r);
            if batch.len() == BATCH {
                chat_core::native::apply_turns(conn, &batch).unwrap();
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        chat_core::native::apply_turns(conn, &batch).unwrap();
    }
    ids
}

fn without_rowid(conn: &rusqlite::Connection, table: &str) -> bool {
    conn.query_row(
        "SELECT sql LIKE '%WITHOUT ROWID%' FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
    .unwrap()
}

fn player_rows(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM chat_messages) + (SELECT COUNT(*) FROM point_events) + (SELECT COUNT(*) FROM user_stats)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Schema 2 reaches a database that holds turns, without stopping them: DB_0 holds every
/// bucket at schema 1 (rowid tables) while players chat; migration 0009 refuses it and
/// changes nothing; every bucket that holds players moves to DB_1 (schema 2) with
/// `chat-admin shards move`, the leaderboard and the figures counting each player once at
/// every poll; emptied, DB_0 takes the migration; a bucket moves back onto it; every
/// answered turn is stored once, every total is what its player was told.
///
/// `SCHEMA_MOVE_TURNS=N` first writes N generated turns (about 1 KB each) into DB_0, for the
/// proof on a large database (docs/operations.md gives the figures of a 1 GB run), and
/// `SCHEMA_MOVE_AT_ONCE` moves that many buckets side by side (2 by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_two_reaches_a_database_holding_turns_by_moving_its_buckets() {
    let preloaded_turns: usize = std::env::var("SCHEMA_MOVE_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let at_once: usize = std::env::var("SCHEMA_MOVE_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let w = Workers::start_with(Options {
        schema_one: vec![0],
        chat_vars: vec![
            ("SHARD_MAP", "DB_0".into()),
            ("SHARD_MAP_CACHE_SECONDS", "1".into()),
        ],
        consumer_vars: vec![
            ("SHARD_MAP", "DB_0".into()),
            ("RETRY_BASE_SECONDS", "1".into()),
            ("SHARD_MAP_CACHE_SECONDS", "1".into()),
        ],
        ..Options::default()
    })
    .await;
    let started = std::time::Instant::now();
    let preloaded = preload(&mut w.shard("DB_0"), preloaded_turns);
    let preload_seconds = started.elapsed().as_secs_f64();
    let db0_bytes: i64 = w
        .shard("DB_0")
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for table in ["chat_messages", "point_events", "user_stats"] {
        assert!(!without_rowid(&w.shard("DB_0"), table), "DB_0 at schema 1");
        assert!(without_rowid(&w.shard("DB_1"), table), "DB_1 at schema 2");
    }

    let names: Vec<String> = (0..6).map(|i| format!("schema-{i}")).collect();
    let mut sessions = Vec::new();
    for n in &names {
        sessions.push((format!("x:{n}"), w.session(&format!("x:{n}"), "kai").await));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = chat_load(&w, &sessions, &stop);
    let (watch, watcher) = watch_reads(&w, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The migration refuses a database holding turns, and changes nothing.
    let refused = w.apply_all_migrations("DB_0").unwrap_err();
    assert!(
        refused.starts_with("0009_without_rowid.sql: ")
            && refused
                .contains("holds_player_rows_move_its_buckets_to_a_database_at_schema_2_instead"),
        "{refused}"
    );
    let db0 = w.shard("DB_0");
    assert!(!without_rowid(&db0, "chat_messages"));
    let applied: String = db0
        .query_row(chat_core::sql::APPLIED_MIGRATION, [], |r| r.get(0))
        .unwrap();
    assert_eq!(applied, "0008_leaders.sql");
    let (status, ready) = w.get("/readyz", "x:watcher").await;
    assert_eq!(status, 200, "schema 1 serves: {ready}");

    // Every bucket holding players moves to DB_1, a few side by side, turns flowing.
    let mut buckets: Vec<u8> = db0
        .prepare("SELECT DISTINCT substr(id, 1, 2) FROM users")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|p| u8::from_str_radix(&p.unwrap(), 16).unwrap())
        .collect();
    buckets.sort();
    let moving = std::time::Instant::now();
    for group in buckets.chunks(at_once) {
        join_all(group.iter().map(|&b| move_bucket_to(&w, b, "DB_1", 2, 100))).await;
        let (_, shards) = w.admin("GET", "/admin/shards", None).await;
        assert!(
            shards["overrides"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o["moving"] == false),
            "{shards}"
        );
    }
    let move_seconds = moving.elapsed().as_secs_f64();
    assert_eq!(player_rows(&db0), 0, "DB_0 holds no player's turns");

    // Emptied, DB_0 takes schema 2 while the game goes on in DB_1, and takes a bucket back.
    assert_eq!(
        w.apply_all_migrations("DB_0"),
        Ok(vec![
            "0009_without_rowid.sql".to_owned(),
            "0010_archive.sql".to_owned(),
            chat_core::sql::LATEST_MIGRATION.to_owned()
        ])
    );
    for table in ["chat_messages", "point_events", "user_stats"] {
        assert!(without_rowid(&w.shard("DB_0"), table), "DB_0 at schema 2");
    }
    let back = bucket(&user_id("x", &names[0]));
    move_bucket_to(&w, back, "DB_0", 2, 100).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let told: Told = load.await.unwrap();
    watcher.await.unwrap();
    watch
        .lock()
        .unwrap()
        .counted_each_player_once((names.len() + preloaded.len()) as i64);

    // Everything lands once; each total is what its player was told.
    let answered: usize = told.iter().map(|(_, t)| t.len()).sum();
    let expected = answered + preloaded_turns.div_ceil(20) * 20;
    let stored = || w.count("SELECT COUNT(*) FROM point_events") as usize;
    assert!(
        wait_for(Duration::from_secs(90), || stored() == expected).await,
        "{} of {expected} turns stored\n{}",
        stored(),
        w.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stored(), expected, "nothing stored twice");
    for (user, turns) in &told {
        let id = user_id("x", user.trim_start_matches("x:")).to_string();
        let total = w.count(&format!(
            "SELECT total_points FROM user_stats WHERE user_id = '{id}'"
        ));
        assert_eq!(total, turns.values().sum::<i64>(), "{user}'s total");
        let home = if bucket(&id.parse().unwrap()) == back {
            "DB_0"
        } else {
            "DB_1"
        };
        let rows: i64 = w
            .shard(home)
            .query_row(
                "SELECT COUNT(*) FROM point_events WHERE user_id = ?1",
                [&id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows as usize, turns.len(), "{user}'s turns are in {home}");
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)"),
        0
    );
    // The leaderboard is the top of every player's total.
    let (_, board) = w.get("/api/leaderboard?limit=100", "x:watcher").await;
    let top: Vec<(String, i64)> = {
        let conn = w.db();
        let mut st = conn
            .prepare("SELECT user_id, total_points FROM user_stats ORDER BY total_points DESC, user_id LIMIT 100")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let listed: Vec<(String, i64)> = board["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["userId"].as_str().unwrap().to_owned(),
                l["totalPoints"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, top);
    println!(
        "{}",
        json!({
            "preloadedTurns": preloaded_turns,
            "preloadSeconds": preload_seconds,
            "db0BytesBefore": db0_bytes,
            "bucketsMoved": buckets.len(),
            "movesAtOnce": at_once,
            "moveSeconds": move_seconds,
            "answeredDuringMoves": answered,
            "leaderboardPolls": watch.lock().unwrap().polls,
        })
    );
}
