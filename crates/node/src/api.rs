//! The one facade every request goes through: XML-RPC methods, HTTP handlers and the CLI all
//! call [`Api`], and only [`Api`] reaches the share, the peer table, the search and downloads.
//!
//! Errors are [`ApiError`]; the HTTP layer turns them into faults and status codes in one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_index::{ContentId, FileEntry, NameError, SafeName, Share, check_name};
use shoal_xmlrpc::Value;
use tokio::task::JoinSet;

use crate::client::{CallError, Client};
use crate::download;
use crate::downloads::{DownloadInfo, Downloads, Status};
use crate::engine::{Job, RateLimiter};
use crate::options::NodeOptions;
use crate::peers::{PeerError, PeerInfo, PeerKind, Peers};
use crate::search::{self, MAX_HISTORY, SeenQueries};

/// What went wrong in an API call. Each variant maps to one fault code and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} was not found")]
    NotFound(String),
    /// Not found, with the reason in full (e.g. what a download's targets resolved to).
    #[error("{0}")]
    Unresolved(String),
    #[error("access denied")]
    AccessDenied,
    #[error("{name} is {size} bytes, over the {limit}-byte XML-RPC limit; GET {path} instead")]
    TooLarge { name: String, size: u64, limit: u64, path: String },
    #[error("{0} already exists in the share; nothing was overwritten")]
    Exists(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("download of {name} failed: {reason}")]
    Download { name: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<NameError> for ApiError {
    fn from(_: NameError) -> Self {
        // One answer for every refused name, so that nothing outside the share can be probed.
        ApiError::AccessDenied
    }
}

/// A file found by a search: where it is and what it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// The node that holds it.
    pub url: String,
    pub name: String,
    pub size: u64,
    /// The content id, when the holder is a shoal node.
    pub id: Option<ContentId>,
    /// The content itself, when it came back inline (from a seed node's `query`).
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// One match of a pattern search, merged across every node that holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Match {
    pub name: String,
    pub size: u64,
    pub id: ContentId,
    pub urls: Vec<String>,
}

/// Where a search is in the network: its id, the nodes it has passed and how far it may go.
#[derive(Debug, Clone)]
pub struct Route {
    pub query_id: String,
    pub history: Vec<String>,
    /// Nodes that may still search, this one included (the seed's 6 minus the history length).
    pub ttl: u32,
    /// Time left for this node to answer.
    pub budget: Duration,
}

/// How often a node's running download asks the peers for more holders.
pub const FIND_MORE_EVERY: Duration = Duration::from_secs(15);

/// What a node passes on when it forwards a search.
struct Hop {
    /// The route the peers get.
    next: Route,
    /// Peers not to ask: every node already in the history (normalised).
    exclude: Vec<String>,
    /// When this node must answer with what it has.
    deadline: Instant,
}

impl Route {
    /// The next hop from the node at `me`, or `None` when the search ends here (its TTL spent
    /// or its history at the seed's limit).
    fn next_hop(self, me: &str) -> Option<Hop> {
        let mut history = self.history;
        history.push(me.to_string());
        if self.ttl <= 1 || history.len() >= MAX_HISTORY {
            return None;
        }
        let exclude = history.iter().filter_map(|u| crate::peer_url::normalize(u).ok()).collect();
        let next = Route {
            query_id: self.query_id,
            history,
            ttl: self.ttl - 1,
            budget: search::next_budget(self.budget),
        };
        Some(Hop {
            next,
            exclude,
            deadline: Instant::now() + self.budget,
        })
    }
}

/// State shared by every handler.
pub struct Inner {
    pub options: NodeOptions,
    pub share: Arc<Share>,
    pub peers: Peers,
    pub client: Client,
    pub seen: SeenQueries,
    pub secret: String,
    pub downloads: Downloads,
    pub upload_limit: Option<Arc<RateLimiter>>,
    /// Cancelled when the node begins to shut down.
    pub stopping: tokio_util::sync::CancellationToken,
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

    pub fn share(&self) -> &Arc<Share> {
        &self.inner.share
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// This node's own URL.
    pub fn url(&self) -> &str {
        &self.inner.peers.me().url
    }

    /// The owner's secret, for the owner's own in-process shell.
    pub fn secret(&self) -> &str {
        &self.inner.secret
    }

    /// Checks the owner's secret in constant time.
    pub fn check_secret(&self, given: &str) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        if bool::from(given.as_bytes().ct_eq(self.inner.secret.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::AccessDenied)
        }
    }

    /// Scans the share now, picking up added, changed and removed files.
    pub async fn rescan(&self) -> Result<shoal_index::ScanReport, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || share.scan()).await?.map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The seed's `hello`: learn a peer.
    pub fn hello(&self, url: &str) -> Result<(), ApiError> {
        match self.inner.peers.add(url) {
            Ok(_) | Err(PeerError::IsSelf(_)) => Ok(()),
            Err(error @ (PeerError::Url(_) | PeerError::Full(_))) => Err(ApiError::BadRequest(error.to_string())),
            Err(error @ PeerError::Store(_)) => Err(ApiError::Internal(error.to_string())),
        }
    }

    /// The known peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner.peers.list()
    }

    /// Messages this node has sent to others.
    pub fn messages_sent(&self) -> u64 {
        self.inner.client.messages_sent()
    }

    /// This node's own files.
    pub async fn list(&self) -> Result<Vec<(String, FileEntry)>, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || share.list()).await?.map_err(|e| ApiError::Internal(e.to_string()))
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

    /// The verification data (bao outboard) of a file of this share.
    pub async fn outboard(&self, id: ContentId) -> Result<Vec<u8>, ApiError> {
        let share = self.inner.share.clone();
        blocking(move || share.outboard(&id))
            .await?
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(id.to_string()))
    }

    /// Reads a whole file of the share for an XML-RPC answer, within the size limit. The file is
    /// read from disk as the seed does, so a file added a moment ago is found before any rescan.
    async fn read_local(&self, name: &SafeName) -> Result<Option<Vec<u8>>, ApiError> {
        let root = self.inner.share.root().to_path_buf();
        let limit = self.inner.options.max_rpc_content;
        let name = name.clone();
        blocking(move || {
            let path = match name.resolve_existing(&root) {
                Ok(path) => path,
                // A directory of the share is not a file, as the seed's `isfile` says.
                Err(NameError::NotFound { .. } | NameError::NotAFile { .. }) => return Ok(None),
                Err(error) => return Err(ApiError::from(error)),
            };
            let size = std::fs::metadata(&path)
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
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| ApiError::Internal(format!("read {}: {e}", name)))
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
        self.inner.seen.first_time(&route.query_id);
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
                download::fetch_verified_bytes(&self.inner.client, &hit.url, id, self.inner.options.max_rpc_content)
                    .await
                    .map_err(|reason| ApiError::Download {
                        name: name.to_string(),
                        reason,
                    })
            }
        }
    }

    /// `shoal.locate`: where a file is. Answers once per query id.
    pub async fn locate(&self, name: &str, route: Route) -> Result<Hit, ApiError> {
        let name = check_name(name)?;
        if !self.inner.seen.first_time(&route.query_id) {
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

    /// Asks every live peer not in the history at once; the first hit wins.
    async fn forward_locate(&self, name: &SafeName, route: Route) -> Result<Hit, ApiError> {
        let Some(Hop { next, exclude, deadline }) = route.next_hop(self.url()) else {
            return Err(ApiError::NotFound(name.to_string()));
        };
        let mut asks = JoinSet::new();
        for (peer, kind) in self.inner.peers.live(&exclude) {
            let api = self.clone();
            let (name, next) = (name.to_string(), next.clone());
            asks.spawn(async move { api.ask_locate(&peer, kind, &name, next).await });
        }
        let stopping = self.inner.stopping.clone();
        loop {
            // A node that is shutting down answers what it has at once instead of waiting on others.
            let next = tokio::select! {
                () = stopping.cancelled() => Err(()),
                next = tokio::time::timeout_at(deadline.into(), asks.join_next()) => next.map_err(drop),
            };
            match next {
                Ok(Some(Ok(Some(hit)))) => return Ok(hit),
                Ok(Some(_)) => continue,
                Ok(None) | Err(()) => return Err(ApiError::NotFound(name.to_string())),
            }
        }
    }

    /// Asks one peer where `name` is, in the protocol it speaks.
    async fn ask_locate(&self, peer: &str, kind: PeerKind, name: &str, route: Route) -> Option<Hit> {
        let client = &self.inner.client;
        let limit = self.response_limit();
        if kind != PeerKind::Seed {
            let params = [
                Value::String(name.to_string()),
                history_value(&route.history),
                Value::String(route.query_id.clone()),
                Value::Integer(route.ttl as i32),
                Value::Integer(route.budget.as_millis().min(i32::MAX as u128) as i32),
            ];
            match client.call(peer, "shoal.locate", &params, route.budget, limit).await {
                Ok(value) => {
                    self.inner.peers.succeeded(peer, Some(PeerKind::Shoal));
                    return hit_from_value(value);
                }
                Err(error) => match error.fault_code() {
                    Some(crate::faults::NOT_FOUND) | Some(crate::faults::ACCESS_DENIED) => {
                        self.inner.peers.succeeded(peer, Some(PeerKind::Shoal));
                        return None;
                    }
                    // The peer does not know the extension: it is a seed node.
                    Some(crate::faults::BAD_CALL) if is_unknown_method(&error) => self.inner.peers.succeeded(peer, Some(PeerKind::Seed)),
                    Some(_) => {
                        self.inner.peers.succeeded(peer, None);
                        return None;
                    }
                    None => {
                        tracing::debug!(%error, "a peer failed");
                        self.inner.peers.failed(peer);
                        return None;
                    }
                },
            }
        }
        let params = [Value::String(name.to_string()), history_value(&route.history)];
        match client.call(peer, "query", &params, route.budget, limit).await {
            Ok(value) => {
                self.inner.peers.succeeded(peer, None);
                let content = shoal_xmlrpc::content_bytes(value)?;
                Some(Hit {
                    url: peer.to_string(),
                    name: name.to_string(),
                    size: content.len() as u64,
                    id: None,
                    content: Some(content),
                })
            }
            Err(error) => {
                if error.is_peer_failure() {
                    self.inner.peers.failed(peer);
                } else {
                    self.inner.peers.succeeded(peer, None);
                }
                None
            }
        }
    }

    fn response_limit(&self) -> usize {
        // Base64 grows content by 4/3; leave room for the XML around it.
        (self.inner.options.max_rpc_content as usize).saturating_mul(4) / 3 + 64 * 1024
    }

    /// `shoal.search`: every file whose name matches `pattern`, across the network.
    pub async fn search(&self, pattern: &str, route: Route) -> Result<Vec<Match>, ApiError> {
        if pattern.len() > 1024 {
            return Err(ApiError::BadRequest("the pattern is longer than 1024 bytes".into()));
        }
        if !self.inner.seen.first_time(&route.query_id) {
            return Ok(Vec::new());
        }
        let mut merged: Vec<Match> = Vec::new();
        let local = self.list().await?;
        let by_id = pattern.parse::<ContentId>().ok();
        for (name, entry) in local
            .into_iter()
            .filter(|(name, entry)| by_id.map_or_else(|| search::matches(pattern, name), |id| id == entry.id))
        {
            merge(
                &mut merged,
                Match {
                    name,
                    size: entry.size,
                    id: entry.id,
                    urls: vec![self.url().to_string()],
                },
            );
        }
        let Some(Hop { next, exclude, deadline }) = route.next_hop(self.url()) else {
            return Ok(merged);
        };
        let mut asks = JoinSet::new();
        for (peer, kind) in self.inner.peers.live(&exclude) {
            if kind == PeerKind::Seed {
                continue;
            }
            let api = self.clone();
            let (pattern, next) = (pattern.to_string(), next.clone());
            asks.spawn(async move { api.ask_search(&peer, &pattern, next).await });
        }
        let stopping = self.inner.stopping.clone();
        loop {
            let joined = tokio::select! {
                () = stopping.cancelled() => break,
                next = tokio::time::timeout_at(deadline.into(), asks.join_next()) => match next {
                    Ok(Some(joined)) => joined,
                    Ok(None) | Err(_) => break,
                },
            };
            for found in joined.unwrap_or_default() {
                merge(&mut merged, found);
            }
        }
        merged.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(merged)
    }

    async fn ask_search(&self, peer: &str, pattern: &str, route: Route) -> Vec<Match> {
        let params = [
            Value::String(pattern.to_string()),
            Value::String(route.query_id.clone()),
            Value::Integer(route.ttl as i32),
            history_value(&route.history),
            Value::Integer(route.budget.as_millis().min(i32::MAX as u128) as i32),
        ];
        match self.inner.client.call(peer, "shoal.search", &params, route.budget, 8 << 20).await {
            Ok(Value::Array(items)) => {
                self.inner.peers.succeeded(peer, Some(PeerKind::Shoal));
                items.into_iter().filter_map(match_from_value).collect()
            }
            Ok(_) => Vec::new(),
            Err(error) => {
                match error.fault_code() {
                    None => {
                        self.inner.peers.failed(peer);
                    }
                    Some(crate::faults::BAD_CALL) if is_unknown_method(&error) => self.inner.peers.succeeded(peer, Some(PeerKind::Seed)),
                    Some(_) => self.inner.peers.succeeded(peer, None),
                }
                Vec::new()
            }
        }
    }

    /// Peer exchange: asks each live shoal peer for the peers it knows and learns them.
    /// Returns how many peers were new.
    pub async fn exchange_peers(&self) -> usize {
        let mut learned = 0;
        for (peer, kind) in self.inner.peers.live(&[]) {
            if kind == PeerKind::Seed {
                continue;
            }
            let Ok(Value::Array(urls)) = self
                .inner
                .client
                .call(&peer, "shoal.peers", &[], Duration::from_secs(5), 1 << 20)
                .await
            else {
                continue;
            };
            for url in urls.into_iter().take(256) {
                if let Value::String(url) = url
                    && matches!(self.inner.peers.add(&url), Ok((_, true)))
                {
                    learned += 1;
                }
            }
        }
        learned
    }

    /// A fresh route for a search that starts at this node.
    pub fn new_route(&self) -> Route {
        Route {
            query_id: search::new_query_id(),
            history: Vec::new(),
            ttl: self.inner.options.ttl,
            budget: self.inner.options.search_deadline,
        }
    }

    /// The seed's `fetch(name, secret)`: download `name` from the network into the share, from
    /// every shoal node that holds it at once, or from a seed node through `query`.
    pub async fn fetch(&self, name: &str, secret: &str) -> Result<(), ApiError> {
        self.check_secret(secret)?;
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

    async fn fetch_into(&self, name: &SafeName, target: std::path::PathBuf) -> Result<(), ApiError> {
        let found = self.search(name.as_str(), self.new_route()).await?;
        let best = found
            .into_iter()
            .filter(|m| m.name == name.as_str())
            .map(|mut m| {
                m.urls.retain(|u| u != self.url());
                m
            })
            .filter(|m| !m.urls.is_empty())
            .max_by_key(|m| m.urls.len());
        let Some(best) = best else {
            // No shoal node has it: a seed node may, through query.
            let route = self.new_route();
            self.inner.seen.first_time(&route.query_id);
            let hit = self.forward_locate(name, route).await?;
            return download::fetch_hit(self, name, &target, hit).await;
        };
        let job = Job {
            name: name.to_string(),
            target,
            id: Some(best.id),
            size: Some(best.size),
            peers: best.urls,
            mirrors: Vec::new(),
            force: false,
            by_node: true,
        };
        let mut status = self.start_download(job);
        loop {
            let now = status.borrow_and_update().clone();
            match now {
                Status::Running => {}
                Status::Done => return Ok(()),
                Status::Failed(reason) => {
                    return Err(ApiError::Download {
                        name: name.to_string(),
                        reason,
                    });
                }
                Status::Paused => {
                    return Err(ApiError::Download {
                        name: name.to_string(),
                        reason: "paused; resume it to go on".into(),
                    });
                }
            }
            if status.changed().await.is_err() {
                return Err(ApiError::Download {
                    name: name.to_string(),
                    reason: "the node is shutting down".into(),
                });
            }
        }
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
        let share = self.inner.share.clone();
        let (target, id, mut known) = (job.target.clone(), job.id, job.peers.clone());
        known.push(self.url().to_string());
        let status = self.start_download_only(job, share);
        if let (Some(id), Some(more)) = (id, self.inner.downloads.sources_of(&target)) {
            let peers = self.live_peer_urls();
            let finder = crate::engine::resolve::find_more(self.inner.client.clone(), peers, id, known, FIND_MORE_EVERY, more);
            self.inner.downloads.spawn(finder);
        }
        status
    }

    fn start_download_only(&self, job: Job, share: Arc<Share>) -> tokio::sync::watch::Receiver<Status> {
        self.inner.downloads.start(
            job,
            Box::new(move |outcome| {
                let Ok(relative) = outcome.path.strip_prefix(share.root()) else {
                    return Ok(());
                };
                let name = check_name(&relative.to_string_lossy()).map_err(|e| e.to_string())?;
                let Some(outboard) = outcome.outboard else { return Ok(()) };
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
            }),
        )
    }

    /// Continues a paused, failed or interrupted download from its saved progress.
    pub fn resume_download(&self, target: &std::path::Path) -> Result<(), ApiError> {
        let job = self
            .inner
            .downloads
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
                let records = self.inner.downloads.engine().records().all().ok()?;
                records
                    .into_iter()
                    .find(|r| r.target == key || r.name == key)
                    .map(|r| std::path::PathBuf::from(r.target))
            })
            .ok_or_else(|| ApiError::NotFound(format!("a download named {key}")))
    }

    /// The node's downloads with their progress.
    pub fn downloads(&self) -> Vec<DownloadInfo> {
        self.inner.downloads.list()
    }

    /// The node's download manager.
    pub fn download_manager(&self) -> &Downloads {
        &self.inner.downloads
    }

    /// The limiter for served file data, when `--max-upload-rate` is set.
    pub fn upload_limit(&self) -> Option<&Arc<RateLimiter>> {
        self.inner.upload_limit.as_ref()
    }

    /// The URLs of the peers to ask now.
    pub fn live_peer_urls(&self) -> Vec<String> {
        self.inner.peers.live(&[]).into_iter().map(|(url, _)| url).collect()
    }
}

/// True for the fault a server gives for a method it does not have (Python: `method "x" is not
/// supported`), which tells a seed node from a shoal node.
fn is_unknown_method(error: &CallError) -> bool {
    matches!(error, CallError::Fault { fault, .. } if fault.message.contains("not supported"))
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

fn history_value(history: &[String]) -> Value {
    Value::Array(history.iter().cloned().map(Value::String).collect())
}

fn merge(merged: &mut Vec<Match>, found: Match) {
    match merged.iter_mut().find(|m| m.name == found.name && m.id == found.id) {
        Some(existing) => {
            for url in found.urls {
                if !existing.urls.contains(&url) {
                    existing.urls.push(url);
                }
            }
        }
        None => merged.push(found),
    }
}

fn field<'a>(fields: &'a std::collections::BTreeMap<String, Value>, key: &str) -> Option<&'a Value> {
    fields.get(key)
}

fn string_field(fields: &std::collections::BTreeMap<String, Value>, key: &str) -> Option<String> {
    match field(fields, key)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A hit as `shoal.locate` sends it.
pub fn hit_value(hit: &Hit) -> Value {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("url".into(), Value::String(hit.url.clone()));
    fields.insert("name".into(), Value::String(hit.name.clone()));
    fields.insert("size".into(), shoal_xmlrpc::size_value(hit.size));
    if let Some(id) = hit.id {
        fields.insert("id".into(), Value::String(id.to_string()));
    }
    if let Some(content) = &hit.content {
        fields.insert("content".into(), Value::Base64(content.clone()));
    }
    Value::Struct(fields)
}

fn hit_from_value(value: Value) -> Option<Hit> {
    let Value::Struct(fields) = value else { return None };
    Some(Hit {
        url: string_field(&fields, "url")?,
        name: string_field(&fields, "name")?,
        size: field(&fields, "size")
            .and_then(shoal_xmlrpc::as_i64)
            .and_then(|n| u64::try_from(n).ok())?,
        id: string_field(&fields, "id").and_then(|s| s.parse().ok()),
        content: field(&fields, "content").cloned().and_then(shoal_xmlrpc::content_bytes),
    })
}

/// A match as `shoal.search` sends it.
pub fn match_value(found: &Match) -> Value {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("name".into(), Value::String(found.name.clone()));
    fields.insert("size".into(), shoal_xmlrpc::size_value(found.size));
    fields.insert("id".into(), Value::String(found.id.to_string()));
    fields.insert("urls".into(), Value::Array(found.urls.iter().cloned().map(Value::String).collect()));
    Value::Struct(fields)
}

/// Reads a match sent by `shoal.search`; `None` for anything malformed.
pub fn match_from_value(value: Value) -> Option<Match> {
    let Value::Struct(fields) = value else { return None };
    let urls = match field(&fields, "urls")? {
        Value::Array(urls) => urls
            .iter()
            .filter_map(|u| if let Value::String(s) = u { Some(s.clone()) } else { None })
            .collect(),
        _ => return None,
    };
    Some(Match {
        name: string_field(&fields, "name")?,
        size: field(&fields, "size")
            .and_then(shoal_xmlrpc::as_i64)
            .and_then(|n| u64::try_from(n).ok())?,
        id: string_field(&fields, "id")?.parse().ok()?,
        urls,
    })
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        ApiError::Internal(error.to_string())
    }
}
