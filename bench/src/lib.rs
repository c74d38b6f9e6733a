//! The benchmark's library half: what a run's JSON means. The `bench` binary writes
//! `bench/results/latest.json`; [`report`] turns it into the text of `bench/README.md` and judges the
//! goals, and `bench/tests/readme.rs` fails when that file says anything else.
//!
//! - [`report`]: the text of a run, its goals, the machine and versions.
//! - [`cost`]: the measured counts per turn in billed units, priced with `bench/prices.json`.

pub mod cost;
pub mod report;

/// The connections the slow-D1 scenario loads each design at.
pub const SLOW_D1_CONNECTIONS: [usize; 2] = [1, 16];

/// The marks around the benchmark text in bench/README.md.
pub const START: &str = "<!-- bench:start: generated from bench/results/latest.json by `cargo run -p bench -- --readme` -->";
pub const END: &str = "<!-- bench:end -->";

/// The marks around the cost table in the top-level README.md.
pub const COST_START: &str = "<!-- cost:start: generated from bench/results/latest.json by `cargo run -p bench -- --readme` -->";
pub const COST_END: &str = "<!-- cost:end -->";

/// The text between the marks, if both are there.
pub fn readme_block(readme: &str) -> Option<&str> {
    block_between(readme, START, END)
}

/// The text between `start` and `end`, if both are there.
pub fn block_between<'a>(readme: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = readme.find(start)? + start.len();
    let to = from + readme[from..].find(end)?;
    Some(&readme[from..to])
}

/// `readme` with the text between the marks replaced by `text`.
pub fn with_block(readme: &str, text: &str) -> Option<String> {
    with_block_between(readme, START, END, text)
}

/// `readme` with the text between `start` and `end` replaced by `text`.
pub fn with_block_between(readme: &str, start: &str, end: &str, text: &str) -> Option<String> {
    let from = readme.find(start)? + start.len();
    let to = from + readme[from..].find(end)?;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..from],
        text.trim(),
        &readme[to..]
    ))
}
