//! The turn pipeline end to end: chat Worker → local queue → consumer Worker → local D1, on
//! workerd through `wrangler dev`.

use e2e::{wait_for, Workers};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const PLAYERS: usize = 5;
const TURNS: usize = 300;
/// Kind and neutral words only: these turns never end a game.
const WORDS: &[&str] = &[
    "hello",
    "thank you",
    "how are you?",
    "cute",
    "what now",
    "great day",
    "ありがとう",
    "🙂",
];

struct Sent {
    user: String,
    status: u16,
    body: Value,
    key: Option<String>,
    session: String,
    message: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turns_are_answered_queued_and_stored_exactly_once() {
    let w = Workers::start().await;
    let users: Vec<String> = (0..PLAYERS).map(|i| format!("x:player-{i}")).collect();
    let mut sessions = Vec::new();
    for (i, u) in users.iter().enumerate() {
        sessions.push((
            u.clone(),
            w.session(u, ["sakura", "rin", "kai"][i % 3]).await,
        ));
        sessions.push((u.clone(), w.session(u, "kai").await));
    }

    // A few hundred turns, concurrently; every fifth carries an idempotency key.
    let sent: Vec<Sent> = stream::iter(0..TURNS)
        .map(|i| {
            let (user, session) = sessions[i % sessions.len()].clone();
            let message = format!("{} #{i}", WORDS[i % WORDS.len()]);
            let key = (i % 5 == 0).then(|| format!("key-{i}"));
            let w = &w;
            async move {
                let (status, body) = w.chat(&user, &session, &message, key.as_deref()).await;
                Sent {
                    user,
                    status,
                    body,
                    key,
                    session,
                    message,
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for s in &sent {
        assert_eq!(s.status, 200, "{}", s.body);
        for field in ["reply", "score", "emotion", "isGameOver", "messageId"] {
            assert!(s.body.get(field).is_some(), "{field} in {}", s.body);
        }
        assert_eq!(s.body["isGameOver"], false);
    }
    let ids: HashSet<String> = sent
        .iter()
        .map(|s| s.body["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), TURNS, "every turn has its own message id");

    // The consumer stores them all.
    assert!(
        wait_for(Duration::from_secs(60), || w.stored_turns() == TURNS as i64).await,
        "stored {} of {TURNS}\n{}",
        w.stored_turns(),
        w.log_tail()
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM chat_messages"),
        2 * TURNS as i64
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM users"), PLAYERS as i64);
    let db = w.db();
    for id in &ids {
        let role: String = db
            .query_row("SELECT role FROM chat_messages WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap_or_else(|e| panic!("turn {id} not stored: {e}"));
        assert_eq!(role, "user");
    }

    // Totals: the snapshot equals the ledger, and the API shows the snapshot.
    let drift = w.count(
        "SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT SUM(delta) FROM point_events p WHERE p.user_id = s.user_id)",
    );
    assert_eq!(
        drift, 0,
        "user_stats.total_points = SUM(point_events.delta)"
    );
    let mut score_by_user: HashMap<&str, i64> = HashMap::new();
    for s in &sent {
        *score_by_user.entry(&s.user).or_default() += s.body["score"].as_i64().unwrap();
    }
    for u in &users {
        let (status, stats) = w.get("/api/me/stats", u).await;
        assert_eq!(status, 200);
        assert_eq!(
            stats["totalPoints"].as_i64().unwrap(),
            score_by_user[u.as_str()],
            "{u}"
        );
        let level = chat_core::scoring::intimacy_level(score_by_user[u.as_str()]);
        assert_eq!(stats["intimacyLevel"].as_i64().unwrap(), level);
        assert!(stats["lastMessageAt"].is_string());
    }

    // A session's history: oldest first, each turn as the player's message then the reply.
    let (user, session) = &sessions[0];
    let (status, history) = w
        .get(&format!("/api/sessions/{session}/messages"), user)
        .await;
    assert_eq!(status, 200);
    let messages = history["messages"].as_array().unwrap();
    let expected = sent.iter().filter(|s| &s.session == session).count();
    assert_eq!(messages.len(), 2 * expected);
    for pair in messages.chunks(2) {
        assert_eq!(
            (pair[0]["role"].as_str(), pair[1]["role"].as_str()),
            (Some("user"), Some("agent"))
        );
        assert!(pair[0]["createdAt"].as_str() <= pair[1]["createdAt"].as_str());
    }
    let times: Vec<&str> = messages
        .iter()
        .map(|m| m["createdAt"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|t| t[0] <= t[1]), "oldest first");
    assert!(history["nextBefore"].is_null(), "one page holds it all");

    // Pages of 7, walked back with nextBefore, reach every message once, in order.
    let mut paged: Vec<Value> = Vec::new();
    let mut path = format!("/api/sessions/{session}/messages?limit=7");
    loop {
        let (status, page) = w.get(&path, user).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["messages"].as_array().unwrap().clone();
        assert!(rows.len() <= 7);
        paged.splice(0..0, rows);
        match page["nextBefore"].as_str() {
            Some(cursor) => {
                path = format!("/api/sessions/{session}/messages?limit=7&before={cursor}")
            }
            None => break,
        }
    }
    assert_eq!(&paged, messages, "paging reaches every message");
    let (status, bad) = w
        .get(
            &format!("/api/sessions/{session}/messages?before=yesterday"),
            user,
        )
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    // Retrying the keyed turns (same key, same words) gets the same answer and stores nothing.
    let retries: Vec<&Sent> = sent.iter().filter(|s| s.key.is_some()).collect();
    for s in &retries {
        let (status, body) = w
            .chat(&s.user, &s.session, &s.message, s.key.as_deref())
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["messageId"], s.body["messageId"],
            "a retry names the same turn"
        );
        assert_eq!(body, s.body, "a retry gets the first answer");
    }
    // A fresh turn sent after the retries marks when the queue has moved past them.
    let (user, session) = &sessions[1];
    let (status, sentinel) = w.chat(user, session, "one more, thanks", None).await;
    assert_eq!(status, 200);
    let sentinel_id = sentinel["messageId"].as_str().unwrap().to_owned();
    assert!(wait_for(Duration::from_secs(30), || w.stored_turn(&sentinel_id) == 1).await);
    tokio::time::sleep(Duration::from_secs(2)).await; // more than max_batch_timeout
    assert_eq!(
        w.stored_turns(),
        TURNS as i64 + 1,
        "retries stored nothing new"
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM chat_messages"),
        2 * (TURNS as i64 + 1)
    );
    // The session's actor answered the retries itself: none of them reached the queue. The
    // consumer's batch lines account for every stored turn first (wrangler forwards them
    // asynchronously), so the zero below is read from complete logs.
    let batch_sum = |field: &str| -> i64 {
        w.log_events("turn batch")
            .iter()
            .map(|v| v[field].as_i64().unwrap_or(0))
            .sum()
    };
    assert!(
        wait_for(Duration::from_secs(10), || batch_sum("applied")
            == TURNS as i64 + 1)
        .await,
        "the batch logs account for {} of {} turns",
        batch_sum("applied"),
        TURNS + 1
    );
    assert_eq!(batch_sum("duplicate"), 0, "no retry was queued again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_turn_ends_the_game() {
    let w = Workers::start().await;
    let user = "privy:did:privy:quitter";
    let session = w.session(user, "rin").await;
    let (status, body) = w
        .chat(user, &session, "I hate you, you are stupid", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["isGameOver"], true);
    assert_eq!(body["emotion"], "angry");
    let sql = format!(
        "SELECT COUNT(*) FROM chat_sessions WHERE id = '{session}' AND ended_at IS NOT NULL"
    );
    assert!(
        wait_for(Duration::from_secs(30), || w.count(&sql) == 1).await,
        "{}",
        w.log_tail()
    );
    let (status, body) = w.chat(user, &session, "sorry", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "session_ended");
    let (_, stats) = w.get("/api/me/stats", user).await;
    let expected = chat_core::scoring::TurnScore::new(chat_core::character::Character::Rin, -10);
    assert!(
        stats["totalPoints"].as_i64().unwrap() <= i64::from(expected.delta) + 4,
        "{stats}"
    );
    assert!(stats["totalPoints"].as_i64().unwrap() < 0);
}
