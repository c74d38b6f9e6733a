//! The dead-letter archive, replay bookkeeping and reconcile SQL on real SQLite.

use chat_core::dead_letter::Envelope;
use chat_core::failure::FailureClass;
use chat_core::native::{apply_turns, open_in_memory};
use chat_core::record::sample;
use chat_core::scoring::intimacy_level;
use chat_core::sql;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn store(conn: &Connection, letters: &[Envelope]) {
    conn.execute(
        sql::STORE_LETTERS,
        params![serde_json::to_string(letters).unwrap(), T0],
    )
    .unwrap();
}

/// The binds of LIST_LETTERS; `None` leaves a condition out.
#[derive(Default)]
struct Query {
    status: Option<&'static str>,
    class: Option<&'static str>,
    q: Option<&'static str>,
    from: Option<i64>,
    to: Option<i64>,
    cursor: Option<(i64, &'static str)>,
}

/// Runs LIST_LETTERS (limit 10), returning (id, class, status) of each letter.
fn list(conn: &Connection, q: Query) -> Vec<(String, String, String)> {
    let text = |v: Option<&str>| v.map_or(Sql::Null, |s| Sql::Text(s.into()));
    let int = |v: Option<i64>| v.map_or(Sql::Null, Sql::Integer);
    let binds = [
        text(q.status),
        text(q.class),
        text(q.q),
        int(q.from),
        int(q.to),
        int(q.cursor.map(|c| c.0)),
        text(q.cursor.map(|c| c.1)),
        Sql::Integer(10),
    ];
    let mut st = conn.prepare(&sql::LIST_LETTERS).unwrap();
    st.query_map(params_from_iter(binds), |r| {
        Ok((r.get(0)?, r.get(2)?, r.get(7)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Every bucket's prefix: one database that holds every player.
fn all_buckets() -> String {
    chat_core::shards::ShardMap::parse("DB_0")
        .unwrap()
        .prefixes_json("DB_0", false)
}

#[test]
fn letters_are_stored_once_and_filtered() {
    let conn = open_in_memory().unwrap();
    let payload = sample("p", Uuid::nil(), 1, T0).encode();
    let a = Envelope::new(
        "m-a",
        &payload,
        FailureClass::Conflict,
        "turn clash",
        1,
        T0,
        T0 + 10,
    );
    let b = Envelope::new(
        "m-b",
        "garbage",
        FailureClass::Undecodable,
        "expected value",
        1,
        T0,
        T0 + 20,
    );
    let c = Envelope::new(
        "m-c",
        &payload,
        FailureClass::Transient,
        "D1_ERROR: busy",
        6,
        T0 - 50,
        T0 + 30,
    );
    store(&conn, &[a.clone(), b, c]);
    // Delivered again, later: stored once, its window widened.
    let again = Envelope {
        last_failed_at: T0 + 99,
        attempts: 2,
        ..a
    };
    store(&conn, &[again]);
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let (attempts, last, turn): (i64, i64, Option<String>) = conn
        .query_row(
            "SELECT attempts, last_failed_at, turn_id FROM dead_letters WHERE id = 'm-a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((attempts, last), (2, T0 + 99));
    assert!(turn.is_some());

    let all = list(&conn, Query::default());
    assert_eq!(
        all.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        vec!["m-b", "m-c", "m-a"],
        "oldest failure first"
    );
    let by_class = list(
        &conn,
        Query {
            class: Some("transient"),
            ..Query::default()
        },
    );
    assert_eq!(by_class.len(), 1);
    let by_text = list(
        &conn,
        Query {
            q: Some("D1_ERROR"),
            ..Query::default()
        },
    );
    assert_eq!(by_text[0].0, "m-c");
    let by_time = list(
        &conn,
        Query {
            from: Some(T0 + 20),
            to: Some(T0 + 31),
            ..Query::default()
        },
    );
    assert_eq!(by_time.len(), 2);
    let page2 = list(
        &conn,
        Query {
            cursor: Some((T0 + 20, "m-b")),
            ..Query::default()
        },
    );
    assert_eq!(
        page2.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        vec!["m-c", "m-a"],
        "the cursor resumes"
    );

    conn.execute(sql::MARK_REPLAYED, params![r#"["m-a","m-c"]"#, T0 + 100])
        .unwrap();
    let discarded = conn
        .execute(sql::DISCARD_LETTERS, params![r#"["m-b","m-b"]"#, T0 + 100])
        .unwrap();
    assert_eq!(discarded, 1);
    assert_eq!(
        conn.execute(sql::DISCARD_LETTERS, params![r#"["m-b"]"#, T0 + 101])
            .unwrap(),
        0,
        "already discarded"
    );
    let pending = list(
        &conn,
        Query {
            status: Some("pending"),
            ..Query::default()
        },
    );
    assert!(pending.is_empty());
    let replays: i64 = conn
        .query_row(
            "SELECT replay_count FROM dead_letters WHERE id = 'm-a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(replays, 1);
    assert!(
        store_bad_class(&conn).is_err(),
        "the class CHECK refuses anything but the known classes"
    );
}

fn store_bad_class(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        sql::STORE_LETTERS,
        params![r#"[{"messageId":"x","payload":"p","class":"cosmic_ray","error":"e","attempts":1,"firstFailedAt":1,"lastFailedAt":1}]"#, T0],
    )
}

#[test]
fn replay_runs_accumulate() {
    let conn = open_in_memory().unwrap();
    for _ in 0..2 {
        conn.execute(
            sql::RECORD_REPLAY_RUN,
            params!["run-1", T0, T0 + 5, 0, "{}", 3, 2, 2, 0, 1, 0],
        )
        .unwrap();
    }
    let (letters, requeued, conflicts): (i64, i64, i64) = conn
        .query_row(
            "SELECT letters, requeued, conflicts FROM replay_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((letters, requeued, conflicts), (6, 4, 2));
}

#[test]
fn reconcile_finds_and_fixes_drift() {
    let mut conn = open_in_memory().unwrap();
    let turns: Vec<_> = (0..30)
        .map(|n| sample(&format!("u{}", n % 3), Uuid::from_u128(9), n, T0 + n as i64))
        .collect();
    apply_turns(&mut conn, &turns).unwrap();
    let drift = |conn: &Connection| -> Vec<(String, Option<i64>, i64, i64)> {
        let mut st = conn.prepare(&sql::SELECT_DRIFT).unwrap();
        st.query_map(params![None::<String>, 1000, all_buckets()], |r| {
            Ok((
                r.get("user_id")?,
                r.get("stored_total")?,
                r.get("ledger_total")?,
                r.get("expected_level")?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert!(
        drift(&conn).is_empty(),
        "the consumer keeps snapshots equal to the ledger"
    );

    // Drift by hand: a wrong total on one user, a deleted snapshot on another.
    conn.execute(
        "UPDATE user_stats SET total_points = total_points + 500 WHERE user_id = (SELECT user_id FROM user_stats ORDER BY user_id LIMIT 1)",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM user_stats WHERE user_id = (SELECT user_id FROM user_stats ORDER BY user_id LIMIT 1 OFFSET 1)", [])
        .unwrap();
    let found = drift(&conn);
    assert_eq!(found.len(), 2);
    assert!(
        found.iter().any(|d| d.1.is_none()),
        "a missing snapshot is drift"
    );
    conn.execute(
        &sql::FIX_DRIFT,
        params![None::<String>, 1000, all_buckets(), T0 + 1000],
    )
    .unwrap();
    assert!(drift(&conn).is_empty());
    let mut st = conn
        .prepare("SELECT s.total_points, s.intimacy_level, (SELECT SUM(delta) FROM point_events p WHERE p.user_id = s.user_id) FROM user_stats s")
        .unwrap();
    for row in st
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
    {
        let (total, level, ledger) = row.unwrap();
        assert_eq!((total, level), (ledger, intimacy_level(ledger)));
    }
}

#[test]
fn reconcile_pages_through_users_and_resumes() {
    let mut conn = open_in_memory().unwrap();
    let turns: Vec<_> = (0..70)
        .map(|n| {
            sample(
                &format!("p{}", n % 7),
                Uuid::from_u128(10),
                n,
                T0 + n as i64,
            )
        })
        .collect();
    apply_turns(&mut conn, &turns).unwrap();
    // Drift on three of the seven users.
    conn.execute(
        "UPDATE user_stats SET total_points = total_points - 3 WHERE user_id IN (SELECT user_id FROM user_stats ORDER BY user_id LIMIT 3)",
        [],
    )
    .unwrap();
    let span = |conn: &Connection, after: &Option<String>| -> (i64, Option<String>) {
        conn.query_row(
            &sql::USER_PAGE_SPAN,
            params![after, 2, all_buckets()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let mut after: Option<String> = None;
    let (mut checked, mut drifted, mut fixed, mut pages) = (0, 0, 0, 0);
    loop {
        let (n, last) = span(&conn, &after);
        if n == 0 {
            break;
        }
        pages += 1;
        checked += n;
        let mut st = conn.prepare(&sql::SELECT_DRIFT).unwrap();
        drifted += st
            .query_map(params![after, 2, all_buckets()], |r| r.get::<_, String>(0))
            .unwrap()
            .count();
        fixed += conn
            .execute(&sql::FIX_DRIFT, params![after, 2, all_buckets(), T0 + 5000])
            .unwrap();
        after = last;
        // A page that is not full is the last one.
        if n < 2 {
            break;
        }
    }
    assert_eq!((checked, pages), (7, 4), "pages of 2 over 7 users");
    assert_eq!((drifted, fixed), (3, 3));
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT SUM(delta) FROM point_events p WHERE p.user_id = s.user_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "every page was fixed");
    // Resuming after the last user finds nothing more.
    let last_user: String = conn
        .query_row("SELECT MAX(id) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(span(&conn, &Some(last_user)).0, 0);
}

#[test]
fn admin_stats_read() {
    let conn = open_in_memory().unwrap();
    store(
        &conn,
        &[Envelope::new(
            "m",
            "x",
            FailureClass::Invalid,
            "e",
            1,
            T0,
            T0,
        )],
    );
    let by_class: String = conn
        .query_row(sql::CONTROL_STATS, [], |r| r.get("pending_by_class"))
        .unwrap();
    assert_eq!(by_class, r#"{"invalid":1}"#);
}
