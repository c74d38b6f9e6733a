//! Sending many text messages to a queue within the platform's `sendBatch` limits (100
//! messages and 256 KB per call).

use worker::{BatchMessageBuilder, MessageBuilder, Queue, QueueContentType};

/// Most messages one `sendBatch` takes.
pub const SEND_BATCH_MAX: usize = 100;
/// Most bytes sent in one `sendBatch` (the platform allows 256 KB; headroom for overhead).
pub const SEND_BATCH_BYTES: usize = 200 * 1024;

/// Sends `texts` as text messages, in as few `sendBatch` calls as the limits allow, in order.
/// Returns how many were sent before an error, with the error.
pub async fn send_texts(queue: &Queue, texts: &[String]) -> Result<(), (usize, worker::Error)> {
    let mut start = 0;
    while start < texts.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < texts.len()
            && end - start < SEND_BATCH_MAX
            && (end == start || bytes + texts[end].len() <= SEND_BATCH_BYTES)
        {
            bytes += texts[end].len();
            end += 1;
        }
        let messages = texts[start..end].iter().map(|t| {
            MessageBuilder::new(t.clone())
                .content_type(QueueContentType::Text)
                .build()
        });
        queue
            .send_batch(BatchMessageBuilder::new().messages(messages).build())
            .await
            .map_err(|e| (start, e))?;
        start = end;
    }
    Ok(())
}
