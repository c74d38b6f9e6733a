//! The chat Worker's fault hooks. The local build (cargo feature `local`) reads `FAULTS` (see
//! `chat_core::faults`): a database taken down (`down=DB_k@MS`, for this Worker's reads and
//! writes, the bucket map's included), a session's actor reset between a turn's queue
//! send and its confirmation (`markers` and `[fault:reset]`), and a turn's first queue send
//! failing (`[fault:send-fails]`), and every D1 call made late (`slow=MS`). The deployable
//! build has no switch at all: every hook is a constant "no fault".

use worker::Env;

#[cfg(feature = "local")]
fn faults(env: &Env) -> chat_core::faults::Faults {
    let spec = crate::config::Config::of(env).faults.clone();
    chat_core::faults::Faults::parse(&spec).unwrap_or_else(|e| {
        tracing::error!(error = %e, "FAULTS is malformed; fault injection stays off");
        chat_core::faults::Faults::default()
    })
}

/// Makes every D1 call of this isolate wait `FAULTS=slow=MS` first (local build only).
#[cfg(feature = "local")]
pub fn slow_d1(env: &Env) {
    worker_support::d1::set_delay_ms(faults(env).slow_ms);
}

#[cfg(not(feature = "local"))]
pub fn slow_d1(_: &Env) {}

/// Whether database `binding` is down now (local build: `FAULTS=down=…`).
#[cfg(feature = "local")]
pub fn database_down(env: &Env, binding: &str) -> bool {
    faults(env).database_down(binding, worker_support::clock::now_ms())
}

/// Whether the actor is reset right after this turn's first queue send (local build:
/// `FAULTS=markers` and `[fault:reset]` in the message).
#[cfg(feature = "local")]
pub fn resets_after_send(env: &Env, message: &str) -> bool {
    faults(env).resets_after_send(message)
}

/// Whether this turn's first queue send fails (local build: `FAULTS=markers` and
/// `[fault:send-fails]` in the message).
#[cfg(feature = "local")]
pub fn fails_first_send(env: &Env, message: &str) -> bool {
    faults(env).fails_first_send(message)
}

#[cfg(not(feature = "local"))]
pub fn fails_first_send(_: &Env, _: &str) -> bool {
    false
}

#[cfg(not(feature = "local"))]
pub fn database_down(_: &Env, _: &str) -> bool {
    false
}

#[cfg(not(feature = "local"))]
pub fn resets_after_send(_: &Env, _: &str) -> bool {
    false
}
