//! Who is asking. One resolver, chosen by `AUTH_MODE`:
//!
//! - `privy` (the production default): `Authorization: Bearer <Privy access token>`, checked
//!   against `PRIVY_APP_ID` and `PRIVY_VERIFICATION_KEY`; an optional `privy-id-token` header
//!   fills the profile. No network and no D1 on the way: WebCrypto checks the signature, and
//!   the isolate remembers verified tokens until their `exp` (`worker_support::privy_auth`).
//! - `x`: `Authorization: Bearer <X OAuth 2.0 user token>`, asked of X's `users/me` at
//!   `X_API_BASE` and cached for `X_CACHE_SECONDS` in the isolate.
//! - `dev`: the header `X-Dev-User: <provider>:<id>`, for local use only. It is compiled only
//!   into the local build (cargo feature `local`, which `scripts/build.sh` gives the build
//!   that `scripts/dev.sh` and the tests run), and starts only when `ALLOW_DEV_AUTH=local-only`
//!   is set too. In the deployable build no variable, secret or dashboard setting can turn it
//!   on: `AUTH_MODE=dev` refuses every request, and the log says why.
//!
//! Every failure is a 401 with a code saying what is wrong; no message echoes a token.

use crate::config::Config;
use crate::error::ApiError;
use chat_core::identity::{Identity, SignIn};
use chat_core::ttl_cache::TtlCache;
use chat_core::x_auth::{identity_from_users_me, USERS_ME_PATH};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use worker::{Fetch, Headers, Method, Request, RequestInit};
use worker_support::clock::now_ms;
use worker_support::deadline;
use worker_support::privy_auth::PrivyAuth;

#[cfg(feature = "local")]
pub const DEV_USER_HEADER: &str = "X-Dev-User";
pub const PRIVY_ID_TOKEN_HEADER: &str = "privy-id-token";
/// Most X answers one isolate keeps.
const X_CACHE_MAX: usize = 10_000;

pub enum Auth {
    Privy(Rc<PrivyAuth>),
    X {
        base: String,
        ttl_ms: i64,
        timeout: Duration,
    },
    #[cfg(feature = "local")]
    Dev,
    /// Misconfigured: every request is refused (the reason is logged, not sent).
    Refused(String),
}

thread_local! {
    /// Whether this isolate has logged why auth refuses everything.
    static REFUSAL_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// X answers by SHA-256 of the token (tokens themselves are not kept), with expiry.
    static X_CACHE: RefCell<TtlCache<[u8; 32], SignIn>> = RefCell::new(TtlCache::new(X_CACHE_MAX));
}

impl Auth {
    pub fn from_config(config: &Config) -> Self {
        let auth = match config.auth_mode.as_str() {
            "privy" => PrivyAuth::from_settings(&config.privy)
                .map(Self::Privy)
                .unwrap_or_else(Self::Refused),
            "x" => Self::X {
                base: config.x_api_base.clone(),
                ttl_ms: config.x_cache_ms,
                timeout: config.x_timeout,
            },
            #[cfg(feature = "local")]
            "dev" if config.allow_dev_auth => Self::Dev,
            #[cfg(not(feature = "local"))]
            "dev" => Self::Refused(
                "AUTH_MODE=dev is refused: development auth is not compiled into this build (it exists only in the local build, cargo feature `local`)".into(),
            ),
            #[cfg(feature = "local")]
            "dev" => Self::Refused(
                "AUTH_MODE=dev is refused: development auth needs ALLOW_DEV_AUTH=local-only, which only local runs set".into(),
            ),
            other => Self::Refused(format!("AUTH_MODE={other:?} is not privy, x or dev")),
        };
        if let Self::Refused(reason) = &auth {
            // Once per isolate: the configuration is read on every request.
            if !REFUSAL_LOGGED.replace(true) {
                tracing::error!(reason = %reason, "player auth is refusing every request");
            }
        }
        auth
    }

    /// How players sign in here, as `GET /api/info` tells clients: `privy`, `x`, `dev`, or
    /// `unavailable` when misconfigured (the reason stays in the log).
    pub fn mode_name(&self) -> &'static str {
        match self {
            Self::Privy(_) => "privy",
            Self::X { .. } => "x",
            #[cfg(feature = "local")]
            Self::Dev => "dev",
            Self::Refused(_) => "unavailable",
        }
    }

    /// The player behind `req`, or 401.
    pub async fn resolve(&self, req: &Request) -> Result<Identity, ApiError> {
        Ok(self.sign_in(req).await?.identity)
    }

    /// The player behind `req` and until when the sign-in holds (what a live socket's
    /// ticket keeps), or 401.
    pub async fn sign_in(&self, req: &Request) -> Result<SignIn, ApiError> {
        match self {
            Self::Privy(app) => {
                let token = bearer(req)?;
                let id_token = req.headers().get(PRIVY_ID_TOKEN_HEADER).ok().flatten();
                app.sign_in(&token, id_token.as_deref(), now_ms())
                    .await
                    .map_err(|e| unauthorized(e.code, e.message))
            }
            Self::X {
                base,
                ttl_ms,
                timeout,
            } => x_identity(base, *ttl_ms, *timeout, &bearer(req)?).await,
            #[cfg(feature = "local")]
            Self::Dev => {
                let header = req
                    .headers()
                    .get(DEV_USER_HEADER)
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        unauthorized(
                            "missing_auth",
                            "send X-Dev-User: <provider>:<provider user id>",
                        )
                    })?;
                let identity = Identity::parse_dev_header(&header)
                    .map_err(|e| unauthorized("malformed_auth", format!("X-Dev-User: {e}")))?;
                Ok(SignIn {
                    identity,
                    valid_until: None,
                })
            }
            Self::Refused(_) => Err(unauthorized(
                "auth_unavailable",
                "sign-in is not available on this server",
            )),
        }
    }
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(code, message)
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(req: &Request) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .ok()
        .flatten()
        .ok_or_else(|| unauthorized("missing_auth", "send Authorization: Bearer <token>"))?;
    match header.trim().split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(unauthorized(
            "malformed_auth",
            "the Authorization header must be 'Bearer <token>'",
        )),
    }
}

/// The player of an X token, asked of X's `users/me` unless this isolate asked within
/// `ttl_ms`: the sign-in holds until then, and its profile is as of when X answered.
async fn x_identity(
    base: &str,
    ttl_ms: i64,
    timeout: Duration,
    token: &str,
) -> Result<SignIn, ApiError> {
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let now = now_ms();
    if let Some(identity) = X_CACHE.with(|c| c.borrow().get(&key, now)) {
        return Ok(identity);
    }
    let headers = Headers::new();
    headers.set("Authorization", &format!("Bearer {token}"))?;
    headers.set("Accept", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{base}{USERS_ME_PATH}"), &init)?;
    let call = async {
        let mut response = Fetch::Request(request).send().await?;
        Ok::<_, worker::Error>((
            response.status_code(),
            response.text().await.unwrap_or_default(),
        ))
    };
    // A hanging X must not hold every request: past the timeout, the player may retry.
    let (status, body) = match deadline::within(timeout, call).await {
        Some(Ok(answer)) => answer,
        failed => {
            let reason = match failed {
                Some(Err(e)) => e.to_string(),
                _ => format!("no answer within {} ms", timeout.as_millis()),
            };
            tracing::warn!(error = %reason, "X users/me unreachable");
            return Err(unauthorized(
                "auth_unavailable",
                "X could not be reached; retry shortly",
            ));
        }
    };
    let mut identity =
        identity_from_users_me(status, &body).map_err(|e| unauthorized(e.code, e.message))?;
    identity.signed_at = Some(now);
    let signed = SignIn {
        identity,
        valid_until: Some(now + ttl_ms),
    };
    if ttl_ms > 0 {
        X_CACHE.with(|c| c.borrow_mut().put(key, signed.clone(), now, now + ttl_ms));
    }
    Ok(signed)
}
