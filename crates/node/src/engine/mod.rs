//! The multi-source download engine: one file from shoal peers and plain HTTP mirrors at once,
//! every piece verified, resumable after any crash, patient through outages.
//!
//! The engine does not know where sources come from: it takes a [`Job`] with peer and mirror URLs
//! (search, the CLI and the node fill it in) and a channel on which more sources may arrive while
//! it runs. Invariants:
//! - no piece is written or counted before it passes its check against the content id (when any
//!   shoal node can give the file's verification data; otherwise the whole file is checked at the
//!   end against `--hash`, or its content id is reported);
//! - the partial file is hidden beside the target and the final name appears only by an atomic
//!   rename (or a no-clobber link) once the file is complete and checked; with
//!   [`EngineOptions::beneath`] both are made relative to the target's directory, opened beneath
//!   a root with no symlink on the way ([`Beneath`]);
//! - memory is bounded: each connection holds at most one piece in memory, and a source opens
//!   extra connections only while the download holds fewer than [`MAX_CONNECTIONS`];
//! - progress (which pieces are written) is in the state store, so only pieces in flight are
//!   fetched again after SIGKILL;
//! - a mirror's first answer fixes its `ETag`, `Last-Modified` and size; an answer that differs
//!   later means its file changed, and the mirror is dropped with all its connections before
//!   anything from that answer is read (with a strong ETag, `If-Range` makes such a server answer
//!   200, which is refused too).
//!
//! **Connections.** Each source has a task that holds one or more connections to it (at most
//! `EngineOptions::max_connections_per_source`, default 8); each connection is a worker of its
//! own in [`pieces`] (claims, stealing and endgame are per connection), while the figures users
//! see ([`SourceStat`]: bytes, state, failures, bad pieces) and bans are per source: a source
//! banned for bad pieces, or unusable, is dropped with every connection. How many connections a
//! source gets is decided by [`conns`]: mirrors ramp by acceptance (each answered request lets
//! one more open), peers grow only when a probe shows more speed, and a refusal, connection
//! error, 429 or 503 with more than one open ends that connection and lowers the ceiling for a
//! while. A 429 or 503 with `Retry-After` (seconds or an HTTP date) holds every connection of
//! that source at least that long (at most [`MAX_RETRY_AFTER`] and never past the download's
//! give-up time); without it the ordinary backoff applies.
//!
//! See [`pieces`] for the scheduling (speed-sized claims, stealing, endgame duplicates).

pub mod conns;
pub mod pieces;
pub mod place;
pub mod record;
pub mod small;
mod source;

pub use source::SourceKind;

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shoal_index::{ContentId, OutboardVerifier, PieceHashes};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::net::rate::{RateLimiter, rate_limiter, throttle};
use crate::net::{Client, Trust};
use crate::proto::limits::MAX_SIZE;
use pieces::{Next, Pieces, WorkerId};
use record::{Record, Records};

/// The piece size: 1 MiB, a whole number of bao chunk groups.
pub const PIECE_SIZE: u64 = 1 << 20;

/// What to download.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// A name for display and for the summary.
    pub name: String,
    /// The final path.
    pub target: PathBuf,
    /// The content id, when known (from a peer or `--hash`).
    pub id: Option<ContentId>,
    /// The size, when known.
    pub size: Option<u64>,
    /// Base URLs of shoal nodes that hold the content.
    pub peers: Vec<String>,
    /// Plain HTTP URLs that serve the same bytes.
    pub mirrors: Vec<String>,
    /// Replace an existing file at the target.
    pub force: bool,
    /// Run by a node, which resumes it when it starts again.
    pub by_node: bool,
}

impl From<Record> for Job {
    /// The job a resume record describes (always a node's: only nodes resume by themselves).
    fn from(record: Record) -> Job {
        Job {
            name: record.name,
            target: PathBuf::from(record.target),
            id: record.id.and_then(|id| id.parse().ok()),
            size: Some(record.size),
            peers: record.peers,
            mirrors: record.mirrors,
            force: record.force,
            by_node: true,
        }
    }
}

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Cap on the download rate in bytes per second.
    pub max_rate: Option<u64>,
    /// A source that sends nothing for this long is dropped for now and retried later.
    pub stall_timeout: Duration,
    /// With no progress from any source for this long, the download stops (its progress kept).
    pub give_up_after: Duration,
    /// Bad pieces from one source before it is banned.
    pub max_bad_pieces: u32,
    /// How often progress is committed to the state store.
    pub commit_interval: Duration,
    /// First retry delay of a failing source; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Most connections to one source at once (1 to 16); the engine adapts the number below it
    /// (see [`conns`]).
    pub max_connections_per_source: usize,
    /// Make every file beneath this directory, never through a symlink (see [`Beneath`]).
    pub beneath: Option<Beneath>,
}

/// A directory, held open, that every target of an engine lies below (`shoal get` of folders
/// and lists: `-o`). Each file's directories are opened and made beneath it with no symlink on
/// the way, and its partial file is made and linked relative to its directory's descriptor, so
/// a symlink planted in the output directory (by another user who may write there) is refused
/// instead of followed.
#[derive(Debug, Clone)]
pub struct Beneath {
    /// The directory, held open.
    pub root: Arc<shoal_index::Root>,
    /// Its path as the targets spell it: each target is `base` joined with a checked name.
    pub base: PathBuf,
}

impl Beneath {
    /// Opens (making where missing) the directories above `target` beneath the root, as a
    /// download does first: an error when the target is not below the base or a symlink is on
    /// the way (blocking).
    pub fn check(&self, target: &Path) -> Result<(), EngineError> {
        place::Spot::open(target, Some(self)).map(drop)
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_rate: None,
            stall_timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(300),
            max_bad_pieces: 3,
            commit_interval: Duration::from_millis(100),
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_connections_per_source: 8,
            beneath: None,
        }
    }
}

/// The state of one source, as shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Connecting,
    Live,
    Retrying,
    Banned,
    Idle,
}

impl SourceState {
    pub fn name(&self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Live => "live",
            SourceState::Retrying => "retrying",
            SourceState::Banned => "banned",
            SourceState::Idle => "idle",
        }
    }
}

/// Per-source figures.
#[derive(Debug, Clone)]
pub struct SourceStat {
    pub url: String,
    pub kind: SourceKind,
    pub state: SourceState,
    /// Verified bytes this source contributed.
    pub bytes: u64,
    pub bad_pieces: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Connections open to this source now.
    pub connections: usize,
}

/// Live progress of a download, shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: AtomicU64,
    /// Bytes received that were not used (lost races, stolen tails, bad pieces).
    pub wasted: AtomicU64,
    /// Bytes found already done on disk when the download (re)started.
    pub resumed: AtomicU64,
    pub sources: Mutex<Vec<SourceStat>>,
    pub waiting: AtomicBool,
}

impl Progress {
    pub fn sources(&self) -> Vec<SourceStat> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn live_sources(&self) -> usize {
        self.sources().iter().filter(|s| s.state == SourceState::Live).count()
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut SourceStat)) {
        if let Some(stat) = self.sources.lock().unwrap_or_else(|p| p.into_inner()).get_mut(index) {
            change(stat);
        }
    }
}

/// What a finished download produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub path: PathBuf,
    pub id: ContentId,
    pub size: u64,
    /// The verification data, when it was fetched or computed (for indexing).
    pub outboard: Option<Vec<u8>>,
    pub sources: Vec<SourceStat>,
}

/// Why a download stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0} already exists; use --force to replace it")]
    Exists(PathBuf),
    #[error("no source for {0}: give peers, mirrors or a name the network has")]
    NoSources(String),
    #[error("could not learn the size of {name}: {reason}")]
    Size { name: String, reason: String },
    #[error("not enough space in {dir}: {needed} bytes needed, {free} free")]
    NoSpace { dir: PathBuf, needed: u64, free: u64 },
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("every source failed or was banned ({done} of {total} bytes kept; run again to resume): {last}")]
    SourcesExhausted { done: u64, total: u64, last: String },
    #[error("no source answered for {after:?} ({done} of {total} bytes kept; run again to resume)")]
    GaveUp { after: Duration, done: u64, total: u64 },
    #[error("the downloaded file's content id is {actual}, not the expected {expected}; the data was discarded")]
    HashMismatch { expected: ContentId, actual: ContentId },
    #[error("the download was cancelled ({done} of {total} bytes kept; run again to resume)")]
    Cancelled { done: u64, total: u64 },
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error("a background task failed: {0}")]
    Task(String),
}

/// A source to add to a running download.
#[derive(Debug, Clone)]
pub enum NewSource {
    Peer(String),
    Mirror(String),
}

#[derive(Debug, Clone)]
struct Source {
    url: reqwest::Url,
    kind: SourceKind,
    trust: Trust,
    index: usize,
}

/// Most peers one download takes as sources, however many holders answers name.
pub const MAX_PEER_SOURCES: usize = 32;
/// Extra connections open only while a download holds fewer than this, over all its sources
/// (each holds at most one piece in memory); a source's first connection is always allowed.
pub const MAX_CONNECTIONS: usize = 64;
/// The most connections to one source `max_connections_per_source` may allow.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 16;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Validator headers longer than this are ignored (a server's words are bounded where they enter).
const MAX_VALIDATOR_LEN: usize = 256;

/// What fixes a mirror's file: its first answer's `ETag` and `Last-Modified` (the size is the
/// download's and is checked on every answer). A later answer that differs means the file
/// changed there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    /// The validators of an answer; a header that is not short printable ASCII is ignored.
    fn of(headers: &reqwest::header::HeaderMap) -> Validators {
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
    fn strong_etag(&self) -> Option<&str> {
        self.etag.as_deref().filter(|e| e.starts_with('"'))
    }

    /// What differs from `fixed` (a header missing on either side is not a difference: some
    /// servers send it only sometimes).
    fn differs_from(&self, fixed: &Validators) -> Option<String> {
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
fn retry_after(headers: &reqwest::header::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
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

/// One source of a running download, shared by its connections.
struct SourceRun {
    source: Source,
    /// Cancelled when the source is dropped (banned, unusable, changed): ends every connection.
    dropped: CancellationToken,
    /// Set when a connection ended for good (the download finished or stopped, or the source
    /// gave up): no connection opens after that.
    closing: AtomicBool,
    conns: Mutex<conns::Conns>,
    /// Woken when the source should open connections or stop.
    wake: Notify,
    /// Bytes received from this source over all its connections (for the adaptation).
    received: AtomicU64,
    bad: AtomicU32,
    failures: AtomicU32,
    /// Fixed by the first answer with data.
    validators: Mutex<Option<Validators>>,
    /// No request before this (a `Retry-After`).
    not_before: Mutex<Option<Instant>>,
}

impl SourceRun {
    fn new(source: Source, cap: usize) -> SourceRun {
        let ramp = source.kind == SourceKind::Mirror;
        SourceRun {
            source,
            dropped: CancellationToken::new(),
            closing: AtomicBool::new(false),
            conns: Mutex::new(conns::Conns::new(cap, ramp)),
            wake: Notify::new(),
            received: AtomicU64::new(0),
            bad: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            validators: Mutex::new(None),
            not_before: Mutex::new(None),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, conns::Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the source with all its connections.
    fn drop_source(&self, ctx: &Ctx, reason: String) {
        if !self.dropped.is_cancelled() {
            ctx.net.metrics().sources_banned.inc();
        }
        ctx.progress.update(self.source.index, |s| {
            s.state = SourceState::Banned;
            s.last_error = Some(reason);
        });
        self.dropped.cancel();
    }

    /// Checks an answer's validators against the first answer's (fixing them on the first).
    fn check_validators(&self, headers: &reqwest::header::HeaderMap) -> Result<(), String> {
        let seen = Validators::of(headers);
        let mut fixed = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        match &*fixed {
            None => {
                *fixed = Some(seen);
                Ok(())
            }
            Some(first) => match seen.differs_from(first) {
                Some(what) => Err(format!("the file changed while downloading ({what})")),
                None => Ok(()),
            },
        }
    }

    fn if_range(&self) -> Option<String> {
        let fixed = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        fixed.as_ref()?.strong_etag().map(str::to_string)
    }

    /// Defers every request to this source by `wait`, bounded by the time left before the
    /// download gives up.
    fn defer(&self, ctx: &Ctx, wait: Duration) {
        let since_progress = ctx.last_progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        let left = ctx.options.give_up_after.saturating_sub(since_progress);
        let until = Instant::now() + wait.min(MAX_RETRY_AFTER).min(left);
        let mut not_before = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        *not_before = Some(not_before.map_or(until, |t| t.max(until)));
    }

    fn not_before(&self) -> Option<Instant> {
        *self.not_before.lock().unwrap_or_else(|p| p.into_inner())
    }
}
/// Most sizes tried and most sources asked for a last piece before a download gives up
/// (verification data is asked of every peer source).
const MAX_LAYOUT_TRIES: usize = 4;
/// Most holders asked for their size (`HEAD`) at the start of a download; the sizes they claim
/// are tried most claimed first.
const MAX_SIZE_PROBES: usize = 8;

/// The engine: a state store for resume records and an HTTP client.
#[derive(Clone)]
pub struct Engine {
    records: Records,
    net: Client,
    options: EngineOptions,
}

/// Shared by the workers of one download.
struct Ctx {
    net: Client,
    options: EngineOptions,
    pieces: Mutex<Pieces>,
    hashes: Option<PieceHashes>,
    size: u64,
    piece_size: u64,
    file: Arc<std::fs::File>,
    part: PathBuf,
    spot: Arc<place::Spot>,
    progress: Arc<Progress>,
    changed: Notify,
    dirty: AtomicBool,
    last_progress: Mutex<Instant>,
    limiter: Option<Arc<RateLimiter>>,
    cancel: CancellationToken,
    fatal: Mutex<Option<EngineError>>,
    /// The next connection's scheduler id.
    next_worker: AtomicUsize,
    /// Connections open, over all sources.
    open_total: AtomicUsize,
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pieces> {
        self.pieces.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn piece_range(&self, index: u64) -> Range<u64> {
        let start = index * self.piece_size;
        start..(start + self.piece_size).min(self.size)
    }
}

/// Why one range request ended early.
enum RunError {
    /// The source failed (connection, status, stall): retry later.
    Source(String),
    /// The source refused for now (429, 503), perhaps saying for how long.
    Busy(String, Option<Duration>),
    /// The file changed on the source since its first answer.
    Changed(String),
    /// The source sent a piece that failed its check.
    Bad(u64),
    /// The source can never serve this file (wrong size, no ranges).
    Unusable(String),
    /// Writing failed: the whole download stops.
    Fatal(EngineError),
}

/// The partial file beside a target: hidden, so the index never shows it.
pub fn part_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.shoal-part"))
}

/// Opens the partial file: a fresh download removes any old one and creates it anew, never
/// through a symlink (`O_EXCL` with `O_NOFOLLOW`); a resumed one reopens it, refusing a
/// symlink or anything but a regular file.
fn open_part(part: &Path, fresh: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
    if !fresh {
        match options.open(part) {
            Ok(file) if file.metadata()?.is_file() => return Ok(file),
            Ok(_) => return Err(std::io::Error::other("the partial file is not a regular file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(part) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    options.create_new(true).mode(0o644).open(part)
}

fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer for the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Asks the kernel to start writing a piece to disk now, without waiting for it, so that the
/// final fsync before the rename has little left to do (writeback overlaps the download
/// instead of following it). A failure here only loses that head start.
fn start_writeback(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the range is plain numbers.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

fn allocate(file: &std::fs::File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if size == 0 {
        return Ok(());
    }
    // SAFETY: the descriptor is open for writing for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

impl Engine {
    pub fn new(db: Arc<redb::Database>, net: Client, options: EngineOptions) -> Result<Self, EngineError> {
        Ok(Engine {
            records: Records::new(db)?,
            net,
            options,
        })
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The size the first of `sources` to answer claims: from `HEAD`, or, for a server that
    /// refuses `HEAD` or leaves out the length (presigned URLs, dynamic pages), from the total
    /// in the `Content-Range` of a one-byte `GET`.
    async fn probe_size(&self, sources: &[&Source]) -> Result<u64, String> {
        let mut last = String::from("no source answered");
        for source in sources {
            let shown = crate::proto::url::without_credentials(source.url.as_str());
            match self.head_size(source).await {
                Ok(size) => return Ok(size),
                Err(reason) => last = format!("{shown}: {reason}"),
            }
            match self.range_size(source).await {
                Ok(size) => return Ok(size),
                Err(reason) => tracing::debug!(source = %shown, %reason, "no size from a one-byte range either"),
            }
        }
        Err(last)
    }

    async fn head_size(&self, source: &Source) -> Result<u64, String> {
        let request = self
            .net
            .request(reqwest::Method::HEAD, &source.url, source.trust)
            .map_err(|e| e.to_string())?
            .timeout(self.options.stall_timeout);
        let response = request.send().await.map_err(|e| crate::net::describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("answered HTTP {}", response.status()));
        }
        match response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            Some(len) if len <= MAX_SIZE => Ok(len),
            Some(_) => Err(format!("claims a size over {MAX_SIZE} bytes")),
            None => Err("sent no Content-Length".into()),
        }
    }

    async fn range_size(&self, source: &Source) -> Result<u64, String> {
        let request = self
            .net
            .request(reqwest::Method::GET, &source.url, source.trust)
            .map_err(|e| e.to_string())?
            .header(reqwest::header::RANGE, "bytes=0-0")
            .timeout(self.options.stall_timeout);
        let response = request.send().await.map_err(|e| crate::net::describe(&e))?;
        if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(format!("answered HTTP {} to a range request", response.status()));
        }
        // `bytes 0-0/TOTAL`; the body (one byte) is dropped with the response.
        let total = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes 0-0/"))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or("sent no usable Content-Range")?;
        if total > MAX_SIZE {
            return Err(format!("claims a size over {MAX_SIZE} bytes"));
        }
        Ok(total)
    }

    /// Fetches the verification data for a claimed `size` from the first peer that has it,
    /// checking it against the content id as it streams in: a claimed size larger than the file
    /// fails within a few KiB, whatever the claim, and nothing is allocated from the claim.
    /// Returns the index of the source that gave it, too.
    ///
    /// Every peer source is asked in turn (at most [`MAX_PEER_SOURCES`], one per host:port), not
    /// only the first few: a single answer may name a dozen holders that are not nodes ahead of
    /// the honest one, which would otherwise fail the download (hostile.rs, the URL flood).
    async fn piece_hashes(&self, id: ContentId, size: u64, peers: &[&Source]) -> Option<(PieceHashes, Vec<u8>, usize)> {
        for source in peers {
            let Ok(url) = source.url.join(&format!("/outboard/{id}")) else {
                continue;
            };
            let peer = &source.url;
            let Ok(request) = self.net.request(reqwest::Method::GET, &url, Trust::Peer) else {
                continue;
            };
            let Ok(Ok(response)) = tokio::time::timeout(self.options.stall_timeout, request.send()).await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            match self.read_outboard(id, size, response).await {
                Ok((hashes, outboard)) => return Some((hashes, outboard, source.index)),
                Err(error) => tracing::warn!(%peer, %error, "a peer sent bad verification data"),
            }
        }
        None
    }

    async fn read_outboard(&self, id: ContentId, size: u64, response: reqwest::Response) -> Result<(PieceHashes, Vec<u8>), String> {
        let mut verifier = OutboardVerifier::new(id, size, PIECE_SIZE).map_err(|e| e.to_string())?;
        let mut outboard = Vec::new();
        let mut stream = response.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.options.stall_timeout, stream.next())
                .await
                .map_err(|_| "stalled".to_string())?;
            match next {
                None => break,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(chunk)) => {
                    verifier.feed(&chunk).map_err(|e| e.to_string())?;
                    outboard.extend_from_slice(&chunk);
                }
            }
        }
        Ok((verifier.finish().map_err(|e| e.to_string())?, outboard))
    }

    /// Checks a claimed size: the last piece, from any source, must pass its check against
    /// `hashes` (which were proven for that size). The tree's shape depends on the size, so a
    /// last piece that verifies binds the size exactly.
    ///
    /// The source that gave the verification data (`first`) is asked first, so that holders
    /// ahead of it in the list cannot crowd it out.
    async fn size_holds(&self, hashes: &PieceHashes, sources: &[Source], first: usize) -> bool {
        let last = hashes.count() - 1;
        let range = hashes.range(last);
        let order = sources
            .iter()
            .filter(|s| s.index == first)
            .chain(sources.iter().filter(|s| s.index != first).take(MAX_LAYOUT_TRIES - 1));
        for source in order {
            let Ok(request) = self.net.request(reqwest::Method::GET, &source.url, source.trust) else {
                continue;
            };
            let request = if range.is_empty() {
                request
            } else {
                request.header(reqwest::header::RANGE, format!("bytes={}-{}", range.start, range.end - 1))
            };
            let Ok(Ok(response)) = tokio::time::timeout(self.options.stall_timeout, request.send()).await else {
                continue;
            };
            let ok_status = if range.start == 0 {
                response.status().is_success()
            } else {
                response.status() == reqwest::StatusCode::PARTIAL_CONTENT
            };
            if !ok_status {
                continue;
            }
            let want = (range.end - range.start) as usize;
            // A download's own reads do not draw on the budget of peers' answers (searches).
            let Ok(body) = crate::net::client::read_body(response, source.url.as_str(), want).await else {
                continue;
            };
            if hashes.verify(last, &body) {
                return true;
            }
        }
        false
    }

    /// The size and verification data of content `id`, bound to the id: each claimed size is
    /// tried until its verification data proves out and its last piece checks.
    async fn verified_layout(&self, id: ContentId, claims: Vec<u64>, sources: &[Source]) -> Option<(u64, PieceHashes, Vec<u8>)> {
        let peers: Vec<&Source> = sources.iter().filter(|s| s.kind == SourceKind::Peer).collect();
        // Every holder is asked for its size at once; the sizes are tried most claimed first
        // (after the job's own claims), so a few liars cannot crowd the true size out.
        let heads = peers
            .iter()
            .take(MAX_SIZE_PROBES)
            .map(|peer| self.probe_size(std::slice::from_ref(peer)));
        let mut counts: Vec<(u64, usize)> = Vec::new();
        for size in futures_util::future::join_all(heads).await.into_iter().flatten() {
            match counts.iter_mut().find(|(s, _)| *s == size) {
                Some((_, n)) => *n += 1,
                None => counts.push((size, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let mut candidates = claims;
        candidates.extend(counts.into_iter().map(|(size, _)| size));
        let mut tried = Vec::new();
        for size in candidates.into_iter().filter(|s| *s <= MAX_SIZE) {
            if tried.contains(&size) || tried.len() >= MAX_LAYOUT_TRIES {
                continue;
            }
            tried.push(size);
            let Some((hashes, outboard, from)) = self.piece_hashes(id, size, &peers).await else {
                continue;
            };
            if self.size_holds(&hashes, sources, from).await {
                return Some((size, hashes, outboard));
            }
            tracing::warn!(size, "a claimed size did not hold against the content id");
        }
        None
    }

    /// Runs a download to the end. `more` brings sources found while it runs.
    pub async fn run(
        &self,
        job: Job,
        progress: Arc<Progress>,
        cancel: CancellationToken,
        mut more: mpsc::Receiver<NewSource>,
    ) -> Result<Outcome, EngineError> {
        let target = job.target.clone();
        let spot = {
            let (target, beneath) = (target.clone(), self.options.beneath.clone());
            tokio::task::spawn_blocking(move || place::Spot::open(&target, beneath.as_ref()).map(|spot| (spot.target_exists(), spot)))
                .await
                .map_err(|e| EngineError::Task(e.to_string()))?
        };
        let (exists, spot) = spot?;
        if !job.force && exists {
            return Err(EngineError::Exists(target));
        }
        let spot = Arc::new(spot);
        // A small file with a known id and size: one request, no records (see `small`).
        if let Some(outcome) = small::run(self, &job, &spot, &progress, &cancel).await {
            return outcome;
        }
        let mut sources: Vec<Source> = Vec::new();
        let add_source = |sources: &mut Vec<Source>, new: NewSource, id: Option<ContentId>| {
            let (url, kind, trust) = match &new {
                NewSource::Peer(base) => match id.map(|id| crate::net::node_url(base, &format!("/content/{id}"))) {
                    Some(Ok(url)) => (url, SourceKind::Peer, Trust::Peer),
                    _ => return,
                },
                NewSource::Mirror(url) => match reqwest::Url::parse(url) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => (url, SourceKind::Mirror, Trust::Owner),
                    _ => return,
                },
            };
            // One source per host:port, and a bounded number of peers per download, however
            // many holders an answer names.
            let key = (url.host_str().map(str::to_string), url.port_or_known_default());
            let peers = sources.iter().filter(|s| s.kind == SourceKind::Peer).count();
            let duplicate = sources.iter().any(|s| {
                s.url == url
                    || (kind == SourceKind::Peer
                        && s.kind == SourceKind::Peer
                        && (s.url.host_str().map(str::to_string), s.url.port_or_known_default()) == key)
            });
            if !duplicate && (kind != SourceKind::Peer || peers < MAX_PEER_SOURCES) {
                let index = sources.len();
                sources.push(Source { url, kind, trust, index });
            }
        };
        for peer in &job.peers {
            add_source(&mut sources, NewSource::Peer(peer.clone()), job.id);
        }
        for mirror in &job.mirrors {
            add_source(&mut sources, NewSource::Mirror(mirror.clone()), job.id);
        }
        let previous = self
            .store({
                let target = target.clone();
                move |records| records.get(&target)
            })
            .await?;
        if sources.is_empty() {
            return Err(EngineError::NoSources(job.name.clone()));
        }
        // The size is never taken from a peer's word: with a content id and holders, it is the
        // one whose verification data and last piece check against the id; from mirrors alone
        // (the owner's choice) it is what they say, and the whole file is checked at the end.
        let has_peers = sources.iter().any(|s| s.kind == SourceKind::Peer);
        // The verification data itself is not kept (`finish` computes it from the file).
        let (size, hashes, _outboard) = match job.id {
            Some(id) if has_peers => {
                let mut claims: Vec<u64> = previous.iter().map(|r| r.size).collect();
                claims.extend(job.size);
                match self.verified_layout(id, claims, &sources).await {
                    Some((size, hashes, outboard)) => (size, Some(hashes), Some(outboard)),
                    None if sources.iter().any(|s| s.kind == SourceKind::Mirror) => {
                        let mirrors: Vec<&Source> = sources.iter().filter(|s| s.kind == SourceKind::Mirror).collect();
                        let size = self.probe_size(&mirrors).await.map_err(|reason| EngineError::Size {
                            name: job.name.clone(),
                            reason,
                        })?;
                        (size, None, None)
                    }
                    None => {
                        return Err(EngineError::Size {
                            name: job.name.clone(),
                            reason: "no holder gave verification data that checks against the content id".into(),
                        });
                    }
                }
            }
            _ => {
                let all: Vec<&Source> = sources.iter().collect();
                let size = match job.size {
                    Some(size) if size <= MAX_SIZE => size,
                    _ => self.probe_size(&all).await.map_err(|reason| EngineError::Size {
                        name: job.name.clone(),
                        reason,
                    })?,
                };
                (size, None, None)
            }
        };
        let count = size.div_ceil(PIECE_SIZE).max(1);
        let part = spot.part().to_path_buf();
        let id_text = job.id.map(|id| id.to_string());
        let resumable = previous
            .as_ref()
            .filter(|r| r.size == size && r.piece_size == PIECE_SIZE && r.id == id_text);
        let mut done = match resumable {
            Some(record) if spot.part_exists() => record::decode_done(&record.done, count),
            _ => vec![false; count as usize],
        };
        let file = {
            let (part, spot) = (part.clone(), spot.clone());
            let fresh = !done.iter().any(|d| *d);
            tokio::task::spawn_blocking(move || -> Result<std::fs::File, EngineError> {
                let io = |step: &'static str| {
                    let path = part.clone();
                    move |source| EngineError::Io { step, path, source }
                };
                spot.make_dirs()?;
                let file = spot.open_part(fresh).map_err(io("open"))?;
                let have = file.metadata().map_err(io("stat"))?.len();
                if have < size {
                    let dir = part.parent().unwrap_or(Path::new("."));
                    if let Some(free) = free_space(dir)
                        && free < size - have
                    {
                        return Err(EngineError::NoSpace {
                            dir: dir.to_path_buf(),
                            needed: size - have,
                            free,
                        });
                    }
                    allocate(&file, size).map_err(|source| {
                        if source.raw_os_error() == Some(libc::ENOSPC) {
                            EngineError::NoSpace {
                                dir: dir.to_path_buf(),
                                needed: size - have,
                                free: free_space(dir).unwrap_or(0),
                            }
                        } else {
                            io("allocate")(source)
                        }
                    })?;
                }
                Ok(file)
            })
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??
        };
        let file = Arc::new(file);
        // Pieces the record calls done are checked again when hashes allow (a power cut may
        // have lost writes the record had seen).
        if let Some(hashes) = &hashes {
            let (file, hashes_copy, flags) = (file.clone(), hashes.clone(), done.clone());
            done = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                flags
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        *d && {
                            let range = hashes_copy.range(i as u64);
                            buf.resize((range.end - range.start) as usize, 0);
                            file.read_exact_at(&mut buf, range.start).is_ok() && hashes_copy.verify(i as u64, &buf)
                        }
                    })
                    .collect()
            })
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?;
        }
        let pieces = Pieces::new(count, &done);
        let resumed: u64 = (0..count).filter(|i| done[*i as usize]).map(|i| piece_len(i, size)).sum();
        progress.total.store(size, Ordering::Relaxed);
        progress.done.store(resumed, Ordering::Relaxed);
        progress.resumed.store(resumed, Ordering::Relaxed);
        let mut record = Record {
            target: target.to_string_lossy().into_owned(),
            name: job.name.clone(),
            id: id_text,
            size,
            piece_size: PIECE_SIZE,
            peers: job.peers.clone(),
            mirrors: job.mirrors.clone(),
            expect: None,
            force: job.force,
            by_node: job.by_node,
            done: record::encode_done(&done),
        };
        self.store({
            let record = record.clone();
            move |records| records.put(&record)
        })
        .await?;

        let ctx = Arc::new(Ctx {
            net: self.net.clone(),
            options: self.options.clone(),
            pieces: Mutex::new(pieces),
            hashes,
            size,
            piece_size: PIECE_SIZE,
            file,
            part: part.clone(),
            spot: spot.clone(),
            progress: progress.clone(),
            changed: Notify::new(),
            dirty: AtomicBool::new(false),
            last_progress: Mutex::new(Instant::now()),
            limiter: self.options.max_rate.map(rate_limiter),
            cancel: cancel.child_token(),
            fatal: Mutex::new(None),
            next_worker: AtomicUsize::new(0),
            open_total: AtomicUsize::new(0),
        });
        let mut workers = JoinSet::new();
        let spawn = |workers: &mut JoinSet<()>, source: Source| {
            progress.sources.lock().unwrap_or_else(|p| p.into_inner()).push(SourceStat {
                url: crate::proto::url::without_credentials(source.url.as_str()),
                kind: source.kind,
                state: SourceState::Connecting,
                bytes: 0,
                bad_pieces: 0,
                failures: 0,
                last_error: None,
                connections: 0,
            });
            let cap = ctx.options.max_connections_per_source.clamp(1, MAX_CONNECTIONS_PER_SOURCE);
            workers.spawn(source_task(ctx.clone(), Arc::new(SourceRun::new(source, cap))));
        };
        for source in sources.iter().cloned() {
            spawn(&mut workers, source);
        }
        let mut commit_tick = tokio::time::interval(self.options.commit_interval);
        let mut more_open = true;
        let result = loop {
            if ctx.lock().is_finished() {
                break Ok(());
            }
            tokio::select! {
                // Cancellation first: it also ends every worker, which must not read as failure.
                biased;
                () = cancel.cancelled() => {
                    break Err(EngineError::Cancelled { done: progress.done.load(Ordering::Relaxed), total: size });
                }
                _ = commit_tick.tick() => {
                    self.commit(&ctx, &mut record).await?;
                }
                new = more.recv(), if more_open => match new {
                    Some(new) => {
                        let before = sources.len();
                        add_source(&mut sources, new, job.id);
                        if sources.len() > before {
                            let source = sources[before].clone();
                            spawn(&mut workers, source);
                        }
                    }
                    None => more_open = false,
                },
                joined = workers.join_next() => {
                    if let Some(Err(error)) = &joined {
                        tracing::warn!(%error, "a download worker failed");
                    }
                    if let Some(error) = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        break Err(error);
                    }
                    if joined.is_none() || workers.is_empty() {
                        if ctx.lock().is_finished() {
                            break Ok(());
                        }
                        if cancel.is_cancelled() {
                            break Err(EngineError::Cancelled { done: progress.done.load(Ordering::Relaxed), total: size });
                        }
                        let done = progress.done.load(Ordering::Relaxed);
                        let waited = ctx.last_progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                        let last = progress.sources().iter().filter_map(|s| s.last_error.clone()).next_back().unwrap_or_default();
                        break Err(if waited >= self.options.give_up_after {
                            EngineError::GaveUp { after: self.options.give_up_after, done, total: size }
                        } else {
                            EngineError::SourcesExhausted { done, total: size, last }
                        });
                    }
                }
            }
        };
        ctx.cancel.cancel();
        while workers.join_next().await.is_some() {}
        self.commit(&ctx, &mut record).await?;
        result?;
        self.finish(job, ctx).await
    }

    async fn commit(&self, ctx: &Arc<Ctx>, record: &mut Record) -> Result<(), EngineError> {
        if !ctx.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        record.done = record::encode_done(&ctx.lock().done_flags());
        let record = record.clone();
        self.store(move |records| records.put(&record)).await
    }

    /// Runs a step on the resume records off the async runtime (each write is an fsync).
    async fn store<T: Send + 'static>(
        &self,
        step: impl FnOnce(&Records) -> Result<T, record::RecordError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let records = self.records.clone();
        Ok(tokio::task::spawn_blocking(move || step(&records))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??)
    }

    /// Syncs the file, checks it whole against the content id (when there is one) and computes
    /// its outboard, and moves it into place.
    async fn finish(&self, job: Job, ctx: Arc<Ctx>) -> Result<Outcome, EngineError> {
        let part = ctx.part.clone();
        let target = job.target.clone();
        let io = |step: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io { step, path, source }
        };
        let file = ctx.file.clone();
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
            .map_err(io("sync", &part))?;
        // With piece hashes every byte was checked against the content id already, so the file
        // is not read again. A peer's outboard is proven only down to the pieces (the pairs inside
        // a piece are never checked), so it is not handed on: whoever indexes the file computes
        // its own (hostile.rs: a corrupt outboard must not be kept). Without piece hashes (mirrors
        // only) the whole file is hashed here and checked against the expected id.
        let (id, outboard) = match (ctx.hashes.is_some(), job.id) {
            (true, Some(id)) => (id, None),
            (_, expected) => {
                let hashed = {
                    let path = part.clone();
                    tokio::task::spawn_blocking(move || shoal_index::hash_file(&path))
                        .await
                        .map_err(|e| EngineError::Task(e.to_string()))?
                        .map_err(|e| EngineError::Io {
                            step: "hash",
                            path: part.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })?
                };
                if let Some(expected) = expected
                    && expected != hashed.id
                {
                    ctx.spot.remove_part();
                    let key = target.clone();
                    self.store(move |records| records.remove(&key)).await?;
                    return Err(EngineError::HashMismatch {
                        expected,
                        actual: hashed.id,
                    });
                }
                (hashed.id, Some(hashed.outboard))
            }
        };
        let placed = {
            let (spot, replace) = (ctx.spot.clone(), job.force);
            tokio::task::spawn_blocking(move || spot.place(replace, true))
                .await
                .map_err(|e| EngineError::Task(e.to_string()))?
        };
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(EngineError::Exists(target)),
            Err(e) => return Err(io("place", &target)(e)),
        }
        let key = target.clone();
        self.store(move |records| records.remove(&key)).await?;
        Ok(Outcome {
            path: target,
            id,
            size: ctx.size,
            outboard,
            sources: ctx.progress.sources(),
        })
    }
}

fn piece_len(index: u64, size: u64) -> u64 {
    let start = index * PIECE_SIZE;
    (start + PIECE_SIZE).min(size).saturating_sub(start)
}

/// How often a source looks at its connections (opens wanted ones, feeds the adaptation).
const SOURCE_TICK: Duration = Duration::from_millis(250);

/// One source: opens and closes its connections as [`conns`] decides, until every connection
/// has ended and no more are wanted.
async fn source_task(ctx: Arc<Ctx>, src: Arc<SourceRun>) {
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut tick = tokio::time::interval(SOURCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Open what is wanted: the first connection always, extra ones within the download's
        // bound, none once the source is dropped or the download is over.
        let closing =
            src.closing.load(Ordering::Relaxed) || ctx.cancel.is_cancelled() || src.dropped.is_cancelled() || ctx.lock().is_finished();
        // Bounded: `open_one` says no once the source has what it wants (at most 16).
        while !closing && (connections.is_empty() || ctx.open_total.load(Ordering::Relaxed) < MAX_CONNECTIONS) && src.conns().open_one() {
            ctx.open_total.fetch_add(1, Ordering::Relaxed);
            let me = ctx.next_worker.fetch_add(1, Ordering::Relaxed);
            connections.spawn(connection(ctx.clone(), src.clone(), me));
        }
        let open = src.conns().open();
        ctx.progress.update(src.source.index, |s| s.connections = open);
        if connections.is_empty() {
            return;
        }
        tokio::select! {
            joined = connections.join_next() => {
                if let Some(Err(error)) = joined {
                    tracing::warn!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), %error, "a download connection failed");
                }
            }
            _ = tick.tick() => {
                let received = src.received.load(Ordering::Relaxed);
                src.conns().tick(Instant::now(), received);
            }
            () = src.wake.notified() => {}
        }
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
async fn connection(ctx: Arc<Ctx>, src: Arc<SourceRun>, me: WorkerId) {
    if let Ended::Closed = connection_loop(&ctx, &src, me).await {
        src.closing.store(true, Ordering::Relaxed);
        src.conns().closed();
    }
    ctx.open_total.fetch_sub(1, Ordering::Relaxed);
    let open = src.conns().open();
    ctx.progress.update(src.source.index, |s| s.connections = open);
    src.wake.notify_one();
}

async fn connection_loop(ctx: &Arc<Ctx>, src: &SourceRun, me: WorkerId) -> Ended {
    let index = src.source.index;
    let mut want: u64 = 4;
    loop {
        if ctx.cancel.is_cancelled() || src.dropped.is_cancelled() {
            return Ended::Closed;
        }
        if src.conns().retire() {
            return Ended::Counted;
        }
        let next = ctx.lock().claim(me, want);
        let run = match next {
            Next::Finished => {
                ctx.progress.update(index, |s| {
                    if s.state != SourceState::Banned {
                        s.state = SourceState::Idle;
                    }
                });
                ctx.changed.notify_waiters();
                return Ended::Closed;
            }
            Next::Wait => {
                tokio::select! {
                    () = ctx.changed.notified() => {}
                    () = ctx.cancel.cancelled() => return Ended::Closed,
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
            ctx.lock().release(me, run.clone());
            ctx.changed.notify_waiters();
            tokio::select! {
                () = ctx.cancel.cancelled() => return Ended::Closed,
                () = src.dropped.cancelled() => return Ended::Closed,
                () = tokio::time::sleep_until(until.into()) => {}
            }
            continue;
        }
        let started = Instant::now();
        let outcome = fetch_run(ctx, src, me, run.clone()).await;
        ctx.lock().release(me, run.clone());
        ctx.changed.notify_waiters();
        let reason = match outcome {
            Ok(bytes) => {
                src.failures.store(0, Ordering::Relaxed);
                ctx.progress.update(index, |s| s.failures = 0);
                // Size the next claim to about a second of this connection's speed.
                let rate = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
                want = ((rate / ctx.piece_size as f64).round() as u64).clamp(1, 64);
                continue;
            }
            Err(RunError::Fatal(error)) => {
                ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
                ctx.cancel.cancel();
                return Ended::Closed;
            }
            Err(RunError::Unusable(reason)) => {
                tracing::warn!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), %reason, "source cannot serve this file");
                src.drop_source(ctx, reason);
                return Ended::Closed;
            }
            Err(RunError::Changed(reason)) => {
                tracing::warn!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), %reason, "source dropped");
                src.drop_source(ctx, reason);
                return Ended::Closed;
            }
            Err(RunError::Bad(piece)) => {
                let bad = src.bad.fetch_add(1, Ordering::Relaxed) + 1;
                ctx.progress.wasted.fetch_add(piece_len(piece, ctx.size), Ordering::Relaxed);
                if bad > ctx.options.max_bad_pieces {
                    // Banned already by another connection: pieces it had in flight are not counted.
                    return Ended::Closed;
                }
                ctx.progress.update(index, |s| {
                    s.bad_pieces = bad;
                    s.last_error = Some(format!("piece {piece} failed verification"));
                });
                tracing::warn!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), piece, "a piece failed verification");
                if bad >= ctx.options.max_bad_pieces {
                    src.drop_source(ctx, format!("banned after {bad} pieces failed verification"));
                    return Ended::Closed;
                }
                continue;
            }
            Err(RunError::Busy(reason, wait)) => {
                if let Some(wait) = wait {
                    src.defer(ctx, wait);
                }
                reason
            }
            Err(RunError::Source(reason)) => reason,
        };
        // A failure: with other connections open, this one ends (the source backs off by one);
        // the last one retries with backoff.
        if src.conns().refused(Instant::now()) {
            tracing::debug!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), %reason, "one connection fewer");
            return Ended::Counted;
        }
        let failures = src.failures.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.progress.update(index, |s| {
            if s.state != SourceState::Banned {
                s.state = SourceState::Retrying;
            }
            s.failures = failures;
            s.last_error = Some(reason.clone());
        });
        tracing::debug!(source = %crate::proto::url::without_credentials(src.source.url.as_str()), %reason, "source failed; retrying later");
        let waited = ctx.last_progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if waited >= ctx.options.give_up_after {
            return Ended::Closed;
        }
        let all_down = ctx.progress.live_sources() == 0;
        ctx.progress.waiting.store(all_down, Ordering::Relaxed);
        let backoff = ctx
            .options
            .backoff
            .saturating_mul(1 << failures.min(16))
            .min(ctx.options.max_backoff);
        tokio::select! {
            () = ctx.cancel.cancelled() => return Ended::Closed,
            () = src.dropped.cancelled() => return Ended::Closed,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Fetches pieces `run` from one source in one range request. Returns the bytes used.
///
/// Every answer's validators are checked against the source's first (see [`Validators`]); once
/// a strong ETag is known it goes in `If-Range`, so that a server whose file changed answers with
/// the whole new file (200), which is refused.
async fn fetch_run(ctx: &Arc<Ctx>, src: &SourceRun, me: WorkerId, run: Range<u64>) -> Result<u64, RunError> {
    let source = &src.source;
    let stat = source.index;
    let start = ctx.piece_range(run.start).start;
    let end = ctx.piece_range(run.end - 1).end;
    let mut request = ctx
        .net
        .request(reqwest::Method::GET, &source.url, source.trust)
        .map_err(|e| RunError::Unusable(e.to_string()))?
        .header(reqwest::header::RANGE, format!("bytes={}-{}", start, end - 1));
    let if_range = src.if_range();
    if let Some(etag) = &if_range {
        request = request.header(reqwest::header::IF_RANGE, etag.as_str());
    }
    let answered_before = src.validators.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let response = tokio::select! {
        () = ctx.cancel.cancelled() => return Ok(0),
        () = src.dropped.cancelled() => return Ok(0),
        sent = tokio::time::timeout(ctx.options.stall_timeout, request.send()) => match sent {
            Err(_) => return Err(RunError::Source(format!("no answer within {:?}", ctx.options.stall_timeout))),
            // A certificate that is not trusted stays so: the source is dropped, not retried.
            Ok(Err(e)) => match crate::net::tls_failure(&e) {
                Some(tls) => return Err(RunError::Unusable(tls)),
                None => return Err(RunError::Source(format!("request failed: {}", crate::net::describe(&e)))),
            },
            Ok(Ok(response)) => response,
        },
    };
    let status = response.status();
    if status == reqwest::StatusCode::PARTIAL_CONTENT {
        let content_range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = format!("bytes {}-{}/{}", start, end - 1, ctx.size);
        if content_range != expected {
            // Printable and short, or not quoted at all.
            let said: String = content_range.chars().take(80).collect();
            let reason = format!("answered {said:?} to a request for {expected:?}");
            let total = content_range.rsplit_once('/').map(|(_, total)| total);
            return Err(if answered_before && total != Some(&ctx.size.to_string()) {
                RunError::Changed(format!("the file changed while downloading (its size): {reason}"))
            } else {
                RunError::Unusable(format!("{reason} (a different file?)"))
            });
        }
    } else if status == reqwest::StatusCode::OK {
        if if_range.is_some() && start != 0 {
            return Err(RunError::Changed(
                "the file changed while downloading (the whole file came back for If-Range)".into(),
            ));
        }
        if start != 0 || response.content_length().is_some_and(|len| len != ctx.size) {
            return Err(RunError::Unusable(
                "does not support ranges, or serves a file of another size".into(),
            ));
        }
    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        let wait = retry_after(response.headers(), std::time::SystemTime::now());
        return Err(RunError::Busy(format!("HTTP {status}"), wait));
    } else if status.is_server_error() || status == reqwest::StatusCode::NOT_FOUND {
        return Err(RunError::Source(format!("HTTP {status}")));
    } else {
        return Err(RunError::Unusable(format!("HTTP {status}")));
    }
    src.check_validators(response.headers()).map_err(RunError::Changed)?;
    src.conns().accepted();
    src.wake.notify_one();
    // Another connection of this source may have banned it meanwhile: a ban is never undone.
    ctx.progress.update(stat, |s| {
        if s.state != SourceState::Banned {
            s.state = SourceState::Live;
        }
    });
    ctx.progress.waiting.store(false, Ordering::Relaxed);
    let mut stream = response.bytes_stream();
    let mut index = run.start;
    let mut buf: Vec<u8> = Vec::with_capacity(ctx.piece_range(index).end as usize - ctx.piece_range(index).start as usize);
    let mut used = 0u64;
    loop {
        let piece = ctx.piece_range(index);
        let piece_len = (piece.end - piece.start) as usize;
        if buf.len() >= piece_len {
            let rest = buf.split_off(piece_len);
            let data = std::mem::replace(&mut buf, rest);
            if ctx.lock().is_mine(me, index) {
                let (ctx2, offset) = (ctx.clone(), piece.start);
                let checked = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
                    if let Some(hashes) = &ctx2.hashes
                        && !hashes.verify(index, &data)
                    {
                        return Ok(false);
                    }
                    ctx2.file.write_all_at(&data, offset)?;
                    start_writeback(&ctx2.file, offset, data.len());
                    Ok(true)
                })
                .await
                .map_err(|e| RunError::Fatal(EngineError::Task(e.to_string())))?;
                match checked {
                    Ok(true) => {}
                    Ok(false) => {
                        ctx.net.metrics().pieces_rejected.inc();
                        return Err(RunError::Bad(index));
                    }
                    Err(source) => {
                        let error = if source.raw_os_error() == Some(libc::ENOSPC) {
                            let dir = ctx.part.parent().unwrap_or(Path::new(".")).to_path_buf();
                            EngineError::NoSpace {
                                free: free_space(&dir).unwrap_or(0),
                                dir,
                                needed: ctx.size,
                            }
                        } else {
                            EngineError::Io {
                                step: "write",
                                path: ctx.part.clone(),
                                source,
                            }
                        };
                        return Err(RunError::Fatal(error));
                    }
                }
                let len = piece_len as u64;
                if ctx.lock().complete(index) {
                    used += len;
                    ctx.progress.done.fetch_add(len, Ordering::Relaxed);
                    ctx.progress.update(stat, |s| s.bytes += len);
                    let metrics = ctx.net.metrics();
                    if ctx.hashes.is_some() {
                        metrics.pieces_verified.inc();
                    }
                    metrics
                        .bytes_down
                        .get_or_create(&crate::net::metrics::KindLabel {
                            kind: source.kind.name().to_string(),
                        })
                        .inc_by(len);
                    ctx.dirty.store(true, Ordering::Release);
                    *ctx.last_progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    ctx.changed.notify_waiters();
                } else {
                    ctx.progress.wasted.fetch_add(len, Ordering::Relaxed);
                }
            } else {
                ctx.progress.wasted.fetch_add(piece_len as u64, Ordering::Relaxed);
            }
            index += 1;
            if index >= run.end || !ctx.lock().is_mine(me, index) {
                // Done, or the rest was stolen or won elsewhere: drop the response.
                return Ok(used);
            }
            continue;
        }
        let chunk = tokio::select! {
            () = ctx.cancel.cancelled() => return Ok(used),
            () = src.dropped.cancelled() => return Ok(used),
            next = tokio::time::timeout(ctx.options.stall_timeout, stream.next()) => match next {
                Err(_) => return Err(RunError::Source(format!("stalled: no data for {:?}", ctx.options.stall_timeout))),
                Ok(None) => return Err(RunError::Source("closed the connection early".into())),
                Ok(Some(Err(e))) => return Err(RunError::Source(format!("read failed: {}", crate::net::describe(&e)))),
                Ok(Some(Ok(chunk))) => chunk,
            },
        };
        src.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(limiter) = &ctx.limiter {
            throttle(limiter, chunk.len()).await;
        }
        buf.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, reqwest::header::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_is_read_and_bounded() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = |value: Option<&str>, expected: Option<Duration>| {
            let map = value.map_or_else(reqwest::header::HeaderMap::new, |v| headers(&[("retry-after", v)]));
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

    #[test]
    fn part_files_are_hidden_beside_the_target() {
        assert_eq!(part_path(Path::new("/a/b/c.iso")), PathBuf::from("/a/b/.c.iso.shoal-part"));
    }
}
