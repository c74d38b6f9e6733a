//! Everything held on a player, as JSON lines (`GET /api/me/export`): one object per line,
//! its `type` first. The rows of D1 and of the archive are merged, each row once by its id
//! (D1's copy of a session's row wins: it is the newer), messages and events oldest first.

use crate::archive::format::{EventRow, MessageRow, Part, SessionRow};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What an export gathered.
#[derive(Debug, Default)]
pub struct Gathered {
    pub profile: Option<Value>,
    pub stats: Option<Value>,
    pub sessions: Vec<SessionRow>,
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
    /// The archive's objects of the player, decoded.
    pub archived: Vec<Part>,
    /// Each session's actor: what it holds (`GET /export` of the actor).
    pub actors: Vec<(String, Value)>,
}

/// The JSON lines of an export.
pub fn lines(user_id: &str, exported_at: &str, g: Gathered) -> String {
    let mut sessions: BTreeMap<String, SessionRow> = BTreeMap::new();
    let mut messages: BTreeMap<String, MessageRow> = BTreeMap::new();
    let mut events: BTreeMap<String, EventRow> = BTreeMap::new();
    for part in g.archived {
        if let Some(s) = part.session {
            sessions.insert(s.id.clone(), s);
        }
        messages.extend(part.messages.into_iter().map(|m| (m.id.clone(), m)));
        events.extend(part.events.into_iter().map(|e| (e.id.clone(), e)));
    }
    sessions.extend(g.sessions.into_iter().map(|s| (s.id.clone(), s)));
    messages.extend(g.messages.into_iter().map(|m| (m.id.clone(), m)));
    events.extend(g.events.into_iter().map(|e| (e.id.clone(), e)));
    let mut messages: Vec<MessageRow> = messages.into_values().collect();
    messages.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut events: Vec<EventRow> = events.into_values().collect();
    events.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut out = Vec::new();
    out.push(
        json!({ "type": "export", "userId": user_id, "exportedAt": exported_at,
        "sessions": sessions.len(), "messages": messages.len(), "pointEvents": events.len() }),
    );
    out.push(json!({ "type": "profile", "profile": g.profile }));
    out.push(json!({ "type": "stats", "stats": g.stats }));
    out.extend(
        sessions
            .into_values()
            .map(|s| json!({ "type": "session", "session": s })),
    );
    out.extend(
        messages
            .into_iter()
            .map(|m| json!({ "type": "message", "message": m })),
    );
    out.extend(
        events
            .into_iter()
            .map(|e| json!({ "type": "pointEvent", "pointEvent": e })),
    );
    out.extend(
        g.actors
            .into_iter()
            .map(|(s, state)| json!({ "type": "actor", "sessionId": s, "holds": state })),
    );
    let mut text = String::new();
    for line in out {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, at: i64) -> MessageRow {
        MessageRow {
            id: id.into(),
            user_id: "u".into(),
            session_id: "s".into(),
            role: "user".into(),
            content: format!("words {id}"),
            score_raw: None,
            score_adjusted: None,
            emotion: None,
            created_at: at,
        }
    }

    #[test]
    fn both_tiers_merge_each_row_once_oldest_first() {
        let archived = Part::new(vec![message("a", 1), message("b", 2)], Vec::new(), None).unwrap();
        let g = Gathered {
            messages: vec![message("b", 2), message("c", 3)],
            archived: vec![archived],
            ..Gathered::default()
        };
        let text = lines("u", "now", g);
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows[0]["type"], "export");
        assert_eq!(rows[0]["messages"], 3);
        let ids: Vec<&str> = rows
            .iter()
            .filter(|r| r["type"] == "message")
            .map(|r| r["message"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
