//! The chat Worker's one error type. Each variant maps to a status here and nowhere else;
//! internal details are logged, never sent to the client.

use chat_core::request::InvalidRequest;
use serde_json::json;
use worker::Response;

#[derive(Debug)]
pub enum ApiError {
    /// 400 (or 413 for `body_too_large`): the request is malformed.
    Invalid(InvalidRequest),
    /// 401: no usable credential.
    Unauthorized { code: &'static str, message: String },
    /// 403: the request comes from a page this API does not serve (a cross-site live socket).
    Forbidden { code: &'static str, message: String },
    /// 426: a live socket is opened with `Upgrade: websocket`.
    UpgradeRequired,
    /// 404: no such route, or no such resource for this player.
    NotFound { code: &'static str, message: String },
    /// 405: the route exists with other methods.
    MethodNotAllowed { allowed: &'static str },
    /// 409: the request conflicts with the resource's state.
    Conflict { code: &'static str, message: String },
    /// 422: well-formed, but refused by what the server remembers (an idempotency key).
    Unprocessable { code: &'static str, message: String },
    /// 429: the player sent more turns than the rate limit allows; retry after `retry_after` s.
    RateLimited { retry_after: u32 },
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 503: the turn could not be queued; the client may retry with the same key.
    QueueUnavailable(String),
    /// 503: the session's actor could not be reached; the client may retry with the same key.
    SessionUnavailable(String),
    /// 503: the player's data is being moved to another database; retry in a few seconds.
    BucketMoving,
    /// 503: the player's database failed; retry in a few seconds. The text is logged only.
    DatabaseUnavailable(String),
    /// 409: a step of a bucket move that cannot run now (see `chat_core::moves`), with how
    /// long to wait when waiting is the answer.
    MoveRefused(chat_core::moves::Refusal),
    /// 500: anything else. The text is logged only.
    Internal(String),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidRequest {
            code,
            message: message.into(),
        })
    }

    pub fn status_code_message(&self) -> (u16, &'static str, String) {
        match self {
            Self::Invalid(e) if e.code == "body_too_large" => (413, e.code, e.message.clone()),
            Self::Invalid(e) => (400, e.code, e.message.clone()),
            Self::Unauthorized { code, message } => (401, code, message.clone()),
            Self::Forbidden { code, message } => (403, code, message.clone()),
            Self::UpgradeRequired => (
                426,
                "upgrade_required",
                "open the live socket with Upgrade: websocket".into(),
            ),
            Self::NotFound { code, message } => (404, code, message.clone()),
            Self::MethodNotAllowed { allowed } => (
                405,
                "method_not_allowed",
                format!("this route accepts {allowed}"),
            ),
            Self::Conflict { code, message } => (409, code, message.clone()),
            Self::Unprocessable { code, message } => (422, code, message.clone()),
            Self::RateLimited { retry_after } => (
                429,
                "rate_limited",
                format!("too many requests from this player; retry in {retry_after} s (a turn with the same Idempotency-Key)"),
            ),
            Self::UnsupportedMediaType => (
                415,
                "unsupported_media_type",
                "send the body as Content-Type: application/json".into(),
            ),
            Self::QueueUnavailable(_) => (
                503,
                "queue_unavailable",
                "the turn could not be queued; retry with the same Idempotency-Key".into(),
            ),
            Self::SessionUnavailable(_) => (
                503,
                "session_unavailable",
                "the session could not be reached; retry with the same Idempotency-Key".into(),
            ),
            Self::BucketMoving => (
                503,
                "player_data_moving",
                "this player's data is moving to another database; retry in a few seconds".into(),
            ),
            Self::DatabaseUnavailable(_) => (
                503,
                "database_unavailable",
                "this player's database is not answering; retry in a few seconds".into(),
            ),
            Self::MoveRefused(r) => (409, r.code, r.message.clone()),
            Self::Internal(_) => (500, "internal", "something went wrong on our side".into()),
        }
    }

    /// The JSON response `{ "error": { "code", "message" } }` with its status.
    pub fn into_response(self) -> Response {
        let (status, code, message) = self.status_code_message();
        match &self {
            Self::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            Self::QueueUnavailable(detail) => tracing::error!(error = %detail, "queue send failed"),
            Self::SessionUnavailable(detail) => {
                tracing::error!(error = %detail, "session actor unreachable")
            }
            Self::DatabaseUnavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable")
            }
            _ => {}
        }
        let mut response =
            Response::from_json(&json!({ "error": { "code": code, "message": message } }))
                .unwrap_or_else(|_| Response::empty().expect("an empty response"))
                .with_status(status);
        let headers = response.headers_mut();
        if let Self::MethodNotAllowed { allowed } = self {
            let _ = headers.set("Allow", allowed);
        }
        if matches!(self, Self::UpgradeRequired) {
            let _ = headers.set("Upgrade", "websocket");
        }
        if matches!(self, Self::BucketMoving | Self::DatabaseUnavailable(_)) {
            let _ = headers.set("Retry-After", "5");
        } else if let Self::MoveRefused(chat_core::moves::Refusal {
            retry_after: Some(seconds),
            ..
        }) = &self
        {
            let _ = headers.set("Retry-After", &seconds.to_string());
        } else if status == 503 || code == "turn_in_progress" {
            let _ = headers.set("Retry-After", "1");
        }
        if let Self::RateLimited { retry_after } = self {
            let _ = headers.set("Retry-After", &retry_after.to_string());
        }
        response
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        Self::Invalid(e)
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        Self::Internal(e.to_string())
    }
}
