//! The web pages in a real browser (Debian's headless Chromium over WebDriver), on both
//! Workers under wrangler dev with the real local D1, queues and Durable Objects:
//!
//! - play: sign in by name, three turns, the total catching up, a socket dropped mid-reply
//!   that reconnects and finishes it, a page without a socket whose lost answer over SSE is
//!   retried with the same Idempotency-Key, the history after a reload, a game over and a
//!   new session;
//! - live: a reply that grows as it is written, a second tab that shows the same
//!   conversation live, and a Stop that scores nothing and can be retried;
//! - operate: poison letters queued through `/admin/turns`, a wrong token, filters and
//!   paging, one letter's payload, dry run, replay and discard (with confirmations), and
//!   reconcile, each checked against the database afterwards;
//! - the languages, the page for deployments without development sign-in, and the headers
//!   (Content-Security-Policy, X-Content-Type-Options), with an injected inline handler
//!   that the policy must block.
//!
//! `SCREENSHOTS_DIR=dir` saves each page's picture (`scripts/screenshots.sh`).

use chat_core::record::sample;
use e2e::browser::Browser;
use e2e::{now_ms, wait_for, Options, Workers, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// The count of elements matching `css`, as a JavaScript expression.
fn count(css: &str) -> String {
    format!("document.querySelectorAll({css:?}).length")
}

fn visible(id: &str) -> String {
    format!("!document.getElementById({id:?}).hidden")
}

fn total_points(w: &Workers, user_id: Uuid) -> Option<i64> {
    w.db()
        .query_row(
            "SELECT total_points FROM user_stats WHERE user_id = ?1",
            [user_id.to_string()],
            |r| r.get(0),
        )
        .ok()
}

/// Sends `message` from the play page and waits for the whole reply it adds.
async fn say(b: &Browser, message: &str) {
    let before = b
        .js(&count(".msg.agent:not(.writing)"))
        .await
        .as_u64()
        .unwrap();
    b.type_into("#message", message).await;
    b.click("#send").await;
    b.wait(
        &format!("a reply to {message:?}"),
        &format!(
            "{} === {} && {} === 0",
            count(".msg.agent:not(.writing)"),
            before + 1,
            count(".msg.writing")
        ),
    )
    .await;
}

/// The page's total once it says the last turn is stored.
async fn stored_total(b: &Browser) -> i64 {
    b.wait(
        "the stats to catch up",
        "document.getElementById('stats-status').dataset.state === 'stored'",
    )
    .await;
    b.text("#total").await.parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_chats_reloads_loses_and_starts_again() {
    let w = Workers::start().await;
    let b = Browser::start("en-US").await;
    let player = Uuid::parse_str(&chat_core::ids::user_id("x", "Aki").to_string()).unwrap();
    b.goto(&w.url("/")).await;
    b.wait("the sign-in form", &visible("signin")).await;
    b.type_into("#name", "Aki").await;
    b.click("#signin button[type=submit]").await;
    b.wait("the game", &visible("game")).await;
    assert!(b.text("#who").await.contains("Aki"));
    b.select("#character", "rin").await;
    b.select("#locale", "en").await;
    b.click("#start").await;
    b.wait("the chat", &visible("chat")).await;

    b.wait("the live socket", "window.chatLive?.open === true")
        .await;
    say(&b, "Hello! Thank you for talking with me.").await;
    // The socket drops while the second reply is written: the page reconnects, asks for what
    // it missed, and finishes the reply; the turn is played and stored once.
    b.js(r#"(() => {
        window.__sockets = 0;
        const Real = window.WebSocket;
        window.WebSocket = function (...args) { window.__sockets++; return new Real(...args); };
        window.WebSocket.OPEN = Real.OPEN;
        const drop = new MutationObserver(() => {
          if (document.querySelector(".msg.writing")) { drop.disconnect(); window.chatLive.drop(); }
        });
        drop.observe(document.getElementById("log"), { childList: true, subtree: true });
        return true;
      })()"#)
        .await;
    say(&b, "I like you, you are kind").await;
    assert_eq!(
        b.js("window.__sockets").await,
        1,
        "the page opened one new socket"
    );
    // Without a socket (the page falls back to server-sent events), an answer lost on its
    // way back is retried with the same Idempotency-Key, and is the same turn.
    b.js(r#"(() => {
        window.chatLive.close();
        window.chatLive.available = false;
        window.__chatKeys = [];
        const real = window.fetch;
        let drop = 1;
        window.fetch = async (input, init) => {
          const answer = await real(input, init);
          if (String(input) === "/api/chat") {
            window.__chatKeys.push(init.headers["Idempotency-Key"]);
            if (drop-- > 0) throw new TypeError("injected: the answer was lost");
          }
          return answer;
        };
        return true;
      })()"#)
        .await;
    say(&b, "What do you like to do?").await;
    let keys = b.js("window.__chatKeys").await;
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2, "one lost answer, one retry: {keys:?}");
    assert_eq!(keys[0], keys[1], "the retry reused the key");
    assert_eq!(b.js(&count(".msg.user")).await, 3);
    assert_eq!(b.js(&count(".msg.agent .emotion")).await, 3);
    assert_eq!(b.js(&count(".msg.agent .score")).await, 3);

    let told: i64 = b
        .js("[...document.querySelectorAll('.msg.agent .score')].reduce((s, e) => s + Number(e.dataset.score), 0)")
        .await
        .as_i64()
        .unwrap();
    let total = stored_total(&b).await;
    assert_eq!(total, told, "the total is the sum of the scores shown");
    assert_eq!(total_points(&w, player), Some(told), "and what D1 holds");
    assert_eq!(
        w.count(&format!(
            "SELECT COUNT(*) FROM chat_messages WHERE user_id = '{player}' AND role = 'user'"
        )),
        3,
        "the reconnected and the retried turns are stored once"
    );
    b.wait(
        "the player on the leaderboard",
        &format!("document.querySelector('#leaderboard tr.me')?.dataset.user === '{player}' && document.querySelector('#leaderboard tr.me td:nth-child(3)').textContent === '{told}'"),
    )
    .await;

    // A reload brings the conversation back from the API.
    b.client.refresh().await.unwrap();
    b.wait("the history", &format!("{} === 6", count("#log .msg")))
        .await;
    let said = b
        .js("[...document.querySelectorAll('.msg.user .text')].map(e => e.textContent)")
        .await;
    assert_eq!(
        said,
        json!([
            "Hello! Thank you for talking with me.",
            "I like you, you are kind",
            "What do you like to do?"
        ])
    );
    assert_eq!(b.js(&count(".msg.agent .emotion")).await, 3);
    let shown_again: i64 = b
        .js("[...document.querySelectorAll('.msg.agent .score')].reduce((s, e) => s + Number(e.dataset.score), 0)")
        .await
        .as_i64()
        .unwrap();
    assert_eq!(shown_again, told, "each reply shows its score again");
    b.screenshot("play").await;

    // A game over shows as such, and a new session starts clean.
    say(&b, "I hate you, you are stupid").await;
    b.wait("the game over", &visible("game-over")).await;
    assert_eq!(b.js(&visible("chat-form")).await, false);
    assert_eq!(b.js(&count(".msg.agent .penalty")).await, 1);
    // The page copies no rule: the penalty and the input limits are the server's, from
    // /api/info.
    let penalty = b
        .js("document.querySelector('.msg.agent .penalty').textContent")
        .await;
    let penalty = penalty.as_str().unwrap().to_owned();
    assert!(
        penalty.contains(&chat_core::scoring::GAME_OVER_PENALTY.abs().to_string()),
        "the penalty shown is the one applied: {penalty}"
    );
    assert_eq!(
        b.js("[document.getElementById('name').maxLength, document.getElementById('message').maxLength]")
            .await,
        json!([
            chat_core::request::MAX_USERNAME_CHARS,
            chat_core::request::MAX_MESSAGE_CHARS
        ])
    );
    let after_loss = stored_total(&b).await;
    assert_eq!(total_points(&w, player), Some(after_loss));
    b.click("#new-session").await;
    b.wait(
        "a fresh session",
        &format!("{} && {} === 0", visible("chat-form"), count(".msg.agent")),
    )
    .await;
    assert_eq!(b.js(&visible("game-over")).await, false);
    say(&b, "Hello again").await;
    let sessions: Vec<(String, bool)> = w
        .db()
        .prepare("SELECT id, ended_at IS NOT NULL FROM chat_sessions WHERE user_id = ?1 ORDER BY created_at")
        .unwrap()
        .query_map([player.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(
        sessions[0].1 && !sessions[1].1,
        "the first ended, the second is open: {sessions:?}"
    );
    assert_eq!(stored_total(&b).await, total_points(&w, player).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_grows_as_it_is_written_shows_in_every_tab_and_stops() {
    let w = Workers::start_with(Options {
        chat_vars: vec![("OFFLINE_STREAM_MS", "250".into())],
        ..Options::default()
    })
    .await;
    let b = Browser::start("en-US").await;
    b.goto(&w.url("/")).await;
    b.wait("the sign-in form", &visible("signin")).await;
    b.type_into("#name", "Ren").await;
    b.click("#signin button[type=submit]").await;
    b.wait("the game", &visible("game")).await;
    b.select("#character", "sakura").await;
    b.click("#start").await;
    b.wait("the live socket", "window.chatLive?.open === true")
        .await;

    // A second tab of the same player, on the same session.
    let saved = b
        .js("JSON.stringify(Object.assign({}, localStorage))")
        .await;
    let tab = Browser::start("en-US").await;
    tab.goto(&w.url("/")).await;
    tab.js(&format!(
        "(() => {{ for (const [k, v] of Object.entries(JSON.parse({saved}))) localStorage.setItem(k, v); return true; }})()",
        saved = serde_json::to_string(saved.as_str().unwrap()).unwrap()
    ))
    .await;
    tab.client.refresh().await.unwrap();
    tab.wait("the second tab's socket", "window.chatLive?.open === true")
        .await;

    // The reply grows before it is done: the page's text is sampled as it is written.
    b.js(r#"(() => {
        window.__lengths = [];
        const sample = setInterval(() => {
          const t = document.querySelector(".msg.writing .text");
          if (t) window.__lengths.push(t.textContent.length);
          else if (window.__lengths.length) clearInterval(sample);
        }, 40);
        return true;
      })()"#)
        .await;
    b.type_into("#message", "Thank you, you are so kind to me")
        .await;
    b.click("#send").await;
    b.wait(
        "the whole reply",
        &format!(
            "{} === 1 && {} === 0",
            count(".msg.agent:not(.writing)"),
            count(".msg.writing")
        ),
    )
    .await;
    let lengths: Vec<u64> = serde_json::from_value(b.js("window.__lengths").await).unwrap();
    let grew: std::collections::BTreeSet<u64> =
        lengths.iter().copied().filter(|&l| l > 0).collect();
    assert!(grew.len() >= 3, "the text was seen growing: {lengths:?}");
    let reply = b.text(".msg.agent .text").await;
    assert!(
        (*grew.iter().next().unwrap() as usize) < reply.chars().count(),
        "it was seen before it was whole: {lengths:?} {reply:?}"
    );

    // The other tab saw the same turn, live.
    tab.wait(
        "the turn in the other tab",
        &format!(
            "{} === 1 && {} === 1",
            count(".msg.user"),
            count(".msg.agent:not(.writing)")
        ),
    )
    .await;
    assert_eq!(
        tab.text(".msg.user .text").await,
        "Thank you, you are so kind to me"
    );
    assert_eq!(tab.text(".msg.agent .text").await, reply);

    // Stop while a reply is written (the button is pressed as soon as the first piece
    // shows): nothing is scored, and Retry plays it again.
    b.js(r#"(() => {
        const press = new MutationObserver(() => {
          const stop = document.getElementById("stop");
          if (document.querySelector(".msg.writing") && !stop.hidden) { press.disconnect(); stop.click(); }
        });
        press.observe(document.getElementById("app"), { childList: true, subtree: true, attributes: true });
        return true;
      })()"#)
        .await;
    b.type_into("#message", "Tell me about the sea and the sky")
        .await;
    b.click("#send").await;
    b.wait("the stop", &visible("send-error")).await;
    let said = b.text("#send-error-text").await;
    assert!(said.contains("Stopped"), "{said}");
    assert!(!said.contains('['), "words a player reads, no code: {said}");
    assert_eq!(
        b.js(&count(".msg.agent")).await,
        1,
        "the stopped reply is gone"
    );
    // Every tab shows the stopped turn the same way: nothing of it stays in the log (it
    // was not kept), and the same words say what happened.
    tab.wait("the stop in the other tab", &visible("send-error"))
        .await;
    assert_eq!(tab.text("#send-error-text").await, said);
    let log = |t: &str| {
        format!(
            "[...document.querySelectorAll('#log .msg:not(.empty)')].map(m => m.classList[1] + ':' + m.querySelector('.text').textContent).join('|') {t}"
        )
    };
    let shown = b.js(&log("")).await;
    tab.wait(
        "the same log in the other tab",
        &log(&format!("=== {shown}")),
    )
    .await;
    assert!(
        !shown.as_str().unwrap().contains("Tell me about the sea"),
        "{shown}"
    );
    let session: String = b
        .js("JSON.parse(localStorage.getItem('chat.session:Ren')).id")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let stored = |w: &Workers| w.stored_in(&session);
    assert!(wait_for(Duration::from_secs(15), || stored(&w) == 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stored(&w), 1, "the stopped turn is not stored");
    // A reload shows what the tabs showed.
    tab.client.refresh().await.unwrap();
    tab.wait("the log after a reload", &log(&format!("=== {shown}")))
        .await;
    tab.wait(
        "the reloaded tab's socket",
        "window.chatLive?.open === true",
    )
    .await;
    b.click("#retry").await;
    b.wait(
        "the retried reply",
        &format!(
            "{} === 2 && {} === 0",
            count(".msg.agent:not(.writing)"),
            count(".msg.writing")
        ),
    )
    .await;
    assert!(wait_for(Duration::from_secs(15), || stored(&w) == 2).await);
    tab.wait(
        "the retried turn in the other tab",
        &format!("{} === 2", count(".msg.agent:not(.writing)")),
    )
    .await;
}

/// Poison for the console: transient failures that clear at `until` (so a replay stores
/// them), undecodable text, and a record with a wrong user id (invalid).
fn poison(session: Uuid, until: i64) -> (Vec<Value>, Vec<String>) {
    let mut records = Vec::new();
    let mut stuck = Vec::new();
    for n in 0..2 {
        let mut r = sample("ops-player", session, 500 + n, now_ms());
        // Fails until `until`; past its one retry it is dead-lettered as transient.
        r.user_message.content = format!("stuck {n} [fault:before-until={until}]");
        stuck.push(r.turn_id.to_string());
        records.push(Value::String(r.encode()));
    }
    for n in 0..4 {
        records.push(Value::String(format!("this is not json {{ {n}")));
    }
    let mut invalid = sample("ops-player", session, 600, now_ms());
    invalid.user.id = Uuid::nil();
    records.push(Value::String(invalid.encode()));
    (records, stuck)
}

fn letter_status(w: &Workers, where_: &str) -> Vec<String> {
    w.db()
        .prepare(&format!(
            "SELECT status FROM dead_letters WHERE {where_} ORDER BY id"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_filters_inspects_replays_and_discards_dead_letters() {
    let w = Workers::start_with(Options {
        consumer_vars: vec![
            ("FAULTS", "markers".into()),
            ("RETRY_BASE_SECONDS", "0".into()),
            ("TURN_MAX_RETRIES", "1".into()),
        ],
        consumer_queue: vec![("max_retries", 1)],
        ..Options::default()
    })
    .await;
    let session = Uuid::parse_str(&w.session("x:ops-player", "kai").await).unwrap();
    let until = now_ms() + 8_000;
    let (records, stuck) = poison(session, until);
    let (status, body) = w
        .admin("POST", "/admin/turns", Some(&json!({ "records": records })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_for(Duration::from_secs(60), || w
            .count("SELECT COUNT(*) FROM dead_letters")
            == 7)
        .await,
        "7 letters\n{}",
        w.log_tail()
    );

    let b = Browser::start("en-US").await;
    b.goto(&w.url("/ops")).await;
    b.wait("the token form", "!!document.getElementById('token')")
        .await;
    // A wrong token: a clear error, and nothing shown.
    b.type_into("#token", "not-the-token").await;
    b.click("#token-form button[type=submit]").await;
    b.wait("the refusal", &visible("ops-error")).await;
    let error = b.text("#ops-error").await;
    assert!(
        error.contains("admin token was refused") && error.contains("unauthorized"),
        "{error}"
    );
    assert_eq!(b.js(&visible("console")).await, false);

    b.type_into("#token", ADMIN_TOKEN).await;
    b.click("#token-form button[type=submit]").await;
    b.wait("the console", &visible("console")).await;
    assert_eq!(
        b.js("sessionStorage.getItem('ops.token')").await,
        ADMIN_TOKEN,
        "kept in the tab's session storage"
    );
    assert_eq!(b.js("localStorage.getItem('ops.token')").await, Value::Null);
    b.wait(
        "the figures",
        "document.getElementById('dl-pending').textContent === '7'",
    )
    .await;

    // Paging: 5, then 2.
    b.select("#f-limit", "5").await;
    b.click("#apply").await;
    b.wait(
        "page one",
        &format!("{} === 5", count("#letter-rows tr[data-id]")),
    )
    .await;
    let first: Vec<Value> = b
        .js("[...document.querySelectorAll('#letter-rows tr[data-id]')].map(r => r.dataset.id)")
        .await
        .as_array()
        .unwrap()
        .clone();
    b.click("#next-page").await;
    b.wait(
        "page two",
        &format!("{} === 2", count("#letter-rows tr[data-id]")),
    )
    .await;
    let second = b
        .js("[...document.querySelectorAll('#letter-rows tr[data-id]')].map(r => r.dataset.id)")
        .await;
    for id in second.as_array().unwrap() {
        assert!(!first.contains(id), "pages do not overlap");
    }
    assert_eq!(
        b.js("document.getElementById('next-page').disabled").await,
        true
    );
    b.click("#first-page").await;
    b.wait(
        "page one again",
        &format!("{} === 5", count("#letter-rows tr[data-id]")),
    )
    .await;

    // Filters: a time window with nothing in it, then text, then class.
    b.js("(document.getElementById('f-from').value = '2099-01-01T00:00:00', true)")
        .await;
    b.click("#apply").await;
    b.wait("an empty window", &format!("{} === 0 && document.getElementById('letter-rows').textContent.includes('No dead letters')", count("#letter-rows tr[data-id]"))).await;
    b.js("(document.getElementById('f-from').value = '', true)")
        .await;
    b.type_into("#f-q", "injected fault").await;
    b.select("#f-class", "transient").await;
    b.select("#f-status", "pending").await;
    b.click("#apply").await;
    b.wait(
        "the two stuck turns",
        &format!("{} === 2", count("#letter-rows tr[data-id]")),
    )
    .await;

    // One letter, with its payload.
    b.click("#letter-rows tr[data-id] button.open").await;
    b.wait("the letter", &visible("letter")).await;
    assert!(b.text("#payload").await.contains("[fault:before-until="));

    // Dry run of both, once their fault has cleared: both would be stored, nothing changes.
    let wait_ms = (until - now_ms() + 500).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    b.click("#select-all").await;
    b.click("#dry-run").await;
    b.wait(
        "the verdicts",
        &format!("{} === 2", count("#verdicts tr[data-verdict]")),
    )
    .await;
    assert_eq!(
        b.js("[...document.querySelectorAll('#verdicts tr[data-verdict]')].every(r => r.dataset.verdict === 'would_apply')").await,
        true,
        "{}",
        b.text("#verdicts").await
    );
    assert!(letter_status(&w, "error_class = 'transient'")
        .iter()
        .all(|s| s == "pending"));
    assert!(stuck.iter().all(|t| w.stored_turn(t) == 0));

    // Replay one: asked first; dismissed, nothing happens; accepted, it is stored once.
    b.click("#select-all").await; // clears the selection
    b.click("#letter-rows tr[data-id] input.pick").await;
    let chosen = b
        .js("document.querySelector('#letter-rows input.pick:checked').dataset.id")
        .await;
    b.click("#replay").await;
    b.client.dismiss_alert().await.expect("a confirmation");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        letter_status(&w, "error_class = 'transient'"),
        ["pending", "pending"]
    );
    b.click("#replay").await;
    b.client.accept_alert().await.expect("a confirmation");
    b.wait(
        "the replay",
        "document.getElementById('ops-notice').textContent.includes('Re-queued 1')",
    )
    .await;
    let replayed_turn: String = w
        .db()
        .query_row(
            "SELECT turn_id FROM dead_letters WHERE id = ?1",
            [chosen.as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || w.stored_turn(&replayed_turn)
            == 1)
        .await,
        "the replayed turn is stored\n{}",
        w.log_tail()
    );
    let other = stuck.iter().find(|t| **t != replayed_turn).unwrap();
    assert_eq!(
        w.stored_turn(other),
        0,
        "the letter not chosen stays unstored"
    );
    assert_eq!(
        letter_status(&w, &format!("id = '{}'", chosen.as_str().unwrap())),
        ["replayed"]
    );

    // Discard one undecodable letter.
    b.js("(document.getElementById('f-q').value = '', true)")
        .await;
    b.select("#f-class", "undecodable").await;
    b.click("#apply").await;
    b.wait(
        "the undecodable letters",
        &format!("{} === 4", count("#letter-rows tr[data-id]")),
    )
    .await;
    b.click("#letter-rows tr[data-id] input.pick").await;
    let dropped = b
        .js("document.querySelector('#letter-rows input.pick:checked').dataset.id")
        .await;
    b.click("#discard").await;
    b.client.accept_alert().await.expect("a confirmation");
    b.wait(
        "the discard",
        "document.getElementById('ops-notice').textContent.includes('Discarded 1')",
    )
    .await;
    b.wait(
        "three left",
        &format!("{} === 3", count("#letter-rows tr[data-id]")),
    )
    .await;
    assert_eq!(
        letter_status(&w, &format!("id = '{}'", dropped.as_str().unwrap())),
        ["discarded"]
    );
    assert_eq!(
        letter_status(&w, "error_class = 'undecodable' AND status = 'pending'").len(),
        3
    );
    assert_eq!(letter_status(&w, "error_class = 'invalid'"), ["pending"]);
    b.wait(
        "the figures",
        "document.getElementById('dl-pending').textContent === '5'",
    )
    .await;

    // Reconcile: a dry run finds no drift; one player's stats broken by hand are found and,
    // for real, repaired.
    let player = chat_core::ids::user_id("x", "ops-player").to_string();
    let before = total_points(&w, player.parse().unwrap()).expect("stored stats");
    for binding in w.shards() {
        w.shard(binding)
            .execute(
                "UPDATE user_stats SET total_points = total_points + 7 WHERE user_id = ?1",
                [&player],
            )
            .unwrap();
    }
    b.click("#reconcile-dry").await;
    b.wait(
        "the dry run",
        "document.getElementById('rec-drifted')?.textContent === '1'",
    )
    .await;
    assert_eq!(b.text("#rec-fixed").await, "0");
    assert_eq!(total_points(&w, player.parse().unwrap()), Some(before + 7));
    b.click("#reconcile-real").await;
    b.client.accept_alert().await.expect("a confirmation");
    b.wait(
        "the repair",
        "document.getElementById('rec-fixed')?.textContent === '1'",
    )
    .await;
    assert_eq!(total_points(&w, player.parse().unwrap()), Some(before));
    b.select("#f-class", "").await;
    b.click("#apply").await;
    b.wait(
        "every pending letter",
        &format!("{} === 5", count("#letter-rows tr[data-id]")),
    )
    .await;
    b.click("#letter-rows tr[data-id] button.open").await;
    b.wait("the letter", &visible("letter")).await;
    b.screenshot("ops").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_speak_the_browsers_language_hold_their_policy_and_explain_production_sign_in() {
    // The deployable config's sign-in (Privy, with no key here): no development sign-in.
    let w = Workers::start_with(Options {
        dev_auth: false,
        ..Options::default()
    })
    .await;

    // Headers: the assets' policy, and nosniff on assets and the API's JSON alike.
    for path in ["/", "/ops", "/play.js", "/ops.js", "/app.css"] {
        let r = w.http.get(w.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = h("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp:?} lacks {part}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
    }
    for path in ["/api/info", "/api/nothing-here"] {
        let r = w.http.get(w.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let r = w.http.get(w.url("/api/me/stats")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the API still needs a player");

    // Japanese first, as the browser prefers.
    let b = Browser::start("ja").await;
    b.goto(&w.url("/")).await;
    b.wait(
        "the page",
        "document.querySelector('h1')?.textContent === 'キャラクターとチャット'",
    )
    .await;
    b.wait("the note", &visible("no-dev")).await;
    assert!(b.text("#no-dev").await.contains("POST /api/chat"));
    assert_eq!(b.js(&visible("signin")).await, false, "no sign-in form");
    // Styles load under the policy; an inline handler injected into the page does not run.
    assert_eq!(
        b.js("getComputedStyle(document.querySelector('h1')).color")
            .await,
        "rgb(214, 51, 108)"
    );
    b.js(r#"(document.body.insertAdjacentHTML('beforeend', '<img src="/favicon.svg" onload="window.__inline = 1">'), true)"#).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.js("window.__inline ?? null").await,
        Value::Null,
        "CSP blocks inline handlers"
    );

    // Switching to English sticks across pages.
    b.select("#lang", "en").await;
    b.wait(
        "English",
        "document.querySelector('h1')?.textContent === 'Chat with a character'",
    )
    .await;
    assert!(b
        .text("#no-dev")
        .await
        .contains("The game's own client signs players in"));
    b.goto(&w.url("/ops")).await;
    b.wait(
        "the console in English",
        "document.querySelector('h1')?.textContent === 'Operations console'",
    )
    .await;
    b.select("#lang", "ja").await;
    b.wait(
        "the console in Japanese",
        "document.querySelector('h1')?.textContent === '運用コンソール'",
    )
    .await;
    b.type_into("#token", "wrong").await;
    b.click("#token-form button[type=submit]").await;
    b.wait("the refusal", &visible("ops-error")).await;
    assert!(b
        .text("#ops-error")
        .await
        .contains("管理トークンが拒否されました"));
}
