//! Listing a shared folder on peers: `shoal.list_folder` page after page, from every peer given
//! at once, merged into one list of files, each with the holders that listed it.
//!
//! A listing is a peer's claim. Each page is checked where it enters
//! ([`crate::proto::calls::FolderPage::from_value`]: safe names under the folder, valid ids, bounded sizes, a cursor
//! that moves forward), each peer's listing is bounded ([`MAX_FOLDER_FILES`], [`MAX_PAGES`]), all
//! the peers of one listing together hold at most [`MAX_LISTING_BYTES`] of names (so that many
//! lying peers cannot fill memory with long names between them), and a
//! file is believed only once its bytes check against its content id (the engine does that).
//! Listings are never voted on: when peers list different ids under one path, or (for peers
//! learnt from strangers) different paths, [`merge`] says so and nothing is fetched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_index::ContentId;

use super::MAX_FANOUT;
use crate::net::{CallError, Client, NodeClient};
use crate::proto::calls::{FolderEntry, ListFolder};

/// Most files one folder listing takes from one peer.
pub const MAX_FOLDER_FILES: usize = 100_000;
/// Most pages asked of one peer for one folder (an honest page holds up to 1,000 files).
pub const MAX_PAGES: usize = 1_000;
/// Most bytes of names all the peers of one listing may give together.
pub const MAX_LISTING_BYTES: usize = 64 << 20;

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
    let node = NodeClient::new(client, peer);
    let mut files: Vec<FolderEntry> = Vec::new();
    let mut call = ListFolder {
        folder: folder.to_string(),
        cursor: String::new(),
    };
    for _ in 0..MAX_PAGES {
        let page = node.list_folder(&call).await?;
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
            Some(next) if !spent && files.len() < MAX_FOLDER_FILES => call.cursor = next,
            _ => break,
        }
    }
    // Pages are in name order and each starts after the last; a lying peer may still repeat
    // names across pages: keep one entry per path.
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

/// What every peer asked listed, and why the others failed.
#[derive(Debug, Default)]
pub struct Listings {
    /// Each peer that answered, with its files in name order.
    pub listed: Vec<(String, Vec<FolderEntry>)>,
    pub failures: Vec<(String, CallError)>,
}

/// Lists `folder` on `peers` (at most [`MAX_FANOUT`]) at once.
pub async fn list_on_peers(client: &Client, peers: &[String], folder: &str) -> Listings {
    let budget = AtomicUsize::new(MAX_LISTING_BYTES);
    let budget = &budget;
    let calls = peers
        .iter()
        .take(MAX_FANOUT)
        .map(|peer| async move { (peer.clone(), list_folder_within(client, peer, folder, budget).await) });
    let mut listings = Listings::default();
    for (peer, listed) in futures_util::future::join_all(calls).await {
        match listed {
            Ok(files) => listings.listed.push((peer, files)),
            Err(error) => listings.failures.push((peer, error)),
        }
    }
    listings
}

/// How the listings of several peers become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Peers the owner named: every path any of them lists (one may hold more than another).
    Union,
    /// Peers the node learnt from strangers: the same paths from every peer that lists any,
    /// so that no stranger adds a file the others lack.
    Unanimous,
}

/// Merges `listed` (only the paths `selects` keeps; a peer with none of them holds nothing here
/// and is left out). A path listed with different ids, or under [`Merge::Unanimous`] a path that
/// some listing peer lacks, is a disagreement: nothing is merged and the reason is given, for
/// the owner to decide (votes would let one stranger with many names win).
pub fn merge(listed: Vec<(String, Vec<FolderEntry>)>, rule: Merge, selects: impl Fn(&str) -> bool) -> Result<Vec<ListedFile>, String> {
    // path -> the (id, size) claims, each with the peers that made it, in peer order.
    let mut claims: BTreeMap<String, Vec<(ContentId, u64, Vec<String>)>> = BTreeMap::new();
    let mut holding = 0;
    for (peer, files) in listed {
        let mut any = false;
        for file in files.into_iter().filter(|f| selects(&f.path)) {
            any = true;
            let versions = claims.entry(file.path).or_default();
            match versions.iter_mut().find(|(id, size, _)| *id == file.id && *size == file.size) {
                Some((_, _, holders)) => holders.push(peer.clone()),
                None => versions.push((file.id, file.size, vec![peer.clone()])),
            }
        }
        holding += usize::from(any);
    }
    let mut files = Vec::with_capacity(claims.len());
    for (path, mut versions) in claims {
        if versions.len() > 1 {
            let said: Vec<String> = versions
                .iter()
                .take(3)
                .map(|(id, _, holders)| format!("{} lists {id}", holders[0]))
                .collect();
            return Err(format!("the peers disagree on {path}: {}", said.join(", ")));
        }
        let Some((id, size, holders)) = versions.pop() else { continue };
        if rule == Merge::Unanimous && holders.len() < holding {
            return Err(format!(
                "{path} is listed by {} of the {holding} peers that hold files here",
                holders.len()
            ));
        }
        files.push(ListedFile { path, size, id, holders });
    }
    Ok(files)
}
