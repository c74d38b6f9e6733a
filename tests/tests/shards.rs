//! Players sharded over the two local databases (`0-127=DB_0,128-255=DB_1`): each player's
//! rows land in the database of their bucket, one database failing holds back only its own
//! players' turns, and the leaderboard ranks players across both.

use chat_core::ids::user_id;
use chat_core::shards::{bucket, ShardMap};
use e2e::{now_ms, wait_for, Options, Workers, LOCAL_SHARD_MAP};
use serde_json::{json, Value};
use std::time::Duration;

/// Rows of `user` in one database.
fn rows_in(w: &Workers, binding: &str, user: &str) -> i64 {
    w.shard(binding)
        .query_row(
            "SELECT (SELECT COUNT(*) FROM users WHERE id = ?1) + (SELECT COUNT(*) FROM chat_sessions WHERE user_id = ?1) + (SELECT COUNT(*) FROM chat_messages WHERE user_id = ?1) + (SELECT COUNT(*) FROM point_events WHERE user_id = ?1) + (SELECT COUNT(*) FROM user_stats WHERE user_id = ?1)",
            [user],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_live_in_their_database_and_an_outage_holds_back_only_its_own() {
    // DB_1 is down for the first 50 s (long enough for wrangler dev to start and every
    // player to play, with other tests running beside this one): its players' turns wait,
    // DB_0's are stored. Retries back off from 4 s, so a turn's six deliveries span at
    // least 62 s: the outage ends before any turn could be dead-lettered.
    let until = now_ms() + 50_000;
    let w = Workers::start_with(Options {
        consumer_vars: vec![
            ("FAULTS", format!("down=DB_1@{until}")),
            ("RETRY_BASE_SECONDS", "4".into()),
        ],
        ..Options::default()
    })
    .await;
    let map = ShardMap::parse(LOCAL_SHARD_MAP).unwrap();

    // Twelve players; the first eight send the same three messages, so their totals tie.
    let players: Vec<String> = (0..12).map(|i| format!("x:ranked-{i}")).collect();
    let mut told: Vec<(String, i64)> = Vec::new();
    let mut answered = 0;
    for (i, p) in players.iter().enumerate() {
        let session = w.session(p, "kai").await;
        let mut points = 0;
        let words = if i < 8 {
            vec!["thank you", "you are kind", "hello"]
        } else {
            vec!["you are wonderful", "thank you so much", "i love this"][..i % 3 + 1].to_vec()
        };
        for message in words {
            let (status, answer) = w
                .post(
                    "/api/chat",
                    p,
                    &json!({ "sessionId": session, "message": message }),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            points += answer["score"].as_i64().unwrap();
            answered += 1;
        }
        told.push((p.clone(), points));
    }
    let ids: Vec<String> = players
        .iter()
        .map(|p| user_id("x", p.trim_start_matches("x:")).to_string())
        .collect();
    let home = |id: &str| map.binding(&id.parse().unwrap()).to_owned();
    assert!(ids.iter().any(|id| home(id) == "DB_0") && ids.iter().any(|id| home(id) == "DB_1"));

    // While DB_1 is down: DB_0's players are stored, DB_1's are not (their sessions are).
    let stored = |id: &str| {
        w.shard(&home(id))
            .query_row(
                "SELECT COUNT(*) FROM point_events WHERE user_id = ?1",
                [id],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(20), || ids
            .iter()
            .filter(|id| home(id) == "DB_0")
            .all(|id| stored(id) > 0))
        .await,
        "DB_0's players are stored during DB_1's outage\n{}",
        w.log_tail()
    );
    assert!(now_ms() < until, "the outage was still on");
    for id in ids.iter().filter(|id| home(id) == "DB_1") {
        assert_eq!(stored(id), 0, "{id}'s turns wait for DB_1");
    }
    // Then DB_1 comes back, and every turn is stored, each once, in its player's database.
    assert!(
        wait_for(Duration::from_secs(120), || w
            .count("SELECT COUNT(*) FROM point_events")
            == answered)
        .await,
        "every player's turns are stored once DB_1 is back\n{}",
        w.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (id, p) in ids.iter().zip(&players) {
        let other = if home(id) == "DB_0" { "DB_1" } else { "DB_0" };
        assert!(rows_in(&w, &home(id), id) > 0, "{p} is in {}", home(id));
        assert_eq!(rows_in(&w, other, id), 0, "{p} has no row in {other}");
        assert_eq!(bucket(&id.parse().unwrap()) < 128, home(id) == "DB_0");
    }
    assert_eq!(w.count("SELECT COUNT(*) FROM dead_letters"), 0);
    let batches = w.log_events("turn batch");
    assert!(
        batches
            .iter()
            .any(|b| b["databases"].as_str().unwrap_or("").contains("DB_1:")),
        "the batch log counts per database"
    );

    // The leaderboard: totals as the players were told, across both databases, highest
    // first, ties broken by user id.
    let mut expected: Vec<(i64, String)> = told
        .iter()
        .map(|(p, points)| {
            (
                *points,
                user_id("x", p.trim_start_matches("x:")).to_string(),
            )
        })
        .collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert!(
        expected.windows(2).any(|w| w[0].0 == w[1].0),
        "the test has ties"
    );
    let (status, board) = w.get("/api/leaderboard?limit=100", "x:viewer").await;
    assert_eq!(status, 200, "{board}");
    let got: Vec<(i64, String)> = board["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["totalPoints"].as_i64().unwrap(),
                l["userId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    if got != expected {
        let db = w.db();
        let mut st = db.prepare("SELECT s.user_id, s.total_points, (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id), (SELECT COUNT(*) FROM point_events p WHERE p.user_id = s.user_id) FROM user_stats s").unwrap();
        let rows: Vec<(String, i64, i64, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let per_db: Vec<(String, i64)> = w
            .shards()
            .into_iter()
            .map(|b| {
                (
                    b.to_owned(),
                    w.shard(b)
                        .query_row("SELECT COUNT(*) FROM point_events", [], |r| r.get(0))
                        .unwrap(),
                )
            })
            .collect();
        panic!(
            "leaderboard {got:?}\ntold {expected:?}\nstored (user, total, ledger, turns) {rows:?}\nanswered {answered}, events {} {per_db:?}\n{}",
            w.count("SELECT COUNT(*) FROM point_events"),
            w.log()
        );
    }
    assert_eq!(board["leaders"][0]["rank"], 1);
    assert_eq!(
        board["leaders"][0]["displayName"],
        Value::Null,
        "dev players have no name"
    );
    let (_, top3) = w.get("/api/leaderboard?limit=3", "x:viewer").await;
    assert_eq!(top3["leaders"].as_array().unwrap().len(), 3);
    assert_eq!(top3["leaders"][2]["userId"], json!(expected[2].1));
    for bad in ["0", "101", "many"] {
        let (status, e) = w
            .get(&format!("/api/leaderboard?limit={bad}"), "x:viewer")
            .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (400, Some("invalid_query"))
        );
    }

    // Operators see both databases.
    let (status, stats) = w.admin("GET", "/admin/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["databases"].as_array().unwrap().len(), 2, "{stats}");
    assert_eq!(stats["users"], json!(12), "{stats}");
    let (status, shards) = w.admin("GET", "/admin/shards", None).await;
    assert_eq!(
        (status, &shards["map"]),
        (200, &json!("0-127=DB_0,128-255=DB_1"))
    );
    // Reconcile walks both databases page by page.
    let mut cursor: Option<String> = None;
    let mut checked = 0;
    for _ in 0..20 {
        let (status, page) = w
            .admin(
                "POST",
                "/admin/reconcile",
                Some(&json!({ "dryRun": true, "limit": 5, "cursor": cursor })),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(page["drifted"].as_array().unwrap().is_empty());
        checked += page["checked"].as_i64().unwrap();
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(checked, 12, "every user checked once, over both databases");

    // Every database migrated: ready. A database whose newest record is 0009 (schema 2
    // without the archive's 0010): 503. One at 0008 (schema 1, a database holding turns from
    // before schema 2) serves, its archive table added by hand as the harness does for
    // schema 1. One that lacks 0008 too: 503, named.
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let forget_newest = || {
        w.shard("DB_1")
            .execute(
                "DELETE FROM d1_migrations WHERE id = (SELECT MAX(id) FROM d1_migrations)",
                [],
            )
            .unwrap()
    };
    forget_newest();
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "0010 without 0011 does not serve");
    forget_newest();
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "0009 without 0010 does not serve");
    forget_newest();
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "schema 1 serves");
    forget_newest();
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("DB_1") && !message.contains("DB_0"),
        "{message}"
    );
}

/// A player name whose bucket the map gives `binding` (`0-127=DB_0,128-255=DB_1`).
fn player_in(binding: &str, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|n| {
            let b = bucket(&user_id("x", n));
            (b < 128) == (binding == "DB_0")
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_database_down_stops_only_its_own_players() {
    // DB_0, which holds the bucket map, the dead letters and half the players, is down for
    // both Workers from the start, for longer than every retry (retries are immediate).
    let until = now_ms() + 50_000;
    let down = format!("down=DB_0@{until}");
    let w = Workers::start_with(Options {
        chat_vars: vec![("FAULTS", down.clone())],
        consumer_vars: vec![("FAULTS", down), ("RETRY_BASE_SECONDS", "0".into())],
        ..Options::default()
    })
    .await;
    let (one, zero) = (
        format!("x:{}", player_in("DB_1", "up")),
        format!("x:{}", player_in("DB_0", "down")),
    );
    let body = json!({ "characterType": "kai", "username": "p", "locale": "en" });
    // DB_0's player cannot start: 503, retry later.
    let r = w
        .http
        .post(w.url("/api/sessions"))
        .header("X-Dev-User", &zero)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "database_unavailable"
    );
    // DB_1's player plays, and is stored on time: none of it waits for DB_0.
    let session = w.session(&one, "kai").await;
    let mut told = 0;
    for i in 0..5 {
        let (status, answer) = w
            .post(
                "/api/chat",
                &one,
                &json!({ "sessionId": session, "message": format!("hello {i}") }),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        told += answer["score"].as_i64().unwrap();
    }
    let stored = || {
        w.shard("DB_1")
            .query_row("SELECT COUNT(*) FROM point_events", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(15), || stored() == 5).await,
        "DB_1's turns are stored while DB_0 is down\n{}",
        w.log_tail()
    );
    let (status, stats) = w.get("/api/me/stats", &one).await;
    assert_eq!(
        (status, &stats["totalPoints"]),
        (200, &json!(told)),
        "{stats}"
    );
    // The leaderboard and the figures answer from DB_1 and name DB_0.
    let (status, board) = w.get("/api/leaderboard", "x:viewer").await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(
        (&board["partial"], &board["missing"]),
        (&json!(true), &json!(["DB_0"]))
    );
    assert_eq!(board["leaders"].as_array().unwrap().len(), 1);
    let (status, figures) = w.admin("GET", "/admin/stats", None).await;
    assert_eq!(status, 200, "{figures}");
    assert_eq!(
        (&figures["partial"], &figures["users"]),
        (&json!(true), &json!(1))
    );
    assert!(figures["missing"]
        .as_array()
        .unwrap()
        .contains(&json!("DB_0")));
    assert!(now_ms() < until, "all of this happened during the outage");

    // DB_0 comes back: its player starts and plays, the leaderboard is whole again.
    tokio::time::sleep(Duration::from_millis(
        (until - now_ms()).max(0) as u64 + 6_000,
    ))
    .await;
    let other = w.session(&zero, "kai").await;
    let (status, answer) = w
        .post(
            "/api/chat",
            &zero,
            &json!({ "sessionId": other, "message": "back" }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        wait_for(Duration::from_secs(20), || w
            .count("SELECT COUNT(*) FROM point_events")
            == 6)
        .await
    );
    let (_, board) = w.get("/api/leaderboard", "x:viewer").await;
    assert_eq!(
        (
            &board["partial"],
            board["leaders"].as_array().unwrap().len()
        ),
        (&json!(false), 2)
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "nothing was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_refuses_an_unready_target_and_a_missing_binding_holds_turns() {
    // DB_2 is bound in the chat Worker only, and lacks the newest migration.
    let w = Workers::start_with(Options {
        extra_databases: vec![false],
        chat_vars: vec![("SHARD_MAP_CACHE_SECONDS", "1".into())],
        consumer_vars: vec![("SHARD_MAP_CACHE_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    let player = player_in("DB_0", "target");
    let b = bucket(&user_id("x", &player));
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        503,
        "every bound database is checked, not only the map's"
    );
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("DB_2"),
        "{body}"
    );
    let hold = json!({ "bucket": b, "to": "DB_2" });
    let (status, refused) = w.admin("POST", "/admin/shards/hold", Some(&hold)).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("migrations_missing")),
        "{refused}"
    );

    w.finish_migrations("DB_2");
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // The consumer is asked over the queue; once it answered, it cannot reach DB_2.
    let mut codes = Vec::new();
    for _ in 0..30 {
        let (status, refused) = w.admin("POST", "/admin/shards/hold", Some(&hold)).await;
        assert_eq!(status, 409, "{refused}");
        let code = refused["error"]["code"].as_str().unwrap().to_owned();
        codes.push(code.clone());
        if code != "consumer_unconfirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        codes.first().map(String::as_str),
        Some("consumer_unconfirmed")
    );
    assert_eq!(
        codes.last().map(String::as_str),
        Some("consumer_cannot_reach"),
        "{codes:?}"
    );
    let (_, shards) = w.admin("GET", "/admin/shards", None).await;
    assert!(
        shards["overrides"].as_array().unwrap().is_empty(),
        "nothing was held: {shards}"
    );

    // Say the map sends the bucket to DB_2 anyway (a deploy that forgot the consumer's
    // binding): its turns wait in the queue, loudly, and none becomes a dead letter.
    w.shard("DB_0")
        .execute(
            "INSERT INTO shard_buckets (bucket, binding, moving, updated_at) VALUES (?1, 'DB_2', 0, 0)",
            [b],
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let user = format!("x:{player}");
    let session = w.session(&user, "kai").await;
    let (status, answer) = w
        .post(
            "/api/chat",
            &user,
            &json!({ "sessionId": session, "message": "hi" }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        wait_for(Duration::from_secs(15), || w.log().contains(
            "the bucket map names a database this Worker has no binding for"
        ))
        .await,
        "{}",
        w.log_tail()
    );
    // The batch logs its line when it ends, after the warning above.
    assert!(
        wait_for(Duration::from_secs(15), || w
            .log_events("turn batch")
            .iter()
            .any(|b| b["held"].as_i64() > Some(0)))
        .await,
        "{}",
        w.log_tail()
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM dead_letters"), 0);
    assert_eq!(
        w.shard("DB_2")
            .query_row("SELECT COUNT(*) FROM point_events", [], |r| r
                .get::<_, i64>(0))
            .unwrap(),
        0
    );
}
