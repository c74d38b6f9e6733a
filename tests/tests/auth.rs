//! Real players end to end: Privy tokens signed by the test's own P-256 key, sign-in with X
//! against a fake `users/me`, and the LLM reply engine against a fake endpoint.

use chat_core::jwt::signing::{privy_token, public_pem, test_key};
use e2e::fake::{FakeRequest, FakeServer};
use e2e::{wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const APP: &str = "test-privy-app";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn access(sub: &str, key_seed: u8, extra: Value) -> String {
    let mut claims = json!({ "sid": "s", "sub": sub, "iss": "privy.io", "aud": APP, "iat": now(), "exp": now() + 600 });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    privy_token(&test_key(key_seed), &claims)
}

/// `token` with one character of its signature changed: the tenth from the end, whose six
/// bits all count (the last character of a 64-byte signature carries only two, and a change
/// to the others makes the base64 non-canonical: malformed, not a bad signature).
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len() - 10;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Sends `body` to `path` with a bearer token and optional Privy identity token.
async fn call(
    w: &Workers,
    method: &str,
    path: &str,
    token: Option<&str>,
    id_token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut req = w.http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        w.url(path),
    );
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(t) = id_token {
        req = req.header("privy-id-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn new_session() -> Value {
    json!({ "characterType": "kai", "username": "player", "locale": "en" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privy_players_are_verified_and_recorded_once() {
    let pem = public_pem(&test_key(11)).replace('\n', "\\n");
    let w = Workers::start_with(Options {
        dev_auth: false,
        chat_vars: vec![
            ("AUTH_MODE", "privy".into()),
            ("PRIVY_APP_ID", APP.into()),
            ("PRIVY_VERIFICATION_KEY", pem),
        ],
        ..Options::default()
    })
    .await;
    let sub = "did:privy:cm0player";
    let token = access(sub, 11, json!({}));
    let linked = json!([
        { "type": "wallet", "address": "0x52908400098527886E0F7030069857D2E4169EE7", "chain_type": "ethereum" },
        { "type": "twitter_oauth", "subject": "1500", "username": "aki_plays", "name": "Aki" }
    ]);
    let id_token = access(sub, 11, json!({ "linked_accounts": linked.to_string() }));

    let (status, s1, _) = call(
        &w,
        "POST",
        "/api/sessions",
        Some(&token),
        Some(&id_token),
        Some(new_session()),
    )
    .await;
    assert_eq!(status, 201, "{s1}");
    let session = s1["sessionId"].as_str().unwrap();
    let (status, turn, _) = call(
        &w,
        "POST",
        "/api/chat",
        Some(&token),
        Some(&id_token),
        Some(json!({ "sessionId": session, "message": "hi, thank you" })),
    )
    .await;
    assert_eq!(status, 200, "{turn}");
    let turn_id = turn["messageId"].as_str().unwrap().to_owned();
    let stored = format!("SELECT COUNT(*) FROM point_events WHERE message_id = '{turn_id}'");
    assert!(
        wait_for(Duration::from_secs(30), || w.count(&stored) == 1).await,
        "{}",
        w.log_tail()
    );
    // The same player from a second session, without an identity token: still one user.
    let (status, s2, _) = call(
        &w,
        "POST",
        "/api/sessions",
        Some(&token),
        None,
        Some(new_session()),
    )
    .await;
    assert_eq!(status, 201, "{s2}");
    let (user_id, provider, puid, name, wallet, x_user): (String, String, String, String, String, String) = w
        .db()
        .query_row(
            "SELECT id, auth_provider, auth_provider_user_id, display_name, wallet_address, x_username FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(w.count("SELECT COUNT(*) FROM users"), 1);
    assert_eq!((provider.as_str(), puid.as_str()), ("privy", sub));
    assert_eq!(user_id, chat_core::ids::user_id("privy", sub).to_string());
    assert_eq!(
        (name.as_str(), wallet.as_str(), x_user.as_str()),
        (
            "Aki",
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "aki_plays"
        )
    );
    let owner: String = w
        .db()
        .query_row(
            "SELECT user_id FROM chat_messages WHERE id = ?1",
            [&turn_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        owner, user_id,
        "the turn is stored under the token's player"
    );

    // Every bad credential is a 401 with its code, and no answer echoes the token.
    let other_key = access(sub, 12, json!({}));
    let expired = access(sub, 11, json!({ "iat": now() - 7200, "exp": now() - 3600 }));
    let wrong_aud = access(sub, 11, json!({ "aud": "someone-else" }));
    let none_alg = {
        let t = access(sub, 11, json!({}));
        let parts: Vec<&str> = t.split('.').collect();
        use base64::Engine;
        format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        )
    };
    // An identity token (it carries linked_accounts) is refused in Authorization, and so is a
    // token without Privy's session id.
    let identity_as_access = access(
        sub,
        11,
        json!({ "linked_accounts": json!([{ "type": "wallet", "address": "0x1" }]).to_string() }),
    );
    let no_sid = {
        let claims =
            json!({ "sub": sub, "iss": "privy.io", "aud": APP, "iat": now(), "exp": now() + 600 });
        privy_token(&test_key(11), &claims)
    };
    for (name, token, code) in [
        (
            "identity token as access token",
            identity_as_access.as_str(),
            "not_an_access_token",
        ),
        ("no session id", &no_sid, "not_an_access_token"),
        ("another key", other_key.as_str(), "bad_signature"),
        ("expired", &expired, "expired_token"),
        ("wrong audience", &wrong_aud, "wrong_audience"),
        ("alg none", &none_alg, "unsupported_algorithm"),
        ("garbage", "not.a.token", "malformed_token"),
    ] {
        let (status, body, text) = call(&w, "GET", "/api/me/stats", Some(token), None, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some(code)),
            "{name}: {body}"
        );
        assert!(!text.contains(token), "{name}: the token is not echoed");
    }
    let (status, body, _) = call(&w, "GET", "/api/me/stats", None, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("missing_auth"))
    );
    // The isolate remembers `token` by the hash of all of it: the same token with one
    // signature character changed is a new token, verified anew, and refused.
    let (status, _, _) = call(&w, "GET", "/api/me/stats", Some(&token), None, None).await;
    assert_eq!(status, 200);
    let (status, body, _) = call(
        &w,
        "GET",
        "/api/me/stats",
        Some(&tampered(&token)),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "a cached token's forgery: {body}"
    );
    let (status, body, _) = call(
        &w,
        "POST",
        "/api/sessions",
        Some(&token),
        Some(&other_key),
        Some(new_session()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "a forged identity token"
    );
    let r = w
        .http
        .get(w.url("/api/me/stats"))
        .header("X-Dev-User", "x:alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the development header means nothing in privy mode"
    );
    let (status, stats, _) = call(&w, "GET", "/api/me/stats", Some(&token), None, None).await;
    assert_eq!(status, 200);
    assert!(stats["totalPoints"].as_i64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_players_are_asked_of_x_once_and_cached() {
    let x = FakeServer::start(|r: FakeRequest| async move {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/2/users/me"));
        match r.headers.get("authorization").map(String::as_str) {
            Some("Bearer good-token") => (
                200,
                json!({ "data": { "id": "777", "name": "X Player", "username": "xp" } })
                    .to_string(),
            ),
            Some("Bearer tok-revoked-91f3") => {
                (401, json!({ "title": "Unauthorized" }).to_string())
            }
            Some("Bearer hang") => {
                // X hangs: far longer than X_TIMEOUT_MS.
                tokio::time::sleep(Duration::from_secs(20)).await;
                (
                    200,
                    json!({ "data": { "id": "1", "username": "late" } }).to_string(),
                )
            }
            _ => (500, "oops".into()),
        }
    })
    .await;
    let w = Workers::start_with(Options {
        dev_auth: false,
        chat_vars: vec![
            ("AUTH_MODE", "x".into()),
            ("X_API_BASE", x.url.clone()),
            ("X_CACHE_SECONDS", "60".into()),
            ("X_TIMEOUT_MS", "1000".into()),
        ],
        ..Options::default()
    })
    .await;
    let (status, s, _) = call(
        &w,
        "POST",
        "/api/sessions",
        Some("good-token"),
        None,
        Some(new_session()),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    for _ in 0..3 {
        let (status, _, _) = call(&w, "GET", "/api/me/stats", Some("good-token"), None, None).await;
        assert_eq!(status, 200);
    }
    assert_eq!(x.hits(), 1, "X was asked once; the answer is cached");
    let (provider, puid, name, x_username): (String, String, String, String) = w
        .db()
        .query_row(
            "SELECT auth_provider, auth_provider_user_id, display_name, x_username FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (
            provider.as_str(),
            puid.as_str(),
            name.as_str(),
            x_username.as_str()
        ),
        ("x", "777", "X Player", "xp")
    );
    let (status, body, text) = call(
        &w,
        "GET",
        "/api/me/stats",
        Some("tok-revoked-91f3"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert!(
        !text.contains("tok-revoked-91f3"),
        "the token is not echoed"
    );
    let (status, body, _) = call(&w, "GET", "/api/me/stats", Some("explode"), None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("auth_unavailable"))
    );
    // A hanging X is cut off at X_TIMEOUT_MS with a clear error, not waited on.
    let started = Instant::now();
    let (status, body, _) = call(&w, "GET", "/api/me/stats", Some("hang"), None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("auth_unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_engine_answers_and_falls_back() {
    let llm = FakeServer::start(|r: FakeRequest| async move {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("Bearer sk-test")
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["model"], "test-model");
        // The player's new message is the last one; earlier turns come before it.
        let said = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        if said.contains("stream") {
            // Streamed: the answer's JSON in fragments of 4 characters, as server-sent events.
            let answer: Vec<char> =
                json!({ "reply": "streamed \"hi\" 😀", "score": 5, "emotion": "happy" })
                    .to_string()
                    .chars()
                    .collect();
            let mut body = String::new();
            for piece in answer.chunks(4) {
                let piece: String = piece.iter().collect();
                body.push_str(&format!(
                    "data: {}\n\n",
                    json!({ "choices": [{ "delta": { "content": piece } }] })
                ));
            }
            body.push_str("data: [DONE]\n\n");
            return (200, body);
        }
        let content = if said.contains("slow") {
            tokio::time::sleep(Duration::from_secs(4)).await;
            json!({ "reply": "too late", "score": 1, "emotion": "happy" }).to_string()
        } else if said.contains("malformed") {
            "I am not JSON".to_owned()
        } else {
            json!({ "reply": "LLM says hi", "score": 7, "emotion": "joy" }).to_string()
        };
        (
            200,
            json!({ "choices": [{ "message": { "role": "assistant", "content": content } }] })
                .to_string(),
        )
    })
    .await;
    let w = Workers::start_with(Options {
        chat_vars: vec![
            ("REPLY_ENGINE", "llm".into()),
            ("LLM_BASE_URL", format!("{}/v1", llm.url)),
            ("LLM_MODEL", "test-model".into()),
            ("LLM_API_KEY", "sk-test".into()),
            ("LLM_TIMEOUT_MS", "1000".into()),
        ],
        ..Options::default()
    })
    .await;
    let user = "x:llm-fan";
    let session = w.session(user, "kai").await;
    let chat = |message: &'static str| {
        let w = &w;
        let session = session.clone();
        async move {
            w.post(
                "/api/chat",
                user,
                &json!({ "sessionId": session, "message": message }),
            )
            .await
        }
    };
    // A streamed answer: the reply's pieces as the model writes them, then the answer.
    let streamed =
        e2e::live::read_events(w.chat_request(user, &session, "please stream", None)).await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    let done: Value = serde_json::from_str(&streamed.events.last().unwrap().data).unwrap();
    assert_eq!(done["reply"], "streamed \"hi\" 😀");
    assert_eq!(done["score"], 5, "Kai keeps the model's score as it is");
    let pieces: Vec<String> = streamed.events[..streamed.events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat(), "streamed \"hi\" 😀");

    let (status, answer) = chat("hello").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["reply"].as_str(),
            answer["score"].as_i64(),
            answer["emotion"].as_str()
        ),
        (Some("LLM says hi"), Some(7), Some("joy"))
    );
    let started = Instant::now();
    let (status, slow) = chat("be slow").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout cut the wait"
    );
    assert!(
        slow["reply"].as_str().unwrap().starts_with("Kai: "),
        "offline fallback: {slow}"
    );
    let (status, bad) = chat("be malformed").await;
    assert_eq!(status, 200);
    assert!(
        bad["reply"].as_str().unwrap().starts_with("Kai: "),
        "offline fallback: {bad}"
    );
    assert!(
        wait_for(Duration::from_secs(30), || w
            .count("SELECT COUNT(*) FROM point_events")
            == 4)
        .await
    );
    let engines: Vec<String> = {
        let db = w.db();
        let mut st = db
            .prepare("SELECT metadata_json ->> '$.engine' FROM point_events ORDER BY created_at")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        engines,
        vec!["llm", "llm", "offline-fallback", "offline-fallback"]
    );
    assert!(
        wait_for(Duration::from_secs(10), || w
            .log()
            .contains("falling back to the offline engine"))
        .await
    );
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
    let (status, body) = w.post("/api/sessions", "x:alice", &body).await;
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
    let (status, _) = w.get("/api/me/stats", "x:alice").await;
    assert_eq!(status, 401);
    assert_eq!(w.count("SELECT COUNT(*) FROM users"), 0);
}

/// The pure-Rust verifier (`PRIVY_VERIFIER=wasm`, no cache) gives WebCrypto's verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_verifier_gives_the_same_verdicts() {
    let w = Workers::start_with(Options {
        dev_auth: false,
        deployable: true,
        chat_vars: vec![
            ("AUTH_MODE", "privy".into()),
            ("PRIVY_APP_ID", APP.into()),
            (
                "PRIVY_VERIFICATION_KEY",
                public_pem(&test_key(11)).replace('\n', "\\n"),
            ),
            ("PRIVY_VERIFIER", "wasm".into()),
            ("PRIVY_TOKEN_CACHE", "0".into()),
        ],
        ..Options::default()
    })
    .await;
    let sub = "did:privy:wasm-player";
    let good = access(sub, 11, json!({}));
    for (name, token, want) in [
        ("valid", good.clone(), None),
        ("valid again", good.clone(), None),
        ("tampered", tampered(&good), Some("bad_signature")),
        (
            "another key",
            access(sub, 12, json!({})),
            Some("bad_signature"),
        ),
        (
            "expired",
            access(sub, 11, json!({ "iat": now() - 7200, "exp": now() - 3600 })),
            Some("expired_token"),
        ),
    ] {
        let (status, body, _) = call(&w, "GET", "/api/me/stats", Some(&token), None, None).await;
        match want {
            None => assert_eq!(status, 200, "{name}: {body}"),
            Some(code) => assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some(code)),
                "{name}: {body}"
            ),
        }
    }
}
