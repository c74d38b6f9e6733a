//! Waiting for something on the network for at most a set time. The runtime's `fetch` has no
//! timeout of its own: without one, a remote service that hangs holds every request that
//! waits on it.

use futures_util::future::{select, Either};
use std::future::Future;
use std::time::Duration;
use worker::Delay;

/// `work`'s output, or `None` once `timeout` has passed (`work` is then dropped).
pub async fn within<T>(timeout: Duration, work: impl Future<Output = T>) -> Option<T> {
    match select(Box::pin(work), Box::pin(Delay::from(timeout))).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
