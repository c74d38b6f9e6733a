//! Live answers end to end, on workerd through `wrangler dev`: server-sent events over
//! `POST /api/chat` and the session's live socket, with the offline engine writing a piece
//! every few tens of milliseconds. Every promise of a turn holds on every transport: the
//! reply shows as it is written, `done` is the plain answer, a key answers the same whatever
//! transport asks, a stop scores nothing, a reconnecting socket gets what it missed, and
//! every turn is stored once.

use e2e::live::{live_url, read_events, refusal, ticket, try_open, Live};
use e2e::{wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::Duration;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_the_reply_and_keep_the_plain_answers() {
    let w = Workers::start_with(Options {
        chat_vars: vec![
            ("OFFLINE_STREAM_MS", "40".into()),
            ("FAULTS", "markers".into()),
        ],
        ..Options::default()
    })
    .await;
    let user = "x:streamer";
    let session = w.session(user, "sakura").await;

    let first =
        read_events(w.chat_request(user, &session, "thank you, you are so kind", Some("s-1")))
            .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.content_type.starts_with("text/event-stream"));
    assert!(!first.replayed);
    let (deltas, last) = first.events.split_at(first.events.len() - 1);
    assert!(
        deltas.len() >= 3,
        "the reply comes in pieces: {:?}",
        first.events
    );
    assert!(deltas.iter().all(|e| e.name == "delta"));
    assert_eq!(last[0].name, "done");
    assert!(
        last[0].at >= deltas[0].at + Duration::from_millis(60),
        "the first piece came well before the end: {:?}",
        first.events.iter().map(|e| e.at).collect::<Vec<_>>()
    );
    let answer = parse(&last[0].data);
    let text: String = deltas
        .iter()
        .map(|e| parse(&e.data)["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, answer["reply"].as_str().unwrap());

    // The same key over plain HTTP: the very bytes `done` carried.
    let plain = w
        .chat_request(user, &session, "thank you, you are so kind", Some("s-1"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().contains_key("idempotent-replayed"));
    assert_eq!(plain.text().await.unwrap(), last[0].data);
    // And over SSE again: one delta with the whole reply, then the identical done.
    let again =
        read_events(w.chat_request(user, &session, "thank you, you are so kind", Some("s-1")))
            .await;
    assert!(again.replayed);
    assert_eq!(again.events.len(), 2, "{:?}", again.events);
    assert_eq!(parse(&again.events[0].data)["text"], answer["reply"]);
    assert_eq!(again.events[1].data, last[0].data);

    // Refusals known before the stream keep their JSON answers and statuses.
    let reused = read_events(w.chat_request(user, &session, "another line", Some("s-1"))).await;
    assert_eq!(
        (reused.status, parse(&reused.body)["error"]["code"].clone()),
        (422, json!("idempotency_key_reused"))
    );
    let bad = read_events(w.chat_request(user, &session, "", Some("s-2"))).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let stranger = read_events(w.chat_request("x:stranger", &session, "hi", Some("s-3"))).await;
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    let anonymous = read_events(
        w.http
            .post(w.url("/api/chat"))
            .json(&json!({ "sessionId": session, "message": "hi" })),
    )
    .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // A failure once the stream began is an `error` event; the key's retry plays it once.
    let failing = "you are sweet [fault:send-fails]";
    let broke = read_events(w.chat_request(user, &session, failing, Some("s-4"))).await;
    assert_eq!(broke.status, 200);
    let end = broke.events.last().unwrap();
    assert_eq!(end.name, "error", "{:?}", broke.events);
    assert_eq!(parse(&end.data)["error"]["code"], "queue_unavailable");
    let retried = read_events(w.chat_request(user, &session, failing, Some("s-4"))).await;
    assert_eq!(
        retried.events.last().unwrap().name,
        "done",
        "{:?}",
        retried.events
    );

    // A hostile turn over SSE ends the game at once.
    let over = read_events(w.chat_request(
        user,
        &session,
        "I hate you, you are stupid and ugly",
        Some("s-5"),
    ))
    .await;
    assert_eq!(parse(&over.events.last().unwrap().data)["isGameOver"], true);
    let after = read_events(w.chat_request(user, &session, "sorry", Some("s-6"))).await;
    assert_eq!(after.status, 409, "{}", after.body);

    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 3).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(w.stored_in(&session), 3, "s-1, s-4 and s-5, each once");
    assert_eq!(w.count("SELECT COUNT(*) FROM dead_letters"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_a_session_sees_each_turn_and_every_promise_holds() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("OFFLINE_STREAM_MS", "40".into())],
        ..Options::default()
    })
    .await;
    let user = "x:live";
    let session = w.session(user, "kai").await;
    let other = w.session("x:other", "kai").await;

    // Tickets and the doors they open.
    let (status, t) = ticket(&w, user, &session).await;
    assert_eq!(status, 201, "{t}");
    assert!(t["expiresAt"].is_string());
    let (status, _) = ticket(&w, "x:intruder", &session).await;
    assert_eq!(status, 404, "no ticket for another player's session");
    let no_upgrade = w
        .http
        .get(w.url(&format!("/api/sessions/{session}/live?ticket=x")))
        .send()
        .await
        .unwrap();
    assert_eq!(no_upgrade.status(), 426);
    let good = t["ticket"].as_str().unwrap().to_owned();
    let code = |status: u16, code: &str| (status, code.to_owned());
    assert_eq!(
        refusal(&w, &live_url(&w, &session, "nope", None), None).await,
        code(401, "invalid_ticket")
    );
    assert_eq!(
        refusal(&w, &live_url(&w, &other, &good, None), None).await,
        code(401, "invalid_ticket"),
        "another session's ticket"
    );
    assert_eq!(
        refusal(
            &w,
            &live_url(&w, &session, &good, None),
            Some("https://evil.example")
        )
        .await,
        code(403, "forbidden_origin")
    );
    let mut a = try_open(&live_url(&w, &session, &good, None), Some(&w.base))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", w.log_tail()));
    assert_eq!(
        refusal(&w, &live_url(&w, &session, &good, None), None).await,
        code(401, "ticket_used")
    );
    let mut b = Live::open(&w, user, &session, None).await;
    assert_eq!(a.ping().await.as_deref(), Some("pong"));

    // A turn from one socket: every socket sees the message, the pieces, and the answer.
    a.send(&json!({ "type": "turn", "key": "w-1", "message": "thank you, you are wonderful" }))
        .await;
    let seen_a = a.until_end("w-1").await;
    let seen_b = b.until_end("w-1").await;
    for seen in [&seen_a, &seen_b] {
        let types: Vec<&str> = seen
            .iter()
            .map(|(f, _)| f["type"].as_str().unwrap())
            .collect();
        assert_eq!(types.first(), Some(&"player"), "{types:?}");
        assert_eq!(types.last(), Some(&"done"));
        assert!(
            types.iter().filter(|t| **t == "delta").count() >= 3,
            "{types:?}"
        );
        let seqs: Vec<i64> = seen
            .iter()
            .map(|(f, _)| f["seq"].as_i64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|s| s[0] < s[1]),
            "seq increases: {seqs:?}"
        );
    }
    let (done, done_at) = seen_a.last().unwrap().clone();
    let first_delta_at = seen_a.iter().find(|(f, _)| f["type"] == "delta").unwrap().1;
    assert!(
        done_at >= first_delta_at + Duration::from_millis(60),
        "text appears before the end"
    );
    let text: String = seen_a
        .iter()
        .filter(|(f, _)| f["type"] == "delta")
        .map(|(f, _)| f["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, done["answer"]["reply"].as_str().unwrap());
    assert_eq!(
        seen_b.last().unwrap().0,
        done,
        "both sockets got the same answer"
    );
    // The key answers the same over HTTP.
    let plain = w
        .chat_request(user, &session, "thank you, you are wonderful", Some("w-1"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().contains_key("idempotent-replayed"));
    assert_eq!(parse(&plain.text().await.unwrap()), done["answer"]);
    // And again over the socket: to that socket only, one delta and the same answer.
    a.send(&json!({ "type": "turn", "key": "w-1", "message": "thank you, you are wonderful" }))
        .await;
    let replay = a.until_end("w-1").await;
    assert_eq!(replay.last().unwrap().0["answer"], done["answer"]);
    assert!(
        b.next(Duration::from_millis(300)).await.is_none(),
        "a replay is not told to the others"
    );

    // A stop while the reply is written: the turn ends `stopped`, nothing is scored, and
    // the key can be played again.
    a.send(
        &json!({ "type": "turn", "key": "w-2", "message": "tell me a long story about the sea" }),
    )
    .await;
    loop {
        let f = a.next(Duration::from_secs(10)).await.expect("frames");
        if f["type"] == "delta" {
            break;
        }
    }
    a.send(&json!({ "type": "stop", "key": "w-2" })).await;
    let stopped = a.until_end("w-2").await;
    assert_eq!(
        stopped.last().unwrap().0["error"]["code"],
        "stopped",
        "{stopped:?}"
    );
    assert_eq!(
        b.until_end("w-2").await.last().unwrap().0["error"]["code"],
        "stopped"
    );
    a.send(
        &json!({ "type": "turn", "key": "w-2", "message": "tell me a long story about the sea" }),
    )
    .await;
    assert_eq!(a.until_end("w-2").await.last().unwrap().0["type"], "done");
    b.until_end("w-2").await;

    // Bad frames get an error frame and leave the socket usable.
    for (frame, code) in [
        ("not json".to_owned(), "malformed_json"),
        (
            json!({ "type": "dance", "key": "x" }).to_string(),
            "unknown_frame",
        ),
        (
            json!({ "type": "turn", "message": "no key" }).to_string(),
            "missing_field",
        ),
        (
            json!({ "type": "turn", "key": "w-x", "message": "a".repeat(2001) }).to_string(),
            "field_too_long",
        ),
        (
            json!({ "type": "stop", "key": "nobody" }).to_string(),
            "nothing_to_stop",
        ),
    ] {
        a.send_text(&frame).await;
        let f = a
            .next(Duration::from_secs(5))
            .await
            .expect("an error frame");
        assert_eq!(
            (f["type"].as_str(), f["error"]["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}"
        );
    }

    // A socket dropped mid-reply reconnects with `after` and gets the rest.
    b.send(&json!({ "type": "turn", "key": "w-3", "message": "what do you like to eat?" }))
        .await;
    let mut last_seen = 0;
    loop {
        let f = a.next(Duration::from_secs(10)).await.expect("frames");
        last_seen = f["seq"].as_i64().unwrap_or(last_seen);
        if f["type"] == "delta" {
            break;
        }
    }
    a.close().await;
    let mut back = Live::open(&w, user, &session, Some(last_seen)).await;
    let rest = back.until_end("w-3").await;
    assert!(
        rest.iter()
            .all(|(f, _)| f["seq"].as_i64().unwrap() > last_seen),
        "only what was missed"
    );
    assert_eq!(rest.last().unwrap().0["type"], "done");
    let done3 = b.until_end("w-3").await.last().unwrap().0.clone();
    assert_eq!(rest.last().unwrap().0, done3);
    // A socket opened later, after everything, gets the last finished turn again.
    let mut late = Live::open(&w, user, &session, Some(0)).await;
    assert_eq!(late.until_end("w-3").await.last().unwrap().0, done3);

    // A game over over the socket is final at once, for every transport.
    back.send(
        &json!({ "type": "turn", "key": "w-4", "message": "I hate you, you are stupid and ugly" }),
    )
    .await;
    assert_eq!(
        back.until_end("w-4").await.last().unwrap().0["answer"]["isGameOver"],
        true
    );
    back.send(&json!({ "type": "turn", "key": "w-5", "message": "sorry" }))
        .await;
    assert_eq!(
        back.until_end("w-5").await.last().unwrap().0["error"]["code"],
        "session_ended"
    );
    let (status, _) = w
        .post(
            "/api/chat",
            user,
            &json!({ "sessionId": session, "message": "hello?" }),
        )
        .await;
    assert_eq!(status, 409);

    // A socket that floods is closed with a clear code.
    let mut flood = Live::open(&w, user, &session, None).await;
    for i in 0..30 {
        flood
            .send(&json!({ "type": "stop", "key": format!("f{i}") }))
            .await;
    }
    assert_eq!(flood.closed(Duration::from_secs(10)).await, Some(1008));

    // Every turn that ended `done` is stored once; the stopped one never.
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_in(&session) == 4).await,
        "{}",
        w.stored_in(&session)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        w.stored_in(&session),
        4,
        "w-1, w-2 (played again), w-3 and w-4"
    );
    assert_eq!(w.count("SELECT COUNT(*) FROM dead_letters"), 0);
}
