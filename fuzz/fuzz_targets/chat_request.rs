//! The chat API's request bodies: any bytes must parse or be refused, never panic.
#![no_main]
use chat_core::request::{ChatTurn, NewSession};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(turn) = ChatTurn::parse(data) {
        assert!(!turn.message.is_empty() && turn.message.chars().count() <= chat_core::request::MAX_MESSAGE_CHARS);
    }
    if let Ok(session) = NewSession::parse(data) {
        assert!(!session.username.is_empty());
    }
});
