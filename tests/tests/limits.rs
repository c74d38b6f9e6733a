//! Size limits end to end: a full queue batch of the largest turns (several MB, over D1's
//! 2 MB per value) is stored whole, and letters of 25,000 control bytes (150 KB once JSON
//! escapes them, over a queue message's 128 KB) are archived, many in one batch.

use chat_core::d1_limits::MAX_VALUE_BYTES;
use chat_core::record::{largest_sample, TurnRecord};
use e2e::{now_ms, wait_for, Options, Workers};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Queues raw records through `/admin/turns`, as many per call as fit its 1 MiB body.
async fn enqueue(w: &Workers, records: &[String]) {
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() {
            let size = serde_json::to_string(&records[end]).unwrap().len() + 1;
            if end > start && bytes + size > 900_000 {
                break;
            }
            bytes += size;
            end += 1;
        }
        let (status, body) = w
            .admin(
                "POST",
                "/admin/turns",
                Some(&json!({ "records": &records[start..end] })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["queued"], json!(end - start), "{body}");
        start = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_turns_and_letters_fit_d1_and_the_queue() {
    let w = Workers::start_with(Options {
        // Long enough for each queue to gather everything into one batch.
        consumer_queue: vec![("max_batch_timeout", 8)],
        letter_queue: vec![("max_batch_timeout", 8)],
        ..Options::default()
    })
    .await;
    let session = Uuid::parse_str(&w.session("x:big", "kai").await).unwrap();

    // 100 turns at the chat's own caps, half padded to the record's bound.
    let at = now_ms();
    let turns: Vec<TurnRecord> = (0..100)
        .map(|n| {
            let mut r = largest_sample("big", session, n, at + n as i64);
            if n % 2 == 0 {
                r.user.x_username = Some("x".repeat(30_000));
            }
            r
        })
        .collect();
    let texts: Vec<String> = turns.iter().map(TurnRecord::encode).collect();
    let total: usize = texts.iter().map(String::len).sum();
    assert!(total > MAX_VALUE_BYTES, "the batch is {total} bytes");
    // 20 letters of 25,000 control bytes each, sent after the turns.
    let poison: Vec<String> = (0..20)
        .map(|n| format!("{n}{}", "\u{1}".repeat(25_000)))
        .collect();
    enqueue(&w, &texts).await;
    enqueue(&w, &poison).await;

    let stored = || w.count("SELECT COUNT(*) FROM point_events");
    assert!(
        wait_for(Duration::from_secs(90), || stored() == 100).await,
        "{} of 100 turns stored\n{}",
        stored(),
        w.log_tail()
    );
    let archived = || w.count("SELECT COUNT(*) FROM dead_letters");
    assert!(
        wait_for(Duration::from_secs(90), || archived() == 20).await,
        "{} of 20 letters archived\n{}",
        archived(),
        w.log_tail()
    );

    // Every turn whole, once, and the snapshot equal to the ledger.
    assert_eq!(w.count("SELECT COUNT(*) FROM chat_messages"), 200);
    assert_eq!(
        w.count("SELECT MAX(LENGTH(CAST(content AS BLOB))) FROM chat_messages WHERE role = 'user'"),
        turns[1].user_message.content.len() as i64
    );
    assert_eq!(
        w.count("SELECT total_points FROM user_stats"),
        turns
            .iter()
            .map(|t| t.point_event.delta as i64)
            .sum::<i64>()
    );
    // The letters: the longest prefix of each payload that fits, and an error that says so.
    let db = w.db();
    let mut rows = db
        .prepare("SELECT payload, error_class, error_text FROM dead_letters")
        .unwrap();
    let rows: Vec<(String, String, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (payload, class, error) in &rows {
        assert_eq!(class, "undecodable");
        assert!(poison.iter().any(|p| p.starts_with(payload.as_str())));
        assert!(payload.len() > 15_000, "{}", payload.len());
        assert!(error.contains("truncated"), "{error}");
    }
    // The batches really were cut: some write went in more than one chunk.
    let chunks = |message: &str| -> i64 {
        w.log_events(message)
            .iter()
            .map(|e| e["chunks"].as_i64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    assert!(chunks("turn batch") > 1, "{}", w.log_tail());
    assert!(chunks("dead-letter batch") > 1, "{}", w.log_tail());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((stored(), archived()), (100, 20), "nothing more arrived");
}
