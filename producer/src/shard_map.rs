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

use crate::databases::database;
use crate::error::ApiError;
use chat_core::shards::{Override, OverrideRow, ShardMap, CONTROL};
use chat_core::sql::shards::SELECT_OVERRIDES;
use std::cell::RefCell;
use std::rc::Rc;
use uuid::Uuid;
use worker::{D1Database, Env};
use worker_support::clock::now_ms;
use worker_support::env::var;

/// `SHARD_MAP_CACHE_SECONDS` unless set.
const DEFAULT_CACHE_SECONDS: u32 = 5;
/// The longest a map may be cached.
pub const MAX_CACHE_SECONDS: u32 = 300;

thread_local! {
    /// The map and when it goes stale (epoch ms).
    static CACHE: RefCell<Option<(i64, Rc<ShardMap>)>> = const { RefCell::new(None) };
}

/// How long an isolate keeps the map: the grace every move step waits for.
pub fn cache_seconds(env: &Env) -> u32 {
    var(env, "SHARD_MAP_CACHE_SECONDS")
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_CACHE_SECONDS)
        .min(MAX_CACHE_SECONDS)
}

fn base(env: &Env) -> Result<ShardMap, ApiError> {
    let spec = var(env, "SHARD_MAP").unwrap_or_default();
    ShardMap::parse(&spec).map_err(|e| ApiError::Internal(format!("SHARD_MAP: {e}")))
}

/// The map this isolate routes with.
pub async fn live(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    let now = now_ms();
    let cached = CACHE.with_borrow(|c| c.clone());
    if let Some((until, map)) = &cached {
        if now < *until {
            return Ok(map.clone());
        }
    }
    let until = now + i64::from(cache_seconds(env)) * 1000;
    let map = match read(env).await {
        Ok(map) => Rc::new(map),
        Err(e) => {
            let fallback = match cached {
                Some((_, map)) => map,
                None => Rc::new(base(env)?),
            };
            tracing::warn!(error = ?e, "the control database is unreadable: routing with the last bucket map this isolate read (or SHARD_MAP); fenced databases refuse what a stale map misroutes");
            fallback
        }
    };
    CACHE.set(Some((until, map.clone())));
    Ok(map)
}

/// Reads the map now, failing if the control database cannot be read, and keeps it (the
/// admin steps, which must see the map as it is).
pub async fn refresh(env: &Env) -> Result<Rc<ShardMap>, ApiError> {
    let map = Rc::new(read(env).await?);
    let until = now_ms() + i64::from(cache_seconds(env)) * 1000;
    CACHE.set(Some((until, map.clone())));
    Ok(map)
}

async fn read(env: &Env) -> Result<ShardMap, ApiError> {
    let rows = override_rows(&database(env, CONTROL)?).await?;
    let overrides: Vec<Override> = rows.iter().map(Override::from).collect();
    base(env)?
        .with_overrides(&overrides)
        .map_err(|e| ApiError::Internal(format!("shard_buckets: {e}")))
}

/// The control database's overrides, with the state of each bucket's move.
pub async fn override_rows(control: &D1Database) -> Result<Vec<OverrideRow>, ApiError> {
    control
        .prepare(SELECT_OVERRIDES)
        .all()
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
