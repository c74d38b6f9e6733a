//! The consumer's ports (`chat_core::consumer::ports`) over its bindings: every D1 call of
//! this Worker, and its sends to the queues. The SQL lives in `chat_core::sql`. What they
//! cost (each statement's D1 `meta`, each send's queue operations) is counted in `usage`,
//! which the batch's log line reports.

use crate::config::{DEAD_LETTERS, TURNS};
use chat_core::consumer::ports::{Control, Ledgers, Queues, Stored, Write};
use chat_core::shards::{Override, OverrideRow, CONTROL};
use chat_core::sql;
use chat_core::usage::Usage;
use std::cell::RefCell;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

/// The Worker's bindings, as the core's flows take them, for one batch.
pub struct Bindings<'a> {
    env: &'a Env,
    /// What this batch's D1 statements and sends cost.
    pub usage: RefCell<Usage>,
}

impl<'a> Bindings<'a> {
    pub fn new(env: &'a Env) -> Self {
        Self {
            env,
            usage: RefCell::new(Usage::default()),
        }
    }

    fn d1(&self, binding: &str) -> Result<D1Database, String> {
        self.env.d1(binding).map_err(|e| e.to_string())
    }

    fn count<'r>(&self, results: impl IntoIterator<Item = &'r D1Result>) {
        worker_support::usage::d1_results(&mut self.usage.borrow_mut(), results);
    }

    // Every D1 call goes through these three: each waits what `FAULTS=slow` says
    // (`worker_support::d1::pause`, nothing in the deployable build) and counts its rows in
    // this batch's `usage`. `all`, never `first`: only `all` hands back the rows it read.

    async fn all(&self, statement: D1PreparedStatement) -> Result<D1Result, String> {
        worker_support::d1::pause().await;
        let result = statement.all().await.map_err(text)?;
        self.count([&result]);
        Ok(result)
    }

    async fn run(&self, statement: D1PreparedStatement) -> Result<D1Result, String> {
        worker_support::d1::pause().await;
        let result = statement.run().await.map_err(text)?;
        self.count([&result]);
        Ok(result)
    }

    async fn batch(
        &self,
        db: &D1Database,
        statements: Vec<D1PreparedStatement>,
    ) -> Result<Vec<D1Result>, String> {
        worker_support::d1::pause().await;
        let results = db.batch(statements).await.map_err(text)?;
        self.count(&results);
        Ok(results)
    }

    async fn send(&self, queue: &str, texts: &[String]) -> Result<(), String> {
        let queue = self.env.queue(queue).map_err(|e| e.to_string())?;
        let sent = worker_support::queue::send_texts(&queue, texts).await;
        let done = match &sent {
            Ok(()) => texts.len(),
            Err((n, _)) => *n,
        };
        self.usage
            .borrow_mut()
            .sent(texts[..done].iter().map(String::len));
        sent.map_err(|(_, e)| e.to_string())
    }
}

fn text(e: worker::Error) -> String {
    e.to_string()
}

/// Refuses what D1 would refuse, here and in every build, so that the local D1 (which has no
/// such limit) behaves as the deployed one does.
fn fits_d1(name: &str, value: &str) -> Result<(), String> {
    chat_core::d1_limits::check_value(name, value.len())
}

impl Ledgers for Bindings<'_> {
    fn bindings(&self) -> Vec<String> {
        worker_support::env::database_bindings(self.env)
    }

    fn has(&self, binding: &str) -> bool {
        self.env.d1(binding).is_ok()
    }

    /// Every statement of `sql::apply_turns` in ONE `D1Database::batch`, each binding the
    /// chunk's one JSON parameter.
    async fn apply_turns(&self, binding: &str, write: &Write<'_>) -> Result<Stored, String> {
        fits_d1("the batch's turns", write.json)?;
        let db = self.d1(binding)?;
        let param = [JsValue::from_str(write.json)];
        let statements = sql::apply_turns()
            .iter()
            .map(|s| db.prepare(*s).bind(&param))
            .collect::<worker::Result<Vec<_>>>()
            .map_err(text)?;
        let count = statements.len();
        let results = self.batch(&db, statements).await?;
        #[derive(serde::Deserialize)]
        struct Fence {
            bucket: String,
        }
        let fenced = match results.get(sql::FENCED_STATEMENT) {
            Some(r) => r
                .results::<Fence>()
                .map_err(text)?
                .into_iter()
                .map(|f| f.bucket)
                .collect(),
            None => Vec::new(),
        };
        let before = match results.get(sql::STORED_STATEMENT) {
            Some(r) => r.results().map_err(text)?,
            None => Vec::new(),
        };
        #[derive(serde::Deserialize)]
        struct Erased {
            turn_id: String,
        }
        let erased = match results.get(sql::ERASED_STATEMENT) {
            Some(r) => r
                .results::<Erased>()
                .map_err(text)?
                .into_iter()
                .map(|e| e.turn_id)
                .collect(),
            None => Vec::new(),
        };
        let archived = match results.get(sql::ARCHIVED_STATEMENT) {
            Some(r) => r.results().map_err(text)?,
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
            archived,
            erased,
            inserted,
            statements: count,
        })
    }

    async fn archived_turns(
        &self,
        lookups: &[chat_core::archive::Lookup],
    ) -> Result<Vec<chat_core::batch::StoredTurn>, String> {
        let store = worker_support::r2::R2Store::from_env(self.env)?;
        chat_core::archive::stored_turns(&store, lookups).await
    }

    async fn applied_migration(&self, binding: &str) -> Result<Option<String>, String> {
        #[derive(serde::Deserialize)]
        struct Applied {
            name: String,
        }
        let result = self
            .all(self.d1(binding)?.prepare(sql::APPLIED_MIGRATION))
            .await?;
        let rows = result.results::<Applied>().map_err(text)?;
        Ok(rows.into_iter().next().map(|a| a.name))
    }
}

impl Control for Bindings<'_> {
    async fn overrides(&self) -> Result<Vec<Override>, String> {
        let rows = self
            .all(self.d1(CONTROL)?.prepare(sql::shards::SELECT_OVERRIDES))
            .await?;
        let rows = rows.results::<OverrideRow>().map_err(text)?;
        Ok(rows.iter().map(Override::from).collect())
    }

    async fn report_databases(
        &self,
        reports: &[(String, Option<String>)],
        probe_at: i64,
    ) -> Result<(), String> {
        let control = self.d1(CONTROL)?;
        let statements = reports
            .iter()
            .map(|(binding, migration)| {
                control
                    .prepare(sql::shards::REPORT_CONSUMER_DATABASE)
                    .bind(&[
                        JsValue::from_str(binding),
                        migration
                            .as_deref()
                            .map_or(JsValue::NULL, JsValue::from_str),
                        JsValue::from(probe_at as f64),
                    ])
            })
            .collect::<worker::Result<Vec<_>>>()
            .map_err(text)?;
        self.batch(&control, statements).await?;
        Ok(())
    }

    async fn store_letters(&self, letters_json: &str, now_ms: i64) -> Result<(), String> {
        fits_d1("the batch's dead letters", letters_json)?;
        let statement = self
            .d1(CONTROL)?
            .prepare(sql::STORE_LETTERS)
            .bind(&[
                JsValue::from_str(letters_json),
                JsValue::from(now_ms as f64),
            ])
            .map_err(text)?;
        self.run(statement).await?;
        Ok(())
    }
}

impl Queues for Bindings<'_> {
    async fn send_turns(&self, bodies: &[String]) -> Result<(), String> {
        self.send(TURNS, bodies).await
    }

    async fn send_letters(&self, texts: &[String]) -> Result<(), String> {
        self.send(DEAD_LETTERS, texts).await
    }
}
