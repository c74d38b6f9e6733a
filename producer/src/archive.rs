//! The archive on this Worker: the archiver's ports over D1 and R2, its Cron Trigger, the
//! operators' `POST /admin/archive` and `GET /admin/players/{userId}/archived-events`, and
//! a session's history read across both tiers. The flows are `chat_core::archive`'s.

use crate::body;
use crate::databases::database;
use crate::error::ApiError;
use crate::services::Services;
use chat_core::admin::MAX_ADMIN_BODY_BYTES;
use chat_core::archive::cursor::ArchiveRequest;
use chat_core::archive::format::{session_prefix, user_prefix, MessageRow, SessionRow};
use chat_core::archive::history::{candidates, merge_page};
use chat_core::archive::job;
use chat_core::archive::ports::{
    ArchiveLedgers, Commit, ObjectReader, OldTurns, PartCommit, SessionRef,
};
use chat_core::archive::read_part;
use chat_core::archive::run::{run_page, ArchiveFailure, Limits, PageReport, Plan, Step};
use chat_core::sql::archive as sql;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request, Response};
use worker_support::clock::now_ms;
use worker_support::d1::{metered_batch, Metered};
use worker_support::r2::R2Store;

/// The players' databases, as the archiver uses them.
pub struct D1Ledgers<'a> {
    pub env: &'a Env,
}

fn failed(db: &str) -> impl Fn(worker::Error) -> String + '_ {
    move |e| format!("{db}: {e}")
}

fn api(e: ApiError) -> String {
    format!("{:?}", e)
}

impl ArchiveLedgers for D1Ledgers<'_> {
    async fn sessions(
        &self,
        db: &str,
        after: &(String, String),
        cutoff: i64,
        buckets: &[String],
        limit: usize,
    ) -> Result<Vec<SessionRef>, String> {
        let d1 = database(self.env, db).map_err(api)?;
        let buckets = serde_json::to_string(buckets).expect("strings serialize");
        d1.prepare(sql::SESSIONS_TO_ARCHIVE)
            .bind(&[
                after.0.as_str().into(),
                after.1.as_str().into(),
                JsValue::from_f64(cutoff as f64),
                buckets.into(),
                JsValue::from_f64(limit as f64),
            ])
            .map_err(failed(db))?
            .metered_all()
            .await
            .map_err(failed(db))?
            .results()
            .map_err(failed(db))
    }

    async fn old_turns(
        &self,
        db: &str,
        session: &SessionRef,
        cutoff: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<OldTurns, String> {
        let d1 = database(self.env, db).map_err(api)?;
        let (at, id) = after.unzip();
        let user: JsValue = session.user_id.as_str().into();
        let id_of_session: JsValue = session.session_id.as_str().into();
        let cutoff = JsValue::from_f64(cutoff as f64);
        let params = [
            user.clone(),
            id_of_session.clone(),
            cutoff.clone(),
            JsValue::from_f64(limit as f64),
            at.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64)),
            id.map_or(JsValue::NULL, |i| i.into()),
        ];
        // One batch: the messages, the events and the session's row, in one snapshot.
        let statements = vec![
            d1.prepare(sql::OLD_TURN_MESSAGES).bind(&params),
            d1.prepare(sql::OLD_TURN_EVENTS).bind(&params),
            d1.prepare(sql::SESSION_TAIL)
                .bind(&[user, id_of_session, cutoff]),
        ]
        .into_iter()
        .collect::<worker::Result<Vec<_>>>()
        .map_err(failed(db))?;
        let results = metered_batch(&d1, statements).await.map_err(failed(db))?;
        // Every column named (no `flatten`: D1's numbers reach serde as floats, which a
        // flattened struct's buffering would not turn into integers).
        #[derive(Deserialize)]
        struct Tail {
            id: String,
            user_id: String,
            character_type: String,
            username: String,
            locale: String,
            created_at: i64,
            ended_at: Option<i64>,
            messages: usize,
        }
        let tail: Option<Tail> = results[2]
            .results::<Tail>()
            .map_err(failed(db))?
            .into_iter()
            .next();
        let (session, session_messages) = tail
            .map(|t| {
                let row = SessionRow {
                    id: t.id,
                    user_id: t.user_id,
                    character_type: t.character_type,
                    username: t.username,
                    locale: t.locale,
                    created_at: t.created_at,
                    ended_at: t.ended_at,
                };
                (row, t.messages)
            })
            .unzip();
        Ok(OldTurns {
            messages: results[0].results().map_err(failed(db))?,
            events: results[1].results().map_err(failed(db))?,
            session,
            session_messages: session_messages.unwrap_or(0),
        })
    }

    async fn commit(&self, db: &str, part: &PartCommit) -> Result<Commit, String> {
        let json = serde_json::to_string(part).expect("a part serializes");
        chat_core::d1_limits::check_value("an archive commit", json.len())?;
        let d1 = database(self.env, db).map_err(api)?;
        let param = [JsValue::from_str(&json)];
        let statements = sql::COMMIT
            .iter()
            .map(|s| d1.prepare(*s).bind(&param))
            .collect::<worker::Result<Vec<_>>>()
            .map_err(failed(db))?;
        let results = metered_batch(&d1, statements).await.map_err(failed(db))?;
        #[derive(Deserialize)]
        struct Committed {
            committed: i64,
        }
        let committed = results[sql::COMMITTED_STATEMENT]
            .results::<Committed>()
            .map_err(failed(db))?
            .first()
            .is_some_and(|c| c.committed == 1);
        Ok(if committed {
            Commit::Committed
        } else {
            Commit::Lost
        })
    }
}

/// How much one page does on this Worker: within an invocation's subrequests (each object
/// is two D1 batches, its write and its read back).
const LIMITS: Limits = Limits {
    sessions: 50,
    turns: 200,
    parts: 60,
};

async fn page(
    env: &Env,
    plan: &Plan,
    request: &ArchiveRequest,
    now: i64,
) -> Result<PageReport, ApiError> {
    let store = R2Store::from_env(env).map_err(ApiError::Internal)?;
    let step = Step {
        cursor: request.cursor.as_ref(),
        cutoff: request.cutoff(now),
        dry_run: request.dry_run,
        now_ms: now,
        limits: LIMITS,
    };
    run_page(&D1Ledgers { env }, &store, plan, &step)
        .await
        .map_err(|ArchiveFailure::Store(e)| ApiError::ArchiveUnavailable(e))
}

/// `POST /admin/archive`: one page of a run.
pub async fn run(mut req: Request, services: &Services) -> Result<Response, ApiError> {
    let body = body::read_json(&mut req, MAX_ADMIN_BODY_BYTES).await?;
    let map = crate::shard_map::refresh(&services.env).await?;
    let plan = Plan::of(&map);
    let request = ArchiveRequest::parse_bytes(&body, &plan.bindings())?;
    let report = page(&services.env, &plan, &request, now_ms()).await?;
    log(&report);
    Ok(Response::from_json(&report)?)
}

fn log(report: &PageReport) {
    for s in &report.skipped {
        tracing::warn!(database = %s.database, error = %s.error, "archive: database skipped");
    }
    tracing::info!(
        database = %report.database,
        sessions = report.sessions,
        parts = report.parts,
        turns = report.turns,
        bytes = report.bytes,
        lost = report.lost,
        dry_run = report.dry_run,
        "archive page"
    );
}

/// The Cron Trigger: one job per database on the `chat-archive` queue, each archiving the
/// database's turns older than `HOT_DAYS` (from the start of that UTC day), a few pages a
/// delivery ([`jobs`]).
pub async fn scheduled(env: &Env) {
    let hot_days = crate::config::Config::of(env).hot_days;
    let map = match crate::shard_map::refresh(env).await {
        Ok(map) => map,
        Err(e) => {
            tracing::error!(error = ?e, "archive: the bucket map cannot be read; next trigger");
            return;
        }
    };
    let plan = Plan::of(&map);
    let cutoff = job::scheduled_cutoff(now_ms(), hot_days);
    let texts: Vec<String> = job::jobs(&plan, cutoff)
        .iter()
        .map(|j| serde_json::to_string(j).expect("a job serializes"))
        .collect();
    match send_jobs(env, &texts).await {
        Ok(()) => tracing::info!(jobs = texts.len(), cutoff, hot_days, "archive: jobs queued"),
        Err(e) => tracing::error!(error = %e, "archive: jobs could not be queued; next trigger"),
    }
}

async fn send_jobs(env: &Env, texts: &[String]) -> Result<(), String> {
    let queue = env
        .queue(crate::config::ARCHIVE_JOBS)
        .map_err(|e| e.to_string())?;
    worker_support::queue::send_texts(&queue, texts)
        .await
        .map_err(|(_, e)| e.to_string())
}

/// Pages one delivery of a job runs: within an invocation's subrequests with [`LIMITS`].
const JOB_PAGES: usize = 3;

/// A batch of the `chat-archive` queue: each job runs a few pages of its database, then
/// sends what is left as a new job. R2 down retries the job later (nothing was deleted).
pub async fn jobs(batch: worker::MessageBatch<String>, env: &Env) {
    use worker::MessageExt;
    let retry_later = worker::QueueRetryOptionsBuilder::new()
        .with_delay_seconds(60)
        .build();
    let messages = match batch.messages() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "archive: unreadable job batch; retrying it");
            batch.retry_all_with_options(&retry_later);
            return;
        }
    };
    let plan = match crate::shard_map::refresh(env).await {
        Ok(map) => Plan::of(&map),
        Err(e) => {
            tracing::error!(error = ?e, "archive: the bucket map cannot be read; retrying the jobs");
            batch.retry_all_with_options(&retry_later);
            return;
        }
    };
    let store = match R2Store::from_env(env) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "archive: no archive bucket; the jobs are dropped");
            batch.ack_all();
            return;
        }
    };
    for m in messages {
        let job: job::Job = match serde_json::from_str(m.body()) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, body = %m.body(), "archive: a job that is not one; dropped");
                m.ack();
                continue;
            }
        };
        match job::run_job(
            &D1Ledgers { env },
            &store,
            &plan,
            &job,
            now_ms(),
            LIMITS,
            JOB_PAGES,
        )
        .await
        {
            Ok(outcome) => {
                outcome.pages.iter().for_each(log);
                if let Some(next) = outcome.next {
                    let text = serde_json::to_string(&next).expect("a job serializes");
                    if let Err(e) = send_jobs(env, &[text]).await {
                        tracing::error!(error = %e, "archive: the rest of a job could not be queued; running it again");
                        m.retry_with_options(&retry_later);
                        continue;
                    }
                }
                m.ack();
            }
            Err(ArchiveFailure::Store(e)) => {
                tracing::error!(database = %job.database, error = %e, "archive: the store failed; nothing deleted; the job runs again in a minute");
                m.retry_with_options(&retry_later);
            }
        }
    }
}

/// What the archive holds of a player (their `archive_players` row).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all(serialize = "camelCase"))]
pub struct PlayerArchive {
    pub objects: i64,
    pub sessions: i64,
    pub turns: i64,
    pub messages: i64,
    pub point_events: i64,
    pub points: i64,
    pub bytes: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// `GET /admin/players/{userId}/archived-events?cursor=`: a player's point events in the
/// archive, oldest object first, up to 20 objects a page (`cursor`: the last object's key),
/// each event once within a page, with what D1 counts of their archive (`archived`: its
/// `points` is the balance the events add up to).
pub async fn archived_events(
    req: Request,
    services: &Services,
    user: &str,
) -> Result<Response, ApiError> {
    let user = Uuid::try_parse(user)
        .ok()
        .filter(|_| user.len() == 36)
        .ok_or_else(|| ApiError::invalid("invalid_user_id", "the user id must be a UUID"))?;
    let url = req.url()?;
    let after = url
        .query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let prefix = user_prefix(&user.to_string());
    if !after.is_empty() && !after.starts_with(&prefix) {
        return Err(ApiError::invalid(
            "invalid_cursor",
            "'cursor' must be a nextCursor value this API gave out for this player",
        ));
    }
    let db = services.player_db(user).await?;
    let archived: Option<PlayerArchive> = db
        .db
        .prepare(sql::PLAYER_ARCHIVE)
        .bind(&[user.to_string().into()])?
        .metered_first()
        .await
        .map_err(crate::databases::failed(&db.binding))?;
    const OBJECTS: usize = 20;
    let store = R2Store::from_env(&services.env).map_err(ApiError::Internal)?;
    let keys: Vec<String> = store
        .list(&prefix)
        .await
        .map_err(ApiError::ArchiveUnavailable)?
        .into_iter()
        .filter(|k| k.as_str() > after.as_str())
        .collect();
    let more = keys.len() > OBJECTS;
    let mut events = std::collections::BTreeMap::new();
    for key in keys.iter().take(OBJECTS) {
        let part = read_part(&store, key).await?;
        for e in part.events {
            events.entry(e.id.clone()).or_insert_with(|| {
                json!({
                    "id": e.id, "sessionId": e.session_id, "messageId": e.message_id,
                    "delta": e.delta, "reason": e.reason, "metadataJson": e.metadata_json,
                    "createdAt": e.created_at, "object": key,
                })
            });
        }
    }
    let next = more.then(|| keys[OBJECTS - 1].clone());
    Ok(Response::from_json(&json!({
        "userId": user,
        "archived": archived.unwrap_or_default(),
        "events": events.into_values().collect::<Vec<_>>(),
        "nextCursor": next,
    }))?)
}

/// A page of a session's history over both tiers: D1's newest `limit + 1` before the cursor
/// and what the archive holds of the player, in one batch; the session's objects are listed
/// and read only when the archive may hold some of the page (`started`: when the session
/// began, if D1 still has its row).
pub async fn history(
    services: &Services,
    db: &crate::services::Db,
    user: Uuid,
    session: Uuid,
    started: Option<i64>,
    before: Option<(i64, Uuid)>,
    limit: u32,
) -> Result<(Vec<MessageRow>, bool), ApiError> {
    let fail = crate::databases::failed(&db.binding);
    let (at, id) = before.unzip();
    let statements = vec![
        db.db
            .prepare(chat_core::sql::SELECT_SESSION_MESSAGES)
            .bind(&[
                user.to_string().into(),
                session.to_string().into(),
                at.map_or(JsValue::NULL, |t| JsValue::from_f64(t as f64)),
                id.map_or(JsValue::NULL, |i| i.to_string().into()),
                JsValue::from_f64(f64::from(limit + 1)),
            ])?,
        db.db
            .prepare(sql::PLAYER_ARCHIVE)
            .bind(&[user.to_string().into()])?,
    ];
    let results = metered_batch(&db.db, statements).await.map_err(&fail)?;
    let d1: Vec<crate::db::MessageRow> = results[0].results().map_err(&fail)?;
    let archived: Option<PlayerArchive> = results[1].results().map_err(&fail)?.into_iter().next();
    let mut d1: Vec<MessageRow> = d1
        .into_iter()
        .map(|m| MessageRow {
            id: m.id,
            user_id: user.to_string(),
            session_id: session.to_string(),
            role: m.role,
            content: m.content,
            score_raw: m.score_raw,
            score_adjusted: m.score_adjusted,
            emotion: m.emotion,
            created_at: m.created_at,
        })
        .collect();
    // The archive holds nothing of the page when it holds nothing of the player since the
    // session began, or only what is older than every D1 row of a full page.
    let newest_archived = archived.as_ref().map(|a| a.last_at);
    let needs_archive = match newest_archived {
        None => false,
        Some(last) => {
            started.is_none_or(|s| s <= last)
                && (d1.len() <= limit as usize || d1.first().is_some_and(|m| m.created_at <= last))
        }
    };
    if !needs_archive {
        let more = d1.len() > limit as usize;
        if more {
            d1.remove(0);
        }
        return Ok((d1, more));
    }
    let store = R2Store::from_env(&services.env).map_err(ApiError::Internal)?;
    let prefix = session_prefix(&user.to_string(), &session.to_string());
    let keys = store
        .list(&prefix)
        .await
        .map_err(ApiError::ArchiveUnavailable)?;
    let parts = candidates(&keys, &prefix, before.map(|(at, _)| at));
    let before = before.map(|(at, id)| (at, id.to_string()));
    merge_page(
        &store,
        d1,
        &parts,
        before.as_ref().map(|(at, id)| (*at, id.as_str())),
        limit as usize,
    )
    .await
    .map_err(ApiError::from)
}

/// Whether the archive holds objects of `session` under `user`: a session whose row went to
/// the archive with its last turns is still the player's (the key names them both).
pub async fn holds_session(
    services: &Services,
    user: Uuid,
    session: Uuid,
) -> Result<bool, ApiError> {
    let store = R2Store::from_env(&services.env).map_err(ApiError::Internal)?;
    let keys = store
        .list(&session_prefix(&user.to_string(), &session.to_string()))
        .await
        .map_err(ApiError::ArchiveUnavailable)?;
    Ok(!keys.is_empty())
}
