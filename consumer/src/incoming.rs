//! A queue message as the runtime hands it over, with what worker 0.8 does not expose.

use std::cell::Cell;
use worker::js_sys::{Object, Reflect, JSON};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::{Message, MessageBatch};

pub struct Incoming {
    raw: Message,
    pub id: String,
    /// The body as text: the chat Worker sends JSON text; anything else is serialized so the
    /// decoder can say what is wrong with it, and the dead letter keeps it.
    pub body: String,
    /// Deliveries so far, 1 on the first.
    pub attempts: u32,
    /// When it was sent, in epoch milliseconds.
    pub sent_at: i64,
    /// Whether it was acked (deleted from the queue: a billed operation).
    pub acked: Cell<bool>,
}

impl Incoming {
    /// Every message of `batch`, or why they cannot be read. A batch that cannot be read
    /// must be retried whole: treating it as empty would ack it unseen.
    pub fn all(batch: &MessageBatch) -> Result<Vec<Self>, String> {
        let messages = batch
            .messages()
            .map_err(|e| format!("the batch's messages cannot be read: {e:?}"))?;
        Ok(messages
            .iter()
            .map(|m| Self::new(m.unchecked_into()))
            .collect())
    }

    fn new(raw: Message) -> Self {
        let body = raw.body().unwrap_or(JsValue::UNDEFINED);
        let body = body.as_string().unwrap_or_else(|| {
            JSON::stringify(&body)
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default()
        });
        let attempts = Reflect::get(&raw, &"attempts".into())
            .ok()
            .and_then(|a| a.as_f64())
            .unwrap_or(1.0);
        Self {
            id: raw.id().map(String::from).unwrap_or_default(),
            sent_at: raw.timestamp().map(|d| d.get_time() as i64).unwrap_or(0),
            attempts: attempts.max(1.0) as u32,
            body,
            raw,
            acked: Cell::new(false),
        }
    }
}

impl chat_core::consumer::ports::Delivery for Incoming {
    fn id(&self) -> &str {
        &self.id
    }

    fn body(&self) -> &str {
        &self.body
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }

    fn sent_at(&self) -> i64 {
        self.sent_at
    }

    fn ack(&self) {
        match self.raw.ack() {
            Ok(()) => self.acked.set(true),
            Err(e) => tracing::error!(message_id = %self.id, error = ?e, "ack failed"),
        }
    }

    /// Retries after `delay_seconds`.
    fn retry(&self, delay_seconds: u32) {
        let options = Object::new();
        let _ = Reflect::set(
            &options,
            &"delaySeconds".into(),
            &JsValue::from(delay_seconds),
        );
        if let Err(e) = self.raw.retry(options.into()) {
            tracing::error!(message_id = %self.id, error = ?e, "retry failed");
        }
    }
}
