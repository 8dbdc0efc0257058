//! The one facade every request goes through: XML-RPC methods, HTTP handlers and the CLI all
//! call [`Api`], and only [`Api`] reaches the share, the peer table, the search and downloads.
//! Each method is a few lines that call the layer below: discovery for searches, the engine
//! (through [`Downloads`]) for downloads, the index for the share.
//!
//! Errors are [`ApiError`]; the HTTP layer turns them into faults and status codes in one place.
//! Error texts meant for strangers are generic: what failed inside, and where, is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_index::{ContentId, FileEntry, NameError, SafeName, Share, check_name};

pub use super::error::ApiError;

use super::downloads::{DownloadInfo, Downloads, Status};
use super::fetch::{Fetcher, Item, LogFailures, QUEUE_CONCURRENCY, QueueOptions};
use super::folder::{self, Selection};
use super::seed;
use super::swarm::Swarms;
use crate::discovery::listing::Merge;
use crate::discovery::peers::{PeerError, PeerInfo};
use crate::discovery::search::{self, MAX_HISTORY};
use crate::discovery::{Flood, Hit, Match, Merged, Route};
use crate::engine::{Job, Partial, Partials};
use crate::net::Client;
use crate::net::rate::RateLimiter;
use crate::options::NodeOptions;
use crate::proto::calls::{FolderEntry, FolderPage, Members, Swarm};
use crate::proto::have::{Have, MAX_HAVE_WAIT};
use crate::proto::limits::MAX_LIST_ENTRIES;

/// A file of the share opened for serving.
pub struct Opened {
    pub name: String,
    pub entry: FileEntry,
    pub file: std::fs::File,
    /// The whole content, when the file is small.
    pub whole: Option<Vec<u8>>,
}

/// An owner's request to download (`shoal.download`).
#[derive(Debug, Clone, Default)]
pub struct DownloadRequest {
    /// Names, content ids or mirror URLs.
    pub targets: Vec<String>,
    /// A file or directory inside the share, the download directory or `<state>/incoming`;
    /// the share when absent.
    pub output: Option<PathBuf>,
    pub hash: Option<ContentId>,
    pub force: bool,
    /// Peers to learn (on the owner's word) before searching.
    pub peers: Vec<String>,
}

/// The directory inside the state directory where hand-overs from `shoal get` land before the
/// command moves them where its user asked.
pub const INCOMING_DIR: &str = "incoming";

/// State shared by every handler.
pub struct Inner {
    pub options: NodeOptions,
    pub share: Arc<Share>,
    /// The share's root directory, held open: every file the node serves is opened beneath it
    /// without following a symlink, so swapping a directory for a link cannot lead outside.
    pub root: Arc<shoal_index::Root>,
    pub flood: Arc<Flood>,
    pub secret: String,
    /// Node ids (hex) whose callers over iroh are the owner, with no secret.
    pub owner_keys: Vec<String>,
    /// The one door to downloads, with the node's table of them.
    pub fetcher: Fetcher,
    pub upload_limit: Option<Arc<RateLimiter>>,
    /// Downloads in progress served to other downloaders (empty with `partial_upload` off).
    pub partials: Partials,
    /// Who else fetches the ids this node holds or fetches.
    pub swarms: Swarms,
    /// Cancelled when the node begins to shut down.
    pub stopping: tokio_util::sync::CancellationToken,
    /// The node's place on the Mainline DHT, when it runs one.
    pub dht: Option<Arc<crate::net::dht::Dht>>,
}

/// The facade. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("a blocking task failed: {e}")))
}

impl Api {
    pub fn new(inner: Inner) -> Self {
        Api { inner: Arc::new(inner) }
    }

    pub fn options(&self) -> &NodeOptions {
        &self.inner.options
    }

    pub(super) fn share(&self) -> &Arc<Share> {
        &self.inner.share
    }

    pub(super) fn client(&self) -> &Client {
        self.inner.flood.client()
    }

    /// Discovery: the flood search and the peer table.
    pub(super) fn flood(&self) -> &Arc<Flood> {
        &self.inner.flood
    }

    /// How many nodes introduced by `hello` wait to answer (see `discovery::candidates`).
    pub fn candidates(&self) -> usize {
        self.inner.flood.candidates()
    }

    /// This node's own URL.
    pub fn url(&self) -> &str {
        self.inner.flood.me()
    }

    /// This node as `iroh://<id>`, when it has a key.
    pub fn keyed_url(&self) -> Option<String> {
        self.inner.flood.peers.me().keyed.clone()
    }

    /// This node's ticket (id, home relay, direct addresses), when it runs iroh.
    pub fn ticket(&self) -> Option<String> {
        self.client().iroh().map(|iroh| iroh.ticket().encode())
    }

    /// Whether `key` (a node id in hex) is one of the owner's.
    pub fn is_owner_key(&self, key: &str) -> bool {
        self.inner.owner_keys.iter().any(|k| k == key)
    }

    /// The owner's secret, for the owner's own in-process shell.
    pub fn secret(&self) -> &str {
        &self.inner.secret
    }

    /// Checks the owner's secret in constant time.
    pub fn check_secret(&self, given: &str) -> Result<(), ApiError> {
        if secrets_match(given, &self.inner.secret) {
            Ok(())
        } else {
            Err(ApiError::AccessDenied)
        }
    }

    /// Refreshes the named paths of the share (relative to its root), or scans it all.
    pub async fn refresh(&self, paths: Option<Vec<PathBuf>>) -> Result<shoal_index::ScanReport, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || match paths {
            Some(paths) => share.refresh(&paths),
            None => share.scan(),
        })
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Says `hello` with this node's URL to every known peer (at start).
    pub async fn introduce(&self) {
        self.inner.flood.introduce().await
    }

    /// Probes the nodes introduced by `hello` whose backoff is over; returns how many joined.
    pub async fn retry_candidates(&self) -> usize {
        self.inner.flood.retry_candidates().await
    }

    /// Learns a node announced on the LAN, once it answered, and marks it local.
    pub async fn learn_local_peer(&self, url: &str) -> Result<(), PeerError> {
        self.inner.flood.learn(url).await?;
        self.inner.flood.peers.set_local(url, true);
        Ok(())
    }

    /// A node no longer announced on the LAN stays a peer, no longer marked local.
    pub fn forget_local_peer(&self, url: &str) {
        self.inner.flood.peers.set_local(url, false);
    }

    /// Scans the share now, picking up added, changed and removed files.
    pub async fn rescan(&self) -> Result<shoal_index::ScanReport, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || share.scan()).await?.map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The seed's `hello`: learn a peer, once it answered as a node.
    pub async fn hello(&self, url: &str) -> Result<(), ApiError> {
        match self.inner.flood.hello(url).await {
            Ok(()) | Err(PeerError::IsSelf(_)) => Ok(()),
            Err(error @ (PeerError::Url(_) | PeerError::Full(_) | PeerError::Crowded | PeerError::NotANode(_) | PeerError::Refused(_))) => {
                Err(ApiError::BadRequest(error.to_string()))
            }
            Err(error @ PeerError::Store(_)) => Err(ApiError::Internal(error.to_string())),
        }
    }

    /// Adds a peer on the owner's word (no probe, never evicted).
    pub fn add_peer(&self, url: &str) -> Result<(), ApiError> {
        self.client().learn_ticket(url, crate::net::Trust::Owner);
        match self.inner.flood.peers.add(url) {
            Ok(_) | Err(PeerError::IsSelf(_)) => Ok(()),
            Err(PeerError::Store(e)) => Err(ApiError::Internal(e)),
            Err(error) => Err(ApiError::BadRequest(error.to_string())),
        }
    }

    /// The known peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers = self.inner.flood.peers.list();
        if let Some(iroh) = self.client().iroh() {
            for peer in &mut peers {
                if let Some(id) = peer.url.strip_prefix("iroh://") {
                    peer.path = iroh.path(id);
                }
            }
        }
        peers
    }

    /// Messages this node has sent to others.
    pub fn messages_sent(&self) -> u64 {
        self.client().messages_sent()
    }

    /// Peer exchange with the live shoal peers; returns how many peers were new.
    pub async fn exchange_peers(&self) -> usize {
        self.inner.flood.exchange_peers().await
    }

    /// This node's own files.
    pub async fn list(&self) -> Result<Vec<(String, FileEntry)>, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || share.list()).await?.map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// `shoal.list_folder`: one page of the files under `folder` (a share name without its
    /// trailing `/`; empty: the whole share), recursively, in name order, after `cursor`
    /// (exclusive). A name outside the share is refused as everywhere (fault 200); a folder
    /// with no files gives an empty page.
    pub async fn list_folder(&self, folder: &str, cursor: &str) -> Result<FolderPage, ApiError> {
        if !folder.is_empty() {
            check_name(folder)?;
        }
        let share = self.inner.share.clone();
        let (folder, cursor) = (folder.to_string(), cursor.to_string());
        // One more than a page holds, so that a full page knows whether more follow.
        let rows = blocking(move || share.list_page(&folder, &cursor, MAX_LIST_ENTRIES + 1))
            .await?
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(FolderPage::fill(rows.into_iter().map(|(path, entry)| FolderEntry {
            path,
            size: entry.size,
            id: entry.id,
        })))
    }

    /// A file of this share by name or content id.
    pub async fn file(&self, name_or_id: &str) -> Result<(String, FileEntry), ApiError> {
        let share = self.inner.share.clone();
        if let Ok(id) = name_or_id.parse::<ContentId>() {
            return blocking(move || share.lookup_id(&id))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .ok_or_else(|| ApiError::NotFound(name_or_id.to_string()));
        }
        let name = check_name(name_or_id)?;
        let found = {
            let name = name.clone();
            blocking(move || share.lookup_name(&name))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        found
            .map(|entry| (name.as_str().to_string(), entry))
            .ok_or_else(|| ApiError::NotFound(name_or_id.to_string()))
    }

    /// Opens a file of the share for serving, by name or content id: the index lookup, the open
    /// beneath the root, and the check that the file is still the one indexed (size, mtime,
    /// inode); a file of at most `read_whole` bytes is read in the same step.
    ///
    /// This runs on the calling thread, the one exception to "blocking work goes to the pool":
    /// a redb read (from its page cache), `openat2`, `fstat` and, for a small file, one `pread`
    /// from the page cache, as nginx does in its event loop. The trip to the blocking pool cost
    /// a quarter of the small-file throughput (ARCHITECTURE.md, load benchmark). Larger files
    /// are streamed through the pool.
    pub fn open_for_serving(&self, name_or_id: &str, read_whole: u64) -> Result<Opened, ApiError> {
        let (share, root, key) = (&self.inner.share, &self.inner.root, name_or_id.to_string());
        {
            let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
            let (name, entry) = match key.parse::<ContentId>() {
                Ok(id) => share.lookup_id(&id).map_err(|e| internal(&e))?,
                Err(_) => {
                    let name = check_name(&key)?;
                    share
                        .lookup_name(&name)
                        .map_err(|e| internal(&e))?
                        .map(|entry| (name.as_str().to_string(), entry))
                }
            }
            .ok_or_else(|| ApiError::NotFound(key.clone()))?;
            let safe = check_name(&name)?;
            let file = match root.open_file(&safe) {
                Ok(file) => file,
                Err(NameError::NotFound { .. } | NameError::NotAFile { .. } | NameError::NotADirectory { .. }) => {
                    return Err(ApiError::NotFound(name));
                }
                Err(error) => return Err(ApiError::from(error)),
            };
            let meta = file.metadata().map_err(|e| internal(&e))?;
            if !entry.matches(&meta) {
                return Err(ApiError::NotFound(format!("{name} (changed since it was indexed)")));
            }
            let whole = if entry.size <= read_whole {
                use std::os::unix::fs::FileExt;
                let mut bytes = vec![0u8; entry.size as usize];
                file.read_exact_at(&mut bytes, 0).map_err(|e| internal(&e))?;
                Some(bytes)
            } else {
                None
            };
            Ok(Opened { name, entry, file, whole })
        }
    }

    /// The verification data (bao outboard) of a file of this share.
    pub async fn outboard(&self, id: ContentId, piece_size: Option<u64>) -> Result<Vec<u8>, ApiError> {
        let share = self.inner.share.clone();
        let indexed = blocking(move || {
            let Some((_, entry)) = share.lookup_id(&id)? else {
                return Ok(None);
            };
            Ok::<_, shoal_index::ShareError>(share.outboard(&id)?.map(|outboard| (entry.size, outboard)))
        })
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        match (indexed, piece_size) {
            (Some((_, outboard)), None) => Ok(outboard),
            (Some((size, outboard)), Some(piece_size)) => blocking(move || shoal_index::piece_outboard(&id, size, &outboard, piece_size))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string())),
            // A download in progress serves the verification data it checked: the piece
            // outboard for its own piece size, nothing else.
            (None, Some(piece_size)) => self
                .partial(&id)
                .filter(|p| p.piece_size() == piece_size)
                .map(|p| p.outboard().to_vec())
                .ok_or_else(|| ApiError::NotFound(id.to_string())),
            (None, None) => Err(ApiError::NotFound(id.to_string())),
        }
    }

    /// A download in progress of `id` that this node serves pieces of.
    pub fn partial(&self, id: &ContentId) -> Option<Arc<Partial>> {
        self.inner.partials.get(id)
    }

    /// The size of `id` when this node holds it whole (in the share's index).
    fn indexed_size(&self, id: &ContentId) -> Option<u64> {
        self.inner.share.lookup_id(id).ok().flatten().map(|(_, entry)| entry.size)
    }

    /// What this node holds of `id` (`/have/<id>`): the whole file, or the pieces of a download
    /// in progress. With `since`, a long poll: the answer waits until it holds more than at that
    /// version, at most [`MAX_HAVE_WAIT`] (or until the node stops).
    pub async fn have(&self, id: ContentId, since: Option<u64>) -> Result<Have, ApiError> {
        if self.indexed_size(&id).is_some() {
            return Ok(Have::Complete);
        }
        let partial = self.partial(&id).ok_or_else(|| ApiError::NotFound(id.to_string()))?;
        let holding = match since {
            Some(version) => tokio::select! {
                holding = partial.newer_than(version, MAX_HAVE_WAIT) => holding,
                () = self.inner.stopping.cancelled() => partial.holding(),
            },
            None => partial.holding(),
        };
        Ok(Have::Partial {
            version: holding.version,
            bits: holding.bits,
        })
    }

    /// Whether bytes `span` of the whole file `id` (`size` bytes) may go out now, while it
    /// seeds a swarm (see [`Swarms::spread`]): `Err` names pieces to ask for instead.
    pub fn spread(&self, id: &ContentId, size: u64, span: std::ops::Range<u64>, takes_hints: bool) -> Result<(), Vec<u64>> {
        if span.is_empty() {
            return Ok(());
        }
        let piece = crate::engine::PIECE_SIZE;
        let count = size.div_ceil(piece).max(1);
        let pieces = span.start / piece..(span.end - 1) / piece + 1;
        self.inner.swarms.spread(id, count, pieces, takes_hints)
    }

    /// Whether the downloader `who` (its node URL, or its address) is served pieces of `id` now
    /// ([`super::slots`]); `seeding`: from a whole file of the share.
    pub fn admit_upload(&self, id: &ContentId, who: &str, seeding: bool) -> Option<super::swarm::UploadSlot> {
        let gave = if seeding {
            0
        } else {
            self.inner.fetcher.downloads().received_from(&id.to_string(), who)
        };
        self.inner.swarms.admit_upload(id, who, gave, seeding)
    }

    /// Bytes of `id` sent to each other downloader, most first.
    pub fn uploads_of(&self, id: &ContentId) -> Vec<(String, u64)> {
        self.inner.swarms.uploads(id)
    }

    /// The counter of bytes of `id` sent to the downloader `who` (`None`: not counted).
    pub fn upload_counter(&self, id: &ContentId, who: &str) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        self.inner.swarms.upload_counter(id, who)
    }

    /// The swarm's figures for `/metrics`, with the downloads in progress served to others.
    pub fn swarm_stats(&self) -> (super::swarm::SwarmStats, usize) {
        (self.inner.swarms.stats(), self.inner.partials.len())
    }

    /// `shoal.swarm`: the other members of `id`'s swarm, for an id this node holds or fetches
    /// (none otherwise). The caller's URL is listed for others once it answered `/have` for
    /// the id itself (see [`super::swarm`]).
    pub fn swarm(&self, call: &Swarm) -> Members {
        let size = match self.indexed_size(&call.id) {
            Some(size) => size,
            None => match self.partial(&call.id) {
                Some(partial) => partial.size,
                None => return Members::default(),
            },
        };
        let swarms = &self.inner.swarms;
        if let Some(url) = &call.url
            && url != self.url()
            && !swarms.refresh(&call.id, url, call.pieces)
        {
            swarms.probe(self.client(), call.id, url.clone(), call.pieces, size);
        }
        Members(swarms.members(&call.id, call.url.as_deref()))
    }

    /// Reads a whole file of the share for an XML-RPC answer, within the size limit. The file is
    /// read from disk as the seed does, so a file added a moment ago is found before any rescan.
    async fn read_local(&self, name: &SafeName) -> Result<Option<Vec<u8>>, ApiError> {
        let root = self.inner.root.clone();
        let limit = self.inner.options.max_rpc_content;
        let name = name.clone();
        blocking(move || {
            use std::io::Read;
            let mut file = match root.open_file(&name) {
                Ok(file) => file,
                // A directory of the share is not a file, as the seed's `isfile` says.
                Err(NameError::NotFound { .. } | NameError::NotAFile { .. } | NameError::NotADirectory { .. }) => return Ok(None),
                Err(error) => return Err(ApiError::from(error)),
            };
            let size = file
                .metadata()
                .map_err(|e| ApiError::Internal(format!("stat {}: {e}", name)))?
                .len();
            if size > limit {
                let path = format!("/files/{}", name.as_str());
                return Err(ApiError::TooLarge {
                    name: name.to_string(),
                    size,
                    limit,
                    path,
                });
            }
            let mut content = Vec::with_capacity(size as usize);
            (&mut file)
                .take(limit + 1)
                .read_to_end(&mut content)
                .map_err(|e| ApiError::Internal(format!("read {}: {e}", name)))?;
            if content.len() as u64 > limit {
                return Err(ApiError::Internal(format!("{name} grew while it was read")));
            }
            Ok(Some(content))
        })
        .await?
    }

    /// The seed's `query(name, history)`: the file's content from this node or, failing that,
    /// from the first node of the network that has it.
    pub async fn query(&self, name: &str, history: Vec<String>) -> Result<Vec<u8>, ApiError> {
        let name = check_name(name)?;
        if let Some(content) = self.read_local(&name).await? {
            return Ok(content);
        }
        let ttl = MAX_HISTORY.saturating_sub(history.len()) as u32;
        let route = Route {
            query_id: search::new_query_id(),
            history,
            ttl,
            budget: self.inner.options.search_deadline,
        };
        self.inner.flood.seen.first_time(&route.query_id);
        let hit = self.forward_locate(&name, route).await?;
        match hit.content {
            Some(content) => Ok(content),
            None => {
                let id = hit.id.ok_or_else(|| ApiError::NotFound(name.to_string()))?;
                if hit.size > self.inner.options.max_rpc_content {
                    let path = format!("/content/{id}");
                    return Err(ApiError::TooLarge {
                        name: name.to_string(),
                        size: hit.size,
                        limit: self.inner.options.max_rpc_content,
                        path,
                    });
                }
                seed::fetch_verified_bytes(self.client(), &hit.url, id, hit.size)
                    .await
                    .map_err(|reason| {
                        tracing::debug!(%reason, "fetching a located file failed");
                        // The caller is a stranger: no URL or peer error text goes back.
                        ApiError::Download {
                            name: name.to_string(),
                            reason: "the holder did not deliver it".into(),
                        }
                    })
            }
        }
    }

    /// `shoal.locate`: where a file is. Answers once per query id.
    pub async fn locate(&self, name: &str, route: Route) -> Result<Hit, ApiError> {
        let name = check_name(name)?;
        if !self.inner.flood.seen.first_time(&route.query_id) {
            return Err(ApiError::NotFound(name.to_string()));
        }
        let found = {
            let share = self.inner.share.clone();
            let name = name.clone();
            blocking(move || share.lookup_name(&name))
                .await?
                .map_err(|e| ApiError::Internal(e.to_string()))?
        };
        if let Some(entry) = found {
            return Ok(Hit {
                url: self.url().to_string(),
                name: name.to_string(),
                size: entry.size,
                id: Some(entry.id),
                content: None,
            });
        }
        self.forward_locate(&name, route).await
    }

    /// Asks the peers where `name` is; the first hit wins.
    async fn forward_locate(&self, name: &SafeName, route: Route) -> Result<Hit, ApiError> {
        self.inner
            .flood
            .forward_locate(name, route)
            .await
            .ok_or_else(|| ApiError::NotFound(name.to_string()))
    }

    /// `shoal.search`: every file whose name matches `pattern`, across the network.
    /// Its forward to the peers is shared with others' searches of the same pattern and route at about
    /// the same time (`Flood::forward_search`).
    pub async fn search(&self, pattern: &str, route: Route) -> Result<Vec<Match>, ApiError> {
        self.search_with(pattern, route, None::<fn(&[Match])>).await
    }

    /// [`Api::search`], calling `each` with this node's matches and then with every peer's
    /// answer as it arrives (forwarded afresh, for this view alone).
    pub async fn search_each(&self, pattern: &str, route: Route, each: impl FnMut(&[Match])) -> Result<Vec<Match>, ApiError> {
        self.search_with(pattern, route, Some(each)).await
    }

    async fn search_with(&self, pattern: &str, route: Route, mut each: Option<impl FnMut(&[Match])>) -> Result<Vec<Match>, ApiError> {
        if pattern.len() > crate::proto::limits::MAX_PATTERN {
            return Err(ApiError::BadRequest("the pattern is too long".into()));
        }
        if !self.inner.flood.seen.first_time(&route.query_id) {
            return Ok(Vec::new());
        }
        let mut merged = Merged::default();
        let local = self.list().await?;
        let by_id = pattern.parse::<ContentId>().ok();
        let mine: Vec<Match> = local
            .into_iter()
            .filter(|(name, entry)| by_id.map_or_else(|| search::matches(pattern, name), |id| id == entry.id))
            .map(|(name, entry)| Match {
                name,
                size: entry.size,
                id: entry.id,
                urls: vec![self.url().to_string()],
                partial: Vec::new(),
            })
            .chain(self.partial_matches(pattern, by_id))
            .collect();
        if let Some(each) = &mut each
            && !mine.is_empty()
        {
            each(&mine);
        }
        for found in mine {
            merged.add(found);
        }
        match each {
            Some(each) => self.inner.flood.forward_search_each(pattern, route, &mut merged, each).await,
            None => self.inner.flood.forward_search(pattern, route, &mut merged).await,
        }
        Ok(merged.into_sorted())
    }

    /// This node's downloads in progress that `pattern` names (by content id, or by name), as
    /// matches naming this node as a partial holder with the pieces it holds. Only downloads
    /// served to others (not `--no-partial-upload`), and never offered to the seed's `query`.
    /// This node's downloads in progress that others may fetch pieces of (`/api/v1/files`
    /// lists them apart from the share, marked partial).
    /// The content ids this node serves: its share's files and its downloads in progress
    /// served to others (what it announces on the DHT).
    pub async fn served_ids(&self) -> Result<Vec<ContentId>, ApiError> {
        let mut ids: Vec<ContentId> = self.list().await?.into_iter().map(|(_, entry)| entry.id).collect();
        ids.extend(self.inner.partials.ids());
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        Ok(ids)
    }

    /// The node's DHT node, when it runs one.
    pub fn dht(&self) -> Option<&Arc<crate::net::dht::Dht>> {
        self.inner.dht.as_ref()
    }

    pub fn partial_files(&self) -> Vec<Match> {
        self.partial_matches("", None)
    }

    fn partial_matches(&self, pattern: &str, by_id: Option<ContentId>) -> Vec<Match> {
        // Most searches come while nothing is downloading: the table is not read then.
        if self.inner.partials.is_empty() {
            return Vec::new();
        }
        let me = self.url().to_string();
        let mut found: Vec<Match> = Vec::new();
        for info in self.inner.fetcher.downloads().list() {
            let Some(id) = info.id.as_deref().and_then(|id| id.parse::<ContentId>().ok()) else {
                continue;
            };
            let named = by_id.map_or_else(|| search::matches(pattern, &info.name), |wanted| wanted == id);
            if !named || self.indexed_size(&id).is_some() || found.iter().any(|m| m.id == id) {
                continue;
            }
            if let Some(partial) = self.partial(&id) {
                found.push(Match {
                    name: info.name,
                    size: partial.size,
                    id,
                    urls: vec![me.clone()],
                    partial: vec![(me.clone(), partial.holding().bits.held())],
                });
            }
        }
        found
    }

    /// A fresh route for a search that starts at this node.
    pub fn new_route(&self) -> Route {
        self.inner.flood.new_route()
    }

    /// The seed's `fetch(name, secret)`: download `name` from the network into the share, from
    /// every shoal node that holds it at once, or from a seed node through `query`. The caller
    /// is the owner: the frontend checked (the secret, or the owner's key over iroh), as for
    /// every other owner action.
    pub async fn fetch(&self, name: &str) -> Result<(), ApiError> {
        if name.ends_with('/') {
            return self.fetch_folder(name).await;
        }
        if let Ok(id) = name.parse::<ContentId>() {
            return self.fetch_id(id).await;
        }
        let name = check_name(name)?;
        let target = self.share_target(&name).await?;
        if tokio::fs::symlink_metadata(&target).await.is_ok() {
            return Err(ApiError::Exists(name.to_string()));
        }
        // Directories this fetch creates are removed again if it fails (when still empty).
        let created = missing_dirs(self.inner.share.root(), &target);
        let result = self.fetch_into(&name, target).await;
        if result.is_err() {
            for dir in created.iter().rev() {
                let _ = tokio::fs::remove_dir(dir).await;
            }
        }
        result
    }

    /// `fetch(content_id, secret)`: the file of that id, from its holders among the peers and on
    /// the DHT, into the share under the name its holders give (the id when none does).
    async fn fetch_id(&self, id: ContentId) -> Result<(), ApiError> {
        let peers = self.live_peer_urls();
        let root = self.inner.share.root().to_path_buf();
        let mut job = self
            .inner
            .fetcher
            .resolve(&peers, &[id.to_string()], None, Some(&root))
            .await
            .map_err(|e| ApiError::NotFound(e.to_string()))?;
        let file_name = job
            .target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| id.to_string());
        let name = check_name(&file_name)?;
        let target = self.share_target(&name).await?;
        if tokio::fs::symlink_metadata(&target).await.is_ok() {
            return Err(ApiError::Exists(name.to_string()));
        }
        job.target = target;
        job.name = name.to_string();
        self.run_job(job).await
    }

    /// `fetch("photos/", secret)`: every file under the folder on the live peers, each to the
    /// same name in the share. Fails (after fetching what it could) when any file failed.
    async fn fetch_folder(&self, name: &str) -> Result<(), ApiError> {
        let selection = Selection::parse(name).map_err(|_| ApiError::AccessDenied)?;
        let root = self.inner.share.root().to_path_buf();
        let (configured, learnt) = self.live_peer_tiers();
        let tiers = [(&configured[..], Merge::Union), (&learnt[..], Merge::Unanimous)];
        let mut jobs = self
            .inner
            .fetcher
            .plan_folder(&selection, &tiers, &root, true)
            .await
            .map_err(|e| match e {
                folder::FolderError::Disagree { detail, .. } => ApiError::Ambiguous {
                    name: name.to_string(),
                    detail,
                },
                e => ApiError::NotFound(e.to_string()),
            })?;
        for job in &mut jobs {
            job.target = self.share_target(&check_name(&job.name)?).await?;
        }
        let total = jobs.len();
        let failures = self.run_queue(jobs).await;
        match failures.first() {
            None => Ok(()),
            Some((file, reason)) => Err(ApiError::Download {
                name: name.to_string(),
                reason: format!("{} of {total} files failed, {file} first: {reason}", failures.len()),
            }),
        }
    }

    /// Runs downloads of many files through the fetcher's queue, each in the node's table (so
    /// each shows in `shoal.downloads`), [`QUEUE_CONCURRENCY`] at once; a file already complete
    /// at its target is skipped, a different one left alone (unless the job says `force`); the
    /// file system is synced at the end. Returns the failures: (name, reason).
    async fn run_queue(&self, jobs: Vec<Job>) -> Vec<(String, String)> {
        // The jobs of one folder share an output directory, so one file system.
        let sync = jobs.first().and_then(|job| job.target.parent()).map(Path::to_path_buf);
        let options = QueueOptions {
            concurrency: QUEUE_CONCURRENCY,
            force: false,
            rule: None,
            sync,
        };
        let items = jobs.into_iter().map(Item::Ready).collect();
        self.inner
            .fetcher
            .queue(items, &[], &options, &LogFailures, &self.inner.stopping)
            .await
            .failures
    }

    async fn fetch_into(&self, name: &SafeName, target: std::path::PathBuf) -> Result<(), ApiError> {
        let found = self.search(name.as_str(), self.new_route()).await?;
        // One row per version (content id) of the name. Versions are not counted or voted on:
        // one stranger can claim any number of holders, so when the network disagrees about
        // what the name is, the owner is told and picks one by its id.
        let mut versions: Vec<Match> = found
            .into_iter()
            .filter(|m| m.name == name.as_str())
            .map(|mut m| {
                m.urls.retain(|u| u != self.url());
                m
            })
            .filter(|m| !m.urls.is_empty())
            .collect();
        if versions.len() > 1 {
            // The owner's configured peers, asked about their own files alone, may settle it:
            // strangers never outvote them.
            let (configured, _) = self.live_peer_tiers();
            let own = crate::discovery::own_files_of(self.client(), &configured, name.as_str(), self.options().search_deadline).await;
            let mut vouched: Vec<ContentId> = own.into_iter().filter(|m| m.name == name.as_str()).map(|m| m.id).collect();
            vouched.sort();
            vouched.dedup();
            if let [id] = vouched[..] {
                versions.retain(|m| m.id == id);
            }
        }
        if versions.len() > 1 {
            let ids: Vec<String> = versions.iter().take(8).map(|m| m.id.to_string()).collect();
            return Err(ApiError::Ambiguous {
                name: name.to_string(),
                detail: format!(
                    "the network holds {} versions of it ({}); download the one you want by its content id",
                    versions.len(),
                    ids.join(", ")
                ),
            });
        }
        let Some(best) = versions.pop() else {
            // No shoal node has it: a seed node may, through query.
            let route = self.new_route();
            self.inner.flood.seen.first_time(&route.query_id);
            let hit = self.forward_locate(name, route).await?;
            let Some(id) = hit.id.filter(|_| hit.content.is_none()) else {
                return seed::fetch_hit(&self.inner.root, &self.inner.share, name, hit).await;
            };
            return self
                .run_job(Job {
                    name: name.to_string(),
                    target,
                    id: Some(id),
                    size: Some(hit.size),
                    peers: vec![hit.url],
                    mirrors: Vec::new(),
                    force: false,
                    by_node: true,
                })
                .await;
        };
        self.run_job(Job {
            name: name.to_string(),
            target,
            id: Some(best.id),
            size: Some(best.size),
            peers: best.urls,
            mirrors: Vec::new(),
            force: false,
            by_node: true,
        })
        .await
    }

    /// Runs a download in the background and waits for its end.
    async fn run_job(&self, job: Job) -> Result<(), ApiError> {
        let name = job.name.clone();
        self.inner.fetcher.one(job).await.map(drop).map_err(|error| ApiError::Download {
            name,
            reason: error.to_string(),
        })
    }

    /// Where `name` goes in the share (checked: no way out of it).
    pub async fn share_target(&self, name: &SafeName) -> Result<std::path::PathBuf, ApiError> {
        let root = self.inner.share.root().to_path_buf();
        let name = name.clone();
        Ok(blocking(move || name.resolve_new(&root)).await??)
    }

    /// Starts a download in the background; a finished file inside the share is indexed. While it
    /// runs, the node's peers are asked now and then for more holders, which join it.
    pub fn start_download(&self, job: Job) -> tokio::sync::watch::Receiver<Status> {
        self.inner.fetcher.start(job).status
    }

    /// `shoal.download`: resolves the targets and starts the download in the background.
    /// Returns the download's name and target path.
    pub async fn download(&self, request: DownloadRequest) -> Result<(String, PathBuf), ApiError> {
        for peer in request.peers.iter().take(crate::proto::limits::MAX_TARGETS) {
            self.add_peer(peer)?;
        }
        let output = match request.output {
            Some(path) => path,
            None => self.inner.share.root().to_path_buf(),
        };
        let output = self.allowed_output(&output).await?;
        let peers = self.live_peer_urls();
        if let [target] = request.targets.as_slice()
            && folder::is_selection(target)
        {
            return self.download_folder(target, &output, request.force).await;
        }
        let mut job = self
            .inner
            .fetcher
            .resolve(&peers, &request.targets, request.hash, Some(&output))
            .await
            .map_err(|e| ApiError::Unresolved(e.to_string()))?;
        job.target = self.allowed_output(&job.target).await?;
        job.force = request.force;
        job.by_node = true;
        let (name, target) = (job.name.clone(), job.target.clone());
        self.start_download(job);
        Ok((name, target))
    }

    /// `shoal.download` of a folder or glob: lists it on the live peers and downloads its files
    /// in the background, keeping the layout under `output` (as `shoal get DIR/ -o OUT`).
    /// Returns a name for the whole and the directory the files land in.
    async fn download_folder(&self, target: &str, output: &Path, force: bool) -> Result<(String, PathBuf), ApiError> {
        let selection = Selection::parse(target).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let (configured, learnt) = self.live_peer_tiers();
        let tiers = [(&configured[..], Merge::Union), (&learnt[..], Merge::Unanimous)];
        let mut jobs = self
            .inner
            .fetcher
            .plan_folder(&selection, &tiers, output, false)
            .await
            .map_err(|e| ApiError::Unresolved(e.to_string()))?;
        for job in &mut jobs {
            job.target = self.allowed_output(&job.target).await?;
            job.force = force;
        }
        let name = format!("{target} ({} files)", jobs.len());
        let api = self.clone();
        self.inner.fetcher.downloads().spawn(async move {
            let failures = api.run_queue(jobs).await;
            for (file, reason) in failures {
                tracing::warn!(%file, %reason, "a file of a folder download failed");
            }
        });
        Ok((name, folder::landing_dir(&selection, output)))
    }

    /// The directories a download may write into: the share, `--download-dir`, and the state
    /// directory's `incoming` (for `shoal get` hand-overs).
    fn output_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.inner.share.root().to_path_buf()];
        roots.extend(self.inner.options.download_dir.clone());
        roots.push(self.inner.options.state.join(INCOMING_DIR));
        roots
    }

    /// Checks that `path` lies inside one of the output roots, with no symlink, `..` or hidden
    /// component on the way, and returns it absolute (missing roots are created).
    async fn allowed_output(&self, path: &Path) -> Result<PathBuf, ApiError> {
        let roots = self.output_roots();
        let path = path.to_path_buf();
        blocking(move || {
            let refused = || ApiError::OutputRefused;
            if !path.is_absolute() {
                return Err(refused());
            }
            for root in roots {
                let _ = std::fs::create_dir_all(&root);
                let Ok(root) = root.canonicalize() else { continue };
                let Ok(relative) = path.strip_prefix(&root) else { continue };
                if relative.as_os_str().is_empty() {
                    return Ok(root);
                }
                let relative = relative.to_str().ok_or_else(refused)?;
                check_name(relative).map_err(|_| refused())?;
                // No symlink on the way (nothing existing below the root may lead elsewhere).
                let mut current = root.clone();
                for component in relative.split('/') {
                    current.push(component);
                    match std::fs::symlink_metadata(&current) {
                        Ok(meta) if meta.file_type().is_symlink() => return Err(refused()),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                return Ok(root.join(relative));
            }
            Err(refused())
        })
        .await?
    }

    /// Pauses a running download, keeping its progress.
    pub fn pause_download(&self, target: &Path) -> Result<(), ApiError> {
        if self.inner.fetcher.downloads().pause(target) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("a running download to {}", target.display())))
        }
    }

    /// Stops a download for good, deleting its partial data.
    pub async fn cancel_download(&self, target: &Path) {
        self.inner.fetcher.downloads().cancel(target).await;
    }

    /// Continues a paused, failed or interrupted download from its saved progress.
    pub fn resume_download(&self, target: &std::path::Path) -> Result<(), ApiError> {
        let job = self
            .inner
            .fetcher
            .downloads()
            .saved_job(target)
            .ok_or_else(|| ApiError::NotFound(format!("a paused download to {}", target.display())))?;
        self.start_download(job);
        Ok(())
    }

    /// Finds the target path of a download by its target path or its name.
    pub fn download_target(&self, key: &str) -> Result<std::path::PathBuf, ApiError> {
        let rows = self.downloads();
        rows.iter()
            .find(|d| d.target == key)
            .or_else(|| rows.iter().find(|d| d.name == key))
            .map(|d| std::path::PathBuf::from(&d.target))
            .or_else(|| {
                let records = self.inner.fetcher.downloads().engine().records().all().ok()?;
                records
                    .into_iter()
                    .find(|r| r.target == key || r.name == key)
                    .map(|r| std::path::PathBuf::from(r.target))
            })
            .ok_or_else(|| ApiError::NotFound(format!("a download named {key}")))
    }

    /// The node's downloads with their progress.
    pub fn downloads(&self) -> Vec<DownloadInfo> {
        self.inner.fetcher.downloads().list()
    }

    /// The node's download manager.
    pub fn download_manager(&self) -> &Downloads {
        self.inner.fetcher.downloads()
    }

    /// The limiter for served file data, when `--max-upload-rate` is set.
    pub fn upload_limit(&self) -> Option<&Arc<RateLimiter>> {
        self.inner.upload_limit.as_ref()
    }

    /// The URLs of the peers to ask now.
    pub fn live_peer_urls(&self) -> Vec<String> {
        self.inner.flood.peers.live(&[]).into_iter().map(|(url, _)| url).collect()
    }

    /// The live peers in two tiers, this node left out: configured by the owner, then learnt.
    fn live_peer_tiers(&self) -> (Vec<String>, Vec<String>) {
        self.inner.flood.peers.live_tiers(&[self.url().to_string()])
    }
}

/// The node's hook for finished downloads: a file that landed in the share is indexed at once,
/// with the verification data the download brought (or hashed again when it brought none), so
/// that it is served at once.
pub fn index_in_share(share: Arc<Share>) -> super::fetch::Finished {
    Arc::new(move |outcome: &mut crate::engine::Outcome| {
        let Ok(relative) = outcome.path.strip_prefix(share.root()) else {
            return Ok(());
        };
        let name = check_name(&relative.to_string_lossy()).map_err(|e| e.to_string())?;
        let Some(outboard) = outcome.outboard.take() else {
            // Verified piece by piece, without verification data of its own: the share hashes
            // the new file now.
            return share.refresh(&[relative.to_path_buf()]).map(drop).map_err(|e| e.to_string());
        };
        share
            .add_file(
                &name,
                shoal_index::Hashed {
                    id: outcome.id,
                    size: outcome.size,
                    outboard,
                },
            )
            .map_err(|e| e.to_string())
    })
}

/// Whether `given` is `secret`, in time that depends on neither the secret nor its length: a
/// byte-wise compare of slices of different lengths ends at once, which tells a guesser the
/// secret's length. Both are hashed to 32 bytes first, and the digests compared in constant
/// time (`blake3::Hash`'s equality).
fn secrets_match(given: &str, secret: &str) -> bool {
    blake3::hash(given.as_bytes()) == blake3::hash(secret.as_bytes())
}

/// The directories between `root` and `target`'s parent that do not exist yet, outermost first.
fn missing_dirs(root: &std::path::Path, target: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut missing = Vec::new();
    let mut dir = target.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    missing.reverse();
    missing
}

#[cfg(test)]
mod tests {
    use super::secrets_match;

    #[test]
    fn only_the_secret_itself_matches() {
        let secret = "correct horse battery staple";
        assert!(secrets_match(secret, secret));
        for wrong in [
            "",
            "correct",
            "correct horse battery stapl",
            "correct horse battery staples",
            "Correct horse battery staple",
        ] {
            assert!(!secrets_match(wrong, secret), "{wrong:?}");
        }
    }
}
