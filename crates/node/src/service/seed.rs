//! Files from seed nodes: content that came inline from a seed node's `query` (bounded by the
//! XML-RPC content limit), placed into the share; and small verified reads by content id.
//!
//! Whatever the source, the bytes go to a hidden partial file beside the target (the index skips
//! hidden files), are checked, synced, and only then linked under the final name with a call that
//! fails if the name exists: nothing is overwritten and no partial file ever has the final name.

use std::path::{Path, PathBuf};

use shoal_index::{ContentId, SafeName};
use tokio::io::AsyncWriteExt;

use super::api::{Api, ApiError};
use crate::discovery::Hit;
use crate::engine::place::place_file;
use crate::net::{Client, Trust, node_url};

/// Fetches a whole small file by content id and checks it. `limit` is the largest size
/// accepted (the caller's own bound, not the holder's claim).
pub async fn fetch_verified_bytes(client: &Client, base: &str, id: ContentId, limit: u64) -> Result<Vec<u8>, String> {
    let url = node_url(base, &format!("/content/{id}")).map_err(|e| e.to_string())?;
    let response = client
        .request(reqwest::Method::GET, &url, Trust::Peer)
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let bytes = client
        .read_capped(response, url.as_str(), limit as usize)
        .await
        .map_err(|e| e.to_string())?;
    if blake3::hash(&bytes) != blake3::Hash::from(id.0) {
        return Err(format!("GET {url}: the data does not match its content id"));
    }
    Ok(bytes)
}

/// A partial file that is removed unless it was placed under its final name.
pub struct PartFile {
    pub path: PathBuf,
    placed: bool,
}

impl PartFile {
    /// A fresh hidden partial file name beside `target`.
    pub fn beside(target: &Path) -> Self {
        let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tag = hex::encode(rand::random::<[u8; 4]>());
        PartFile {
            path: target.with_file_name(format!(".{file_name}.{tag}.shoal-part")),
            placed: false,
        }
    }

    /// Syncs the data and links it under `target`, failing if `target` exists.
    pub async fn place(mut self, file: tokio::fs::File, target: &Path, name: &str) -> Result<(), ApiError> {
        file.sync_all()
            .await
            .map_err(|e| ApiError::Internal(format!("sync {}: {e}", self.path.display())))?;
        drop(file);
        match place_file(&self.path, target, false).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(ApiError::Exists(name.to_string())),
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "place {} at {}: {e}",
                    self.path.display(),
                    target.display()
                )));
            }
        }
        self.placed = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Downloads what a search found into `target`, then indexes it.
pub async fn fetch_hit(api: &Api, name: &SafeName, target: &Path, hit: Hit) -> Result<(), ApiError> {
    let failed = |reason: String| ApiError::Download {
        name: name.to_string(),
        reason,
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("create {}: {e}", parent.display())))?;
    }
    let part = PartFile::beside(target);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&part.path)
        .await
        .map_err(|e| ApiError::Internal(format!("create {}: {e}", part.path.display())))?;
    let write_error = |e: std::io::Error| ApiError::Internal(format!("write {}: {e}", part.path.display()));
    // Only inline content comes this way: a holder named by a content id is downloaded by the
    // engine, piece by verified piece, never as one unbounded stream.
    let Some(content) = &hit.content else {
        return Err(failed("the holder gave no content".into()));
    };
    file.write_all(content).await.map_err(write_error)?;
    file.flush().await.map_err(write_error)?;
    part.place(file, target, name.as_str()).await?;
    index_placed(api, name, target).await
}

/// Records a file just placed in the share, so that it is served at once.
pub async fn index_placed(api: &Api, name: &SafeName, target: &Path) -> Result<(), ApiError> {
    let share = api.share().clone();
    let (name, target) = (name.clone(), target.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let hashed = shoal_index::hash_file(&target).map_err(|e| ApiError::Internal(e.to_string()))?;
        share.add_file(&name, hashed).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}
