//! The live bucket map an isolate keeps: `SHARD_MAP` with the control database's overrides,
//! read at most once per cache period. Both Workers route with it, the chat Worker for its
//! reads and writes, the consumer for its batches.
//!
//! When the control database cannot be read, the last map read goes on routing, or
//! `SHARD_MAP` itself, so that the players of every other database keep playing. No map is
//! trusted for writes (each database refuses the rows of a bucket it has fenced), so a
//! stale one can only delay a moved bucket's turns, never misplace them. See
//! docs/design.md, "A failing database stops only its own players".

use crate::shards::{Override, ShardMap};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

/// Why the overrides were not read, when routing went on without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub error: String,
    /// Whether the last map read routes (else `SHARD_MAP` alone).
    pub cached: bool,
}

/// One isolate's map, and when it goes stale (epoch ms).
#[derive(Debug, Default)]
pub struct MapCache(RefCell<Option<(i64, Rc<ShardMap>)>>);

impl MapCache {
    /// The map to route with at `now`: the cached one while fresh, else `base` with the
    /// overrides `read` gives, kept for `cache_ms`. If `read` fails, the last map (or
    /// `base`) routes on, and the second value says why. `Err` only when `base` or the
    /// overrides are unusable. `read` is only awaited when the cache is stale.
    pub async fn live<F>(
        &self,
        now: i64,
        base: &Result<ShardMap, String>,
        cache_ms: i64,
        read: F,
    ) -> Result<(Rc<ShardMap>, Option<Unread>), String>
    where
        F: Future<Output = Result<Vec<Override>, String>>,
    {
        let cached = self.0.borrow().clone();
        if let Some((until, map)) = &cached {
            if now < *until {
                return Ok((map.clone(), None));
            }
        }
        let base = base.clone()?;
        let (map, unread) = match read.await {
            Ok(overrides) => (Rc::new(base.with_overrides(&overrides)?), None),
            Err(error) => {
                let unread = Unread {
                    error,
                    cached: cached.is_some(),
                };
                let map = match cached {
                    Some((_, map)) => map,
                    None => Rc::new(base),
                };
                (map, Some(unread))
            }
        };
        *self.0.borrow_mut() = Some((now + cache_ms, map.clone()));
        Ok((map, unread))
    }

    /// The map as the control database has it now, failing if it cannot be read; kept for
    /// `cache_ms` (the admin steps, which must see the map as it is).
    pub async fn refresh<F>(
        &self,
        now: i64,
        base: &Result<ShardMap, String>,
        cache_ms: i64,
        read: F,
    ) -> Result<Rc<ShardMap>, String>
    where
        F: Future<Output = Result<Vec<Override>, String>>,
    {
        let overrides = read.await?;
        let map = Rc::new(base.clone()?.with_overrides(&overrides)?);
        *self.0.borrow_mut() = Some((now + cache_ms, map.clone()));
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::actor::block_on;

    fn moved(binding: &str) -> Vec<Override> {
        vec![Override {
            bucket: 0,
            binding: binding.into(),
            moving: false,
        }]
    }

    #[test]
    fn a_stale_or_unreadable_map_routes_on_with_what_was_read() {
        let base = ShardMap::parse("0-127=DB_0,128-255=DB_1");
        let cache = MapCache::default();
        let ok = |b: &'static str| async move { Ok::<_, String>(moved(b)) };
        let down = || async { Err::<Vec<Override>, _>("down".to_owned()) };
        // Never read, control down: SHARD_MAP alone, and why.
        let (map, unread) = block_on(cache.live(0, &base, 5_000, down())).unwrap();
        assert_eq!(map.binding_of_bucket(0), "DB_0");
        assert!(!unread.unwrap().cached);
        // Fresh: not read again, whatever the control database says.
        let (map, unread) = block_on(cache.live(1_000, &base, 5_000, ok("DB_1"))).unwrap();
        assert_eq!((map.binding_of_bucket(0), unread), ("DB_0", None));
        // Stale: read, and the override routes.
        let (map, _) = block_on(cache.live(6_000, &base, 5_000, ok("DB_1"))).unwrap();
        assert_eq!(map.binding_of_bucket(0), "DB_1");
        // Stale and unreadable: the last map read routes on.
        let (map, unread) = block_on(cache.live(20_000, &base, 5_000, down())).unwrap();
        assert_eq!(map.binding_of_bucket(0), "DB_1");
        assert!(unread.unwrap().cached);
        // A refresh fails while the control database is down, and reads through the cache.
        assert!(block_on(cache.refresh(21_000, &base, 5_000, down())).is_err());
        let map = block_on(cache.refresh(21_000, &base, 5_000, ok("DB_0"))).unwrap();
        assert_eq!(map.binding_of_bucket(0), "DB_0");
        // An unusable SHARD_MAP is an error, not a guess.
        let bad = ShardMap::parse("nonsense");
        assert!(block_on(MapCache::default().live(0, &bad, 5_000, ok("DB_0"))).is_err());
    }
}
