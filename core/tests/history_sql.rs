//! Paging a session's history on real SQLite, as `GET /api/sessions/{id}/messages` does:
//! pages of the newest messages before a cursor, walked back to the first message.

use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::{apply_turns, open_in_memory, start_session};
use chat_core::record::sample;
use chat_core::request::MessageCursor;
use chat_core::sql;
use rusqlite::{params, Connection};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

/// One page: (id, created_at) oldest first, as the Worker reads it.
fn page(
    conn: &Connection,
    user: Uuid,
    session: Uuid,
    before: Option<MessageCursor>,
    limit: u32,
) -> Vec<(String, i64)> {
    let mut st = conn.prepare(sql::SELECT_SESSION_MESSAGES).unwrap();
    st.query_map(
        params![
            user.to_string(),
            session.to_string(),
            before.map(|c| c.created_at),
            before.map(|c| c.id.to_string()),
            limit
        ],
        |r| Ok((r.get(0)?, r.get(6)?)),
    )
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn pages_walk_back_through_every_message_once() {
    let mut conn = open_in_memory().unwrap();
    let identity = Identity::new(AuthProvider::X, "pager").unwrap();
    let session = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0777);
    start_session(&conn, &identity, session, T0).unwrap();
    // 1,203 turns: 2,406 messages, more than two full pages of 1,000. Some share a
    // millisecond, so the id must break ties.
    let records: Vec<_> = (0..1203u64)
        .map(|n| sample("pager", session, n, T0 + (n / 3) as i64))
        .collect();
    for chunk in records.chunks(100) {
        apply_turns(&mut conn, chunk).unwrap();
    }
    let user = identity.user_id();
    let all = page(&conn, user, session, None, 10_000);
    assert_eq!(all.len(), 2406);
    assert!(
        all.windows(2)
            .all(|w| (w[0].1, &w[0].0) < (w[1].1, &w[1].0)),
        "oldest first"
    );

    for limit in [1000, 7, 1] {
        let mut seen: Vec<(String, i64)> = Vec::new();
        let mut before = None;
        loop {
            // One more than the page, as the Worker asks, tells whether an older page exists.
            let mut rows = page(&conn, user, session, before, limit + 1);
            let more = rows.len() > limit as usize;
            if more {
                rows.remove(0);
            }
            assert!(rows.len() <= limit as usize);
            let oldest = rows.first().cloned();
            seen.splice(0..0, rows);
            match oldest {
                Some((id, at)) if more => {
                    let cursor = MessageCursor::new(at, id.parse().unwrap(), session);
                    before = MessageCursor::parse(&cursor.encode());
                    assert_eq!(before, Some(cursor));
                }
                _ => break,
            }
        }
        assert_eq!(
            seen, all,
            "pages of {limit} reach every message once, in order"
        );
    }
    // The newest page is the default one.
    let newest = page(&conn, user, session, None, 4);
    assert_eq!(newest, all[all.len() - 4..]);
}
