//! The per-player turn rate limit: Cloudflare's rate limiting binding `TURN_LIMITER`
//! (`[[ratelimits]]` in `wrangler.toml`, 30 turns a minute), keyed by the player's user id,
//! checked before a turn reaches its session. `TURN_RATE_LIMIT = "off"` turns it off; only the
//! local scripts and the tests set that, so load runs on one machine are not throttled.
//!
//! The binding counts per Cloudflare location and is eventually consistent: it stops points
//! farming at scale, not a single turn over the line. If the binding itself fails, turns go
//! through and the log says why: refusing every player would be the worse failure.

use crate::error::ApiError;
use chat_core::identity::Identity;
use worker::Env;
use worker_support::env::var;

/// The rate limiting binding.
pub const TURN_LIMITER: &str = "TURN_LIMITER";
/// What a refused turn is told to wait: the binding's period (60 s), the most it can take.
const RETRY_AFTER_SECONDS: u32 = 60;

pub async fn check(env: &Env, identity: &Identity) -> Result<(), ApiError> {
    if var(env, "TURN_RATE_LIMIT").as_deref() == Some("off") {
        return Ok(());
    }
    let outcome = match env.rate_limiter(TURN_LIMITER) {
        Ok(limiter) => limiter.limit(identity.user_id().to_string()).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(outcome) if outcome.success => Ok(()),
        Ok(_) => Err(ApiError::RateLimited {
            retry_after: RETRY_AFTER_SECONDS,
        }),
        Err(e) => {
            tracing::error!(error = %e, "the turn rate limiter failed; letting the turn through");
            Ok(())
        }
    }
}
