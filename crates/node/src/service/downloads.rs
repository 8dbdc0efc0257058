//! The table of downloads: every download the fetcher ([`super::fetch`]) runs is entered here
//! with its progress, its channel of new sources, its cancellation and its status, so that it
//! can be listed (`shoal.downloads`), paused, cancelled and resumed. The table runs nothing
//! itself.
//!
//! Each download is one task on the tracker, under a child of the table's cancellation token; a
//! second request for the same target adds its sources to the running download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{Engine, Job, NewSource, Progress};

/// Where a download stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Running,
    Done,
    Failed(String),
    /// Stopped by its owner; its progress is kept and `resume` continues it.
    Paused,
}

impl Status {
    /// Every status's name, in the order of [`Status::name`].
    pub const NAMES: [&'static str; 4] = ["running", "done", "failed", "paused"];

    /// The status as every frontend spells it (XML-RPC, the JSON API, `/metrics`, the CLI).
    pub const fn name(&self) -> &'static str {
        match self {
            Status::Running => Self::NAMES[0],
            Status::Done => Self::NAMES[1],
            Status::Failed(_) => Self::NAMES[2],
            Status::Paused => Self::NAMES[3],
        }
    }

    /// Why it failed, for a failed download.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Status::Failed(reason) => Some(reason),
            _ => None,
        }
    }
}

/// One row of `shoal.downloads`.
#[derive(Debug, Clone)]
pub struct DownloadInfo {
    pub name: String,
    pub target: String,
    pub id: Option<String>,
    pub size: u64,
    pub done: u64,
    pub live_sources: usize,
    pub sources: Vec<crate::engine::SourceStat>,
    pub status: Status,
}

struct Running {
    name: String,
    id: Option<String>,
    progress: Arc<Progress>,
    more: mpsc::Sender<NewSource>,
    cancel: CancellationToken,
    status: watch::Receiver<Status>,
}

/// How many downloads that ended the table keeps listed; older ones are forgotten (their resume
/// records stay), so that a node or a queue running for days holds a bounded table.
pub const MAX_ENDED: usize = 1024;

/// The table of downloads of a node.
pub struct Downloads {
    engine: Engine,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    table: Mutex<HashMap<PathBuf, Running>>,
    /// Targets of downloads that ended, oldest first (at most [`MAX_ENDED`] of them listed).
    ended: Mutex<std::collections::VecDeque<PathBuf>>,
}

/// A download the table has just taken in: what its task needs to run it.
pub struct Entry {
    pub progress: Arc<Progress>,
    /// New sources for the download (a second request for the same target, found holders).
    pub more: mpsc::Sender<NewSource>,
    pub more_rx: mpsc::Receiver<NewSource>,
    pub cancel: CancellationToken,
    /// Where the task says how the download ended.
    pub status: watch::Sender<Status>,
}

/// What [`Downloads::register`] did with a job.
pub enum Registered {
    /// A new download: run it.
    New(Entry),
    /// The same target was running already: the job's sources were added to it.
    Joined {
        status: watch::Receiver<Status>,
        progress: Arc<Progress>,
    },
}

impl Downloads {
    pub fn new(engine: Engine, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Downloads {
            engine,
            tracker,
            shutdown,
            table: Mutex::new(HashMap::new()),
            ended: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Says that the download of `target` ended (its status is no longer `Running`): the
    /// oldest ended downloads beyond [`MAX_ENDED`] leave the table. One started again since it
    /// ended is running, and stays.
    pub fn ended(&self, target: &Path) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.retain(|t| t != target);
        ended.push_back(target.to_path_buf());
        while ended.len() > MAX_ENDED {
            let Some(oldest) = ended.pop_front() else { break };
            let mut table = self.lock();
            if table.get(&oldest).is_some_and(|r| *r.status.borrow() != Status::Running) {
                table.remove(&oldest);
            }
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Running>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `job` into the table, or adds its sources to the running download of the same
    /// target. A new entry is `Running` until its task says otherwise through
    /// [`Entry::status`].
    pub fn register(&self, job: &Job) -> Registered {
        let mut table = self.lock();
        if let Some(running) = table.get(&job.target)
            && *running.status.borrow() == Status::Running
        {
            for peer in &job.peers {
                let _ = running.more.try_send(NewSource::Peer(peer.clone()));
            }
            for mirror in &job.mirrors {
                let _ = running.more.try_send(NewSource::Mirror(mirror.clone()));
            }
            return Registered::Joined {
                status: running.status.clone(),
                progress: running.progress.clone(),
            };
        }
        let progress = Arc::new(Progress::default());
        let (more, more_rx) = mpsc::channel(64);
        let (status, status_rx) = watch::channel(Status::Running);
        let cancel = self.shutdown.child_token();
        table.insert(
            job.target.clone(),
            Running {
                name: job.name.clone(),
                id: job.id.map(|id| id.to_string()),
                progress: progress.clone(),
                more: more.clone(),
                cancel: cancel.clone(),
                status: status_rx,
            },
        );
        Registered::New(Entry {
            progress,
            more,
            more_rx,
            cancel,
            status,
        })
    }

    /// The channel that brings new sources to the running download of `target`.
    pub fn sources_of(&self, target: &Path) -> Option<mpsc::Sender<NewSource>> {
        self.lock()
            .get(target)
            .filter(|r| *r.status.borrow() == Status::Running)
            .map(|r| r.more.clone())
    }

    /// Runs `work` on the node's task tracker (it ends with the node).
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// Pauses the download of `target`, keeping its progress. Returns false when it is not
    /// running.
    pub fn pause(&self, target: &Path) -> bool {
        match self.lock().get(target) {
            Some(running) if *running.status.borrow() == Status::Running => {
                running.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Stops the download of `target` for good: its progress record and partial file are
    /// removed. Returns false when the node knows no such download.
    pub async fn cancel(&self, target: &Path) -> bool {
        let status = self.lock().get(target).map(|r| {
            r.cancel.cancel();
            r.status.clone()
        });
        let known_record = self.engine.records().get(target).ok().flatten().is_some();
        if status.is_none() && !known_record {
            return false;
        }
        if let Some(mut status) = status {
            while *status.borrow_and_update() == Status::Running {
                if status.changed().await.is_err() {
                    break;
                }
            }
        }
        self.lock().remove(target);
        if let Err(error) = self.engine.records().remove(target) {
            tracing::warn!(%error, "could not remove a cancelled download's record");
        }
        let _ = tokio::fs::remove_file(crate::engine::part_path(target)).await;
        true
    }

    /// The saved job of a download that is not running (paused, failed, or left by a restart).
    pub fn saved_job(&self, target: &Path) -> Option<Job> {
        if self.lock().get(target).is_some_and(|r| *r.status.borrow() == Status::Running) {
            return None;
        }
        self.engine.records().get(target).ok().flatten().map(Job::from)
    }

    /// Every download this node knows of, running or finished since it started.
    /// Verified bytes the node at `base` (a node URL) gave the running downloads of content
    /// `id` (for upload slots: tit for tat).
    pub fn received_from(&self, id: &str, base: &str) -> u64 {
        let prefix = format!("{base}/content/");
        self.lock()
            .values()
            .filter(|r| r.id.as_deref() == Some(id))
            .flat_map(|r| r.progress.sources())
            .filter(|s| s.url.starts_with(&prefix))
            .map(|s| s.bytes)
            .sum()
    }

    pub fn list(&self) -> Vec<DownloadInfo> {
        let mut rows: Vec<DownloadInfo> = self
            .lock()
            .iter()
            .map(|(target, r)| {
                let sources = r.progress.sources();
                DownloadInfo {
                    name: r.name.clone(),
                    target: target.to_string_lossy().into_owned(),
                    id: r.id.clone(),
                    size: r.progress.total.load(Ordering::Relaxed),
                    done: r.progress.done.load(Ordering::Relaxed),
                    live_sources: sources.iter().filter(|s| s.state == crate::engine::SourceState::Live).count(),
                    sources,
                    status: r.status.borrow().clone(),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.target.cmp(&b.target));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn every_status_has_one_name() {
        let all = [Status::Running, Status::Done, Status::Failed("disk full".into()), Status::Paused];
        assert_eq!(all.each_ref().map(|s| s.name()), Status::NAMES);
        assert_eq!(
            all.each_ref().map(|s| s.detail().map(String::from)),
            [None, None, Some("disk full".into()), None]
        );
    }
}
