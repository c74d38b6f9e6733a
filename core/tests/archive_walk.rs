//! What an archive run's reads cost on a database of a realistic size: the walk
//! (`sql::archive::SESSIONS_TO_ARCHIVE`) reads the messages' index, so its time grows with
//! the hot turns a database holds. Ignored in the suite (it builds a large database); run
//! it with `cargo test -p chat-core --release --test archive_walk -- --ignored --nocapture`
//! (`WALK_TURNS`, 300,000 by default). docs/design.md cites its figures.

use chat_core::archive::run::{run_page, Limits, Plan, Step};
use chat_core::identity::{AuthProvider, Identity};
use chat_core::native::actor::block_on;
use chat_core::native::consumer::Databases;
use chat_core::native::{apply_turns, start_session};
use chat_core::record::sample;
use chat_core::shards::bucket_prefix;
use std::time::Instant;

const DAY: i64 = 86_400_000;

#[test]
#[ignore = "builds a large database: run by hand (see the file's doc)"]
fn the_walk_reads_what_d1_holds() {
    let turns: usize = std::env::var("WALK_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let dbs = Databases::in_memory(1).unwrap();
    let t0 = 1_700_000_000_000;
    // 31 days of turns, each day's players in sessions of 20 turns.
    let sessions = turns / 20;
    let per_day = sessions.div_ceil(31);
    let built = Instant::now();
    let mut batch = Vec::new();
    for s in 0..sessions {
        let day = (s / per_day) as i64;
        let name = format!("walk-{}", s % 5000);
        let identity = Identity::new(AuthProvider::X, &name).unwrap();
        let at = t0 + day * DAY + (s % per_day) as i64 * 1000;
        let sid = uuid::Builder::from_unix_timestamp_millis(at as u64, &[s as u8; 10]).into_uuid();
        start_session(&dbs.dbs["DB_0"].borrow(), &identity, sid, at).unwrap();
        for t in 0..20 {
            batch.push(sample(&name, sid, (s * 20 + t) as u64, at + t as i64 * 10));
        }
        if batch.len() >= 1000 {
            apply_turns(&mut dbs.dbs["DB_0"].borrow_mut(), &batch).unwrap();
            batch.clear();
        }
    }
    apply_turns(&mut dbs.dbs["DB_0"].borrow_mut(), &batch).unwrap();
    eprintln!(
        "{turns} turns over 31 days in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    // The day's run: turns older than the first day's end, as a daily run at 30 days finds.
    let plan = Plan {
        databases: vec![("DB_0".into(), (0..=255u8).map(bucket_prefix).collect())],
    };
    let cutoff = t0 + DAY;
    let started = Instant::now();
    let mut cursor = None;
    let (mut pages, mut archived) = (0, 0);
    loop {
        let step = Step {
            cursor: cursor.as_ref(),
            cutoff,
            dry_run: false,
            now_ms: t0 + 40 * DAY,
            limits: Limits::default(),
        };
        let page = block_on(run_page(&dbs, &dbs.archive, &plan, &step)).unwrap();
        pages += 1;
        archived += page.turns;
        match page.next_cursor {
            Some(c) => {
                cursor = chat_core::archive::cursor::ArchiveCursor::parse(&c, &["DB_0".into()])
            }
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "a day's run: {archived} turns archived in {pages} pages, {seconds:.2} s ({:.0} turns/s, {:.0} ms a page)",
        archived as f64 / seconds,
        seconds * 1000.0 / pages as f64
    );
    assert_eq!(archived, per_day * 20);
}
