//! A running node as its owner's commands reach it (`shoal shell --node`, the report commands,
//! `shoal get` handing a download over): the node's URL, or its id or ticket (then it is
//! dialled over iroh with the state directory's client key, which the node may know as an
//! owner's), and the typed calls of [`crate::net::NodeClient`] with the deadline and answer cap
//! a command allows its own node. The binary talks to nodes through this, never through the
//! client or the wire types below it.

use std::path::PathBuf;
use std::time::Duration;

use crate::net::{Client, ClientOptions, NodeClient, Trust};
use crate::options::IrohOptions;
use crate::proto::calls::{Control, Fetch, Search};

pub use crate::net::CallError;
pub use crate::proto::calls::{
    Action, DhtState, Download, DownloadRow, DownloadRows, DownloadStarted, LookupRow, NodeStats, PeerRow, PeerRows,
};
/// The fault codes a command tells apart.
pub use crate::proto::faults;

/// How long a command waits for its node, but for `fetch`.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);
/// Largest answer a command reads from its node.
pub const CALL_CAP: usize = 64 << 20;
/// How long the seed's `fetch` may take: it answers when the file is in the share, however
/// long the download takes (the node gives up on its own).
pub const FETCH_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A node to call.
pub struct RemoteNode {
    /// As the user named it.
    url: String,
    /// As calls go to it (`iroh://<id>` for a node named by id or ticket).
    call_url: String,
    plain: Client,
    /// Where the client key is, for a node named by id or ticket.
    state: Option<PathBuf>,
    /// How to reach such a node (`--relay`, `--local-only`, ...); `None`: iroh is off.
    iroh: Option<IrohOptions>,
    keyed: tokio::sync::OnceCell<Client>,
    deadline: Duration,
}

impl RemoteNode {
    /// The node at `url` (a URL, a node id or a ticket). `state` holds the client key used for
    /// a node named by id; `iroh` says how to reach one (`None`: it cannot be reached).
    pub fn new(url: &str, state: Option<PathBuf>, iroh: Option<IrohOptions>) -> RemoteNode {
        let call_url = match crate::proto::url::normalize(url) {
            Ok(normal) if crate::proto::ticket::is_keyed(url) => normal,
            _ => url.to_string(),
        };
        RemoteNode {
            url: url.to_string(),
            call_url,
            plain: Client::new(Duration::from_secs(3)),
            state,
            iroh,
            keyed: tokio::sync::OnceCell::new(),
            deadline: CALL_DEADLINE,
        }
    }

    /// Every call but `fetch` waits at most `deadline` ([`CALL_DEADLINE`] by default).
    pub fn with_deadline(mut self, deadline: Duration) -> RemoteNode {
        self.deadline = deadline;
        self
    }

    /// The node as the user named it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the node is named by id or ticket (its callers over iroh prove who they are by
    /// their key, so the owner's calls need no secret when the node knows the key).
    pub fn is_keyed(&self) -> bool {
        crate::proto::ticket::is_keyed(&self.url)
    }

    /// The client for this node: the plain one, or one over iroh built on first use.
    async fn client(&self) -> Result<&Client, CallError> {
        if !self.is_keyed() {
            return Ok(&self.plain);
        }
        let refused = |reason: String| CallError::Fault {
            url: self.url.clone(),
            fault: shoal_xmlrpc::Fault::new(crate::proto::faults::ACCESS_DENIED, reason),
        };
        self.keyed
            .get_or_try_init(|| async {
                let state = self
                    .state
                    .clone()
                    .ok_or_else(|| refused("no state directory holds a client key".into()))?;
                let key = crate::state::client_key(&state).map_err(|e| refused(e.to_string()))?;
                let options = self
                    .iroh
                    .clone()
                    .ok_or_else(|| refused("nodes named by id or ticket need iroh, which --no-iroh turns off".into()))?;
                let iroh = crate::net::iroh::Iroh::bind(key, &options, false).await.map_err(refused)?;
                let client = Client::with_options(ClientOptions {
                    iroh: Some(std::sync::Arc::new(iroh)),
                    ..Default::default()
                });
                client.learn_ticket(&self.url, Trust::Owner);
                Ok(client)
            })
            .await
    }

    async fn node(&self) -> Result<NodeClient<'_>, CallError> {
        Ok(NodeClient::new(self.client().await?, &self.call_url)
            .deadline(self.deadline)
            .cap(CALL_CAP))
    }

    /// `shoal.search` across the network from the node, merged there.
    pub async fn search(&self, pattern: &str) -> Result<Vec<super::Match>, CallError> {
        let found = self.node().await?.search_merged(&Search::new(pattern)).await?;
        Ok(found.into_iter().map(super::Match::from).collect())
    }

    /// The node's own files with sizes and ids (a search that does not leave the node).
    pub async fn files(&self) -> Result<Vec<super::Match>, CallError> {
        let call = Search::own_files("", hex::encode(rand::random::<[u8; 16]>()));
        let found = self.node().await?.search_merged(&call).await?;
        Ok(found.into_iter().map(super::Match::from).collect())
    }

    /// The seed's `fetch(name, secret)`: answers when the file is in the node's share.
    pub async fn fetch(&self, name: &str, secret: &str) -> Result<(), CallError> {
        let call = Fetch {
            name: name.to_string(),
            secret: secret.to_string(),
        };
        self.node().await?.deadline(FETCH_DEADLINE).fetch(&call).await
    }

    /// `shoal.download`: starts a download on the node.
    pub async fn download(&self, call: &Download) -> Result<DownloadStarted, CallError> {
        self.node().await?.download(call).await
    }

    /// `shoal.download` of plain targets into the node's share.
    pub async fn download_targets(&self, secret: &str, targets: &[String]) -> Result<DownloadStarted, CallError> {
        let call = Download {
            secret: secret.to_string(),
            targets: targets.to_vec(),
            ..Default::default()
        };
        self.download(&call).await
    }

    /// Pauses, resumes or cancels a download of the node.
    pub async fn control(&self, action: Action, secret: &str, target: &str) -> Result<(), CallError> {
        let call = Control {
            action,
            secret: secret.to_string(),
            target: target.to_string(),
        };
        self.node().await?.control(&call).await
    }

    /// `hello(url)`: introduces `url` to the node.
    pub async fn hello(&self, url: &str) -> Result<(), CallError> {
        self.node().await?.hello(url).await
    }

    /// The node's downloads (in full with the secret).
    pub async fn downloads(&self, secret: Option<&str>) -> Result<Vec<DownloadRow>, CallError> {
        self.node().await?.downloads(secret).await
    }

    /// The node's peer table.
    pub async fn peer_table(&self) -> Result<Vec<PeerRow>, CallError> {
        self.node().await?.peer_table().await
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<NodeStats, CallError> {
        self.node().await?.stats().await
    }

    /// The node on the DHT (in full with the secret).
    pub async fn dht(&self, secret: Option<&str>) -> Result<crate::proto::calls::DhtState, CallError> {
        self.node().await?.dht(secret).await
    }
}

/// True when two URLs name the same node (same scheme, host and port after normalising).
pub fn same_node(a: &str, b: &str) -> bool {
    match (crate::proto::url::normalize(a), crate::proto::url::normalize(b)) {
        (Ok(a), Ok(b)) => crate::proto::url::host_port(&a) == crate::proto::url::host_port(&b),
        _ => false,
    }
}
