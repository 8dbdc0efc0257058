//! Putting a finished file under its final name without ever overwriting by accident.

use std::path::Path;

/// Moves a complete, synced partial file to `target`: by a hard link that fails with
/// `AlreadyExists` when `target` exists (then the partial file is removed), or, with `replace`,
/// by a rename over it; then syncs the directory so that the new name survives a power cut.
pub async fn place_file(part: &Path, target: &Path, replace: bool) -> std::io::Result<()> {
    if replace {
        tokio::fs::rename(part, target).await?;
    } else {
        tokio::fs::hard_link(part, target).await?;
        let _ = tokio::fs::remove_file(part).await;
    }
    if let Some(parent) = target.parent()
        && let Ok(dir) = tokio::fs::File::open(parent).await
    {
        let _ = dir.sync_all().await;
    }
    Ok(())
}

/// What [`place_file`] does, blocking and without the directory sync: a no-clobber link
/// (or, with `replace`, a rename). For many small files placed in a row, whose caller syncs the
/// file system once at the end ([`crate::engine::small`]).
pub fn link_into_place(part: &Path, target: &Path, replace: bool) -> std::io::Result<()> {
    if replace {
        std::fs::rename(part, target)
    } else {
        std::fs::hard_link(part, target)?;
        let _ = std::fs::remove_file(part);
        Ok(())
    }
}
