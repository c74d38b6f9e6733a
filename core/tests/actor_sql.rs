//! The session actor's own SQLite statements on real SQLite: its schema, pruning to the last N
//! turns, answered keys and their expiry, and the first game over winning.

use chat_core::session::{decide_turn, message_sha256, AnsweredKey, Decision, SessionState};
use chat_core::sql::actor as sql;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

fn actor() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for statement in sql::SCHEMA {
        conn.execute_batch(statement).unwrap();
    }
    // Every session start runs the schema: it must be idempotent.
    for statement in sql::SCHEMA {
        conn.execute_batch(statement).unwrap();
    }
    conn
}

/// Binds turn `n` (keeping `keep`) and confirms it, as the runner does; answers the rows
/// each step wrote (SQLite's own count, as the actor's cursor reports them).
fn add_turn(conn: &Connection, n: i64, keep: i64) -> (usize, usize, usize) {
    let bound = conn
        .execute(
            sql::BIND_TURN,
            params![
                n,
                keep,
                format!("turn-{n}"),
                format!("user {n}"),
                format!("agent {n}"),
                n % 7 - 3,
                "neutral",
                n,
                n * 1000,
                format!("record {n}")
            ],
        )
        .unwrap();
    let cleared = conn
        .execute(sql::CLEAR_RECORD, params![n % keep, format!("turn-{n}")])
        .unwrap();
    let pruned = conn.execute(sql::PRUNE_TURNS, params![keep]).unwrap();
    (bound, cleared, pruned)
}

fn recent(conn: &Connection, n: i64) -> Vec<String> {
    let mut s = conn.prepare(sql::RECENT_TURNS).unwrap();
    s.query_map(params![n], |r| r.get::<_, String>(1))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn the_actor_keeps_only_its_last_turns_in_order() {
    let conn = actor();
    for n in 1..=100 {
        // A turn takes the oldest one's slot: one row bound, one cleared, none pruned.
        assert_eq!(add_turn(&conn, n, 20), (1, 1, 0), "turn {n}");
    }
    let held: i64 = conn
        .query_row("SELECT COUNT(*) FROM turns", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held, 20);
    let turns = recent(&conn, 20);
    assert_eq!(turns.first().map(String::as_str), Some("user 81"));
    assert_eq!(turns.last().map(String::as_str), Some("user 100"));
    assert_eq!(recent(&conn, 3), ["user 98", "user 99", "user 100"]);
    // A smaller setting after a larger one: the character hears the newest five at once,
    // and the turns the smaller ring will not replace go as they age past them.
    add_turn(&conn, 101, 5);
    assert_eq!(
        recent(&conn, 5),
        ["user 97", "user 98", "user 99", "user 100", "user 101"]
    );
    let held = || -> i64 {
        conn.query_row("SELECT COUNT(*) FROM turns", [], |r| r.get(0))
            .unwrap()
    };
    assert!(held() <= 10, "{}", held());
    for n in 102..=120 {
        add_turn(&conn, n, 5);
    }
    assert_eq!(
        recent(&conn, 50).first().map(String::as_str),
        Some("user 116")
    );
    assert_eq!(held(), 5, "the ring at its new size");
    let (turns, unconfirmed, keys, answers): (i64, i64, i64, i64) = conn
        .query_row(sql::COUNTS, [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap();
    assert_eq!((turns, unconfirmed, keys, answers), (5, 0, 0, 0));
    // In the steady state nothing is past the ring: the prune, which looks at those slots
    // only, reads no row.
    let past: i64 = conn
        .query_row("SELECT COUNT(*) FROM turns WHERE slot >= 5", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(past, 0);
}

#[test]
fn keys_keep_their_answer_for_a_day_and_their_digest_for_good() {
    let conn = actor();
    let day = chat_core::session::ANSWER_KEEP_MS;
    conn.execute(
        sql::INSERT_KEY,
        params![
            "k1",
            message_sha256("hello"),
            "t1",
            r#"{"reply":"hi"}"#,
            1_000
        ],
    )
    .unwrap();
    conn.execute(
        sql::INSERT_KEY,
        params![
            "k2",
            message_sha256("later"),
            "t2",
            r#"{"reply":"yo"}"#,
            1_000 + day
        ],
    )
    .unwrap();
    // The same key twice is refused by the table itself: the actor never overwrites an answer.
    assert!(conn
        .execute(
            sql::INSERT_KEY,
            params!["k1", message_sha256("other"), "t3", "{}", 2_000],
        )
        .is_err());

    // The alarm, a day after k1 was answered, drops k1's answer and says when k2's expires.
    conn.execute(sql::FORGET_ANSWERS, params![1_000]).unwrap();
    let next: Option<i64> = conn
        .query_row(sql::OLDEST_ANSWER, [], |r| r.get(0))
        .unwrap();
    assert_eq!(next, Some(1_000 + day), "k2's answer is the next to expire");
    let key = |k: &str| -> Option<AnsweredKey> {
        conn.query_row(sql::SELECT_KEY, params![k], |r| {
            Ok(AnsweredKey {
                message_sha256: r.get(0)?,
                answer: r.get(1)?,
                answered_at: r.get(2)?,
            })
        })
        .optional()
        .unwrap()
    };
    let session = SessionState {
        id: Uuid::from_u128(1).into(),
        user_id: Uuid::from_u128(2),
        character_type: chat_core::character::Character::Kai,
        locale: chat_core::character::Locale::En,
        username: "u".into(),
        created_at: 0,
        ended_at: None,
    };
    let k1 = key("k1").unwrap();
    assert_eq!(k1.answer, None, "a day-old answer is forgotten");
    assert_eq!(
        decide_turn(&session, "hello", Some(&k1), 1_000 + day),
        Decision::KeyExpired
    );
    assert_eq!(
        decide_turn(&session, "bye", Some(&k1), 1_000 + day),
        Decision::KeyReused
    );
    let k2 = key("k2").unwrap();
    assert_eq!(
        decide_turn(&session, "later", Some(&k2), 1_000 + day),
        Decision::Replay(r#"{"reply":"yo"}"#)
    );
    assert!(key("k3").is_none());
}

#[test]
fn an_unconfirmed_turn_is_found_and_an_unkeyed_one_can_be_unbound() {
    let conn = actor();
    for n in 1..=3 {
        add_turn(&conn, n, 20);
    }
    conn.execute(
        sql::BIND_TURN,
        params![4, 20, "turn-4", "user 4", "agent 4", 0, "neutral", 4, 4000, "record 4"],
    )
    .unwrap();
    let unconfirmed = || -> Vec<(i64, String)> {
        let mut st = conn.prepare(sql::UNCONFIRMED_TURNS).unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(unconfirmed(), [(4, "record 4".to_owned())]);
    assert_eq!(
        recent(&conn, 20).len(),
        3,
        "the engine never hears an unconfirmed turn"
    );
    assert_eq!(
        conn.execute(sql::UNBIND_TURN, params![3, "turn-3"])
            .unwrap(),
        0,
        "a confirmed turn is never unbound"
    );
    assert_eq!(
        conn.execute(sql::UNBIND_TURN, params![4, "turn-4"])
            .unwrap(),
        1
    );
    assert!(unconfirmed().is_empty());
    assert_eq!(recent(&conn, 20), ["user 1", "user 2", "user 3"]);
}

#[test]
fn a_session_starts_once_and_ends_once() {
    let conn = actor();
    let start = |username: &str| {
        conn.execute(
            sql::INSERT_SESSION,
            params!["s1", "u1", "rin", "ja", username, 10, None::<i64>],
        )
        .unwrap()
    };
    assert_eq!(start("first"), 1);
    assert_eq!(start("second"), 0, "a second start changes nothing");
    conn.execute(sql::END_SESSION, params![50]).unwrap();
    conn.execute(sql::END_SESSION, params![40]).unwrap();
    let (username, ended): (String, i64) = conn
        .query_row(sql::SELECT_SESSION, [], |r| Ok((r.get(4)?, r.get(6)?)))
        .unwrap();
    assert_eq!((username.as_str(), ended), ("first", 50));
}

#[test]
fn tickets_are_used_once_and_the_last_live_turn_is_found() {
    let conn = actor();
    conn.execute(sql::INSERT_TICKET, params!["n1", "{\"p\":1}", 100])
        .unwrap();
    let take = |at: i64| -> Option<String> {
        conn.query_row(sql::TAKE_TICKET, params!["n1", at], |r| r.get(0))
            .optional()
            .unwrap()
    };
    assert_eq!(take(150), None, "an expired ticket is refused");
    assert_eq!(take(50).as_deref(), Some("{\"p\":1}"));
    assert_eq!(take(50), None, "a used ticket is gone");
    conn.execute(sql::INSERT_TICKET, params!["n2", "{}", 100])
        .unwrap();
    conn.execute(sql::PRUNE_TICKETS, params![100]).unwrap();
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);

    for n in 1..=3 {
        add_turn(&conn, n, 20);
    }
    conn.execute(
        sql::INSERT_KEY,
        params![
            "k3",
            message_sha256("user 3"),
            "turn-3",
            "{\"reply\":\"agent 3\"}",
            3
        ],
    )
    .unwrap();
    let (base, message, key, answer): (i64, String, Option<String>, Option<String>) = conn
        .query_row(sql::LAST_LIVE_TURN, [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    assert_eq!(
        (base, message.as_str(), key.as_deref()),
        (3000, "user 3", Some("k3"))
    );
    assert!(answer.unwrap().contains("agent 3"));
    let last: i64 = conn
        .query_row(sql::LAST_FRAME_BASE, [], |r| r.get(0))
        .unwrap();
    assert_eq!(last, 3000);
}
