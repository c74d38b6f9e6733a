//! Schema 2 and the leaderboard table on real SQLite:
//! - a randomized run of batches with points going up and down, over more players than
//!   `leaders` keeps, after each of which the leaderboard equals the top of `user_stats`;
//! - the batch's statements storing the same rows on schema 1 (rowid tables) and schema 2;
//! - migration 0009 refusing a database that holds turns, changing nothing, and applying
//!   once its buckets are purged.

mod common;

use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::{
    apply_turns, leaderboard, migrate_schema_one, migrations_dir, open_in_memory, purge_page,
    rebuild_leaders, start_session,
};
use chat_core::record::{sample, TurnRecord};
use chat_core::shards::Leader;
use chat_core::sql::leaders::{KEPT, SERVED};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn every_bucket() -> String {
    serde_json::to_string(
        &(0..=255u8)
            .map(chat_core::shards::bucket_prefix)
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// The top `n` of `user_stats`, as a scan ranks them: what the leaderboard must say.
fn top_by_scan(conn: &Connection, n: u32) -> Vec<(String, i64)> {
    let mut st = conn
        .prepare(
            "SELECT user_id, total_points FROM user_stats ORDER BY total_points DESC, user_id LIMIT ?1",
        )
        .unwrap();
    st.query_map([n], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn board(conn: &Connection, n: u32) -> Vec<(String, i64)> {
    leaderboard(conn, n as usize, &every_bucket())
        .unwrap()
        .into_iter()
        .map(|l: Leader| (l.user_id, l.total_points))
        .collect()
}

/// The `leaders` table as it is, by user id.
fn members(conn: &Connection) -> Vec<(String, i64)> {
    conn.prepare("SELECT user_id, total_points FROM leaders ORDER BY user_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn scalar(conn: &Connection, q: &str) -> i64 {
    conn.query_row(q, [], |r| r.get(0)).unwrap()
}

/// Players `0..n`, each with one session.
fn players(conn: &Connection, n: usize) -> Vec<(String, Uuid)> {
    (0..n)
        .map(|i| {
            let name = format!("leader-{i}");
            let identity = Identity::new(AuthProvider::X, &name).unwrap();
            let session = Uuid::from_u128(i as u128 + 1);
            start_session(conn, &identity, session, T0).unwrap();
            (name, session)
        })
        .collect()
}

/// A turn of `player` whose delta is drawn at random (`sample` scores turn `n` by `n % 21`).
fn turn(player: &(String, Uuid), serial: &mut u64, rng: &mut StdRng, at: i64) -> TurnRecord {
    *serial += 1;
    let n = *serial * 21 + rng.gen_range(0..21);
    sample(&player.0, player.1, n, at)
}

#[test]
fn the_leaderboard_is_the_top_of_user_stats_after_every_batch() {
    let seed = common::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conn = open_in_memory().unwrap();
    // More players than the table keeps, so that members are cut and the floor rises; and
    // rounds where only the leaders play and lose, so that they sink below it.
    let everyone = players(&conn, KEPT as usize * 2 + 50);
    let (mut serial, mut refills) = (0, 0);
    let mut delivered: Vec<TurnRecord> = Vec::new();
    for round in 0..120 {
        let at = T0 + round * 1000;
        let mut batch: Vec<TurnRecord> = if round % 7 == 6 {
            // The current top players, with their worst turns (raw -10: n % 21 == 0).
            let top = top_by_scan(&conn, SERVED);
            everyone
                .iter()
                .filter(|p| {
                    let id = Identity::new(AuthProvider::X, &p.0).unwrap().user_id();
                    top.iter().any(|(u, _)| *u == id.to_string())
                })
                .map(|p| {
                    serial += 1;
                    sample(&p.0, p.1, serial * 21, at)
                })
                .collect()
        } else {
            let k = rng.gen_range(1..=100);
            everyone
                .choose_multiple(&mut rng, k)
                .map(|p| turn(p, &mut serial, &mut rng, at))
                .collect()
        };
        // Some turns delivered again (nothing changes for them).
        if !delivered.is_empty() && rng.gen_bool(0.3) {
            batch.extend(delivered.choose_multiple(&mut rng, 5).cloned());
        }
        batch.shuffle(&mut rng);
        let floor_before: Option<i64> = conn
            .query_row("SELECT floor_points FROM leaders_floor", [], |r| r.get(0))
            .unwrap();
        apply_turns(&mut conn, &batch).unwrap();
        delivered.extend(batch);
        let floor_after: Option<i64> = conn
            .query_row("SELECT floor_points FROM leaders_floor", [], |r| r.get(0))
            .unwrap();
        if floor_before.is_some() && floor_after < floor_before {
            refills += 1;
        }
        assert!(scalar(&conn, "SELECT COUNT(*) FROM leaders") <= KEPT as i64);
        assert_eq!(
            scalar(&conn, "SELECT refill FROM leaders_floor"),
            0,
            "a refill ends with its batch"
        );
        for n in [1, 10, SERVED] {
            assert_eq!(
                board(&conn, n),
                top_by_scan(&conn, n),
                "round {round}, top {n} (SEED={seed})"
            );
        }
    }
    assert!(
        scalar(&conn, "SELECT floor_points IS NOT NULL FROM leaders_floor") == 1,
        "more players than the table keeps: some were cut"
    );
    assert!(
        refills > 0,
        "leaders sank below the floor and the table was refilled"
    );
    // A rebuild from scratch gives the same board.
    rebuild_leaders(&conn).unwrap();
    assert_eq!(board(&conn, SERVED), top_by_scan(&conn, SERVED));
}

#[test]
fn players_below_the_floor_write_no_leaderboard_row() {
    let mut conn = open_in_memory().unwrap();
    let everyone = players(&conn, KEPT as usize + 100);
    // Everyone plays one good turn (raw +10: n % 21 == 20), then the table holds the top.
    let mut serial = 0;
    let first: Vec<_> = everyone
        .iter()
        .map(|p| {
            serial += 1;
            sample(&p.0, p.1, serial * 21 + 20, T0)
        })
        .collect();
    apply_turns(&mut conn, &first).unwrap();
    let floor: i64 = scalar(&conn, "SELECT floor_points FROM leaders_floor");
    let members_before = members(&conn);
    // The players outside the table lose points: the table is not touched.
    let outside: Vec<_> = everyone
        .iter()
        .filter(|p| {
            let id = Identity::new(AuthProvider::X, &p.0)
                .unwrap()
                .user_id()
                .to_string();
            !members_before.iter().any(|(u, _)| *u == id)
        })
        .collect();
    assert_eq!(outside.len(), everyone.len() - KEPT as usize);
    let losing: Vec<_> = outside
        .iter()
        .map(|p| {
            serial += 1;
            sample(&p.0, p.1, serial * 21, T0 + 1000)
        })
        .collect();
    // Every write to the leaderboard tables counted, by temporary triggers.
    conn.execute_batch(
        "CREATE TEMP TABLE writes (n INTEGER NOT NULL);
         INSERT INTO temp.writes VALUES (0);
         CREATE TEMP TRIGGER li AFTER INSERT ON main.leaders BEGIN UPDATE writes SET n = n + 1; END;
         CREATE TEMP TRIGGER lu AFTER UPDATE ON main.leaders BEGIN UPDATE writes SET n = n + 1; END;
         CREATE TEMP TRIGGER ld AFTER DELETE ON main.leaders BEGIN UPDATE writes SET n = n + 1; END;
         CREATE TEMP TRIGGER fu AFTER UPDATE ON main.leaders_floor BEGIN UPDATE writes SET n = n + 1; END;",
    )
    .unwrap();
    apply_turns(&mut conn, &losing).unwrap();
    let members_after = members(&conn);
    assert_eq!(members_before, members_after);
    assert_eq!(
        scalar(&conn, "SELECT floor_points FROM leaders_floor"),
        floor
    );
    assert_eq!(scalar(&conn, "SELECT n FROM temp.writes"), 0);
    assert_eq!(
        scalar(&conn, "SELECT COUNT(*) FROM point_events"),
        (everyone.len() + losing.len()) as i64
    );
}

/// Every player row of `conn`, table by table, in key order.
fn dump(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("users", "id"),
        ("chat_sessions", "id"),
        ("chat_messages", "id"),
        ("point_events", "id"),
        ("user_stats", "user_id"),
        ("leaders", "user_id"),
    ] {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(format!("{table}: {}", cells.join(", ")))
            })
            .unwrap()
            .map(Result::unwrap);
        out.extend(rows);
    }
    out
}

fn without_rowid(conn: &Connection, table: &str) -> bool {
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    sql.contains("WITHOUT ROWID")
}

#[test]
fn schema_1_and_schema_2_store_the_same_rows() {
    let mut one = Connection::open_in_memory().unwrap();
    migrate_schema_one(&one).unwrap();
    let mut two = open_in_memory().unwrap();
    for table in ["chat_messages", "point_events", "user_stats"] {
        assert!(!without_rowid(&one, table), "{table} at schema 1");
        assert!(without_rowid(&two, table), "{table} at schema 2");
    }
    let mut rng = StdRng::seed_from_u64(7);
    let (p1, p2) = (players(&one, 30), players(&two, 30));
    assert_eq!(p1, p2);
    let mut serial = 0;
    for round in 0..10 {
        let batch: Vec<_> = p1
            .choose_multiple(&mut rng, 12)
            .map(|p| turn(p, &mut serial, &mut rng, T0 + round * 1000))
            .collect();
        assert_eq!(
            apply_turns(&mut one, &batch).unwrap(),
            apply_turns(&mut two, &batch).unwrap()
        );
    }
    assert_eq!(dump(&one), dump(&two));
    assert_eq!(board(&one, SERVED), board(&two, SERVED));
}

/// Runs migration 0009 as wrangler does: the file, then its record, in one transaction.
fn apply_schema_2(conn: &Connection) -> rusqlite::Result<()> {
    let file = migrations_dir().join("0009_without_rowid.sql");
    let sql = std::fs::read_to_string(file).unwrap();
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(&sql)?;
    tx.commit()
}

#[test]
fn schema_2_refuses_a_database_holding_turns_and_applies_once_it_is_emptied() {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate_schema_one(&conn).unwrap();
    let everyone = players(&conn, 20);
    let mut rng = StdRng::seed_from_u64(3);
    let mut serial = 0;
    let batch: Vec<_> = everyone
        .iter()
        .map(|p| turn(p, &mut serial, &mut rng, T0))
        .collect();
    apply_turns(&mut conn, &batch).unwrap();
    let before = dump(&conn);

    let refused = apply_schema_2(&conn).unwrap_err().to_string();
    assert!(
        refused.contains("holds_player_rows_move_its_buckets_to_a_database_at_schema_2_instead"),
        "{refused}"
    );
    assert_eq!(dump(&conn), before, "nothing changed");
    assert!(!without_rowid(&conn, "chat_messages"));

    // Every bucket purged (as the moves leave a database), the migration applies.
    for b in 0..=255u8 {
        while purge_page(&conn, b, 7).unwrap() > 0 {}
    }
    rebuild_leaders(&conn).unwrap();
    apply_schema_2(&conn).unwrap();
    for table in ["chat_messages", "point_events", "user_stats"] {
        assert!(without_rowid(&conn, table), "{table}");
    }
    // And it serves turns.
    let everyone = players(&conn, 5);
    let batch: Vec<_> = everyone
        .iter()
        .map(|p| turn(p, &mut serial, &mut rng, T0 + 5000))
        .collect();
    assert_eq!(apply_turns(&mut conn, &batch).unwrap().applied, 5);
    assert_eq!(board(&conn, SERVED), top_by_scan(&conn, SERVED));
}

#[test]
fn a_rebuild_requested_before_a_batch_drops_totals_written_without_the_table() {
    let mut conn = open_in_memory().unwrap();
    let everyone = players(&conn, KEPT as usize + 40);
    let mut rng = StdRng::seed_from_u64(11);
    let mut serial = 0;
    let first: Vec<_> = everyone
        .iter()
        .map(|p| turn(p, &mut serial, &mut rng, T0))
        .collect();
    apply_turns(&mut conn, &first).unwrap();
    assert_eq!(board(&conn, SERVED), top_by_scan(&conn, SERVED));
    // Workers that do not keep the table (before migration 0008 shipped with them) move
    // totals: the last player jumps to the top, the first one falls.
    conn.execute_batch(
        "UPDATE user_stats SET total_points = 100000 WHERE user_id = (SELECT MAX(user_id) FROM user_stats);
         UPDATE user_stats SET total_points = -100000 WHERE user_id = (SELECT user_id FROM leaders ORDER BY total_points DESC LIMIT 1);
         UPDATE leaders_floor SET refill = 1;",
    )
    .unwrap();
    // The next batch, of one player who is neither, rebuilds the table first.
    let one = turn(&everyone[7], &mut serial, &mut rng, T0 + 1000);
    apply_turns(&mut conn, &[one]).unwrap();
    assert_eq!(board(&conn, SERVED), top_by_scan(&conn, SERVED));
    assert_eq!(scalar(&conn, "SELECT refill FROM leaders_floor"), 0);
}
