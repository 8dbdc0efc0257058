//! A typed client of one node: each method sends one call of [`crate::proto::calls`] and reads
//! its answer through that answer's checks, with the deadline and answer cap the call needs.
//! Discovery, the CLI and the hand-over talk to nodes through it, so no call is spelt by hand
//! and no answer is read without its bounds.
//!
//! The defaults are what a node asking a peer needs (a few seconds, caps sized to the answer);
//! a caller that talks to its own node (the CLI) may give its own with [`NodeClient::deadline`]
//! and [`NodeClient::cap`].

use std::time::Duration;

use shoal_xmlrpc::Value;

use super::{CallError, Client};
use crate::proto::calls::{
    Call, Content, Control, Dht, DhtState, Download, DownloadRow, DownloadRows, DownloadStarted, Downloads, Fetch, FolderPage, Hello,
    ListFolder, ListMethods, Locate, LocateAnswer, MatchLimits, Matches, Member, Members, Names, NodeStats, PeerRow, PeerRows, PeerTable,
    PeerUrls, Peers, Query, Search, SearchMatch, Stats, Swarm,
};
use crate::proto::limits::{
    LIST_ANSWER_BYTES, LOCATE_ANSWER_BYTES, PEERS_ANSWER_BYTES, SEARCH_ANSWER_BYTES, SMALL_ANSWER_BYTES, SWARM_ANSWER_BYTES,
};

/// How long a short call (an introduction, a probe, peer exchange) may take.
pub const SHORT_DEADLINE: Duration = Duration::from_secs(5);
/// How long one page of a folder listing may take.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long an owner's call to a node (start a download, steer one) may take.
pub const OWNER_DEADLINE: Duration = Duration::from_secs(60);
/// How long a look at a node's downloads may take.
pub const DOWNLOADS_DEADLINE: Duration = Duration::from_secs(10);
/// Largest `shoal.download` answer read.
pub const STARTED_ANSWER_BYTES: usize = 1 << 20;
/// Largest `shoal.downloads` or `shoal.peer_table` answer read.
pub const TABLE_ANSWER_BYTES: usize = 16 << 20;

/// One node, called through a [`Client`].
#[derive(Clone, Copy)]
pub struct NodeClient<'a> {
    client: &'a Client,
    url: &'a str,
    deadline: Option<Duration>,
    cap: Option<usize>,
}

impl<'a> NodeClient<'a> {
    /// The node at `url` (its base URL, or `iroh://<id>`).
    pub fn new(client: &'a Client, url: &'a str) -> NodeClient<'a> {
        NodeClient {
            client,
            url,
            deadline: None,
            cap: None,
        }
    }

    /// Every call waits at most `deadline` (instead of the call's own default).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Every answer is read up to `cap` bytes (instead of the call's own default).
    pub fn cap(mut self, cap: usize) -> Self {
        self.cap = Some(cap);
        self
    }

    pub fn url(&self) -> &str {
        self.url
    }

    /// Sends `call`, waiting at most `deadline` and reading at most `cap` bytes unless this
    /// client was given its own; the answer as it came.
    pub async fn send<C: Call>(&self, call: &C, deadline: Duration, cap: usize) -> Result<Value, CallError> {
        let deadline = self.deadline.unwrap_or(deadline);
        let cap = self.cap.unwrap_or(cap);
        self.client.call(self.url, call.method(), &call.encode(), deadline, cap).await
    }

    /// An answer that does not fit the call's answer type.
    fn unexpected(&self, method: &'static str) -> CallError {
        CallError::Unexpected {
            url: self.url.to_string(),
            method,
        }
    }

    /// `hello(url)`: introduces `url` (this node, usually) to the node.
    pub async fn hello(&self, url: &str) -> Result<(), CallError> {
        let call = Hello { url: url.to_string() };
        self.send(&call, SHORT_DEADLINE, SMALL_ANSWER_BYTES).await.map(drop)
    }

    /// `system.listMethods()`: the probe that tells a node (any XML-RPC answer that is not a
    /// fault; a fault is a node too, and comes back as [`CallError::Fault`]).
    pub async fn list_methods(&self) -> Result<Vec<String>, CallError> {
        let answer = self.send(&ListMethods, SHORT_DEADLINE, SMALL_ANSWER_BYTES).await?;
        Ok(Names::from_value(answer).0)
    }

    /// The seed's `query`: the content, `None` when the answer is not content of at most
    /// `max_content` bytes. Waits as long as the route's budget by default.
    pub async fn query(&self, call: &Query, max_content: u64) -> Result<Option<Vec<u8>>, CallError> {
        let answer = self.send(call, OWNER_DEADLINE, content_cap(max_content)).await?;
        Ok(Content::from_value(answer, max_content).map(|c| c.0))
    }

    /// `shoal.locate`: where the file is, `None` when the answer fails its checks. Waits as long
    /// as the call's budget by default.
    pub async fn locate(&self, call: &Locate, max_content: u64) -> Result<Option<LocateAnswer>, CallError> {
        let deadline = call.route.budget_ms.map_or(OWNER_DEADLINE, Duration::from_millis);
        let answer = self.send(call, deadline, content_cap(max_content)).await?;
        Ok(LocateAnswer::from_value(answer, max_content))
    }

    /// `shoal.search`: the matches that pass their checks. Waits as long as the call's budget
    /// by default.
    pub async fn search(&self, call: &Search) -> Result<Vec<SearchMatch>, CallError> {
        let deadline = call.route.budget_ms.map_or(OWNER_DEADLINE, Duration::from_millis);
        let answer = self.send(call, deadline, SEARCH_ANSWER_BYTES).await?;
        Ok(Matches::from_value(answer).0)
    }

    /// `shoal.search` read as the owner reads its own node's merged answer
    /// ([`MatchLimits::MERGED`]).
    pub async fn search_merged(&self, call: &Search) -> Result<Vec<SearchMatch>, CallError> {
        let deadline = call.route.budget_ms.map_or(OWNER_DEADLINE, Duration::from_millis);
        let answer = self.send(call, deadline, SEARCH_ANSWER_BYTES).await?;
        Ok(Matches::from_value_within(answer, MatchLimits::MERGED).0)
    }

    /// One page of `shoal.list_folder`, with what fails its checks dropped.
    pub async fn list_folder(&self, call: &ListFolder) -> Result<FolderPage, CallError> {
        let answer = self.send(call, PAGE_DEADLINE, LIST_ANSWER_BYTES).await?;
        Ok(FolderPage::from_value(answer, &call.folder, &call.cursor))
    }

    /// `shoal.peers`: the node base URLs the node knows.
    pub async fn peers(&self) -> Result<Vec<String>, CallError> {
        let answer = self.send(&Peers, SHORT_DEADLINE, PEERS_ANSWER_BYTES).await?;
        Ok(PeerUrls::from_value(answer).0)
    }

    /// `shoal.swarm`: other downloaders of a content id the node holds or fetches.
    pub async fn swarm(&self, call: &Swarm) -> Result<Vec<Member>, CallError> {
        let answer = self.send(call, SHORT_DEADLINE, SWARM_ANSWER_BYTES).await?;
        Ok(Members::from_value(answer).0)
    }

    /// `shoal.peer_table`: the node's peers with their state.
    pub async fn peer_table(&self) -> Result<Vec<PeerRow>, CallError> {
        let answer = self.send(&PeerTable, OWNER_DEADLINE, TABLE_ANSWER_BYTES).await?;
        Ok(PeerRows::from_value(answer).0)
    }

    /// `shoal.stats`: the node's counters.
    pub async fn stats(&self) -> Result<NodeStats, CallError> {
        let answer = self.send(&Stats, OWNER_DEADLINE, SMALL_ANSWER_BYTES).await?;
        NodeStats::from_value(answer).ok_or_else(|| self.unexpected(Stats::METHOD))
    }

    /// `shoal.dht`: the node on the DHT (its addresses and lookups with the owner's secret).
    pub async fn dht(&self, secret: Option<&str>) -> Result<DhtState, CallError> {
        let call = Dht {
            secret: secret.map(String::from),
        };
        let answer = self.send(&call, OWNER_DEADLINE, SMALL_ANSWER_BYTES).await?;
        DhtState::from_value(answer).ok_or_else(|| self.unexpected(Dht::METHOD))
    }

    /// The seed's `fetch`: the node downloads into its share and answers when it is done.
    pub async fn fetch(&self, call: &Fetch) -> Result<(), CallError> {
        self.send(call, OWNER_DEADLINE, SMALL_ANSWER_BYTES).await.map(drop)
    }

    /// `shoal.download`: starts a download on the node.
    pub async fn download(&self, call: &Download) -> Result<DownloadStarted, CallError> {
        let answer = self.send(call, OWNER_DEADLINE, STARTED_ANSWER_BYTES).await?;
        DownloadStarted::from_value(answer).ok_or_else(|| self.unexpected(Download::METHOD))
    }

    /// `shoal.downloads`: the node's downloads (in full with the owner's secret).
    pub async fn downloads(&self, secret: Option<&str>) -> Result<Vec<DownloadRow>, CallError> {
        let call = Downloads {
            secret: secret.map(String::from),
        };
        let answer = self.send(&call, DOWNLOADS_DEADLINE, TABLE_ANSWER_BYTES).await?;
        Ok(DownloadRows::from_value(answer).0)
    }

    /// `shoal.pause`, `shoal.resume` or `shoal.cancel`.
    pub async fn control(&self, call: &Control) -> Result<(), CallError> {
        self.send(call, OWNER_DEADLINE, SMALL_ANSWER_BYTES).await.map(drop)
    }
}

/// The cap of an answer that may carry up to `max_content` bytes of content (base64 takes 4/3).
fn content_cap(max_content: u64) -> usize {
    (max_content as usize).saturating_mul(4) / 3 + LOCATE_ANSWER_BYTES
}
