//! Session actors end to end, on workerd through `wrangler dev` with the real local Durable
//! Objects, queue and D1: exact answers to keyed retries, refused key reuse, a game over that
//! is final at once, the conversation the engine hears, one turn at a time, pruning, and the
//! Workers AI engine's offline fallback.

use e2e::fake::{FakeRequest, FakeServer};
use e2e::{wait_for, Options, Workers};
use futures::future::join_all;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A fake LLM that answers differently on every call (`reply #n`, score n mod 5) and keeps
/// every request body it received, in order. `delay` holds each answer back, and the highest
/// number of requests it ever had in flight at once is counted.
struct CountingLlm {
    server: FakeServer,
    bodies: Arc<Mutex<Vec<Value>>>,
    max_in_flight: Arc<AtomicUsize>,
}

async fn counting_llm(delay: Duration) -> CountingLlm {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (b, c, f, m) = (
        bodies.clone(),
        calls.clone(),
        in_flight.clone(),
        max_in_flight.clone(),
    );
    let server = FakeServer::start(move |r: FakeRequest| {
        let (b, c, f, m) = (b.clone(), c.clone(), f.clone(), m.clone());
        async move {
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            b.lock()
                .unwrap()
                .push(serde_json::from_str(&r.body).unwrap());
            tokio::time::sleep(delay).await;
            f.fetch_sub(1, Ordering::SeqCst);
            let content =
                json!({ "reply": format!("reply #{n}"), "score": n % 5, "emotion": "happy" })
                    .to_string();
            (
                200,
                json!({ "choices": [{ "message": { "role": "assistant", "content": content } }] })
                    .to_string(),
            )
        }
    })
    .await;
    CountingLlm {
        server,
        bodies,
        max_in_flight,
    }
}

async fn with_llm(llm: &CountingLlm, extra: Vec<(&'static str, String)>) -> Workers {
    let mut chat_vars = vec![
        ("REPLY_ENGINE", "llm".into()),
        ("LLM_BASE_URL", format!("{}/v1", llm.server.url)),
        ("LLM_MODEL", "test-model".into()),
        ("LLM_TIMEOUT_MS", "5000".into()),
    ];
    chat_vars.extend(extra);
    Workers::start_with(Options {
        chat_vars,
        ..Options::default()
    })
    .await
}

/// Waits until the queue has moved past everything sent before: a fresh turn of another
/// player is stored, and then one more batch timeout passes.
async fn drain(w: &Workers) {
    let user = "x:sentinel";
    let session = w.session(user, "kai").await;
    let (status, _, body) = w.chat_raw(user, &session, "sentinel", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_retries_get_the_same_answer_and_reused_keys_are_refused() {
    let llm = counting_llm(Duration::ZERO).await;
    let w = with_llm(&llm, vec![]).await;
    let user = "x:retrier";
    let session = w.session(user, "sakura").await;

    let (status, replayed, first) = w.chat_raw(user, &session, "hi there", Some("turn-1")).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    for _ in 0..3 {
        let (status, replayed, again) =
            w.chat_raw(user, &session, "hi there", Some("turn-1")).await;
        assert_eq!((status, replayed), (200, true));
        assert_eq!(again, first, "a retry gets the first answer byte for byte");
    }
    assert_eq!(llm.server.hits(), 1, "retries never ask the engine again");

    // The same key with another message (a client counter that restarted): 422, nothing queued.
    let (status, _, refused) = w
        .chat_raw(user, &session, "a new line", Some("turn-1"))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(parse(&refused)["error"]["code"], "idempotency_key_reused");
    assert_eq!(llm.server.hits(), 1);

    drain(&w).await;
    assert_eq!(w.stored_in(&session), 1, "one turn stored for four answers");
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "nothing dead-lettered for the refused key"
    );
    let first = parse(&first);
    let stored_reply: String = w
        .db()
        .query_row(
            "SELECT content FROM chat_messages WHERE session_id = ?1 AND role = 'agent'",
            [&session],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        first["reply"], stored_reply,
        "what the player saw is what D1 holds"
    );
    let (_, stats) = w.get("/api/me/stats", user).await;
    assert_eq!(stats["totalPoints"], first["score"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_over_is_final_at_once_and_its_retry_keeps_its_answer() {
    let w = Workers::start().await;
    let user = "x:quitter";
    let session = w.session(user, "rin").await;
    let (status, _, last) = w
        .chat_raw(user, &session, "I hate you, you are stupid", Some("final"))
        .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(parse(&last)["isGameOver"], true);

    // At once, before the consumer has stored anything: the actor knows.
    let (status, _, refused) = w.chat_raw(user, &session, "sorry!", Some("after")).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(parse(&refused)["error"]["code"], "session_ended");
    let (status, _, refused) = w.chat_raw(user, &session, "sorry again", None).await;
    assert_eq!(status, 409, "{refused}");

    let (status, replayed, again) = w
        .chat_raw(user, &session, "I hate you, you are stupid", Some("final"))
        .await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(
        again, last,
        "the final turn's retry gets its original answer"
    );

    // Another player learns nothing about the session, with or without its key.
    let (status, _, other) = w
        .chat_raw(
            "x:stranger",
            &session,
            "I hate you, you are stupid",
            Some("final"),
        )
        .await;
    assert_eq!(status, 404, "{other}");
    assert_eq!(parse(&other)["error"]["code"], "session_not_found");

    drain(&w).await;
    assert_eq!(w.stored_in(&session), 1);
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM chat_sessions WHERE id = '{session}' AND ended_at IS NOT NULL"
        )),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_hears_the_conversation_and_the_actor_keeps_only_n_turns() {
    let llm = counting_llm(Duration::ZERO).await;
    let w = with_llm(&llm, vec![]).await;
    let user = "privy:did:privy:talker";
    let body = json!({ "characterType": "sakura", "username": "Mika", "locale": "en" });
    let (status, created) = w.post("/api/sessions", user, &body).await;
    assert_eq!(status, 201);
    let session = created["sessionId"].as_str().unwrap().to_owned();

    let lines = ["hello Sakura", "do you like tea?", "what did I ask you?"];
    let mut answers = Vec::new();
    for line in lines {
        let (status, _, body) = w.chat_raw(user, &session, line, None).await;
        assert_eq!(status, 200, "{body}");
        answers.push(parse(&body));
    }
    let bodies = llm.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    let third = bodies[2]["messages"].as_array().unwrap();
    let system = third[0]["content"].as_str().unwrap();
    assert_eq!(third[0]["role"], "system");
    assert!(
        system.contains("Sakura") && system.contains("Mika"),
        "{system}"
    );
    let turn = |n: usize| {
        json!({ "reply": format!("reply #{n}"), "score": n % 5, "emotion": "happy" }).to_string()
    };
    assert_eq!(
        third[1..].to_vec(),
        vec![
            json!({ "role": "user", "content": "hello Sakura" }),
            json!({ "role": "assistant", "content": turn(1) }),
            json!({ "role": "user", "content": "do you like tea?" }),
            json!({ "role": "assistant", "content": turn(2) }),
            json!({ "role": "user", "content": "what did I ask you?" }),
        ],
        "exactly the earlier turns, in order, then the new line"
    );
    assert_eq!(bodies[0]["messages"].as_array().unwrap().len(), 2);
    assert_eq!(answers[1]["reply"], "reply #2");

    // 100 more turns: the actor prunes to the default 20, and the engine hears 20.
    for i in 0..100 {
        let (status, _, body) = w.chat_raw(user, &session, &format!("line {i}"), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let last = llm.bodies.lock().unwrap().last().unwrap().clone();
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        1 + 2 * 20 + 1,
        "system, 20 turns, the new line"
    );
    assert_eq!(messages[1]["content"], "line 79", "the oldest kept turn");
    let (status, held) = w
        .admin("GET", &format!("/admin/sessions/{session}"), None)
        .await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["turnsHeld"], 20, "{held}");
    assert_eq!(held["session"]["username"], "Mika");
    assert!(held["session"]["endedAt"].is_null());
    assert!(wait_for(Duration::from_secs(60), || w.stored_in(&session) == 103).await);
}

/// `n` keyed turns of one session sent at once: "{prefix} {i}" with the key "{prefix}-{i}".
async fn at_once(
    w: &Workers,
    user: &str,
    session: &str,
    prefix: &str,
    n: usize,
) -> Vec<(u16, bool, String)> {
    join_all((0..n).map(|i| async move {
        let key = format!("{prefix}-{i}");
        w.chat_raw(user, session, &format!("{prefix} {i}"), Some(&key))
            .await
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_one_session_take_turns_and_a_flood_is_refused_without_loss() {
    // Each answer takes 300 ms, so concurrent turns really overlap at the actor.
    let llm = counting_llm(Duration::from_millis(300)).await;
    let w = with_llm(&llm, vec![]).await;
    let user = "x:eager";
    let session = w.session(user, "kai").await;

    // Five at once: they wait for each other and all succeed, one engine call at a time.
    let five = at_once(&w, user, &session, "quick", 5).await;
    for (status, _, body) in &five {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(
        llm.max_in_flight.load(Ordering::SeqCst),
        1,
        "the engine never saw two turns of the session at once"
    );
    // Each later turn heard the ones before it: the fifth engine call carried four turns.
    assert_eq!(
        llm.bodies.lock().unwrap()[4]["messages"]
            .as_array()
            .unwrap()
            .len(),
        1 + 2 * 4 + 1
    );

    // Twenty at once: one runs, at most 8 wait, the rest get 409 turn_in_progress at once.
    let flood = at_once(&w, user, &session, "flood", 20).await;
    let ok = flood.iter().filter(|(s, _, _)| *s == 200).count();
    let busy: Vec<_> = flood.iter().filter(|(s, _, _)| *s == 409).collect();
    assert_eq!(ok + busy.len(), 20, "{flood:?}");
    assert!(!busy.is_empty() && ok >= 9, "ok {ok}, busy {}", busy.len());
    for (_, _, body) in &busy {
        assert_eq!(parse(body)["error"]["code"], "turn_in_progress");
    }
    // A refused turn was never played: its retry with the same key is a fresh turn.
    let (_, _, _) = &busy[0];
    let refused_index = flood.iter().position(|(s, _, _)| *s == 409).unwrap();
    let (status, replayed, _) = w
        .chat_raw(
            user,
            &session,
            &format!("flood {refused_index}"),
            Some(&format!("flood-{refused_index}")),
        )
        .await;
    assert_eq!((status, replayed), (200, false));

    let answered = 5 + ok as i64 + 1;
    assert!(
        wait_for(Duration::from_secs(60), || w.stored_in(&session)
            == answered)
        .await,
        "every answered turn is stored: {} of {answered}",
        w.stored_in(&session)
    );
    drain(&w).await;
    assert_eq!(w.stored_in(&session), answered, "and nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_ai_engine_falls_back_offline() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("REPLY_ENGINE", "workers-ai".into())],
        ..Options::default()
    })
    .await;
    let user = "x:ai-fan";
    let session = w.session(user, "sakura").await;
    let (status, _, body) = w.chat_raw(user, &session, "thank you, so kind", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(parse(&body)["reply"]
        .as_str()
        .unwrap()
        .starts_with("Sakura: "));
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 1).await);
    let engine: String = w
        .db()
        .query_row(
            "SELECT metadata_json ->> '$.engine' FROM point_events WHERE session_id = ?1",
            [&session],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(engine, "offline-fallback");
    assert!(
        wait_for(Duration::from_secs(10), || w
            .log_events("reply engine failed; falling back to the offline engine")
            .iter()
            .any(|e| e["engine"] == "workers-ai"))
        .await,
        "the log says which engine failed and why:\n{}",
        w.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_between_send_and_record_keeps_the_key_bound_to_its_message() {
    // `[fault:reset]`: the actor is reset right after the turn's queue send, before it
    // confirms the turn. The record is on the queue; the client got no answer.
    let w = Workers::start_with(Options {
        chat_vars: vec![("FAULTS", "markers".into())],
        ..Options::default()
    })
    .await;
    let user = "x:reset";
    let session = w.session(user, "sakura").await;
    let message = "thank you [fault:reset]";
    // Locally the actor shares the chat Worker's isolate, so the reset leaves that request
    // hanging instead of answering 503: either way the client has no answer, and gives up.
    let failed = |r: reqwest::Result<reqwest::Response>| match r {
        Ok(r) => r.status().is_server_error(),
        Err(_) => true,
    };
    let give_up = Duration::from_secs(4);
    let first = w
        .chat_request(user, &session, message, Some("k-1"))
        .timeout(give_up)
        .send()
        .await;
    assert!(failed(first), "the reset fails the request");

    // The client edits its message and retries with the same key: refused, at once.
    let (status, _, body) = w.chat_raw(user, &session, "thank you", Some("k-1")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(parse(&body)["error"]["code"], "idempotency_key_reused");
    // The same message with the same key: the turn bound before the send, answered.
    let (status, replayed, answer) = w.chat_raw(user, &session, message, Some("k-1")).await;
    assert_eq!((status, replayed), (200, true), "{answer}");
    let (status, _, again) = w.chat_raw(user, &session, message, Some("k-1")).await;
    assert_eq!((status, again.as_str()), (200, answer.as_str()));
    // A reset on a second key, and the player moves on with a third: the bound turn is
    // sent again before the next one plays.
    let second = w
        .chat_request(user, &session, "you are sweet [fault:reset]", Some("k-2"))
        .timeout(give_up)
        .send()
        .await;
    assert!(failed(second));
    let (status, _, body) = w.chat_raw(user, &session, "hello", Some("k-3")).await;
    assert_eq!(status, 200, "{body}");

    drain(&w).await;
    assert_eq!(w.stored_in(&session), 3, "k-1, k-2 and k-3, each once");
    let stored_text: String = w
        .db()
        .query_row(
            "SELECT content FROM chat_messages WHERE id = ?1",
            [parse(&answer)["messageId"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored_text, message,
        "the words bound to the key are stored"
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters"),
        0,
        "no conflict letter"
    );
    let duplicates: i64 = w
        .log_events("turn batch")
        .iter()
        .map(|b| b["duplicate"].as_i64().unwrap_or(0))
        .sum();
    assert!(
        duplicates >= 2,
        "the resent records were duplicates: {duplicates}"
    );
}

/// Every row of the player tables, summed over the databases.
fn player_rows(w: &Workers) -> i64 {
    w.count("SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM chat_sessions) + (SELECT COUNT(*) FROM chat_messages) + (SELECT COUNT(*) FROM point_events) + (SELECT COUNT(*) FROM user_stats)")
}

/// Waits, if need be, for the start of the next minute: the local rate limiter counts in
/// fixed windows of a minute since the epoch (miniflare's `floor(now / 60 s)`), so a burst
/// that straddles two windows could pass twice the limit. A burst started in the first
/// 20 s of a window ends in it, even on a loaded machine.
async fn early_in_a_limiter_window() {
    let into = e2e::now_ms().rem_euclid(60_000);
    if into > 20_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into) as u64 + 250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_rate_limited_and_unknown_sessions_write_nothing() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("TURN_RATE_LIMIT", "on".into())],
        ..Options::default()
    })
    .await;
    let user = "x:farmer";
    let session = w.session(user, "kai").await;
    // The deployed limit: 30 turns a minute per player.
    early_in_a_limiter_window().await;
    let mut ok = 0;
    let mut limited = None;
    for i in 0..40 {
        let r = w
            .chat_request(
                user,
                &session,
                &format!("hi {i}"),
                Some(&format!("farm-{i}")),
            )
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok += 1;
            continue;
        }
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        limited = Some((
            r.status().as_u16(),
            retry_after,
            r.json::<Value>().await.unwrap(),
        ));
        break;
    }
    assert_eq!(ok, 30, "30 turns a minute go through");
    let (status, retry_after, body) = limited.expect("the 31st turn is refused");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(retry_after.as_deref(), Some("60"));
    // A turn over the live socket counts too.
    let mut live = e2e::live::Live::open(&w, user, &session, None).await;
    live.send(&json!({ "type": "turn", "key": "farm-ws", "message": "one more" }))
        .await;
    let refused = live.until_end("farm-ws").await;
    assert_eq!(
        refused.last().unwrap().0["error"]["code"],
        "rate_limited",
        "{refused:?}"
    );
    live.close().await;
    // Another player is not throttled by this one.
    let other = w.session("x:neighbour", "kai").await;
    let (status, _, body) = w.chat_raw("x:neighbour", &other, "hello", None).await;
    assert_eq!(status, 200, "{body}");
    // Exactly the answered turns are stored: the refused one was never queued.
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 30).await);
    drain(&w).await;
    assert_eq!(w.stored_in(&session), 30);

    // Session starts: 10 a minute per player. The rest get 429 and write nothing.
    let (rows, actors) = (player_rows(&w), w.actor_files());
    early_in_a_limiter_window().await;
    let mut started = 0;
    for i in 0..50 {
        let body = json!({ "characterType": "kai", "username": format!("s{i}"), "locale": "en" });
        let r = w
            .http
            .post(w.url("/api/sessions"))
            .header("X-Dev-User", "x:starter")
            .json(&body)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            201 => started += 1,
            429 => {
                assert_eq!(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("60")
                );
                assert_eq!(
                    r.json::<Value>().await.unwrap()["error"]["code"],
                    "rate_limited"
                );
            }
            other => panic!("session start {i}: {other}"),
        }
    }
    assert_eq!(started, 10, "10 session starts a minute go through");
    assert_eq!(
        w.count("SELECT COUNT(*) FROM chat_sessions WHERE username LIKE 's%'"),
        10
    );
    assert_eq!(
        player_rows(&w),
        rows + 11,
        "10 sessions and the player, nothing more"
    );
    assert_eq!(w.actor_files(), actors + 10, "10 actors, nothing more");

    // Turns and history reads with session ids that do not exist: 404, and nothing is
    // written anywhere, no actor storage included.
    let (rows, actors) = (player_rows(&w), w.actor_files());
    for i in 0..20 {
        let ghost = uuid::Uuid::now_v7().to_string();
        let (status, _, body) = w
            .chat_raw("x:prober", &ghost, "anyone there?", Some(&format!("g{i}")))
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(parse(&body)["error"]["code"], "session_not_found");
        let (status, body) = w
            .get(&format!("/api/sessions/{ghost}/messages"), "x:prober")
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("session_not_found"))
        );
    }
    assert_eq!(player_rows(&w), rows, "no D1 row");
    assert_eq!(w.actor_files(), actors, "no actor storage");
}
