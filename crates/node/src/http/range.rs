//! The `Range` header, single range only (RFC 9110 §14): `bytes=a-b`, `bytes=a-`, `bytes=-n`.
//!
//! A header that is not a single byte range is ignored (the whole file is sent), as RFC 9110
//! allows; a range that starts beyond the end gets 416.

use std::ops::Range;

/// What to send for a request of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file, 200.
    Whole,
    /// This part of it, 206.
    Part(Range<u64>),
    /// Nothing can be sent, 416.
    Unsatisfiable,
}

/// Reads a `Range` header against a file of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> Wanted {
    let Some(header) = header else { return Wanted::Whole };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u64>().ok()
        } else {
            None
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if size == 0 => {
                let _ = n;
                Wanted::Unsatisfiable
            }
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start < size => Wanted::Part(start..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Wanted::Whole,
            (Some(start), Some(_)) if start >= size => Wanted::Unsatisfiable,
            (Some(start), Some(end)) => Wanted::Part(start..end.saturating_add(1).min(size)),
            _ => Wanted::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let check = |header: Option<&str>, size: u64, expected: Wanted| assert_eq!(parse(header, size), expected, "{header:?} of {size}");
        check(None, 10, Wanted::Whole);
        check(Some("bytes=0-4"), 10, Wanted::Part(0..5));
        check(Some("bytes=5-"), 10, Wanted::Part(5..10));
        check(Some("bytes=-3"), 10, Wanted::Part(7..10));
        check(Some("bytes=-30"), 10, Wanted::Part(0..10));
        check(Some("bytes=0-999"), 10, Wanted::Part(0..10));
        check(Some("bytes=10-"), 10, Wanted::Unsatisfiable);
        check(Some("bytes=10-20"), 10, Wanted::Unsatisfiable);
        check(Some("bytes=-0"), 10, Wanted::Unsatisfiable);
        check(Some("bytes=0-"), 0, Wanted::Unsatisfiable);
        check(Some("bytes=5-2"), 10, Wanted::Whole);
        check(Some("bytes=0-1,3-4"), 10, Wanted::Whole);
        check(Some("items=0-1"), 10, Wanted::Whole);
        check(Some("bytes=a-b"), 10, Wanted::Whole);
        check(Some("bytes=+1-2"), 10, Wanted::Whole);
        check(Some("bytes=99999999999999999999999-"), 10, Wanted::Whole);
    }
}
