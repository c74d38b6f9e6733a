//! The bad-input corpus (`tests/corpus/*.json`): every case names the status and error code
//! it must get. HTTP cases go to the chat Worker; record cases go on the queue through
//! /admin/turns and must end in `dead_letters` with their class, or be stored verbatim.
//! Afterwards the database holds exactly the rows the valid cases made.

use chat_core::record::sample;
use e2e::{root, wait_for, Workers, ADMIN_TOKEN};
use futures::stream;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const PLAYER: &str = "x:corpus";

fn load(name: &str) -> Vec<Value> {
    let path = root().join("tests/corpus").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fill(text: &str, session: &str, other: &str) -> String {
    text.replace("{session}", session)
        .replace("{other_session}", other)
}

/// The body bytes a case describes.
fn body(case: &Value, session: &str, other: &str) -> Vec<u8> {
    if let Some(hex) = case["body_hex"].as_str() {
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
    }
    if let Some(r) = case.get("body_repeat") {
        let mut b = fill(r["prefix"].as_str().unwrap(), session, other).into_bytes();
        b.extend(
            r["unit"]
                .as_str()
                .unwrap()
                .repeat(r["count"].as_u64().unwrap() as usize)
                .into_bytes(),
        );
        b.extend(r["suffix"].as_str().unwrap().as_bytes());
        return b;
    }
    fill(case["body"].as_str().unwrap_or(""), session, other).into_bytes()
}

fn counts(w: &Workers) -> Vec<i64> {
    [
        "users",
        "chat_sessions",
        "chat_messages",
        "point_events",
        "user_stats",
        "dead_letters",
    ]
    .iter()
    .map(|t| w.count(&format!("SELECT COUNT(*) FROM {t}")))
    .collect()
}

/// A record case as queue text: raw text, or a valid record with JSON-pointer edits.
fn record_text(case: &Value, n: u64) -> String {
    if let Some(raw) = case["raw"].as_str() {
        return raw.to_owned();
    }
    let record = sample(
        "corpus-records",
        Uuid::from_u128(77),
        5000 + n,
        1_800_000_000_000 + n as i64,
    );
    let mut v: Value = serde_json::from_str(&record.encode()).unwrap();
    for (pointer, value) in case["set"].as_object().into_iter().flatten() {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent).unwrap()[key] = value.clone();
    }
    for pointer in case["remove"].as_array().into_iter().flatten() {
        let (parent, key) = pointer.as_str().unwrap().rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
    }
    let text = v.to_string();
    match case["duplicate_key"].as_str() {
        Some(key) => format!("{{\"{key}\":2,{}", &text[1..]),
        None => text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_gets_its_errors_and_writes_nothing() {
    let w = Workers::start().await;
    let session = w.session(PLAYER, "sakura").await;
    let other = w.session("x:corpus-other", "kai").await;
    let before = counts(&w);
    let http_cases = load("http.json");
    let record_cases = load("records.json");
    assert!(
        http_cases.len() + record_cases.len() >= 60,
        "the corpus has at least 60 cases"
    );

    let mut stored: Vec<(String, String)> = Vec::new(); // (message id, content expected verbatim)
    let mut http_passed = 0;
    for case in &http_cases {
        let name = case["name"].as_str().unwrap();
        let method =
            reqwest::Method::from_bytes(case["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut req = w.http.request(
            method,
            w.url(&fill(case["path"].as_str().unwrap(), &session, &other)),
        );
        let mut headers = json!({ "Content-Type": "application/json", "X-Dev-User": PLAYER });
        for (k, v) in case["headers"].as_object().into_iter().flatten() {
            headers[k] = v.clone();
        }
        for (k, v) in headers.as_object().unwrap() {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v.replace("{admin_token}", ADMIN_TOKEN));
            }
        }
        let bytes = body(case, &session, &other);
        req = if case["chunked"] == true {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
            req.body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        } else {
            req.body(bytes.clone())
        };
        let r = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let text = r.text().await.unwrap();
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{name}: the answer is JSON: {text:?}"));
        assert_eq!(
            status,
            case["status"].as_u64().unwrap() as u16,
            "{name}: {answer}"
        );
        // A 405 names the methods the route takes; every 405 case says which.
        if status == 405 {
            let expected = case["allow"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a 405 case names its 'allow'"));
            assert_eq!(allow.as_deref(), Some(expected), "{name}: the Allow header");
        }
        match case["code"].as_str() {
            Some(code) => {
                assert_eq!(answer["error"]["code"], code, "{name}: {answer}");
                assert!(
                    answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{name}: a message"
                );
            }
            None => assert!(answer.get("error").is_none(), "{name}: {answer}"),
        }
        if case["stored"] == true {
            let sent: Value = serde_json::from_slice(&bytes).unwrap();
            let content = case["stored_as"]
                .as_str()
                .or(sent["message"].as_str())
                .unwrap()
                .trim()
                .to_owned();
            stored.push((answer["messageId"].as_str().unwrap().to_owned(), content));
        }
        http_passed += 1;
    }
    assert_eq!(http_passed, http_cases.len(), "every HTTP case ran");

    // Queue records: poison of every kind, and valid ones whose text must survive verbatim.
    let texts: Vec<Value> = record_cases
        .iter()
        .enumerate()
        .map(|(i, c)| Value::String(record_text(c, i as u64)))
        .collect();
    let (status, answer) = w
        .admin("POST", "/admin/turns", Some(&json!({ "records": texts })))
        .await;
    assert_eq!(status, 200, "{answer}");
    let letters_expected = record_cases
        .iter()
        .filter(|c| c["expect"] != "stored")
        .count() as i64;
    let records_stored = record_cases.len() as i64 - letters_expected;
    let turns_expected = stored.len() as i64 + records_stored;
    assert!(
        wait_for(Duration::from_secs(60), || {
            w.count("SELECT COUNT(*) FROM dead_letters") == letters_expected
                && w.count("SELECT COUNT(*) FROM point_events") == turns_expected
        })
        .await,
        "letters {} of {letters_expected}, turns {} of {turns_expected}\n{}",
        w.count("SELECT COUNT(*) FROM dead_letters"),
        w.count("SELECT COUNT(*) FROM point_events"),
        w.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // anything extra would land now
    let db = w.db();
    let mut records_passed = 0;
    for (case, text) in record_cases.iter().zip(&texts) {
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        records_passed += 1;
        if expect == "stored" {
            let record: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
            let content: String = db
                .query_row(
                    "SELECT content FROM chat_messages WHERE id = ?1",
                    [record["turnId"].as_str().unwrap()],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("{name}: not stored: {e}"));
            assert_eq!(
                content,
                record["userMessage"]["content"].as_str().unwrap(),
                "{name}: verbatim"
            );
        } else {
            let class: String = db
                .query_row(
                    "SELECT error_class FROM dead_letters WHERE payload = ?1",
                    [text.as_str().unwrap()],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("{name}: no dead letter: {e}"));
            assert_eq!(class, expect, "{name}");
        }
    }
    for (id, content) in &stored {
        let got: String = db
            .query_row(
                "SELECT content FROM chat_messages WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(&got, content, "stored verbatim");
    }
    // Exactly the valid cases' rows: one new user for the stored records, two messages and
    // one event per stored turn, one stats row per player with turns.
    let after = counts(&w);
    let record_users = i64::from(records_stored > 0);
    assert_eq!(after[0], before[0] + record_users, "users");
    assert_eq!(after[1], before[1], "sessions");
    assert_eq!(after[2], before[2] + 2 * turns_expected, "messages");
    assert_eq!(after[3], before[3] + turns_expected, "events");
    assert_eq!(
        after[4],
        before[4] + i64::from(!stored.is_empty()) + record_users,
        "stats rows"
    );
    assert_eq!(after[5], letters_expected, "dead letters");
    assert!(!w.log().contains("panicked"), "no panic in the Workers");
    assert_eq!(records_passed, record_cases.len(), "every record case ran");
    // Counted from the data files and from the cases that ran, not a constant.
    println!(
        "corpus: {} cases in tests/corpus ({} HTTP, {} queue records); {} passed",
        http_cases.len() + record_cases.len(),
        http_cases.len(),
        record_cases.len(),
        http_passed + records_passed,
    );
}
