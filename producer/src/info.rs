//! `GET /api/info`: what a client may know before signing in. The play page reads it to
//! choose between its development sign-in form and a note that the game's own client signs
//! players in, and for the rules it shows and enforces (the game-over penalty, the longest
//! name and message). It holds nothing secret; the answer is built in `chat_core::info`.

use crate::auth::Auth;
use crate::config::Config;
use serde_json::Value;
use worker::Env;

pub fn public(env: &Env) -> Value {
    chat_core::info::public(Auth::from_config(&Config::of(env)).mode_name())
}
