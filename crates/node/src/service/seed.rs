//! Files from seed nodes: content that came inline from a seed node's `query` (bounded by the
//! XML-RPC content limit), placed into the share; and small verified reads by content id.
//!
//! Inline content goes to a hidden partial file created beneath the share root (the index skips
//! hidden files), is synced, and only then linked under the final name with a call that fails if
//! the name exists: nothing is overwritten and no partial file ever has the final name.

use shoal_index::{ContentId, SafeName};

use std::sync::Arc;

use shoal_index::{Root, Share};

use super::error::ApiError;
use crate::discovery::Hit;
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

/// Places content that came inline from a seed node's `query` into the share under `name`:
/// beneath the share root without following a symlink, into a hidden partial file created with
/// `O_EXCL`, synced, then linked under the final name with a call that fails if the name exists.
/// Directories it created are removed again when it fails. The file is indexed at once.
pub async fn fetch_hit(root: &Arc<Root>, share: &Arc<Share>, name: &SafeName, hit: Hit) -> Result<(), ApiError> {
    let Some(content) = hit.content else {
        // A holder named by a content id is downloaded by the engine, piece by verified piece.
        return Err(ApiError::Download {
            name: name.to_string(),
            reason: "the holder gave no content".into(),
        });
    };
    let (root, share, name) = (root.clone(), share.clone(), name.clone());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let dir = root.create_parent_dirs(&name)?;
        let final_name = dir.file_name().to_string();
        let part = format!(".{final_name}.{}.shoal-part", hex::encode(rand::random::<[u8; 4]>()));
        let placed = (|| -> std::io::Result<()> {
            let mut file = dir.create_new(&part)?;
            file.write_all(&content)?;
            file.sync_all()?;
            dir.link_no_clobber(&part, &final_name)?;
            dir.sync()
        })();
        let _ = dir.remove(&part);
        if let Err(error) = placed {
            let _ = root.remove_created(dir.created());
            return Err(if error.kind() == std::io::ErrorKind::AlreadyExists {
                ApiError::Exists(name.to_string())
            } else {
                ApiError::Internal(format!("placing {name}: {error}"))
            });
        }
        share
            .add_file(&name, shoal_index::hash_bytes(&content))
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}
