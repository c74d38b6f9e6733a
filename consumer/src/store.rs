//! Every D1 call of the consumer, and its one write to the dead-letter queue.

use chat_core::batch::StoredTurn;
use chat_core::dead_letter::Envelope;
use chat_core::shards::{Override, OverrideRow};
use chat_core::sql;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Queue};

/// What the D1 batch found and did.
pub struct Stored {
    /// The buckets (prefixes) of the batch that this database has fenced: their turns were
    /// not written, and wait in the queue.
    pub fenced: Vec<String>,
    /// The turns already stored under the batch's turn ids, before it ran.
    pub before: Vec<StoredTurn>,
    /// Turns newly inserted (the point-event statement's `changes`).
    pub inserted: usize,
    /// Statements sent in the batch (the same for 1 turn and for 100).
    pub statements: usize,
}

/// Applies the turns in `turns_json` (see `chat_core::batch::turns_json`) atomically: every
/// statement of `sql::apply_turns` in ONE `D1Database::batch`, each binding that one JSON.
pub async fn apply_turns(db: &D1Database, turns_json: &str) -> worker::Result<Stored> {
    fits_d1("the batch's turns", turns_json)?;
    let param = [JsValue::from_str(turns_json)];
    let statements = sql::apply_turns()
        .iter()
        .map(|s| db.prepare(*s).bind(&param))
        .collect::<worker::Result<Vec<_>>>()?;
    let count = statements.len();
    let results = db.batch(statements).await?;
    #[derive(serde::Deserialize)]
    struct Fence {
        bucket: String,
    }
    let fenced = match results.get(sql::FENCED_STATEMENT) {
        Some(r) => r
            .results::<Fence>()?
            .into_iter()
            .map(|f| f.bucket)
            .collect(),
        None => Vec::new(),
    };
    let before = match results.get(sql::STORED_STATEMENT) {
        Some(r) => r.results::<StoredTurn>()?,
        None => Vec::new(),
    };
    let inserted = results
        .get(sql::APPLIED_STATEMENT)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    Ok(Stored {
        fenced,
        before,
        inserted,
        statements: count,
    })
}

/// Reports what this Worker can reach, in answer to a move's probe: each binding and the
/// newest migration applied to it (`None` if it cannot be read), at the probe's time.
pub async fn report_databases(
    control: &D1Database,
    reports: &[(String, Option<String>)],
    probe_at: i64,
) -> worker::Result<()> {
    let statements = reports
        .iter()
        .map(|(binding, migration)| {
            control
                .prepare(chat_core::sql::shards::REPORT_CONSUMER_DATABASE)
                .bind(&[
                    JsValue::from_str(binding),
                    migration
                        .as_deref()
                        .map_or(JsValue::NULL, JsValue::from_str),
                    JsValue::from(probe_at as f64),
                ])
        })
        .collect::<worker::Result<Vec<_>>>()?;
    control.batch(statements).await?;
    Ok(())
}

/// The newest migration applied to `db`.
pub async fn applied_migration(db: &D1Database) -> worker::Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Applied {
        name: String,
    }
    Ok(db
        .prepare(sql::APPLIED_MIGRATION)
        .first::<Applied>(None)
        .await?
        .map(|a| a.name))
}

/// The bucket map's overrides, from the control database.
pub async fn shard_overrides(control: &D1Database) -> worker::Result<Vec<Override>> {
    let rows = control
        .prepare(chat_core::sql::shards::SELECT_OVERRIDES)
        .all()
        .await?
        .results::<OverrideRow>()?;
    Ok(rows.iter().map(Override::from).collect())
}

/// Archives dead letters in one statement; `letters_json` is a JSON array of envelopes, cut
/// to size by the caller (`d1_limits::json_chunks`).
pub async fn store_letters(db: &D1Database, letters_json: &str, now_ms: i64) -> worker::Result<()> {
    fits_d1("the batch's dead letters", letters_json)?;
    db.prepare(sql::STORE_LETTERS)
        .bind(&[
            JsValue::from_str(letters_json),
            JsValue::from(now_ms as f64),
        ])?
        .run()
        .await?;
    Ok(())
}

/// Refuses what D1 would refuse, here and in every build, so that the local D1 (which has no
/// such limit) behaves as the deployed one does.
fn fits_d1(name: &str, value: &str) -> worker::Result<()> {
    chat_core::d1_limits::check_value(name, value.len()).map_err(worker::Error::RustError)
}

/// Sends envelopes to the dead-letter queue as JSON text, each within a message's size.
pub async fn send_letters(queue: &Queue, letters: &[Envelope]) -> worker::Result<()> {
    let texts: Vec<String> = letters
        .iter()
        .map(|l| l.encode_within(Envelope::MAX_BYTES))
        .collect();
    worker_support::queue::send_texts(queue, &texts)
        .await
        .map_err(|(_, e)| e)
}
