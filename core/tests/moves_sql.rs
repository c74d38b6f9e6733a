//! Bucket moves on real SQLite, step by step as the admin API runs them (`chat_core::moves`
//! decides, the SQL of `sql::shards` acts): a move held, copied and released, then moved
//! again to the same target, with every player counted once by the leaderboard and the
//! figures at every step, stale writers refused by the fences, and the purge leaving each
//! player in one database.

use chat_core::identity::{AuthProvider, Identity};
use chat_core::moves::{self, Purge};
use chat_core::native::{
    apply_turns, bucket_summary, copy_page, fence, leaderboard, open_in_memory, player_stats,
    purge_page, rebuild_leaders, start_session,
};
use chat_core::record::{sample, TurnRecord};
use chat_core::shards::{bucket, merge_leaders, CopyCursor, Override, OverrideRow, ShardMap};
use chat_core::sql;
use rusqlite::Connection;
use std::collections::BTreeMap;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const BASE: &str = "0-127=DB_0,128-255=DB_1";
const GRACE: i64 = 6_000;

struct World {
    dbs: BTreeMap<&'static str, Connection>,
    /// The control database's row for the moving bucket.
    row: OverrideRow,
    players: Vec<(Identity, Uuid)>,
    next_turn: u64,
}

impl World {
    fn map(&self) -> ShardMap {
        ShardMap::parse(BASE)
            .unwrap()
            .with_overrides(&[Override::from(&self.row)])
            .unwrap()
    }

    /// A turn for each player, routed by the current map, as the consumer writes it.
    fn play_round(&mut self, map: &ShardMap) -> usize {
        let mut by_db: BTreeMap<String, Vec<TurnRecord>> = BTreeMap::new();
        for (p, s) in &self.players {
            self.next_turn += 1;
            let t = sample(
                p.provider_user_id.as_str(),
                *s,
                self.next_turn,
                T0 + self.next_turn as i64,
            );
            by_db
                .entry(map.binding(&p.user_id()).to_owned())
                .or_default()
                .push(t);
        }
        let mut held = 0;
        for (binding, records) in by_db {
            held += apply_turns(self.dbs.get_mut(binding.as_str()).unwrap(), &records)
                .unwrap()
                .held;
        }
        held
    }

    /// Every player once, whatever copies exist: the leaderboard and the figures agree
    /// with the players' own ledgers.
    fn counted_once(&self, step: &str) {
        let map = self.map();
        let board = merge_leaders(
            self.dbs
                .iter()
                .map(|(b, c)| leaderboard(c, 100, &map.prefixes_json(b, false)).unwrap()),
            100,
        );
        assert_eq!(
            board.len(),
            self.players.len(),
            "{step}: each player ranked once"
        );
        let (mut users, mut turns, mut points) = (0, 0, 0);
        for (b, c) in &self.dbs {
            let (u, _, t, p) = player_stats(c, &map.prefixes_json(b, false)).unwrap();
            users += u;
            turns += t;
            points += p;
        }
        assert_eq!(
            users as usize,
            self.players.len(),
            "{step}: users counted once"
        );
        let ledger: i64 = self
            .players
            .iter()
            .map(|(p, _)| {
                let home = &self.dbs[map.binding(&p.user_id())];
                home.query_row(
                    "SELECT COALESCE(SUM(delta), 0) FROM point_events WHERE user_id = ?1",
                    [p.user_id().to_string()],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
            })
            .sum();
        assert_eq!(points, ledger, "{step}: points counted once");
        assert_eq!(
            turns as u64,
            self.stored_in_homes(&map),
            "{step}: turns counted once"
        );
    }

    fn stored_in_homes(&self, map: &ShardMap) -> u64 {
        self.players
            .iter()
            .map(|(p, _)| {
                self.dbs[map.binding(&p.user_id())]
                    .query_row(
                        "SELECT COUNT(*) FROM point_events WHERE user_id = ?1",
                        [p.user_id().to_string()],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap() as u64
            })
            .sum()
    }

    fn copy_all(&self, b: u8, from: &str, to: &str, page: usize) {
        let mut cursor = Some(CopyCursor::start(b));
        while let Some(c) = cursor {
            cursor = copy_page(&self.dbs[from], &self.dbs[to], b, c, page)
                .unwrap()
                .1;
        }
    }
}

#[test]
fn an_abandoned_move_then_a_real_one_count_every_player_once_at_every_step() {
    // Players of one bucket in DB_0, and players elsewhere.
    let name = |i: usize| format!("mv-{i}");
    let first = (0..)
        .map(name)
        .find(|n| bucket(&chat_core::ids::user_id("x", n)) < 128)
        .unwrap();
    let b = bucket(&chat_core::ids::user_id("x", &first));
    let mut names: Vec<String> = (0..)
        .map(name)
        .filter(|n| bucket(&chat_core::ids::user_id("x", n)) == b)
        .take(3)
        .collect();
    names.extend(
        (0..)
            .map(name)
            .filter(|n| bucket(&chat_core::ids::user_id("x", n)) != b)
            .take(5),
    );
    let mut w = World {
        dbs: BTreeMap::from([
            ("DB_0", open_in_memory().unwrap()),
            ("DB_1", open_in_memory().unwrap()),
        ]),
        row: OverrideRow {
            bucket: b,
            binding: "DB_0".into(),
            ..OverrideRow::default()
        },
        players: names
            .iter()
            .map(|n| (Identity::new(AuthProvider::X, n).unwrap(), Uuid::now_v7()))
            .collect(),
        next_turn: 0,
    };
    let map = w.map();
    for (p, s) in &w.players {
        start_session(&w.dbs[map.binding(&p.user_id())], p, *s, T0).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(w.play_round(&map), 0);
    }
    w.counted_once("before the move");

    // Hold: the source refuses the bucket's writes; the bucket is moving.
    moves::may_hold(b, Some(&w.row), "DB_0", Some("DB_1")).unwrap();
    fence(&w.dbs["DB_0"], b, Some("moving"), T0).unwrap();
    w.row.moving = 1;
    w.row.held_at = Some(T0);
    // A writer with a map older than the hold still routes the bucket to DB_0: refused.
    let stale = ShardMap::parse(BASE).unwrap();
    assert_eq!(w.play_round(&stale), 3, "the bucket's three turns are held");
    let mover = &w.players[0];
    let changed = w.dbs["DB_0"]
        .execute(
            sql::INSERT_SESSION,
            rusqlite::params![
                Uuid::now_v7().to_string(),
                mover.0.user_id().to_string(),
                "kai",
                "p",
                "en",
                T0
            ],
        )
        .unwrap();
    assert_eq!(changed, 0, "a session start there is refused too");
    w.counted_once("held");

    // Copy (after the grace), then give up: release.
    assert!(moves::may_copy(b, Some(&w.row), "DB_1", T0 + GRACE - 1, GRACE).is_err());
    moves::may_copy(b, Some(&w.row), "DB_1", T0 + GRACE, GRACE).unwrap();
    w.row.copy_to = Some("DB_1".into());
    w.copy_all(b, "DB_0", "DB_1", 3);
    w.counted_once("copied, not flipped");
    w.row.moving = 0;
    w.row.held_at = None;
    fence(&w.dbs["DB_0"], b, None, T0).unwrap();
    w.counted_once("released");
    // The game goes on in DB_0: the copy in DB_1 goes stale, and is still never counted.
    assert_eq!(w.play_round(&w.map()), 0);
    w.counted_once("released, played on");

    // The abandoned copy must be purged before another move.
    let refused = moves::may_hold(b, Some(&w.row), "DB_0", Some("DB_1")).unwrap_err();
    assert_eq!(refused.code, "purge_pending");
    assert_eq!(
        moves::purge(b, Some(&w.row), T0, GRACE),
        Ok(Purge::Abandoned("DB_1".into()))
    );
    // (The copy also replaces stale rows, so a re-copy over it would end equal too; see
    // below.) Here: purge it half, then move again over what is left.
    purge_page(&w.dbs["DB_1"], b, 2).unwrap();
    w.row.copy_to = None;

    // The second move, to the same target, completes.
    moves::may_hold(b, Some(&w.row), "DB_0", Some("DB_1")).unwrap();
    fence(&w.dbs["DB_0"], b, Some("moving"), T0 + 10_000).unwrap();
    w.row.moving = 1;
    w.row.held_at = Some(T0 + 10_000);
    w.row.copy_to = Some("DB_1".into());
    w.copy_all(b, "DB_0", "DB_1", 4);
    assert_eq!(
        bucket_summary(&w.dbs["DB_0"], b).unwrap(),
        bucket_summary(&w.dbs["DB_1"], b).unwrap(),
        "the upserting copy replaced the stale rows: both sides agree"
    );
    w.counted_once("copied again");
    assert_eq!(
        moves::flip(b, Some(&w.row), "DB_1"),
        Ok(moves::Flip::Verify {
            from: "DB_0".into()
        })
    );
    fence(&w.dbs["DB_0"], b, Some("moved"), T0 + 20_000).unwrap();
    w.row = OverrideRow {
        bucket: b,
        binding: "DB_1".into(),
        moved_from: Some("DB_0".into()),
        flipped_at: Some(T0 + 20_000),
        ..OverrideRow::default()
    };
    fence(&w.dbs["DB_1"], b, None, T0).unwrap();
    // The flip's last step (`move_steps::flip`): both leaderboards follow the move.
    rebuild_leaders(&w.dbs["DB_0"]).unwrap();
    rebuild_leaders(&w.dbs["DB_1"]).unwrap();
    w.counted_once("flipped");
    // A writer that still holds the map before the flip is refused by DB_0's fence; the new
    // home takes the turns.
    let before_flip = ShardMap::parse(BASE).unwrap();
    assert_eq!(w.play_round(&before_flip), 3);
    assert_eq!(w.play_round(&w.map()), 0);
    w.counted_once("flipped, played on");
    assert_eq!(
        moves::may_hold(b, Some(&w.row), "DB_1", Some("DB_0"))
            .unwrap_err()
            .code,
        "purge_pending",
        "no second move before the old source is purged"
    );

    // Purge, after the grace.
    assert!(moves::purge(b, Some(&w.row), T0 + 20_000, GRACE).is_err());
    assert_eq!(
        moves::purge(b, Some(&w.row), T0 + 20_000 + GRACE, GRACE),
        Ok(Purge::Source("DB_0".into()))
    );
    while purge_page(&w.dbs["DB_0"], b, 3).unwrap() > 0 {}
    rebuild_leaders(&w.dbs["DB_0"]).unwrap();
    w.row.moved_from = None;
    w.counted_once("purged");
    let (lo, hi) = sql::shards::bucket_range(b);
    let left: i64 = w.dbs["DB_0"]
        .query_row(
            "SELECT COUNT(*) FROM users WHERE id >= ?1 AND id < ?2",
            [lo, hi],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the bucket's players live in DB_1 only");
    for (binding, conn) in &w.dbs {
        let drift: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(drift, 0, "{binding}: totals equal the ledger");
    }
}

#[test]
fn reconcile_never_repairs_a_copy_it_does_not_own() {
    let mut db = open_in_memory().unwrap();
    let p = Identity::new(AuthProvider::X, "owned").unwrap();
    let s = Uuid::now_v7();
    start_session(&db, &p, s, T0).unwrap();
    apply_turns(&mut db, &[sample("owned", s, 1, T0)]).unwrap();
    // Drift the snapshot by hand.
    db.execute("UPDATE user_stats SET total_points = total_points + 5", [])
        .unwrap();
    let b = bucket(&p.user_id());
    let owned = format!("[\"{}\"]", chat_core::shards::bucket_prefix(b));
    let drift = |buckets: &str| -> i64 {
        db.query_row(
            &format!("SELECT COUNT(*) FROM ({})", *sql::SELECT_DRIFT),
            rusqlite::params![None::<String>, 100, buckets],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(drift(&owned), 1);
    assert_eq!(
        drift("[]"),
        0,
        "a bucket this database does not own is left alone"
    );
    let fixed = db
        .execute(
            &sql::FIX_DRIFT,
            rusqlite::params![None::<String>, 100, "[]", T0],
        )
        .unwrap();
    assert_eq!(fixed, 0);
    db.execute(
        &sql::FIX_DRIFT,
        rusqlite::params![None::<String>, 100, owned, T0],
    )
    .unwrap();
    assert_eq!(drift(&owned), 0);
}
