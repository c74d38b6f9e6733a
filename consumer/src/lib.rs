//! The queue consumer Worker: stores turns in D1 exactly once.
//!
//! - [`consume`]: one queue batch → decode, dedupe, one atomic D1 batch, ack or retry.
//! - [`store`]: every D1 call of this Worker (its SQL lives in `chat_core::sql`).

mod consume;
mod store;

use worker::{event, Context, Env, MessageBatch, Result};

/// The D1 database binding (shared with the chat Worker).
pub const DB: &str = "DB";

#[event(start)]
fn start() {
    // No console_error_panic_hook here: worker 0.8 installs its own hook, which logs the panic
    // and re-initialises the instance; replacing it would lose that recovery.
    worker_support::logging::init();
}

#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
    // Never return Err: the generated wrapper would panic. Every message is acked or retried
    // explicitly inside.
    consume::turns(&batch, &env).await;
    Ok(())
}
