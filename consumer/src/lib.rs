//! The queue consumer Worker: stores turns in D1 exactly once, and archives dead letters.
//!
//! The flows themselves (decode, route, write, judge, ack, retry, dead-letter, re-queue,
//! archive) are plain Rust in `chat_core::consumer`, tested natively; this Worker is their
//! adapter over its bindings.
//!
//! - [`config`]: binding and queue names, and the settings, read from `Env` in one place.
//! - [`incoming`]: a queue message as JavaScript gives it (with its `attempts`): the
//!   core's `Delivery`.
//! - [`bindings`]: the core's ledgers, control database and queues over D1 and Queues.
//! - [`batches`]: a batch → the core's flow over the bindings (wrapped in the fault switch
//!   in the local build), then its log lines.

mod batches;
mod bindings;
mod config;
mod incoming;

use worker::{event, Env};

#[event(start)]
fn start() {
    // No console_error_panic_hook here: worker 0.8 installs its own hook, which logs the panic
    // and re-initialises the instance; replacing it would lose that recovery.
    worker_support::logging::init();
}

/// The queue handler, exported by hand rather than with `#[event(queue)]`: worker 0.8's
/// `MessageBatch` hides the JavaScript messages, and with them `attempts`, which the retry
/// backoff and the last-attempt rule need. Every message it can read is acked, retried or
/// dead-lettered explicitly. Only a batch whose messages cannot be read at all fails, with
/// `Err`, so that the runtime delivers the whole batch again instead of acking it unseen.
mod export {
    use worker::wasm_bindgen::prelude::wasm_bindgen;
    use worker::wasm_bindgen::JsValue;

    #[wasm_bindgen(
        wasm_bindgen = ::worker::wasm_bindgen,
        wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
        js_sys = ::worker::js_sys
    )]
    pub async fn queue(
        batch: ::worker::worker_sys::MessageBatch,
        env: ::worker::Env,
        _ctx: ::worker::worker_sys::Context,
    ) -> Result<JsValue, JsValue> {
        std::panic::AssertUnwindSafe(super::route(batch, env))
            .await
            .map(|()| JsValue::UNDEFINED)
            .map_err(|e| JsValue::from_str(&e))
    }
}

/// Routes a batch on its queue's name.
async fn route(batch: worker::worker_sys::MessageBatch, env: Env) -> Result<(), String> {
    let queue: String = batch.queue().map(String::from).unwrap_or_default();
    let messages = incoming::Incoming::all(&batch).inspect_err(|e| {
        tracing::error!(queue = %queue, error = %e, "unreadable batch; the whole batch will be retried");
    })?;
    let config = config::Config::from_env(&env);
    #[cfg(not(feature = "local"))]
    config::warn_if_faults_set(&env);
    match queue.as_str() {
        config::TURN_QUEUE => batches::turns(&messages, &env, &config).await,
        config::DEAD_LETTER_QUEUE => batches::letters(&messages, &env, &config).await,
        other => {
            use chat_core::consumer::ports::Delivery;
            tracing::error!(queue = other, "batch from an unknown queue; retrying it");
            messages
                .iter()
                .for_each(|m| m.retry(config.settings.backoff.delay_seconds(m.attempts, 0.5)));
        }
    }
    Ok(())
}
