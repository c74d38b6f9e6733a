//! Configuration from `Env`: a plain variable, or a secret of the same name, and the D1
//! bindings a Worker has.

use worker::js_sys::Object;
use worker::wasm_bindgen::JsCast;
use worker::Env;

/// The string bound as `name`, whether a `[vars]` entry or a secret.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .ok()
        .or_else(|| env.secret(name).map(|v| v.to_string()).ok())
}

/// Every player database this Worker is bound to (`DB_0`, `DB_1`, …), in order of their
/// number, whatever the bucket map names: a new database is bound before any bucket moves
/// to it, and must be checked before then.
pub fn database_bindings(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = Object::keys(env.unchecked_ref::<Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .filter(|k| chat_core::shards::valid_binding(k))
        .collect();
    names.sort_by_key(|b| (b.len(), b.clone()));
    names
}
