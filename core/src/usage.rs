//! What the Workers did, in the units Cloudflare bills: requests, Durable Object requests and
//! WebSocket messages, the actor's active time and SQLite rows, queue operations, D1 rows.
//!
//! The counts are taken where the work happens, from the platform's own figures (each SQL
//! cursor's `rowsRead`/`rowsWritten`, each D1 statement's `meta`), never estimated: the chat
//! Worker keeps one [`Usage`] per isolate (`GET /admin/usage`), the consumer logs each
//! batch's on its `turn batch` line. The benchmark turns them into counts per turn, and
//! `bench::cost` into dollars.

use serde::{Deserialize, Serialize};

/// Bytes of a queue message that one billed operation covers: 64 KB, where Cloudflare's
/// KB is 1,000 bytes.
pub const QUEUE_OP_BYTES: usize = 64_000;
/// What the queue adds to each message's body, by Cloudflare's pricing page ("about 100
/// bytes of internal metadata").
pub const QUEUE_MESSAGE_METADATA: usize = 100;

/// Billed operations of one write, read or delete of a message whose body is `bytes`: one
/// per 64 KB begun, metadata included.
pub fn queue_ops(bytes: usize) -> u64 {
    (bytes + QUEUE_MESSAGE_METADATA).div_ceil(QUEUE_OP_BYTES) as u64
}

/// Counts since some start; every field only grows, but `actor_bytes`, which is net.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    /// Requests the Worker's `fetch` handler was invoked for.
    pub worker_requests: u64,
    /// HTTP requests and alarms a Durable Object handled (each billed as one request).
    pub do_requests: u64,
    /// WebSocket messages a Durable Object received (billed 20 to a request).
    pub ws_messages_in: u64,
    /// WebSocket messages a Durable Object sent (not billed; shown for what they carry).
    pub ws_messages_out: u64,
    /// Microseconds of wall-clock time an actor spent handling something (billed duration:
    /// an idle actor whose sockets are hibernatable is not billed).
    pub actor_active_us: u64,
    pub actor_rows_read: u64,
    pub actor_rows_written: u64,
    /// Alarms an actor set. Each `setAlarm` is billed as a row written (and counted in
    /// `actor_rows_written` too); each alarm set runs once later, a Durable Object request
    /// billed when it runs, which a short measurement never sees: the benchmark prices it
    /// here, where it was caused.
    pub actor_alarms_set: u64,
    /// Bytes the actors' databases grew by (`databaseSize`, as storage is billed), net of
    /// what they freed.
    pub actor_bytes: i64,
    /// Messages sent to a queue, and their billed write operations (per 64 KB).
    pub queue_messages: u64,
    pub queue_write_ops: u64,
    /// Billed read and delete operations of messages delivered and acknowledged.
    pub queue_read_ops: u64,
    pub queue_delete_ops: u64,
    /// D1 rows, as each statement's `meta` reports them.
    pub d1_rows_read: u64,
    pub d1_rows_written: u64,
    /// D1 statements run (not billed; a D1 batch of seven statements counts seven).
    pub d1_statements: u64,
}

impl Usage {
    /// What was counted after `before` was taken (saturating, so a reset isolate gives
    /// zeros rather than a wrap).
    pub fn since(&self, before: &Usage) -> Usage {
        Usage {
            worker_requests: self.worker_requests.saturating_sub(before.worker_requests),
            do_requests: self.do_requests.saturating_sub(before.do_requests),
            ws_messages_in: self.ws_messages_in.saturating_sub(before.ws_messages_in),
            ws_messages_out: self.ws_messages_out.saturating_sub(before.ws_messages_out),
            actor_active_us: self.actor_active_us.saturating_sub(before.actor_active_us),
            actor_rows_read: self.actor_rows_read.saturating_sub(before.actor_rows_read),
            actor_rows_written: self
                .actor_rows_written
                .saturating_sub(before.actor_rows_written),
            actor_alarms_set: self
                .actor_alarms_set
                .saturating_sub(before.actor_alarms_set),
            actor_bytes: self.actor_bytes - before.actor_bytes,
            queue_messages: self.queue_messages.saturating_sub(before.queue_messages),
            queue_write_ops: self.queue_write_ops.saturating_sub(before.queue_write_ops),
            queue_read_ops: self.queue_read_ops.saturating_sub(before.queue_read_ops),
            queue_delete_ops: self
                .queue_delete_ops
                .saturating_sub(before.queue_delete_ops),
            d1_rows_read: self.d1_rows_read.saturating_sub(before.d1_rows_read),
            d1_rows_written: self.d1_rows_written.saturating_sub(before.d1_rows_written),
            d1_statements: self.d1_statements.saturating_sub(before.d1_statements),
        }
    }

    /// Counts a queue send of messages of these sizes.
    pub fn sent(&mut self, sizes: impl IntoIterator<Item = usize>) {
        for bytes in sizes {
            self.queue_messages += 1;
            self.queue_write_ops += queue_ops(bytes);
        }
    }

    /// Counts one D1 statement's `meta` (absent figures count as zero).
    pub fn d1(&mut self, rows_read: Option<usize>, rows_written: Option<usize>) {
        self.d1_statements += 1;
        self.d1_rows_read += rows_read.unwrap_or(0) as u64;
        self.d1_rows_written += rows_written.unwrap_or(0) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_operation_is_64_kb_begun_metadata_included() {
        assert_eq!(queue_ops(0), 1);
        assert_eq!(queue_ops(1), 1);
        assert_eq!(queue_ops(63_900), 1);
        // Cloudflare's own examples: 65 KB and 127 KB are two operations each.
        assert_eq!(queue_ops(65_000), 2);
        assert_eq!(queue_ops(127_000), 2);
        assert_eq!(queue_ops(128_000), 3);
    }

    #[test]
    fn counts_add_and_subtract_field_by_field() {
        let mut a = Usage::default();
        a.sent([10, 70_000]);
        a.d1(Some(5), Some(3));
        a.d1(None, Some(1));
        assert_eq!(
            (a.queue_messages, a.queue_write_ops),
            (2, 3),
            "10 B and 70 KB"
        );
        assert_eq!(
            (a.d1_rows_read, a.d1_rows_written, a.d1_statements),
            (5, 4, 2)
        );
        let mut b = a;
        b.sent([10, 70_000]);
        b.d1(Some(5), Some(3));
        b.d1(None, Some(1));
        assert_eq!(b.since(&a), a);
        assert_eq!(
            a.since(&b),
            Usage::default(),
            "a reset gives zeros, not a wrap"
        );
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["d1RowsWritten"], 4);
        assert_eq!(serde_json::from_value::<Usage>(json).unwrap(), a);
    }
}
