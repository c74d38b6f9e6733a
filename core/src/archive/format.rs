//! An archive object: one session's oldest turns, as gzip-compressed JSON lines.
//!
//! The first line is a [`Header`] (format, player, session, counts, the time range, the
//! points); then one line per row, `chat_messages` rows first and `point_events` rows
//! after, each oldest first, with D1's own column names (`"table"` says which). JSON lines
//! read with `zcat | jq` and any language's gzip; gzip halves the text of a turn or better.
//!
//! The key is `<user_id>/<session_id>/<first_at>-<hash>.jsonl.gz`: by player and session,
//! never by database, so a bucket move never touches R2, and a player's objects are one
//! prefix (export and erasure list it). The hash is of the uncompressed lines, so a run
//! that writes the same rows again writes the same key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// The first line's `format`.
pub const FORMAT: &str = "chat-archive/1";

/// A `chat_messages` row, as D1 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub user_id: String,
    pub session_id: String,
    pub role: String,
    pub content: String,
    pub score_raw: Option<i64>,
    pub score_adjusted: Option<i64>,
    pub emotion: Option<String>,
    pub created_at: i64,
}

/// A `point_events` row, as D1 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub user_id: String,
    pub session_id: String,
    pub message_id: Option<String>,
    pub delta: i64,
    pub reason: String,
    pub metadata_json: String,
    pub created_at: i64,
}

/// The first line of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: String,
    pub user_id: String,
    pub session_id: String,
    pub turns: usize,
    pub messages: usize,
    pub point_events: usize,
    pub points: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// A row line: the table it came from, and its columns.
#[derive(Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
enum Line {
    ChatMessages(MessageRow),
    PointEvents(EventRow),
}

/// One object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub header: Header,
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
}

/// An object that cannot be read back as an archive object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive object unreadable: {0}")]
pub struct Unreadable(pub String);

impl Part {
    /// The object of one session's turns (`messages` and `events` as the SQL read them).
    /// `None` when there is nothing to archive.
    pub fn new(messages: Vec<MessageRow>, events: Vec<EventRow>) -> Option<Self> {
        let first = messages.first()?;
        let times = messages
            .iter()
            .map(|m| m.created_at)
            .chain(events.iter().map(|e| e.created_at));
        let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        Some(Self {
            header: Header {
                format: FORMAT.to_owned(),
                user_id: first.user_id.clone(),
                session_id: first.session_id.clone(),
                turns: messages.iter().filter(|m| m.role == "user").count(),
                messages: messages.len(),
                point_events: events.len(),
                points: events.iter().map(|e| e.delta).sum(),
                first_at: lo,
                last_at: hi,
            },
            messages,
            events,
        })
    }

    /// The JSON lines, uncompressed.
    pub fn lines(&self) -> String {
        let mut out = serde_json::to_string(&self.header).expect("a header serializes");
        out.push('\n');
        for m in &self.messages {
            out.push_str(
                &serde_json::to_string(&Line::ChatMessages(m.clone())).expect("rows serialize"),
            );
            out.push('\n');
        }
        for e in &self.events {
            out.push_str(
                &serde_json::to_string(&Line::PointEvents(e.clone())).expect("rows serialize"),
            );
            out.push('\n');
        }
        out
    }

    /// The object's key and its bytes (gzip of [`Self::lines`]).
    pub fn encode(&self) -> (String, Vec<u8>) {
        let lines = self.lines();
        let hash = Sha256::digest(lines.as_bytes());
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let key = format!(
            "{}/{}/{:013}-{hex}.jsonl.gz",
            self.header.user_id, self.header.session_id, self.header.first_at
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(lines.as_bytes()).expect("writing to memory");
        (key, gz.finish().expect("writing to memory"))
    }

    /// Reads an object's bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, Unreadable> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Unreadable(format!("not gzip text: {e}")))?;
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap_or_default())
            .map_err(|e| Unreadable(format!("header: {e}")))?;
        if header.format != FORMAT {
            return Err(Unreadable(format!("unknown format {}", header.format)));
        }
        let (mut messages, mut events) = (Vec::new(), Vec::new());
        for line in lines {
            match serde_json::from_str(line).map_err(|e| Unreadable(format!("row: {e}")))? {
                Line::ChatMessages(m) => messages.push(m),
                Line::PointEvents(e) => events.push(e),
            }
        }
        if messages.len() != header.messages || events.len() != header.point_events {
            return Err(Unreadable("row counts differ from the header".into()));
        }
        Ok(Self {
            header,
            messages,
            events,
        })
    }
}

/// The prefix of a player's objects.
pub fn user_prefix(user_id: &str) -> String {
    format!("{user_id}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, role: &str, at: i64) -> MessageRow {
        MessageRow {
            id: id.into(),
            user_id: "u".into(),
            session_id: "s".into(),
            role: role.into(),
            content: "héllo \"quoted\"\nline".into(),
            score_raw: Some(3),
            score_adjusted: None,
            emotion: None,
            created_at: at,
        }
    }

    #[test]
    fn an_object_reads_back_whole_and_keys_by_content() {
        let events = vec![EventRow {
            id: "e".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            message_id: Some("a".into()),
            delta: -4,
            reason: "turn".into(),
            metadata_json: "{}".into(),
            created_at: 12,
        }];
        let part = Part::new(
            vec![message("a", "user", 10), message("b", "agent", 12)],
            events,
        )
        .unwrap();
        assert_eq!((part.header.turns, part.header.points), (1, -4));
        assert_eq!((part.header.first_at, part.header.last_at), (10, 12));
        let (key, bytes) = part.encode();
        assert!(key.starts_with("u/s/0000000000010-"), "{key}");
        assert_eq!(Part::decode(&bytes).unwrap(), part);
        assert_eq!(part.encode().0, key, "the same rows, the same key");
        let mut other = part.clone();
        other.messages[0].content.push('!');
        assert_ne!(other.encode().0, key);
        assert!(Part::decode(b"not gzip").is_err());
        assert!(Part::new(Vec::new(), Vec::new()).is_none());
    }
}
