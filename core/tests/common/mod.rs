//! What the randomized native tests share. Each test crate includes this module and uses
//! some of it, hence the `dead_code` allowances.

use chat_core::clock::Clock;
use chat_core::consumer::turns::{consume, Ports};
use chat_core::consumer::Settings;
use chat_core::live_map::MapCache;
use chat_core::native::actor::block_on;
use chat_core::native::consumer::{Databases, Handling, MemoryQueues, Message, SeededClock};
use chat_core::record::TurnRecord;

/// The seed of a randomized run: `SEED` when set (to replay a failure), else a new one,
/// printed so that a failing run can be replayed.
#[allow(dead_code)]
pub fn seed() -> u64 {
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("SEED={seed}");
    seed
}

/// What [`deliver`] saw the consumer do.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub applied: usize,
    pub erased: usize,
}

/// Delivers `records` through the consumer's real flow (`consume`) until each is acked, a
/// retry coming back at once with one more attempt. Nothing may be dead-lettered.
#[allow(dead_code)]
pub fn deliver(
    dbs: &Databases,
    clock: &SeededClock,
    settings: &Settings,
    cache: &MapCache,
    records: &[TurnRecord],
) -> Delivered {
    let mut pending: Vec<(String, u32)> = records.iter().map(|r| (r.encode(), 1)).collect();
    let mut seen = Delivered::default();
    for _ in 0..20 {
        if pending.is_empty() {
            return seen;
        }
        let messages: Vec<Message> = pending
            .iter()
            .enumerate()
            .map(|(i, (body, attempts))| {
                Message::new(format!("m{i}"), body.clone(), *attempts, clock.now_ms())
            })
            .collect();
        let queues = MemoryQueues::default();
        let ports = Ports {
            ledgers: dbs,
            control: dbs,
            queues: &queues,
            clock,
        };
        let report = block_on(consume(&messages, &ports, settings, cache));
        assert_eq!(report.dead_lettered, 0, "{:?}", report.events);
        seen.applied += report.applied;
        seen.erased += report.erased;
        pending = messages
            .iter()
            .zip(pending)
            .filter(|(m, _)| m.handling() != Handling::Acked)
            .map(|(_, (body, attempts))| (body, attempts + 1))
            .collect();
    }
    panic!("deliveries never settled");
}
