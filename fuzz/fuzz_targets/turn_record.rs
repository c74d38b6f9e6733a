//! The queue's turn record: any text must decode to a valid record or a classified error,
//! and a decoded record must survive a round trip and the batch's JSON.
#![no_main]
use chat_core::record::TurnRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match TurnRecord::decode(text) {
        Ok(record) => {
            assert_eq!(TurnRecord::decode(&record.encode()).as_ref(), Ok(&record));
            let json = chat_core::batch::turns_json([&record]);
            assert!(json.starts_with('['));
        }
        Err(e) => {
            let _ = chat_core::failure::FailureClass::from(&e);
            let _ = chat_core::dead_letter::Envelope::from_queue_body("m", text, 1, 0, 1).encode_within(120 * 1024);
        }
    }
});
