//! The session actor's rows: its SQLite storage as the turn flow's store
//! (`chat_core::turn::SessionStore`), with `chat_core::sql::actor`'s statements, and the rows
//! only the Durable Object has (tickets, the last live turn, expiring answers). Each write
//! method is a run of statements with no `await` between them, which the runtime commits as
//! one transaction. Every statement's rows read and written (the cursor's own counts) go to
//! the isolate's usage meter.

use chat_core::character::{Character, Locale};
use chat_core::record::TurnRecord;
use chat_core::session::{message_sha256, AnsweredKey, SessionState, StoredTurn, ANSWER_KEEP_MS};
use chat_core::sql::actor as sql;
use chat_core::turn::{SessionStore, StoreError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::cell::Cell;
use std::rc::Rc;
use worker::{SqlStorage, SqlStorageValue};

pub fn int(n: i64) -> SqlStorageValue {
    SqlStorageValue::Integer(n)
}

pub fn text(s: impl ToString) -> SqlStorageValue {
    SqlStorageValue::String(s.to_string())
}

fn store_error(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

/// The `session` row as stored (enums as text).
#[derive(Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub character_type: String,
    pub locale: String,
    pub username: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

impl SessionRow {
    pub fn into_state(self) -> Result<SessionState, StoreError> {
        let bad = |what: &str| StoreError(format!("the actor holds a bad {what}"));
        Ok(SessionState {
            id: self.id.parse().map_err(|_| bad("session id"))?,
            user_id: self.user_id.parse().map_err(|_| bad("user id"))?,
            character_type: Character::parse(&self.character_type)
                .ok_or_else(|| bad("character"))?,
            locale: Locale::parse(&self.locale).ok_or_else(|| bad("locale"))?,
            username: self.username,
            created_at: self.created_at,
            ended_at: self.ended_at,
        })
    }
}

/// What an operator sees of an actor (`GET /admin/sessions/{id}`).
#[derive(Deserialize)]
pub struct Counts {
    pub turns_held: i64,
    pub turns_unconfirmed: i64,
    pub keys_held: i64,
    pub answers_held: i64,
}

/// The last confirmed turn with live frames ([`sql::LAST_LIVE_TURN`]).
#[derive(Deserialize)]
pub struct LiveTurn {
    pub base: i64,
    pub message: String,
    pub reply: String,
    pub key: Option<String>,
    pub answer: Option<String>,
}

/// The actor's storage. `frame_base` is the live frames' base of the turn being played,
/// written with its row (the turn's sink sets it when the turn begins).
pub struct ActorStore {
    pub sql: SqlStorage,
    pub frame_base: Rc<Cell<Option<i64>>>,
}

impl ActorStore {
    pub fn new(sql: SqlStorage) -> Self {
        Self {
            sql,
            frame_base: Rc::new(Cell::new(None)),
        }
    }

    pub fn exec(&self, statement: &str, params: Vec<SqlStorageValue>) -> Result<(), StoreError> {
        let params = if params.is_empty() {
            None
        } else {
            Some(params)
        };
        let cursor = self.sql.exec(statement, params).map_err(store_error)?;
        worker_support::usage::actor_rows(&cursor);
        Ok(())
    }

    pub fn rows<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, StoreError> {
        let params = if params.is_empty() {
            None
        } else {
            Some(params)
        };
        let cursor = self.sql.exec(statement, params).map_err(store_error)?;
        let rows = cursor.to_array().map_err(store_error);
        worker_support::usage::actor_rows(&cursor);
        rows
    }

    pub fn start(&self, s: &SessionState) -> Result<(), StoreError> {
        for statement in sql::SCHEMA {
            self.exec(statement, vec![])?;
        }
        self.exec(
            sql::INSERT_SESSION,
            vec![
                text(s.id),
                text(s.user_id),
                text(s.character_type.as_str()),
                text(s.locale.as_str()),
                text(&s.username),
                int(s.created_at),
                s.ended_at.map_or(SqlStorageValue::Null, int),
            ],
        )
    }

    /// Drops the answers that expired by `now_ms`; returns when the next one expires.
    pub fn expire_answers(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        self.exec(sql::FORGET_ANSWERS, vec![int(now_ms - ANSWER_KEEP_MS)])?;
        #[derive(Deserialize)]
        struct Oldest {
            at: Option<i64>,
        }
        let oldest: Vec<Oldest> = self.rows(sql::OLDEST_ANSWER, vec![])?;
        Ok(oldest
            .into_iter()
            .next()
            .and_then(|o| o.at)
            .map(|at| at + ANSWER_KEEP_MS))
    }

    /// Keeps a ticket's nonce for `identity` until `expires_at`, dropping expired ones.
    pub fn keep_ticket(
        &self,
        nonce: &str,
        identity_json: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.exec(sql::PRUNE_TICKETS, vec![int(now_ms)])?;
        self.exec(
            sql::INSERT_TICKET,
            vec![text(nonce), text(identity_json), int(expires_at)],
        )
    }

    /// Uses a ticket: the identity it was minted for, once.
    pub fn take_ticket(&self, nonce: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            identity: String,
        }
        Ok(self
            .rows::<Row>(sql::TAKE_TICKET, vec![text(nonce), int(now_ms)])?
            .into_iter()
            .next()
            .map(|r| r.identity))
    }

    pub fn last_frame_base(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            base: Option<i64>,
        }
        Ok(self
            .rows::<Row>(sql::LAST_FRAME_BASE, vec![])?
            .into_iter()
            .next()
            .and_then(|r| r.base))
    }

    pub fn last_live_turn(&self) -> Result<Option<LiveTurn>, StoreError> {
        Ok(self.rows(sql::LAST_LIVE_TURN, vec![])?.into_iter().next())
    }

    fn turn_values(&self, r: &TurnRecord) -> Vec<SqlStorageValue> {
        vec![
            text(r.turn_id),
            text(&r.user_message.content),
            text(&r.agent_message.content),
            int(i64::from(r.score.raw)),
            text(r.agent_message.emotion.as_str()),
            int(r.user_message.created_at),
            self.frame_base.get().map_or(SqlStorageValue::Null, int),
        ]
    }
}

impl SessionStore for ActorStore {
    fn session(&self) -> Result<Option<SessionState>, StoreError> {
        let rows: Vec<SessionRow> = self.rows(sql::SELECT_SESSION, vec![])?;
        rows.into_iter()
            .next()
            .map(SessionRow::into_state)
            .transpose()
    }

    fn answered_key(&self, key: &str) -> Result<Option<AnsweredKey>, StoreError> {
        Ok(self
            .rows(sql::SELECT_KEY, vec![text(key)])?
            .into_iter()
            .next())
    }

    fn unconfirmed(&self) -> Result<Vec<TurnRecord>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            record: String,
        }
        self.rows::<Row>(sql::UNCONFIRMED_TURNS, vec![])?
            .iter()
            .map(|r| TurnRecord::decode(&r.record).map_err(|e| StoreError(e.to_string())))
            .collect()
    }

    fn recent_turns(&self, n: u32) -> Result<Vec<StoredTurn>, StoreError> {
        self.rows(sql::RECENT_TURNS, vec![int(i64::from(n))])
    }

    fn bind(
        &self,
        record: &TurnRecord,
        key: &str,
        answer: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut values = self.turn_values(record);
        values.push(text(record.encode()));
        self.exec(sql::BIND_TURN, values)?;
        self.exec(
            sql::INSERT_KEY,
            vec![
                text(key),
                text(message_sha256(&record.user_message.content)),
                text(record.turn_id),
                text(answer),
                int(now_ms),
            ],
        )
    }

    fn confirm(&self, record: &TurnRecord, keep: u32) -> Result<(), StoreError> {
        self.exec(sql::CLEAR_RECORD, vec![text(record.turn_id)])?;
        self.exec(sql::INSERT_CONFIRMED, self.turn_values(record))?;
        self.exec(sql::PRUNE_TURNS, vec![int(i64::from(keep))])?;
        if record.game_over {
            self.exec(sql::END_SESSION, vec![int(record.user_message.created_at)])?;
        }
        Ok(())
    }
}
