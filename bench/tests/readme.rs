//! The benchmark text of `bench/README.md` is the latest run's, word for word: `bench::report` renders
//! `bench/results/latest.json`, and that file must hold exactly that between its
//! `bench:start` and `bench:end` marks. After a run, `cargo run -p bench -- --readme`
//! pastes it in.

use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn latest() -> Value {
    let text = std::fs::read_to_string(root().join("bench/results/latest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_readme_shows_the_latest_run_and_nothing_else() {
    let run = latest();
    assert_eq!(
        run["quick"], false,
        "latest.json is a full run, not --quick"
    );
    // serde_json's default float parser may miss the last bit of a recorded figure, so a
    // recomputed ratio is compared to within a rounding error; everything else exactly.
    let recorded = run["goals"]
        .as_array()
        .expect("latest.json records its goals");
    let recomputed = bench::report::goals(&run);
    let recomputed = recomputed.as_array().unwrap();
    assert_eq!(
        recorded.len(),
        recomputed.len(),
        "the goals recorded are the goals of the figures recorded"
    );
    for (a, b) in recorded.iter().zip(recomputed) {
        for key in ["goal", "bound", "atLeast", "met"] {
            assert_eq!(a[key], b[key], "goal {} differs in {key}", a["goal"]);
        }
        let (x, y) = (a["measured"].as_f64(), b["measured"].as_f64());
        match (x, y) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                "goal {} measured {x}, recomputed {y}",
                a["goal"]
            ),
            _ => assert_eq!(a["measured"], b["measured"], "goal {}", a["goal"]),
        }
    }
    let readme = std::fs::read_to_string(root().join("bench/README.md")).unwrap();
    let block = bench::readme_block(&readme)
        .expect("bench/README.md has its bench:start and bench:end marks");
    let expected = bench::report::markdown(&run);
    assert_eq!(
        block.trim(),
        expected.trim(),
        "bench/README.md's benchmark text differs from bench/results/latest.json: run `cargo run -p bench -- --readme`"
    );
}

#[test]
fn the_top_readme_shows_the_latest_costs() {
    let run = latest();
    assert!(
        run["costs"]["ws"]["perTurn"].is_object(),
        "latest.json holds the cost scenario"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = bench::block_between(&readme, bench::COST_START, bench::COST_END)
        .expect("README.md has its cost:start and cost:end marks");
    let prices = bench::cost::Prices::load().unwrap();
    assert_eq!(
        block.trim(),
        bench::cost::summary(&run, &prices).trim(),
        "README.md's cost table differs from bench/results/latest.json: run `cargo run -p bench -- --readme`"
    );
}

#[test]
fn any_changed_figure_changes_the_text() {
    let run = latest();
    let text = bench::report::markdown(&run);
    for path in [
        &["lag", "p99Ms"][..],
        &["capacity", "chat", "highestRate"][..],
        &["connections", "0", "chat", "p50Ms"][..],
        &["storageByDatabases", "2", "workersTurnsPerSecond"][..],
        &["costs", "ws", "perTurn", "actorRowsWritten"][..],
    ] {
        let mut changed = run.clone();
        let mut v = &mut changed;
        for key in path {
            v = match key.parse::<usize>() {
                Ok(i) => &mut v[i],
                Err(_) => &mut v[*key],
            };
        }
        let old = v.as_f64().unwrap_or_else(|| panic!("{path:?} is a number"));
        *v = serde_json::json!(old * 3.0 + 7.0);
        assert_ne!(bench::report::markdown(&changed), text, "{path:?}");
    }
}
