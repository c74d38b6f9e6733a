//! Configuration from `Env`: a plain variable, or a secret of the same name.

use worker::Env;

/// The string bound as `name`, whether a `[vars]` entry or a secret.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .or_else(|| env.secret(name).map(|v| v.to_string()).ok())
}
