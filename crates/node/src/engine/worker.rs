//! One connection to a source: claim a run of pieces, request it in one `Range` request, judge
//! the answer ([`super::answer`]), stream the body piece by piece, check each piece against its
//! hash and write it at its offset, and on failure back off, end the connection or drop the
//! source. Each connection is a worker of its own in [`super::pieces`]; what it reports about
//! its source (state, failures, bad pieces, bans) is per source ([`SourceRun`]).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use shoal_index::PieceCheck;

use super::EngineError;
use super::answer::{self, Asked, Head, Refusal};
use super::live::Shared;
use super::pieces::{Next, WorkerId};
use super::prepare::Layout;
use super::source::{Avail, SourceRun, SourceState};
use crate::net::rate::throttle;

/// How long a connection waits after a holder seeding a swarm refused it and named no piece
/// that is still missing here.
const SPREAD_PAUSE: Duration = Duration::from_millis(250);

/// How long a choked source's connections wait before they ask again (up to twice this).
const CHOKED_PAUSE: Duration = Duration::from_millis(500);

/// Why one range request ended early.
enum RunError {
    /// The answer, or the connection, could not be used (see [`Refusal`]).
    Refused(Refusal),
    /// The source sent a piece that failed its check.
    Bad(u64),
    /// Writing failed: the whole download stops.
    Fatal(EngineError),
}

impl RunError {
    /// What ended the run, in a word, for logs.
    fn kind(&self) -> &'static str {
        match self {
            RunError::Refused(Refusal::Failed(_)) => "failed",
            RunError::Refused(Refusal::Busy(..)) => "busy",
            RunError::Refused(Refusal::Changed(_)) => "changed",
            RunError::Refused(Refusal::Unusable(_)) => "unusable",
            RunError::Refused(Refusal::Lacks) => "lacks",
            RunError::Refused(Refusal::Spread(_)) => "spread",
            RunError::Refused(Refusal::Choked) => "choked",
            RunError::Bad(_) => "bad piece",
            RunError::Fatal(_) => "fatal",
        }
    }
}

impl From<Refusal> for RunError {
    fn from(refusal: Refusal) -> RunError {
        RunError::Refused(refusal)
    }
}

/// How a connection ended, for the count of connections open.
enum Ended {
    /// Counted out already (retired, or refused while others stay).
    Counted,
    /// Ended for a reason of its own (finished, dropped, gave up).
    Closed,
}

/// One connection to a source: claim, fetch, verify, write; back off on failure.
pub(super) async fn connection(shared: Arc<Shared>, src: Arc<SourceRun>, me: WorkerId) {
    if let Ended::Closed = connection_loop(&shared, &src, me).await {
        src.closing.store(true, Ordering::Relaxed);
        src.conns().closed();
    }
    shared.budget.closed();
    let open = src.conns().open();
    shared.tally.progress.update(src.source.index, |s| s.connections = open);
    src.wake.notify_one();
}

async fn connection_loop(shared: &Arc<Shared>, src: &SourceRun, me: WorkerId) -> Ended {
    let index = src.source.index;
    let progress = &shared.tally.progress;
    // Four pieces first; in a swarm the first claims are single pieces (`Pieces::claim`), so a
    // slow member holds no long claim before its speed is known.
    let mut want: u64 = 4;
    loop {
        if shared.cancel.is_cancelled() || src.dropped.is_cancelled() {
            return Ended::Closed;
        }
        if src.conns().retire() {
            return Ended::Counted;
        }
        // Registered before the claim, so that a change between the claim and the wait below
        // (a piece done, claims given back, the source's availability learnt) is not missed.
        let changed = shared.tally.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // Only what the source holds (lock order: its availability, then the piece table); the
        // pieces a holder seeding a swarm asked for first.
        let next = {
            let avail = src.avail();
            let mut hints = src.hints();
            let hinted = if hints.is_empty() || matches!(*avail, Avail::Partial(_)) {
                None
            } else {
                let run = shared.pieces().claim_hinted(me, want, &hints);
                hints.clear();
                run
            };
            drop(hints);
            match (hinted, &*avail) {
                (Some(run), _) => Next::Fetch(run),
                (None, Avail::Unknown) if !shared.pieces().is_finished() => Next::Wait,
                (None, Avail::Unknown | Avail::Complete) => shared.pieces().claim(me, want, None, rand::random()),
                (None, Avail::Partial(bits)) => shared.pieces().claim(me, want, Some(bits), rand::random()),
            }
        };
        let run = match next {
            Next::Finished => {
                progress.update(index, |s| {
                    if s.state != SourceState::Banned {
                        s.state = SourceState::Idle;
                    }
                });
                shared.tally.changed.notify_waiters();
                return Ended::Closed;
            }
            Next::Wait => {
                tokio::select! {
                    () = changed => {}
                    () = shared.cancel.cancelled() => return Ended::Closed,
                    () = src.dropped.cancelled() => return Ended::Closed,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            Next::Fetch(run) => run,
        };
        // A `Retry-After` holds every connection of the source.
        if let Some(until) = src.not_before()
            && until > Instant::now()
        {
            shared.pieces().release(me, run.clone());
            shared.tally.changed.notify_waiters();
            tokio::select! {
                () = shared.cancel.cancelled() => return Ended::Closed,
                () = src.dropped.cancelled() => return Ended::Closed,
                () = tokio::time::sleep_until(until.into()) => {}
            }
            continue;
        }
        let started = Instant::now();
        let outcome = fetch_run(shared, src, me, run.clone()).await;
        tracing::debug!(
            worker = me,
            pieces = run.end - run.start,
            first = run.start,
            used = outcome.as_ref().ok().copied(),
            refused = outcome.as_ref().err().map(RunError::kind),
            source = %src.source.shown(),
            ms = started.elapsed().as_millis() as u64,
            "run ended"
        );
        shared.pieces().release(me, run.clone());
        shared.tally.changed.notify_waiters();
        let reason = match outcome {
            Ok(bytes) => {
                src.failures.store(0, Ordering::Relaxed);
                progress.update(index, |s| s.failures = 0);
                // Size the next claim to about a second of this connection's speed.
                let rate = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
                want = ((rate / super::PIECE_SIZE as f64).round() as u64).clamp(1, 64);
                continue;
            }
            Err(RunError::Fatal(error)) => {
                shared.fail(error);
                return Ended::Closed;
            }
            Err(RunError::Refused(Refusal::Unusable(reason))) => {
                tracing::warn!(source = %src.source.shown(), %reason, "source cannot serve this file");
                src.drop_source(shared, reason);
                return Ended::Closed;
            }
            Err(RunError::Refused(Refusal::Changed(reason))) => {
                tracing::warn!(source = %src.source.shown(), %reason, "source dropped");
                src.drop_source(shared, reason);
                return Ended::Closed;
            }
            Err(RunError::Bad(piece)) => {
                let bad = src.bad.fetch_add(1, Ordering::Relaxed) + 1;
                progress.wasted.fetch_add(shared.layout.piece_len(piece), Ordering::Relaxed);
                if bad > shared.options.max_bad_pieces {
                    // Banned already by another connection: pieces it had in flight are not counted.
                    return Ended::Closed;
                }
                progress.update(index, |s| {
                    s.bad_pieces = bad;
                    s.last_error = Some(format!("piece {piece} failed verification"));
                });
                tracing::warn!(source = %src.source.shown(), piece, "a piece failed verification");
                if bad >= shared.options.max_bad_pieces {
                    src.drop_source(shared, format!("banned after {bad} pieces failed verification"));
                    return Ended::Closed;
                }
                continue;
            }
            Err(RunError::Refused(Refusal::Lacks)) => {
                // It was asked only for pieces it said it holds.
                let bad = src.bad.fetch_add(1, Ordering::Relaxed) + 1;
                progress.update(index, |s| {
                    s.bad_pieces = bad;
                    s.last_error = Some(format!("lacked piece {} it said it held", run.start));
                });
                tracing::warn!(source = %src.source.shown(), piece = run.start, "a source lacked a piece it said it held");
                if bad >= shared.options.max_bad_pieces {
                    src.drop_source(shared, format!("banned after {bad} pieces it said it held failed"));
                    return Ended::Closed;
                }
                continue;
            }
            Err(RunError::Refused(Refusal::Spread(hints))) => {
                // Not a failure: the holder would rather send other pieces. With none of them
                // missing here, wait a moment before asking again.
                let useful = {
                    let pieces = shared.pieces();
                    hints.iter().any(|h| !pieces.is_done(*h) && !pieces.is_claimed(*h))
                };
                *src.hints() = hints;
                if !useful {
                    src.spread_refused();
                    tokio::select! {
                        () = shared.cancel.cancelled() => return Ended::Closed,
                        () = src.dropped.cancelled() => return Ended::Closed,
                        () = tokio::time::sleep(SPREAD_PAUSE) => {}
                    }
                }
                continue;
            }
            Err(RunError::Refused(Refusal::Choked)) => {
                // Not a failure: the source serves others for now. Its connections wait a
                // moment (spread at random, so that they do not all come back at once) while
                // the other sources take its pieces.
                let wait = CHOKED_PAUSE + Duration::from_millis(rand::random::<u64>() % CHOKED_PAUSE.as_millis() as u64);
                src.defer(shared, wait);
                continue;
            }
            Err(RunError::Refused(Refusal::Busy(reason, wait))) => {
                if let Some(wait) = wait {
                    src.defer(shared, wait);
                }
                reason
            }
            Err(RunError::Refused(Refusal::Failed(reason))) => reason,
        };
        // A failure: with other connections open, this one ends (the source backs off by one);
        // the last one retries with backoff.
        if src.conns().refused(Instant::now()) {
            tracing::debug!(source = %src.source.shown(), %reason, "one connection fewer");
            return Ended::Counted;
        }
        let failures = src.failures.fetch_add(1, Ordering::Relaxed) + 1;
        progress.update(index, |s| {
            if s.state != SourceState::Banned {
                s.state = SourceState::Retrying;
            }
            s.failures = failures;
            s.last_error = Some(reason.clone());
        });
        tracing::debug!(source = %src.source.shown(), %reason, "source failed; retrying later");
        if shared.tally.since_progress() >= shared.options.give_up_after {
            return Ended::Closed;
        }
        let all_down = progress.live_sources() == 0;
        progress.waiting.store(all_down, Ordering::Relaxed);
        let backoff = shared
            .options
            .backoff
            .saturating_mul(1 << failures.min(16))
            .min(shared.options.max_backoff);
        tokio::select! {
            () = shared.cancel.cancelled() => return Ended::Closed,
            () = src.dropped.cancelled() => return Ended::Closed,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Fetches pieces `run` from one source in one range request. Returns the bytes used.
///
/// Every answer's validators are checked against the source's first (see
/// [`answer::Validators`]); once a strong ETag is known it goes in `If-Range`, so that a server
/// whose file changed answers with the whole new file (200), which is refused.
async fn fetch_run(shared: &Arc<Shared>, src: &SourceRun, me: WorkerId, run: Range<u64>) -> Result<u64, RunError> {
    let source = &src.source;
    let layout = &shared.layout;
    let bytes = layout.piece(run.start).start..layout.piece(run.end - 1).end;
    let mut request = shared
        .net
        .request(reqwest::Method::GET, &source.url, source.trust)
        .map_err(|e| Refusal::Unusable(e.to_string()))?
        .header(reqwest::header::RANGE, format!("bytes={}-{}", bytes.start, bytes.end - 1));
    if source.kind == super::SourceKind::Peer && src.takes_hints() {
        request = request.header(crate::proto::have::HINTS_HEADER, "1");
        if let Some(me) = &shared.swarm_as {
            request = request.header(crate::proto::have::FROM_HEADER, me.clone());
        }
    }
    let if_range = src.if_range();
    if let Some(etag) = &if_range {
        request = request.header(reqwest::header::IF_RANGE, etag.as_str());
    }
    let asked = Asked {
        bytes,
        size: layout.size,
        if_range: if_range.is_some(),
        answered_before: src.answered_before(),
    };
    let stall = shared.options.stall_timeout;
    let response = tokio::select! {
        () = shared.cancel.cancelled() => return Ok(0),
        () = src.dropped.cancelled() => return Ok(0),
        sent = tokio::time::timeout(stall, request.send()) => match sent {
            Err(_) => return Err(Refusal::Failed(format!("no answer within {stall:?}")).into()),
            // A certificate that is not trusted stays so: the source is dropped, not retried.
            Ok(Err(e)) => match crate::net::tls_failure(&e) {
                Some(tls) => return Err(Refusal::Unusable(tls).into()),
                None => return Err(Refusal::Failed(format!("request failed: {}", crate::net::describe(&e))).into()),
            },
            Ok(Ok(response)) => response,
        },
    };
    answer::judge(&asked, Head::of(&response), SystemTime::now())?;
    src.check_validators(response.headers()).map_err(Refusal::Changed)?;
    src.conns().accepted();
    src.wake.notify_one();
    // Another connection of this source may have banned it meanwhile: a ban is never undone.
    shared.tally.progress.update(source.index, |s| {
        if s.state != SourceState::Banned {
            s.state = SourceState::Live;
        }
    });
    shared.tally.progress.waiting.store(false, Ordering::Relaxed);
    receive(shared, src, me, run, response).await
}

/// The piece a connection is receiving: its parts as they came off the socket (no copy), and its
/// check fed with each part.
struct Incoming {
    index: u64,
    /// The piece's length.
    len: usize,
    parts: Vec<Bytes>,
    have: usize,
    /// `None` without hashes (mirrors only: the whole file is checked at the end).
    check: Option<PieceCheck>,
}

impl Incoming {
    fn new(layout: &Layout, index: u64) -> Incoming {
        Incoming {
            index,
            len: layout.piece_len(index) as usize,
            parts: Vec::new(),
            have: 0,
            check: layout.hashes.as_ref().and_then(|hashes| hashes.check(index)),
        }
    }

    fn missing(&self) -> usize {
        self.len - self.have
    }

    fn push(&mut self, part: Bytes) {
        if part.is_empty() {
            return;
        }
        if let Some(check) = &mut self.check {
            check.update(&part);
        }
        self.have += part.len();
        self.parts.push(part);
    }

    /// True when the piece is whole and passes its check (always, without hashes).
    fn checks(&mut self, layout: &Layout) -> bool {
        match self.check.take() {
            Some(check) => check.finish(),
            None => layout.hashes.is_none(),
        }
    }
}

/// A checked piece being written on the blocking pool while the next one is received.
struct Storing {
    index: u64,
    len: u64,
    write: tokio::task::JoinHandle<Result<(), EngineError>>,
}

/// Reads an accepted answer's body piece by piece, checking each as its bytes arrive. A piece
/// that checks, while this connection still holds its claim, is written on the blocking pool
/// while the next one is received (so a connection holds at most two pieces: one arriving,
/// one being written); it counts once written. Returns the bytes used.
async fn receive(
    shared: &Arc<Shared>,
    src: &SourceRun,
    me: WorkerId,
    run: Range<u64>,
    response: reqwest::Response,
) -> Result<u64, RunError> {
    let mut storing = None;
    let mut used = 0u64;
    let outcome = receive_pieces(shared, src, me, run, response, &mut storing, &mut used).await;
    // The last write ends before the run does, whatever ended it.
    if let Some(last) = storing.take() {
        used += stored(shared, src, last).await?;
    }
    outcome.map(|()| used)
}

async fn receive_pieces(
    shared: &Arc<Shared>,
    src: &SourceRun,
    me: WorkerId,
    run: Range<u64>,
    response: reqwest::Response,
    storing: &mut Option<Storing>,
    used: &mut u64,
) -> Result<(), RunError> {
    let layout = &shared.layout;
    let stall = shared.options.stall_timeout;
    let mut stream = response.bytes_stream();
    let mut piece = Incoming::new(layout, run.start);
    let mut leftover: Option<Bytes> = None;
    loop {
        if piece.missing() == 0 {
            let index = piece.index;
            let mut whole = std::mem::replace(&mut piece, Incoming::new(layout, index + 1));
            if shared.pieces().is_mine(me, index) {
                if !whole.checks(layout) {
                    shared.net.metrics().pieces_rejected.inc();
                    return Err(RunError::Bad(index));
                }
                // One write at a time per connection: the previous one ends before this starts.
                if let Some(previous) = storing.take() {
                    *used += stored(shared, src, previous).await?;
                }
                *storing = Some(store(shared, whole));
            } else {
                shared.tally.progress.wasted.fetch_add(whole.len as u64, Ordering::Relaxed);
            }
            if index + 1 >= run.end || !shared.pieces().is_mine(me, index + 1) {
                // Done, or the rest was stolen or won elsewhere: drop the response.
                return Ok(());
            }
            continue;
        }
        let mut chunk = match leftover.take() {
            Some(chunk) => chunk,
            None => {
                // While waiting, a piece's write that ends is counted at once (an idle connection
                // would otherwise fetch a copy of a piece that is done but not yet counted).
                let deadline = tokio::time::Instant::now() + stall;
                let chunk = loop {
                    tokio::select! {
                        () = shared.cancel.cancelled() => return Ok(()),
                        () = src.dropped.cancelled() => return Ok(()),
                        written = async { (&mut storing.as_mut().expect("only with a write").write).await }, if storing.is_some() => {
                            let Storing { index, len, .. } = storing.take().expect("only with a write");
                            *used += account(shared, src, index, len, written)?;
                        }
                        next = tokio::time::timeout_at(deadline, stream.next()) => break match next {
                            Err(_) => return Err(Refusal::Failed(format!("stalled: no data for {stall:?}")).into()),
                            Ok(None) => return Err(Refusal::Failed("closed the connection early".into()).into()),
                            Ok(Some(Err(e))) => return Err(Refusal::Failed(format!("read failed: {}", crate::net::describe(&e))).into()),
                            Ok(Some(Ok(chunk))) => chunk,
                        },
                    }
                };
                src.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if let Some(limiter) = &shared.limiter {
                    throttle(limiter, chunk.len()).await;
                }
                chunk
            }
        };
        let part = chunk.split_to(piece.missing().min(chunk.len()));
        piece.push(part);
        if !chunk.is_empty() {
            leftover = Some(chunk);
        }
    }
}

/// Starts writing a checked piece on the blocking pool.
fn store(shared: &Arc<Shared>, piece: Incoming) -> Storing {
    let (index, len) = (piece.index, piece.len as u64);
    let offset = shared.layout.piece(index).start;
    let disk = shared.disk.clone();
    let write = tokio::task::spawn_blocking(move || disk.write_piece(offset, &piece.parts));
    Storing { index, len, write }
}

/// Waits for a piece's write and counts it ([`account`]).
async fn stored(shared: &Arc<Shared>, src: &SourceRun, storing: Storing) -> Result<u64, RunError> {
    let Storing { index, len, write } = storing;
    account(shared, src, index, len, write.await)
}

/// Counts piece `index` once its write ended well, unless another copy won meanwhile. Returns
/// the bytes counted.
fn account(
    shared: &Shared,
    src: &SourceRun,
    index: u64,
    len: u64,
    written: Result<Result<(), EngineError>, tokio::task::JoinError>,
) -> Result<u64, RunError> {
    written
        .map_err(|e| RunError::Fatal(EngineError::Task(e.to_string())))?
        .map_err(RunError::Fatal)?;
    if !shared.pieces().complete(index) {
        shared.tally.progress.wasted.fetch_add(len, Ordering::Relaxed);
        return Ok(0);
    }
    if let Some(serving) = &shared.serving {
        serving.mark(index);
    }
    shared.tally.progress.update(src.source.index, |s| s.bytes += len);
    let metrics = shared.net.metrics();
    if shared.layout.hashes.is_some() {
        metrics.pieces_verified.inc();
    }
    metrics
        .bytes_down
        .get_or_create(&crate::net::metrics::KindLabel {
            kind: src.source.kind.name().to_string(),
        })
        .inc_by(len);
    shared.tally.piece_done(len);
    Ok(len)
}
