//! Who is asking. One resolver, chosen by configuration (`AUTH_MODE`):
//!
//! - `dev`: the player named by the header `X-Dev-User: <provider>:<provider user id>`. For
//!   local use only: the deployable `wrangler.toml` never sets it; the local scripts pass
//!   `--var AUTH_MODE:dev` to `wrangler dev`.
//! - anything else: no resolver is configured yet, and every player request gets 401.

use crate::error::ApiError;
use chat_core::identity::Identity;
use worker::Request;

pub const DEV_USER_HEADER: &str = "X-Dev-User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Dev,
    Disabled,
}

impl AuthMode {
    pub fn parse(mode: &str) -> Self {
        match mode {
            "dev" => Self::Dev,
            _ => Self::Disabled,
        }
    }

    /// The player behind `req`, or 401.
    pub fn resolve(self, req: &Request) -> Result<Identity, ApiError> {
        match self {
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
                Identity::parse_dev_header(&header)
                    .map_err(|e| unauthorized("malformed_auth", &format!("X-Dev-User: {e}")))
            }
            Self::Disabled => Err(unauthorized("missing_auth", "no valid credential was sent")),
        }
    }
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::Unauthorized {
        code,
        message: message.to_owned(),
    }
}
