//! A small map whose entries expire, bounded in size: what an isolate keeps between requests
//! (sessions, X answers). Workers isolates are single-threaded, so it lives in a
//! `thread_local!` of its user.

use std::collections::HashMap;
use std::hash::Hash;

pub struct TtlCache<K, V> {
    entries: HashMap<K, (V, i64)>,
    max_entries: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_entries,
        }
    }

    /// The value of `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &K, now_ms: i64) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(v, _)| v.clone())
    }

    /// Keeps `value` until `expires_ms`. When full, expired entries go first, then everything.
    pub fn put(&mut self, key: K, value: V, now_ms: i64, expires_ms: i64) {
        if self.entries.len() >= self.max_entries {
            self.entries.retain(|_, (_, expires)| *expires > now_ms);
            if self.entries.len() >= self.max_entries {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, expires_ms));
    }

    /// Changes the value of `key` in place, keeping its expiry.
    pub fn update(&mut self, key: &K, f: impl FnOnce(&mut V)) {
        if let Some((v, _)) = self.entries.get_mut(key) {
            f(v);
        }
    }
}
