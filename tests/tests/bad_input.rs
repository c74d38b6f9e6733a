//! Bad input gets a clear JSON error with a 4xx status, and nothing is queued or written.

use e2e::{wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::Duration;

const ALICE: &str = "x:alice";
const BOB: &str = "x:bob";

/// One request that must be refused.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    user: Option<&'static str>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        user: Some(ALICE),
        content_type: Some("application/json"),
        headers: vec![],
        body: body.into(),
        status,
        code,
    }
}

async fn send(w: &Workers, c: &Case) -> (u16, Value, reqwest::header::HeaderMap) {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = w.http.request(method, w.url(&c.path)).body(c.body.clone());
    if let Some(user) = c.user {
        req = req.header("X-Dev-User", user);
    }
    if let Some(ct) = c.content_type {
        req = req.header("Content-Type", ct);
    }
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.expect("answered");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{}: the error is JSON: {text:?}", c.name));
    (status, body, headers)
}

fn counts(w: &Workers) -> Vec<i64> {
    [
        "users",
        "chat_sessions",
        "chat_messages",
        "point_events",
        "user_stats",
    ]
    .iter()
    .map(|t| w.count(&format!("SELECT COUNT(*) FROM {t}")))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_nothing_is_written() {
    let w = Workers::start().await;
    let session = w.session(ALICE, "sakura").await;
    let bobs = w.session(BOB, "kai").await;
    let before = counts(&w);

    let chat = |message: Value| json!({ "sessionId": session, "message": message }).to_string();
    let unknown = "01a21901-9d4f-704e-b447-4c684bd6b0fe";
    let mut cases = vec![
        case(
            "malformed JSON",
            "POST",
            "/api/chat",
            "{\"sessionId\":",
            400,
            "malformed_json",
        ),
        case(
            "not an object",
            "POST",
            "/api/chat",
            "[1,2,3]",
            400,
            "invalid_body",
        ),
        case("empty body", "POST", "/api/chat", "", 400, "malformed_json"),
        case(
            "missing message",
            "POST",
            "/api/chat",
            json!({ "sessionId": session }).to_string(),
            400,
            "missing_field",
        ),
        case(
            "missing session",
            "POST",
            "/api/chat",
            json!({ "message": "hi" }).to_string(),
            400,
            "missing_field",
        ),
        case(
            "message is a number",
            "POST",
            "/api/chat",
            chat(json!(42)),
            400,
            "invalid_field",
        ),
        case(
            "message is null",
            "POST",
            "/api/chat",
            chat(Value::Null),
            400,
            "missing_field",
        ),
        case(
            "sessionId is a number",
            "POST",
            "/api/chat",
            json!({ "sessionId": 7, "message": "hi" }).to_string(),
            400,
            "invalid_field",
        ),
        case(
            "sessionId is a path",
            "POST",
            "/api/chat",
            json!({ "sessionId": "../../etc/passwd", "message": "hi" }).to_string(),
            400,
            "invalid_field",
        ),
        case(
            "empty message",
            "POST",
            "/api/chat",
            chat(json!("   ")),
            400,
            "empty_field",
        ),
        case(
            "oversize message",
            "POST",
            "/api/chat",
            chat(json!("a".repeat(2001))),
            400,
            "field_too_long",
        ),
        case(
            "oversize body",
            "POST",
            "/api/chat",
            chat(json!("a".repeat(40_000))),
            413,
            "body_too_large",
        ),
        case(
            "bad locale",
            "POST",
            "/api/chat",
            json!({ "sessionId": session, "message": "hi", "locale": "fr" }).to_string(),
            400,
            "invalid_field",
        ),
        case(
            "unknown session",
            "POST",
            "/api/chat",
            json!({ "sessionId": unknown, "message": "hi" }).to_string(),
            404,
            "session_not_found",
        ),
        case(
            "another player's session",
            "POST",
            "/api/chat",
            json!({ "sessionId": bobs, "message": "hi" }).to_string(),
            404,
            "session_not_found",
        ),
        case(
            "unknown character",
            "POST",
            "/api/sessions",
            json!({ "characterType": "zeus", "username": "a", "locale": "en" }).to_string(),
            400,
            "invalid_field",
        ),
        case(
            "session without username",
            "POST",
            "/api/sessions",
            json!({ "characterType": "rin", "locale": "en" }).to_string(),
            400,
            "missing_field",
        ),
        case(
            "session with bad JSON",
            "POST",
            "/api/sessions",
            "{oops",
            400,
            "malformed_json",
        ),
        case("unknown route", "GET", "/api/nothing", "", 404, "not_found"),
        case("root", "GET", "/", "", 404, "not_found"),
        case(
            "chat by GET",
            "GET",
            "/api/chat",
            "",
            405,
            "method_not_allowed",
        ),
        case(
            "stats by POST",
            "POST",
            "/api/me/stats",
            "{}",
            405,
            "method_not_allowed",
        ),
        case(
            "sessions by DELETE",
            "DELETE",
            "/api/sessions",
            "",
            405,
            "method_not_allowed",
        ),
        case(
            "messages of an unknown session",
            "GET",
            &format!("/api/sessions/{unknown}/messages"),
            "",
            404,
            "session_not_found",
        ),
        case(
            "messages of another player's session",
            "GET",
            &format!("/api/sessions/{bobs}/messages"),
            "",
            404,
            "session_not_found",
        ),
        case(
            "messages of a path",
            "GET",
            "/api/sessions/..%2F..%2Fusers/messages",
            "",
            404,
            "session_not_found",
        ),
        case(
            "messages with a bad limit",
            "GET",
            &format!("/api/sessions/{session}/messages?limit=0"),
            "",
            400,
            "invalid_query",
        ),
    ];
    let mut no_auth = case(
        "no X-Dev-User",
        "POST",
        "/api/chat",
        chat(json!("hi")),
        401,
        "missing_auth",
    );
    no_auth.user = None;
    cases.push(no_auth);
    for (name, user) in [
        ("provider unknown", "google:1"),
        ("no separator", "alice"),
        ("empty id", "x:"),
    ] {
        let mut c = case(
            name,
            "POST",
            "/api/chat",
            chat(json!("hi")),
            401,
            "malformed_auth",
        );
        c.user = Some(user);
        cases.push(c);
    }
    let mut stats_no_auth = case(
        "stats without auth",
        "GET",
        "/api/me/stats",
        "",
        401,
        "missing_auth",
    );
    stats_no_auth.user = None;
    cases.push(stats_no_auth);
    for (name, ct) in [
        ("text body", Some("text/plain")),
        ("form body", Some("application/x-www-form-urlencoded")),
        ("no content type", None),
    ] {
        let mut c = case(
            name,
            "POST",
            "/api/chat",
            chat(json!("hi")),
            415,
            "unsupported_media_type",
        );
        c.content_type = ct;
        cases.push(c);
    }
    for (name, key) in [
        ("key with spaces", "a b"),
        ("key too long", &"k".repeat(129) as &str),
    ] {
        let mut c = case(
            name,
            "POST",
            "/api/chat",
            chat(json!("hi")),
            400,
            "invalid_idempotency_key",
        );
        c.headers.push(("Idempotency-Key", key.to_owned()));
        cases.push(c);
    }

    for c in &cases {
        let (status, body, headers) = send(&w, c).await;
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert_eq!(body["error"]["code"], c.code, "{}: {body}", c.name);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            c.name
        );
        if status == 405 {
            assert!(headers.get("allow").is_some(), "{}: Allow header", c.name);
        }
    }

    // A valid turn after the corpus: once it is stored, anything queued before it would be too.
    let (status, body) = w
        .post(
            "/api/chat",
            ALICE,
            &json!({ "sessionId": session, "message": "hello" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(Duration::from_secs(30), || w
            .count("SELECT COUNT(*) FROM point_events")
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = counts(&w);
    // Only the valid turn's rows: 2 messages, 1 event, 1 stats row.
    assert_eq!(
        after,
        vec![
            before[0],
            before[1],
            before[2] + 2,
            before[3] + 1,
            before[4] + 1
        ]
    );
    assert!(!w.log().contains("panicked"), "no panic in the Workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_auth_is_off_unless_the_local_config_turns_it_on() {
    // AUTH_MODE=dev alone, as a production config might set by accident: refused.
    let w = Workers::start_with(Options {
        dev_auth: false,
        chat_vars: vec![("AUTH_MODE", "dev".into())],
        ..Options::default()
    })
    .await;
    let body = json!({ "characterType": "rin", "username": "a", "locale": "en" });
    let (status, body) = w.post("/api/sessions", ALICE, &body).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "auth_unavailable");
    // wrangler forwards the Worker's console asynchronously: give the line a moment.
    assert!(
        wait_for(Duration::from_secs(10), || w
            .log()
            .contains("ALLOW_DEV_AUTH=local-only"))
        .await,
        "the log says why"
    );
    let (status, _) = w.get("/api/me/stats", ALICE).await;
    assert_eq!(status, 401);
    assert_eq!(w.count("SELECT COUNT(*) FROM users"), 0);
}
