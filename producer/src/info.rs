//! `GET /api/info`: what a client may know before signing in. The play page reads it to
//! choose between its development sign-in form and a note that the game's own client signs
//! players in. It holds nothing secret: the sign-in mode and the characters.

use crate::auth::Auth;
use serde_json::{json, Value};
use worker::Env;

pub fn public(env: &Env) -> Value {
    json!({
        "signIn": Auth::from_env(env).mode_name(),
        "characters": chat_core::character::catalog(),
        "locales": ["ja", "en"],
    })
}
