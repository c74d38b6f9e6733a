//! The steps of a bucket move (hold → copy → verify → flip → purge, or release) as flows
//! over one small trait, [`MovePorts`]: the chat Worker's admin API implements it over D1
//! (`producer/src/admin/shards.rs`), the native tests over SQLite. What each step may do is
//! decided by [`crate::moves`]; the order of the writes, which is what keeps every player
//! counted once while writers hold stale maps, is written here once:
//!
//! - **hold** fences the bucket in its database first, then marks it moving in the map;
//! - **copy** (once every isolate has seen the hold) checks on its first page that the
//!   source still refuses the bucket's writes and notes the copy, then copies one page;
//! - **flip** verifies both sides, fences the source for good, maps the bucket to the
//!   target, and only then lets the target take the bucket's writes;
//! - **purge** (once every isolate has seen the flip) deletes the old copy page by page;
//! - **release** gives up a held move: the bucket's writes go where it is.
//!
//! Each database's leaderboard table (`sql::leaders`) follows what it holds: the flip
//! rebuilds it in both databases, the purge in the one it emptied, once done.

use crate::moves::{self, Flip, Purge};
use crate::refusal::Refusal;
use crate::shards::{BucketSummary, CopyCursor, OverrideRow, ShardMap, COPIED_TABLES};
use std::rc::Rc;

/// A change to a bucket's row in the control database's map (`sql::shards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapChange<'a> {
    /// Moving, where it is (`HOLD_BUCKET`).
    Hold { binding: &'a str },
    /// A copy to `to` started (`COPY_STARTED`).
    CopyStarted { to: &'a str },
    /// Now in `to`, copied from `from` (`FLIP_BUCKET`).
    Flip { to: &'a str, from: &'a str },
    /// Not moving any more, where it is (`RELEASE_BUCKET`).
    Release,
    /// The old source is purged (`PURGED_SOURCE`).
    PurgedSource,
    /// The abandoned copy is purged (`PURGED_COPY`).
    PurgedCopy,
}

/// What the steps need from the world.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait MovePorts {
    /// A refusal is one of its errors.
    type Error: From<Refusal>;
    fn now_ms(&self) -> i64;
    /// How long after a hold or a flip every isolate routes with the new map.
    fn grace_ms(&self) -> i64;
    /// The map as the control database has it now.
    async fn map(&self) -> Result<Rc<ShardMap>, Self::Error>;
    /// The bucket's row in the control database, if it has one.
    async fn row(&self, bucket: u8) -> Result<Option<OverrideRow>, Self::Error>;
    async fn change_map(
        &self,
        bucket: u8,
        change: MapChange<'_>,
        at: i64,
    ) -> Result<(), Self::Error>;
    /// Fences `bucket` in `binding` (`moving` or `moved`), or lifts its fence (`None`).
    async fn fence(
        &self,
        binding: &str,
        bucket: u8,
        reason: Option<&str>,
        at: i64,
    ) -> Result<(), Self::Error>;
    /// Whether `binding` refuses `bucket`'s writes.
    async fn fenced(&self, binding: &str, bucket: u8) -> Result<bool, Self::Error>;
    /// Refuses a target that is not bound, not fully migrated, or not reached by the
    /// consumer (asking the consumer when it has not said lately).
    async fn check_target(&self, to: &str) -> Result<(), Self::Error>;
    /// Upserts into `to` the rows of `bucket` in table `cursor.table` of `from` after the
    /// cursor, at most `limit`: how many, and the last (user, key) copied.
    async fn copy_page(
        &self,
        from: &str,
        to: &str,
        bucket: u8,
        cursor: &CopyCursor,
        limit: u32,
    ) -> Result<(usize, Option<(String, String)>), Self::Error>;
    /// What `binding` holds of `bucket`.
    async fn summary(&self, binding: &str, bucket: u8) -> Result<BucketSummary, Self::Error>;
    /// Deletes a page of at most `limit` rows of `bucket` from `binding`, tables in reverse
    /// foreign-key order; how many went (0 once the bucket is gone).
    async fn purge_page(&self, binding: &str, bucket: u8, limit: u32)
        -> Result<usize, Self::Error>;
    /// Refills `binding`'s leaderboard table from what it holds (`sql::leaders::REBUILD`).
    async fn rebuild_leaders(&self, binding: &str) -> Result<(), Self::Error>;
}

/// A hold's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub binding: String,
    pub held_at: i64,
    /// When the copy may start.
    pub copy_after: i64,
}

/// Fences `bucket` where it is, then marks it moving (checking `to` first, when given).
pub async fn hold<P: MovePorts>(ports: &P, bucket: u8, to: Option<&str>) -> Result<Held, P::Error> {
    let map = ports.map().await?;
    let current = map.binding_of_bucket(bucket).to_owned();
    let row = ports.row(bucket).await?;
    moves::may_hold(bucket, row.as_ref(), &current, to)?;
    if let Some(to) = to {
        ports.check_target(to).await?;
    }
    // The fence first: once the hold answers, the source refuses the bucket's writes from
    // every writer, whatever map it holds.
    let now = ports.now_ms();
    ports.fence(&current, bucket, Some("moving"), now).await?;
    ports
        .change_map(bucket, MapChange::Hold { binding: &current }, now)
        .await?;
    ports.map().await?;
    // Holding a held bucket again keeps its first hold time.
    let held_at = row
        .filter(|r| r.moving != 0)
        .and_then(|r| r.held_at)
        .unwrap_or(now);
    Ok(Held {
        binding: current,
        held_at,
        copy_after: held_at + ports.grace_ms(),
    })
}

/// A copy step's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub from: String,
    /// The table of the page.
    pub table: usize,
    pub copied: usize,
    /// Where to go on; `None` when the bucket is copied.
    pub next: Option<CopyCursor>,
}

/// Copies one page of `bucket` to `to`, from `cursor` (the first page when `None`).
pub async fn copy<P: MovePorts>(
    ports: &P,
    bucket: u8,
    to: &str,
    cursor: Option<&CopyCursor>,
    limit: u32,
) -> Result<Copied, P::Error> {
    let map = ports.map().await?;
    let row = ports.row(bucket).await?;
    moves::may_copy(bucket, row.as_ref(), to, ports.now_ms(), ports.grace_ms())?;
    let current = map.binding_of_bucket(bucket).to_owned();
    if cursor.is_none() {
        // The first page: the target is checked again, the source must refuse the bucket's
        // writes, and the copy is noted, so that a release leaves it to be purged.
        ports.check_target(to).await?;
        if !ports.fenced(&current, bucket).await? {
            return Err(Refusal::conflict(
                "not_fenced",
                format!(
                    "{current} does not refuse bucket {bucket}'s writes: hold the bucket again"
                ),
            )
            .into());
        }
        ports
            .change_map(bucket, MapChange::CopyStarted { to }, ports.now_ms())
            .await?;
    }
    let cursor = cursor.cloned().unwrap_or_else(|| CopyCursor::start(bucket));
    let (copied, last) = ports
        .copy_page(&current, to, bucket, &cursor, limit)
        .await?;
    debug_assert!(cursor.table < COPIED_TABLES);
    Ok(Copied {
        from: current,
        table: cursor.table,
        copied,
        next: cursor.after(bucket, copied, limit as usize, last),
    })
}

/// Both sides of a move, and whether they agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub from: String,
    pub source: BucketSummary,
    pub target: BucketSummary,
}

/// What the bucket's database and `to` hold of it.
pub async fn verify<P: MovePorts>(ports: &P, bucket: u8, to: &str) -> Result<Verified, P::Error> {
    let map = ports.map().await?;
    let current = map.binding_of_bucket(bucket).to_owned();
    if current == to {
        return Err(Refusal::conflict(
            "already_there",
            format!("bucket {bucket} is already in {to}"),
        )
        .into());
    }
    Ok(Verified {
        source: ports.summary(&current, bucket).await?,
        target: ports.summary(to, bucket).await?,
        from: current,
    })
}

/// A flip's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flipped {
    pub moved_from: String,
    /// What was moved, and when the purge may start (`None` when an earlier flip had
    /// written the map already, and this one only finished it).
    pub summary: Option<BucketSummary>,
    pub purge_after: Option<i64>,
}

/// Verifies both sides, then maps `bucket` to `to`.
pub async fn flip<P: MovePorts>(ports: &P, bucket: u8, to: &str) -> Result<Flipped, P::Error> {
    let row = ports.row(bucket).await?;
    let from = match moves::flip(bucket, row.as_ref(), to)? {
        Flip::Done => {
            // An earlier flip wrote the map; make sure its last steps, lifting the target's
            // fence and the leaderboards, happened too.
            ports.fence(to, bucket, None, ports.now_ms()).await?;
            if let Some(from) = row.as_ref().and_then(|r| r.moved_from.as_deref()) {
                ports.rebuild_leaders(from).await?;
            }
            ports.rebuild_leaders(to).await?;
            return Ok(Flipped {
                moved_from: row.and_then(|r| r.moved_from).unwrap_or_default(),
                summary: None,
                purge_after: None,
            });
        }
        Flip::Verify { from } => from,
    };
    let source = ports.summary(&from, bucket).await?;
    let copied = ports.summary(to, bucket).await?;
    if source != copied {
        return Err(Refusal::conflict(
            "copy_incomplete",
            format!("the copy differs from the source: {copied:?} against {source:?}; copy again"),
        )
        .into());
    }
    ports
        .fence(&from, bucket, Some("moved"), ports.now_ms())
        .await?;
    ports
        .change_map(bucket, MapChange::Flip { to, from: &from }, ports.now_ms())
        .await?;
    // Last: the target takes the bucket's writes. Until then its turns wait; if this fails,
    // the flip is run again (`Flip::Done`).
    ports.fence(to, bucket, None, ports.now_ms()).await?;
    // The source no longer counts the bucket's players; the target counts them now.
    ports.rebuild_leaders(&from).await?;
    ports.rebuild_leaders(to).await?;
    ports.map().await?;
    Ok(Flipped {
        moved_from: from,
        summary: Some(source),
        purge_after: Some(ports.now_ms() + ports.grace_ms()),
    })
}

/// A purge step's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The database purged, and which copy it held (`source` or `abandoned copy`); `None`
    /// when there was nothing to purge.
    pub from: Option<(String, &'static str)>,
    pub deleted: usize,
    pub done: bool,
}

/// Deletes one page of the old copy of `bucket`.
pub async fn purge<P: MovePorts>(ports: &P, bucket: u8, limit: u32) -> Result<Purged, P::Error> {
    let row = ports.row(bucket).await?;
    let (from, done_change, kind) =
        match moves::purge(bucket, row.as_ref(), ports.now_ms(), ports.grace_ms())? {
            Purge::Nothing => {
                return Ok(Purged {
                    from: None,
                    deleted: 0,
                    done: true,
                })
            }
            Purge::Source(from) => (from, MapChange::PurgedSource, "source"),
            Purge::Abandoned(copy) => (copy, MapChange::PurgedCopy, "abandoned copy"),
        };
    let deleted = ports.purge_page(&from, bucket, limit).await?;
    let done = deleted == 0;
    if done {
        ports.rebuild_leaders(&from).await?;
        ports
            .change_map(bucket, done_change, ports.now_ms())
            .await?;
    }
    Ok(Purged {
        from: Some((from, kind)),
        deleted,
        done,
    })
}

/// A release's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub binding: String,
    /// A copy the move had started, left to `purge`.
    pub abandoned: Option<String>,
}

/// Gives up a held move: the bucket's writes go where it is again.
pub async fn release<P: MovePorts>(ports: &P, bucket: u8) -> Result<Released, P::Error> {
    ports
        .change_map(bucket, MapChange::Release, ports.now_ms())
        .await?;
    let map = ports.map().await?;
    let binding = map.binding_of_bucket(bucket).to_owned();
    // The bucket stays where it is: that database takes its writes again.
    ports.fence(&binding, bucket, None, ports.now_ms()).await?;
    let abandoned = ports.row(bucket).await?.and_then(|r| r.copy_to);
    Ok(Released { binding, abandoned })
}
