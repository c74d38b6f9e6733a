//! Sharding on real SQLite: players' turns routed to two databases by the bucket map, the
//! invariants holding in each, a bucket copied (twice, in small pages) and verified, the
//! source purged, and the leaderboard merged across databases.

mod common;

use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::{
    apply_turns, bucket_summary, copy_page, leaderboard, open_in_memory, purge_page, start_session,
};
use chat_core::record::{sample, TurnRecord};
use chat_core::shards::{bucket, merge_leaders, BucketSummary, CopyCursor, ShardMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;
use std::collections::HashMap;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

fn scalar(conn: &Connection, q: &str) -> i64 {
    conn.query_row(q, [], |r| r.get(0)).unwrap()
}

/// Every user's total equals their ledger, and every row's user is in a bucket `map` puts
/// in this database.
fn check_invariants(conn: &Connection, map: &ShardMap, binding: &str) {
    assert_eq!(
        scalar(conn, "SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)"),
        0,
        "{binding}: totals equal the ledger"
    );
    let mut st = conn
        .prepare("SELECT user_id FROM point_events UNION SELECT id FROM users")
        .unwrap();
    let users: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for u in users {
        let id = Uuid::parse_str(&u).unwrap();
        assert_eq!(map.binding(&id), binding, "{u} is in the wrong database");
    }
}

#[test]
fn turns_route_to_their_database_and_a_bucket_moves_whole() {
    let seed = common::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let map = ShardMap::parse("0-127=DB_0,128-255=DB_1").unwrap();
    let mut dbs: HashMap<&str, Connection> = HashMap::from([
        ("DB_0", open_in_memory().unwrap()),
        ("DB_1", open_in_memory().unwrap()),
    ]);

    // 40 players with a session each, 300 turns and 60 redeliveries, in shuffled batches
    // split by database as the consumer splits them.
    let players: Vec<Identity> = (0..40)
        .map(|i| Identity::new(AuthProvider::X, &format!("shard-{i}")).unwrap())
        .collect();
    let sessions: Vec<Uuid> = players.iter().map(|_| Uuid::now_v7()).collect();
    for (p, s) in players.iter().zip(&sessions) {
        start_session(&dbs[map.binding(&p.user_id())], p, *s, T0).unwrap();
    }
    let mut turns: Vec<TurnRecord> = (0..300u64)
        .map(|n| {
            let p = rng.gen_range(0..players.len());
            sample(&format!("shard-{p}"), sessions[p], n, T0 + n as i64)
        })
        .collect();
    let redelivered: Vec<TurnRecord> = turns.choose_multiple(&mut rng, 60).cloned().collect();
    turns.extend(redelivered);
    turns.shuffle(&mut rng);
    for batch in turns.chunks(37) {
        let mut by_db: HashMap<&str, Vec<TurnRecord>> = HashMap::new();
        for t in batch {
            by_db
                .entry(map.binding(&t.user.id))
                .or_default()
                .push(t.clone());
        }
        for (binding, records) in by_db {
            apply_turns(dbs.get_mut(binding).unwrap(), &records).unwrap();
        }
    }
    let stored: i64 = dbs
        .values()
        .map(|c| scalar(c, "SELECT COUNT(*) FROM point_events"))
        .sum();
    assert_eq!(stored, 300, "each turn stored once, in one database");
    for (binding, conn) in &dbs {
        assert!(
            scalar(conn, "SELECT COUNT(*) FROM point_events") > 0,
            "{binding} is used"
        );
        check_invariants(conn, &map, binding);
    }

    // The leaderboard across both equals the ranking of everyone.
    let mut everyone: Vec<_> = dbs
        .iter()
        .flat_map(|(b, c)| leaderboard(c, 1000, &map.prefixes_json(b, false)).unwrap())
        .collect();
    everyone.sort_by(|a, b| {
        b.total_points
            .cmp(&a.total_points)
            .then(a.user_id.cmp(&b.user_id))
    });
    everyone.truncate(10);
    let merged = merge_leaders(
        dbs.iter()
            .map(|(b, c)| leaderboard(c, 10, &map.prefixes_json(b, false)).unwrap()),
        10,
    );
    assert_eq!(merged, everyone);

    // Move the bucket of player 0 from its database to the other one.
    let mover = players[0].user_id();
    let b = bucket(&mover);
    let (from, to) = if map.binding(&mover) == "DB_0" {
        ("DB_0", "DB_1")
    } else {
        ("DB_1", "DB_0")
    };
    let before = bucket_summary(&dbs[from], b).unwrap();
    assert!(before.point_events > 0 && before.users > 0, "{before:?}");
    assert_eq!(
        bucket_summary(&dbs[to], b).unwrap(),
        BucketSummary::default()
    );
    // The first copy stops after a few pages; the second starts over and finishes.
    let mut cursor = Some(CopyCursor::start(b));
    for _ in 0..4 {
        let (_, next) = copy_page(&dbs[from], &dbs[to], b, cursor.unwrap(), 3).unwrap();
        cursor = next;
    }
    let mut cursor = Some(CopyCursor::start(b));
    let mut pages = 0;
    while let Some(c) = cursor {
        let (_, next) = copy_page(&dbs[from], &dbs[to], b, c, 3).unwrap();
        cursor = next;
        pages += 1;
    }
    assert!(pages > 5, "{pages} pages");
    assert_eq!(
        bucket_summary(&dbs[to], b).unwrap(),
        before,
        "both sides agree"
    );
    while purge_page(&dbs[from], b, 4).unwrap() > 0 {}
    assert_eq!(
        bucket_summary(&dbs[from], b).unwrap(),
        BucketSummary::default()
    );
    let moved = ShardMap::parse("0-127=DB_0,128-255=DB_1")
        .unwrap()
        .with_overrides(&[chat_core::shards::Override {
            bucket: b,
            binding: to.into(),
            moving: false,
        }])
        .unwrap();
    for (binding, conn) in &dbs {
        check_invariants(conn, &moved, binding);
    }
    let total: i64 = dbs
        .values()
        .map(|c| scalar(c, "SELECT COUNT(*) FROM point_events"))
        .sum();
    assert_eq!(total, 300, "nothing lost or doubled by the move");
    // Turns after the move land in the new database and keep its totals right.
    let later = sample("shard-0", sessions[0], 10_000, T0 + 10_000);
    apply_turns(dbs.get_mut(to).unwrap(), &[later]).unwrap();
    check_invariants(&dbs[to], &moved, to);
}
