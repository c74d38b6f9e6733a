//! The actor's share of the usage meter (`worker_support::usage`): requests, socket
//! messages, active time and storage growth, counted as Cloudflare bills a Durable Object.

use super::Actor;
use std::cell::Cell;
use worker_support::clock::now_ms;

/// What starting some work is billed as.
pub enum Billed {
    /// An HTTP request or an alarm: one Durable Object request.
    Request,
    /// A WebSocket message received (billed 20 to a request).
    SocketMessage,
    /// Work that goes on after its request answered (a streamed answer).
    Nothing,
}

/// The actor's active time for the usage meter: wall-clock time while it handles anything,
/// overlapping work counted once (the way Cloudflare bills a Durable Object's duration).
/// It also counts what the storage grew by (`databaseSize`), read when work starts and
/// ends: a write is committed after its handler returns, so its growth shows at the next read.
#[derive(Default)]
pub struct Busy {
    handling: Cell<usize>,
    since_ms: Cell<i64>,
    size_seen: Cell<Option<i64>>,
}

impl Actor {
    /// Counts work starting now; its [`Active`] ends it when dropped.
    pub fn active(&self, billed: Billed) -> Active<'_> {
        worker_support::usage::count(|u| match billed {
            Billed::Request => u.do_requests += 1,
            Billed::SocketMessage => u.ws_messages_in += 1,
            Billed::Nothing => {}
        });
        let busy = &self.busy;
        if busy.handling.get() == 0 {
            busy.since_ms.set(now_ms());
            self.count_growth();
        }
        busy.handling.set(busy.handling.get() + 1);
        Active(self)
    }

    /// Counts what the storage grew by since it was last read.
    fn count_growth(&self) {
        let size = self.state.storage().sql().database_size() as i64;
        if let Some(seen) = self.busy.size_seen.replace(Some(size)) {
            worker_support::usage::count(|u| u.actor_bytes += size - seen);
        }
    }
}

/// Work in progress; its drop ends it.
pub struct Active<'a>(&'a Actor);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let busy = &self.0.busy;
        busy.handling.set(busy.handling.get().saturating_sub(1));
        if busy.handling.get() == 0 {
            let us = (now_ms() - busy.since_ms.get()).max(0) as u64 * 1000;
            worker_support::usage::count(|u| u.actor_active_us += us);
            self.0.count_growth();
        }
    }
}
