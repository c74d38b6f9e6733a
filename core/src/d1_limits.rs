//! D1's size limits, and the JSON arrays cut to stay well under them.
//!
//! Both consumers bind a whole batch as one JSON text that the SQL reads with `json_each`
//! (see `sql`). D1 refuses a string value over 2,000,000 bytes, and a queue batch of 100
//! turns with replies at their caps comes to about 3 MB. So every bound array is cut by its
//! encoded size into chunks of at most [`MAX_BOUND_JSON_BYTES`], each written as its own
//! atomic batch. A turn or a letter is never split: each is one element of one chunk.

use serde::Serialize;

/// D1's limit on one string or blob value (and on a row).
pub const MAX_VALUE_BYTES: usize = 2_000_000;

/// The largest JSON array either consumer binds: an eighth of D1's limit, so that a batch
/// (which binds the same array to each of its statements) stays small on the wire too.
/// A typical queue batch of 100 turns, about 100 KB, still goes in one chunk.
pub const MAX_BOUND_JSON_BYTES: usize = 256 * 1024;

/// A JSON array of some of the items, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Indexes of the items it holds, ascending.
    pub items: Vec<usize>,
    /// `[item,item,…]`, exactly as `serde_json::to_string` of those items would give.
    pub json: String,
}

/// Cuts `items` into JSON arrays of at most `max_bytes` each, keeping their order. An item
/// larger than `max_bytes` on its own goes alone in its chunk (callers bound their items far
/// below the limit, see `record::MAX_RECORD_BYTES` and `dead_letter::Envelope::MAX_BYTES`).
pub fn json_chunks<T: Serialize>(items: &[T], max_bytes: usize) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current = Chunk {
        items: Vec::new(),
        json: String::from("["),
    };
    for (i, item) in items.iter().enumerate() {
        let text = serde_json::to_string(item).expect("rows always serialize");
        // The item, its comma and the closing bracket must fit.
        let needed = text.len() + usize::from(!current.items.is_empty()) + 1;
        if !current.items.is_empty() && current.json.len() + needed > max_bytes {
            current.json.push(']');
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    items: Vec::new(),
                    json: String::from("["),
                },
            ));
        }
        if !current.items.is_empty() {
            current.json.push(',');
        }
        current.json.push_str(&text);
        current.items.push(i);
    }
    if !current.items.is_empty() {
        current.json.push(']');
        chunks.push(current);
    }
    chunks
}

/// Refuses a value D1 would refuse, before it is sent, with an error that says so.
pub fn check_value(name: &str, bytes: usize) -> Result<(), String> {
    if bytes > MAX_VALUE_BYTES {
        return Err(format!(
            "{name} is {bytes} bytes, over D1's limit of {MAX_VALUE_BYTES} bytes per value"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_order_fit_and_match_serde() {
        let items: Vec<String> = (0..50).map(|i| "x".repeat(i * 7)).collect();
        for max in [1, 40, 300, 1000, usize::MAX] {
            let chunks = json_chunks(&items, max);
            let all: Vec<usize> = chunks.iter().flat_map(|c| c.items.clone()).collect();
            assert_eq!(all, (0..50).collect::<Vec<_>>(), "max {max}");
            for c in &chunks {
                let these: Vec<&String> = c.items.iter().map(|&i| &items[i]).collect();
                assert_eq!(c.json, serde_json::to_string(&these).unwrap());
                assert!(c.json.len() <= max || c.items.len() == 1, "max {max}");
            }
        }
        assert_eq!(json_chunks(&items, usize::MAX).len(), 1);
        assert!(json_chunks::<u8>(&[], 10).is_empty());
    }

    #[test]
    fn values_over_the_limit_are_refused() {
        assert!(check_value("v", MAX_VALUE_BYTES).is_ok());
        let e = check_value("the batch", MAX_VALUE_BYTES + 1).unwrap_err();
        assert!(e.contains("the batch") && e.contains("2000000"), "{e}");
    }
}
