//! The benchmark's library half: what a run's JSON means. The `bench` binary writes
//! `bench/results/latest.json`; [`report`] turns it into the text of `bench/README.md` and judges the
//! goals, and `bench/tests/readme.rs` fails when that file says anything else.
//!
//! - [`report`]: the text of a run, its goals, the machine and versions.
//! - [`cost`]: the measured counts per turn in billed units, priced with `bench/prices.json`.

pub mod cost;
pub mod report;

/// The marks around the benchmark text in bench/README.md.
pub const START: &str = "<!-- bench:start: generated from bench/results/latest.json by `cargo run -p bench -- --readme` -->";
pub const END: &str = "<!-- bench:end -->";

/// The text between the marks, if both are there.
pub fn readme_block(readme: &str) -> Option<&str> {
    let start = readme.find(START)? + START.len();
    let end = start + readme[start..].find(END)?;
    Some(&readme[start..end])
}

/// `readme` with the text between the marks replaced by `text`.
pub fn with_block(readme: &str, text: &str) -> Option<String> {
    let start = readme.find(START)? + START.len();
    let end = start + readme[start..].find(END)?;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..start],
        text.trim(),
        &readme[end..]
    ))
}
