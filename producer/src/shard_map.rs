//! The live bucket map in the chat Worker: `SHARD_MAP` with the control database's
//! overrides (see `chat_core::shards`), kept per isolate for `SHARD_MAP_CACHE_SECONDS` (5 by
//! default) so that a request costs no extra D1 read.
//!
//! When the control database cannot be read, the isolate goes on with the last map it read,
//! or with `SHARD_MAP` itself if it never read one, so that the players of every other
//! database keep playing. That is safe because no map is trusted for writes: each database
//! refuses the rows of a bucket it has fenced (migration 0006), and every database a bucket
//! ever left keeps its fence. A stale map can only send a write to a database that refuses
//! it (the player is asked to retry), never to a wrong one. The admin steps that change the
//! map read it fresh ([`refresh`]), and fail while the control database is down.

use crate::config::Config;
use crate::databases::database;
use crate::error::ApiError;
use chat_core::live_map::MapCache;
use chat_core::shards::{Override, OverrideRow, ShardMap, CONTROL};
use chat_core::sql::shards::SELECT_OVERRIDES;
use std::rc::Rc;
use uuid::Uuid;
use worker::{D1Database, Env};
use worker_support::clock::now_ms;
use worker_support::d1::Metered;

thread_local! {
    /// The isolate's map (`chat_core::live_map`, the same cache the consumer keeps).
    static CACHE: Rc<MapCache> = Rc::new(MapCache::default());
}

/// How long an isolate keeps the map: the grace every move step waits for.
pub fn cache_seconds(env: &Env) -> u32 {
    Config::of(env).map_cache_seconds
}

fn base(env: &Env) -> Result<ShardMap, String> {
    Config::of(env).shard_map.clone()
}

/// The overrides, as the cache reads them.
async fn overrides(env: &Env) -> Result<Vec<Override>, String> {
    let control = database(env, CONTROL).map_err(|e| format!("{e:?}"))?;
    let rows = override_rows(&control)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(rows.iter().map(Override::from).collect())
}

/// The map this isolate routes with.
pub async fn live(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    let cache = CACHE.with(Rc::clone);
    let cache_ms = i64::from(cache_seconds(env)) * 1000;
    let (map, unread) = cache
        .live(now_ms(), &base(env), cache_ms, overrides(env))
        .await
        .map_err(ApiError::Internal)?;
    if let Some(unread) = unread {
        tracing::warn!(error = %unread.error, cached = unread.cached, "the control database is unreadable: routing with the last bucket map this isolate read (or SHARD_MAP); fenced databases refuse what a stale map misroutes");
    }
    Ok(map)
}

/// Reads the map now, failing if the control database cannot be read, and keeps it (the
/// admin steps, which must see the map as it is).
pub async fn refresh(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    let cache = CACHE.with(Rc::clone);
    let cache_ms = i64::from(cache_seconds(env)) * 1000;
    let base = base(env);
    if let Err(e) = &base {
        return Err(ApiError::Internal(e.clone()));
    }
    let control = database(env, CONTROL)?;
    let rows = override_rows(&control).await?;
    let overrides: Vec<Override> = rows.iter().map(Override::from).collect();
    cache
        .refresh(now_ms(), &base, cache_ms, async { Ok(overrides) })
        .await
        .map_err(|e| ApiError::Internal(format!("shard_buckets: {e}")))
}

/// The control database's overrides, with the state of each bucket's move.
pub async fn override_rows(control: &D1Database) -> Result<Vec<OverrideRow>, ApiError> {
    control
        .prepare(SELECT_OVERRIDES)
        .metered_all()
        .await
        .and_then(|r| r.results::<OverrideRow>())
        .map_err(crate::databases::failed(CONTROL))
}

/// The binding holding `user`'s rows.
pub async fn player_binding(env: &Env, user: Uuid) -> Result<String, ApiError> {
    Ok(live(env).await?.binding(&user).to_owned())
}

/// The database holding `user`'s rows, for writing: refused while the player's bucket is
/// moving, since a row written now could miss the copy. (A stale map is caught by the
/// target's fence instead.)
pub async fn player_binding_for_write(env: &Env, user: Uuid) -> Result<String, ApiError> {
    let map = live(env).await?;
    if map.is_moving(&user) {
        return Err(ApiError::BucketMoving);
    }
    Ok(map.binding(&user).to_owned())
}
