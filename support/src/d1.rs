//! D1 calls that count what they cost: each statement's `meta` (rows read and written) goes
//! into the isolate's meter (`usage`), wherever the call is made, so no D1 call is left out
//! of what a turn is said to cost.
//!
//! `metered_first` is `all` taking the first row: D1 reads (and bills) the same rows either
//! way, and only `all` hands back the `meta` (the runtime's `first` drops it).
//!
//! Each call first waits [`pause`]: nothing, but in a local build given `FAULTS=slow=MS`
//! (`chat_core::faults`), which sets [`set_delay_ms`] so that the local D1 answers as late as
//! production's, a network round trip away. The deployable build never sets it.

use crate::usage::{count, d1_results};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::time::Duration;
use worker::{D1Database, D1PreparedStatement, D1Result};

thread_local! {
    static DELAY_MS: Cell<u32> = const { Cell::new(0) };
}

/// Makes every D1 call of this isolate wait `ms` first (local builds, `FAULTS=slow=MS`).
pub fn set_delay_ms(ms: u32) {
    DELAY_MS.with(|d| d.set(ms));
}

/// Waits what a D1 call is set to wait before it is made (nothing unless [`set_delay_ms`]).
pub async fn pause() {
    let ms = DELAY_MS.with(Cell::get);
    if ms > 0 {
        worker::Delay::from(Duration::from_millis(u64::from(ms))).await;
    }
}

/// A prepared statement run with its cost counted.
#[allow(async_fn_in_trait)] // wasm32 runs one thread: no `Send` bound is wanted.
pub trait Metered {
    async fn metered_all(self) -> worker::Result<D1Result>;
    async fn metered_run(self) -> worker::Result<D1Result>;
    async fn metered_first<T: DeserializeOwned>(self) -> worker::Result<Option<T>>;
}

impl Metered for D1PreparedStatement {
    async fn metered_all(self) -> worker::Result<D1Result> {
        pause().await;
        let result = self.all().await?;
        count(|u| d1_results(u, [&result]));
        Ok(result)
    }

    async fn metered_run(self) -> worker::Result<D1Result> {
        pause().await;
        let result = self.run().await?;
        count(|u| d1_results(u, [&result]));
        Ok(result)
    }

    async fn metered_first<T: DeserializeOwned>(self) -> worker::Result<Option<T>> {
        Ok(self.metered_all().await?.results::<T>()?.into_iter().next())
    }
}

/// `db.batch(statements)`, every statement's cost counted.
pub async fn metered_batch(
    db: &D1Database,
    statements: Vec<D1PreparedStatement>,
) -> worker::Result<Vec<D1Result>> {
    pause().await;
    let results = db.batch(statements).await?;
    count(|u| d1_results(u, &results));
    Ok(results)
}
