//! An archive object: one session's oldest turns, as gzip-compressed JSON lines.
//!
//! The first line is a [`Header`] (format, player, session, counts, the time range, the
//! points); then one line per row, `chat_messages` rows first, `point_events` rows after,
//! each oldest first, and the session's `chat_sessions` row last when the object took it
//! (with its last turns), with D1's own column names (`"table"` says which). JSON lines
//! read with `zcat | jq` and any language's gzip.
//!
//! The key is `<user_id>/<session_id>/<first_at>-<last_at>-<hash>.jsonl.gz`: by player and
//! session, never by database, so a bucket move never touches R2, a player's objects are one
//! prefix (export and erasure list it), and a session's one prefix whose listing gives each
//! object's time range without reading it. The hash is of the uncompressed lines, so a run
//! that writes the same rows again writes the same key and the same bytes.
//!
//! An object a run wrote but did not commit (it stopped, or lost a race to a run that read
//! more rows) may hold rows another object holds too; never a row that is nowhere else. So
//! every reader takes a row once by its id.

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

/// A `chat_sessions` row, as D1 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub character_type: String,
    pub username: String,
    pub locale: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
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
    ChatSessions(SessionRow),
}

/// One object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub header: Header,
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
    /// The session's row, when the object took the session's last turns in D1.
    pub session: Option<SessionRow>,
}

/// An object that cannot be read back as an archive object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive object unreadable: {0}")]
pub struct Unreadable(pub String);

impl Part {
    /// The object of one session's turns (`messages` and `events` as the SQL read them).
    /// `None` when there is nothing to archive.
    pub fn new(
        messages: Vec<MessageRow>,
        events: Vec<EventRow>,
        session: Option<SessionRow>,
    ) -> Option<Self> {
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
            session,
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
        if let Some(row) = &self.session {
            out.push_str(
                &serde_json::to_string(&Line::ChatSessions(row.clone())).expect("rows serialize"),
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
            "{}/{}/{:013}-{:013}-{hex}.jsonl.gz",
            self.header.user_id, self.header.session_id, self.header.first_at, self.header.last_at
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
        let (mut messages, mut events, mut session) = (Vec::new(), Vec::new(), None);
        for line in lines {
            match serde_json::from_str(line).map_err(|e| Unreadable(format!("row: {e}")))? {
                Line::ChatMessages(m) => messages.push(m),
                Line::PointEvents(e) => events.push(e),
                Line::ChatSessions(s) => session = Some(s),
            }
        }
        if messages.len() != header.messages || events.len() != header.point_events {
            return Err(Unreadable("row counts differ from the header".into()));
        }
        Ok(Self {
            header,
            messages,
            events,
            session,
        })
    }
}

/// The prefix of a player's objects.
pub fn user_prefix(user_id: &str) -> String {
    format!("{user_id}/")
}

/// The prefix of a session's objects.
pub fn session_prefix(user_id: &str, session_id: &str) -> String {
    format!("{user_id}/{session_id}/")
}

/// An object's key as a listing gives it: the time range of its rows, read from the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub key: String,
    pub first_at: i64,
    pub last_at: i64,
}

impl ObjectKey {
    /// A key of [`Part::encode`]'s shape under `prefix`; anything else is not ours.
    pub fn parse(key: &str, prefix: &str) -> Option<Self> {
        let name = key.strip_prefix(prefix)?.strip_suffix(".jsonl.gz")?;
        let mut parts = name.split('-');
        let (first, last, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || hash.len() != 16 || first.len() != 13 || last.len() != 13 {
            return None;
        }
        Some(Self {
            key: key.to_owned(),
            first_at: first.parse().ok()?,
            last_at: last.parse().ok()?,
        })
    }
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
        let session = SessionRow {
            id: "s".into(),
            user_id: "u".into(),
            character_type: "kai".into(),
            username: "n".into(),
            locale: "en".into(),
            created_at: 1,
            ended_at: None,
        };
        let part = Part::new(
            vec![message("a", "user", 10), message("b", "agent", 12)],
            events,
            Some(session),
        )
        .unwrap();
        assert_eq!((part.header.turns, part.header.points), (1, -4));
        assert_eq!((part.header.first_at, part.header.last_at), (10, 12));
        let (key, bytes) = part.encode();
        assert!(key.starts_with("u/s/0000000000010-0000000000012-"), "{key}");
        let listed = ObjectKey::parse(&key, &session_prefix("u", "s")).unwrap();
        assert_eq!((listed.first_at, listed.last_at), (10, 12));
        assert_eq!(ObjectKey::parse(&key, "u/t/"), None);
        assert_eq!(ObjectKey::parse("u/s/notes.txt", "u/s/"), None);
        let back = Part::decode(&bytes).unwrap();
        assert_eq!(back, part);
        assert!(back.session.is_some(), "the session's row reads back");
        assert_eq!(part.encode().0, key, "the same rows, the same key");
        let mut other = part.clone();
        other.messages[0].content.push('!');
        assert_ne!(other.encode().0, key);
        assert!(Part::decode(b"not gzip").is_err());
        assert!(Part::new(Vec::new(), Vec::new(), None).is_none());
    }
}
