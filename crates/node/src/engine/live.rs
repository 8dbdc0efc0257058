//! The second phase of a download: pieces flow in.
//!
//! [`Live::run`] is the supervisor: it starts one task per source ([`source_task`], which opens
//! and closes that source's connections as [`super::conns`] decides, each connection a worker
//! in [`super::worker`]), admits sources that arrive on the job's channel while it runs,
//! commits the resume record every `commit_interval` when a piece was written since (in the
//! background, one commit at a time: a commit is an fsync, which waits for other writers' data
//! on a busy disk, and a supervisor that waited on it noticed the end late), and ends
//! when every piece is done, the download is cancelled, a write failed, or every source has
//! given up. What the workers share is [`Shared`]; what the last phase needs is [`Landed`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::disk::PartFile;
use super::partial::Partial;
use super::pieces::Pieces;
use super::prepare::{Layout, Prepared};
use super::record::{self, Record};
use super::source::{Avail, Source, SourceRun, SourceStat, SourceState, Sources};
use super::{Engine, EngineError, EngineOptions, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE, NewSource, Progress};
use super::{avail, worker};
use crate::net::Client;
use crate::net::rate::{RateLimiter, rate_limiter};

/// How often a source looks at its connections (opens wanted ones, feeds the adaptation).
const SOURCE_TICK: Duration = Duration::from_millis(250);

/// What the sources and connections of one running download share.
pub(super) struct Shared {
    pub net: Client,
    pub options: EngineOptions,
    /// The download rate cap (`EngineOptions::max_rate`), over every connection.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The size, pieces and their hashes.
    pub layout: Layout,
    /// Which piece is missing, claimed by whom, done.
    pub pieces: Mutex<Pieces>,
    /// The partial file.
    pub disk: PartFile,
    /// Progress, for users, the record and the give-up clock.
    pub tally: Tally,
    /// Connections over all sources.
    pub budget: Budget,
    /// Cancelled when the download ends for any reason: ends every connection.
    pub cancel: CancellationToken,
    /// The first error that stops the whole download (a failed write).
    pub fatal: Mutex<Option<EngineError>>,
    /// The download as others fetch from it (a node's, with a content id): each piece is marked
    /// there once written.
    pub serving: Option<Arc<Partial>>,
    /// The node's URL, sent to peers as `Shoal-From` (see `Engine::serving`).
    pub swarm_as: Option<reqwest::header::HeaderValue>,
}

impl Shared {
    /// The piece table (never held across an await).
    pub fn pieces(&self) -> std::sync::MutexGuard<'_, Pieces> {
        self.pieces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the download for `error` (the first one wins).
    pub fn fail(&self, error: EngineError) {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
        self.cancel.cancel();
    }
}

/// Progress as users, the resume record and the give-up clock see it.
pub(super) struct Tally {
    pub progress: Arc<Progress>,
    /// Woken when a piece is done or claims are given back (waiting workers look again).
    pub changed: Notify,
    /// A piece was written since the record was last committed.
    pub dirty: AtomicBool,
    /// When the last piece was written (or the download started).
    last_progress: Mutex<Instant>,
}

impl Tally {
    fn new(progress: Arc<Progress>) -> Tally {
        Tally {
            progress,
            changed: Notify::new(),
            dirty: AtomicBool::new(false),
            last_progress: Mutex::new(Instant::now()),
        }
    }

    /// A piece of `len` bytes was written and counted.
    pub fn piece_done(&self, len: u64) {
        self.progress.done.fetch_add(len, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
        *self.last_progress.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.changed.notify_waiters();
    }

    /// Time since the last piece was written.
    pub fn since_progress(&self) -> Duration {
        self.last_progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

/// The connections of one download over all its sources: ids for the scheduler and the count
/// that bounds extra connections ([`MAX_CONNECTIONS`]).
#[derive(Default)]
pub(super) struct Budget {
    next_worker: AtomicUsize,
    open: AtomicUsize,
}

impl Budget {
    /// Whether a source may open a connection: its first always, extra ones while the download
    /// holds fewer than [`MAX_CONNECTIONS`].
    fn allows(&self, first: bool) -> bool {
        first || self.open.load(Ordering::Relaxed) < MAX_CONNECTIONS
    }

    /// Counts a connection in; returns its scheduler id.
    fn opened(&self) -> usize {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.next_worker.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection out.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the last phase needs from a download whose pieces are all written.
pub(super) struct Landed {
    pub layout: Layout,
    pub disk: PartFile,
}

/// A download whose pieces are being fetched.
pub(super) struct Live<'a> {
    engine: &'a Engine,
    shared: Arc<Shared>,
    sources: Sources,
    record: Record,
    /// The caller's token; `shared.cancel` is its child.
    cancel: CancellationToken,
}

impl<'a> Live<'a> {
    pub fn new(
        engine: &'a Engine,
        prepared: Prepared,
        progress: Arc<Progress>,
        cancel: CancellationToken,
        serving: Option<Arc<Partial>>,
    ) -> Live<'a> {
        let Prepared {
            sources,
            layout,
            disk,
            pieces,
            record,
        } = prepared;
        let mut pieces = pieces;
        // A node's download checked piece by piece from peers is served to others fetching the
        // same file: its first pieces are taken at random, so that it soon has something they
        // lack. (A download that serves nothing, `shoal get`, keeps to the file's order.)
        if serving.is_some() && layout.hashes.is_some() && sources.has(super::SourceKind::Peer) {
            pieces.random_first();
        }
        let shared = Arc::new(Shared {
            net: engine.net.clone(),
            options: engine.options.clone(),
            limiter: engine.options.max_rate.map(rate_limiter),
            layout,
            pieces: Mutex::new(pieces),
            disk,
            tally: Tally::new(progress),
            budget: Budget::default(),
            cancel: cancel.child_token(),
            fatal: Mutex::new(None),
            serving,
            swarm_as: engine
                .swarm_as
                .as_deref()
                .and_then(|u| reqwest::header::HeaderValue::from_str(u).ok()),
        });
        Live {
            engine,
            shared,
            sources,
            record,
            cancel,
        }
    }

    /// Runs until every piece is written (then [`Landed`]) or the download stops. `more` brings
    /// sources found while it runs. A download that stops commits its record last, so that a
    /// new run resumes from every piece written; one that is complete does not (its record is
    /// removed once the file is placed, and if placing fails, the record as last committed is
    /// safe: it calls fewer pieces done, not more).
    pub async fn run(mut self, mut more: mpsc::Receiver<NewSource>) -> Result<Landed, EngineError> {
        let mut workers = JoinSet::new();
        for source in self.sources.all().to_vec() {
            self.spawn(&mut workers, source);
        }
        let mut committing = None;
        let result = self.supervise(&mut workers, &mut more, &mut committing).await;
        self.shared.cancel.cancel();
        while workers.join_next().await.is_some() {}
        // A commit being written ends before anything else touches the record.
        if let Some(commit) = committing {
            committed(commit).await?;
        }
        if result.is_err() {
            self.commit().await?;
        }
        result?;
        Ok(Landed {
            layout: self.shared.layout.clone(),
            disk: self.shared.disk.clone(),
        })
    }

    /// The supervisor loop: until finished, cancelled, failed or out of sources.
    async fn supervise(
        &mut self,
        workers: &mut JoinSet<()>,
        more: &mut mpsc::Receiver<NewSource>,
        committing: &mut Option<Commit>,
    ) -> Result<(), EngineError> {
        let shared = self.shared.clone();
        let progress = shared.tally.progress.clone();
        let size = shared.layout.size;
        let cancelled = || EngineError::Cancelled {
            done: progress.done.load(Ordering::Relaxed),
            total: size,
        };
        let mut commit_tick = tokio::time::interval(shared.options.commit_interval);
        let mut more_open = true;
        loop {
            if shared.pieces().is_finished() {
                return Ok(());
            }
            tokio::select! {
                // Cancellation first: it also ends every worker, which must not read as failure.
                biased;
                () = self.cancel.cancelled() => return Err(cancelled()),
                _ = commit_tick.tick() => {
                    if committing.is_none() {
                        *committing = self.start_commit();
                    }
                }
                written = async { committing.as_mut().expect("the branch runs only with a commit").await }, if committing.is_some() => {
                    *committing = None;
                    written.map_err(|e| EngineError::Task(e.to_string()))??;
                }
                new = more.recv(), if more_open => match new {
                    Some(new) => {
                        if let Some(source) = self.sources.admit(new).cloned() {
                            self.spawn(workers, source);
                        }
                    }
                    None => more_open = false,
                },
                joined = workers.join_next() => {
                    if let Some(Err(error)) = &joined {
                        tracing::warn!(%error, "a download worker failed");
                    }
                    if let Some(error) = shared.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        return Err(error);
                    }
                    if joined.is_none() || workers.is_empty() {
                        if shared.pieces().is_finished() {
                            return Ok(());
                        }
                        if self.cancel.is_cancelled() {
                            return Err(cancelled());
                        }
                        let done = progress.done.load(Ordering::Relaxed);
                        let last = progress.sources().iter().filter_map(|s| s.last_error.clone()).next_back().unwrap_or_default();
                        let give_up_after = shared.options.give_up_after;
                        return Err(if shared.tally.since_progress() >= give_up_after {
                            EngineError::GaveUp { after: give_up_after, done, total: size }
                        } else {
                            EngineError::SourcesExhausted { done, total: size, last }
                        });
                    }
                }
            }
        }
    }

    /// Shows a source to users and starts its task.
    fn spawn(&self, workers: &mut JoinSet<()>, source: Source) {
        let progress = &self.shared.tally.progress;
        progress.sources.lock().unwrap_or_else(|p| p.into_inner()).push(SourceStat {
            url: source.shown(),
            kind: source.kind,
            state: SourceState::Connecting,
            bytes: 0,
            bad_pieces: 0,
            failures: 0,
            last_error: None,
            connections: 0,
            held: None,
        });
        let cap = self.shared.options.max_connections_per_source.clamp(1, MAX_CONNECTIONS_PER_SOURCE);
        let ask_have = self.shared.layout.hashes.is_some();
        workers.spawn(source_task(self.shared.clone(), Arc::new(SourceRun::new(source, cap, ask_have))));
    }

    /// Starts writing the record on the blocking pool when a piece was written since the last
    /// commit.
    fn start_commit(&mut self) -> Option<Commit> {
        if !self.shared.tally.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.record.done = record::encode_done(&self.shared.pieces().done_flags());
        let (records, record) = (self.engine.records.clone(), self.record.clone());
        Some(tokio::task::spawn_blocking(move || records.put(&record)))
    }

    /// Writes the record when a piece was written since the last commit, and waits for it.
    async fn commit(&mut self) -> Result<(), EngineError> {
        match self.start_commit() {
            Some(commit) => committed(commit).await,
            None => Ok(()),
        }
    }
}

/// A commit of the resume record being written.
type Commit = tokio::task::JoinHandle<Result<(), record::RecordError>>;

/// Waits for a commit.
async fn committed(commit: Commit) -> Result<(), EngineError> {
    Ok(commit.await.map_err(|e| EngineError::Task(e.to_string()))??)
}

/// One source: opens and closes its connections as [`super::conns`] decides, until every
/// connection has ended and no more are wanted.
async fn source_task(shared: Arc<Shared>, src: Arc<SourceRun>) {
    // What a partial source holds is followed beside its connections, and ends with them.
    let follower = (*src.avail() == Avail::Unknown).then(|| tokio::spawn(avail::follow(shared.clone(), src.clone())));
    run_connections(&shared, &src).await;
    if let Some(follower) = follower {
        follower.abort();
        let _ = follower.await;
    }
    avail::left(&shared, &src);
}

/// Opens and closes `src`'s connections until they have all ended and no more are wanted.
async fn run_connections(shared: &Arc<Shared>, src: &Arc<SourceRun>) {
    let mut connections: JoinSet<()> = JoinSet::new();
    let mut tick = tokio::time::interval(SOURCE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Open what is wanted: the first connection always, extra ones within the download's
        // bound, none once the source is dropped or the download is over.
        let closing = src.closing.load(Ordering::Relaxed)
            || shared.cancel.is_cancelled()
            || src.dropped.is_cancelled()
            || shared.pieces().is_finished();
        // Bounded: `open_one` says no once the source has what it wants (at most 16).
        while !closing && shared.budget.allows(connections.is_empty()) && src.conns().open_one() {
            let me = shared.budget.opened();
            connections.spawn(worker::connection(shared.clone(), src.clone(), me));
        }
        let open = src.conns().open();
        shared.tally.progress.update(src.source.index, |s| s.connections = open);
        if connections.is_empty() {
            return;
        }
        tokio::select! {
            joined = connections.join_next() => {
                if let Some(Err(error)) = joined {
                    tracing::warn!(source = %src.source.shown(), %error, "a download connection failed");
                }
            }
            _ = tick.tick() => {
                let received = src.received.load(Ordering::Relaxed);
                let mut conns = src.conns();
                let before = conns.desired();
                conns.tick(Instant::now(), received);
                if conns.desired() != before {
                    tracing::debug!(source = %src.source.shown(), from = before, to = conns.desired(), received, "connections wanted");
                }
            }
            () = src.wake.notified() => {}
        }
    }
}
