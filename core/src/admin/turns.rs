//! `POST /admin/turns` bodies: raw turn records, queued as given (the operators' way to put
//! a record on the queue, and the tests' way to send poison).

use super::{bad, object};
use crate::refusal::Refusal;
use serde_json::Value;

/// Largest single raw record `/admin/turns` queues (a queue message may be 128 KB).
pub const MAX_RAW_RECORD_BYTES: usize = 100 * 1024;

/// `POST /admin/turns` body: `{ "records": [...] }`. Each record is queued as given: a JSON
/// string as its text, anything else as its JSON text.
pub fn parse_raw_turns(body: &[u8]) -> Result<Vec<String>, Refusal> {
    let map = object(body)?;
    let Some(Value::Array(records)) = map.get("records") else {
        return Err(bad("invalid_field", "'records' must be an array"));
    };
    if records.is_empty() || records.len() > 1000 {
        return Err(bad(
            "invalid_field",
            "'records' must hold 1 to 1000 records",
        ));
    }
    records
        .iter()
        .map(|r| {
            let text = match r {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if text.len() > MAX_RAW_RECORD_BYTES {
                return Err(bad(
                    "invalid_field",
                    format!("a record is larger than {MAX_RAW_RECORD_BYTES} bytes"),
                ));
            }
            Ok(text)
        })
        .collect()
}
