//! Archive jobs: the Cron Trigger sends one per database to the `chat-archive` queue, and
//! each delivery runs pages of that database until its budget is spent, then sends the
//! rest as a new job. A Worker invocation has a bounded number of subrequests (each object
//! costs two D1 calls and two R2 calls), so one invocation cannot archive a day of a large
//! database; the queue runs the databases side by side, and a job stopped anywhere is run
//! again whole (every step repeats safely).

use super::cursor::ArchiveCursor;
use super::ports::{ArchiveLedgers, ObjectStore};
use super::run::{run_page, ArchiveFailure, Limits, PageReport, Plan, Step};
use serde::{Deserialize, Serialize};

/// A day, in ms.
pub const DAY_MS: i64 = 86_400_000;

/// One database's share of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    pub database: String,
    /// Turns older than this (ms) are archived.
    pub cutoff: i64,
    /// Where the job goes on (`POST /admin/archive`'s cursor); `None`: the start.
    pub cursor: Option<String>,
}

/// The cutoff of a scheduled run: `hot_days` before now, at the start of that UTC day, so
/// that the triggers of one day archive the same range, and a session gets at most one
/// object a day. `hot_days = 0` archives everything (for tests and operators).
pub fn scheduled_cutoff(now_ms: i64, hot_days: u32) -> i64 {
    if hot_days == 0 {
        return now_ms;
    }
    let at = now_ms - i64::from(hot_days) * DAY_MS;
    at - at.rem_euclid(DAY_MS)
}

/// One job per database of the plan.
pub fn jobs(plan: &Plan, cutoff: i64) -> Vec<Job> {
    plan.databases
        .iter()
        .map(|(database, _)| Job {
            database: database.clone(),
            cutoff,
            cursor: None,
        })
        .collect()
}

/// What a job did, and the job that goes on from where it stopped (`None`: its database is
/// done, or was skipped: the next trigger tries it again).
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub pages: Vec<PageReport>,
    pub next: Option<Job>,
}

/// Runs at most `pages` pages of the job's database.
pub async fn run_job<L: ArchiveLedgers, S: ObjectStore>(
    ledgers: &L,
    store: &S,
    plan: &Plan,
    job: &Job,
    now_ms: i64,
    limits: Limits,
    pages: usize,
) -> Result<JobOutcome, ArchiveFailure> {
    let bindings = plan.bindings();
    let mut cursor = match &job.cursor {
        Some(c) => ArchiveCursor::parse(c, &bindings),
        None => Some(ArchiveCursor {
            database: job.database.clone(),
            after: None,
        }),
    };
    let mut outcome = JobOutcome::default();
    for _ in 0..pages {
        let Some(at) = cursor.as_ref().filter(|c| c.database == job.database) else {
            return Ok(outcome);
        };
        let step = Step {
            cursor: Some(at),
            cutoff: job.cutoff,
            dry_run: false,
            now_ms,
            limits,
        };
        let page = run_page(ledgers, store, plan, &step).await?;
        cursor = page
            .next_cursor
            .as_deref()
            .and_then(|c| ArchiveCursor::parse(c, &bindings));
        outcome.pages.push(page);
    }
    outcome.next = cursor.filter(|c| c.database == job.database).map(|c| Job {
        cursor: Some(c.encode()),
        ..job.clone()
    });
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_cutoff_is_the_start_of_a_day() {
        let now = 1_700_000_000_000;
        let cut = scheduled_cutoff(now, 30);
        assert_eq!(cut % DAY_MS, 0);
        assert!(now - 31 * DAY_MS < cut && cut <= now - 30 * DAY_MS);
        assert_eq!(scheduled_cutoff(now, 0), now);
        let job = Job {
            database: "DB_1".into(),
            cutoff: cut,
            cursor: None,
        };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        assert!(serde_json::from_str::<Job>("{\"database\":1}").is_err());
    }
}
