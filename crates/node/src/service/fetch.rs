//! The one door to downloads. Every download, whoever asks for it (the seed's `fetch`,
//! `shoal.download`, the JSON API and the web UI through [`super::Api`]; `shoal get` with or
//! without folders, globs and lists in the CLI), goes through a [`Fetcher`]:
//!
//! 1. **resolve** what the user typed into jobs: names and content ids are searched on peers,
//!    URLs are mirrors ([`super::resolve`]); folders and globs are listed on peers and become
//!    one job per file ([`Fetcher::plan`], [`super::folder`]);
//! 2. **check** each target: the caller's rule for where files may go, then what is there
//!    already (a complete file is skipped, a different one is left alone unless `force`);
//! 3. **run** the engine for each file in the table of downloads ([`super::downloads`]), with
//!    holder discovery alongside (the [`Discover`] the fetcher was given: the node's flood, or
//!    the fixed peers of a command), `concurrency` files at once;
//! 4. **sync** at the end: small files are placed without an fsync each (`engine::small`), so
//!    one `syncfs` covers a whole queue, or the single file.
//!
//! What happens is told to an [`Events`] sink: the CLI draws bars or prints JSON lines from
//! it; the node logs failures. The fetcher owns no frontend and knows no wire format.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
pub use shoal_index::ContentId;
use tokio::sync::{oneshot, watch};

use super::downloads::{Downloads, Registered, Status};
use super::folder::{self, Existing, Selection};
use super::resolve::{self, ResolveError};
use crate::discovery::Discover;
use crate::discovery::listing::Merge;
use crate::engine::EngineError;
// The engine's vocabulary, as the fetcher's callers use it.
pub use crate::engine::{Beneath, EngineOptions, Job, Outcome, PIECE_SIZE, Progress, SourceStat};
use crate::net::Client;

/// How often a running download asks for more holders of its content id.
pub const FIND_MORE_EVERY: Duration = Duration::from_secs(15);

/// How many files of a queue download at once, unless the caller says otherwise (`-j`).
pub const QUEUE_CONCURRENCY: usize = 8;

/// Called with each finished download before it is reported done (the node indexes files that
/// landed in its share). Runs off the async runtime; may take the outboard.
pub type Finished = Arc<dyn Fn(&mut Outcome) -> Result<(), String> + Send + Sync>;

/// A rule for where files may be written: the target, checked (and made absolute), or why not.
/// Blocking: called off the async runtime.
pub type TargetRule = Arc<dyn Fn(&Path) -> Result<PathBuf, String> + Send + Sync>;

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Folder(#[from] folder::FolderError),
    /// Something is at the target already and `force` was not given.
    #[error("{} already exists; use --force to replace it", .0.display())]
    Exists(PathBuf),
    /// The caller's rule refused the target.
    #[error("{0}")]
    Refused(String),
    #[error("indexing the finished file failed: {0}")]
    Finished(String),
    #[error("syncing {}: {source}", path.display())]
    Sync { path: PathBuf, source: std::io::Error },
    /// The download ended without a result of its own (it joined another one, or the task was
    /// lost); its status says how it ended.
    #[error("{0}")]
    Ended(String),
}

/// What the fetcher does, as it does it, for a frontend to show.
pub enum Event<'a> {
    /// A file's download starts (`progress` is live until [`Event::Done`] or [`Event::Failed`]).
    Start { job: &'a Job, progress: &'a Arc<Progress> },
    /// A file was complete at its target already.
    Skipped { job: &'a Job },
    /// A file is done.
    Done {
        name: &'a str,
        outcome: &'a Outcome,
        progress: &'a Arc<Progress>,
        elapsed: Duration,
    },
    /// A file (or a line that never became one) failed.
    Failed {
        name: &'a str,
        error: &'a str,
        progress: Option<&'a Arc<Progress>>,
    },
}

/// Where a fetcher tells what it does.
pub trait Events: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// An [`Events`] sink that drops everything but failures, which it logs (a node's folders).
pub struct LogFailures;

impl Events for LogFailures {
    fn event(&self, event: Event<'_>) {
        if let Event::Failed { name, error, .. } = event {
            tracing::warn!(file = %name, reason = %error, "a file of a folder download failed");
        }
    }
}

/// One thing a user asked for: the targets of one download (a name, a content id, URLs), or a
/// folder or glob alone, and where it goes.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// How failures name it (the targets, or a list's line).
    pub label: String,
    pub targets: Vec<String>,
    /// A directory (or, for a single file, a file path).
    pub output: PathBuf,
}

/// One download of a queue.
#[derive(Debug, Clone)]
pub enum Item {
    /// A file of a folder or glob, its job known from the listing.
    Ready(Job),
    /// Targets resolved when their turn comes (a name is searched, URLs are mirrors).
    Resolve {
        label: String,
        targets: Vec<String>,
        output: PathBuf,
    },
    /// Something that could not become a download.
    Failed { label: String, error: String },
}

/// How a queue runs.
#[derive(Clone)]
pub struct QueueOptions {
    /// Files at once.
    pub concurrency: usize,
    /// Replace files that differ at their targets.
    pub force: bool,
    /// Where files may go; `None`: anywhere the jobs say.
    pub rule: Option<TargetRule>,
    /// The directory whose file system is synced at the end.
    pub sync: Option<PathBuf>,
}

/// What a queue did.
#[derive(Debug, Default)]
pub struct Tally {
    pub done: usize,
    pub skipped: usize,
    pub bytes: u64,
    /// (name, reason) of each failure.
    pub failures: Vec<(String, String)>,
}

/// A download running in the table, as [`Fetcher::start`] gives it.
pub struct Started {
    pub status: watch::Receiver<Status>,
    pub progress: Arc<Progress>,
    /// The result, for the one who started it (none when the job joined a running download).
    result: Option<oneshot::Receiver<Result<Outcome, FetchError>>>,
}

impl Started {
    /// Waits for the download's end.
    pub async fn finish(mut self) -> Result<Outcome, FetchError> {
        if let Some(result) = self.result.take()
            && let Ok(result) = result.await
        {
            return result;
        }
        loop {
            let now = self.status.borrow_and_update().clone();
            match now {
                Status::Running => {}
                Status::Done => return Err(FetchError::Ended("done by another request".into())),
                Status::Failed(reason) => return Err(FetchError::Ended(reason)),
                Status::Paused => return Err(FetchError::Ended("paused; resume it to go on".into())),
            }
            if self.status.changed().await.is_err() {
                return Err(FetchError::Ended("the download's task ended".into()));
            }
        }
    }
}

/// The one door. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<FetcherParts>,
    /// The URL others fetch this node's downloads in progress from, named when it joins a swarm.
    swarm_as: Option<String>,
}

/// How a [`Fetcher`] is made.
pub struct FetcherParts {
    /// The table its downloads run in (it holds the engine).
    pub downloads: Downloads,
    /// The client for searches, listings and mirror checks.
    pub client: Client,
    /// Who else holds a content id, asked while a download runs.
    pub discover: Arc<dyn Discover>,
    /// URLs of this node, never used as sources.
    pub me: Vec<String>,
    /// A content index (the DHT) asked for an id's holders before its download starts, besides
    /// the peers searched, and with `discover` while it runs.
    pub index: Option<Arc<dyn Discover>>,
    /// How often `discover` is asked ([`FIND_MORE_EVERY`]).
    pub find_more_every: Duration,
    pub finished: Option<Finished>,
}

impl Fetcher {
    pub fn new(parts: FetcherParts) -> Fetcher {
        Fetcher {
            inner: Arc::new(parts),
            swarm_as: None,
        }
    }

    /// Names `url` in the swarms its downloads join (a node whose engine serves its downloads in
    /// progress); without it, a download takes from its swarm and names no URL.
    pub fn in_swarm_as(mut self, url: String) -> Fetcher {
        self.swarm_as = Some(url);
        self
    }

    /// The table of downloads.
    pub fn downloads(&self) -> &Downloads {
        &self.inner.downloads
    }

    /// Turns one download's targets into its job ([`resolve::resolve`]), searching `peers`.
    pub async fn resolve(
        &self,
        peers: &[String],
        targets: &[String],
        hash: Option<ContentId>,
        output: Option<&Path>,
    ) -> Result<Job, ResolveError> {
        // A content id is also looked up in the index (the DHT): the holders it names are
        // searched for the id as the known peers are, which gives its size and name.
        let ids: Vec<ContentId> = hash
            .into_iter()
            .chain(targets.iter().filter_map(|t| match resolve::classify(t) {
                resolve::Target::Id(id) => Some(id),
                _ => None,
            }))
            .collect();
        let mut asked: Vec<String> = peers.to_vec();
        let mut indexed: Vec<String> = Vec::new();
        if let (Some(index), Some(id)) = (&self.inner.index, ids.first()) {
            for url in index.holders(*id).await {
                if !asked.contains(&url) && !self.inner.me.contains(&url) {
                    asked.push(url.clone());
                    indexed.push(url);
                }
            }
        }
        let mut job = resolve::resolve(&self.inner.client, &asked, targets, hash, output).await?;
        // Every holder the index named is a source, whether or not it answered the search:
        // the engine checks what each serves against the id.
        if job.id.is_some_and(|id| ids.contains(&id)) {
            for url in indexed {
                if !job.peers.contains(&url) {
                    job.peers.push(url);
                }
            }
        }
        job.peers.retain(|u| !self.inner.me.contains(u));
        Ok(job)
    }

    /// Lists a folder or glob on tiers of peers, most trusted first ([`folder::plan_tiered`]),
    /// one job per file below `output` (`keep_full_path`: under its whole share name).
    pub async fn plan_folder(
        &self,
        selection: &Selection,
        tiers: &[(&[String], Merge)],
        output: &Path,
        keep_full_path: bool,
    ) -> Result<Vec<Job>, folder::FolderError> {
        let mut jobs = folder::plan_tiered(&self.inner.client, tiers, selection, output, keep_full_path).await?;
        for job in &mut jobs {
            job.peers.retain(|u| !self.inner.me.contains(u));
        }
        Ok(jobs)
    }

    /// The queue for what was asked: folders and globs are listed now (on `peers`, all the
    /// owner's), their files becoming ready jobs; everything else is resolved when its turn
    /// comes.
    pub async fn plan(&self, wanted: Vec<Wanted>, peers: &[String]) -> Vec<Item> {
        let mut items = Vec::new();
        for Wanted { label, targets, output } in wanted {
            match targets.as_slice() {
                [one] if folder::is_selection(one) => {
                    let planned = match Selection::parse(one) {
                        Ok(selection) => self.plan_folder(&selection, &[(peers, Merge::Union)], &output, false).await,
                        Err(error) => Err(error),
                    };
                    match planned {
                        Ok(jobs) => items.extend(jobs.into_iter().map(Item::Ready)),
                        Err(error) => items.push(Item::Failed {
                            label,
                            error: error.to_string(),
                        }),
                    }
                }
                many if many.iter().any(|t| folder::is_selection(t)) => items.push(Item::Failed {
                    label,
                    error: "a folder or glob must be alone on its line".into(),
                }),
                _ => items.push(Item::Resolve { label, targets, output }),
            }
        }
        items
    }

    /// Starts one download in the background, in the table, with holder discovery alongside;
    /// a small file is synced when it is done. A job for a target that is downloading already
    /// adds its sources to that download.
    pub fn start(&self, job: Job) -> Started {
        self.spawn(job, true)
    }

    /// Runs one download to its end (see [`Fetcher::start`]).
    pub async fn one(&self, job: Job) -> Result<Outcome, FetchError> {
        self.start(job).finish().await
    }

    fn spawn(&self, mut job: Job, sync_small: bool) -> Started {
        job.peers.retain(|u| !self.inner.me.contains(u));
        let entry = match self.inner.downloads.register(&job) {
            Registered::Joined { status, progress } => {
                return Started {
                    status,
                    progress,
                    result: None,
                };
            }
            Registered::New(entry) => entry,
        };
        let status = entry.status.subscribe();
        let progress = entry.progress.clone();
        let (result_tx, result_rx) = oneshot::channel();
        if let Some(id) = job.id {
            // Holders that appear while the download runs join it; the finder ends when the
            // download drops its channel.
            let mut known = job.peers.clone();
            known.extend(self.inner.me.iter().cloned());
            let discover: Arc<dyn Discover> = match &self.inner.index {
                Some(index) => Arc::new(crate::discovery::Both(self.inner.discover.clone(), index.clone())),
                None => self.inner.discover.clone(),
            };
            let finder = crate::discovery::find_more(discover, id, known, self.inner.find_more_every, entry.more.clone());
            self.inner.downloads.spawn(finder);
            // Other downloaders of the id, through the nodes it fetches from (the swarm).
            let progress = entry.progress.clone();
            let joiner = crate::discovery::swarm::join(
                self.inner.client.clone(),
                id,
                self.swarm_as.clone(),
                job.peers.clone(),
                move || progress.done.load(std::sync::atomic::Ordering::Relaxed) / PIECE_SIZE,
                entry.more.clone(),
            );
            self.inner.downloads.spawn(joiner);
        }
        let this = self.clone();
        let super::downloads::Entry {
            progress: live,
            more: _,
            more_rx,
            cancel,
            status: status_tx,
        } = entry;
        self.inner.downloads.spawn(async move {
            let (name, target) = (job.name.clone(), job.target.clone());
            let result = this.run(job, live, cancel, more_rx, sync_small).await;
            let status = match &result {
                Ok(_) => Status::Done,
                Err(FetchError::Engine(EngineError::Cancelled { .. })) => Status::Paused,
                Err(error) => {
                    tracing::warn!(%name, %error, "download failed");
                    Status::Failed(error.to_string())
                }
            };
            let _ = result_tx.send(result);
            let _ = status_tx.send(status);
            this.inner.downloads.ended(&target);
        });
        Started {
            status,
            progress,
            result: Some(result_rx),
        }
    }

    /// The engine's run of one registered job, then the finishing hook and the sync.
    async fn run(
        &self,
        job: Job,
        progress: Arc<Progress>,
        cancel: tokio_util::sync::CancellationToken,
        more: tokio::sync::mpsc::Receiver<crate::engine::NewSource>,
        sync_small: bool,
    ) -> Result<Outcome, FetchError> {
        let engine = self.inner.downloads.engine().clone();
        let mut outcome = engine.run(job, progress, cancel, more).await?;
        let small = outcome.size <= PIECE_SIZE;
        let finished = self.inner.finished.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, FetchError> {
            if sync_small && small {
                // A small file is placed without an fsync of its own (engine::small).
                crate::engine::small::sync_file_system(&outcome.path).map_err(|source| FetchError::Sync {
                    path: outcome.path.clone(),
                    source,
                })?;
            }
            if let Some(finished) = finished {
                finished(&mut outcome).map_err(FetchError::Finished)?;
            }
            Ok(outcome)
        })
        .await
        .map_err(|e| FetchError::Ended(format!("a background task failed: {e}")))??;
        Ok(outcome)
    }

    /// Runs a queue: each item resolved (on `peers`) when its turn comes, checked against the
    /// rule and what is at its target, downloaded in the table; `concurrency` at once; the file
    /// system synced at the end. Stops taking new items when `stop` is cancelled.
    pub async fn queue(
        &self,
        items: Vec<Item>,
        peers: &[String],
        options: &QueueOptions,
        events: &dyn Events,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Tally {
        let tally = std::sync::Mutex::new(Tally::default());
        let count = |change: &dyn Fn(&mut Tally)| change(&mut tally.lock().unwrap_or_else(|p| p.into_inner()));
        futures_util::stream::iter(items)
            .map(|item| async {
                let fail = |name: &str, error: &str, progress: Option<&Arc<Progress>>| {
                    events.event(Event::Failed { name, error, progress });
                    count(&|t| t.failures.push((name.to_string(), error.to_string())));
                };
                if stop.is_cancelled() {
                    let name = match &item {
                        Item::Ready(job) => job.name.clone(),
                        Item::Resolve { label, .. } | Item::Failed { label, .. } => label.clone(),
                    };
                    return fail(&name, "stopped before it started", None);
                }
                let mut job = match item {
                    Item::Ready(job) => job,
                    Item::Failed { label, error } => return fail(&label, &error, None),
                    Item::Resolve { label, targets, output } => match self.resolve(peers, &targets, None, Some(&output)).await {
                        Ok(job) => job,
                        Err(error) => return fail(&label, &error.to_string(), None),
                    },
                };
                job.force = job.force || options.force;
                match self.check(&mut job, options.rule.clone()).await {
                    Ok(Existing::Complete) => {
                        events.event(Event::Skipped { job: &job });
                        return count(&|t| t.skipped += 1);
                    }
                    Ok(_) => {}
                    Err(error) => return fail(&job.name, &error.to_string(), None),
                }
                let name = job.name.clone();
                let started_at = Instant::now();
                let started = self.spawn(job.clone(), false);
                events.event(Event::Start {
                    job: &job,
                    progress: &started.progress,
                });
                let progress = started.progress.clone();
                match started.finish().await {
                    Ok(outcome) => {
                        events.event(Event::Done {
                            name: &name,
                            outcome: &outcome,
                            progress: &progress,
                            elapsed: started_at.elapsed(),
                        });
                        count(&|t| {
                            t.done += 1;
                            t.bytes += outcome.size;
                        });
                    }
                    Err(error) => fail(&name, &error.to_string(), Some(&progress)),
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
        let mut tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
        // Small files are placed without an fsync each: one sync of the file system instead.
        if let Some(dir) = options.sync.clone() {
            let synced = tokio::task::spawn_blocking(move || crate::engine::small::sync_file_system(&dir)).await;
            if let Ok(Err(error)) | Err(error) = synced.map_err(std::io::Error::other) {
                tally.failures.push(("(sync)".into(), error.to_string()));
            }
        }
        tally
    }

    /// Checks a job's target against `rule` (which may rewrite it) and against what is there:
    /// `Complete` when the file is there already, an error when something else is there and
    /// the job does not say `force`.
    pub async fn check(&self, job: &mut Job, rule: Option<TargetRule>) -> Result<Existing, FetchError> {
        let (target, id, force) = (job.target.clone(), job.id, job.force);
        let (target, found) = tokio::task::spawn_blocking(move || -> Result<(PathBuf, Existing), FetchError> {
            let target = match rule {
                Some(rule) => rule(&target).map_err(FetchError::Refused)?,
                None => target,
            };
            let found = folder::existing(&target, id);
            Ok((target, found))
        })
        .await
        .map_err(|e| FetchError::Ended(format!("a background task failed: {e}")))??;
        job.target = target;
        match found {
            Existing::Different if !force => Err(FetchError::Exists(job.target.clone())),
            found => Ok(found),
        }
    }
}
