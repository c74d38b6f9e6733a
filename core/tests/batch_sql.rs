//! The consumer's batch SQL on real SQLite: a randomized run of duplicated, shuffled turns cut
//! into random batches (each cut into random chunks, as the consumer cuts a batch under D1's
//! value limit) and applied twice must store each turn once and keep every user's snapshot
//! equal to the ledger.

mod common;

use chat_core::batch::user_json;
use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::{apply_turns, apply_turns_within, open_in_memory, Applied};
use chat_core::record::{sample, TurnRecord};
use chat_core::scoring::intimacy_level;
use chat_core::sql;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use std::collections::HashMap;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn start_session(conn: &Connection, identity: &Identity, session: Uuid) {
    chat_core::native::start_session(conn, identity, session, T0).unwrap();
}

fn scalar(conn: &Connection, q: &str) -> i64 {
    conn.query_row(q, [], |r| r.get(0)).unwrap()
}

/// Cuts `turns` into batches of random sizes and applies them, summing the counts.
fn apply_in_random_batches(
    conn: &mut Connection,
    turns: &[TurnRecord],
    rng: &mut StdRng,
) -> Applied {
    let mut total = Applied::default();
    let mut rest = turns;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(60));
        let (batch, tail) = rest.split_at(n);
        // Chunks from one turn each to the whole batch, as D1's value limit may cut them.
        let a = apply_turns_within(conn, batch, rng.gen_range(500..=64_000)).unwrap();
        total.applied += a.applied;
        total.duplicates += a.duplicates;
        total.conflicts += a.conflicts;
        rest = tail;
    }
    total
}

#[test]
fn randomized_deliveries_store_each_turn_once() {
    let seed = common::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = open_in_memory().unwrap();

    // Several players, two sessions each, a few hundred turns.
    let players: Vec<String> = (0..6).map(|i| format!("player-{i}")).collect();
    let mut sessions = Vec::new();
    for p in &players {
        let identity = Identity::new(AuthProvider::X, p).unwrap();
        for _ in 0..2 {
            let s = Uuid::from_u128(rng.gen());
            start_session(&conn, &identity, s);
            sessions.push((p.clone(), s));
        }
    }
    let mut turns: Vec<TurnRecord> = (0..400u64)
        .map(|n| {
            let (p, s) = &sessions[rng.gen_range(0..sessions.len())];
            sample(
                p,
                *s,
                n * 7919 + rng.gen_range(0..7),
                T0 + n as i64 * 1000 + rng.gen_range(0..999),
            )
        })
        .collect();
    let unique = turns.clone();

    // Duplicates: exact copies and client retries whose reply differs (same turn).
    for _ in 0..120 {
        let mut copy = unique[rng.gen_range(0..unique.len())].clone();
        if rng.gen_bool(0.5) {
            copy.agent_message.content.push_str(" (retry)");
        }
        turns.push(copy);
    }
    turns.shuffle(&mut rng);

    let first = apply_in_random_batches(&mut conn, &turns, &mut rng);
    assert_eq!(first.applied, unique.len(), "every turn applied once");
    assert_eq!(first.applied + first.duplicates, turns.len());
    assert_eq!(first.conflicts, 0);

    turns.shuffle(&mut rng);
    let second = apply_in_random_batches(&mut conn, &turns, &mut rng);
    assert_eq!(
        second.applied, 0,
        "a second delivery of everything changes nothing"
    );
    assert_eq!(second.duplicates, turns.len());

    // Each turn stored once, with its player's words.
    assert_eq!(
        scalar(&conn, "SELECT COUNT(*) FROM point_events"),
        unique.len() as i64
    );
    assert_eq!(
        scalar(&conn, "SELECT COUNT(*) FROM chat_messages"),
        2 * unique.len() as i64
    );
    for t in &unique {
        let content: String = conn
            .query_row(
                "SELECT content FROM chat_messages WHERE id = ?1 AND role = 'user'",
                [t.turn_id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(content, t.user_message.content);
    }

    // Snapshot = ledger, level follows the rules, last message is the latest.
    let mut expected: HashMap<Uuid, i64> = HashMap::new();
    for t in &unique {
        *expected.entry(t.user.id).or_default() += i64::from(t.point_event.delta);
    }
    let mut st = conn
        .prepare(
            "SELECT s.user_id, s.total_points, s.intimacy_level, s.last_message_at,
                    (SELECT SUM(delta) FROM point_events p WHERE p.user_id = s.user_id),
                    (SELECT MAX(created_at) FROM chat_messages m WHERE m.user_id = s.user_id)
             FROM user_stats s",
        )
        .unwrap();
    let rows: Vec<(String, i64, i64, i64, i64, i64)> = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), expected.len());
    for (user, total, level, last, ledger, latest) in rows {
        assert_eq!(total, ledger, "{user}: snapshot equals ledger");
        assert_eq!(total, expected[&Uuid::parse_str(&user).unwrap()]);
        assert_eq!(level, intimacy_level(total), "{user}: level follows total");
        assert_eq!(
            last, latest,
            "{user}: last_message_at is the latest message"
        );
    }

    // Sessions in which the game ended carry the earliest game-over time.
    let mut ended: HashMap<Uuid, i64> = HashMap::new();
    for t in unique.iter().filter(|t| t.game_over) {
        let e = ended.entry(t.session_id).or_insert(i64::MAX);
        *e = (*e).min(t.user_message.created_at);
    }
    assert!(!ended.is_empty(), "the sample includes game-over turns");
    for (_, s) in &sessions {
        let at: Option<i64> = conn
            .query_row(
                "SELECT ended_at FROM chat_sessions WHERE id = ?1",
                [s.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(at, ended.get(s).copied(), "session {s}");
    }
}

#[test]
fn a_batch_of_one_and_of_many_use_the_same_statements() {
    // The statement list is fixed; only the JSON parameter grows.
    let mut conn = open_in_memory().unwrap();
    let identity = Identity::new(AuthProvider::X, "solo").unwrap();
    let s = Uuid::from_u128(1);
    start_session(&conn, &identity, s);
    let turns: Vec<_> = (0..100)
        .map(|n| sample("solo", s, n, T0 + n as i64))
        .collect();
    assert_eq!(apply_turns(&mut conn, &turns[..1]).unwrap().applied, 1);
    assert_eq!(apply_turns(&mut conn, &turns).unwrap().applied, 99);
    assert_eq!(sql::apply_turns().len(), 17);
}

#[test]
fn conflicting_turn_ids_in_one_batch_store_the_first_only() {
    let mut conn = open_in_memory().unwrap();
    let s = Uuid::from_u128(2);
    let a = sample("c", s, 5, T0);
    let mut clash = a.clone();
    clash.user_message.content = "something else".into();
    clash.point_event.delta = 20;
    let got = apply_turns(&mut conn, &[a.clone(), clash]).unwrap();
    assert_eq!(
        got,
        Applied {
            applied: 1,
            duplicates: 0,
            conflicts: 1,
            held: 0,
        }
    );
    assert_eq!(
        scalar(&conn, "SELECT total_points FROM user_stats"),
        i64::from(a.point_event.delta)
    );
}

#[test]
fn a_conflict_with_a_stored_turn_changes_nothing() {
    let mut conn = open_in_memory().unwrap();
    let s = Uuid::from_u128(3);
    let identity = Identity::new(AuthProvider::X, "c").unwrap();
    start_session(&conn, &identity, s);
    let a = sample("c", s, 5, T0);
    assert_eq!(
        apply_turns(&mut conn, std::slice::from_ref(&a))
            .unwrap()
            .applied,
        1
    );
    let snapshot = |conn: &Connection| {
        conn.query_row(
            "SELECT (SELECT total_points FROM user_stats), (SELECT COUNT(*) FROM chat_messages),
                    (SELECT ended_at IS NULL FROM chat_sessions), (SELECT display_name IS NULL FROM users)",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?, r.get::<_, bool>(3)?)),
        )
        .unwrap()
    };
    let before = snapshot(&conn);
    let mut clash = a.clone();
    clash.user_message.content = "not what was said".into();
    clash.point_event.delta = -20;
    clash.game_over = true;
    clash.user.display_name = Some("Mallory".into());
    let got = apply_turns(&mut conn, &[clash, a]).unwrap();
    assert_eq!(
        got,
        Applied {
            applied: 0,
            duplicates: 1,
            conflicts: 1,
            held: 0,
        },
        "the stored turn decides"
    );
    assert_eq!(snapshot(&conn), before);
}

#[test]
fn an_older_profile_never_overwrites_a_newer_one() {
    let conn = open_in_memory().unwrap();
    let mut newer = Identity::new(AuthProvider::Privy, "p1").unwrap();
    newer.display_name = Some("New Name".into());
    newer.wallet_address = Some("0xnew".into());
    newer.x_username = Some("new_handle".into());
    newer.signed_at = Some(T0 + 10);
    let mut older = newer.clone();
    older.display_name = Some("Old Name".into());
    older.wallet_address = Some("0xold".into());
    older.x_username = Some("old_handle".into());
    older.signed_at = Some(T0);
    // The newer profile is delivered first; the older one's turn comes later.
    conn.execute(sql::UPSERT_USERS, [user_json(&newer, T0 + 10)])
        .unwrap();
    conn.execute(sql::UPSERT_USERS, [user_json(&older, T0 + 30)])
        .unwrap();
    let mut bare = newer.clone();
    bare.display_name = None;
    bare.wallet_address = None;
    bare.x_username = None;
    bare.signed_at = Some(T0 + 20);
    conn.execute(sql::UPSERT_USERS, [user_json(&bare, T0 + 20)])
        .unwrap();
    let (name, wallet, handle, n): (String, String, String, i64) = conn
        .query_row(
            "SELECT display_name, wallet_address, x_username, (SELECT COUNT(*) FROM users) FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (name.as_str(), wallet.as_str(), handle.as_str(), n),
        ("New Name", "0xnew", "new_handle", 1)
    );
    let id: String = conn
        .query_row("SELECT id FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, newer.user_id().to_string());
}

#[test]
fn a_full_batch_of_the_largest_turns_is_stored_in_chunks() {
    use chat_core::d1_limits::MAX_VALUE_BYTES;
    use chat_core::record::largest_sample;
    let mut conn = open_in_memory().unwrap();
    let session = Uuid::now_v7();
    let turns: Vec<TurnRecord> = (0..100)
        .map(|n| {
            let mut r = largest_sample("big", session, n, T0 + n as i64);
            r.user.x_username = Some("x".repeat(30_000));
            r
        })
        .collect();
    let identity = Identity::new(AuthProvider::X, "big").unwrap();
    start_session(&conn, &identity, session);
    let whole: usize = turns.iter().map(|t| t.encode().len()).sum();
    assert!(whole > MAX_VALUE_BYTES, "{whole}");
    let first = apply_turns(&mut conn, &turns).unwrap();
    assert_eq!((first.applied, first.duplicates), (100, 0));
    assert_eq!(apply_turns(&mut conn, &turns).unwrap().duplicates, 100);
    assert_eq!(scalar(&conn, "SELECT COUNT(*) FROM point_events"), 100);
    assert_eq!(
        scalar(&conn, "SELECT total_points FROM user_stats"),
        scalar(&conn, "SELECT SUM(delta) FROM point_events"),
    );
    let longest = scalar(
        &conn,
        "SELECT MAX(LENGTH(CAST(content AS BLOB))) FROM chat_messages",
    );
    assert!(longest >= 8000, "the texts are stored whole: {longest}");
}

/// A user's row is written only when a later-signed profile arrives: D1 bills every row an
/// update writes, and most turns repeat the sign-in they came with. Of two profiles, the one
/// signed later wins, whatever order they are delivered in.
#[test]
fn a_profile_is_ordered_by_when_it_was_signed_not_when_it_was_delivered() {
    let conn = chat_core::native::open_in_memory().unwrap();
    let upsert = |name: &str, signed_at: i64, seen_at: i64| {
        let row = serde_json::json!([{ "user_id": "0a000000-0000-4000-8000-000000000001",
            "provider": "privy", "provider_user_id": "did:1", "display_name": name,
            "seen_at": seen_at, "signed_at": signed_at }]);
        conn.execute(chat_core::sql::UPSERT_USERS, [row.to_string()])
            .unwrap()
    };
    let stored = || -> (String, i64, i64) {
        conn.query_row(
            "SELECT display_name, updated_at, profile_signed_at FROM users",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    assert_eq!(upsert("Aki", 10, 100), 1, "a new user is written");
    assert_eq!(
        upsert("Aki", 10, 200),
        0,
        "more turns of the same sign-in write nothing"
    );
    assert_eq!(stored(), ("Aki".to_owned(), 100, 10));
    assert_eq!(
        upsert("Mio", 30, 300),
        1,
        "a later sign-in's change is written"
    );
    assert_eq!(stored(), ("Mio".to_owned(), 300, 30));
    assert_eq!(
        upsert("Aki", 25, 400),
        0,
        "a profile signed earlier never overwrites one signed later, delivered after it or not"
    );
    assert_eq!(stored(), ("Mio".to_owned(), 300, 30));
    // The player goes back to Mio (signed at 50) after being Aki (signed at 40), and the
    // Aki turn is delivered last: Mio, signed last, stays.
    assert_eq!(
        upsert("Mio", 50, 500),
        1,
        "the same profile signed later moves its time"
    );
    assert_eq!(
        stored(),
        ("Mio".to_owned(), 300, 50),
        "its change time does not move"
    );
    assert_eq!(upsert("Aki", 40, 600), 0);
    assert_eq!(stored(), ("Mio".to_owned(), 300, 50));
    // A profile with no signing time (development sign-in) never writes over one.
    assert_eq!(upsert("Dev", 0, 700), 0);
}
