//! Talking to a running node over XML-RPC: finding it (a URL, or the node running on the state
//! directory), its secret, and the calls the CLI and the shell make, through the service
//! layer's `RemoteNode`.

use std::path::Path;

use anyhow::{Context, bail};
use shoal_node::service::Match;
use shoal_node::service::remote::{Action, CallError, DownloadRows, NodeStats, PeerRows, RemoteNode, faults, same_node};
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

/// A node to talk to, and the secret this command may send it.
pub struct Remote {
    pub url: String,
    pub secret: Option<String>,
    node: RemoteNode,
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
            node: RemoteNode::new(url, None, None),
        }
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
        let layers = Layers::load(state)?;
        let url_file = layers.state.join(shoal_node::state::URL_FILE);
        let own_url = std::fs::read_to_string(&url_file).ok().map(|u| u.trim().to_string());
        let local = || layers.get("secret", None).value.or_else(|| Self::local_secret(&layers.state));
        let setting = layers.get("node", node.filter(|n| !n.is_empty()).map(String::from));
        let (url, secret) = match setting.value {
            Some(url) => {
                let ours = own_url.as_deref().is_some_and(|own| same_node(own, &url));
                let secret = given.or_else(|| if ours { local() } else { None });
                (url, secret)
            }
            None => match own_url {
                Some(url) => {
                    let secret = given.or_else(local);
                    (url, secret)
                }
                None => bail!(
                    "no node is running on the state directory {} (start one with `shoal serve`, or give --node URL)",
                    layers.state.display()
                ),
            },
        };
        Ok(Remote {
            node: RemoteNode::new(&url, Some(layers.state.clone()), iroh),
            url,
            secret,
        })
    }

    fn local_secret(state: &Path) -> Option<String> {
        std::fs::read_to_string(state.join(shoal_node::state::SECRET_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
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
            None if self.node.is_keyed() => Ok(String::new()),
            None => bail!(
                "this needs the secret of the node at {}: give --secret-file FILE (or --secret); the state directory's \
                 secret (SHOAL_SECRET, config.toml, <state>/secret) goes only to the node running on it",
                self.url
            ),
        }
    }

    pub async fn search(&self, pattern: &str) -> anyhow::Result<Vec<Match>> {
        self.must("shoal.search", self.node.search(pattern).await)
    }

    /// The node's own files with sizes and ids (a search that does not leave the node).
    pub async fn files(&self) -> anyhow::Result<Vec<Match>> {
        self.must("shoal.search", self.node.files().await)
    }

    pub async fn fetch(&self, name: &str) -> Result<(), CallError> {
        let secret = self.secret().map_err(|e| CallError::Fault {
            url: self.url.clone(),
            fault: shoal_xmlrpc::Fault::new(faults::ACCESS_DENIED, e.to_string()),
        })?;
        self.node.fetch(name, &secret).await
    }

    /// Starts a download on the node; its name.
    pub async fn download(&self, targets: &[String]) -> anyhow::Result<String> {
        let started = self.node.download_targets(&self.secret()?, targets).await;
        Ok(self.must("shoal.download", started)?.name)
    }

    pub async fn control(&self, action: Action, target: &str) -> anyhow::Result<()> {
        let done = self.node.control(action, &self.secret()?, target).await;
        self.must(action.method(), done)
    }

    pub async fn hello(&self, url: &str) -> anyhow::Result<()> {
        self.must("hello", self.node.hello(url).await)
    }

    /// The node's downloads (in full when this command holds the node's secret), as
    /// `shoal.downloads` answers them, in JSON.
    pub async fn downloads(&self) -> anyhow::Result<serde_json::Value> {
        let rows = self.node.downloads(self.secret.as_deref()).await;
        Ok(to_json(&DownloadRows(self.must("shoal.downloads", rows)?).to_value()))
    }

    /// The node's peer table, as `shoal.peer_table` answers it, in JSON.
    pub async fn peer_table(&self) -> anyhow::Result<serde_json::Value> {
        let rows = self.node.peer_table().await;
        Ok(to_json(&PeerRows(self.must("shoal.peer_table", rows)?).to_value()))
    }

    /// The node's counters.
    pub async fn stats(&self) -> anyhow::Result<NodeStats> {
        self.must("shoal.stats", self.node.stats().await)
    }

    /// The node on the DHT (its addresses and lookups when this command holds the secret);
    /// `None` from a node that does not know `shoal.dht` or answers something else.
    pub async fn dht(&self) -> anyhow::Result<Option<shoal_node::service::remote::DhtState>> {
        match self.node.dht(self.secret.as_deref()).await {
            Err(CallError::Unexpected { .. }) => Ok(None),
            Err(CallError::Fault { fault, .. }) if fault.message.contains("not supported") => Ok(None),
            other => self.must("shoal.dht", other).map(Some),
        }
    }

    /// The node's counters; `None` when it answered with something that is not them.
    pub async fn stats_checked(&self) -> anyhow::Result<Option<NodeStats>> {
        match self.node.stats().await {
            Err(CallError::Unexpected { .. }) => Ok(None),
            other => self.must("shoal.stats", other).map(Some),
        }
    }
}
