//! Sessions this isolate has read, kept for a minute, so a chat turn usually needs no D1 read
//! at all: the reply waits only on the queue.
//!
//! A session's row never changes except when its game ends. This isolate learns of the game
//! overs it answers itself at once; another isolate may accept turns in an ended session until
//! its entry expires (at most `TTL_MS`). Those turns are stored like any other: nothing is
//! lost or counted twice, the game just ends up to a minute late there.

use crate::db::SessionRow;
use std::cell::RefCell;
use uuid::Uuid;
use worker_support::ttl_cache::TtlCache;

pub const TTL_MS: i64 = 60_000;
const MAX_ENTRIES: usize = 10_000;

thread_local! {
    static CACHE: RefCell<TtlCache<Uuid, SessionRow>> = RefCell::new(TtlCache::new(MAX_ENTRIES));
}

pub fn get(id: Uuid, now_ms: i64) -> Option<SessionRow> {
    CACHE.with(|c| c.borrow().get(&id, now_ms))
}

pub fn put(id: Uuid, row: &SessionRow, now_ms: i64) {
    CACHE.with(|c| c.borrow_mut().put(id, row.clone(), now_ms, now_ms + TTL_MS));
}

/// Records that the game in session `id` ended at `at`.
pub fn end(id: Uuid, at: i64) {
    CACHE.with(|c| c.borrow_mut().update(&id, |row| row.ended_at = Some(at)));
}
