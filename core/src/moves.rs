//! The steps of a bucket move, decided from the bucket's row in the control database
//! (`shard_buckets`) and the clock: what each step may do, and why it refuses. The admin API
//! (`/admin/shards/*`) runs these decisions and the SQL of `sql::shards`; the native tests
//! run them over SQLite.
//!
//! A move is hold → copy → flip → purge, and a held move may be released instead of flipped:
//!
//! - **hold** fences the bucket in its database, then marks it moving in the map. It is
//!   refused while an earlier move left a copy behind (an old source not purged, or an
//!   abandoned copy), so no database ever holds two stale copies of a bucket.
//! - **copy** waits until every chat isolate has seen the hold (a map cache's lifetime after
//!   it), then upserts the bucket's rows into the target, page by page.
//! - **flip** verifies both sides and maps the bucket to the target.
//! - **purge** waits until every isolate has seen the flip, then deletes the old copy; after
//!   a release it deletes the abandoned copy instead (nothing ever reads it).

use crate::shards::OverrideRow;

/// Margin added to the Workers' map cache before a step that depends on every isolate having
/// seen the map: clocks and cache refreshes are not instantaneous.
pub const GRACE_MARGIN_MS: i64 = 1_000;

/// Why a step is refused: a 409 with a code and a message naming the step to run, and for a
/// wait, how long.
use crate::refusal::Refusal;

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal::conflict(code, message)
}

/// Seconds until `at` (at least 1).
fn seconds_until(now_ms: i64, at: i64) -> u32 {
    u32::try_from(((at - now_ms) + 999) / 1000)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Refuses with `grace_not_elapsed` until `ready_at`, saying why in `why`.
fn wait_until(now_ms: i64, ready_at: i64, why: String) -> Result<(), Refusal> {
    if now_ms >= ready_at {
        return Ok(());
    }
    Err(Refusal {
        retry_after: Some(seconds_until(now_ms, ready_at)),
        ..refuse("grace_not_elapsed", why)
    })
}

/// How long after a hold or a flip every isolate is sure to route with the new map: the
/// longest map cache a Worker may hold, plus a margin.
pub fn grace_ms(map_cache_seconds: u32) -> i64 {
    i64::from(map_cache_seconds) * 1000 + GRACE_MARGIN_MS
}

/// Whether bucket `bucket` (now in `current`) may be held for a move to `to`.
pub fn may_hold(
    bucket: u8,
    row: Option<&OverrideRow>,
    current: &str,
    to: Option<&str>,
) -> Result<(), Refusal> {
    if let Some(row) = row {
        if let Some(from) = &row.moved_from {
            return Err(refuse(
                "purge_pending",
                format!(
                    "bucket {bucket} still has its old copy in {from}: purge it first \
                     (POST /admin/shards/purge, or `chat-admin shards purge --bucket {bucket}`)"
                ),
            ));
        }
        if let (Some(copy), false) = (&row.copy_to, row.moving != 0) {
            return Err(refuse(
                "purge_pending",
                format!(
                    "bucket {bucket} has an abandoned copy in {copy}: purge it first \
                     (POST /admin/shards/purge, or `chat-admin shards purge --bucket {bucket}`)"
                ),
            ));
        }
        if let (Some(copy), Some(to)) = (&row.copy_to, to) {
            if row.moving != 0 && copy != to {
                return Err(refuse(
                    "other_move",
                    format!(
                        "bucket {bucket} is being copied to {copy}, not {to}: release it and purge that copy first"
                    ),
                ));
            }
        }
    }
    if to == Some(current) {
        return Err(refuse(
            "already_there",
            format!("bucket {bucket} is already in {current}"),
        ));
    }
    Ok(())
}

/// Whether a page of bucket `bucket`'s copy to `to` may run at `now_ms`.
pub fn may_copy(
    bucket: u8,
    row: Option<&OverrideRow>,
    to: &str,
    now_ms: i64,
    grace_ms: i64,
) -> Result<(), Refusal> {
    let Some(row) = row.filter(|r| r.moving != 0) else {
        return Err(refuse(
            "not_held",
            format!(
                "hold bucket {bucket} first (POST /admin/shards/hold), so that nothing writes it while it is copied"
            ),
        ));
    };
    if let Some(copy) = row.copy_to.as_deref().filter(|c| *c != to) {
        return Err(refuse(
            "other_move",
            format!(
                "bucket {bucket} is being copied to {copy}, not {to}: release it and purge that copy first"
            ),
        ));
    }
    if row.binding == to {
        return Err(refuse(
            "already_there",
            format!("bucket {bucket} is already in {to}"),
        ));
    }
    wait_until(
        now_ms,
        row.held_at.unwrap_or(0) + grace_ms,
        format!("bucket {bucket} was held less than the Workers' map cache ago: some chat isolate may not have seen the hold yet"),
    )
}

/// What a flip of bucket `bucket` to `to` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flip {
    /// Verify both sides, and if they agree map the bucket to `to`, copied from `from`.
    Verify { from: String },
    /// The map already says `to` (an earlier flip whose last step did not finish): make sure
    /// `to` no longer refuses the bucket's writes, and answer as that flip did.
    Done,
}

pub fn flip(bucket: u8, row: Option<&OverrideRow>, to: &str) -> Result<Flip, Refusal> {
    let Some(row) = row else {
        return Err(refuse(
            "not_held",
            format!("only a held bucket can be flipped: hold bucket {bucket} and copy it first"),
        ));
    };
    if row.moving == 0 {
        return if row.binding == to && row.moved_from.is_some() {
            Ok(Flip::Done)
        } else {
            Err(refuse(
                "not_held",
                format!(
                    "only a held bucket can be flipped: hold bucket {bucket} and copy it first"
                ),
            ))
        };
    }
    if row.copy_to.as_deref() != Some(to) {
        return Err(refuse(
            "not_copied",
            format!("copy bucket {bucket} to {to} first (POST /admin/shards/copy)"),
        ));
    }
    Ok(Flip::Verify {
        from: row.binding.clone(),
    })
}

/// Which copy of a bucket a purge deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// The old source of a flipped move.
    Source(String),
    /// The copy of a released move, which nothing reads.
    Abandoned(String),
    /// Nothing is left to purge.
    Nothing,
}

pub fn purge(
    bucket: u8,
    row: Option<&OverrideRow>,
    now_ms: i64,
    grace_ms: i64,
) -> Result<Purge, Refusal> {
    let Some(row) = row else {
        return Ok(Purge::Nothing);
    };
    if row.moving != 0 {
        return Err(refuse(
            "still_moving",
            format!(
                "bucket {bucket} is held for a move: flip it (POST /admin/shards/flip) or release it (POST /admin/shards/release) first"
            ),
        ));
    }
    if let Some(from) = &row.moved_from {
        if from == &row.binding {
            return Err(refuse(
                "still_in_use",
                format!("{from} is where bucket {bucket} is read and written"),
            ));
        }
        wait_until(
            now_ms,
            row.flipped_at.unwrap_or(0) + grace_ms,
            format!("bucket {bucket} was flipped less than the Workers' map cache ago: some chat isolate may still read {from}"),
        )?;
        return Ok(Purge::Source(from.clone()));
    }
    match &row.copy_to {
        Some(copy) if copy != &row.binding => Ok(Purge::Abandoned(copy.clone())),
        _ => Ok(Purge::Nothing),
    }
}

/// How recent the consumer's report of its databases must be for a move to trust it.
pub const REPORT_FRESH_MS: i64 = 60_000;

/// A row of `consumer_databases`: what the consumer reported of one binding, in answer to
/// the probe sent at `reported_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ConsumerReport {
    pub binding: String,
    pub migration: Option<String>,
    pub reported_at: i64,
}

/// What the consumer's reports say of a move to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerCheck {
    /// The consumer answered a recent probe and reaches `to`, fully migrated.
    Reaches,
    /// No recent answer: send a probe, and ask the caller to try again shortly.
    Probe(Refusal),
    /// The consumer answered, and cannot take `to`'s turns.
    Refused(Refusal),
}

pub fn consumer_check(reports: &[ConsumerReport], to: &str, now_ms: i64) -> ConsumerCheck {
    let last = reports.iter().map(|r| r.reported_at).max();
    if last.is_none_or(|at| at < now_ms - REPORT_FRESH_MS) {
        return ConsumerCheck::Probe(Refusal {
            retry_after: Some(2),
            ..refuse(
                "consumer_unconfirmed",
                format!(
                    "asked the consumer (over the turn queue) to confirm that it can write {to}; try again in a few seconds"
                ),
            )
        });
    }
    match reports.iter().find(|r| r.binding == to) {
        Some(r) if Some(r.reported_at) == last => {
            if r.migration.as_deref() == Some(crate::sql::LATEST_MIGRATION) {
                ConsumerCheck::Reaches
            } else {
                // The caller has seen `to` at the newest migration itself (the admin API
                // checks first), so this answer predates the migration: ask again. A
                // consumer bound to another database under that name keeps answering so,
                // and the caller gives up with this message.
                ConsumerCheck::Probe(Refusal {
                    retry_after: Some(2),
                    ..refuse(
                        "consumer_unconfirmed",
                        format!(
                            "the consumer last saw {to} at {}, not {}; asked it to look again: if this lasts, the consumer's {to} is not the chat Worker's database",
                            r.migration.as_deref().unwrap_or("no migration"),
                            crate::sql::LATEST_MIGRATION
                        ),
                    )
                })
            }
        }
        _ => ConsumerCheck::Refused(refuse(
            "consumer_cannot_reach",
            format!(
                "the consumer Worker has no binding {to}: add it to consumer/wrangler.toml (the same binding and id as the chat Worker's) and deploy the consumer"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(binding: &str) -> OverrideRow {
        OverrideRow {
            bucket: 7,
            binding: binding.into(),
            ..OverrideRow::default()
        }
    }

    const G: i64 = 6_000;

    #[test]
    fn a_whole_move_goes_step_by_step() {
        assert_eq!(may_hold(7, None, "DB_0", Some("DB_1")), Ok(()));
        let held = OverrideRow {
            moving: 1,
            held_at: Some(1_000),
            ..row("DB_0")
        };
        let early = may_copy(7, Some(&held), "DB_1", 1_000 + G - 1, G).unwrap_err();
        assert_eq!(
            (early.code, early.retry_after),
            ("grace_not_elapsed", Some(1))
        );
        assert_eq!(may_copy(7, Some(&held), "DB_1", 1_000 + G, G), Ok(()));
        assert_eq!(flip(7, Some(&held), "DB_1").unwrap_err().code, "not_copied");
        let copying = OverrideRow {
            copy_to: Some("DB_1".into()),
            ..held.clone()
        };
        assert_eq!(
            flip(7, Some(&copying), "DB_1"),
            Ok(Flip::Verify {
                from: "DB_0".into()
            })
        );
        assert_eq!(
            purge(7, Some(&copying), 0, G).unwrap_err().code,
            "still_moving"
        );
        let flipped = OverrideRow {
            moved_from: Some("DB_0".into()),
            flipped_at: Some(50_000),
            ..row("DB_1")
        };
        assert_eq!(flip(7, Some(&flipped), "DB_1"), Ok(Flip::Done));
        assert_eq!(
            purge(7, Some(&flipped), 50_000, G).unwrap_err().retry_after,
            Some(6)
        );
        assert_eq!(
            purge(7, Some(&flipped), 50_000 + G, G),
            Ok(Purge::Source("DB_0".into()))
        );
        let again = may_hold(7, Some(&flipped), "DB_1", Some("DB_2")).unwrap_err();
        assert_eq!(again.code, "purge_pending");
        assert!(again.message.contains("DB_0") && again.message.contains("purge"));
        assert_eq!(purge(7, Some(&row("DB_1")), 0, G), Ok(Purge::Nothing));
        assert_eq!(purge(7, None, 0, G), Ok(Purge::Nothing));
    }

    #[test]
    fn a_released_move_leaves_a_copy_to_purge_before_the_next() {
        let released = OverrideRow {
            copy_to: Some("DB_1".into()),
            ..row("DB_0")
        };
        let refused = may_hold(7, Some(&released), "DB_0", Some("DB_1")).unwrap_err();
        assert_eq!(refused.code, "purge_pending");
        assert!(refused.message.contains("abandoned copy in DB_1"));
        assert_eq!(
            purge(7, Some(&released), 0, G),
            Ok(Purge::Abandoned("DB_1".into()))
        );
        assert_eq!(
            may_hold(7, Some(&row("DB_0")), "DB_0", Some("DB_1")),
            Ok(())
        );
    }

    #[test]
    fn steps_refuse_what_does_not_fit() {
        assert_eq!(
            may_hold(7, None, "DB_0", Some("DB_0")).unwrap_err().code,
            "already_there"
        );
        assert_eq!(
            may_copy(7, None, "DB_1", 0, G).unwrap_err().code,
            "not_held"
        );
        let elsewhere = OverrideRow {
            moving: 1,
            held_at: Some(0),
            copy_to: Some("DB_2".into()),
            ..row("DB_0")
        };
        assert_eq!(
            may_copy(7, Some(&elsewhere), "DB_1", G, G)
                .unwrap_err()
                .code,
            "other_move"
        );
        assert_eq!(
            may_hold(7, Some(&elsewhere), "DB_0", Some("DB_1"))
                .unwrap_err()
                .code,
            "other_move"
        );
        assert_eq!(
            may_hold(7, Some(&elsewhere), "DB_0", Some("DB_2")),
            Ok(()),
            "holding again for the same move is safe"
        );
        assert_eq!(flip(7, None, "DB_1").unwrap_err().code, "not_held");
        assert_eq!(
            flip(7, Some(&row("DB_0")), "DB_1").unwrap_err().code,
            "not_held"
        );
        assert_eq!(grace_ms(5), 6_000);
    }

    #[test]
    fn the_consumer_must_have_answered_lately_and_reach_the_target() {
        let report = |b: &str, m: Option<&str>, at| ConsumerReport {
            binding: b.into(),
            migration: m.map(str::to_owned),
            reported_at: at,
        };
        let now = 1_000_000;
        let latest = Some(crate::sql::LATEST_MIGRATION);
        assert!(matches!(
            consumer_check(&[], "DB_1", now),
            ConsumerCheck::Probe(_)
        ));
        let stale = [report("DB_1", latest, now - REPORT_FRESH_MS - 1)];
        assert!(matches!(
            consumer_check(&stale, "DB_1", now),
            ConsumerCheck::Probe(_)
        ));
        let fresh = [
            report("DB_0", latest, now - 5),
            report("DB_1", latest, now - 5),
        ];
        assert_eq!(consumer_check(&fresh, "DB_1", now), ConsumerCheck::Reaches);
        // DB_2 was reported by an older probe only: the consumer lost that binding.
        let lost = [
            report("DB_0", latest, now - 5),
            report("DB_2", latest, now - 90_000),
        ];
        match consumer_check(&lost, "DB_2", now) {
            ConsumerCheck::Refused(r) => assert_eq!(r.code, "consumer_cannot_reach"),
            other => panic!("{other:?}"),
        }
        // An answer from before the target's newest migration: asked again.
        let old = [report("DB_1", Some("0005_shards.sql"), now - 5)];
        match consumer_check(&old, "DB_1", now) {
            ConsumerCheck::Probe(r) => assert_eq!(r.code, "consumer_unconfirmed"),
            other => panic!("{other:?}"),
        }
    }
}
