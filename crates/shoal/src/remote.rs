//! Talking to a running node over XML-RPC: finding it (a URL, or the node running on the state
//! directory), its secret, and the calls the CLI and the shell make, each a typed call of
//! `shoal_node::proto::calls` sent through `shoal_node::net::NodeClient`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_node::net::{CallError, Client, NodeClient};
use shoal_node::proto::calls::{
    Action, Control, Download, DownloadRows, Downloads, Fetch, Hello, NodeStats, PeerRows, PeerTable, Search, Stats,
};
use shoal_xmlrpc::Value;

use crate::cli::SecretArgs;
use crate::config::Layers;

/// Most bytes read from a `--secret-file`.
const MAX_SECRET_FILE: u64 = 4096;

/// The secret given for this one command: `--secret` (with the warning that `ps` shows it) or
/// the first line of `--secret-file`.
pub fn given_secret(args: &SecretArgs) -> anyhow::Result<Option<String>> {
    if let Some(secret) = &args.secret {
        crate::serve::warn_secret_flag();
        if secret.trim().is_empty() {
            bail!("--secret is empty");
        }
        return Ok(Some(secret.clone()));
    }
    let Some(path) = &args.secret_file else { return Ok(None) };
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE + 1).read_to_string(&mut text))
        .with_context(|| format!("--secret-file {}", path.display()))?;
    if text.len() as u64 > MAX_SECRET_FILE {
        bail!(
            "--secret-file {}: longer than {MAX_SECRET_FILE} bytes; it should hold the secret alone",
            path.display()
        );
    }
    crate::config::warn_if_others_read(path, "the secret file");
    match text.lines().next().map(str::trim) {
        Some(secret) if !secret.is_empty() => Ok(Some(secret.to_string())),
        _ => bail!("--secret-file {}: the first line is empty", path.display()),
    }
}

/// How long the shell's `fetch` waits for the node's answer: a download may take days.
const FETCH_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long any other call to the node may take.
const CALL_DEADLINE: Duration = Duration::from_secs(60);
/// Largest answer read from the node.
const CALL_CAP: usize = 64 << 20;

/// A node to talk to.
pub struct Remote {
    pub url: String,
    pub secret: Option<String>,
    client: Client,
    /// Where the client key is, for a node named by id or ticket (dialled over iroh).
    state: Option<std::path::PathBuf>,
    /// How to reach such a node (`--relay`, `--local-only`, ...).
    iroh: Option<shoal_node::options::IrohOptions>,
    keyed: tokio::sync::OnceCell<Client>,
}

/// An XML-RPC value as JSON, for `--json` output.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Integer(i) => (*i).into(),
        Value::Long(i) => (*i).into(),
        Value::Boolean(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        Value::Double(d) => (*d).into(),
        Value::Base64(bytes) => hex::encode(bytes).into(),
        Value::Struct(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Array(items) => items.iter().map(to_json).collect::<Vec<_>>().into(),
        Value::Nil => serde_json::Value::Null,
        other => format!("{other:?}").into(),
    }
}

impl Remote {
    /// A node at `url` with an optional secret.
    pub fn new(url: &str, secret: Option<String>) -> Remote {
        Remote {
            url: url.to_string(),
            secret,
            client: Client::new(Duration::from_secs(3)),
            state: None,
            iroh: None,
            keyed: tokio::sync::OnceCell::new(),
        }
    }

    /// The client for this node: over iroh (with the state directory's client key, which the
    /// node may know as an owner's) when the node is named by id or ticket.
    async fn client(&self) -> Result<&Client, CallError> {
        if !shoal_node::proto::ticket::is_keyed(&self.url) {
            return Ok(&self.client);
        }
        let refused = |reason: String| CallError::Fault {
            url: self.url.clone(),
            fault: shoal_xmlrpc::Fault::new(200, reason),
        };
        self.keyed
            .get_or_try_init(|| async {
                let state = match &self.state {
                    Some(state) => state.clone(),
                    None => Layers::load(None).map_err(|e| refused(e.to_string()))?.state,
                };
                let key = shoal_node::node::client_key(&state).map_err(|e| refused(e.to_string()))?;
                let options = self
                    .iroh
                    .clone()
                    .ok_or_else(|| refused("nodes named by id or ticket need iroh, which --no-iroh turns off".into()))?;
                let iroh = shoal_node::net::iroh::Iroh::bind(key, &options, false).await.map_err(refused)?;
                let client = Client::with_options(shoal_node::net::ClientOptions {
                    iroh: Some(std::sync::Arc::new(iroh)),
                    ..Default::default()
                });
                client.learn_ticket(&self.url, shoal_node::net::Trust::Owner);
                Ok(client)
            })
            .await
    }

    /// The node a command means: `--node`, then `SHOAL_NODE`, then the config file, then the
    /// node running on the state directory.
    ///
    /// Its secret: the one given for this command (`--secret`, `--secret-file`), sent to
    /// whichever node the command names, because the user paired the two; otherwise the state
    /// directory's own (`SHOAL_SECRET`, `secret =` in its config.toml, `<state>/secret`), which
    /// belongs to the node running on that directory (the URL in `<state>/node.url`) and goes
    /// to no other. `node =` and `secret =` in one config file are not a pairing: the file is
    /// the state directory's, so its secret is its node's.
    pub fn find(node: Option<&str>, state: Option<&Path>, net: &crate::cli::NetArgs, secret: &SecretArgs) -> anyhow::Result<Remote> {
        let iroh = net.iroh_options()?;
        let given = given_secret(secret)?;
        let mut remote = Self::find_url(node, state, given)?;
        remote.iroh = iroh;
        Ok(remote)
    }

    fn find_url(node: Option<&str>, state: Option<&Path>, given: Option<String>) -> anyhow::Result<Remote> {
        let layers = Layers::load(state)?;
        let url_file = layers.state.join(shoal_node::node::URL_FILE);
        let own_url = std::fs::read_to_string(&url_file).ok().map(|u| u.trim().to_string());
        let local = || layers.get("secret", None).value.or_else(|| Self::local_secret(&layers.state));
        let setting = layers.get("node", node.filter(|n| !n.is_empty()).map(String::from));
        if let Some(url) = setting.value {
            let ours = own_url.as_deref().is_some_and(|own| same_node(own, &url));
            let secret = given.or_else(|| if ours { local() } else { None });
            let mut remote = Remote::new(&url, secret);
            remote.state = Some(layers.state.clone());
            return Ok(remote);
        }
        match own_url {
            Some(url) => Ok(Remote::new(&url, given.or_else(local))),
            None => bail!(
                "no node is running on the state directory {} (start one with `shoal serve`, or give --node URL)",
                layers.state.display()
            ),
        }
    }

    fn local_secret(state: &Path) -> Option<String> {
        std::fs::read_to_string(state.join(shoal_node::node::SECRET_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The URL calls go to (a node named by id or ticket as `iroh://<id>`).
    fn call_url(&self) -> String {
        match shoal_node::proto::url::normalize(&self.url) {
            Ok(url) if shoal_node::proto::ticket::is_keyed(&self.url) => url,
            _ => self.url.clone(),
        }
    }

    /// The node, called through `client` at `url`: the CLI waits up to a minute for its node and
    /// reads answers up to 64 MiB.
    fn node<'a>(client: &'a Client, url: &'a str) -> NodeClient<'a> {
        NodeClient::new(client, url).deadline(CALL_DEADLINE).cap(CALL_CAP)
    }

    /// A call's failure as an error for the user, naming the method and the node.
    fn must<T>(&self, method: &str, result: Result<T, CallError>) -> anyhow::Result<T> {
        result
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{method} on the node at {}", self.url))
    }

    fn secret(&self) -> anyhow::Result<String> {
        match &self.secret {
            Some(secret) => Ok(secret.clone()),
            // Over iroh the client key proves the owner, when the node knows it as one.
            None if shoal_node::proto::ticket::is_keyed(&self.url) => Ok(String::new()),
            None => bail!(
                "this needs the secret of the node at {}: give --secret-file FILE (or --secret); the state directory's \
                 secret (SHOAL_SECRET, config.toml, <state>/secret) goes only to the node running on it",
                self.url
            ),
        }
    }

    pub async fn search(&self, pattern: &str) -> anyhow::Result<Vec<shoal_node::Match>> {
        let url = self.call_url();
        let found = async { Self::node(self.client().await?, &url).search_merged(&Search::new(pattern)).await }.await;
        Ok(self.must(Search::METHOD, found)?.into_iter().map(shoal_node::Match::from).collect())
    }

    /// The node's own files with sizes and ids (a search that does not leave the node).
    pub async fn files(&self) -> anyhow::Result<Vec<shoal_node::Match>> {
        let url = self.call_url();
        let call = Search::own_files("", hex::encode(rand_bytes()));
        let found = async { Self::node(self.client().await?, &url).search_merged(&call).await }.await;
        Ok(self.must(Search::METHOD, found)?.into_iter().map(shoal_node::Match::from).collect())
    }

    pub async fn fetch(&self, name: &str) -> Result<(), CallError> {
        let secret = self.secret().map_err(|e| CallError::Fault {
            url: self.url.clone(),
            fault: shoal_xmlrpc::Fault::new(200, e.to_string()),
        })?;
        let call = Fetch {
            name: name.to_string(),
            secret,
        };
        let url = self.call_url();
        // The seed's fetch answers when the file is in the share, however long the download
        // takes: wait as long as any download may run (the node gives up on its own).
        Self::node(self.client().await?, &url).deadline(FETCH_DEADLINE).fetch(&call).await
    }

    /// Starts a download on the node; its name.
    pub async fn download(&self, targets: &[String]) -> anyhow::Result<String> {
        let call = Download {
            secret: self.secret()?,
            targets: targets.to_vec(),
            ..Default::default()
        };
        let url = self.call_url();
        let started = async { Self::node(self.client().await?, &url).download(&call).await }.await;
        Ok(self.must(Download::METHOD, started)?.name)
    }

    pub async fn control(&self, action: Action, target: &str) -> anyhow::Result<()> {
        let call = Control {
            action,
            secret: self.secret()?,
            target: target.to_string(),
        };
        let url = self.call_url();
        let done = async { Self::node(self.client().await?, &url).control(&call).await }.await;
        self.must(action.method(), done)
    }

    pub async fn hello(&self, url: &str) -> anyhow::Result<()> {
        let to = self.call_url();
        let done = async { Self::node(self.client().await?, &to).hello(url).await }.await;
        self.must(Hello::METHOD, done)
    }

    /// The node's downloads (in full when this command holds the node's secret), as
    /// `shoal.downloads` answers them, in JSON.
    pub async fn downloads(&self) -> anyhow::Result<serde_json::Value> {
        let url = self.call_url();
        let rows = async { Self::node(self.client().await?, &url).downloads(self.secret.as_deref()).await }.await;
        Ok(to_json(&DownloadRows(self.must(Downloads::METHOD, rows)?).to_value()))
    }

    /// The node's peer table, as `shoal.peer_table` answers it, in JSON.
    pub async fn peer_table(&self) -> anyhow::Result<serde_json::Value> {
        let url = self.call_url();
        let rows = async { Self::node(self.client().await?, &url).peer_table().await }.await;
        Ok(to_json(&PeerRows(self.must(PeerTable::METHOD, rows)?).to_value()))
    }

    /// The node's counters.
    pub async fn stats(&self) -> anyhow::Result<NodeStats> {
        let url = self.call_url();
        let stats = async { Self::node(self.client().await?, &url).stats().await }.await;
        self.must(Stats::METHOD, stats)
    }
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

/// True when two URLs name the same node (same scheme, host and port after normalising).
fn same_node(a: &str, b: &str) -> bool {
    match (shoal_node::proto::url::normalize(a), shoal_node::proto::url::normalize(b)) {
        (Ok(a), Ok(b)) => shoal_node::proto::url::host_port(&a) == shoal_node::proto::url::host_port(&b),
        _ => false,
    }
}
