//! Every D1 call of the consumer: one atomic `batch` of the fixed statements of
//! `chat_core::sql::apply_turns`, each binding the batch's JSON once.

use chat_core::sql;
use worker::wasm_bindgen::JsValue;
use worker::D1Database;

/// What the D1 batch did.
pub struct Stored {
    /// Turns newly inserted (the point-event statement's `changes`).
    pub applied: usize,
    /// Statements sent in the batch (the same for 1 turn and for 100).
    pub statements: usize,
}

/// Applies the turns in `turns_json` (see `chat_core::batch::turns_json`) atomically.
pub async fn apply_turns(db: &D1Database, turns_json: &str) -> worker::Result<Stored> {
    let param = [JsValue::from_str(turns_json)];
    let statements = sql::apply_turns()
        .iter()
        .map(|s| db.prepare(*s).bind(&param))
        .collect::<worker::Result<Vec<_>>>()?;
    let count = statements.len();
    let results = db.batch(statements).await?;
    let applied = results
        .get(sql::APPLIED_STATEMENT)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(Stored {
        applied,
        statements: count,
    })
}
