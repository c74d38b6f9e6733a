//! A replay of dead letters, as `POST /admin/dead-letters/replay` runs it, over small traits:
//! the chat Worker implements them over D1 and the turn queue, the native tests over SQLite
//! and an in-memory queue (so the randomized consumer run replays with this very flow).
//!
//! 1. Judge every letter against what its player's database holds now, and the archive for
//!    a turn the database no longer holds (`dead_letter::verdict`): would apply, already
//!    applied, conflict, or invalid. A payload that is not a
//!    record has no player, and is invalid whatever is stored.
//! 2. A real run (not a dry run) re-queues what would apply, in order, and marks as replayed
//!    exactly the letters whose payload the queue took: a send that stops part way leaves
//!    the rest pending, and says so.

use crate::batch::StoredTurn;
use crate::dead_letter::{verdict, Verdict};
use crate::record::TurnRecord;
use crate::shards::ShardMap;
use std::collections::HashMap;

/// One dead letter, as the archive holds it.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    pub id: &'a str,
    pub turn_id: Option<&'a str>,
    pub payload: Option<&'a str>,
}

/// The counts of one replay call, added to its run's row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayCounts {
    pub letters: usize,
    pub requeued: usize,
    pub would_apply: usize,
    pub already_applied: usize,
    pub conflicts: usize,
    pub invalid: usize,
}

/// What the replay did with one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub verdict: Verdict,
    pub reason: String,
    pub requeued: bool,
}

/// A replay call's result.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub counts: ReplayCounts,
    /// One per letter, in order.
    pub letters: Vec<Judged>,
    /// Why the re-queue stopped part way, if it did.
    pub failure: Option<String>,
}

/// What a replay needs from the world.
#[allow(async_fn_in_trait)] // The Workers are single-threaded; no Send bound is wanted.
pub trait ReplayPorts {
    type Error;
    /// What database `binding` stores under these turn ids.
    async fn stored_turns(
        &self,
        binding: &str,
        turn_ids: &[&str],
    ) -> Result<Vec<StoredTurn>, Self::Error>;
    /// The turns the archive holds of those `lookups` name (`archive::stored_turns`): a
    /// letter whose turn was stored and then archived is already applied.
    async fn archived_turns(
        &self,
        lookups: &[crate::archive::Lookup],
    ) -> Result<Vec<StoredTurn>, Self::Error>;
    /// Puts the payloads on the turn queue in order; on failure, how many it took.
    async fn requeue(&self, payloads: &[String]) -> Result<(), (usize, String)>;
    /// Marks the letters `ids` replayed (counting the replay).
    async fn mark_replayed(&self, ids: &[String]) -> Result<(), Self::Error>;
}

/// Replays `letters` (a dry run only judges them), routing each to its player's database
/// with `map`.
pub async fn replay<P: ReplayPorts>(
    letters: &[Letter<'_>],
    map: &ShardMap,
    dry_run: bool,
    ports: &P,
) -> Result<Replayed, P::Error> {
    let mut by_db: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in letters {
        let record = l.payload.and_then(|p| TurnRecord::decode(p).ok());
        if let (Some(turn), Some(record)) = (l.turn_id, record) {
            by_db
                .entry(map.binding(&record.user.id))
                .or_default()
                .push(turn);
        }
    }
    let mut stored = Vec::new();
    for (binding, turn_ids) in by_db {
        stored.extend(ports.stored_turns(binding, &turn_ids).await?);
    }
    // A turn D1 no longer holds may be in the archive: look there before calling it new.
    let lookups: Vec<crate::archive::Lookup> = letters
        .iter()
        .filter(|l| l.turn_id.is_some_and(|t| !stored.iter().any(|s| s.id == t)))
        .filter_map(|l| l.payload.and_then(|p| TurnRecord::decode(p).ok()))
        .map(|r| crate::archive::Lookup {
            user_id: r.user.id.to_string(),
            session_id: r.session_id.to_string(),
            at: r.user_message.created_at,
        })
        .collect();
    if !lookups.is_empty() {
        stored.extend(ports.archived_turns(&lookups).await?);
    }
    let stored: HashMap<&str, &StoredTurn> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut counts = ReplayCounts {
        letters: letters.len(),
        ..ReplayCounts::default()
    };
    let mut judged: Vec<Judged> = letters
        .iter()
        .map(|l| {
            let (verdict, reason) = verdict(
                l.payload.unwrap_or_default(),
                l.turn_id.and_then(|t| stored.get(t).copied()),
            );
            match verdict {
                Verdict::WouldApply => counts.would_apply += 1,
                Verdict::AlreadyApplied => counts.already_applied += 1,
                Verdict::Conflict => counts.conflicts += 1,
                Verdict::Invalid => counts.invalid += 1,
            }
            Judged {
                verdict,
                reason,
                requeued: false,
            }
        })
        .collect();

    let mut failure = None;
    if !dry_run {
        let chosen: Vec<usize> = (0..letters.len())
            .filter(|&i| judged[i].verdict.replayable())
            .collect();
        let payloads: Vec<String> = chosen
            .iter()
            .map(|&i| letters[i].payload.unwrap_or_default().to_owned())
            .collect();
        let sent = match ports.requeue(&payloads).await {
            Ok(()) => payloads.len(),
            Err((sent, e)) => {
                failure = Some(e);
                sent
            }
        };
        let ids: Vec<String> = chosen[..sent]
            .iter()
            .map(|&i| letters[i].id.to_owned())
            .collect();
        if !ids.is_empty() {
            ports.mark_replayed(&ids).await?;
        }
        chosen[..sent]
            .iter()
            .for_each(|&i| judged[i].requeued = true);
        counts.requeued = sent;
    }
    Ok(Replayed {
        counts,
        letters: judged,
        failure,
    })
}
