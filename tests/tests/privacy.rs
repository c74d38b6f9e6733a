//! A player's data exported and erased everywhere it lives, end to end on workerd through
//! `wrangler dev` with the real local D1, queue, Durable Objects and R2.
//!
//! The erased player has archived history (a session whose row went to R2), a session in D1
//! with a live socket open, a turn still in the queue (the consumer retries it until a set
//! time), and a dead letter. After the erasure no row of any local SQLite file (the D1
//! databases, the actors' storage, R2's index) names them, the socket was closed, the
//! archive holds nothing of theirs, the turn delivered from the queue later is refused, the
//! leaderboard and the figures no longer count them, and the same identity signing in again
//! starts with no history. Another player is untouched throughout.

use chat_core::identity::{AuthProvider, Identity};
use chat_core::record::sample;
use e2e::live::Live;
use e2e::{now_ms, wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn user_id(name: &str) -> Uuid {
    Identity::new(AuthProvider::X, name).unwrap().user_id()
}

async fn export_as(w: &Workers, player: &str, path: &str) -> (u16, String) {
    let r = w
        .http
        .get(w.url(path))
        .header("X-Dev-User", player)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_is_exported_then_erased_everywhere_and_nothing_comes_back() {
    let w = Workers::start_with(Options {
        // The queued turn is retried (2, 4, 8, 16 s…) past its fault's end, after the erasure.
        consumer_vars: vec![
            ("FAULTS", "markers".into()),
            ("RETRY_BASE_SECONDS", "2".into()),
        ],
        ..Options::default()
    })
    .await;
    let (gone, stays) = ("x:forget-me", "x:keep-me");
    let gone_id = user_id("forget-me");
    // History that goes to the archive, with its session's row.
    let old = w.session(gone, "kai").await;
    for i in 0..3 {
        w.chat_ok(gone, &old, &format!("old words {i}")).await;
    }
    let kept = w.session(stays, "kai").await;
    w.chat_ok(stays, &kept, "I stay").await;
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turns() == 4).await,
        "{}",
        w.log_tail()
    );
    w.archive_run(0, false).await;
    assert_eq!(w.stored_turns(), 0);
    // A session in D1, a socket open on it, a dead letter, and a turn the queue still holds.
    let recent = w.session(gone, "kai").await;
    w.chat_ok(gone, &recent, "recent words").await;
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&recent) == 1).await);
    let turn_id = w.count(&format!(
        "SELECT COUNT(*) FROM chat_messages WHERE session_id = '{recent}'"
    ));
    assert_eq!(turn_id, 2);
    let stored_id: String = w
        .db()
        .query_row(
            &format!(
                "SELECT id FROM chat_messages WHERE session_id = '{recent}' AND role = 'user'"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut conflict = sample("forget-me", Uuid::parse_str(&recent).unwrap(), 5, now_ms());
    conflict.turn_id = Uuid::parse_str(&stored_id).unwrap();
    let ids = chat_core::ids::TurnIds::from_turn_id(conflict.turn_id).unwrap();
    conflict.agent_message.id = ids.agent_message;
    conflict.point_event.id = ids.point_event;
    conflict.user_message.content = "words never said".into();
    let (status, _) = w
        .admin(
            "POST",
            "/admin/turns",
            Some(&json!({ "records": [conflict.encode()] })),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        wait_for(Duration::from_secs(30), || w
            .count("SELECT COUNT(*) FROM dead_letters")
            == 1)
        .await,
        "{}",
        w.log_tail()
    );
    let mut socket = Live::open(&w, gone, &recent, None).await;
    let until = now_ms() + 12_000;
    let (status, queued) = w
        .post(
            "/api/chat",
            gone,
            &json!({ "sessionId": recent, "message": format!("queued words [fault:before-until={until}]") }),
        )
        .await;
    assert_eq!(status, 200, "{queued}");
    let (_, stats) = w.admin("GET", "/admin/stats", None).await;
    let users_before = stats["users"].as_i64().unwrap();

    // Export: the player's own, with both tiers and their actors; another's is 404.
    let (status, text) = export_as(&w, gone, "/api/me/export").await;
    assert_eq!(status, 200, "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |t: &str| lines.iter().filter(|l| l["type"] == t).count();
    assert_eq!(lines[0]["userId"], gone_id.to_string());
    assert_eq!(
        (of("profile"), of("session"), of("message")),
        (1, 2, 8),
        "{text}"
    );
    assert_eq!(of("pointEvent"), 4);
    assert_eq!(of("actor"), 2);
    assert!(text.contains("old words 0") && text.contains("recent words"));
    let (status, _) = export_as(&w, stays, &format!("/api/players/{gone_id}/export")).await;
    assert_eq!(status, 404, "another player's data is not found");
    let (status, mine) = export_as(&w, gone, &format!("/api/players/{gone_id}/export")).await;
    assert_eq!((status, mine.lines().count()), (200, lines.len()));
    let r = w
        .http
        .get(w.url(&format!("/admin/players/{gone_id}/export")))
        .bearer_auth(e2e::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A dry run lists every place and changes nothing.
    let path = format!("/admin/players/{gone_id}/erase");
    let (status, dry) = w
        .admin("POST", &path, Some(&json!({ "dryRun": true })))
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["sessions"].as_array().map(Vec::len), Some(2), "{dry}");
    assert_eq!(dry["deadLetters"], 1);
    assert_eq!(dry["archiveObjects"], 1);
    assert!(!w.sqlite_rows_naming(&gone_id.to_string()).is_empty());

    // The erasure.
    let (status, report) = w
        .admin("POST", &path, Some(&json!({ "dryRun": false })))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["socketsClosed"], 1, "{report}");
    assert_eq!(socket.closed(Duration::from_secs(5)).await, Some(1008));
    let left = w.sqlite_rows_naming(&gone_id.to_string());
    assert!(left.is_empty(), "still named in {left:?}");
    let left = w.sqlite_rows_naming("recent words");
    assert!(left.is_empty(), "their words are still in {left:?}");
    let (_, events) = w
        .admin(
            "GET",
            &format!("/admin/players/{gone_id}/archived-events"),
            None,
        )
        .await;
    assert_eq!(events["events"], json!([]), "{events}");
    let (_, stats) = w.admin("GET", "/admin/stats", None).await;
    assert_eq!(
        stats["users"].as_i64().unwrap(),
        users_before - 1,
        "{stats}"
    );
    let (_, board) = w.get("/api/leaderboard", stays).await;
    assert!(!board.to_string().contains(&gone_id.to_string()), "{board}");
    // The queued turn, delivered after the erasure, is refused and stored nowhere.
    assert!(
        wait_for(Duration::from_secs(60), || w
            .log_events("turn batch")
            .iter()
            .any(|b| b["erased"].as_i64().unwrap_or(0) > 0))
        .await,
        "the queued turn refused\n{}",
        w.log_tail()
    );
    assert!(w.sqlite_rows_naming("queued words").is_empty());
    assert!(
        w.sqlite_rows_naming(&gone_id.to_string()).is_empty(),
        "nothing came back"
    );
    // Run again: nothing new, and it says it resumed.
    let (status, again) = w.admin("POST", &path, Some(&json!({}))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["resumed"], true);
    // The same identity signing in again is a new player with no history.
    let (_, stats) = w.get("/api/me/stats", gone).await;
    assert_eq!(stats["totalPoints"], 0, "{stats}");
    let fresh = w.session(gone, "kai").await;
    w.chat_ok(gone, &fresh, "hello again").await;
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&fresh) == 1).await);
    let (status, text) = export_as(&w, gone, "/api/me/export").await;
    assert_eq!(status, 200);
    assert!(
        !text.contains("old words") && !text.contains("recent words"),
        "{text}"
    );
    // The other player is untouched.
    let (_, theirs) = w
        .get(&format!("/api/sessions/{kept}/messages"), stays)
        .await;
    assert_eq!(
        theirs["messages"].as_array().map(Vec::len),
        Some(2),
        "{theirs}"
    );

    // Bad input.
    let (status, body) = w
        .admin(
            "POST",
            &format!("/admin/players/{}/erase", Uuid::from_u128(9)),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("player_not_found"))
    );
    let (status, body) = w
        .admin("POST", "/admin/players/not-a-uuid/erase", Some(&json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_user_id"))
    );
    let (status, body) = w
        .admin("POST", &path, Some(&json!({ "dryRun": "yes" })))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let r = w
        .http
        .post(w.url(&path))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "erasure needs the admin token");
}
