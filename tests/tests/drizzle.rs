//! The TypeScript Drizzle schema (`ts/`) against the SQL migrations: the migrations go into
//! one SQLite database, `drizzle-kit generate`'s output into another, and their tables,
//! columns, types, nullability, defaults, keys and indexes must match. The example
//! queries are compiled with `tsc` too.

use e2e::root;
use e2e::schema_diff::{differences, shape};
use rusqlite::Connection;
use std::process::Command;

fn npx(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(root().join("ts/node_modules/.bin").join(args[0]));
    cmd.current_dir(root().join("ts")).args(&args[1..]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", args[0]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} failed:\n{text}", args.join(" "));
    text
}

fn drizzle_database() -> Connection {
    let out = tempfile::tempdir().unwrap();
    npx(
        &["drizzle-kit", "generate"],
        &[("DRIZZLE_OUT", out.path().to_str().unwrap())],
    );
    let conn = Connection::open_in_memory().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "drizzle-kit generated no SQL");
    for f in files {
        conn.execute_batch(&std::fs::read_to_string(f).unwrap())
            .unwrap();
    }
    conn
}

#[test]
fn the_drizzle_schema_matches_the_migrations() {
    let sql = Connection::open_in_memory().unwrap();
    chat_core::native::migrate(&sql).unwrap();
    let ts = drizzle_database();
    let diff = differences(&shape(&sql).unwrap(), &shape(&ts).unwrap());
    assert!(
        diff.is_empty(),
        "the Drizzle schema and the migrations differ:\n{}",
        diff.join("\n")
    );
}

#[test]
fn a_column_added_on_one_side_only_is_named() {
    let sql = Connection::open_in_memory().unwrap();
    chat_core::native::migrate(&sql).unwrap();
    let ts = drizzle_database();
    sql.execute_batch("ALTER TABLE users ADD COLUMN favourite_colour TEXT")
        .unwrap();
    let diff = differences(&shape(&sql).unwrap(), &shape(&ts).unwrap());
    assert_eq!(
        diff,
        vec!["column users.favourite_colour: in the migrations, missing from the Drizzle schema"]
    );
    ts.execute_batch("ALTER TABLE users ADD COLUMN favourite_colour INTEGER; ALTER TABLE point_events ADD COLUMN note TEXT").unwrap();
    let diff = differences(&shape(&sql).unwrap(), &shape(&ts).unwrap());
    assert_eq!(diff.len(), 2, "{diff:?}");
    assert!(
        diff[0].starts_with("column point_events.note: in the Drizzle schema"),
        "{diff:?}"
    );
    assert!(
        diff[1].starts_with("column users.favourite_colour: migrations say"),
        "{diff:?}"
    );
    sql.execute_batch("CREATE INDEX extra ON chat_sessions (ended_at)")
        .unwrap();
    let diff = differences(&shape(&sql).unwrap(), &shape(&ts).unwrap());
    assert!(
        diff.iter()
            .any(|d| d == "index on chat_sessions(ended_at): migrations only"),
        "{diff:?}"
    );
}

#[test]
fn the_example_queries_compile() {
    npx(&["tsc", "--noEmit", "-p", "."], &[]);
}
