//! The isolate's [`Usage`] meter: what this isolate did, in billed units, since it started.
//! The chat Worker's actors run in the isolate of its `fetch` handler on `wrangler dev`, so
//! there it is the whole Worker; on Cloudflare it is one isolate's share.

use chat_core::usage::Usage;
use std::cell::RefCell;
use worker::{D1Result, SqlCursor};

thread_local! {
    static USAGE: RefCell<Usage> = RefCell::new(Usage::default());
}

/// Adds to the isolate's counts.
pub fn count(f: impl FnOnce(&mut Usage)) {
    USAGE.with(|u| f(&mut u.borrow_mut()));
}

/// The isolate's counts so far.
pub fn snapshot() -> Usage {
    USAGE.with(|u| *u.borrow())
}

/// Counts a finished SQL cursor's rows (the runtime's own figures) as the actor's.
pub fn actor_rows(cursor: &SqlCursor) {
    let (read, written) = (cursor.rows_read() as u64, cursor.rows_written() as u64);
    count(|u| {
        u.actor_rows_read += read;
        u.actor_rows_written += written;
    });
}

/// Counts each D1 result's `meta` into `usage`.
pub fn d1_results<'a>(usage: &mut Usage, results: impl IntoIterator<Item = &'a D1Result>) {
    for r in results {
        match r.meta() {
            Ok(Some(m)) => usage.d1(m.rows_read, m.rows_written),
            _ => usage.d1(None, None),
        }
    }
}
