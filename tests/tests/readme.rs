//! The reliability figures of `docs/testing.md` are the ones the long runs saved: every row of its chaos,
//! soak and fuzzing tables is rebuilt here from `bench/results/{chaos,soak,fuzz}.json` and
//! must appear in `docs/testing.md` as is. After a new long run (`bash scripts/chaos.sh`), a failure
//! prints the rows to paste.

use e2e::root;
use serde_json::Value;

fn results(name: &str) -> Value {
    let path = root().join("bench/results").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run bash scripts/chaos.sh)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A whole number with thousands separators, as the docs write them.
fn n(v: &Value) -> String {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{v} is not a number"))
        .round() as i64;
    let digits = x.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn day(record: &Value) -> String {
    record["date"].as_str().expect("a date")[..10].to_owned()
}

fn chaos_rows(r: &Value) -> Vec<String> {
    let p = &r["parameters"];
    let f = &r["figures"];
    let left = f["lettersLeft"].as_object().expect("lettersLeft");
    let left: Vec<String> = left
        .iter()
        .map(|(class, count)| format!("{} `{class}`", n(count)))
        .collect();
    let exits: Vec<String> = f["chatAdminExits"]
        .as_array()
        .expect("exits")
        .iter()
        .map(|e| e.to_string())
        .collect();
    vec![
        format!(
            "1. {} chat turns from {} players at {} connections, every turn keyed. {} of them",
            n(&p["turns"]),
            n(&p["players"]),
            n(&p["connections"]),
            n(&p["duplicateSends"]),
        ),
        format!(
            "| requests answered 200 | {} of {} ({} distinct turns) |",
            n(&f["answered200"]),
            n(&f["requests"]),
            n(&f["distinctTurns"])
        ),
        format!(
            "| turns stored | {} (the {} turns and {} conflict seeds) |",
            n(&f["stored"]),
            n(&f["distinctTurns"]),
            n(&f["conflictSeeds"])
        ),
        format!("| duplicates stored | **{}** |", n(&f["duplicatesStored"])),
        format!(
            "| lost (answered 200, neither stored nor a pending dead letter) | **{}** |",
            n(&f["lost"])
        ),
        format!(
            "| D1 batches failed on purpose | {} |",
            n(&f["batchesFailedOnPurpose"])
        ),
        format!(
            "| turns failed on every attempt (every {}th) | {} transient dead letters; the first replay re-queued {}, all stored after; the second re-queued {} |",
            p["heldTurnEvery"],
            n(&f["heldTurns"]),
            n(&f["heldTurnsRequeuedByFirstReplay"]),
            n(&f["secondReplayRequeued"])
        ),
        format!(
            "| players whose total ≠ the points their clients were told | **{}** |",
            n(&f["playersTotalNotTold"])
        ),
        format!(
            "| users whose `total_points` ≠ `SUM(delta)` | **{}** |",
            n(&f["usersDrifted"])
        ),
        format!("| reconcile drift | **{}** |", n(&f["reconcileDrift"])),
        format!(
            "| 5xx answers or dropped connections, after retries | **{}** ({} retries were needed) |",
            n(&f["serverErrorsAfterRetries"]),
            n(&f["retries"])
        ),
        format!("| dead letters left | only the poison: {} |", left.join(", ")),
        format!("| `chat-admin` exit codes | {} |", exits.join(", ")),
    ]
}

fn soak_rows(r: &Value) -> Vec<String> {
    let f = &r["figures"];
    let (floor, chat) = (&f["floor"], &f["chat"]);
    vec![
        format!(
            "Latest long run ({} s per phase):",
            r["parameters"]["secondsPerPhase"]
        ),
        format!(
            "| floor (`GET /healthz`) | {} | {} | | {} → {} MiB | {} B |",
            n(&floor["requests"]),
            n(&floor["requestsPerSecond"]),
            n(&floor["rssMiB"][0]),
            n(&floor["rssMiB"][1]),
            n(&floor["rssBytesPerRequest"]),
        ),
        format!(
            "| chat (`POST /api/chat`) | {} | {} | {} → {} KiB ({} B per request; bound {} B) | {} → {} MiB | {} B (bound {} B) |",
            n(&chat["requests"]),
            n(&chat["requestsPerSecond"]),
            n(&chat["wasmKiB"][0]),
            n(&chat["wasmKiB"][1]),
            n(&chat["wasmBytesPerRequest"]),
            n(&chat["wasmBoundBytesPerRequest"]),
            n(&chat["rssMiB"][0]),
            n(&chat["rssMiB"][1]),
            n(&chat["rssBytesPerRequest"]),
            n(&chat["rssBoundBytesPerRequest"]),
        ),
        format!(
            "- There were {} 5xx answers after retries and {} lost turns; {} requests were retried, each chat turn with its key.",
            n(&f["serverErrorsAfterRetries"]),
            n(&f["lost"]),
            n(&f["retries"])
        ),
    ]
}

fn fuzz_rows(r: &Value) -> Vec<String> {
    let mut rows = vec![format!(
        "The suite fuzzes each target for 10 s. Latest long run, {} s per target:",
        r["parameters"]["secondsPerTarget"]
    )];
    for (target, f) in r["figures"].as_object().expect("figures") {
        rows.push(format!(
            "| `{target}` | {} s | {} | {} | {} |",
            n(&f["seconds"]),
            n(&f["executions"]),
            n(&f["coverageEdges"]),
            n(&f["artifacts"])
        ));
    }
    rows
}

/// Fails listing every row of `rows` that docs/testing.md lacks. It wraps prose at 96
/// columns, so both sides are compared with every run of whitespace as one space.
fn assert_readme_has(readme: &str, rows: &[String], source: &str) {
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = flat(readme);
    let missing: Vec<&str> = rows
        .iter()
        .filter(|row| !readme.contains(&flat(row)))
        .map(|row| row.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/testing.md lacks these rows from {source} (paste them in):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_readme_reliability_figures_are_the_saved_ones() {
    let readme = std::fs::read_to_string(root().join("docs/testing.md")).unwrap();
    let (chaos, soak, fuzz) = (results("chaos"), results("soak"), results("fuzz"));
    let mut rows = vec![format!(
        "The figures are the latest long runs (`bash scripts/chaos.sh`) on a {}-CPU machine, saved in `bench/results/`: `chaos.json` and `soak.json` of {}, `fuzz.json` of {}.",
        chaos["machine"]["cpus"],
        day(&chaos),
        day(&fuzz)
    )];
    assert_eq!(
        day(&chaos),
        day(&soak),
        "chaos and soak come from one long run"
    );
    rows.extend(chaos_rows(&chaos));
    rows.extend(soak_rows(&soak));
    rows.extend(fuzz_rows(&fuzz));
    println!("{} figure rows checked against docs/testing.md", rows.len());
    assert_readme_has(&readme, &rows, "bench/results");
}

#[test]
fn numbers_are_written_as_the_readme_writes_them() {
    assert_eq!(n(&serde_json::json!(1667708)), "1,667,708");
    assert_eq!(n(&serde_json::json!(575.4)), "575");
    assert_eq!(n(&serde_json::json!(-12)), "-12");
    assert_eq!(n(&serde_json::json!(0)), "0");
}
