//! Compares two SQLite schemas as a reader sees them: tables, columns (type, nullability,
//! default, primary key), foreign keys and indexes (uniqueness and columns; names are free).
//! Used to hold the TypeScript Drizzle schema to the SQL migrations.

use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};

/// One table's shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TableShape {
    /// name → (type, not null, default, primary key position)
    pub columns: BTreeMap<String, (String, bool, Option<String>, i64)>,
    /// (from column, to table, to column)
    pub foreign_keys: BTreeSet<(String, String, String)>,
    /// (unique, columns)
    pub indexes: BTreeSet<(bool, Vec<String>)>,
}

/// Tables that belong to the migration tools, not to the product.
fn is_tooling(table: &str) -> bool {
    table.starts_with("sqlite_")
        || table.starts_with("_cf_")
        || table == "d1_migrations"
        || table.starts_with("__drizzle")
}

/// The shape of every product table of `conn`.
pub fn shape(conn: &Connection) -> rusqlite::Result<BTreeMap<String, TableShape>> {
    let mut tables = BTreeMap::new();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in names.into_iter().filter(|t| !is_tooling(t)) {
        let mut t = TableShape::default();
        let mut st = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
        for row in st.query_map([], |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })? {
            let (name, ty, notnull, default, pk) = row?;
            t.columns
                .insert(name, (ty.to_ascii_uppercase(), notnull, default, pk));
        }
        let mut st = conn.prepare(&format!("PRAGMA foreign_key_list(\"{table}\")"))?;
        for row in st.query_map([], |r| {
            Ok((
                r.get::<_, String>(3)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(4)?,
            ))
        })? {
            t.foreign_keys.insert(row?);
        }
        let indexes: Vec<(String, bool)> = conn
            .prepare(&format!("PRAGMA index_list(\"{table}\")"))?
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (index, unique) in indexes {
            let cols: Vec<String> = conn
                .prepare(&format!("PRAGMA index_info(\"{index}\")"))?
                .query_map([], |r| r.get(2))?
                .collect::<Result<_, _>>()?;
            t.indexes.insert((unique, cols));
        }
        tables.insert(table, t);
    }
    Ok(tables)
}

/// Every difference between `sql` (the migrations) and `ts` (the Drizzle schema), one line
/// each, naming the table and column.
pub fn differences(
    sql: &BTreeMap<String, TableShape>,
    ts: &BTreeMap<String, TableShape>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, a) in sql {
        let Some(b) = ts.get(name) else {
            out.push(format!(
                "table {name}: in the migrations, missing from the Drizzle schema"
            ));
            continue;
        };
        for (col, spec) in &a.columns {
            match b.columns.get(col) {
                None => out.push(format!("column {name}.{col}: in the migrations, missing from the Drizzle schema")),
                Some(other) if other != spec => {
                    out.push(format!("column {name}.{col}: migrations say {spec:?}, Drizzle says {other:?} (type, not null, default, pk)"))
                }
                Some(_) => {}
            }
        }
        for col in b.columns.keys().filter(|c| !a.columns.contains_key(*c)) {
            out.push(format!(
                "column {name}.{col}: in the Drizzle schema, missing from the migrations"
            ));
        }
        for fk in a.foreign_keys.symmetric_difference(&b.foreign_keys) {
            let side = if a.foreign_keys.contains(fk) {
                "migrations only"
            } else {
                "Drizzle only"
            };
            out.push(format!(
                "foreign key {name}.{} -> {}.{}: {side}",
                fk.0, fk.1, fk.2
            ));
        }
        for ix in a.indexes.symmetric_difference(&b.indexes) {
            let side = if a.indexes.contains(ix) {
                "migrations only"
            } else {
                "Drizzle only"
            };
            let kind = if ix.0 { "unique index" } else { "index" };
            out.push(format!("{kind} on {name}({}): {side}", ix.1.join(", ")));
        }
    }
    for name in ts.keys().filter(|t| !sql.contains_key(*t)) {
        out.push(format!(
            "table {name}: in the Drizzle schema, missing from the migrations"
        ));
    }
    out
}
