//! Listing a shared folder on peers: `shoal.list_folder` page after page, from every peer given
//! at once, merged into one list of files, each with the holders that listed it.
//!
//! A listing is a peer's claim. Each page is checked where it enters
//! ([`FolderPage::from_value`]: safe names under the folder, valid ids, bounded sizes, a cursor
//! that moves forward), each peer's listing is bounded ([`MAX_FOLDER_FILES`], [`MAX_PAGES`]), all
//! the peers of one listing together hold at most [`MAX_LISTING_BYTES`] of names (so that many
//! lying peers cannot fill memory with long names between them), and a
//! file is believed only once its bytes check against its content id (the engine does that).
//! When peers list different ids under one path, the id most of them list wins (ties: the
//! earliest peer in the order given).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_index::ContentId;
use shoal_xmlrpc::Value;

use super::MAX_FANOUT;
use crate::net::{CallError, Client};
use crate::proto::answers::{FolderEntry, FolderPage};
use crate::proto::limits::LIST_ANSWER_BYTES;

/// Most files one folder listing takes from one peer.
pub const MAX_FOLDER_FILES: usize = 100_000;
/// Most pages asked of one peer for one folder (an honest page holds up to 1,000 files).
pub const MAX_PAGES: usize = 1_000;
/// Most bytes of names all the peers of one listing may give together.
pub const MAX_LISTING_BYTES: usize = 64 << 20;
/// How long one page may take.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// A file of a merged listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// Its name in the holders' shares.
    pub path: String,
    pub size: u64,
    pub id: ContentId,
    /// Base URLs of the peers that listed it with this id.
    pub holders: Vec<String>,
}

/// Every file under `folder` (no trailing `/`; empty: the whole share) on one peer, page by page.
pub async fn list_folder(client: &Client, peer: &str, folder: &str) -> Result<Vec<FolderEntry>, CallError> {
    list_folder_within(client, peer, folder, &AtomicUsize::new(MAX_LISTING_BYTES)).await
}

/// [`list_folder`], taking the bytes of the names it keeps from `budget`; once that is spent, it
/// stops asking and keeps what it has.
pub async fn list_folder_within(client: &Client, peer: &str, folder: &str, budget: &AtomicUsize) -> Result<Vec<FolderEntry>, CallError> {
    let mut files: Vec<FolderEntry> = Vec::new();
    let mut cursor = String::new();
    for _ in 0..MAX_PAGES {
        let answer = client
            .call(
                peer,
                "shoal.list_folder",
                &[Value::String(folder.to_string()), Value::String(cursor.clone())],
                PAGE_DEADLINE,
                LIST_ANSWER_BYTES,
            )
            .await?;
        let page = FolderPage::from_value(answer, folder, &cursor);
        let room = MAX_FOLDER_FILES - files.len();
        let mut spent = false;
        for file in page.files.into_iter().take(room) {
            let cost = file.path.len() + std::mem::size_of::<FolderEntry>();
            if budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(cost))
                .is_err()
            {
                spent = true;
                break;
            }
            files.push(file);
        }
        match page.next {
            Some(next) if !spent && files.len() < MAX_FOLDER_FILES => cursor = next,
            _ => break,
        }
    }
    // Pages are in name order and each starts after the last; a lying peer may still repeat
    // names across pages: keep one entry per path.
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// Lists `folder` on `peers` (at most [`MAX_FANOUT`]) at once and merges the listings. Returns
/// the files in name order and, for each peer that failed, why.
pub async fn list_on_peers(client: &Client, peers: &[String], folder: &str) -> (Vec<ListedFile>, Vec<(String, CallError)>) {
    let budget = AtomicUsize::new(MAX_LISTING_BYTES);
    let budget = &budget;
    let calls = peers
        .iter()
        .take(MAX_FANOUT)
        .map(|peer| async move { (peer.clone(), list_folder_within(client, peer, folder, budget).await) });
    let mut failures = Vec::new();
    // path -> the (id, size) claims, each with the peers that made it, in peer order.
    let mut claims: BTreeMap<String, Vec<(ContentId, u64, Vec<String>)>> = BTreeMap::new();
    for (peer, listed) in futures_util::future::join_all(calls).await {
        let files = match listed {
            Ok(files) => files,
            Err(error) => {
                failures.push((peer, error));
                continue;
            }
        };
        for file in files {
            let versions = claims.entry(file.path).or_default();
            match versions.iter_mut().find(|(id, size, _)| *id == file.id && *size == file.size) {
                Some((_, _, holders)) => holders.push(peer.clone()),
                None => versions.push((file.id, file.size, vec![peer.clone()])),
            }
        }
    }
    let files = claims
        .into_iter()
        .filter_map(|(path, versions)| {
            // The most listed version; `max_by_key` keeps the last of equals, so reverse first.
            let (id, size, holders) = versions.into_iter().rev().max_by_key(|(_, _, holders)| holders.len())?;
            Some(ListedFile { path, size, id, holders })
        })
        .collect();
    (files, failures)
}
