//! The `Range` header parser: never panics, and any range it asks to send lies within the file
//! and is not empty. The first 8 bytes of the input pick the file size (biased towards small
//! sizes and the edges), the rest is the header text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_node::http::range::{Wanted, parse};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size_bytes, header) = data.split_at(8);
    let raw = u64::from_le_bytes(size_bytes.try_into().unwrap_or([0; 8]));
    let size = match raw % 4 {
        0 => raw % 64,
        1 => raw % (1 << 24),
        2 => u64::MAX - (raw % 4),
        _ => raw,
    };
    let Ok(header) = std::str::from_utf8(header) else { return };
    let _ = parse(None, size);
    match parse(Some(header), size) {
        Wanted::Part(range) => {
            assert!(range.start < range.end, "an empty range {range:?} for {header:?} of {size}");
            assert!(range.end <= size, "range {range:?} past the end for {header:?} of {size}");
        }
        Wanted::Whole | Wanted::Unsatisfiable => {}
    }
});
