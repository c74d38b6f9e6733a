//! The D1 databases by binding, as every part of this Worker reaches them. A binding the
//! Worker lacks is a clear error; a database that fails (or that the local build's fault
//! switch took down) is 503 `database_unavailable` for the players it holds, and never for
//! the others.

use crate::error::ApiError;
use worker::{D1Database, Env};

/// The database bound as `binding`.
pub fn database(env: &Env, binding: &str) -> Result<D1Database, ApiError> {
    if crate::faults::database_down(env, binding) {
        return Err(ApiError::DatabaseUnavailable(format!(
            "injected fault: database {binding} is down"
        )));
    }
    env.d1(binding).map_err(|_| {
        ApiError::Internal(format!(
            "this Worker has no D1 binding {binding}: bind it in both wrangler.toml files"
        ))
    })
}

/// Maps a failed query on `binding` to 503 `database_unavailable`: the players of that
/// database may retry; the reason goes to the log only.
pub fn failed(binding: &str) -> impl Fn(worker::Error) -> ApiError + '_ {
    move |e| ApiError::DatabaseUnavailable(format!("{binding}: {e}"))
}
