//! Tickets for the live socket. A browser cannot set headers on a WebSocket, so a signed-in
//! player first asks `POST /api/sessions/{id}/ticket` and then opens
//! `GET /api/sessions/{id}/live?ticket=…`. A ticket is good for one connection to one
//! session, for [`TICKET_TTL_MS`].
//!
//! `{expires_ms}.{nonce}.{tag}`: the tag is an HMAC-SHA256 of the session id, the nonce and
//! the expiry under `SESSION_ID_KEY`, so the chat Worker refuses a forged, mangled, expired
//! or other session's ticket (401) before it calls the session's actor. The actor minted
//! the nonce and holds the player it was minted for until the ticket is used: a second use
//! finds nothing, and is refused too.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// How long a ticket may wait before it is used.
pub const TICKET_TTL_MS: i64 = 60_000;

/// Why a ticket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket's shape.
    Malformed,
    /// Not minted for this session, or altered.
    Forged,
    Expired,
}

fn tag(key: &[u8], session: &Uuid, nonce: &str, expires_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"live-ticket\n");
    mac.update(session.as_bytes());
    mac.update(nonce.as_bytes());
    mac.update(&expires_ms.to_be_bytes());
    hex(&mac.finalize().into_bytes()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A ticket for `session` at `now_ms` from 16 random bytes: the ticket, its nonce (what the
/// actor keeps) and when it expires.
pub fn mint(session: &Uuid, key: &[u8], now_ms: i64, random: [u8; 16]) -> (String, String, i64) {
    let nonce = hex(&random);
    let expires = now_ms + TICKET_TTL_MS;
    let ticket = format!("{expires}.{nonce}.{}", tag(key, session, &nonce, expires));
    (ticket, nonce, expires)
}

/// The nonce of `ticket` if it was minted for `session` under `key` and is still good at
/// `now_ms`.
pub fn check(ticket: &str, session: &Uuid, key: &[u8], now_ms: i64) -> Result<String, TicketError> {
    let mut parts = ticket.split('.');
    let (Some(expires), Some(nonce), Some(given), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| TicketError::Malformed)?;
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TicketError::Malformed);
    }
    let expected = tag(key, session, nonce, expires);
    if !constant_time_eq::constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(TicketError::Forged);
    }
    if now_ms >= expires {
        return Err(TicketError::Expired);
    }
    Ok(nonce.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k";

    #[test]
    fn a_ticket_is_good_for_its_session_for_a_minute() {
        let s = Uuid::from_u128(7);
        let (ticket, nonce, expires) = mint(&s, KEY, 1_000, [3; 16]);
        assert_eq!(expires, 1_000 + TICKET_TTL_MS);
        assert_eq!(check(&ticket, &s, KEY, 1_000), Ok(nonce));
        assert_eq!(check(&ticket, &s, KEY, expires), Err(TicketError::Expired));
        assert_eq!(
            check(&ticket, &Uuid::from_u128(8), KEY, 1_000),
            Err(TicketError::Forged)
        );
        assert_eq!(
            check(&ticket, &s, b"other", 1_000),
            Err(TicketError::Forged)
        );
        // A later expiry written in by hand breaks the tag.
        let longer = ticket.replacen(&expires.to_string(), &(expires + 60_000).to_string(), 1);
        assert_eq!(check(&longer, &s, KEY, 1_000), Err(TicketError::Forged));
        for bad in ["", "a.b.c", "1.2", "1.zz.zz", &format!("{ticket}.x")] {
            assert_eq!(
                check(bad, &s, KEY, 1_000),
                Err(TicketError::Malformed),
                "{bad}"
            );
        }
    }
}
