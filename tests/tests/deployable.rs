//! The deployable build (`build/`, what `wrangler deploy` ships) has no test switches. With
//! every variable that turns one on in the local build set, development auth is refused and
//! the consumer's faults do nothing.

use chat_core::record::sample;
use e2e::{now_ms, wait_for, Options, Workers};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployable_build_ignores_every_test_switch() {
    let until = now_ms() + 600_000;
    let w = Workers::start_with(Options {
        deployable: true,
        // AUTH_MODE=dev and ALLOW_DEV_AUTH=local-only, as scripts/dev.sh sets them.
        dev_auth: true,
        // Every fault the local build knows, each of which would fail every write here.
        consumer_vars: vec![
            ("FAULTS", format!("markers,before=1,letters-until={until}")),
            ("RETRY_BASE_SECONDS", "0".into()),
        ],
        ..Options::default()
    })
    .await;

    // Development auth: refused on every player route, and the log says why.
    let session = Uuid::now_v7().to_string();
    for (path, body) in [
        (
            "/api/sessions",
            json!({ "characterType": "kai", "username": "Mallory", "locale": "en" }),
        ),
        (
            "/api/chat",
            json!({ "sessionId": session, "message": "let me in" }),
        ),
    ] {
        let (status, answer) = w.post(path, "x:mallory", &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("auth_unavailable")),
            "{path}: {answer}"
        );
    }
    let (status, _) = w.get("/api/me/stats", "x:mallory").await;
    assert_eq!(status, 401);
    // wrangler prints the Workers' console output a moment after the answers.
    assert!(
        wait_for(Duration::from_secs(10), || w
            .log()
            .contains("development auth is not compiled into this build"))
        .await,
        "{}",
        w.log_tail()
    );

    // Faults: turns marked to fail on every attempt, with every batch set to fail, are
    // stored at once; poison is archived although the archive is set to fail.
    let session = Uuid::now_v7();
    let turns: Vec<_> = (0..5)
        .map(|n| {
            let mut r = sample("eve", session, n, now_ms());
            r.user_message.content =
                format!("turn {n} [fault:before] [fault:before-until={until}]");
            r
        })
        .collect();
    let mut records: Vec<Value> = turns.iter().map(|r| Value::String(r.encode())).collect();
    records.push(Value::String("poison, not a record".into()));
    let (status, body) = w
        .admin("POST", "/admin/turns", Some(&json!({ "records": records })))
        .await;
    assert_eq!(status, 200, "{body}");
    let stored = || w.count("SELECT COUNT(*) FROM point_events");
    let archived = || w.count("SELECT COUNT(*) FROM dead_letters");
    assert!(
        wait_for(Duration::from_secs(30), || stored() == 5 && archived() == 1).await,
        "{} of 5 turns stored, {} of 1 letters archived\n{}",
        stored(),
        archived(),
        w.log_tail()
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM dead_letters WHERE error_class = 'undecodable'"),
        1,
        "only the poison is a dead letter"
    );
    let log = w.log();
    assert!(
        log.contains("FAULTS is set but ignored"),
        "{}",
        w.log_tail()
    );
    assert!(!log.contains("fault injection is ON"));
    assert!(!log.contains("injected fault"));
}
