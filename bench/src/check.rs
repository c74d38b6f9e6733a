//! The invariants every scenario ends on: every 200-answered turn is stored exactly once,
//! nothing else was stored, and every user's total equals the ledger. A benchmark that loses
//! or duplicates turns fails loudly.

use anyhow::bail;
use e2e::{wait_for, Workers};
use std::collections::HashSet;
use std::time::Duration;

/// Turns stored so far (a turn's point event names its message; a grant's names none).
pub fn stored(w: &Workers) -> usize {
    w.count("SELECT COUNT(*) FROM point_events WHERE message_id IS NOT NULL") as usize
}

/// Waits until at least `expected` turns are stored (or `timeout`).
pub async fn wait_drained(w: &Workers, expected: usize, timeout: Duration) -> bool {
    wait_for(timeout, || stored(w) >= expected).await
}

/// Checks that exactly the turns in `answered` (every 200 since the Workers started) are
/// stored, once each, and that totals equal the ledger.
pub async fn all_stored(w: &Workers, answered: &[String], scenario: &str) -> anyhow::Result<()> {
    let unique: HashSet<&String> = answered.iter().collect();
    if unique.len() != answered.len() {
        bail!("{scenario}: the chat Worker answered the same message id twice");
    }
    wait_drained(w, unique.len(), Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // anything extra would land now
    let db = w.db();
    let mut st = db.prepare("SELECT id FROM chat_messages WHERE role = 'user'")?;
    let stored: HashSet<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let lost = unique
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .count();
    let drift = w.count(
        "SELECT COUNT(*) FROM user_stats s WHERE s.total_points != (SELECT COALESCE(SUM(delta), 0) FROM point_events p WHERE p.user_id = s.user_id)",
    );
    // Points granted by hand (no turn: `message_id` NULL) are not turns.
    let events = w.count("SELECT COUNT(*) FROM point_events WHERE message_id IS NOT NULL") as usize;
    eprintln!(
        "check {scenario}: answered {} stored {} lost {lost} drift {drift}",
        unique.len(),
        stored.len()
    );
    if lost > 0 || drift != 0 || events != stored.len() || stored.len() != unique.len() {
        bail!(
            "{scenario}: {lost} answered turns lost, {} turns stored for {} answered, {drift} users drifted, {events} events",
            stored.len(),
            unique.len()
        );
    }
    Ok(())
}
