//! The live path's promises, checked from outside as a client sees them: a game over that
//! holds after an actor reset, frame numbers that only go up on a socket (refusals
//! included) with reconnects that finish the turn, tickets and sockets bounded, the newer
//! profile winning and an expired sign-in closing its socket, answers that expire on time
//! however their turn was completed, and a client's Close answered.

use e2e::fake::{FakeRequest, FakeServer};
use e2e::live::{refusal, ticket, try_open, Live};
use e2e::{wait_for, Options, Workers};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether the actor's `field` reaches `want` within `timeout`.
async fn actor_reaches(w: &Workers, session: &str, field: &str, want: Value) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if actor_state(w, session).await[field] == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// What the session's actor holds (`GET /admin/sessions/{id}`).
async fn actor_state(w: &Workers, session: &str) -> Value {
    let (status, state) = w
        .admin("GET", &format!("/admin/sessions/{session}"), None)
        .await;
    assert_eq!(status, 200, "{state}");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_over_without_a_key_is_final_after_an_actor_reset() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("FAULTS", "markers".into())],
        ..Options::default()
    })
    .await;
    let user = "x:reset-me";
    let session = w.session(user, "rin").await;
    w.chat_ok(user, &session, "hello").await;
    // The game-over turn, with no key: queued, then the actor is reset before it hears so.
    assert!(
        w.chat_unanswered(
            user,
            &session,
            "I hate you, you are stupid [fault:reset]",
            None
        )
        .await,
        "the reset answers no turn"
    );
    // The next turn finds it: the game is over, whatever key the player sends.
    let (status, body) = w.chat(user, &session, "hello again", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("session_ended")),
        "{body}"
    );
    let (status, _) = w.chat(user, &session, "please", Some("k-after")).await;
    assert_eq!(status, 409);
    // Stored once, and nothing after it.
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 2).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        w.stored_in(&session),
        2,
        "hello, and the game-over turn once"
    );
    let game_over = w.count(&format!(
        "SELECT COUNT(*) FROM point_events WHERE session_id = '{session}' AND reason = 'game_over'"
    ));
    assert_eq!(game_over, 1);
    let ended = w.count(&format!(
        "SELECT COUNT(*) FROM chat_sessions WHERE id = '{session}' AND ended_at IS NOT NULL"
    ));
    assert_eq!(ended, 1);
    assert_eq!(
        w.count("SELECT COALESCE(SUM(total_points), 0) FROM user_stats"),
        w.count("SELECT COALESCE(SUM(delta), 0) FROM point_events")
    );
    // The character remembers both turns, the one that ended the game included.
    let state = actor_state(&w, &session).await;
    assert_eq!(
        (
            state["turnsHeld"].as_i64(),
            state["turnsUnconfirmed"].as_i64()
        ),
        (Some(2), Some(0)),
        "{state}"
    );
    assert!(state["session"]["endedAt"].is_i64(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_a_socket_receives_is_numbered_above_the_last_and_a_reconnect_finishes_the_turn(
) {
    let w = Workers::start_with(Options {
        chat_vars: vec![("OFFLINE_STREAM_MS", "60".into())],
        ..Options::default()
    })
    .await;
    let user = "x:numbers";
    let session = w.session(user, "kai").await;
    let mut a = Live::open(&w, user, &session, None).await;
    let mut b = Live::open(&w, user, &session, None).await;
    a.send(
        &json!({ "type": "turn", "key": "n-1", "message": "tell me a long story about the sea" }),
    )
    .await;
    // B is refused three times while A's turn is written: a stop for a key nobody writes,
    // a bad frame, and a turn under the key being written.
    let mut seen_b = Vec::new();
    while seen_b.len() < 2 {
        seen_b.push(b.next(Duration::from_secs(10)).await.expect("frames"));
    }
    b.send(&json!({ "type": "stop", "key": "nobody" })).await;
    b.send_text("not json").await;
    b.send(&json!({ "type": "turn", "key": "n-1", "message": "me too" }))
        .await;
    let mut refusals = 0;
    loop {
        let f = b.next(Duration::from_secs(20)).await.expect("frames");
        if f["type"] == "error" {
            refusals += 1;
        }
        let end = f["key"] == json!("n-1") && f["type"] == "done";
        seen_b.push(f);
        if end {
            break;
        }
    }
    assert_eq!(refusals, 3, "{seen_b:?}");
    let seqs: Vec<i64> = seen_b.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|s| s[0] < s[1]),
        "every frame above the last one: {seqs:?}"
    );
    let seen_a = a.until_end("n-1").await;
    let seqs_a: Vec<i64> = seen_a
        .iter()
        .map(|(f, _)| f["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs_a.windows(2).all(|s| s[0] < s[1]), "{seqs_a:?}");

    // C is refused mid-turn, drops right after, and reconnects after the refusal's number:
    // it gets the rest of the turn, its `done` included.
    let mut c = Live::open(&w, user, &session, None).await;
    a.send(&json!({ "type": "turn", "key": "n-2", "message": "and another long story please" }))
        .await;
    loop {
        let f = c.next(Duration::from_secs(10)).await.expect("frames");
        if f["type"] == "delta" {
            break;
        }
    }
    c.send(&json!({ "type": "stop", "key": "unknown-key" }))
        .await;
    let refused = loop {
        let f = c.next(Duration::from_secs(10)).await.expect("frames");
        if f["type"] == "error" {
            break f;
        }
    };
    assert_eq!(refused["error"]["code"], "nothing_to_stop");
    let after = refused["seq"].as_i64().unwrap();
    c.close().await;
    let mut back = Live::open(&w, user, &session, Some(after)).await;
    let rest = back.until_end("n-2").await;
    assert!(
        rest.iter().all(|(f, _)| f["seq"].as_i64().unwrap() > after),
        "{rest:?}"
    );
    assert_eq!(rest.last().unwrap().0["type"], "done");
    assert_eq!(
        rest.last().unwrap().0,
        a.until_end("n-2").await.last().unwrap().0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_sockets_are_bounded_and_every_refusal_writes_nothing() {
    let w = Workers::start().await;
    let user = "x:crowd";
    let session = w.session(user, "kai").await;
    // Twenty sockets on one session: eight stay open, and every other is refused before
    // the upgrade, with a JSON error and a Retry-After.
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..20 {
        let (status, t) = ticket(&w, user, &session).await;
        if status != 201 {
            assert_eq!(status, 429, "{t}");
            refused.push(t["error"]["code"].as_str().unwrap().to_owned());
            continue;
        }
        let url = e2e::live::live_url(&w, &session, t["ticket"].as_str().unwrap(), None);
        match try_open(&url, None).await {
            Ok(socket) => open.push(socket),
            Err((status, body)) => {
                assert_eq!(status, 429, "{body}");
                // Refused before the ticket was used: asked again, it says why in JSON.
                let (status, code) = refusal(&w, &url, None).await;
                assert_eq!(status, 429);
                refused.push(code);
            }
        }
    }
    assert_eq!(open.len(), 8);
    assert_eq!(refused.len(), 12, "{refused:?}");
    assert!(refused
        .iter()
        .all(|c| c == "too_many_sockets" || c == "too_many_tickets"));
    let state = actor_state(&w, &session).await;
    assert_eq!(state["liveSockets"], 8, "{state}");
    assert!(state["ticketsHeld"].as_i64().unwrap() <= 8, "{state}");
    // A ticket that expires unused is dropped by the alarm, which is set.
    assert!(state["alarmAt"].is_string(), "{state}");
    // The refusal came before the upgrade: a plain request says why.
    let (_, t) = ticket(&w, user, &session).await;
    if let Some(t) = t["ticket"].as_str() {
        assert_eq!(
            refusal(&w, &e2e::live::live_url(&w, &session, t, None), None).await,
            (429, "too_many_sockets".to_owned())
        );
    }
    // A socket that goes makes room for another.
    open.pop().unwrap().close().await;
    assert!(actor_reaches(&w, &session, "liveSockets", json!(7)).await);
    let again = Live::open_as(&w, ("X-Dev-User", user), &session, None).await;
    assert!(
        again.is_ok()
            || again
                .as_ref()
                .err()
                .is_some_and(|e| e.contains("too_many_tickets")),
        "{:?}",
        again.as_ref().err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_are_limited_per_player_with_retry_after() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("TURN_RATE_LIMIT", "on".into())],
        ..Options::default()
    })
    .await;
    let user = "x:ticket-farm";
    let session = w.session(user, "kai").await;
    let mut minted = 0;
    let mut limited = 0;
    for _ in 0..200 {
        let r = w
            .http
            .post(w.url(&format!("/api/sessions/{session}/ticket")))
            .header("X-Dev-User", user)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => minted += 1,
            429 => {
                let retry: u32 = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("a Retry-After");
                assert!(retry > 0);
                let body: Value = r.json().await.unwrap();
                assert!(
                    ["rate_limited", "too_many_tickets"]
                        .contains(&body["error"]["code"].as_str().unwrap()),
                    "{body}"
                );
                limited += 1;
            }
            other => panic!("ticket answered {other}"),
        }
    }
    assert!(minted <= 20, "{minted} tickets minted in a minute");
    assert_eq!(minted + limited, 200);
    let state = actor_state(&w, &session).await;
    assert!(state["ticketsHeld"].as_i64().unwrap() <= 8, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newer_profile_wins_and_an_expired_sign_in_closes_its_socket() {
    // X answers with whatever name the player has now.
    let name = Arc::new(Mutex::new("Old Name".to_owned()));
    let current = name.clone();
    let x = FakeServer::start(move |r: FakeRequest| {
        let name = current.lock().unwrap().clone();
        async move {
            match r.headers.get("authorization").map(String::as_str) {
                Some("Bearer tab-a" | "Bearer tab-b") => (
                    200,
                    json!({ "data": { "id": "4242", "name": name, "username": "four" } })
                        .to_string(),
                ),
                _ => (401, json!({ "title": "Unauthorized" }).to_string()),
            }
        }
    })
    .await;
    let w = Workers::start_with(Options {
        dev_auth: false,
        chat_vars: vec![
            ("AUTH_MODE", "x".into()),
            ("X_API_BASE", x.url.clone()),
            ("X_CACHE_SECONDS", "6".into()),
        ],
        ..Options::default()
    })
    .await;
    let post = |path: String, token: &'static str, body: Value| {
        w.http
            .post(w.url(&path))
            .header("Authorization", format!("Bearer {token}"))
            .json(&body)
    };
    let r = post(
        "/api/sessions".into(),
        "tab-a",
        json!({ "characterType": "kai", "username": "Four", "locale": "en" }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let session = r.json::<Value>().await.unwrap()["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Tab A opens its socket, signed in as "Old Name".
    let mut a = Live::open_as(&w, ("Authorization", "Bearer tab-a"), &session, None)
        .await
        .unwrap();
    // The player renames themselves; tab B signs in afresh and plays a turn.
    *name.lock().unwrap() = "New Name".to_owned();
    let r = post(
        "/api/chat".into(),
        "tab-b",
        json!({ "sessionId": session, "message": "hello from b" }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // Tab A's turn carries the profile of its older sign-in, and is stored after B's.
    a.send(&json!({ "type": "turn", "key": "a-1", "message": "hello from a" }))
        .await;
    assert_eq!(a.until_end("a-1").await.last().unwrap().0["type"], "done");
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 2).await);
    let names = w.count("SELECT COUNT(*) FROM users WHERE display_name = 'New Name'");
    assert_eq!(names, 1, "the profile signed later wins");

    // Past X_CACHE_SECONDS the socket's sign-in has expired, as a plain request's would:
    // its next turn is refused with an error frame, and the socket is closed.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    a.send(&json!({ "type": "turn", "key": "a-2", "message": "still there?" }))
        .await;
    let refused = a
        .next(Duration::from_secs(10))
        .await
        .expect("an error frame");
    assert_eq!(
        (refused["type"].as_str(), refused["error"]["code"].as_str()),
        (Some("error"), Some("sign_in_expired")),
        "{refused}"
    );
    assert_eq!(a.closed(Duration::from_secs(5)).await, Some(1008));
    // A new ticket signs in again, and the turn plays.
    let mut again = Live::open_as(&w, ("Authorization", "Bearer tab-a"), &session, None)
        .await
        .unwrap();
    again
        .send(&json!({ "type": "turn", "key": "a-2", "message": "still there?" }))
        .await;
    assert_eq!(
        again.until_end("a-2").await.last().unwrap().0["type"],
        "done"
    );
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 3).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_completed_after_a_reset_still_expires_on_time() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("FAULTS", "markers".into())],
        ..Options::default()
    })
    .await;
    let user = "x:expiring";
    let session = w.session(user, "kai").await;
    let asked = e2e::now_ms();
    assert!(
        w.chat_unanswered(user, &session, "you are kind [fault:reset]", Some("r-1"))
            .await
    );
    let (status, replayed, _) = w
        .chat_raw(user, &session, "you are kind [fault:reset]", Some("r-1"))
        .await;
    assert_eq!((status, replayed), (200, true));
    let state = actor_state(&w, &session).await;
    assert_eq!(state["answersHeld"], 1, "{state}");
    let alarm = state["alarmAt"].as_str().expect("the alarm is set");
    let at = chrono_ms(alarm);
    let day = 24 * 60 * 60 * 1000;
    assert!(
        at <= e2e::now_ms() + day && at >= asked + day - 60_000,
        "the alarm drops the answer a day after it was given: {alarm}"
    );
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn chrono_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not a time: {text}: {e}"))
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_is_answered_at_once_and_the_socket_leaves_the_session() {
    let w = Workers::start().await;
    let user = "x:leaving";
    let session = w.session(user, "kai").await;
    for code in [1000, 4000] {
        let socket = Live::open(&w, user, &session, None).await;
        let answered = socket.close_with(code, Duration::from_secs(3)).await;
        assert_eq!(
            answered,
            Some(code),
            "the server answers the Close with its code"
        );
    }
    assert!(actor_reaches(&w, &session, "liveSockets", json!(0)).await);
}
