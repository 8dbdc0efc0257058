//! The node's background downloads: started by `fetch`, `shoal.download` or `shoal get` handing
//! over, listed with their progress, resumed when the node starts again.
//!
//! Each download is one task on the node's tracker, under a child of the node's cancellation
//! token; a second request for the same target adds its sources to the running download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{Engine, Job, NewSource, Outcome, Progress};

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

/// The table of downloads of a node.
pub struct Downloads {
    engine: Engine,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    table: Mutex<HashMap<PathBuf, Running>>,
}

/// Called with the outcome of a finished download (the node indexes files in its share).
pub type OnDone = Box<dyn FnOnce(Outcome) -> Result<(), String> + Send>;

impl Downloads {
    pub fn new(engine: Engine, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Downloads {
            engine,
            tracker,
            shutdown,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Running>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `job` in the background (or adds its sources to the running download of the same
    /// target). Returns a receiver that sees the download's status change.
    pub fn start(&self, job: Job, on_done: OnDone) -> watch::Receiver<Status> {
        let mut table = self.lock();
        if let Some(running) = table.get(&job.target)
            && *running.status.borrow() == Status::Running
        {
            for peer in job.peers {
                let _ = running.more.try_send(NewSource::Peer(peer));
            }
            for mirror in job.mirrors {
                let _ = running.more.try_send(NewSource::Mirror(mirror));
            }
            return running.status.clone();
        }
        let progress = Arc::new(Progress::default());
        let (more_tx, more_rx) = mpsc::channel(64);
        let (status_tx, status_rx) = watch::channel(Status::Running);
        let cancel = self.shutdown.child_token();
        table.insert(
            job.target.clone(),
            Running {
                name: job.name.clone(),
                id: job.id.map(|id| id.to_string()),
                progress: progress.clone(),
                more: more_tx,
                cancel: cancel.clone(),
                status: status_rx.clone(),
            },
        );
        let engine = self.engine.clone();
        self.tracker.spawn(async move {
            let name = job.name.clone();
            let status = match engine.run(job, progress, cancel, more_rx).await {
                // Indexing the new file writes the store: off the async runtime.
                Ok(outcome) => match tokio::task::spawn_blocking(move || on_done(outcome)).await {
                    Ok(Ok(())) => Status::Done,
                    Ok(Err(error)) => Status::Failed(error),
                    Err(error) => Status::Failed(format!("indexing the finished file failed: {error}")),
                },
                Err(crate::engine::EngineError::Cancelled { .. }) => Status::Paused,
                Err(error) => {
                    tracing::warn!(%name, %error, "download failed");
                    Status::Failed(error.to_string())
                }
            };
            let _ = status_tx.send(status);
        });
        status_rx
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
