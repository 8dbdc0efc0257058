//! Fault tests of the multi-source download engine, in process: real shoal nodes and a
//! fault-injecting HTTP server (a "plain mirror" that can corrupt, stall, die or come back) on
//! `127.0.0.1:0`, real files in temporary directories, real HTTP.
//!
//! Every test checks the file byte for byte against the bytes served, and checks what the
//! feature under test leaves behind (per-source figures, the error, the resume counters), so
//! that it fails without the feature. Waits are bounded poll loops under a timeout; the engine
//! runs with short stall and backoff times.

#[path = "it/engine_kit.rs"]
mod kit;
#[path = "it/util.rs"]
mod util;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_node::engine::{
    Engine, EngineError, EngineOptions, Job, NewSource, Outcome, PIECE_SIZE, Progress, SourceKind, SourceStat, SourceState, part_path,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use kit::{MIB, assert_same_file, bounded, content_id, engine_in, job, quick_options, run};
use util::{SECRET, TestNode, random_bytes, s};

use fault::{FaultServer, Mode};

/// A test-only HTTP server for one byte buffer whose behaviour the test switches while it runs.
mod fault {
    use std::ops::Range;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
    use std::time::Duration;

    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use tokio_util::sync::CancellationToken;

    /// How the server answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Mode {
        /// Serves the bytes as they are.
        Normal = 0,
        /// Flips the first byte of every response body.
        Corrupt = 1,
        /// Sends the headers and a few bytes, then nothing more while the server lives.
        Stall = 2,
        /// Answers 503 to every request and cuts the bodies in flight.
        Die = 3,
    }

    impl Mode {
        fn from_u8(value: u8) -> Mode {
            match value {
                1 => Mode::Corrupt,
                2 => Mode::Stall,
                3 => Mode::Die,
                _ => Mode::Normal,
            }
        }
    }

    /// Body bytes are sent in chunks of this size.
    const CHUNK: usize = 64 * 1024;
    /// A stalling response sends this much before it stops.
    const STALL_AFTER: usize = 1000;

    struct Shared {
        data: Bytes,
        /// Served at `/outboard/<anything>`, when set: the server then also acts as a shoal peer.
        outboard: Option<Bytes>,
        mode: AtomicU8,
        /// Body bytes sent, over all responses.
        sent: AtomicU64,
        /// When `sent` reaches this, the server switches to `Die` (u64::MAX: never).
        die_after: AtomicU64,
        /// Delay before each body chunk, in microseconds (a slow source).
        chunk_delay_us: AtomicU64,
        /// Range requests answered with data.
        requests: AtomicU64,
        /// Cancelled when the server is dropped: ends the stalled responses.
        closed: CancellationToken,
    }

    /// A running server; dropping it stops it and every response it holds open.
    pub struct FaultServer {
        /// `http://127.0.0.1:<port>`.
        pub url: String,
        shared: Arc<Shared>,
        task: tokio::task::JoinHandle<()>,
    }

    impl FaultServer {
        /// Serves `data` at every path (and `outboard`, when given, at `/outboard/...`).
        pub async fn start(data: Vec<u8>, outboard: Option<Vec<u8>>) -> FaultServer {
            let shared = Arc::new(Shared {
                data: Bytes::from(data),
                outboard: outboard.map(Bytes::from),
                mode: AtomicU8::new(Mode::Normal as u8),
                sent: AtomicU64::new(0),
                die_after: AtomicU64::new(u64::MAX),
                chunk_delay_us: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                closed: CancellationToken::new(),
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fault server");
            let url = format!("http://{}", listener.local_addr().expect("local address"));
            let router = axum::Router::new().fallback(handle).with_state(shared.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            FaultServer { url, shared, task }
        }

        /// A mirror URL of the file on this server.
        pub fn mirror(&self) -> String {
            format!("{}/file.bin", self.url)
        }

        pub fn set_mode(&self, mode: Mode) {
            self.shared.mode.store(mode as u8, Ordering::SeqCst);
        }

        pub fn mode(&self) -> Mode {
            Mode::from_u8(self.shared.mode.load(Ordering::SeqCst))
        }

        /// Serve normally until `bytes` body bytes were sent in all, then die.
        pub fn die_after(&self, bytes: u64) {
            self.shared.die_after.store(bytes, Ordering::SeqCst);
        }

        /// Wait `delay` before each 64 KiB body chunk.
        pub fn set_chunk_delay(&self, delay: Duration) {
            self.shared.chunk_delay_us.store(delay.as_micros() as u64, Ordering::SeqCst);
        }

        /// Body bytes sent so far.
        pub fn sent(&self) -> u64 {
            self.shared.sent.load(Ordering::SeqCst)
        }

        /// Requests answered with (the start of) a body.
        pub fn requests(&self) -> u64 {
            self.shared.requests.load(Ordering::SeqCst)
        }

        /// Whether `stat` is this server's source.
        pub fn is(&self, stat: &super::SourceStat) -> bool {
            stat.url.starts_with(&format!("{}/", self.url))
        }
    }

    impl Drop for FaultServer {
        fn drop(&mut self) {
            self.shared.closed.cancel();
            self.task.abort();
        }
    }

    /// A single `bytes=a-b` or `bytes=a-` range; anything else means the whole file.
    fn parse_range(headers: &HeaderMap, size: u64) -> Option<Range<u64>> {
        let text = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
        let (a, b) = text.split_once('-')?;
        let start: u64 = a.trim().parse().ok()?;
        let end: u64 = if b.trim().is_empty() {
            size
        } else {
            b.trim().parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        (start < end).then_some(start..end)
    }

    async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
        if Mode::from_u8(shared.mode.load(Ordering::SeqCst)) == Mode::Die {
            return (StatusCode::SERVICE_UNAVAILABLE, "down\n").into_response();
        }
        if uri.path().starts_with("/outboard/") {
            return match &shared.outboard {
                Some(outboard) => outboard.clone().into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        // As a shoal peer, it holds the whole file (what a node's `/have` says then).
        if uri.path().starts_with("/have/") {
            return match &shared.outboard {
                Some(_) => ([("shoal-have", "complete")], "").into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            };
        }
        let size = shared.data.len() as u64;
        let range = parse_range(&headers, size);
        let span = range.clone().unwrap_or(0..size);
        let mut builder = Response::builder()
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_LENGTH, span.end - span.start);
        builder = match &range {
            Some(r) => builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end - 1, size)),
            None => builder.status(StatusCode::OK),
        };
        if method == Method::HEAD {
            return builder.body(Body::empty()).expect("a response");
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
        builder.body(Body::from_stream(body(shared, span))).expect("a response")
    }

    struct Cursor {
        shared: Arc<Shared>,
        at: u64,
        end: u64,
        first: bool,
        sent_here: usize,
        over: bool,
    }

    fn cut(why: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_string())
    }

    /// The body of one response, chunk by chunk, obeying the mode at every chunk.
    fn body(shared: Arc<Shared>, span: Range<u64>) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        let cursor = Cursor {
            shared,
            at: span.start,
            end: span.end,
            first: true,
            sent_here: 0,
            over: false,
        };
        futures_util::stream::unfold(cursor, |mut c| async move {
            if c.over || c.at >= c.end {
                return None;
            }
            let delay = c.shared.chunk_delay_us.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_micros(delay)) => {}
                    () = c.shared.closed.cancelled() => {}
                }
            }
            let mode = Mode::from_u8(c.shared.mode.load(Ordering::SeqCst));
            if mode == Mode::Die || c.shared.closed.is_cancelled() {
                c.over = true;
                return Some((Err(cut("the server died")), c));
            }
            if c.shared.sent.load(Ordering::SeqCst) >= c.shared.die_after.load(Ordering::SeqCst) {
                c.shared.mode.store(Mode::Die as u8, Ordering::SeqCst);
                c.over = true;
                return Some((Err(cut("the server died")), c));
            }
            let mut len = CHUNK.min((c.end - c.at) as usize);
            if mode == Mode::Stall {
                if c.sent_here >= STALL_AFTER {
                    // Hold the response open, sending nothing, until the server is dropped.
                    c.shared.closed.cancelled().await;
                    c.over = true;
                    return Some((Err(cut("the server was dropped")), c));
                }
                len = len.min(STALL_AFTER - c.sent_here);
            }
            let start = c.at as usize;
            let mut chunk = c.shared.data.slice(start..start + len);
            if mode == Mode::Corrupt && c.first {
                let mut bad = chunk.to_vec();
                bad[0] ^= 0xff;
                chunk = Bytes::from(bad);
            }
            c.first = false;
            c.at += len as u64;
            c.sent_here += len;
            c.shared.sent.fetch_add(len as u64, Ordering::SeqCst);
            Some((Ok(chunk), c))
        })
    }
}

/// Runs `job` until at least `bytes` are done, then cancels it. Returns how it ended and the
/// bytes done by then.
async fn run_then_cancel(engine: &Engine, job: Job, bytes: u64) -> (Result<Outcome, EngineError>, u64) {
    let progress = Arc::new(Progress::default());
    let cancel = CancellationToken::new();
    let (_more, more_rx) = mpsc::channel::<NewSource>(1);
    let running = tokio::spawn({
        let (engine, progress, cancel) = (engine.clone(), progress.clone(), cancel.clone());
        async move { engine.run(job, progress, cancel, more_rx).await }
    });
    wait_until("enough pieces are done", Duration::from_secs(30), || {
        progress.done.load(Ordering::Relaxed) >= bytes
    })
    .await;
    cancel.cancel();
    let stopped = running.await.expect("the engine task");
    (stopped, progress.done.load(Ordering::Relaxed))
}

/// A shoal peer holding `data` as `file.bin`, serving at most `rate` bytes per second.
async fn peer_with(data: &[u8], rate: Option<u64>) -> TestNode {
    let node = TestNode::start_with(|o| o.max_upload_rate = rate).await;
    node.add("file.bin", data).await;
    node
}

/// A fetcher over an engine in `dir` whose holder discovery asks `peers` every `every`.
fn fetcher_in(dir: &std::path::Path, stop: &CancellationToken, peers: Vec<String>, every: Duration) -> shoal_node::service::fetch::Fetcher {
    use shoal_node::service::downloads::Downloads;
    use shoal_node::service::fetch::{Fetcher, FetcherParts};
    let client = shoal_node::net::Client::new(Duration::from_secs(3));
    Fetcher::new(FetcherParts {
        downloads: Downloads::new(engine_in(dir, quick_options()), tokio_util::task::TaskTracker::new(), stop.clone()),
        client: client.clone(),
        discover: Arc::new(shoal_node::discovery::FixedPeers {
            client,
            peers,
            deadline: Duration::from_millis(200),
        }),
        index: None,
        me: Vec::new(),
        find_more_every: every,
        finished: None,
    })
}

/// Polls `check` until it holds, for at most `limit`.
async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(limit, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

fn stat_of<'a>(sources: &'a [SourceStat], server: &FaultServer) -> &'a SourceStat {
    sources
        .iter()
        .find(|s| server.is(s))
        .unwrap_or_else(|| panic!("no source stat for {}: {sources:#?}", server.url))
}

fn peer_stat(sources: &[SourceStat]) -> &SourceStat {
    sources
        .iter()
        .find(|s| s.kind == SourceKind::Peer)
        .unwrap_or_else(|| panic!("no peer in {sources:#?}"))
}

// 1. P2SP: a shoal peer and two plain mirrors of the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_and_two_mirrors_all_contribute() {
    bounded(async {
        let data = random_bytes(12 * MIB, 1);
        let peer = peer_with(&data, Some(8 << 20)).await;
        let m1 = FaultServer::start(data.clone(), None).await;
        let m2 = FaultServer::start(data.clone(), None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let (result, _) = run(&engine, job(&target, &data, vec![peer.url.clone()], vec![m1.mirror(), m2.mirror()])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert_eq!(outcome.id, content_id(&data));
        let contributing: Vec<&SourceStat> = outcome.sources.iter().filter(|s| s.bytes > 0).collect();
        assert!(contributing.len() >= 2, "more than one source contributed: {:#?}", outcome.sources);
        assert!(
            contributing.iter().any(|s| s.kind == SourceKind::Mirror),
            "a mirror contributed: {:#?}",
            outcome.sources
        );
        let counted: u64 = outcome.sources.iter().map(|s| s.bytes).sum();
        assert_eq!(counted, data.len() as u64, "every byte is counted once: {:#?}", outcome.sources);
    })
    .await;
}

// 2. A mirror that corrupts every response, beside a good (slower) shoal peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_mirror_is_banned_and_nothing_it_sent_is_kept() {
    bounded(async {
        let data = random_bytes(12 * MIB, 2);
        let peer = peer_with(&data, Some(4 << 20)).await;
        let bad = FaultServer::start(data.clone(), None).await;
        bad.set_mode(Mode::Corrupt);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let options = EngineOptions {
            max_bad_pieces: 2,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let (result, progress) = run(&engine, job(&target, &data, vec![peer.url.clone()], vec![bad.mirror()])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        let stat = stat_of(&outcome.sources, &bad);
        assert!(stat.bad_pieces >= 1, "the corrupt pieces were caught: {stat:#?}");
        assert_eq!(stat.bad_pieces, 2, "banned after max_bad_pieces, not later: {stat:#?}");
        assert_eq!(stat.state, SourceState::Banned, "{stat:#?}");
        assert_eq!(stat.bytes, 0, "nothing the corrupting mirror sent was counted: {stat:#?}");
        assert_eq!(peer_stat(&outcome.sources).bytes, data.len() as u64);
        assert!(
            progress.wasted.load(Ordering::Relaxed) >= PIECE_SIZE,
            "the bad pieces count as wasted"
        );
        let requests = bad.requests();
        assert!(requests >= 2, "the mirror was asked until banned ({requests} requests)");
    })
    .await;
}

// 3. A mirror that sends a little and then nothing, beside a good (slower) shoal peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_mirror_is_dropped_and_its_pieces_go_elsewhere() {
    bounded(async {
        let data = random_bytes(8 * MIB, 3);
        let peer = peer_with(&data, Some(4 << 20)).await;
        let stalling = FaultServer::start(data.clone(), None).await;
        stalling.set_mode(Mode::Stall);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let (result, _) = run(&engine, job(&target, &data, vec![peer.url.clone()], vec![stalling.mirror()])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        let stat = stat_of(&outcome.sources, &stalling);
        assert_eq!(stat.bytes, 0, "{stat:#?}");
        let error = stat.last_error.clone().unwrap_or_default();
        assert!(error.contains("stalled"), "the stall was detected by stall_timeout: {stat:#?}");
        assert_eq!(
            peer_stat(&outcome.sources).bytes,
            data.len() as u64,
            "the peer got the stalled pieces"
        );
        assert!(stalling.requests() >= 2, "the stalled mirror was retried later");
    })
    .await;
}

// 4. A mirror that serves normally and then dies in the middle of a response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_killed_mid_download_is_replaced() {
    bounded(async {
        let data = random_bytes(12 * MIB, 4);
        let peer = peer_with(&data, Some(4 << 20)).await;
        let dying = FaultServer::start(data.clone(), None).await;
        let dying_at = 3 * MIB as u64 + 100_000;
        dying.die_after(dying_at);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let (result, _) = run(&engine, job(&target, &data, vec![peer.url.clone()], vec![dying.mirror()])).await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert_eq!(dying.mode(), Mode::Die, "the mirror did die");
        let stat = stat_of(&outcome.sources, &dying);
        assert!(stat.bytes > 0, "the mirror contributed before it died: {stat:#?}");
        assert!(stat.bytes <= dying_at, "{stat:#?}");
        assert_ne!(stat.state, SourceState::Live, "{stat:#?}");
        let peer = peer_stat(&outcome.sources);
        assert_eq!(
            peer.bytes + stat.bytes,
            data.len() as u64,
            "the peer finished the rest: {:#?}",
            outcome.sources
        );
    })
    .await;
}

// 5. The only source answers 503 for a while, then comes back; the download waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_gone_and_back_completes_without_a_restart() {
    bounded(async {
        let data = random_bytes(6 * MIB, 5);
        let only = FaultServer::start(data.clone(), None).await;
        only.set_mode(Mode::Die);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let progress = Arc::new(Progress::default());
        let (_more, more_rx) = mpsc::channel::<NewSource>(1);
        let download = tokio::spawn({
            let (engine, progress, job) = (engine.clone(), progress.clone(), job(&target, &data, vec![], vec![only.mirror()]));
            async move { engine.run(job, progress, CancellationToken::new(), more_rx).await }
        });
        wait_until("the only source is retried a few times", Duration::from_secs(20), || {
            progress
                .sources()
                .first()
                .is_some_and(|s| s.state == SourceState::Retrying && s.failures >= 3)
        })
        .await;
        assert!(progress.waiting.load(Ordering::Relaxed), "the engine says it waits for a source");
        assert!(!download.is_finished(), "the engine did not give up while the source was down");
        assert!(!target.exists());
        only.set_mode(Mode::Normal);
        let outcome = download.await.expect("the engine task").expect("the download completes by itself");
        assert_same_file(&target, &data);
        assert_eq!(stat_of(&outcome.sources, &only).bytes, data.len() as u64);
        assert!(!progress.waiting.load(Ordering::Relaxed));
    })
    .await;
}

// 5b. ...but not forever: with no source for give_up_after, it stops and keeps nothing at the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_with_no_source_gives_up_after_give_up_after() {
    bounded(async {
        let data = random_bytes(2 * MIB, 55);
        let only = FaultServer::start(data.clone(), None).await;
        only.set_mode(Mode::Die);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let options = EngineOptions {
            give_up_after: Duration::from_secs(1),
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let (result, _) = run(&engine, job(&target, &data, vec![], vec![only.mirror()])).await;
        assert!(matches!(result, Err(EngineError::GaveUp { done: 0, .. })), "{result:?}");
        assert!(!target.exists());
    })
    .await;
}

// 6. An existing target is left alone without force and replaced with force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_target_needs_force() {
    bounded(async {
        let data = random_bytes(3 * MIB, 6);
        let peer = peer_with(&data, None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"precious").unwrap();
        let engine = engine_in(dir.path(), quick_options());
        let (result, _) = run(&engine, job(&target, &data, vec![peer.url.clone()], vec![])).await;
        match result {
            Err(EngineError::Exists(path)) => assert_eq!(path, target),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"precious", "the file is untouched");
        assert!(!part_path(&target).exists());
        let (result, _) = run(
            &engine,
            Job {
                force: true,
                ..job(&target, &data, vec![peer.url.clone()], vec![])
            },
        )
        .await;
        result.expect("with force the download succeeds");
        assert_same_file(&target, &data);
    })
    .await;
}

// 7. Mirrors only: the whole file is checked against the expected id at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_only_with_the_wrong_id_leave_no_file() {
    bounded(async {
        let data = random_bytes(5 * MIB, 7);
        let m1 = FaultServer::start(data.clone(), None).await;
        let m2 = FaultServer::start(data.clone(), None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let wrong = content_id(b"some other file");
        let (result, _) = run(
            &engine,
            Job {
                id: Some(wrong),
                ..job(&target, &data, vec![], vec![m1.mirror(), m2.mirror()])
            },
        )
        .await;
        match result {
            Err(EngineError::HashMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, content_id(&data));
            }
            other => panic!("expected HashMismatch, got {other:?}"),
        }
        assert!(!target.exists(), "no file at the target");
        assert!(!part_path(&target).exists(), "the partial file was discarded");
        assert!(engine.records().get(&target).unwrap().is_none(), "no resume record is left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_only_with_no_id_report_the_content_id() {
    bounded(async {
        let data = random_bytes(5 * MIB + 12345, 8);
        let m1 = FaultServer::start(data.clone(), None).await;
        let m2 = FaultServer::start(data.clone(), None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        // No id and no size: the size comes from a HEAD request.
        let (result, _) = run(
            &engine,
            Job {
                id: None,
                size: None,
                ..job(&target, &data, vec![], vec![m1.mirror(), m2.mirror()])
            },
        )
        .await;
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert_eq!(outcome.id, content_id(&data));
        assert_eq!(outcome.size, data.len() as u64);
        assert!(outcome.outboard.is_some(), "the verification data was computed for indexing");
    })
    .await;
}

// 8. Cancelled midway and run again over the same store: only missing pieces are fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_resumes_where_it_stopped() {
    bounded(async {
        let data = random_bytes(12 * MIB, 9);
        let outboard = shoal_index::hash_bytes(&data).outboard;
        // The server is a shoal peer here (it serves the verification data too), and slow.
        let server = FaultServer::start(data.clone(), Some(outboard)).await;
        server.set_chunk_delay(Duration::from_millis(8));
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let the_job = job(&target, &data, vec![server.url.clone()], vec![]);
        let engine = engine_in(dir.path(), quick_options());
        // Two pieces: the last one is kept from binding the size before any other is fetched.
        let (stopped, done_before) = run_then_cancel(&engine, the_job.clone(), 2 * PIECE_SIZE).await;
        assert!(matches!(stopped, Err(EngineError::Cancelled { .. })), "{stopped:?}");
        assert!(
            done_before > 0 && done_before < data.len() as u64,
            "stopped midway ({done_before} bytes done)"
        );
        assert!(!target.exists(), "nothing at the final name before completion");
        assert!(part_path(&target).exists(), "the partial file is kept");
        drop(engine);

        server.set_chunk_delay(Duration::ZERO);
        let sent_before = server.sent();
        let engine = engine_in(dir.path(), quick_options());
        let (result, progress) = run(&engine, the_job).await;
        result.expect("the resumed download succeeds");
        assert_same_file(&target, &data);
        let resumed = progress.resumed.load(Ordering::Relaxed);
        assert!(resumed > 0, "the second run resumed");
        assert!(
            resumed >= done_before,
            "every piece done before was kept ({resumed} < {done_before})"
        );
        let served = server.sent() - sent_before;
        let slack = 4 * MIB as u64;
        assert!(
            served <= data.len() as u64 - resumed + slack,
            "run 2 fetched {served} bytes with {resumed} of {} resumed",
            data.len()
        );
        assert!(engine.records().get(&target).unwrap().is_none(), "the resume record is removed");
    })
    .await;
}

// 8b. A resumed piece whose bytes on disk no longer match is fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_piece_that_was_lost_on_disk_is_fetched_again() {
    bounded(async {
        let data = random_bytes(8 * MIB, 10);
        let outboard = shoal_index::hash_bytes(&data).outboard;
        let server = FaultServer::start(data.clone(), Some(outboard)).await;
        server.set_chunk_delay(Duration::from_millis(8));
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let the_job = job(&target, &data, vec![server.url.clone()], vec![]);
        let engine = engine_in(dir.path(), quick_options());
        let (stopped, done_before) = run_then_cancel(&engine, the_job.clone(), 2 * PIECE_SIZE).await;
        assert!(matches!(stopped, Err(EngineError::Cancelled { .. })), "{stopped:?}");
        drop(engine);
        // Piece 0 is done by the record; its bytes are damaged as a power cut might.
        let record = engine_in(dir.path(), quick_options())
            .records()
            .get(&target)
            .unwrap()
            .expect("a resume record");
        assert!(
            shoal_node::engine::record::decode_done(&record.done, 8)[0],
            "piece 0 was recorded done"
        );
        {
            use std::os::unix::fs::FileExt;
            let part = std::fs::OpenOptions::new().write(true).open(part_path(&target)).unwrap();
            part.write_all_at(&[0u8; 4096], 1000).unwrap();
        }
        server.set_chunk_delay(Duration::ZERO);
        let engine = engine_in(dir.path(), quick_options());
        let (result, progress) = run(&engine, the_job).await;
        result.expect("the resumed download succeeds");
        assert_same_file(&target, &data);
        let resumed = progress.resumed.load(Ordering::Relaxed);
        assert!(
            resumed + PIECE_SIZE <= done_before,
            "the damaged piece was not trusted ({resumed} resumed of {done_before})"
        );
    })
    .await;
}

// 8c. A cancelled download says so, every time (not "every source failed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_reports_cancelled_every_time() {
    bounded(async {
        let data = random_bytes(6 * MIB, 12);
        let server = FaultServer::start(data.clone(), None).await;
        server.set_chunk_delay(Duration::from_millis(5));
        let dir = tempfile::tempdir().unwrap();
        // One connection, so that the download cannot finish before the cancel lands.
        let options = EngineOptions {
            max_connections_per_source: 1,
            ..quick_options()
        };
        let engine = engine_in(dir.path(), options);
        let mut outcomes = Vec::new();
        for round in 0..8 {
            let target = dir.path().join(format!("out-{round}.bin"));
            let (stopped, _) = run_then_cancel(&engine, job(&target, &data, vec![], vec![server.mirror()]), 1).await;
            outcomes.push(match stopped {
                Err(EngineError::Cancelled { .. }) => "Cancelled".to_string(),
                other => format!("{other:?}"),
            });
        }
        let wrong: Vec<&String> = outcomes.iter().filter(|o| *o != "Cancelled").collect();
        assert!(
            wrong.is_empty(),
            "{} of 8 cancelled runs reported another error: {wrong:#?}",
            wrong.len()
        );
    })
    .await;
}

// 9. A node's fetch of a file two shoal nodes hold uses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_uses_every_node_that_holds_the_file() {
    bounded(async {
        let data = random_bytes(8 * MIB, 11);
        let b = peer_with(&data, Some(8 << 20)).await;
        let c = peer_with(&data, Some(8 << 20)).await;
        let a = TestNode::start().await;
        a.knows(&[&b, &c]).await;
        assert_eq!(
            a.call("fetch", vec![s("file.bin"), s(SECRET)]).await,
            Ok(shoal_xmlrpc::Value::Integer(0))
        );
        assert_same_file(&a.path("file.bin"), &data);
        let rows = a.node.api().downloads();
        let row = rows
            .iter()
            .find(|r| r.target.ends_with("file.bin"))
            .expect("the download is listed");
        let used: Vec<&SourceStat> = row.sources.iter().filter(|s| s.bytes > 0).collect();
        assert_eq!(used.len(), 2, "both nodes contributed: {:#?}", row.sources);
        let from = |node: &TestNode| {
            used.iter()
                .any(|s| s.url.starts_with(&format!("{}/", node.url.trim_end_matches('/'))))
        };
        assert!(from(&b) && from(&c), "{:#?}", row.sources);
    })
    .await;
}

// 10. A source found while the download runs joins it: a slow peer alone, then a fast mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_added_while_running_takes_part() {
    bounded(async {
        let data = random_bytes(8 * MIB, 10);
        let slow = peer_with(&data, Some(1 << 20)).await;
        let fast = FaultServer::start(data.clone(), None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let progress = Arc::new(Progress::default());
        let (more, more_rx) = mpsc::channel::<NewSource>(1);
        let download = engine.run(
            job(&target, &data, vec![slow.url.clone()], vec![]),
            progress.clone(),
            CancellationToken::new(),
            more_rx,
        );
        let add = async {
            wait_until("the slow peer delivered a piece", Duration::from_secs(30), || {
                progress.done.load(std::sync::atomic::Ordering::Relaxed) > 0
            })
            .await;
            more.send(NewSource::Mirror(fast.mirror()))
                .await
                .expect("the download takes new sources");
        };
        let (result, ()) = tokio::join!(download, add);
        let outcome = result.expect("the download succeeds");
        assert_same_file(&target, &data);
        assert!(
            stat_of(&outcome.sources, &fast).bytes > 0,
            "the added mirror contributed: {:#?}",
            outcome.sources
        );
    })
    .await;
}

// 11. Holders that appear while a download runs are found and join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_found_while_running_join_the_download() {
    bounded(async {
        let data = random_bytes(8 * MIB, 11);
        let slow = peer_with(&data, Some(1 << 20)).await;
        let fast = peer_with(&data, None).await;
        slow.knows(&[&fast]).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let engine = engine_in(dir.path(), quick_options());
        let progress = Arc::new(Progress::default());
        let (more, more_rx) = mpsc::channel::<NewSource>(4);
        let client = shoal_node::net::Client::new(Duration::from_secs(3));
        let finder = tokio::spawn(shoal_node::discovery::find_more(
            shoal_node::discovery::FixedPeers {
                client,
                peers: vec![slow.url.clone()],
                deadline: Duration::from_millis(100),
            },
            content_id(&data),
            vec![slow.url.clone()],
            Duration::from_millis(100),
            more,
        ));
        let job = job(&target, &data, vec![slow.url.clone()], vec![]);
        let outcome = engine
            .run(job, progress, CancellationToken::new(), more_rx)
            .await
            .expect("the download succeeds");
        assert_same_file(&target, &data);
        let from_fast = outcome
            .sources
            .iter()
            .find(|s| s.url.starts_with(&fast.url))
            .expect("the second holder joined");
        assert!(from_fast.bytes > 0, "it contributed: {:#?}", outcome.sources);
        tokio::time::timeout(Duration::from_secs(5), finder)
            .await
            .expect("the finder ends with the download")
            .unwrap();
    })
    .await;
}

// 12. A queue of files (a folder, a glob, a list) looks for more holders while it runs, as a
// single download does: a holder that appears mid-run joins the file in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_picks_up_a_holder_that_appears_while_it_runs() {
    use shoal_node::service::fetch::{Event, Events, Item, QueueOptions};

    /// Keeps the sources of each finished file, and each failure.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<(Vec<Vec<SourceStat>>, Vec<String>)>);
    impl Events for Seen {
        fn event(&self, event: Event<'_>) {
            let mut seen = self.0.lock().unwrap();
            match event {
                Event::Done { outcome, .. } => seen.0.push(outcome.sources.clone()),
                Event::Failed { name, error, .. } => seen.1.push(format!("{name}: {error}")),
                _ => {}
            }
        }
    }

    bounded(async {
        let data = random_bytes(8 * MIB, 12);
        let slow = peer_with(&data, Some(1 << 20)).await;
        let fast = peer_with(&data, None).await;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let stop = CancellationToken::new();
        let fetcher = fetcher_in(dir.path(), &stop, vec![slow.url.clone()], Duration::from_millis(100));
        let seen = Seen::default();
        let options = QueueOptions {
            concurrency: 2,
            force: false,
            rule: None,
            sync: Some(dir.path().to_path_buf()),
        };
        let items = vec![Item::Ready(job(&target, &data, vec![slow.url.clone()], vec![]))];
        let peers = [slow.url.clone()];
        let queue = fetcher.queue(items, &peers, &options, &seen, &stop);
        let appear = async {
            // The second holder appears once the queue's file is under way.
            let downloads = fetcher.downloads();
            wait_until("the file is under way", Duration::from_secs(30), || {
                downloads.list().iter().any(|d| d.done > 0)
            })
            .await;
            slow.knows(&[&fast]).await;
        };
        let (tally, ()) = tokio::join!(queue, appear);
        let (done, failures) = std::mem::take(&mut *seen.0.lock().unwrap());
        assert_eq!((tally.done, failures.len()), (1, 0), "{failures:?}");
        assert_same_file(&target, &data);
        let from_fast = done[0]
            .iter()
            .find(|s| s.url.starts_with(&fast.url))
            .expect("the holder that appeared joined");
        assert!(from_fast.bytes > 0, "it contributed: {:#?}", done[0]);
    })
    .await;
}

// 13. The table of downloads stays bounded: a queue of more files than it keeps listed leaves
// at most `MAX_ENDED` ended downloads in it (a node or a queue may run for days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_forgets_the_oldest_ended_downloads() {
    use shoal_node::service::downloads::MAX_ENDED;
    use shoal_node::service::fetch::{Item, LogFailures, QueueOptions};

    bounded(async {
        let data = random_bytes(1000, 13);
        let holder = peer_with(&data, None).await;
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let fetcher = fetcher_in(dir.path(), &stop, Vec::new(), Duration::from_secs(60));
        let files = MAX_ENDED + 40;
        let items = (0..files)
            .map(|i| Item::Ready(job(&dir.path().join(format!("f{i}.bin")), &data, vec![holder.url.clone()], vec![])))
            .collect();
        let options = QueueOptions {
            concurrency: 16,
            force: false,
            rule: None,
            sync: Some(dir.path().to_path_buf()),
        };
        let tally = fetcher.queue(items, &[], &options, &LogFailures, &stop).await;
        assert_eq!((tally.done, tally.failures.len()), (files, 0), "{:?}", tally.failures.first());
        let listed = fetcher.downloads().list().len();
        assert_eq!(listed, MAX_ENDED, "the table keeps the newest ended downloads only");
        assert_same_file(&dir.path().join(format!("f{}.bin", files - 1)), &data);
    })
    .await;
}
