//! Putting a finished file under its final name without ever overwriting by accident, and
//! where a download's files are made ([`Spot`]): by path, or beneath a directory held open
//! ([`super::Beneath`]) so that no symlink on the way is followed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_index::Dir;

use super::{Beneath, EngineError, part_path};

/// Opens the spot for `target` (see [`Spot::open`]) off the async runtime: an error when
/// something is at the target's name already, unless `force`.
pub(super) async fn open_spot(target: &Path, beneath: Option<&Beneath>, force: bool) -> Result<Arc<Spot>, EngineError> {
    let (path, beneath) = (target.to_path_buf(), beneath.cloned());
    let (exists, spot) = tokio::task::spawn_blocking(move || Spot::open(&path, beneath.as_ref()).map(|spot| (spot.target_exists(), spot)))
        .await
        .map_err(|e| EngineError::Task(e.to_string()))??;
    if !force && exists {
        return Err(EngineError::Exists(target.to_path_buf()));
    }
    Ok(Arc::new(spot))
}

/// Moves a complete partial file to `target`: by a hard link that fails with `AlreadyExists`
/// when `target` exists (then the partial file is removed), or, with `replace`, by a rename
/// over it. Without a directory sync: [`Spot::place`] adds one for a large file, and a batch of
/// small files is synced once at its end ([`crate::engine::small`]).
pub fn link_into_place(part: &Path, target: &Path, replace: bool) -> std::io::Result<()> {
    if replace {
        std::fs::rename(part, target)
    } else {
        std::fs::hard_link(part, target)?;
        let _ = std::fs::remove_file(part);
        Ok(())
    }
}

/// Where one download's partial file and final name are: beside the target by path (a node's
/// downloads, checked against its output roots), or in the target's directory opened beneath a
/// [`Beneath`] root with no symlink on the way, every operation then relative to that
/// directory's descriptor (`shoal get` of folders and lists under `-o`: a directory symlink
/// another user plants there is refused, not followed, even one swapped in mid-download).
#[derive(Debug)]
pub(crate) struct Spot {
    target: PathBuf,
    part: PathBuf,
    dir: Option<Dir>,
}

impl Spot {
    /// The spot for `target` (blocking). With `beneath`, the target must lie below its base
    /// under a checked name; the directories above it are opened beneath the root, made where
    /// missing, and a symlink or non-directory on the way is an error.
    pub fn open(target: &Path, beneath: Option<&Beneath>) -> Result<Spot, EngineError> {
        let part = part_path(target);
        let Some(beneath) = beneath else {
            return Ok(Spot {
                target: target.to_path_buf(),
                part,
                dir: None,
            });
        };
        let refused = |reason: String| EngineError::Io {
            step: "create directory",
            path: target.to_path_buf(),
            source: io::Error::other(reason),
        };
        let name = target
            .strip_prefix(&beneath.base)
            .ok()
            .and_then(Path::to_str)
            .and_then(|relative| shoal_index::check_name(relative).ok())
            .ok_or_else(|| refused(format!("not a name below {}", beneath.base.display())))?;
        let dir = beneath.root.create_parent_dirs(&name).map_err(|e| match e {
            shoal_index::NameError::Outside { .. } => refused(format!(
                "a symlink on the way below {} (it is not followed)",
                beneath.base.display()
            )),
            other => refused(other.to_string()),
        })?;
        Ok(Spot {
            target: target.to_path_buf(),
            part,
            dir: Some(dir),
        })
    }

    /// The partial file's path (for messages, and for reading it back to hash it).
    pub fn part(&self) -> &Path {
        &self.part
    }

    fn part_name(&self) -> String {
        self.part.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// True when anything is at the target's name already, a symlink included.
    pub fn target_exists(&self) -> bool {
        match &self.dir {
            Some(dir) => dir.exists(dir.file_name()).unwrap_or(true),
            None => std::fs::symlink_metadata(&self.target).is_ok(),
        }
    }

    /// True when a partial file is there (to resume).
    pub fn part_exists(&self) -> bool {
        match &self.dir {
            Some(dir) => dir.exists(&self.part_name()).unwrap_or(false),
            None => self.part.exists(),
        }
    }

    /// Makes the directories above the target (by path; beneath a root they were made on opening).
    pub fn make_dirs(&self) -> Result<(), EngineError> {
        match (&self.dir, self.target.parent()) {
            (None, Some(parent)) => std::fs::create_dir_all(parent).map_err(|source| EngineError::Io {
                step: "create directory",
                path: parent.to_path_buf(),
                source,
            }),
            _ => Ok(()),
        }
    }

    /// Opens the partial file: a fresh download removes any old one and creates it anew, never
    /// through a symlink (`O_EXCL` with `O_NOFOLLOW`); a resumed one reopens it, refusing a
    /// symlink or anything but a regular file.
    pub fn open_part(&self, fresh: bool) -> io::Result<File> {
        let Some(dir) = &self.dir else {
            return super::disk::open_part(&self.part, fresh);
        };
        let name = self.part_name();
        if !fresh {
            match dir.open_existing_rw(&name) {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.remove_part_quietly(dir, &name)?;
        dir.create_new(&name)
    }

    fn remove_part_quietly(&self, dir: &Dir, name: &str) -> io::Result<()> {
        match dir.remove(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the partial file, if any.
    pub fn remove_part(&self) {
        let _ = match &self.dir {
            Some(dir) => dir.remove(&self.part_name()),
            None => std::fs::remove_file(&self.part),
        };
    }

    /// Puts the complete partial file under the target's name: by a link that fails with
    /// `AlreadyExists` when the name is taken, or with `replace` by a rename over it; with
    /// `sync`, then syncs the directory (blocking).
    pub fn place(&self, replace: bool, sync: bool) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            link_into_place(&self.part, &self.target, replace)?;
            if sync
                && let Some(parent) = self.target.parent()
                && let Ok(handle) = File::open(parent)
            {
                let _ = handle.sync_all();
            }
            return Ok(());
        };
        let part = self.part_name();
        if replace {
            dir.rename(&part, dir.file_name())?;
        } else {
            dir.link_no_clobber(&part, dir.file_name())?;
            let _ = dir.remove(&part);
        }
        if sync {
            let _ = dir.sync();
        }
        Ok(())
    }
}
