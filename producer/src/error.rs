//! The chat Worker's one error type. Each variant maps to a status here and nowhere else;
//! internal details are logged, never sent to the client.

use chat_core::refusal::{Kind, Refusal};
use serde_json::json;
use worker::{Method, Response};

#[derive(Debug)]
pub enum ApiError {
    /// A refusal the client can act on: its kind decides the status and the `Retry-After`
    /// (`chat_core::refusal`).
    Refused(Refusal),
    /// 426: a live socket is opened with `Upgrade: websocket`.
    UpgradeRequired,
    /// 405: the route exists with other methods.
    MethodNotAllowed { allowed: &'static str },
    /// 503: the turn could not be queued; the client may retry with the same key.
    QueueUnavailable(String),
    /// 503: the session's actor could not be reached; the client may retry with the same key.
    SessionUnavailable(String),
    /// 503: the player's data is being moved to another database; retry in a few seconds.
    BucketMoving,
    /// 503: the player's database failed; retry in a few seconds. The text is logged only.
    DatabaseUnavailable(String),
    /// 503: the archive (R2) failed; nothing was deleted. The text is logged only.
    ArchiveUnavailable(String),
    /// 500: anything else. The text is logged only.
    Internal(String),
}

impl ApiError {
    /// 400.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(Refusal::invalid(code, message))
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(Refusal::unauthorized(code, message))
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(Refusal::not_found(code, message))
    }

    /// Any other refusal.
    pub fn refused(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused(Refusal::new(kind, code, message))
    }

    /// What a client is told where no status goes with it (a live socket's error frame): the
    /// refusal, the internal detail logged.
    pub fn into_refusal(self) -> Refusal {
        self.log();
        self.refusal()
    }

    fn log(&self) {
        match self {
            Self::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            Self::QueueUnavailable(detail) => tracing::error!(error = %detail, "queue send failed"),
            Self::SessionUnavailable(detail) => {
                tracing::error!(error = %detail, "session actor unreachable")
            }
            Self::DatabaseUnavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable")
            }
            Self::ArchiveUnavailable(detail) => {
                tracing::error!(error = %detail, "archive unavailable")
            }
            _ => {}
        }
    }

    /// What the client gets: the refusal, with the internal detail left out.
    fn refusal(&self) -> Refusal {
        let unavailable = |code, message: &str| Refusal::new(Kind::Unavailable, code, message);
        match self {
            Self::Refused(r) => r.clone(),
            Self::UpgradeRequired => Refusal::new(
                Kind::Invalid,
                "upgrade_required",
                "open the live socket with Upgrade: websocket",
            ),
            Self::MethodNotAllowed { allowed } => Refusal::new(
                Kind::Invalid,
                "method_not_allowed",
                format!("this route accepts {allowed}"),
            ),
            Self::QueueUnavailable(_) => unavailable(
                "queue_unavailable",
                "the turn could not be queued; retry with the same Idempotency-Key",
            ),
            Self::SessionUnavailable(_) => unavailable(
                "session_unavailable",
                "the session could not be reached; retry with the same Idempotency-Key",
            ),
            Self::BucketMoving => unavailable(
                "player_data_moving",
                "this player's data is moving to another database; retry in a few seconds",
            )
            .retry_after(5),
            Self::DatabaseUnavailable(_) => unavailable(
                "database_unavailable",
                "this player's database is not answering; retry in a few seconds",
            )
            .retry_after(5),
            Self::ArchiveUnavailable(_) => unavailable(
                "archive_unavailable",
                "the archive of older history is not answering; retry in a little while",
            )
            .retry_after(30),
            Self::Internal(_) => Refusal::internal(),
        }
    }

    /// The status, code and message a client gets.
    pub fn status_code_message(&self) -> (u16, &'static str, String) {
        let r = self.refusal();
        let status = match self {
            Self::UpgradeRequired => 426,
            Self::MethodNotAllowed { .. } => 405,
            _ => r.status(),
        };
        (status, r.code, r.message)
    }

    /// The JSON response `{ "error": { "code", "message" } }` with its status, and its
    /// `Retry-After` when waiting is the answer.
    pub fn into_response(self) -> Response {
        self.log();
        let (status, code, message) = self.status_code_message();
        let retry_after = self.refusal().retry_after;
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
        if let Some(seconds) = retry_after {
            let _ = headers.set("Retry-After", &seconds.to_string());
        }
        response
    }
}

/// 405 unless the request's `method` is `wanted` (`allowed` names it for the `Allow` header).
pub fn only(method: &Method, allowed: &'static str, wanted: Method) -> Result<(), ApiError> {
    if *method == wanted {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed { allowed })
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// A turn's failure as the client sees it: the core's refusal; what went wrong inside is
/// logged here, never sent.
impl From<chat_core::turn::TurnError> for ApiError {
    fn from(e: chat_core::turn::TurnError) -> Self {
        if let Some(detail) = e.detail() {
            tracing::error!(error = %detail, "a turn failed");
        }
        Self::Refused(e.refusal())
    }
}

/// An archive object that could not be read: R2 failing is 503 (retry); a listed object
/// missing or unreadable is an internal error.
impl From<chat_core::archive::ReadFailure> for ApiError {
    fn from(e: chat_core::archive::ReadFailure) -> Self {
        match e {
            chat_core::archive::ReadFailure::Store(e) => Self::ArchiveUnavailable(e),
            broken => Self::Internal(broken.to_string()),
        }
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        Self::Internal(e.to_string())
    }
}
