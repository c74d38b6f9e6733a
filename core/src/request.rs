//! The chat API's request bodies: parsing and validation, with an error code and a message a
//! client can act on. Unknown fields are ignored so older and newer game clients both work.

use crate::character::{Character, Locale};
use crate::domain::SessionId;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest request body read, in bytes. Larger bodies are refused before parsing.
pub const MAX_BODY_BYTES: usize = 32 * 1024;
/// Longest chat message, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 40;

// Every refusal here is a 400 (`Refusal::invalid`) but a body too large (413).
use crate::refusal::{Kind, Refusal};

/// `POST /api/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub character: Character,
    pub username: String,
    pub locale: Locale,
}

/// `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    pub session_id: SessionId,
    pub message: String,
    /// Overrides the session's locale for this reply when present.
    pub locale: Option<Locale>,
}

/// Parses a JSON object body, refusing anything that is not one.
fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large(MAX_BODY_BYTES));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Refusal::invalid(
            "invalid_body",
            "the body must be a JSON object",
        )),
        Err(e) => Err(Refusal::invalid(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// The error for a body over `max` bytes.
pub fn too_large(max: usize) -> Refusal {
    Refusal::new(
        Kind::TooLarge,
        "body_too_large",
        format!("the body must be at most {max} bytes"),
    )
}

fn required_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, Refusal> {
    match map.get(field) {
        None | Some(Value::Null) => Err(Refusal::invalid(
            "missing_field",
            format!("'{field}' is required"),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Refusal::invalid(
            "invalid_field",
            format!("'{field}' must be a string"),
        )),
    }
}

fn locale(map: &Map<String, Value>) -> Result<Option<Locale>, Refusal> {
    match map.get("locale") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Locale::parse(s)
            .map(Some)
            .ok_or_else(|| Refusal::invalid("invalid_field", "'locale' must be \"ja\" or \"en\"")),
        Some(_) => Err(Refusal::invalid(
            "invalid_field",
            "'locale' must be \"ja\" or \"en\"",
        )),
    }
}

/// Text a person typed: trimmed, non-empty, bounded, no control characters but newlines/tabs.
fn text(field: &str, value: &str, max_chars: usize) -> Result<String, Refusal> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Refusal::invalid(
            "empty_field",
            format!("'{field}' must not be empty"),
        ));
    }
    if trimmed.chars().count() > max_chars {
        return Err(Refusal::invalid(
            "field_too_long",
            format!("'{field}' must be at most {max_chars} characters"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Refusal::invalid(
            "invalid_field",
            format!("'{field}' must not contain control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

impl NewSession {
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let map = object(body)?;
        let character = required_str(&map, "characterType")?;
        let character = Character::parse(character).ok_or_else(|| {
            let known: Vec<_> = Character::ALL.iter().map(|c| c.as_str()).collect();
            Refusal::invalid(
                "invalid_field",
                format!("'characterType' must be one of {}", known.join(", ")),
            )
        })?;
        let username = text(
            "username",
            required_str(&map, "username")?,
            MAX_USERNAME_CHARS,
        )?;
        let locale = locale(&map)?
            .ok_or_else(|| Refusal::invalid("missing_field", "'locale' is required"))?;
        Ok(Self {
            character,
            username,
            locale,
        })
    }
}

impl ChatTurn {
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let map = object(body)?;
        let session_id = SessionId::parse(required_str(&map, "sessionId")?).ok_or_else(|| {
            Refusal::invalid("invalid_field", "'sessionId' must be a session id (a UUID)")
        })?;
        let message = text("message", required_str(&map, "message")?, MAX_MESSAGE_CHARS)?;
        Ok(Self {
            session_id,
            message,
            locale: locale(&map)?,
        })
    }
}

/// Parses an id as we print them: a hyphenated UUID. Anything else (paths, braces, URNs)
/// is not an id of ours.
pub fn parse_id(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// Most players `GET /api/leaderboard` returns; 10 unless `?limit=` asks otherwise.
pub const MAX_LEADERBOARD: u32 = 100;

/// `GET /api/leaderboard?limit=1..100`: how many players.
pub fn leaderboard_limit<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<u32, Refusal> {
    let mut limit = 10;
    for (key, value) in pairs {
        if key == "limit" {
            limit = value
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LEADERBOARD).contains(n))
                .ok_or_else(|| {
                    Refusal::invalid(
                        "invalid_query",
                        format!("'limit' must be a whole number from 1 to {MAX_LEADERBOARD}"),
                    )
                })?;
        }
    }
    Ok(limit)
}

/// Most messages one page of a session's history holds; `?limit=` asks for fewer.
pub const MAX_HISTORY_PAGE: u32 = 1000;

/// Where a page of history ends: the position (time, id) of the oldest message already
/// seen. The next page holds the messages before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    pub created_at: i64,
    pub id: Uuid,
    /// A hash of the session the cursor was given out for: a cursor of another session is
    /// refused, never read against this one.
    pub session_tag: u32,
}

/// The first 4 bytes of SHA-256("history-cursor\n" + session id).
fn session_tag(session: Uuid) -> u32 {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("history-cursor\n{session}").as_bytes());
    u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
}

impl MessageCursor {
    /// The cursor before the message `(created_at, id)` of `session`.
    pub fn new(created_at: i64, id: Uuid, session: Uuid) -> Self {
        Self {
            created_at,
            id,
            session_tag: session_tag(session),
        }
    }

    /// Whether this cursor was given out for `session`.
    pub fn belongs_to(&self, session: Uuid) -> bool {
        self.session_tag == session_tag(session)
    }

    /// `<created_at>.<id>.<tag>`: the time and id name a message, never a tier, so the same
    /// cursor reads on whether the message is in D1 or in the archive by then.
    pub fn encode(&self) -> String {
        format!("{}.{}.{:08x}", self.created_at, self.id, self.session_tag)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let (at, id, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || tag.len() != 8 {
            return None;
        }
        Some(Self {
            created_at: at.parse().ok().filter(|t: &i64| *t >= 0)?,
            id: parse_id(id)?,
            session_tag: u32::from_str_radix(tag, 16).ok()?,
        })
    }
}

/// `GET /api/sessions/{id}/messages?limit=&before=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub limit: u32,
    pub before: Option<MessageCursor>,
}

impl HistoryQuery {
    /// Reads the query's pairs; unknown parameters are ignored, as unknown JSON fields are.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Refusal> {
        let mut query = Self {
            limit: MAX_HISTORY_PAGE,
            before: None,
        };
        for (key, value) in pairs {
            match key {
                "limit" => {
                    query.limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                        .ok_or_else(|| {
                            Refusal::invalid(
                                "invalid_query",
                                format!(
                                    "'limit' must be a whole number from 1 to {MAX_HISTORY_PAGE}"
                                ),
                            )
                        })?
                }
                "before" => {
                    query.before = Some(MessageCursor::parse(value).ok_or_else(|| {
                        Refusal::invalid(
                            "invalid_query",
                            "'before' must be a nextBefore value this API gave out",
                        )
                    })?)
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

#[cfg(test)]
mod leaderboard_tests {
    use super::*;

    #[test]
    fn leaderboard_limits() {
        assert_eq!(leaderboard_limit([]), Ok(10));
        assert_eq!(leaderboard_limit([("limit", "100"), ("x", "y")]), Ok(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert_eq!(
                leaderboard_limit([("limit", bad)]).unwrap_err().code,
                "invalid_query",
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Refusal>) -> &'static str {
        r.unwrap_err().code
    }

    #[test]
    fn new_session_parses() {
        let s = NewSession::parse(
            br#"{"characterType":"rin","username":" Aki ","locale":"ja","extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            NewSession {
                character: Character::Rin,
                username: "Aki".into(),
                locale: Locale::Ja
            }
        );
    }

    #[test]
    fn new_session_refuses_bad_bodies() {
        assert_eq!(code(NewSession::parse(b"{")), "malformed_json");
        assert_eq!(code(NewSession::parse(b"[]")), "invalid_body");
        assert_eq!(
            code(NewSession::parse(br#"{"username":"a","locale":"ja"}"#)),
            "missing_field"
        );
        assert_eq!(
            code(NewSession::parse(
                br#"{"characterType":"zeus","username":"a","locale":"ja"}"#
            )),
            "invalid_field"
        );
        assert_eq!(
            code(NewSession::parse(
                br#"{"characterType":"rin","username":5,"locale":"ja"}"#
            )),
            "invalid_field"
        );
        assert_eq!(
            code(NewSession::parse(
                br#"{"characterType":"rin","username":"  ","locale":"ja"}"#
            )),
            "empty_field"
        );
        assert_eq!(
            code(NewSession::parse(
                br#"{"characterType":"rin","username":"a","locale":"fr"}"#
            )),
            "invalid_field"
        );
        assert_eq!(
            code(NewSession::parse(
                br#"{"characterType":"rin","username":"a"}"#
            )),
            "missing_field"
        );
        let long = format!(
            r#"{{"characterType":"rin","username":"{}","locale":"en"}}"#,
            "a".repeat(41)
        );
        assert_eq!(code(NewSession::parse(long.as_bytes())), "field_too_long");
    }

    #[test]
    fn chat_turn_parses() {
        let id = "0190a8c4-1234-7abc-8def-0123456789ab";
        let t = ChatTurn::parse(format!(r#"{{"sessionId":"{id}","message":"hi 🙂"}}"#).as_bytes())
            .unwrap();
        assert_eq!(t.session_id.to_string(), id);
        assert_eq!((t.message.as_str(), t.locale), ("hi 🙂", None));
    }

    #[test]
    fn chat_turn_refuses_bad_bodies() {
        let id = "0190a8c4-1234-7abc-8def-0123456789ab";
        let body = |m: &str| format!(r#"{{"sessionId":"{id}","message":{m}}}"#);
        assert_eq!(
            code(ChatTurn::parse(body("\"\"").as_bytes())),
            "empty_field"
        );
        assert_eq!(
            code(ChatTurn::parse(body("null").as_bytes())),
            "missing_field"
        );
        assert_eq!(
            code(ChatTurn::parse(body("[1]").as_bytes())),
            "invalid_field"
        );
        assert_eq!(
            code(ChatTurn::parse(body("\"a\\u0000b\"").as_bytes())),
            "invalid_field"
        );
        let long = format!("\"{}\"", "あ".repeat(MAX_MESSAGE_CHARS + 1));
        assert_eq!(
            code(ChatTurn::parse(body(&long).as_bytes())),
            "field_too_long"
        );
        let max = format!("\"{}\"", "あ".repeat(MAX_MESSAGE_CHARS));
        assert!(ChatTurn::parse(body(&max).as_bytes()).is_ok());
        assert_eq!(
            code(ChatTurn::parse(
                br#"{"sessionId":"../etc/passwd","message":"a"}"#
            )),
            "invalid_field"
        );
        assert_eq!(
            code(ChatTurn::parse(&vec![b' '; MAX_BODY_BYTES + 1])),
            "body_too_large"
        );
    }

    #[test]
    fn ids_must_be_hyphenated_uuids() {
        assert!(parse_id("0190a8c4-1234-7abc-8def-0123456789ab").is_some());
        assert!(parse_id("0190a8c412347abc8def0123456789ab").is_none());
        assert!(parse_id("{0190a8c4-1234-7abc-8def-0123456789ab}").is_none());
    }

    #[test]
    fn history_queries_page_backwards_strictly() {
        let q = HistoryQuery::parse([]).unwrap();
        assert_eq!((q.limit, q.before), (MAX_HISTORY_PAGE, None));
        let cursor = MessageCursor::new(1_700_000_000_123, Uuid::from_u128(42), Uuid::from_u128(7));
        assert!(cursor.belongs_to(Uuid::from_u128(7)) && !cursor.belongs_to(Uuid::from_u128(8)));
        let text = cursor.encode();
        let q =
            HistoryQuery::parse([("limit", "7"), ("before", text.as_str()), ("x", "y")]).unwrap();
        assert_eq!((q.limit, q.before), (7, Some(cursor)));
        for (k, v) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "-1"),
            ("limit", "ten"),
            ("before", ""),
            ("before", "123"),
            ("before", "abc.00000000-0000-0000-0000-00000000002a"),
            ("before", "-5.00000000-0000-0000-0000-00000000002a"),
            ("before", "5.not-a-uuid"),
            ("before", "5.00000000-0000-0000-0000-00000000002a"),
            ("before", "5.00000000-0000-0000-0000-00000000002a.xyz"),
            ("before", "5.00000000-0000-0000-0000-00000000002a.0000000g"),
            (
                "before",
                "5.00000000-0000-0000-0000-00000000002a.00000001.1",
            ),
        ] {
            let err = HistoryQuery::parse([(k, v)]).unwrap_err();
            assert_eq!(err.code, "invalid_query", "{k}={v}");
        }
    }
}
