//! What a turn costs, counted on the turns the benchmark runs: plain HTTP, SSE and the
//! session's socket on the production build, and the inline-write Worker, each under a
//! steady closed-loop load, then `GET /healthz` (the floor) for the CPU of one request.
//!
//! Per design, between a mark before the load and one after every turn is stored:
//! - CPU: the workerd processes' user and system time from `/proc`, less the idle rate
//!   measured on the same instance before any load (one process runs every Worker locally,
//!   so it is the whole turn: chat Worker, actor, consumer, and the local D1 and queue);
//! - the chat Worker's isolate meter (`GET /admin/usage`, the inline Worker's `GET /usage`):
//!   Worker and Durable Object requests, socket messages, the actor's active time and SQLite
//!   rows (the cursors' own counts), queue writes, D1 rows (each statement's `meta`);
//! - the consumer's `turn batch` log lines: its invocations, D1 rows and queue reads,
//!   deletes and writes;
//! - bytes stored: pages in use in the D1 files, and what the actors' `databaseSize` grew by
//!   (counted by the actors: reading their SQLite files from outside would disturb them).
//!
//! Every answered turn is kept for the instance's final check (stored once, totals equal to
//! the ledger), so a design that loses turns to look cheap fails the run.

use crate::load::{closed_loop, paced_loop, LoadResult, Outcome};
use crate::target::{chat_turn, chat_turn_keyed, turn_key, Instance, Spec};
use crate::Params;
use chat_core::usage::Usage;
use e2e::live::read_events;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is read before and after a load.
struct Mark {
    at: Instant,
    cpu_ms: f64,
    usage: Usage,
    batches: usize,
    d1_bytes: i64,
}

async fn usage(instance: &Instance) -> anyhow::Result<Usage> {
    let w = &instance.w;
    let body: Value = if instance.name == "inline" {
        w.http.get(w.url("/usage")).send().await?.json().await?
    } else {
        let (status, body) = w.admin("GET", "/admin/usage", None).await;
        anyhow::ensure!(status == 200, "GET /admin/usage answered {status}: {body}");
        body
    };
    Ok(serde_json::from_value(body)?)
}

async fn mark(instance: &Instance) -> anyhow::Result<Mark> {
    let w = &instance.w;
    let usage = usage(instance).await?;
    Ok(Mark {
        at: Instant::now(),
        cpu_ms: w.workerd_cpu_ms(),
        usage,
        batches: w.log_events("turn batch").len(),
        d1_bytes: w.database_bytes(),
    })
}

/// A game in its stride: each database's top [`chat_core::sql::leaders::KEPT`] players are
/// established ones, far ahead of the benchmark's new players (their points granted by
/// hand: point events without a turn), as in production, where a database holds thousands of
/// players and few of them are near its top. Without them every benchmark player would be
/// in the `leaders` table and write a row there in each batch; with them, none does, as a
/// player outside the top does not (a player in it writes one more row a batch). The next
/// batch rebuilds the table (`leaders_floor.refill`).
fn establish_top(instance: &Instance) -> anyhow::Result<()> {
    use chat_core::identity::{AuthProvider, Identity};
    let bindings = instance.w.shards();
    let map = chat_core::shards::ShardMap::parse(&e2e::shard_map_of(bindings.len()))
        .map_err(anyhow::Error::msg)?;
    let now = e2e::now_ms();
    for binding in bindings {
        let conn = instance.w.shard(binding);
        let mut placed = 0;
        for i in 0.. {
            if placed == chat_core::sql::leaders::KEPT {
                break;
            }
            let identity = Identity::new(AuthProvider::X, &format!("established-{i}"))?;
            let user = identity.user_id();
            if map.binding_of_bucket(chat_core::shards::bucket(&user)) != binding {
                continue;
            }
            let session = uuid::Uuid::now_v7();
            chat_core::native::start_session(&conn, &identity, session, now)?;
            let total = 1_000_000 + i64::from(placed);
            conn.execute(
                "INSERT INTO user_stats (user_id, total_points, intimacy_level, updated_at) VALUES (?1, ?2, 0, ?3)",
                rusqlite::params![user.to_string(), total, now],
            )?;
            conn.execute(
                "INSERT INTO point_events (id, user_id, session_id, message_id, delta, reason, created_at) VALUES (?1, ?2, ?3, NULL, ?4, 'grant', ?5)",
                rusqlite::params![uuid::Uuid::now_v7().to_string(), user.to_string(), session.to_string(), total, now],
            )?;
            placed += 1;
        }
        conn.execute("UPDATE leaders_floor SET refill = 1", [])?;
    }
    Ok(())
}

/// Plays each session, keyed as the page plays (full run: past the turns its actor keeps,
/// so that the measured turns pay what every turn of a long session does, pruning the
/// oldest turn among it; `--quick`: one turn). Answers how many alarms a session set doing
/// so: the first keyed turn of a session's day sets it, and it then runs once a day
/// (`session::next_sweep`), so a session's day costs that many `setAlarm`s and runs.
async fn warm_up(instance: &Instance, params: &Params) -> anyhow::Result<Value> {
    let rounds = if params.quick {
        1
    } else {
        chat_core::session::DEFAULT_HISTORY_TURNS as usize + 1
    };
    poke_actors(instance).await?;
    let before = mark(instance).await?;
    let keyed = instance.name != "inline";
    let mut ids = instance
        .play_every_session(rounds, params.cost_connections, keyed)
        .await?;
    eprintln!("counts: warmed up with {} turns", ids.len());
    instance.keep(&mut ids);
    instance.settle().await;
    let after = mark(instance).await?;
    let sessions = instance.sessions.len().max(1) as f64;
    let alarms = after.usage.since(&before.usage).actor_alarms_set as f64 / sessions;
    // What a session's day of alarms costs, as a share like a session start's: each
    // `setAlarm` a row written now and a request when it runs.
    Ok(json!({ "actorAlarmsSet": alarms, "actorRowsWritten": alarms }))
}

/// Asks every session's actor for its state. An actor counts its storage's growth when it
/// next works (a write is committed after its handler returns), so this brings the count up
/// to date; the marks read everything else before it, or after it and before the load.
/// Answers how many answers the actors hold: each is a row the alarm writes when it frees
/// it, a day later, which no measurement of seconds sees happen.
async fn poke_actors(instance: &Instance) -> anyhow::Result<i64> {
    poke(instance, instance.sessions.iter().map(|(_, s)| s.as_str())).await
}

/// [`poke_actors`] for the actors of `sessions`.
async fn poke<'a>(
    instance: &Instance,
    sessions: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<i64> {
    if instance.name == "inline" {
        return Ok(0);
    }
    let mut held = 0;
    for session in sessions {
        let path = format!("/admin/sessions/{session}");
        let (status, body) = instance.w.admin("GET", &path, None).await;
        anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
        held += body["answersHeld"].as_i64().unwrap_or(0);
    }
    Ok(held)
}

/// The workerd processes' CPU ms per second with nothing to do.
async fn idle_rate(instance: &Instance, seconds: f64) -> f64 {
    // Let start-up work (migrations, the first batches) settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t0, c0) = (Instant::now(), instance.w.workerd_cpu_ms());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    (instance.w.workerd_cpu_ms() - c0) / t0.elapsed().as_secs_f64()
}

fn n(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// Sum of `key` over the consumer's batch lines.
fn batch_sum(lines: &[Value], key: &str) -> f64 {
    lines.iter().map(|l| n(l, key)).sum()
}

/// Counts per turn between `a` and `b`, over `turns` turns.
fn per_turn(a: &Mark, b: &Mark, lines: &[Value], turns: usize, idle_ms_per_s: f64) -> Value {
    let seconds = b.at.duration_since(a.at).as_secs_f64();
    let t = turns.max(1) as f64;
    let d = b.usage.since(&a.usage);
    let batches = lines.len() as f64;
    json!({
        "turns": turns,
        "seconds": seconds,
        "cpuMs": (b.cpu_ms - a.cpu_ms - idle_ms_per_s * seconds) / t,
        "workerRequests": (d.worker_requests as f64 + batches) / t,
        "doRequests": d.do_requests as f64 / t,
        "wsMessagesIn": d.ws_messages_in as f64 / t,
        "wsMessagesOut": d.ws_messages_out as f64 / t,
        "actorActiveMs": d.actor_active_us as f64 / 1000.0 / t,
        "actorRowsRead": d.actor_rows_read as f64 / t,
        "actorRowsWritten": d.actor_rows_written as f64 / t,
        "actorAlarmsSet": d.actor_alarms_set as f64 / t,
        "queueOps": (d.queue_write_ops as f64 + batch_sum(lines, "queue_write_ops")
            + batch_sum(lines, "queue_read_ops") + batch_sum(lines, "queue_delete_ops")) / t,
        "d1RowsRead": (d.d1_rows_read as f64 + batch_sum(lines, "d1_rows_read")) / t,
        "d1RowsWritten": (d.d1_rows_written as f64 + batch_sum(lines, "d1_rows_written")) / t,
        "d1Statements": (d.d1_statements as f64 + batch_sum(lines, "d1_statements")) / t,
        "consumerBatches": batches / t,
        "d1Bytes": (b.d1_bytes - a.d1_bytes) as f64 / t,
        "actorBytes": d.actor_bytes as f64 / t,
    })
}

/// One design's load, from mark to mark, every turn stored before the second.
async fn measure<F, Fut>(
    instance: &Instance,
    params: &Params,
    idle_ms_per_s: f64,
    label: &str,
    request: F,
) -> anyhow::Result<Value>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let held_before = poke_actors(instance).await?;
    let before = mark(instance).await?;
    let mut r: LoadResult = paced_loop(
        instance.sessions.len(),
        Duration::from_secs_f64(params.cost_pace_seconds),
        Duration::from_secs_f64(params.cost_seconds),
        request,
    )
    .await;
    anyhow::ensure!(r.errors == 0, "{label}: {} turns failed", r.errors);
    let turns = r.ok;
    instance.keep(&mut r.kept);
    instance.settle().await;
    // The batch that stored the last turns logs its line after its write.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut after = mark(instance).await?;
    let held_after = poke_actors(instance).await?;
    after.usage.actor_bytes = usage(instance).await?.actor_bytes;
    let lines = instance.w.log_events("turn batch");
    let mut counted = per_turn(
        &before,
        &after,
        &lines[before.batches..],
        turns,
        idle_ms_per_s,
    );
    // Rows the alarm will write to free the answers these turns left.
    counted["actorRowsOwed"] =
        json!((held_after - held_before).max(0) as f64 / turns.max(1) as f64);
    eprintln!("counts {label}: {counted}");
    Ok(json!({ "perTurn": counted, "load": r.to_json() }))
}

/// A turn over SSE: the message id of its `done` event.
async fn sse_turn(instance: &Instance, i: usize) -> Outcome {
    let (player, session) = &instance.sessions[i % instance.sessions.len()];
    let request = instance
        .w
        .http
        .post(instance.w.url("/api/chat"))
        .header(player.header.0, &player.header.1)
        // The page's SSE fallback always sends a key (the socket's turn key).
        .header("Idempotency-Key", turn_key())
        .json(&json!({ "sessionId": session, "message": format!("hello there, turn {i}") }));
    let streamed = read_events(request).await;
    if streamed.status != 200 {
        return Err(format!("status {}: {}", streamed.status, streamed.body));
    }
    let done = streamed
        .events
        .iter()
        .find(|e| e.name == "done")
        .ok_or("no done event")?;
    let answer: Value = serde_json::from_str(&done.data).map_err(|e| e.to_string())?;
    Ok(answer["messageId"].as_str().map(str::to_owned))
}

/// How many turns a session is played for, and a socket used for, in the priced turn: a
/// session start and a socket's setup (its ticket and upgrade) are shared over this many.
pub const TURNS_PER_SESSION: f64 = 20.0;

/// Sessions started (and sockets opened) to measure what one costs.
fn setup_samples(params: &Params) -> usize {
    if params.quick {
        4
    } else {
        20
    }
}

/// What starting a session costs: `n` more sessions started, counted between two marks.
async fn session_start(instance: &Instance, idle: f64, n: usize) -> anyhow::Result<Value> {
    let people: Vec<_> = instance
        .sessions
        .iter()
        .take(n)
        .map(|(p, _)| p.clone())
        .collect();
    poke_actors(instance).await?;
    let before = mark(instance).await?;
    let started = crate::players::sessions(&instance.w.http, &instance.w.base, &people, 1).await?;
    anyhow::ensure!(
        started.len() == n,
        "{} sessions started of {n}",
        started.len()
    );
    // Marked before the new actors are asked for their state (those requests are the
    // benchmark's, not the start's), and their storage's growth read after it: an actor
    // counts it when it next works.
    let mut after = mark(instance).await?;
    poke(instance, started.iter().map(|(_, s)| s.as_str())).await?;
    after.usage.actor_bytes = usage(instance).await?.actor_bytes;
    let counted = per_turn(&before, &after, &[], n, idle);
    eprintln!("counts session start: {counted}");
    Ok(counted)
}

/// `turn` plus each of `shares` divided by [`TURNS_PER_SESSION`]: the priced turn.
fn amortized(turn: &Value, shares: &[&Value]) -> Value {
    let mut out = turn.clone();
    if let Some(map) = out.as_object_mut() {
        for (key, value) in map.iter_mut() {
            if key == "turns" || key == "seconds" {
                continue;
            }
            let extra: f64 = shares.iter().map(|s| n(s, key)).sum::<f64>() / TURNS_PER_SESSION;
            *value = json!(value.as_f64().unwrap_or(0.0) + extra);
        }
    }
    out
}

/// Every design, each on a fresh instance, its players at a human pace (one turn every
/// `cost_pace_seconds` each), so a consumer batch holds turns of different players as it
/// does in production. Each design's priced turn (`perTurn`) carries its share of a session
/// start and, for the socket, of the socket's setup, over [`TURNS_PER_SESSION`] turns; the
/// turn alone is `turnOnly`, and the shares are `setup`.
pub async fn run(after: &Spec, inline: &Spec, params: &Params) -> anyhow::Result<Value> {
    let idle_seconds = if params.quick { 1.0 } else { 3.0 };
    let mut out = Map::new();
    out.insert("connections".into(), json!(params.cost_connections));
    out.insert("players".into(), json!(params.cost_players));
    out.insert("paceSeconds".into(), json!(params.cost_pace_seconds));
    out.insert("seconds".into(), json!(params.cost_seconds));
    out.insert("turnsPerSession".into(), json!(TURNS_PER_SESSION));

    // A socket's frames are not limited here: the load sends more than a player would.
    let unlimited = vec![("LIVE_FRAME_LIMIT", "1000000".to_string())];
    let instance = Arc::new(Instance::start_with(after, params.cost_players, 1, unlimited).await?);
    let idle = idle_rate(&instance, idle_seconds).await;
    out.insert("idleCpuMsPerSecond".into(), json!(idle));
    establish_top(&instance)?;
    let daily_alarm = warm_up(&instance, params).await?;
    eprintln!("counts alarms of a session's day: {daily_alarm}");

    // The floor: one request that does nothing, for the CPU of a request.
    let w = instance.w.http.clone();
    let url = instance.w.url("/healthz");
    let before = mark(&instance).await?;
    let r = closed_loop(
        params.cost_connections,
        Duration::from_secs_f64(params.cost_seconds),
        move |_| {
            let (http, url) = (w.clone(), url.clone());
            async move {
                let r = http.get(url).send().await.map_err(|e| e.to_string())?;
                r.status()
                    .is_success()
                    .then_some(None)
                    .ok_or_else(|| r.status().to_string())
            }
        },
    )
    .await;
    let after_floor = mark(&instance).await?;
    let floor = per_turn(&before, &after_floor, &[], r.ok, idle);
    eprintln!("counts floor: {floor}");
    out.insert(
        "floor".into(),
        json!({ "perRequest": floor, "load": r.to_json() }),
    );

    let samples = setup_samples(params);
    let start = session_start(&instance, idle, samples).await?;

    for (design, keyed) in [("http", true), ("httpUnkeyed", false)] {
        let i = instance.clone();
        let http = instance.w.http.clone();
        let url = instance.w.url("/api/chat");
        let mut counted = measure(&instance, params, idle, design, move |n| {
            let (http, url, i) = (http.clone(), url.clone(), i.clone());
            async move {
                let (player, session) = &i.sessions[n % i.sessions.len()];
                let key = keyed.then(turn_key);
                chat_turn_keyed(&http, &url, player, session, n, key.as_deref()).await
            }
        })
        .await?;
        if keyed {
            with_setup(
                &mut counted,
                &[("sessionStart", &start), ("dailyAlarm", &daily_alarm)],
            );
        } else {
            with_setup(&mut counted, &[("sessionStart", &start)]);
        }
        out.insert(design.into(), counted);
    }

    let i = instance.clone();
    let mut counted = measure(&instance, params, idle, "sse", move |n| {
        let i = i.clone();
        async move { sse_turn(&i, n).await }
    })
    .await?;
    with_setup(
        &mut counted,
        &[("sessionStart", &start), ("dailyAlarm", &daily_alarm)],
    );
    out.insert("sse".into(), counted);

    // A socket per player, its setup (ticket, upgrade) counted between two marks.
    poke_actors(&instance).await?;
    let before = mark(&instance).await?;
    let sockets = crate::live::sockets(&instance, instance.sessions.len()).await?;
    let after_open = mark(&instance).await?;
    let open = per_turn(&before, &after_open, &[], sockets.len(), idle);
    eprintln!("counts socket setup: {open}");
    let sockets = Arc::new(sockets);
    let mut counted = measure(&instance, params, idle, "ws", move |n| {
        let sockets = sockets.clone();
        async move {
            crate::live::socket_turn(&sockets[n % sockets.len()], n)
                .await
                .map(|(id, _, _)| Some(id))
        }
    })
    .await?;
    with_setup(
        &mut counted,
        &[
            ("sessionStart", &start),
            ("socketSetup", &open),
            ("dailyAlarm", &daily_alarm),
        ],
    );
    out.insert("ws".into(), counted);
    instance.check().await?;
    drop(instance);

    let instance = Arc::new(Instance::start(inline, params.cost_players, 1).await?);
    let idle = idle_rate(&instance, idle_seconds).await;
    establish_top(&instance)?;
    warm_up(&instance, params).await?;
    let start = session_start(&instance, idle, samples).await?;
    let i = instance.clone();
    let http = instance.w.http.clone();
    let url = instance.w.url("/api/chat");
    let mut counted = measure(&instance, params, idle, "inline", move |n| {
        let (http, url, i) = (http.clone(), url.clone(), i.clone());
        async move {
            let (player, session) = &i.sessions[n % i.sessions.len()];
            chat_turn(&http, &url, player, session, n).await
        }
    })
    .await?;
    counted["idleCpuMsPerSecond"] = json!(idle);
    with_setup(&mut counted, &[("sessionStart", &start)]);
    out.insert("inline".into(), counted);
    instance.check().await?;
    let out = Value::Object(out);
    counted_everything(&out)?;
    Ok(out)
}

/// Moves a design's measured turn to `turnOnly`, keeps each share under `setup`, and makes
/// `perTurn` the turn with its shares of them.
fn with_setup(design: &mut Value, shares: &[(&str, &Value)]) {
    let turn = design["perTurn"].clone();
    let parts: Vec<&Value> = shares.iter().map(|(_, v)| *v).collect();
    design["perTurn"] = amortized(&turn, &parts);
    design["turnOnly"] = turn;
    design["setup"] = Value::Object(
        shares
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).clone()))
            .collect(),
    );
}

/// What every turn must have been counted as, whatever its cost: a meter that lost its
/// wiring (a count of zero) fails the run instead of making a design look free.
fn counted_everything(costs: &Value) -> anyhow::Result<()> {
    let at_least = |design: &str, key: &str, min: f64| {
        let v = n(&costs[design]["perTurn"], key);
        anyhow::ensure!(v >= min, "{design}: {key} per turn is {v}, below {min}");
        Ok(())
    };
    for design in ["http", "httpUnkeyed", "sse", "ws"] {
        // Sent, delivered and acked: three queue operations at least.
        at_least(design, "queueOps", 3.0)?;
        at_least(design, "actorRowsWritten", 1.0)?;
        at_least(design, "d1RowsWritten", 1.0)?;
        at_least(design, "consumerBatches", 1e-6)?;
    }
    at_least("http", "doRequests", 1.0)?;
    at_least("httpUnkeyed", "doRequests", 1.0)?;
    at_least("sse", "doRequests", 1.0)?;
    at_least("ws", "wsMessagesIn", 1.0)?;
    at_least("ws", "wsMessagesOut", 1.0)?;
    at_least("inline", "d1RowsWritten", 1.0)?;
    at_least("inline", "workerRequests", 1.0)?;
    Ok(())
}
