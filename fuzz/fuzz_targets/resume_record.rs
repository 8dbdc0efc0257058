//! Resume records read back from the state store: `serde_json::from_str::<Record>` on any text
//! and `decode_done(text, count)` with a bounded count never panic, and `decode_done` gives
//! exactly `count` flags, which encode back to at most `count.div_ceil(8)` bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_node::engine::record::{Record, decode_done, encode_done};

fuzz_target!(|data: &[u8]| {
    let Some((&count_byte, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(record) = serde_json::from_str::<Record>(text) {
        let count = record.size.div_ceil(record.piece_size.max(1)).min(1 << 16);
        let done = decode_done(&record.done, count);
        assert_eq!(done.len() as u64, count);
        let again = serde_json::to_string(&record).expect("a record encodes");
        assert_eq!(
            serde_json::from_str::<Record>(&again).ok().as_ref(),
            Some(&record),
            "a record round-trips"
        );
    }
    // Counts up to 64 Ki pieces: 64 GiB at the engine's 1 MiB pieces.
    let count = (u64::from(count_byte) << 8 | rest.len() as u64) % (1 << 16);
    let done = decode_done(text, count);
    assert_eq!(done.len() as u64, count, "decode_done gives one flag per piece");
    let encoded = encode_done(&done);
    assert_eq!(encoded.len() as u64, count.div_ceil(8) * 2, "hex of count bits");
    assert_eq!(decode_done(&encoded, count), done, "the done bits round-trip");
});
