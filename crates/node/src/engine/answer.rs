//! What a source's answer to a range request means, decided from its status and headers alone
//! before a byte of its body is read: data to use (206 with exactly the range asked for, or 200
//! with the whole file when the range started at 0), a refusal for now (429, 503, with any
//! `Retry-After`), a failure to retry (5xx, 404), a source that can never serve this file (a
//! wrong `Content-Range`, ranges ignored, 416, any other status), or a file that changed since
//! the source's first answer ([`Validators`], `If-Range`). No I/O here: the worker sends the
//! request and reads the body ([`super::worker`]).

use std::ops::Range;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::MAX_RETRY_AFTER;

/// Validator headers longer than this are ignored (a server's words are bounded where they enter).
const MAX_VALIDATOR_LEN: usize = 256;

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The source failed (connection, status, stall): retry later.
    Failed(String),
    /// The source refused for now (429, 503), perhaps saying for how long.
    Busy(String, Option<Duration>),
    /// The file changed on the source since its first answer.
    Changed(String),
    /// The source can never serve this file (wrong size, no ranges, a status that will not change).
    Unusable(String),
    /// A partial source lacks a piece of the range (`416` with `Shoal-Lacks`, see
    /// [`crate::proto::have`]).
    Lacks,
    /// A holder seeding a swarm would rather send these pieces (`409` with `Shoal-Spread`).
    Spread(Vec<u64>),
    /// A node gave its upload slots to others for now (`503` with `Shoal-Choked`).
    Choked,
}

/// What was asked of a source, to judge its answer by.
#[derive(Debug, Clone)]
pub(super) struct Asked {
    /// The bytes asked for.
    pub bytes: Range<u64>,
    /// The file's size (the download's, bound before the first request).
    pub size: u64,
    /// A strong ETag went in `If-Range`.
    pub if_range: bool,
    /// The source answered with data before (so a different total means its file changed).
    pub answered_before: bool,
}

/// An answer's head: what is judged before its body is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// The body's length as the HTTP stack knows it (`Content-Length`).
    pub content_length: Option<u64>,
}

impl<'a> Head<'a> {
    pub fn of(response: &'a reqwest::Response) -> Head<'a> {
        Head {
            status: response.status(),
            headers: response.headers(),
            content_length: response.content_length(),
        }
    }
}

/// Judges an answer's status and headers: `Ok` when its body is the bytes asked for (or the
/// whole file, for a range from 0). `now` reads a `Retry-After` given as a date.
pub(super) fn judge(asked: &Asked, head: Head<'_>, now: SystemTime) -> Result<(), Refusal> {
    let Head {
        status,
        headers,
        content_length,
    } = head;
    let Range { start, end } = asked.bytes;
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range = headers
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = format!("bytes {}-{}/{}", start, end - 1, asked.size);
        if content_range != expected {
            // Printable and short, or not quoted at all.
            let said: String = content_range.chars().take(80).collect();
            let reason = format!("answered {said:?} to a request for {expected:?}");
            let total = content_range.rsplit_once('/').map(|(_, total)| total);
            return Err(if asked.answered_before && total != Some(&asked.size.to_string()) {
                Refusal::Changed(format!("the file changed while downloading (its size): {reason}"))
            } else {
                Refusal::Unusable(format!("{reason} (a different file?)"))
            });
        }
        Ok(())
    } else if status == StatusCode::OK {
        if asked.if_range && start != 0 {
            return Err(Refusal::Changed(
                "the file changed while downloading (the whole file came back for If-Range)".into(),
            ));
        }
        if start != 0 || content_length.is_some_and(|len| len != asked.size) {
            return Err(Refusal::Unusable(
                "does not support ranges, or serves a file of another size".into(),
            ));
        }
        Ok(())
    } else if status == StatusCode::RANGE_NOT_SATISFIABLE && headers.contains_key(crate::proto::have::LACKS_HEADER) {
        Err(Refusal::Lacks)
    } else if status == StatusCode::CONFLICT
        && let Some(hints) = headers.get(crate::proto::have::SPREAD_HEADER).and_then(|v| v.to_str().ok())
    {
        let count = asked.size.div_ceil(super::PIECE_SIZE).max(1);
        Err(Refusal::Spread(crate::proto::have::read_hints(hints, count)))
    } else if status == StatusCode::SERVICE_UNAVAILABLE && headers.contains_key(crate::proto::have::CHOKED_HEADER) {
        Err(Refusal::Choked)
    } else if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        Err(Refusal::Busy(format!("HTTP {status}"), retry_after(headers, now)))
    } else if status.is_server_error() || status == StatusCode::NOT_FOUND {
        Err(Refusal::Failed(format!("HTTP {status}")))
    } else {
        Err(Refusal::Unusable(format!("HTTP {status}")))
    }
}

/// What fixes a mirror's file: its first answer's `ETag` and `Last-Modified` (the size is the
/// download's and is checked on every answer). A later answer that differs means the file
/// changed there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    /// The validators of an answer; a header that is not short printable ASCII is ignored.
    pub fn of(headers: &HeaderMap) -> Validators {
        let get = |name: reqwest::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_LEN && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
                .map(str::to_string)
        };
        Validators {
            etag: get(reqwest::header::ETAG),
            last_modified: get(reqwest::header::LAST_MODIFIED),
        }
    }

    /// A strong ETag, usable in `If-Range`.
    pub fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| e.starts_with('"'))
    }

    /// What differs from `fixed` (a header missing on either side is not a difference: some
    /// servers send it only sometimes).
    pub fn differs_from(&self, fixed: &Validators) -> Option<String> {
        let mut what = Vec::new();
        if let (Some(a), Some(b)) = (&fixed.etag, &self.etag)
            && a != b
        {
            what.push(format!("ETag {a} became {b}"));
        }
        if let (Some(a), Some(b)) = (&fixed.last_modified, &self.last_modified)
            && a != b
        {
            what.push(format!("Last-Modified {a} became {b}"));
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// The wait a 429 or 503 asks for: `Retry-After` as delta-seconds or an HTTP date, at most
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable (the ordinary backoff applies then).
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    let wait = if text.bytes().all(|b| b.is_ascii_digit()) {
        // Many digits are a long wait, not an error: cut to the bound.
        Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX).min(MAX_RETRY_AFTER.as_secs()))
    } else {
        let when = httpdate::parse_http_date(text).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, reqwest::header::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn answers_are_judged_by_status_and_headers() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mib = 1u64 << 20;
        let asked = |bytes: Range<u64>, if_range: bool, answered_before: bool| Asked {
            bytes,
            size: 4 * mib,
            if_range,
            answered_before,
        };
        let check = |asked: Asked, status: u16, pairs: &[(&'static str, &str)], expected: Result<(), &str>| {
            let map = headers(pairs);
            let head = Head {
                status: StatusCode::from_u16(status).unwrap(),
                headers: &map,
                content_length: map.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()),
            };
            let got = judge(&asked, head, now);
            let kind = got.as_ref().map_err(|refusal| match refusal {
                Refusal::Failed(_) => "failed",
                Refusal::Busy(_, None) => "busy",
                Refusal::Busy(_, Some(_)) => "busy, for a while",
                Refusal::Changed(_) => "changed",
                Refusal::Unusable(_) => "unusable",
                Refusal::Lacks => "lacks",
                Refusal::Spread(_) => "spread",
                Refusal::Choked => "choked",
            });
            assert_eq!(kind.copied(), expected, "{status} {pairs:?} for {asked:?}: {got:?}");
        };
        let middle = || asked(mib..2 * mib, false, false);
        check(middle(), 206, &[("content-range", "bytes 1048576-2097151/4194304")], Ok(()));
        check(middle(), 206, &[("content-range", "bytes 0-1048575/4194304")], Err("unusable"));
        check(middle(), 206, &[], Err("unusable"));
        check(
            asked(mib..2 * mib, false, true),
            206,
            &[("content-range", "bytes 1048576-2097151/5000000")],
            Err("changed"),
        );
        check(
            asked(mib..2 * mib, false, false),
            206,
            &[("content-range", "bytes 1048576-2097151/5000000")],
            Err("unusable"),
        );
        check(asked(0..mib, false, false), 200, &[("content-length", "4194304")], Ok(()));
        check(asked(0..mib, false, false), 200, &[("content-length", "99")], Err("unusable"));
        check(middle(), 200, &[("content-length", "4194304")], Err("unusable"));
        check(asked(mib..2 * mib, true, true), 200, &[], Err("changed"));
        check(middle(), 429, &[], Err("busy"));
        check(middle(), 503, &[("retry-after", "3")], Err("busy, for a while"));
        check(middle(), 500, &[], Err("failed"));
        check(middle(), 404, &[], Err("failed"));
        check(middle(), 416, &[("content-range", "bytes */4194304")], Err("unusable"));
        check(
            middle(),
            416,
            &[("content-range", "bytes */4194304"), ("shoal-lacks", "1")],
            Err("lacks"),
        );
        check(middle(), 409, &[("shoal-spread", "2,3")], Err("spread"));
        check(middle(), 409, &[], Err("unusable"));
        check(middle(), 503, &[("shoal-choked", "1")], Err("choked"));
        check(middle(), 403, &[], Err("unusable"));
    }

    #[test]
    fn retry_after_is_read_and_bounded() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = |value: Option<&str>, expected: Option<Duration>| {
            let map = value.map_or_else(HeaderMap::new, |v| headers(&[("retry-after", v)]));
            assert_eq!(retry_after(&map, now), expected, "{value:?}");
        };
        check(None, None);
        check(Some("2"), Some(Duration::from_secs(2)));
        check(Some(" 0 "), Some(Duration::ZERO));
        check(Some("301"), Some(MAX_RETRY_AFTER));
        check(Some("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        check(Some(&later), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        check(Some(&earlier), Some(Duration::ZERO));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400));
        check(Some(&far), Some(MAX_RETRY_AFTER));
        check(Some("soon"), None);
        check(Some("-5"), None);
        check(Some(&"9".repeat(65)), None);
    }

    #[test]
    fn validators_differ_only_where_both_answers_say_something() {
        let first = Validators::of(&headers(&[
            ("etag", "\"5f-100\""),
            ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]));
        assert_eq!(first.strong_etag(), Some("\"5f-100\""));
        let same = Validators::of(&headers(&[("etag", "\"5f-100\"")]));
        assert_eq!(same.differs_from(&first), None, "a missing header is not a change");
        let moved = Validators::of(&headers(&[("etag", "\"60-100\"")]));
        assert!(moved.differs_from(&first).is_some_and(|what| what.contains("ETag")));
        let touched = Validators::of(&headers(&[("last-modified", "Tue, 02 Jan 2024 00:00:00 GMT")]));
        assert!(touched.differs_from(&first).is_some_and(|what| what.contains("Last-Modified")));
        let weak = Validators::of(&headers(&[("etag", "W/\"5f\"")]));
        assert_eq!(weak.strong_etag(), None, "a weak ETag is never sent in If-Range");
        let long = Validators::of(&headers(&[("etag", &format!("\"{}\"", "a".repeat(300)))]));
        assert_eq!(long.etag, None, "an overlong header is ignored");
    }
}
