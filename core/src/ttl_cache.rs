//! A small map whose entries expire, bounded in size: what an isolate keeps between requests
//! (verified Privy sign-ins, X answers). Workers isolates are single-threaded, so it lives in a
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

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Changes the value of `key` in place, keeping its expiry.
    pub fn update(&mut self, key: &K, f: impl FnOnce(&mut V)) {
        if let Some((v, _)) = self.entries.get_mut(key) {
            f(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_until_its_expiry_and_not_a_millisecond_more() {
        let mut c = TtlCache::new(4);
        c.put("a", 1, 0, 100);
        assert_eq!(c.get(&"a", 99), Some(1));
        assert_eq!(c.get(&"a", 100), None);
        assert_eq!(c.get(&"b", 0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_everything() {
        let mut c = TtlCache::new(3);
        c.put(1, "one", 0, 10);
        c.put(2, "two", 0, 1_000);
        c.put(3, "three", 0, 1_000);
        // Full at t=50: entry 1 has expired and makes room; 2 and 3 stay.
        c.put(4, "four", 50, 1_000);
        assert_eq!(
            (c.get(&2, 50), c.get(&3, 50), c.get(&4, 50)),
            (Some("two"), Some("three"), Some("four"))
        );
        assert_eq!(c.len(), 3);
        // Full of live entries: it starts over rather than grow past its bound.
        c.put(5, "five", 60, 1_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&5, 60), Some("five"));
        for n in 0..100 {
            c.put(100 + n, "x", 60, 1_000);
            assert!(c.len() <= 3);
        }
    }

    #[test]
    fn update_keeps_the_expiry() {
        let mut c = TtlCache::new(2);
        c.put("k", 1, 0, 10);
        c.update(&"k", |v| *v += 1);
        assert_eq!(c.get(&"k", 9), Some(2));
        assert_eq!(c.get(&"k", 10), None);
    }
}
