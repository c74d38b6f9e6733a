//! The one refusal type: a request the server will not serve, with a stable `code` for
//! programs, a `message` for people, and a [`Kind`] that alone decides the HTTP status and
//! whether to come back later (`Retry-After`). Every parser and rule in this crate refuses
//! with it, and the chat Worker maps it to a response in one place (`producer/src/error.rs`).

/// What kind of refusal: its HTTP status, and whether waiting helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: the request is malformed.
    Invalid,
    /// 413: the body is larger than this route reads.
    TooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 401: no usable credential.
    Unauthorized,
    /// 403: the request comes from where this API does not serve it.
    Forbidden,
    /// 404: no such route, or no such resource for this caller.
    NotFound,
    /// 409: the request conflicts with the resource's state.
    Conflict,
    /// 409, retry in a second: the resource is busy with another request of the same kind.
    Busy,
    /// 422: well-formed, but refused by what the server remembers (an idempotency key).
    Unprocessable,
    /// 429: too many requests; retry after the refusal's `retry_after`.
    TooMany,
    /// 503: a dependency is not answering or the data is moving; retry after a while.
    Unavailable,
    /// 500: something failed inside; what is logged, never sent.
    Internal,
}

impl Kind {
    pub fn status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict | Self::Busy => 409,
            Self::Unprocessable => 422,
            Self::TooMany => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The `Retry-After` a refusal of this kind carries when it names none itself.
    fn default_retry_after(self) -> Option<u32> {
        match self {
            Self::Busy | Self::Unavailable => Some(1),
            _ => None,
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    /// Stable, for programs: `invalid_message`, `missing_auth`, `grace_not_elapsed`, …
    pub code: &'static str,
    /// For people: what is wrong and what to do.
    pub message: String,
    /// Seconds to wait before trying again, when waiting is the answer.
    pub retry_after: Option<u32>,
}

impl Refusal {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: kind.default_retry_after(),
        }
    }

    /// 400.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, code, message)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::Unauthorized, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, code, message)
    }

    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, code, message)
    }

    /// 500, with nothing of what failed: that is for the log.
    pub fn internal() -> Self {
        Self::new(
            Kind::Internal,
            "internal",
            "something went wrong on our side",
        )
    }

    /// The same refusal, asking to come back after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_status_and_the_wait() {
        let r = Refusal::invalid("invalid_message", "too long");
        assert_eq!((r.status(), r.retry_after), (400, None));
        let r = Refusal::new(Kind::Busy, "turn_in_progress", "one at a time");
        assert_eq!((r.status(), r.retry_after), (409, Some(1)));
        let r = Refusal::new(Kind::Unavailable, "player_data_moving", "moving").retry_after(5);
        assert_eq!((r.status(), r.retry_after), (503, Some(5)));
        let r = Refusal::conflict("grace_not_elapsed", "wait").retry_after(7);
        assert_eq!((r.status(), r.retry_after), (409, Some(7)));
        assert_eq!(
            Refusal::new(Kind::TooLarge, "body_too_large", "").status(),
            413
        );
        assert_eq!(Refusal::unauthorized("missing_auth", "").status(), 401);
        assert_eq!(Refusal::not_found("not_found", "").status(), 404);
        assert_eq!(
            Refusal::new(Kind::TooMany, "rate_limited", "").status(),
            429
        );
        assert_eq!(format!("{}", Refusal::invalid("a", "b")), "a: b");
        let r = Refusal::internal();
        assert_eq!((r.status(), r.code, r.retry_after), (500, "internal", None));
    }
}
