//! Reading a JSON request body without ever holding more than the limit: an oversize body is
//! refused from its Content-Length, or once the stream passes the limit (the rest is
//! discarded as it arrives, never buffered).

use crate::error::ApiError;
use chat_core::refusal::Kind;
use chat_core::request::too_large;
use futures_util::StreamExt;
use worker::Request;

/// The body of a JSON request, at most `max` bytes.
pub async fn read_json(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let refuse = || ApiError::Refused(too_large(max));
    let content_type = req
        .headers()
        .get("Content-Type")
        .ok()
        .flatten()
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Err(ApiError::refused(
            Kind::UnsupportedMediaType,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    let declared = req.headers().get("Content-Length").ok().flatten();
    if declared
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return Err(refuse());
    }
    let mut body = Vec::new();
    let Ok(mut stream) = req.stream() else {
        return Ok(body); // No body at all: the parser says what is missing.
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid(
                "unreadable_body",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > max {
            // Refused, but the rest is drained and dropped chunk by chunk (never held), up to
            // a cap: answering while the client is still uploading makes the local runtime's
            // proxy fail the request instead of returning the 413.
            let mut drained = body.len() + chunk.len();
            drop(body);
            while drained <= MAX_DRAIN_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => drained += more.len(),
                    _ => break,
                }
            }
            return Err(refuse());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Most bytes of an oversize streamed body drained before answering 413.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;
