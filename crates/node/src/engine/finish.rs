//! The last phase of a download: every piece is written. [`Finishing::finish`] syncs the
//! partial file, checks it whole against the expected content id when its pieces were not
//! checked one by one (mirrors only: nothing gave verification data), puts it under its final
//! name (a no-clobber link, or a rename with `force`) and removes the resume record.

use std::sync::Arc;

use shoal_index::ContentId;

use super::disk::PartFile;
use super::live::Landed;
use super::{Engine, EngineError, Job, Outcome, Progress};

/// A download whose pieces are all written.
pub(super) struct Finishing<'a> {
    engine: &'a Engine,
    job: Job,
    size: u64,
    /// Every piece was checked against the content id as it came.
    checked: bool,
    disk: PartFile,
    progress: Arc<Progress>,
}

impl<'a> Finishing<'a> {
    pub fn new(engine: &'a Engine, job: Job, landed: Landed, progress: Arc<Progress>) -> Finishing<'a> {
        Finishing {
            engine,
            job,
            size: landed.layout.size,
            checked: landed.layout.hashes.is_some(),
            disk: landed.disk,
            progress,
        }
    }

    /// Syncs the file, checks it whole against the content id (when its pieces were not checked)
    /// and computes its outboard, and moves it into place.
    pub async fn finish(self) -> Result<Outcome, EngineError> {
        let target = self.job.target.clone();
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || disk.sync())
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
        // With piece hashes every byte was checked against the content id already, so the file
        // is not read again. A peer's outboard is proven only down to the pieces (the pairs inside
        // a piece are never checked), so it is not handed on: whoever indexes the file computes
        // its own (hostile.rs: a corrupt outboard must not be kept). Without piece hashes (mirrors
        // only) the whole file is hashed here and checked against the expected id.
        let (id, outboard) = match (self.checked, self.job.id) {
            (true, Some(id)) => (id, None),
            (_, expected) => {
                let (id, outboard) = self.hash_whole().await?;
                if let Some(expected) = expected
                    && expected != id
                {
                    self.disk.spot().remove_part();
                    let key = target.clone();
                    self.engine.store(move |records| records.remove(&key)).await?;
                    return Err(EngineError::HashMismatch { expected, actual: id });
                }
                (id, Some(outboard))
            }
        };
        let placed = {
            let (spot, replace) = (self.disk.spot().clone(), self.job.force);
            tokio::task::spawn_blocking(move || spot.place(replace, true))
                .await
                .map_err(|e| EngineError::Task(e.to_string()))?
        };
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(EngineError::Exists(target)),
            Err(source) => {
                return Err(EngineError::Io {
                    step: "place",
                    path: target,
                    source,
                });
            }
        }
        let key = target.clone();
        self.engine.store(move |records| records.remove(&key)).await?;
        Ok(Outcome {
            path: target,
            id,
            size: self.size,
            outboard,
            sources: self.progress.sources(),
        })
    }

    /// Hashes the whole partial file: its content id and outboard.
    async fn hash_whole(&self) -> Result<(ContentId, Vec<u8>), EngineError> {
        let part = self.disk.path().to_path_buf();
        let path = part.clone();
        let hashed = tokio::task::spawn_blocking(move || shoal_index::hash_file(&path))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
            .map_err(|e| EngineError::Io {
                step: "hash",
                path: part,
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok((hashed.id, hashed.outboard))
    }
}
