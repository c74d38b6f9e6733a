//! The admin API's bodies and queries: refused or accepted, never panic.
#![no_main]
use chat_core::admin::{parse_raw_turns, parse_reconcile, ActionRequest, LetterStatus, ListQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ActionRequest::parse(data, Some(LetterStatus::Pending));
    let _ = parse_reconcile(data);
    let _ = parse_raw_turns(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let pairs: Vec<(&str, &str)> = text.split('&').filter_map(|p| p.split_once('=')).collect();
        let _ = ListQuery::parse(pairs);
    }
});
