//! The per-player rate limits: Cloudflare's rate limiting bindings (`[[ratelimits]]` in
//! `wrangler.toml`), keyed by the player's user id: `TURN_LIMITER` (30 turns a minute),
//! checked before a turn reaches its session, `SESSION_LIMITER` (10 session starts a
//! minute), checked before a start writes anything, and `TICKET_LIMITER` (20 live-socket
//! tickets a minute), checked before a ticket is minted. `TURN_RATE_LIMIT = "off"` turns
//! them off; only the local scripts and the tests set that, so load runs on one machine are
//! not throttled.
//!
//! The binding counts per Cloudflare location and is eventually consistent: it stops points
//! farming at scale, not a single turn over the line. If the binding itself fails, turns go
//! through and the log says why: refusing every player would be the worse failure.

use crate::error::ApiError;
use chat_core::identity::Identity;
use chat_core::refusal::{Kind, Refusal};
use worker::Env;

/// What a player's requests are limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    Turns,
    Sessions,
    Tickets,
}

impl Limiter {
    /// The rate limiting binding.
    pub fn binding(self) -> &'static str {
        match self {
            Self::Turns => crate::config::TURN_LIMITER,
            Self::Sessions => crate::config::SESSION_LIMITER,
            Self::Tickets => crate::config::TICKET_LIMITER,
        }
    }
}

/// What a refused request is told to wait: the bindings' period (60 s), the most it can take.
const RETRY_AFTER_SECONDS: u32 = 60;

pub async fn check(env: &Env, limiter: Limiter, identity: &Identity) -> Result<(), ApiError> {
    if !crate::config::Config::of(env).rate_limits {
        return Ok(());
    }
    let outcome = match env.rate_limiter(limiter.binding()) {
        Ok(limiter) => limiter.limit(identity.user_id().to_string()).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(outcome) if outcome.success => Ok(()),
        Ok(_) => Err(ApiError::Refused(
            Refusal::new(
                Kind::TooMany,
                "rate_limited",
                format!("too many requests from this player; retry in {RETRY_AFTER_SECONDS} s (a turn with the same Idempotency-Key)"),
            )
            .retry_after(RETRY_AFTER_SECONDS),
        )),
        Err(e) => {
            tracing::error!(error = %e, limiter = limiter.binding(), "a rate limiter failed; letting the request through");
            Ok(())
        }
    }
}
