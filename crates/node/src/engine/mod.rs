//! The multi-source download engine: one file from shoal peers and plain HTTP mirrors at once,
//! every piece verified, resumable after any crash, patient through outages.
//!
//! The engine does not know where sources come from: it takes a [`Job`] with peer and mirror URLs
//! (search, the CLI and the node fill it in) and a channel on which more sources may arrive while
//! it runs. Invariants:
//! - with a content id and a shoal node that gives the file's verification data, no piece is
//!   written or counted before it passes its check against the id; from mirrors alone (no
//!   verification data), pieces are written as they come and the whole file is checked at the
//!   end against `--hash` (a mismatch discards it), or its content id is reported;
//! - the partial file is hidden beside the target and the final name appears only by an atomic
//!   rename (or a no-clobber link) once the file is complete and checked; with
//!   [`EngineOptions::beneath`] both are made relative to the target's directory, opened beneath
//!   a root with no symlink on the way ([`Beneath`]);
//! - memory is bounded: each connection holds at most two pieces in memory (one arriving, one
//!   being written while the next arrives), and a source opens extra connections only while the
//!   download holds fewer than [`MAX_CONNECTIONS`];
//! - progress (which pieces are written) is in the state store, so only pieces in flight are
//!   fetched again after SIGKILL;
//! - a mirror's first answer fixes its `ETag`, `Last-Modified` and size; an answer that differs
//!   later means its file changed, and the mirror is dropped with all its connections before
//!   anything from that answer is read (with a strong ETag, `If-Range` makes such a server answer
//!   200, which is refused too).
//!
//! **Phases.** [`Engine::run`] opens the target's spot ([`place`]), tries the fast path for a
//! small file ([`small`]), then runs three phases, each a type that owns its state:
//! `prepare::Preparing` (sources admitted, the size bound to the content id, the resume record
//! checked, the partial file opened and its space reserved, resumed pieces checked again) hands
//! a `Prepared` to `live::Live` (the supervisor: one task per source, sources arriving while it
//! runs, the record committed as pieces land), which hands a `Landed` to `finish::Finishing`
//! (sync, the whole-file check for mirrors only, the file placed, the record removed).
//!
//! **Modules.**
//! - `prepare`, `live`, `finish`: the three phases;
//! - `worker`: one connection's loop and its range requests (claim, request, stream and check
//!   each piece as it arrives, write it while the next arrives);
//! - `answer`: what an answer's status and headers mean (206/200/416/429/503, validators,
//!   `Retry-After`), with no I/O;
//! - `source`: [`SourceKind`], which sources are admitted, [`SourceStat`], [`SourceState`], and
//!   what one source's connections share;
//! - `disk`: the partial file ([`part_path`], open, reserve, vectored writes, write-back
//!   requested off the writers' path, fsync);
//!   [`place`]: where the files are and the final link or rename;
//! - [`pieces`] (which piece is missing, claimed, done) and [`conns`] (how many connections a
//!   source gets): pure state machines with no I/O;
//! - [`record`]: resume records in the state store; [`small`]: the one-request path for small
//!   files.
//!
//! `STATE.md` beside this file lists each state a piece and a source can be in, and the
//! functions that move them.
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

mod answer;
mod avail;
pub mod conns;
mod disk;
mod finish;
mod live;
pub mod partial;
pub mod pieces;
pub mod place;
mod prepare;
pub mod record;
pub mod small;
mod source;
mod worker;

pub use disk::part_path;
pub use partial::{Holding, Partial, Partials};
pub use source::{SourceKind, SourceStat, SourceState};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_index::ContentId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::net::Client;
use finish::Finishing;
use live::Live;
use prepare::Preparing;
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

/// Most peers one download takes as sources, however many holders answers name.
pub const MAX_PEER_SOURCES: usize = 32;
/// Extra connections open only while a download holds fewer than this, over all its sources
/// (each holds at most two pieces in memory); a source's first connection is always allowed.
pub const MAX_CONNECTIONS: usize = 64;
/// The most connections to one source `max_connections_per_source` may allow.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 16;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The engine: a state store for resume records and an HTTP client.
#[derive(Clone)]
pub struct Engine {
    records: Records,
    net: Client,
    options: EngineOptions,
    /// Where downloads in progress are served from (a node's engine); `None` serves nothing.
    partials: Option<Partials>,
    /// The node's URL, named to peers in requests (`Shoal-From`) when it serves its downloads,
    /// so that their upload slots know who gives back.
    swarm_as: Option<String>,
}

impl Engine {
    pub fn new(db: Arc<redb::Database>, net: Client, options: EngineOptions) -> Result<Self, EngineError> {
        Ok(Engine {
            records: Records::new(db)?,
            net,
            options,
            partials: None,
            swarm_as: None,
        })
    }

    /// Serves every download with a content id and verification data from `partials` while it
    /// runs, each piece from the moment it is verified and written (see [`partial`]).
    /// `url` is the node's, named to the peers it fetches from.
    pub fn serving(mut self, partials: Partials, url: String) -> Self {
        self.partials = Some(partials);
        self.swarm_as = Some(url);
        self
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Runs a download to the end. `more` brings sources found while it runs.
    pub async fn run(
        &self,
        job: Job,
        progress: Arc<Progress>,
        cancel: CancellationToken,
        more: mpsc::Receiver<NewSource>,
    ) -> Result<Outcome, EngineError> {
        let spot = place::open_spot(&job.target, self.options.beneath.as_ref(), job.force).await?;
        // A small file with a known id and size: one request, no records (see `small`).
        if let Some(outcome) = small::run(self, &job, &spot, &progress, &cancel).await {
            return outcome;
        }
        let prepared = Preparing::new(self, &job, spot, &progress).prepare().await?;
        // Served while it runs, until it is placed (then the share's index serves it).
        let serving = match (&self.partials, job.id, &prepared.layout.outboard) {
            (Some(partials), Some(id), Some(outboard)) => partials.register(
                id,
                prepared.layout.size,
                outboard.clone(),
                prepared.disk.clone(),
                &prepared.pieces.done_flags(),
            ),
            _ => None,
        };
        let partial = serving.as_ref().map(|s| s.partial.clone());
        let landed = Live::new(self, prepared, progress.clone(), cancel, partial).run(more).await?;
        let outcome = Finishing::new(self, job, landed, progress).finish().await;
        if let (Ok(_), Some(serving)) = (&outcome, serving) {
            serving.placed();
        }
        outcome
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
}
