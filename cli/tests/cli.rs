//! `chat-admin` against the running Workers: list → dry run → replay → stats, and clear
//! errors for bad flags, an unreachable URL, a bad token and nothing matched.

use e2e::{now_ms, wait_for, Options, Workers, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::Duration;

fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    cmd.args(["--url", url])
        .args(args)
        .env_remove("CHAT_ADMIN_TOKEN")
        .env_remove("CHAT_ADMIN_URL");
    if let Some(t) = token {
        cmd.env("CHAT_ADMIN_TOKEN", t);
    }
    cmd.output().expect("chat-admin runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_dry_run_replay_and_read_stats() {
    let w = Workers::start_with(Options {
        consumer_vars: vec![
            ("FAULTS", "markers".into()),
            ("RETRY_BASE_SECONDS", "0".into()),
        ],
        ..Options::default()
    })
    .await;
    let url = w.base.clone();
    let run = |args: &[&str]| cli(&url, Some(ADMIN_TOKEN), args);

    // One letter that a replay can store later, one that no replay can fix.
    let session = w.session("x:op", "kai").await;
    let until = now_ms() + 12_000;
    let (status, turn) = w
        .post("/api/chat", "x:op", &json!({ "sessionId": session, "message": format!("later [fault:before-until={until}]") }))
        .await;
    assert_eq!(status, 200);
    let turn_id = turn["messageId"].as_str().unwrap().to_owned();
    let (status, _) = w
        .admin(
            "POST",
            "/admin/turns",
            Some(&json!({ "records": ["garbage"] })),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        wait_for(Duration::from_secs(60), || w
            .count("SELECT COUNT(*) FROM dead_letters")
            == 2)
        .await,
        "{}",
        w.log_tail()
    );

    let listed = run(&["list"]);
    assert!(listed.status.success(), "{}", err(&listed));
    assert!(
        out(&listed).contains("transient") && out(&listed).contains("undecodable"),
        "{}",
        out(&listed)
    );
    let as_json = run(&["list", "--json", "--class", "transient"]);
    let letters: Value = serde_json::from_str(&out(&as_json)).unwrap();
    assert_eq!(letters["letters"].as_array().unwrap().len(), 1);
    let id = letters["letters"][0]["id"].as_str().unwrap().to_owned();
    let shown = run(&["show", &id]);
    assert!(
        out(&shown).contains(&turn_id),
        "show prints the payload: {}",
        out(&shown)
    );

    while now_ms() < until + 500 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let dry = run(&["replay", "--dry-run"]);
    assert!(dry.status.success(), "{}", err(&dry));
    assert!(
        out(&dry).contains("would_apply") && out(&dry).contains("invalid"),
        "{}",
        out(&dry)
    );
    assert!(out(&dry).contains("requeued 0"), "{}", out(&dry));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM point_events WHERE message_id = '{turn_id}'"
        )),
        0
    );

    let replayed = run(&["replay", "--rate", "1", "--run-id", "ops-1"]);
    assert!(replayed.status.success(), "{}", err(&replayed));
    assert!(out(&replayed).contains("requeued 1"), "{}", out(&replayed));
    let stored = format!("SELECT COUNT(*) FROM point_events WHERE message_id = '{turn_id}'");
    assert!(
        wait_for(Duration::from_secs(30), || w.count(&stored) == 1).await,
        "{}",
        w.log_tail()
    );
    // Resuming: only the unfixable letter is still pending, and it is not queued again.
    let again = run(&["replay", "--run-id", "ops-1"]);
    assert!(
        out(&again).contains("requeued 0") && out(&again).contains("invalid 1"),
        "{}",
        out(&again)
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM replay_runs"),
        2,
        "the dry run and run ops-1"
    );
    let twice = run(&["replay", "--status", "replayed", "--json"]);
    let report: Value = serde_json::from_str(&out(&twice)).unwrap();
    assert_eq!(report["counts"]["alreadyApplied"], 1);

    let stats = run(&["stats"]);
    assert!(
        out(&stats).contains("dead letters pending") && out(&stats).contains("pending undecodable"),
        "{}",
        out(&stats)
    );
    let reconcile = run(&["reconcile", "--dry-run"]);
    assert!(out(&reconcile).contains("no drift"), "{}", out(&reconcile));

    let discarded = run(&["discard", "--class", "undecodable"]);
    assert!(
        out(&discarded).contains("discarded 1 letters"),
        "{}{}",
        out(&discarded),
        err(&discarded)
    );
    let dry_discard = run(&["discard", "--class", "undecodable", "--dry-run"]);
    assert_eq!(
        dry_discard.status.code(),
        Some(1),
        "already discarded: nothing matched"
    );

    // Clear errors.
    let nothing = run(&["replay", "--class", "conflict"]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        err(&nothing).contains("nothing matched"),
        "{}",
        err(&nothing)
    );
    let missing = run(&["show", "no-such-letter"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        err(&missing).contains("no dead letter has this id"),
        "{}",
        err(&missing)
    );
    let bad_token = cli(&url, Some("wrong"), &["stats"]);
    assert!(
        err(&bad_token).contains("admin token was refused"),
        "{}",
        err(&bad_token)
    );
    let no_token = cli(&url, None, &["stats"]);
    assert!(
        err(&no_token).contains("set CHAT_ADMIN_TOKEN"),
        "{}",
        err(&no_token)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = cli(
        &format!("http://127.0.0.1:{closed}"),
        Some(ADMIN_TOKEN),
        &["list"],
    );
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        err(&unreachable).contains("cannot reach"),
        "{}",
        err(&unreachable)
    );
    for bad in [
        &["list", "--limit", "0"][..],
        &["replay", "--rate", "0"],
        &["frobnicate"],
        &["list", "--status"],
    ] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(!err(&o).is_empty(), "{bad:?} explains itself");
    }
    let bad_filter = run(&["list", "--class", "cosmic"]);
    assert!(
        err(&bad_filter).contains("'class' must be one of"),
        "{}",
        err(&bad_filter)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_archive_with_a_dry_run_first_and_read_archived_events() {
    let w = Workers::start().await;
    let url = w.base.clone();
    let run = |args: &[&str]| cli(&url, Some(ADMIN_TOKEN), args);
    let session = w.session("x:keeper", "kai").await;
    for i in 0..3 {
        w.chat_ok("x:keeper", &session, &format!("turn {i}")).await;
    }
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 3).await);

    // Nothing is 30 days old yet.
    let o = run(&["archive", "run", "--older-than", "30d"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("archived 0 turns"), "{}", out(&o));
    let o = run(&["--json", "archive", "run", "--older-than", "0", "--dry-run"]);
    let dry: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(
        (dry["turns"].as_i64(), dry["dryRun"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(w.stored_in(&session), 3, "a dry run changes nothing");
    let o = run(&["archive", "run", "--older-than", "0s"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("archived 3 turns of 1 sessions"),
        "{}",
        out(&o)
    );
    assert_eq!(w.stored_in(&session), 0);

    let user = chat_core::identity::Identity::new(chat_core::identity::AuthProvider::X, "keeper")
        .unwrap()
        .user_id()
        .to_string();
    let o = run(&["--json", "archive", "events", &user]);
    assert!(o.status.success(), "{}", err(&o));
    let events: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(events["events"].as_array().map(Vec::len), Some(3));
    let (_, stats) = w.get("/api/me/stats", "x:keeper").await;
    assert_eq!(events["points"], stats["totalPoints"], "{events}");

    // Bad ages never reach the Worker.
    for bad in ["30", "3w", "1.5d"] {
        let arg = format!("--older-than={bad}");
        let o = run(&["archive", "run", &arg]);
        if bad == "30" {
            assert!(o.status.success(), "whole seconds are an age: {}", err(&o));
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", err(&o));
        assert!(err(&o).contains("d, h, m or s"), "{}", err(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_export_and_erase_a_player_after_a_question() {
    let w = Workers::start().await;
    let url = w.base.clone();
    let session = w.session("x:leaving", "kai").await;
    w.chat_ok("x:leaving", &session, "goodbye words").await;
    assert!(wait_for(Duration::from_secs(30), || w.stored_in(&session) == 1).await);
    let user = chat_core::identity::Identity::new(chat_core::identity::AuthProvider::X, "leaving")
        .unwrap()
        .user_id()
        .to_string();
    let run = |args: &[&str]| cli(&url, Some(ADMIN_TOKEN), args);

    let o = run(&["players", "export", &user]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("goodbye words"), "{}", out(&o));
    let o = run(&["players", "erase", &user, "--dry-run"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("would erase in DB_"), "{}", out(&o));
    // Asked first: anything but "yes" erases nothing.
    let mut ask = Command::new(env!("CARGO_BIN_EXE_chat-admin"));
    ask.args(["--url", &url, "players", "erase", &user])
        .env("CHAT_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = ask.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"no\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("nothing erased"), "{}", err(&o));
    assert_eq!(w.stored_in(&session), 1);
    let o = run(&["players", "erase", &user, "--yes"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("erased: 1 sessions' actors"),
        "{}",
        out(&o)
    );
    assert_eq!(w.stored_in(&session), 0);
    let o = run(&["players", "export", &user]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no player has this id"), "{}", err(&o));
    let o = run(&["players", "erase", "not-a-uuid", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("invalid_user_id"), "{}", err(&o));
}
