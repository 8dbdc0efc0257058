//! Single-source downloads into the share: from a shoal node over `/content/`, checked against
//! the content id, or inline from a seed node's `query`.
//!
//! Whatever the source, the bytes go to a hidden partial file beside the target (the index skips
//! hidden files), are checked, synced, and only then linked under the final name with a call that
//! fails if the name exists: nothing is overwritten and no partial file ever has the final name.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use shoal_index::{ContentId, SafeName};
use tokio::io::AsyncWriteExt;

use crate::api::{Api, ApiError, Hit};
use crate::client::Client;

/// The URL of a path on the node at `base` (any path in `base` is replaced).
pub fn node_url(base: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(base)
        .and_then(|url| url.join(path))
        .map_err(|e| format!("bad peer URL {base}: {e}"))
}

/// Fetches a whole small file by content id and checks it.
pub async fn fetch_verified_bytes(client: &Client, base: &str, id: ContentId, limit: u64) -> Result<Vec<u8>, String> {
    let url = node_url(base, &format!("/content/{id}"))?;
    let response = client.http().get(url.clone()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let bytes = crate::client::read_capped(response, url.as_str(), limit as usize)
        .await
        .map_err(|e| e.to_string())?;
    if blake3::hash(&bytes) != blake3::Hash::from(id.0) {
        return Err(format!("GET {url}: the data does not match its content id"));
    }
    Ok(bytes)
}

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
    match (&hit.content, hit.id) {
        (Some(content), _) => file.write_all(content).await.map_err(write_error)?,
        (None, Some(id)) => {
            let url = node_url(&hit.url, &format!("/content/{id}")).map_err(failed)?;
            let response = api
                .client()
                .http()
                .get(url.clone())
                .send()
                .await
                .map_err(|e| failed(format!("GET {url}: {e}")))?;
            if !response.status().is_success() {
                return Err(failed(format!("GET {url}: HTTP {}", response.status())));
            }
            let mut hasher = blake3::Hasher::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = tokio::time::timeout(api.options().request_timeout, stream.next())
                .await
                .map_err(|_| failed(format!("GET {url}: no data for {:?}", api.options().request_timeout)))?
            {
                let chunk = chunk.map_err(|e| failed(format!("GET {url}: {e}")))?;
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(write_error)?;
            }
            if hasher.finalize() != blake3::Hash::from(id.0) {
                return Err(failed(format!("GET {url}: the data does not match content id {id}")));
            }
        }
        (None, None) => return Err(failed(format!("{} gave neither content nor a content id", hit.url))),
    }
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
