//! `POST /api/sessions` (the one synchronous D1 write: starting a session is rare, and
//! limited per player; it also starts the session's actor) and
//! `GET /api/sessions/{id}/messages` (from D1, the system of record, and from the archive
//! in R2 for turns older than `HOT_DAYS`).

use crate::actor;
use crate::body;
use crate::db::{self, SessionRow};
use crate::error::ApiError;
use crate::rate_limit::{self, Limiter};
use crate::services::Services;
use chat_core::domain::SessionId;
use chat_core::identity::Identity;
use chat_core::request::NewSession;
use chat_core::request::{HistoryQuery, MessageCursor, MAX_BODY_BYTES};
use chat_core::session::SessionState;
use chat_core::time::to_rfc3339;
use serde_json::json;
use worker::{Env, Request, Response};
use worker_support::clock::{now_ms, random10};

pub async fn create(
    mut req: Request,
    env: &Env,
    services: &Services,
) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    let new = NewSession::parse(&body::read_json(&mut req, MAX_BODY_BYTES).await?)?;
    // Each start writes D1 and an actor: one account must not be able to fill either.
    rate_limit::check(env, Limiter::Sessions, &identity).await?;
    let now = now_ms();
    let key = id_key(env);
    let id = SessionId::issue(now, random10(), key.as_deref().map(str::as_bytes));
    // D1 first: if the actor's start is lost after it, the actor adopts the row on the first
    // turn. The other order could leave an actor for a session D1 never heard of.
    let db = services.player_db_for_write(identity.user_id()).await?;
    if !db::create_session(&db, &identity, id.uuid(), &new, now).await? {
        // The database has fenced the player's bucket: it is moving, or this isolate's map
        // is older than the move. Nothing was written; the retry finds the new home.
        return Err(ApiError::BucketMoving);
    }
    actor::client::start(
        env,
        &SessionState {
            id,
            user_id: identity.user_id(),
            character_type: new.character,
            locale: new.locale,
            username: new.username.clone(),
            created_at: now,
            ended_at: None,
        },
    )
    .await?;
    tracing::info!(session_id = %id, user_id = %identity.user_id(), character = new.character.as_str(), "session started");
    Ok(Response::from_json(&json!({ "sessionId": id }))?.with_status(201))
}

/// The secret session ids are tagged with (`SESSION_ID_KEY`), if set. Without it ids are
/// plain UUIDv7s, and every turn reads D1 to find its session (logged once per isolate).
pub fn id_key(env: &Env) -> Option<String> {
    thread_local! {
        static WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let key = crate::config::Config::of(env).session_id_key.clone();
    if key.is_none() && !WARNED.replace(true) {
        tracing::error!("SESSION_ID_KEY is not set: session ids are not tagged, and every turn reads D1 to find its session (wrangler secret put SESSION_ID_KEY)");
    }
    key
}

/// Refuses a turn for session `id` unless it may reach the session's actor: an id this
/// Worker issued (known without any read), or a session D1 holds for this player (one
/// started before ids were tagged). A call creates the actor, so an id nobody issued must
/// never reach one.
pub async fn reachable(
    env: &Env,
    services: &Services,
    identity: &Identity,
    id: SessionId,
) -> Result<(), ApiError> {
    if id_key(env).is_some_and(|key| id.is_issued(key.as_bytes())) {
        return Ok(());
    }
    // A session whose row went to the archive with its last turns is still the player's.
    owned_here_or_archived(services, identity, id)
        .await
        .map(|_| ())
}

/// The session `id`'s row in D1 if it belongs to the player; another player's session is
/// "not found" too (`None`), so ids reveal nothing.
async fn find_owned(
    services: &Services,
    identity: &Identity,
    id: SessionId,
) -> Result<Option<SessionRow>, ApiError> {
    Ok(
        db::find_session(&services.player_db(identity.user_id()).await?, id.uuid())
            .await?
            .filter(|s| s.user_id == identity.user_id().to_string()),
    )
}

/// When the player's session `id` began, if D1 holds its row, or `None` if its row went to
/// the archive with its last turns; "not found" if it is neither.
async fn owned_here_or_archived(
    services: &Services,
    identity: &Identity,
    id: SessionId,
) -> Result<Option<i64>, ApiError> {
    if let Some(row) = find_owned(services, identity, id).await? {
        return Ok(Some(row.created_at));
    }
    if crate::archive::holds_session(services, identity.user_id(), id.uuid()).await? {
        Ok(None)
    } else {
        Err(ApiError::not_found(
            "session_not_found",
            "no session with this id for this player",
        ))
    }
}

/// A page of the session's history, oldest first. Without `before` it is the newest page;
/// `nextBefore` (when older messages remain) asks for the page before it.
pub async fn messages(
    req: Request,
    services: &Services,
    id: SessionId,
) -> Result<Response, ApiError> {
    let identity = services.auth.resolve(&req).await?;
    let url = req.url()?;
    let pairs: Vec<_> = url.query_pairs().collect();
    let query = HistoryQuery::parse(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))?;
    if query.before.is_some_and(|c| !c.belongs_to(id.uuid())) {
        return Err(ApiError::invalid(
            "invalid_query",
            "'before' is a cursor of another session: use the nextBefore this session's pages gave",
        ));
    }
    let started = owned_here_or_archived(services, &identity, id).await?;
    // D1 and the archive, merged (`crate::archive::history`).
    let (rows, more) = crate::archive::history(
        services,
        &services.player_db(identity.user_id()).await?,
        identity.user_id(),
        id.uuid(),
        started,
        query.before.map(|c| (c.created_at, c.id)),
        query.limit,
    )
    .await?;
    let next_before = match rows.first() {
        Some(oldest) if more => Some(
            MessageCursor::new(
                oldest.created_at,
                oldest.id.parse().map_err(|_| {
                    ApiError::Internal(format!("message id {} is not a UUID", oldest.id))
                })?,
                id.uuid(),
            )
            .encode(),
        ),
        _ => None,
    };
    let messages: Vec<_> = rows
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "scoreRaw": m.score_raw,
                "scoreAdjusted": m.score_adjusted,
                "emotion": m.emotion,
                "createdAt": to_rfc3339(m.created_at),
            })
        })
        .collect();
    Ok(Response::from_json(
        &json!({ "sessionId": id, "messages": messages, "nextBefore": next_before }),
    )?)
}
