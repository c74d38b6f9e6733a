//! The migrations and the consumer's batch on native SQLite (rusqlite), for tests and
//! benchmarks: the same files and statements as D1 runs, one transaction per batch as D1's
//! `batch` is.
//!
//! - [`actor`]: the session actor's flow on SQLite, with an in-memory queue and faults.
//! - [`consumer`]: the consumer's ports on SQLite databases and in-memory queues.
//! - [`privacy`]: the erasure's ports on those databases, that store, and actors in memory.
//! - [`archive`]: the archiver's ports on those databases and an in-memory object store
//!   with faults.

pub mod actor;
pub mod archive;
pub mod consumer;
pub mod privacy;

use crate::batch::{judge, turn_chunks, Outcome, StoredTurn};
use crate::consumer::ports::Stored;
use crate::record::TurnRecord;
use crate::sql;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// The repository's `migrations/` folder.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

/// The migration files in the order wrangler applies them (by their number).
pub fn migration_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

/// Applies every migration to `conn`, with foreign keys enforced as D1 does.
pub fn migrate(conn: &Connection) -> Result<(), Box<dyn std::error::Error>> {
    migrate_through(conn, "9999")
}

/// Applies the migrations up to the file named `last` (inclusive) to `conn`: a database at
/// an older schema, as one created before a migration shipped holds it.
pub fn migrate_through(conn: &Connection, last: &str) -> Result<(), Box<dyn std::error::Error>> {
    conn.pragma_update(None, "foreign_keys", true)?;
    for file in migration_files(&migrations_dir())? {
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().as_ref() > last)
        {
            break;
        }
        let sql = std::fs::read_to_string(&file)?;
        conn.execute_batch(&sql)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// A database created before schema 2, as it serves this round: the migrations through
/// `0008_leaders.sql`, and the tables of 0010 and 0011 added by hand
/// (`sql::BY_HAND_ON_SCHEMA_ONE`: the operator's `wrangler d1 execute --file`).
pub fn migrate_schema_one(conn: &Connection) -> Result<(), Box<dyn std::error::Error>> {
    migrate_through(conn, "0008_leaders.sql")?;
    for file in sql::BY_HAND_ON_SCHEMA_ONE {
        conn.execute_batch(&std::fs::read_to_string(migrations_dir().join(file))?)?;
    }
    Ok(())
}

/// A fresh in-memory database with every migration applied.
pub fn open_in_memory() -> Result<Connection, Box<dyn std::error::Error>> {
    let conn = Connection::open_in_memory()?;
    migrate(&conn)?;
    Ok(conn)
}

/// Starts a Kai session in English for `identity` at `at`, as `POST /api/sessions` does
/// (the player upserted, the session inserted).
pub fn start_session(
    conn: &Connection,
    identity: &crate::identity::Identity,
    session: uuid::Uuid,
    at: i64,
) -> rusqlite::Result<()> {
    conn.execute(sql::UPSERT_USERS, [crate::batch::user_json(identity, at)])?;
    conn.execute(
        sql::INSERT_SESSION,
        rusqlite::params![
            session.to_string(),
            identity.user_id().to_string(),
            "kai",
            "p",
            "en",
            at
        ],
    )?;
    Ok(())
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Turns newly stored.
    pub applied: usize,
    /// Deliveries of turns already stored, in this batch or before.
    pub duplicates: usize,
    /// Deliveries reusing a turn id for a different turn (nothing stored for them).
    pub conflicts: usize,
    /// Deliveries of players whose bucket this database has fenced (nothing stored for
    /// them: the consumer holds them in the queue).
    pub held: usize,
}

/// Applies a batch of turns as the consumer does, in chunks of at most
/// `d1_limits::MAX_BOUND_JSON_BYTES`.
pub fn apply_turns(conn: &mut Connection, records: &[TurnRecord]) -> rusqlite::Result<Applied> {
    apply_turns_within(conn, records, crate::d1_limits::MAX_BOUND_JSON_BYTES)
}

/// Applies a batch of turns as the consumer does: cut into chunks of at most `max_bytes` of
/// JSON, each chunk's first deliveries through every statement of `sql::apply_turns` in one
/// transaction, then its deliveries judged.
pub fn apply_turns_within(
    conn: &mut Connection,
    records: &[TurnRecord],
    max_bytes: usize,
) -> rusqlite::Result<Applied> {
    let mut total = Applied::default();
    for chunk in turn_chunks(records, |r| r, max_bytes) {
        let deliveries: Vec<&TurnRecord> = chunk.deliveries.iter().map(|&i| &records[i]).collect();
        let a = apply_chunk(conn, &deliveries, &chunk.json)?;
        total.applied += a.applied;
        total.duplicates += a.duplicates;
        total.conflicts += a.conflicts;
        total.held += a.held;
    }
    Ok(total)
}

fn apply_chunk(
    conn: &mut Connection,
    records: &[&TurnRecord],
    json: &str,
) -> rusqlite::Result<Applied> {
    let stored = store_chunk(conn, json)?;
    let (held, written): (Vec<&TurnRecord>, Vec<&TurnRecord>) = records
        .iter()
        .partition(|r| crate::batch::is_fenced(&stored.fenced, &r.user.id));
    let judged = judge(&written, |r| r, &stored.before);
    let count = |o: Outcome| judged.iter().filter(|&&x| x == o).count();
    debug_assert_eq!(
        count(Outcome::Applied),
        stored.inserted,
        "the event insert agrees with the judgement"
    );
    Ok(Applied {
        applied: count(Outcome::Applied),
        duplicates: count(Outcome::Duplicate),
        conflicts: count(Outcome::Conflict),
        held: held.len(),
    })
}

/// Runs every statement of `sql::apply_turns` on one chunk's JSON in one transaction, as
/// D1's `batch` does, and reads back what the consumer judges with.
pub fn store_chunk(conn: &mut Connection, json: &str) -> rusqlite::Result<Stored> {
    let tx = conn.transaction()?;
    let mut stored = Stored::default();
    for (i, statement) in sql::apply_turns().iter().enumerate() {
        let mut st = tx.prepare_cached(statement)?;
        stored.statements += 1;
        if i == sql::FENCED_STATEMENT {
            stored.fenced = st
                .query_map([json], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
        } else if i == sql::ERASED_STATEMENT {
            stored.erased = st
                .query_map([json], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
        } else if i == sql::ARCHIVED_STATEMENT {
            stored.archived = st
                .query_map([json], |r| {
                    Ok(crate::consumer::ports::ArchivedHit {
                        turn_id: r.get("turn_id")?,
                        objects: r.get("objects")?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
        } else if i == sql::STORED_STATEMENT {
            stored.before = st
                .query_map([json], |r| {
                    Ok(StoredTurn {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        session_id: r.get(2)?,
                        content: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
        } else {
            let changes = st.execute([json])?;
            if i == sql::APPLIED_STATEMENT {
                stored.inserted = changes;
            }
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// One page of a bucket's copy from `from` to `to`, as the admin API runs it on D1: the
/// rows of `sql::shards::TABLES[cursor.table]` after the cursor, at most `limit`. Returns
/// the rows copied and where to go on (`None` when the bucket is copied).
pub fn copy_page(
    from: &Connection,
    to: &Connection,
    bucket: u8,
    cursor: crate::shards::CopyCursor,
    limit: usize,
) -> rusqlite::Result<(usize, Option<crate::shards::CopyCursor>)> {
    let table = &sql::shards::TABLES[cursor.table];
    let (_, hi) = sql::shards::bucket_range(bucket);
    let (rows, n, last_user, last_key): (String, usize, Option<String>, Option<String>) = from
        .query_row(
            &table.export_page(),
            rusqlite::params![cursor.user, cursor.key, hi, limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    to.execute(&table.import_page(), [rows])?;
    let last = last_user.zip(last_key);
    Ok((n, cursor.after(bucket, n, limit, last)))
}

/// What `conn` holds of `bucket`.
pub fn bucket_summary(
    conn: &Connection,
    bucket: u8,
) -> rusqlite::Result<crate::shards::BucketSummary> {
    let (lo, hi) = sql::shards::bucket_range(bucket);
    conn.query_row(&sql::shards::BUCKET_SUMMARY, [lo, hi], |r| {
        Ok(crate::shards::BucketSummary {
            users: r.get("users")?,
            chat_sessions: r.get("chat_sessions")?,
            chat_messages: r.get("chat_messages")?,
            archive_players: r.get("archive_players")?,
            erasures: r.get("erasures")?,
            point_events: r.get("point_events")?,
            user_stats: r.get("user_stats")?,
            points: r.get("points")?,
            total_points: r.get("total_points")?,
        })
    })
}

/// Deletes a page of at most `limit` rows of `bucket` from `conn`, tables in reverse
/// foreign-key order; returns how many went (0 once the bucket is gone).
pub fn purge_page(conn: &Connection, bucket: u8, limit: usize) -> rusqlite::Result<usize> {
    let (lo, hi) = sql::shards::bucket_range(bucket);
    for table in sql::shards::TABLES.iter().rev() {
        let n = conn.execute(&table.purge_page(), rusqlite::params![lo, hi, limit as i64])?;
        if n > 0 {
            return Ok(n);
        }
    }
    Ok(0)
}

/// Refills `conn`'s leaderboard table from what it holds, in one transaction, as the admin
/// API's flip and purge do (`sql::leaders::REBUILD`).
pub fn rebuild_leaders(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for statement in sql::leaders::REBUILD {
        tx.execute(statement, [])?;
    }
    tx.commit()
}

/// The top `limit` players of one database, among the buckets of `prefixes` (a JSON array
/// of bucket prefixes, `ShardMap::prefixes_json`).
pub fn leaderboard(
    conn: &Connection,
    limit: usize,
    prefixes: &str,
) -> rusqlite::Result<Vec<crate::shards::Leader>> {
    let mut st = conn.prepare(sql::leaders::LEADERBOARD)?;
    let rows = st.query_map(rusqlite::params![limit as i64, prefixes], |r| {
        Ok(crate::shards::Leader {
            user_id: r.get(0)?,
            display_name: r.get(1)?,
            x_username: r.get(2)?,
            total_points: r.get(3)?,
            intimacy_level: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Fences `bucket` in `conn` (`moving` or `moved`), or lifts its fence (`None`), as the
/// admin API's hold, flip and release do.
pub fn fence(conn: &Connection, bucket: u8, reason: Option<&str>, at: i64) -> rusqlite::Result<()> {
    let prefix = crate::shards::bucket_prefix(bucket);
    match reason {
        Some(reason) => conn.execute(
            sql::shards::FENCE_BUCKET,
            rusqlite::params![prefix, reason, at],
        )?,
        None => conn.execute(sql::shards::UNFENCE_BUCKET, [prefix])?,
    };
    Ok(())
}

/// One database's player figures for `GET /admin/stats`, among the buckets of `prefixes`:
/// (users, sessions, turns, total points).
pub fn player_stats(conn: &Connection, prefixes: &str) -> rusqlite::Result<(i64, i64, i64, i64)> {
    conn.query_row(sql::PLAYER_STATS, [prefixes], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
}
