//! The real migration files on real SQLite: every key, constraint and index the data model names.

use chat_core::native::open_in_memory;
use rusqlite::Connection;

fn foreign_keys(conn: &Connection, table: &str) -> Vec<(String, String, String)> {
    let mut st = conn
        .prepare(&format!("PRAGMA foreign_key_list({table})"))
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(3)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(4)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// (unique?, columns) of every index on `table`.
fn indexes(conn: &Connection, table: &str) -> Vec<(bool, Vec<String>)> {
    let mut st = conn
        .prepare(&format!("PRAGMA index_list({table})"))
        .unwrap();
    let list: Vec<(String, bool)> = st
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    list.into_iter()
        .map(|(name, unique)| {
            let mut st = conn.prepare(&format!("PRAGMA index_info({name})")).unwrap();
            let cols = st
                .query_map([], |r| r.get(2))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (unique, cols)
        })
        .collect()
}

fn has_index(conn: &Connection, table: &str, unique: bool, cols: &[&str]) -> bool {
    indexes(conn, table)
        .iter()
        .any(|(u, c)| *u == unique && c == cols)
}

#[test]
fn every_foreign_key_is_declared() {
    let conn = open_in_memory().unwrap();
    let fk =
        |from: &str, table: &str, to: &str| (from.to_string(), table.to_string(), to.to_string());
    assert_eq!(
        foreign_keys(&conn, "chat_messages"),
        vec![fk("user_id", "users", "id")]
    );
    // At schema 2 `point_events.message_id` names its turn without a foreign key (migration
    // 0009: deleting a message would need an index on it, written with every turn).
    assert_eq!(
        foreign_keys(&conn, "point_events"),
        vec![fk("user_id", "users", "id")]
    );
    assert_eq!(
        foreign_keys(&conn, "user_stats"),
        vec![fk("user_id", "users", "id")]
    );
    assert_eq!(
        foreign_keys(&conn, "chat_sessions"),
        vec![fk("user_id", "users", "id")]
    );
}

#[test]
fn unique_keys_and_indexes_exist() {
    let conn = open_in_memory().unwrap();
    assert!(has_index(
        &conn,
        "users",
        true,
        &["auth_provider", "auth_provider_user_id"]
    ));
    assert!(has_index(&conn, "users", true, &["id"]));
    assert!(has_index(
        &conn,
        "chat_messages",
        false,
        &["user_id", "session_id", "created_at"]
    ));
    assert!(has_index(
        &conn,
        "point_events",
        false,
        &["user_id", "created_at"]
    ));
    assert!(has_index(
        &conn,
        "chat_sessions",
        false,
        &["user_id", "created_at"]
    ));
    // No index ranks `user_stats` (D1 bills a row for each index entry a write moves): the
    // leaderboard reads the `leaders` table (sql::leaders).
    assert!(!has_index(
        &conn,
        "user_stats",
        false,
        &["total_points", "user_id"]
    ));
    for table in [
        "chat_messages",
        "point_events",
        "user_stats",
        "chat_sessions",
    ] {
        let pk = if table == "user_stats" {
            "user_id"
        } else {
            "id"
        };
        assert!(has_index(&conn, table, true, &[pk]), "{table} primary key");
    }
}

fn insert_user(conn: &Connection, id: &str, provider: &str, puid: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO users (id, auth_provider, auth_provider_user_id, created_at, updated_at) VALUES (?1, ?2, ?3, 1, 1)",
        [id, provider, puid],
    )
}

#[test]
fn a_duplicate_external_identity_is_refused() {
    let conn = open_in_memory().unwrap();
    insert_user(&conn, "u1", "x", "42").unwrap();
    let err = insert_user(&conn, "u2", "x", "42").unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    insert_user(&conn, "u3", "privy", "42").unwrap();
    assert!(insert_user(&conn, "u4", "google", "1")
        .unwrap_err()
        .to_string()
        .contains("CHECK"));
}

#[test]
fn checks_and_foreign_keys_are_enforced() {
    let conn = open_in_memory().unwrap();
    insert_user(&conn, "u1", "x", "1").unwrap();
    let message = |id: &str, user: &str, role: &str| {
        conn.execute(
            "INSERT INTO chat_messages (id, user_id, session_id, role, content, created_at) VALUES (?1, ?2, 's', ?3, 'hi', 1)",
            [id, user, role],
        )
    };
    message("m1", "u1", "user").unwrap();
    message("m2", "u1", "system").unwrap();
    assert!(message("m3", "u1", "admin")
        .unwrap_err()
        .to_string()
        .contains("CHECK"));
    assert!(message("m4", "nobody", "user")
        .unwrap_err()
        .to_string()
        .contains("FOREIGN KEY"));
    let event = |id: &str, message_id: &str, meta: &str| {
        conn.execute(
            "INSERT INTO point_events (id, user_id, session_id, message_id, delta, reason, metadata_json, created_at) VALUES (?1, 'u1', 's', ?2, 1, 'r', ?3, 1)",
            [id, message_id, meta],
        )
    };
    event("e1", "m1", "{}").unwrap();
    // The player must exist; the message is named, not checked (schema 2, migration 0009).
    assert!(conn
        .execute(
            "INSERT INTO point_events (id, user_id, session_id, delta, reason, created_at) VALUES ('e2', 'nobody', 's', 1, 'r', 1)",
            [],
        )
        .unwrap_err()
        .to_string()
        .contains("FOREIGN KEY"));
    assert!(event("e3", "m1", "{not json")
        .unwrap_err()
        .to_string()
        .contains("CHECK"));
}

#[test]
fn the_latest_migration_is_the_one_the_workers_check() {
    let files = chat_core::native::migration_files(&chat_core::native::migrations_dir()).unwrap();
    let last = files
        .last()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        last,
        chat_core::sql::LATEST_MIGRATION,
        "a new migration: update sql::LATEST_MIGRATION so /readyz checks it on every database"
    );
}
