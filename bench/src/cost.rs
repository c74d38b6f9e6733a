//! What a turn costs on Cloudflare: the counts the `counts` scenario measured per turn, in
//! the units Cloudflare bills, priced with the list prices of `bench/prices.json` (each with
//! the page it came from and the date it was read).
//!
//! Two views: dollars per million turns at list price (no allowance: the marginal cost), and
//! a month of a game with 10,000 and 1,000,000 daily players at [`TURNS_PER_PLAYER_PER_DAY`],
//! where the plan's base price and its included usage count. Storage accumulates: month `m`
//! keeps every earlier month's turns for the whole month and its own for half of it on
//! average, so month 12 pays for 11.5 months of turns ([`stored_months`]).
//!
//! Allowances: the Durable Objects pricing page lists its own SQLite rows read and written
//! "included" per month beside D1's own, and says only that they "match D1 pricing" (the same
//! figures), not that one allowance covers both. Each is priced with its own allowance
//! ([`Allowances::Separate`]), and the month is also shown as if they shared one
//! ([`Allowances::Shared`]), the bill being no more than that either way.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Turns a daily player plays, in the monthly view.
pub const TURNS_PER_PLAYER_PER_DAY: f64 = 20.0;
/// Days of the monthly view.
pub const DAYS_PER_MONTH: f64 = 30.0;
/// Daily players of the monthly view.
pub const DAILY_PLAYERS: [f64; 2] = [10_000.0, 1_000_000.0];

/// The designs measured, as the run's JSON names them, and as tables say them.
pub const DESIGNS: [(&str, &str); 5] = [
    ("http", "plain HTTP (`POST /api/chat`, keyed)"),
    (
        "httpUnkeyed",
        "plain HTTP without `Idempotency-Key` (API clients)",
    ),
    (
        "sse",
        "SSE (`POST /api/chat`, `Accept: text/event-stream`, keyed as the page sends it)",
    ),
    ("ws", "WebSocket (the session's live socket)"),
    ("inline", "inline write (one Worker, D1 in the request)"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    pub checked: String,
    pub plan: String,
    pub monthly_base: f64,
    pub do_memory_gb: f64,
    pub ws_messages_per_request: f64,
    /// How the prices are applied, shown under the tables.
    #[serde(default)]
    pub notes: Vec<String>,
    pub units: Vec<Unit>,
}

/// One billed unit: `price` dollars per `per` units beyond `included_per_month`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    pub key: String,
    pub what: String,
    pub price: f64,
    pub per: f64,
    pub included_per_month: f64,
    pub source: String,
}

impl Prices {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let prices: Prices = serde_json::from_str(text)?;
        for key in BILLED {
            anyhow::ensure!(
                prices.units.iter().any(|u| u.key == key),
                "bench/prices.json has no price for {key}"
            );
        }
        Ok(prices)
    }

    /// `bench/prices.json`.
    pub fn load() -> anyhow::Result<Self> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prices.json");
        Self::parse(&std::fs::read_to_string(path)?)
    }

    fn unit(&self, key: &str) -> &Unit {
        self.units
            .iter()
            .find(|u| u.key == key)
            .expect("checked by parse")
    }
}

/// The billed units, in the order tables show them.
pub const BILLED: [&str; 11] = [
    "workerRequests",
    "workerCpuMs",
    "doRequests",
    "doGbSeconds",
    "doRowsRead",
    "doRowsWritten",
    "doStoredGbMonths",
    "queueOps",
    "d1RowsRead",
    "d1RowsWritten",
    "d1StoredGbMonths",
];

fn get(measured: &Value, key: &str) -> f64 {
    measured[key].as_f64().unwrap_or(0.0)
}

/// A turn's billed units from what was measured per turn (the `perTurn` object of a design
/// in the run's `costs`): WebSocket messages received count 20 to a request, each alarm set
/// one request (when it runs), the actor's
/// active time is billed at 128 MB, bytes are GB kept for a month.
pub fn billed(per_turn: &Value, prices: &Prices) -> Map<String, Value> {
    let units = [
        ("workerRequests", get(per_turn, "workerRequests")),
        ("workerCpuMs", get(per_turn, "cpuMs").max(0.0)),
        (
            // An alarm set runs once, later: its request is priced with the turn that set it
            // (a measurement ends before any runs; `setAlarm` itself is in the rows written).
            "doRequests",
            get(per_turn, "doRequests")
                + get(per_turn, "actorAlarmsSet")
                + get(per_turn, "wsMessagesIn") / prices.ws_messages_per_request,
        ),
        (
            "doGbSeconds",
            get(per_turn, "actorActiveMs") / 1000.0 * prices.do_memory_gb,
        ),
        ("doRowsRead", get(per_turn, "actorRowsRead")),
        // The rows written now, and those the alarm writes later to free what was held.
        (
            "doRowsWritten",
            get(per_turn, "actorRowsWritten") + get(per_turn, "actorRowsOwed"),
        ),
        (
            "doStoredGbMonths",
            get(per_turn, "actorBytes").max(0.0) / 1e9,
        ),
        ("queueOps", get(per_turn, "queueOps")),
        ("d1RowsRead", get(per_turn, "d1RowsRead")),
        ("d1RowsWritten", get(per_turn, "d1RowsWritten")),
        ("d1StoredGbMonths", get(per_turn, "d1Bytes").max(0.0) / 1e9),
    ];
    units
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect()
}

/// Dollars per million turns at list price, unit by unit and in all.
pub fn per_million(billed: &Map<String, Value>, prices: &Prices) -> (Map<String, Value>, f64) {
    let mut by_unit = Map::new();
    let mut total = 0.0;
    for key in BILLED {
        let unit = prices.unit(key);
        let dollars = get(&Value::Object(billed.clone()), key) * 1e6 * unit.price / unit.per;
        total += dollars;
        by_unit.insert(key.to_owned(), json!(dollars));
    }
    (by_unit, total)
}

/// The months the monthly view shows: the first, and the twelfth (storage of a year).
pub const MONTHS: [u32; 2] = [1, 12];

/// How many months of turns month `month` keeps stored, on average over the month: every
/// earlier month's turns the whole month, its own half of it.
pub fn stored_months(month: u32) -> f64 {
    month.max(1) as f64 - 0.5
}

/// Whether D1 and Durable Objects' SQLite each have their own rows allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowances {
    /// As the pricing pages list them: each product its own included rows.
    Separate,
    /// One allowance for both (rows read and rows written each): the worse case.
    Shared,
}

/// The units whose allowance D1 and the Durable Objects' SQLite may share, in pairs.
const SHARED_ROWS: [(&str, &str); 2] = [
    ("d1RowsRead", "doRowsRead"),
    ("d1RowsWritten", "doRowsWritten"),
];

/// Month `month`'s bill for `daily_players` at [`TURNS_PER_PLAYER_PER_DAY`]: the plan's base
/// price, and every unit beyond what the plan includes; storage as [`stored_months`] months
/// of turns.
pub fn monthly_bill(
    billed: &Map<String, Value>,
    prices: &Prices,
    daily_players: f64,
    month: u32,
    allowances: Allowances,
) -> f64 {
    let turns = daily_players * TURNS_PER_PLAYER_PER_DAY * DAYS_PER_MONTH;
    let billed = Value::Object(billed.clone());
    let used = |key: &str| {
        let per_month = get(&billed, key) * turns;
        if key.ends_with("StoredGbMonths") {
            per_month * stored_months(month)
        } else {
            per_month
        }
    };
    let over = |key: &str, used: f64| {
        let unit = prices.unit(key);
        (used - unit.included_per_month).max(0.0) * unit.price / unit.per
    };
    let shared = |key: &str| {
        allowances == Allowances::Shared && SHARED_ROWS.iter().any(|(a, b)| key == *a || key == *b)
    };
    let mut total = prices.monthly_base;
    for key in BILLED.iter().filter(|k| !shared(k)) {
        total += over(key, used(key));
    }
    if allowances == Allowances::Shared {
        // Same price per row on both sides (checked by the prices' test): one allowance
        // taken off the two together.
        for (d1, dobj) in SHARED_ROWS {
            total += over(d1, used(d1) + used(dobj));
        }
    }
    total
}

/// Dollars per million turns of `design` in a run (None when it was not measured).
pub fn design_per_million(run: &Value, design: &str, prices: &Prices) -> Option<f64> {
    let per_turn = &run["costs"][design]["perTurn"];
    per_turn
        .is_object()
        .then(|| per_million(&billed(per_turn, prices), prices).1)
}

/// A whole number with its thousands grouped: 1,000,000.
fn grouped(x: f64) -> String {
    let whole = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn money(x: f64) -> String {
    if x >= 100.0 {
        format!("${}", grouped(x))
    } else {
        format!("${x:.2}")
    }
}

fn count(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The cost tables of a run: counts per turn, dollars per million turns, and a month at
/// 10,000 and 1,000,000 daily players. Empty when the run measured no costs.
pub fn markdown(run: &Value, prices: &Prices) -> String {
    let costs = &run["costs"];
    if !costs.is_object() {
        return String::new();
    }
    let designs: Vec<(&str, &str, &Value)> = DESIGNS
        .iter()
        .filter(|(k, _)| costs[*k]["perTurn"].is_object())
        .map(|(k, label)| (*k, *label, &costs[*k]["perTurn"]))
        .collect();
    let load = if costs["players"].is_number() {
        format!(
            "{} players each sending a turn every {} s (a human pace: a consumer batch holds \
             different players), HTTP and SSE turns keyed as the page sends them; each turn \
             carries 1/{} of a session start, and a socket turn 1/{} of its socket's setup",
            costs["players"],
            costs["paceSeconds"],
            costs["turnsPerSession"],
            costs["turnsPerSession"]
        )
    } else {
        format!("{} connections", costs["connections"])
    };
    let mut s = format!(
        "Counted per turn over {} s of steady load per design, {load} ({}); CPU is \
         the workerd process's (every Worker, the local D1 and the queue), its idle rate taken \
         off; one floor request (`GET /healthz`) took {} CPU ms.\n\n",
        costs["seconds"],
        designs
            .iter()
            .map(|(k, _, m)| format!("{k} {} turns", m["turns"]))
            .collect::<Vec<_>>()
            .join(", "),
        count(get(&costs["floor"]["perRequest"], "cpuMs")),
    );
    s += "| per turn | ";
    s += &designs.iter().map(|d| d.0).collect::<Vec<_>>().join(" | ");
    s += " |\n|---|";
    s += &"---:|".repeat(designs.len());
    s += "\n";
    let rows: [(&str, &str); 17] = [
        (
            "Worker requests (client + consumer batches)",
            "workerRequests",
        ),
        ("CPU ms (workerd, whole turn)", "cpuMs"),
        ("Durable Object requests", "doRequests"),
        ("WebSocket messages in", "wsMessagesIn"),
        ("WebSocket messages out", "wsMessagesOut"),
        ("actor active ms", "actorActiveMs"),
        ("actor SQLite rows read", "actorRowsRead"),
        (
            "actor SQLite rows written (each `setAlarm` one)",
            "actorRowsWritten",
        ),
        (
            "actor alarms set (each a request when it runs)",
            "actorAlarmsSet",
        ),
        (
            "actor rows the alarm writes later (answers it frees)",
            "actorRowsOwed",
        ),
        ("queue operations", "queueOps"),
        ("D1 rows read", "d1RowsRead"),
        ("D1 rows written", "d1RowsWritten"),
        ("D1 statements", "d1Statements"),
        ("consumer batches", "consumerBatches"),
        ("bytes stored in D1", "d1Bytes"),
        ("bytes stored in the actor", "actorBytes"),
    ];
    for (label, key) in rows {
        s += &format!("| {label} |");
        for (_, _, m) in &designs {
            s += &format!(" {} |", count(get(m, key)));
        }
        s += "\n";
    }
    s += &format!(
        "\nDollars per million turns at list price ({} plan, prices of {} in \
         [`bench/prices.json`](prices.json), no allowance):\n\n| design | Workers | Durable Objects \
         | Queues | D1 | storage, a month | total |\n|---|---:|---:|---:|---:|---:|---:|\n",
        prices.plan, prices.checked
    );
    for (key, label, m) in &designs {
        let (by, total) = per_million(&billed(m, prices), prices);
        let sum = |keys: &[&str]| {
            keys.iter()
                .map(|k| get(&Value::Object(by.clone()), k))
                .sum::<f64>()
        };
        s += &format!(
            "| {key}: {label} | {} | {} | {} | {} | {} | **{}** |\n",
            money(sum(&["workerRequests", "workerCpuMs"])),
            money(sum(&[
                "doRequests",
                "doGbSeconds",
                "doRowsRead",
                "doRowsWritten"
            ])),
            money(sum(&["queueOps"])),
            money(sum(&["d1RowsRead", "d1RowsWritten"])),
            money(sum(&["doStoredGbMonths", "d1StoredGbMonths"])),
            money(total),
        );
    }
    for note in &prices.notes {
        s += &format!("\n- {note}");
    }
    if !prices.notes.is_empty() {
        s += "\n";
    }
    s += &format!(
        "\nA month ({} days, {} turns per daily player, the ${} base and the plan's included \
         usage counted; storage accumulating, so month 12 keeps 11.5 months of turns):\n\n| design |",
        DAYS_PER_MONTH, TURNS_PER_PLAYER_PER_DAY, prices.monthly_base
    );
    for p in DAILY_PLAYERS {
        for m in MONTHS {
            s += &format!(" {} daily players, month {m} |", grouped(p));
        }
    }
    s += "\n|---|";
    s += &"---:|".repeat(DAILY_PLAYERS.len() * MONTHS.len());
    s += "\n";
    for (key, _, m) in &designs {
        s += &format!("| {key} |");
        for p in DAILY_PLAYERS {
            for month in MONTHS {
                let bill = monthly_bill(&billed(m, prices), prices, p, month, Allowances::Separate);
                s += &format!(" {} |", money(bill));
            }
        }
        s += "\n";
    }
    s += &format!(
        "\nEach product with its own rows allowance, as the pricing pages list them. Were D1's and \
         the Durable Objects' one allowance, month 1 at {} daily players would be: {}.\n",
        grouped(DAILY_PLAYERS[0]),
        designs
            .iter()
            .map(|(key, _, m)| {
                let b = billed(m, prices);
                format!(
                    "{key} {}",
                    money(monthly_bill(&b, prices, DAILY_PLAYERS[0], 1, Allowances::Shared))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

/// The short table of the top-level README: each design's dollars per million turns and its
/// month at each number of daily players.
pub fn summary(run: &Value, prices: &Prices) -> String {
    let costs = &run["costs"];
    let mut s = "| design | per million turns |".to_string();
    for p in DAILY_PLAYERS {
        for m in MONTHS {
            s += &format!(" {} daily players, month {m} |", grouped(p));
        }
    }
    s += "\n|---|---:|";
    s += &"---:|".repeat(DAILY_PLAYERS.len() * MONTHS.len());
    s += "\n";
    for (key, label) in DESIGNS {
        let m = &costs[key]["perTurn"];
        if !m.is_object() {
            continue;
        }
        let b = billed(m, prices);
        s += &format!("| {label} | {} |", money(per_million(&b, prices).1));
        for p in DAILY_PLAYERS {
            for month in MONTHS {
                s += &format!(
                    " {} |",
                    money(monthly_bill(&b, prices, p, month, Allowances::Separate))
                );
            }
        }
        s += "\n";
    }
    s
}

/// Sessions a daily player plays a day, as the cost scenario shares a session's start over
/// [`TURNS_PER_PLAYER_PER_DAY`] turns: the archive writes one object per session per day.
pub const SESSIONS_PER_PLAYER_PER_DAY: f64 = 1.0;

/// Days of turns D1 keeps with the archive at `HOT_DAYS = 30` run daily: the window and the
/// day the next run has not reached yet.
pub const HOT_WINDOW_DAYS: f64 = 31.0;

/// The month-12 storage bill at 1,000,000 daily players, before the archive (every turn in D1,
/// [`stored_months`] months of them) and after (31 days in D1, the rest in R2), from the
/// run's measured bytes per turn (`archive.slowD1`), and what archiving itself costs a
/// month: its D1 rows (the deletes are rows written) and its R2 operations (a write and its
/// read back per object). `None` without an archive run.
pub fn archive_bill(run: &Value, prices: &Prices) -> Option<Value> {
    let a = &run["archive"]["slowD1"];
    let d1_bytes = a["d1BytesPerTurn"].as_f64()?;
    let r2_bytes = a["r2BytesPerTurn"].as_f64()?;
    let written = a["d1RowsWrittenPerTurn"].as_f64()?;
    let read = a["d1RowsReadPerTurn"].as_f64()?;
    let players = 1_000_000.0;
    let turns_a_day = players * TURNS_PER_PLAYER_PER_DAY;
    let days = stored_months(12) * DAYS_PER_MONTH;
    let gb = |bytes: f64| bytes / 1e9;
    let beyond = |key: &str, amount: f64| {
        let u = prices.units.iter().find(|u| u.key == key)?;
        Some((amount - u.included_per_month).max(0.0) * u.price / u.per)
    };
    let before = beyond("d1StoredGbMonths", gb(days * turns_a_day * d1_bytes))?;
    let hot_d1 = beyond(
        "d1StoredGbMonths",
        gb(HOT_WINDOW_DAYS * turns_a_day * d1_bytes),
    )?;
    let cold_r2 = beyond(
        "r2StoredGbMonths",
        gb((days - HOT_WINDOW_DAYS) * turns_a_day * r2_bytes),
    )?;
    let month_turns = turns_a_day * DAYS_PER_MONTH;
    let objects = players * SESSIONS_PER_PLAYER_PER_DAY * DAYS_PER_MONTH;
    let rows_written = beyond("d1RowsWritten", month_turns * written)?;
    let rows_read = beyond("d1RowsRead", month_turns * read)?;
    let r2_ops = beyond("r2ClassA", objects)? + beyond("r2ClassB", objects)?;
    let per_db_gb = gb(HOT_WINDOW_DAYS * turns_a_day / 256.0 * d1_bytes);
    Some(json!({
        "dailyPlayers": players,
        "storageBefore": before,
        "storageAfterD1": hot_d1,
        "storageAfterR2": cold_r2,
        "storageAfter": hot_d1 + cold_r2,
        "storageRatio": (hot_d1 + cold_r2) / before,
        "archiveRowsWritten": rows_written,
        "archiveRowsRead": rows_read,
        "archiveR2Operations": r2_ops,
        "afterWithArchiving": hot_d1 + cold_r2 + rows_written + rows_read + r2_ops,
        "bucketDatabaseGb": per_db_gb,
        "hotDaysFor3Gb": 3.0 / gb(turns_a_day / 256.0 * d1_bytes) - 1.0,
    }))
}

/// [`archive_bill`] as a table.
pub fn archive_markdown(run: &Value, prices: &Prices) -> String {
    let Some(b) = archive_bill(run, prices) else {
        return String::new();
    };
    let d = |k: &str| format!("${:.0}", b[k].as_f64().unwrap_or(0.0));
    let archiving = format!(
        "${:.0}",
        [
            "archiveRowsWritten",
            "archiveRowsRead",
            "archiveR2Operations"
        ]
        .iter()
        .map(|k| b[*k].as_f64().unwrap_or(0.0))
        .sum::<f64>()
    );
    format!(
        "\nMonth 12 at 1,000,000 daily players (20 turns each, one session a day; the bytes and rows per turn measured above at 30 ms):\n\n\
         | | storage | archiving (D1 rows, R2 operations) | total |\n|---|---:|---:|---:|\n\
         | every turn in D1 | {} | – | {} |\n\
         | 31 days in D1, the rest in R2 | {} (D1 {}, R2 {}) | {} ({} written, {} read, {} R2) | {} |\n\n\
         Storage after is {:.1}% of before. A bucket's database holds {:.2} GB at steady state; {:.0} hot days would fill 3 GB.\n",
        d("storageBefore"),
        d("storageBefore"),
        d("storageAfter"),
        d("storageAfterD1"),
        d("storageAfterR2"),
        archiving,
        d("archiveRowsWritten"),
        d("archiveRowsRead"),
        d("archiveR2Operations"),
        d("afterWithArchiving"),
        b["storageRatio"].as_f64().unwrap_or(0.0) * 100.0,
        b["bucketDatabaseGb"].as_f64().unwrap_or(0.0),
        b["hotDaysFor3Gb"].as_f64().unwrap_or(0.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices::load().unwrap()
    }

    #[test]
    fn the_prices_file_has_every_billed_unit_with_its_source() {
        let p = prices();
        for key in BILLED {
            let u = p.unit(key);
            assert!(
                u.source.starts_with("https://developers.cloudflare.com/"),
                "{key}"
            );
            assert!(u.price > 0.0 && u.per > 0.0, "{key}");
        }
        assert!(Prices::parse(r#"{"checked":"x","plan":"p","monthlyBase":5,"doMemoryGb":0.128,"wsMessagesPerRequest":20,"units":[]}"#).is_err());
    }

    #[test]
    fn a_turn_is_priced_unit_by_unit() {
        let p = prices();
        // One Worker request, one DO request, 20 socket messages (one more request), three
        // queue operations, ten D1 rows written.
        let turn = json!({ "workerRequests": 1.0, "doRequests": 1.0, "wsMessagesIn": 20.0,
                           "queueOps": 3.0, "d1RowsWritten": 10.0 });
        let b = billed(&turn, &p);
        assert_eq!(b["doRequests"], json!(2.0));
        let (by, total) = per_million(&b, &p);
        assert!((by["workerRequests"].as_f64().unwrap() - 0.30).abs() < 1e-9);
        assert!((by["doRequests"].as_f64().unwrap() - 0.30).abs() < 1e-9);
        assert!((by["queueOps"].as_f64().unwrap() - 1.20).abs() < 1e-9);
        assert!((by["d1RowsWritten"].as_f64().unwrap() - 10.0).abs() < 1e-9);
        assert!((total - 11.80).abs() < 1e-9);
    }

    #[test]
    fn a_month_counts_the_base_and_the_allowances() {
        let p = prices();
        let turn = json!({ "workerRequests": 1.0, "d1RowsWritten": 10.0 });
        let b = billed(&turn, &p);
        // 10,000 players: 6M turns, 6M requests (within 10M), 60M rows (10M over 50M).
        let small = monthly_bill(&b, &p, 10_000.0, 1, Allowances::Separate);
        assert!((small - (5.0 + 10.0)).abs() < 1e-6, "{small}");
        // 1M players: 600M turns: 590M requests and 5,950M rows beyond the allowance.
        let big = monthly_bill(&b, &p, 1_000_000.0, 1, Allowances::Separate);
        assert!((big - (5.0 + 590.0 * 0.30 + 5_950.0)).abs() < 1e-6, "{big}");
    }

    #[test]
    fn the_archive_bill_keeps_31_days_in_d1_and_the_rest_in_r2() {
        let run = json!({ "archive": { "slowD1": {
            "d1BytesPerTurn": 1000.0, "r2BytesPerTurn": 100.0,
            "d1RowsWrittenPerTurn": 3.0, "d1RowsReadPerTurn": 0.0 } } });
        let prices = Prices::load().unwrap();
        let b = archive_bill(&run, &prices).unwrap();
        // 20M turns a day of 1 KB: 31 days in D1 is 620 GB, 11.5 months is 6,900 GB.
        let d1 = |gb: f64| (gb - 5.0) * 0.75;
        assert!((b["storageBefore"].as_f64().unwrap() - d1(6_900.0)).abs() < 1e-6);
        assert!((b["storageAfterD1"].as_f64().unwrap() - d1(620.0)).abs() < 1e-6);
        let r2 = (6_900.0 - 620.0) / 10.0 - 10.0;
        assert!((b["storageAfterR2"].as_f64().unwrap() - r2 * 0.015).abs() < 1e-6);
        // 600M turns a month, 3 rows each, 50M included.
        assert!((b["archiveRowsWritten"].as_f64().unwrap() - 1_750.0).abs() < 1e-6);
        assert!((b["bucketDatabaseGb"].as_f64().unwrap() - 2.421875).abs() < 1e-9);
        assert!(archive_bill(&json!({}), &prices).is_none());
    }

    #[test]
    fn storage_accumulates_month_by_month() {
        let p = prices();
        // 1 KB a turn: 1M players add 600 GB a month. Month 1 keeps half of it on average
        // (300 GB-months, 295 beyond the 5 included), month 12 eleven and a half months.
        let turn = json!({ "d1Bytes": 1000.0 });
        let b = billed(&turn, &p);
        let first = monthly_bill(&b, &p, 1_000_000.0, 1, Allowances::Separate);
        assert!((first - (5.0 + 295.0 * 0.75)).abs() < 1e-6, "{first}");
        let twelfth = monthly_bill(&b, &p, 1_000_000.0, 12, Allowances::Separate);
        assert!(
            (twelfth - (5.0 + (6_900.0 - 5.0) * 0.75)).abs() < 1e-6,
            "{twelfth}"
        );
    }

    #[test]
    fn a_shared_rows_allowance_is_taken_once_from_both_products() {
        let p = prices();
        for (d1, dobj) in SHARED_ROWS {
            let (a, b) = (p.unit(d1), p.unit(dobj));
            assert_eq!(
                (a.price, a.per, a.included_per_month),
                (b.price, b.per, b.included_per_month)
            );
        }
        // 10,000 players: 6M turns, 30M D1 rows and 30M actor rows: each within its own
        // 50M, but 10M over one shared 50M.
        let turn = json!({ "d1RowsWritten": 5.0, "actorRowsWritten": 5.0 });
        let b = billed(&turn, &p);
        let separate = monthly_bill(&b, &p, 10_000.0, 1, Allowances::Separate);
        assert!((separate - 5.0).abs() < 1e-6, "{separate}");
        let shared = monthly_bill(&b, &p, 10_000.0, 1, Allowances::Shared);
        assert!((shared - 15.0).abs() < 1e-6, "{shared}");
    }

    #[test]
    fn tables_show_each_measured_design() {
        let run = json!({ "quick": true, "costs": { "seconds": 1.0, "connections": 4,
            "http": { "perTurn": { "workerRequests": 1.0, "d1RowsWritten": 4.0 } },
            "inline": { "perTurn": { "workerRequests": 1.0, "d1RowsWritten": 9.0 } } } });
        let text = markdown(&run, &prices());
        assert!(text.contains("| per turn | http | inline |"), "{text}");
        assert!(text.contains("| http: plain HTTP"), "{text}");
        assert!(!text.contains("| ws"), "{text}");
        assert!(text.contains("$9.30"), "{text}");
        assert_eq!(markdown(&json!({}), &prices()), "");
        let short = summary(&run, &prices());
        assert!(
            short.contains("| plain HTTP (`POST /api/chat`, keyed) | $4.30 |"),
            "{short}"
        );
        assert!(
            short.contains("1,000,000 daily players, month 12"),
            "{short}"
        );
        assert_eq!(money(1234567.8), "$1,234,568");
    }
}
