//! A batch → the core's flow (`chat_core::consumer`) over this Worker's bindings, then its
//! log lines. The local build wraps the bindings in the fault switch
//! (`chat_core::consumer::faulty`); the deployable build runs them bare.

use crate::bindings::Bindings;
use crate::config::{Config, DEAD_LETTER_QUEUE, TURN_QUEUE};
use crate::incoming::Incoming;
use chat_core::consumer::ports::{Control, Ledgers};
use chat_core::consumer::turns::{consume, Ports};
use chat_core::consumer::{letters, Event, Level};
use chat_core::live_map::MapCache;
use std::rc::Rc;
use worker::Env;
use worker_support::clock::{now_ms, WorkerClock};

thread_local! {
    /// The isolate's live bucket map, kept across batches.
    static MAP: Rc<MapCache> = Rc::new(MapCache::default());
}

/// The databases as this build reaches them: behind the fault switch in the local build.
#[cfg(feature = "local")]
fn databases<'a>(
    bindings: &'a Bindings<'a>,
    config: &'a Config,
    clock: &'a WorkerClock,
) -> impl Ledgers + Control + 'a {
    chat_core::consumer::faulty::Faulty {
        inner: bindings,
        faults: &config.faults,
        clock,
    }
}

/// The databases as this build reaches them: bare, since the deployable build has no
/// fault switch.
#[cfg(not(feature = "local"))]
fn databases<'a>(
    bindings: &'a Bindings<'a>,
    _: &'a Config,
    _: &'a WorkerClock,
) -> impl Ledgers + Control + 'a {
    bindings
}

/// A batch of the turn queue.
pub async fn turns(messages: &[Incoming], env: &Env, config: &Config) {
    let started = now_ms();
    let bindings = Bindings(env);
    let clock = WorkerClock;
    let cache = MAP.with(Rc::clone);
    let databases = databases(&bindings, config, &clock);
    let ports = Ports {
        ledgers: &databases,
        control: &databases,
        queues: &bindings,
        clock: &clock,
    };
    let report = consume(messages, &ports, &config.settings, &cache).await;
    report.events.iter().for_each(log);
    tracing::info!(
        queue = TURN_QUEUE,
        received = report.received,
        probes = report.probes,
        applied = report.applied,
        duplicate = report.duplicate,
        conflict = report.conflict,
        invalid = report.invalid,
        dead_lettered = report.dead_lettered,
        retried = report.retried,
        held = report.held,
        databases = %report.databases.join("; "),
        chunks = report.chunks,
        statements = report.statements,
        d1_ms = report.write_ms,
        total_ms = now_ms() - started,
        "turn batch"
    );
}

/// A batch of the dead-letter queue.
pub async fn letters(messages: &[Incoming], env: &Env, config: &Config) {
    let started = now_ms();
    let bindings = Bindings(env);
    let clock = WorkerClock;
    let archive = databases(&bindings, config, &clock);
    let report = letters::archive(messages, &archive, &bindings, &clock, &config.settings).await;
    report.events.iter().for_each(log);
    tracing::info!(
        queue = DEAD_LETTER_QUEUE,
        received = report.received,
        stored = report.stored,
        retried = report.retried,
        requeued = report.requeued,
        chunks = report.chunks,
        total_ms = now_ms() - started,
        "dead-letter batch"
    );
}

/// One event's log line, as loud as its level: its stable message, and its details.
fn log(event: &Event) {
    let name = event.name();
    match event.level() {
        Level::Info => tracing::info!(detail = %event, "{name}"),
        Level::Warn => tracing::warn!(detail = %event, "{name}"),
        Level::Error => tracing::error!(detail = %event, "{name}"),
        Level::Alert => tracing::error!(alert = true, detail = %event, "{name}"),
    }
}
