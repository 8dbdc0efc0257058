//! Following what a peer source holds: one long poll of its `/have/<id>` at a time (see
//! [`crate::proto::have`]), for as long as the source takes part in the download.
//!
//! The first answer tells whether the peer holds the whole file (then nothing more is asked) or
//! part of it: its bitfield goes into the source's [`Avail`] and its pieces into the piece
//! table's rarity counts, and each later answer adds what it gained. Workers of the source
//! claim only pieces it holds, and wake when it gains some. A peer that does not answer `/have`
//! (an older node, or a file just finished and not yet indexed there) is taken to hold
//! everything: its range answers decide. An answer that does not fit (a bitfield of the wrong
//! length, spare bits set) or a set that shrinks drops the source as a liar.

use std::sync::Arc;
use std::time::Duration;

use super::live::Shared;
use super::source::{Avail, SourceRun};
use crate::proto::have::{Bits, HAVE_HEADER, Have, MAX_HAVE_WAIT, have_body_cap};

/// The least time between two polls that brought nothing new.
const SAME_VERSION_PAUSE: Duration = Duration::from_secs(1);
/// Failed polls in a row before a source's availability is left as it is.
const MAX_POLL_FAILURES: u32 = 8;

/// Follows `src`'s `/have` until it holds everything, is dropped, or the download ends.
pub(super) async fn follow(shared: Arc<Shared>, src: Arc<SourceRun>) {
    let Some(base) = src.source.have.clone() else { return };
    let count = shared.layout.count();
    let stall = shared.options.stall_timeout;
    let mut version: Option<u64> = None;
    let mut failures = 0u32;
    loop {
        let mut url = base.clone();
        if let Some(v) = version {
            url.set_query(Some(&format!("since={v}")));
        }
        let Ok(request) = shared.net.request(reqwest::Method::GET, &url, src.source.trust) else {
            set_complete(&shared, &src);
            return;
        };
        let sent = tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = src.dropped.cancelled() => return,
            sent = request.timeout(MAX_HAVE_WAIT + stall).send() => sent,
        };
        let response = match sent {
            Ok(response) if response.status() == reqwest::StatusCode::OK => response,
            Ok(_) => {
                // Not a node that says what it holds: its ranges decide.
                set_complete(&shared, &src);
                return;
            }
            Err(error) => {
                failures += 1;
                tracing::debug!(source = %src.source.shown(), error = %crate::net::describe(&error), "no availability answer");
                if *src.avail() == Avail::Unknown || failures >= MAX_POLL_FAILURES {
                    set_complete(&shared, &src);
                    return;
                }
                let backoff = Duration::from_millis(250).saturating_mul(1 << failures.min(5));
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = src.dropped.cancelled() => return,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Some(header) = response
            .headers()
            .get(HAVE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            // An answer that is not about availability (a server that answers every path):
            // its ranges decide, as for a node that does not say.
            set_complete(&shared, &src);
            return;
        };
        let body = match crate::net::client::read_body(response, base.as_str(), have_body_cap(count)).await {
            Ok(body) => body,
            Err(error) => {
                src.drop_source(&shared, format!("sent an availability answer that does not fit: {error}"));
                return;
            }
        };
        match Have::from_wire(Some(&header), &body, count) {
            Ok(Have::Complete) => {
                set_complete(&shared, &src);
                return;
            }
            Ok(Have::Partial { version: v, bits }) => {
                if !grew(&shared, &src, bits) {
                    src.drop_source(&shared, "said it holds fewer pieces than it said before".into());
                    return;
                }
                failures = 0;
                // An answer with nothing new came sooner than a long poll should (a node that
                // does not hold the request, or one that means to keep this one busy): the next
                // poll waits a while, so a peer cannot make this loop spin.
                if version == Some(v) {
                    tokio::select! {
                        () = shared.cancel.cancelled() => return,
                        () = src.dropped.cancelled() => return,
                        () = tokio::time::sleep(SAME_VERSION_PAUSE) => {}
                    }
                }
                version = Some(v);
            }
            Err(error) => {
                src.drop_source(&shared, format!("sent an availability answer that does not fit: {error}"));
                return;
            }
        }
    }
}

/// The source holds everything: it leaves the rarity counts, and its workers may claim anything.
fn set_complete(shared: &Shared, src: &SourceRun) {
    let mut avail = src.avail();
    if let Avail::Partial(held) = &*avail {
        shared.pieces().partial_source_left(held);
    }
    *avail = Avail::Complete;
    drop(avail);
    shared.tally.progress.update(src.source.index, |s| s.held = None);
    shared.tally.changed.notify_waiters();
}

/// Takes a new bitfield for the source; false when it lacks a piece the last one had.
fn grew(shared: &Shared, src: &SourceRun, bits: Bits) -> bool {
    let mut avail = src.avail();
    {
        let mut pieces = shared.pieces();
        match &*avail {
            Avail::Partial(old) => {
                if (0..old.count()).any(|i| old.has(i) && !bits.has(i)) {
                    return false;
                }
                for i in (0..bits.count()).filter(|i| bits.has(*i) && !old.has(*i)) {
                    pieces.seen(i);
                }
            }
            Avail::Unknown | Avail::Complete => {
                pieces.partial_source();
                for i in (0..bits.count()).filter(|i| bits.has(*i)) {
                    pieces.seen(i);
                }
            }
        }
    }
    let held = bits.held();
    *avail = Avail::Partial(bits);
    drop(avail);
    shared.tally.progress.update(src.source.index, |s| s.held = Some(held));
    shared.tally.changed.notify_waiters();
    true
}

/// The source left the download: a partial one leaves the rarity counts.
pub(super) fn left(shared: &Shared, src: &SourceRun) {
    let mut avail = src.avail();
    if let Avail::Partial(held) = &*avail {
        shared.pieces().partial_source_left(held);
    }
    *avail = Avail::Complete;
}
