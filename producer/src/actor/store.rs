//! The session actor's rows: its SQLite storage as the turn runner's store
//! (`chat_core::turn::SessionStore`), with `chat_core::sql::actor`'s statements, and the rows
//! only the Durable Object has (tickets, the last live turn, expiring answers). Each write
//! method is a run of statements with no `await` between them, which the runtime commits as
//! one transaction. Every statement's rows read and written (the cursor's own counts) go to
//! the isolate's usage meter.

use chat_core::domain::IdempotencyKey;
use chat_core::record::TurnRecord;
use chat_core::session::{
    message_sha256, AnsweredKey, RememberedTurn, SessionRow, SessionState, ANSWER_KEEP_MS,
};
use chat_core::sql::actor as sql;
use chat_core::turn::{Binding, SessionStore, StoreError, Unconfirmed};
use serde::de::DeserializeOwned;
use serde::Deserialize;
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

/// What an operator sees of an actor (`GET /admin/sessions/{id}`).
#[derive(Deserialize)]
pub struct Counts {
    pub turns_held: i64,
    pub turns_unconfirmed: i64,
    pub keys_held: i64,
    pub answers_held: i64,
    pub tickets_held: i64,
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

/// The actor's storage.
pub struct ActorStore {
    pub sql: SqlStorage,
}

impl ActorStore {
    pub fn new(sql: SqlStorage) -> Self {
        Self { sql }
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

    /// Tickets still good at `now_ms`.
    pub fn live_tickets(&self, now_ms: i64) -> Result<i64, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            n: i64,
        }
        Ok(self
            .rows::<Row>(sql::LIVE_TICKETS, vec![int(now_ms)])?
            .first()
            .map_or(0, |r| r.n))
    }

    /// Keeps a ticket's nonce for a sign-in until `expires_at`, dropping expired ones.
    pub fn keep_ticket(
        &self,
        nonce: &str,
        sign_in_json: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.prune_tickets(now_ms)?;
        self.exec(
            sql::INSERT_TICKET,
            vec![text(nonce), text(sign_in_json), int(expires_at)],
        )
    }

    /// Drops the tickets that expired by `now_ms`; answers when the next one expires.
    pub fn prune_tickets(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        self.exec(sql::PRUNE_TICKETS, vec![int(now_ms)])?;
        #[derive(Deserialize)]
        struct Next {
            at: Option<i64>,
        }
        Ok(self
            .rows::<Next>(sql::NEXT_TICKET_EXPIRY, vec![])?
            .into_iter()
            .next()
            .and_then(|n| n.at))
    }

    /// Uses a ticket: the sign-in it was minted for, once.
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

    pub fn last_live_turn(&self) -> Result<Option<LiveTurn>, StoreError> {
        Ok(self.rows(sql::LAST_LIVE_TURN, vec![])?.into_iter().next())
    }
}

impl SessionStore for ActorStore {
    fn session(&self) -> Result<Option<SessionState>, StoreError> {
        let rows: Vec<SessionRow> = self.rows(sql::SELECT_SESSION, vec![])?;
        rows.into_iter()
            .next()
            .map(|row| row.into_state().map_err(StoreError))
            .transpose()
    }

    fn answered_key(&self, key: &IdempotencyKey) -> Result<Option<AnsweredKey>, StoreError> {
        Ok(self
            .rows(sql::SELECT_KEY, vec![text(key)])?
            .into_iter()
            .next())
    }

    fn unconfirmed(&self) -> Result<Vec<Unconfirmed>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            slot: i64,
            record: String,
        }
        self.rows::<Row>(sql::UNCONFIRMED_TURNS, vec![])?
            .into_iter()
            .map(|r| {
                TurnRecord::decode(&r.record)
                    .map(|record| Unconfirmed {
                        slot: r.slot,
                        record,
                    })
                    .map_err(|e| StoreError(e.to_string()))
            })
            .collect()
    }

    fn recent_turns(&self, n: u32) -> Result<Vec<RememberedTurn>, StoreError> {
        self.rows(sql::RECENT_TURNS, vec![int(i64::from(n))])
    }

    fn last_frame_base(&self) -> Result<Option<i64>, StoreError> {
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

    fn bind(&self, turn: &Binding<'_>) -> Result<(), StoreError> {
        let r = turn.record;
        self.exec(
            sql::BIND_TURN,
            vec![
                int(turn.seq),
                int(i64::from(turn.keep)),
                text(r.turn_id),
                text(&r.user_message.content),
                text(&r.agent_message.content),
                int(i64::from(r.score.raw)),
                text(r.agent_message.emotion.as_str()),
                int(r.user_message.created_at),
                int(turn.frame_base),
                text(r.encode()),
            ],
        )?;
        if let Some(key) = turn.key {
            self.exec(
                sql::INSERT_KEY,
                vec![
                    text(key),
                    text(message_sha256(&r.user_message.content)),
                    text(r.turn_id),
                    text(turn.answer),
                    int(turn.now_ms),
                ],
            )?;
        }
        Ok(())
    }

    fn unbind(&self, slot: i64, record: &TurnRecord) -> Result<(), StoreError> {
        self.exec(sql::UNBIND_TURN, vec![int(slot), text(record.turn_id)])
    }

    fn confirm(&self, slot: i64, record: &TurnRecord, keep: u32) -> Result<(), StoreError> {
        self.exec(sql::CLEAR_RECORD, vec![int(slot), text(record.turn_id)])?;
        self.exec(sql::PRUNE_TURNS, vec![int(i64::from(keep))])?;
        if record.game_over {
            self.exec(sql::END_SESSION, vec![int(record.user_message.created_at)])?;
        }
        Ok(())
    }
}
