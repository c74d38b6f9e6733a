//! A batch → the core's flow (`chat_core::consumer`) over this Worker's bindings, then its
//! log lines (with what the batch cost in billed units). The local build wraps the bindings in the fault switch
//! (`chat_core::consumer::faulty`); the deployable build runs them bare.

use crate::bindings::Bindings;
use crate::config::{Config, DEAD_LETTER_QUEUE, TURN_QUEUE};
use crate::incoming::Incoming;
use chat_core::consumer::ports::{Control, Ledgers};
use chat_core::consumer::turns::{consume, Ports};
use chat_core::consumer::{letters, Event, Level};
use chat_core::live_map::MapCache;
use chat_core::usage::{queue_ops, Usage};
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
    // `slow=MS`: every D1 call of this isolate waits MS first, as production's D1 does.
    worker_support::d1::set_delay_ms(config.faults.slow_ms);
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
    let bindings = Bindings::new(env);
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
    let usage = usage_of(messages, &bindings);
    tracing::info!(
        queue = TURN_QUEUE,
        received = report.received,
        probes = report.probes,
        applied = report.applied,
        duplicate = report.duplicate,
        archived = report.archived,
        erased = report.erased,
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
        d1_rows_read = usage.d1_rows_read,
        d1_rows_written = usage.d1_rows_written,
        d1_statements = usage.d1_statements,
        queue_read_ops = usage.queue_read_ops,
        queue_delete_ops = usage.queue_delete_ops,
        queue_write_ops = usage.queue_write_ops,
        "turn batch"
    );
}

/// A batch of the dead-letter queue.
pub async fn letters(messages: &[Incoming], env: &Env, config: &Config) {
    let started = now_ms();
    let bindings = Bindings::new(env);
    let clock = WorkerClock;
    let archive = databases(&bindings, config, &clock);
    let report = letters::archive(messages, &archive, &bindings, &clock, &config.settings).await;
    report.events.iter().for_each(log);
    let usage = usage_of(messages, &bindings);
    tracing::info!(
        queue = DEAD_LETTER_QUEUE,
        received = report.received,
        stored = report.stored,
        retried = report.retried,
        requeued = report.requeued,
        chunks = report.chunks,
        total_ms = now_ms() - started,
        d1_rows_read = usage.d1_rows_read,
        d1_rows_written = usage.d1_rows_written,
        d1_statements = usage.d1_statements,
        queue_read_ops = usage.queue_read_ops,
        queue_delete_ops = usage.queue_delete_ops,
        queue_write_ops = usage.queue_write_ops,
        "dead-letter batch"
    );
}

/// What a batch cost in billed units: its D1 statements and sends (counted by the
/// bindings), each delivery read, and each message acked deleted (per 64 KB).
fn usage_of(messages: &[Incoming], bindings: &Bindings) -> Usage {
    let mut usage = *bindings.usage.borrow();
    for m in messages {
        let ops = queue_ops(m.body.len());
        usage.queue_read_ops += ops;
        if m.acked.get() {
            usage.queue_delete_ops += ops;
        }
    }
    usage
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
