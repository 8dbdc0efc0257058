//! Talking to a running node over XML-RPC: finding it (a URL, or the node running on the state
//! directory), its secret, and typed wrappers around the calls the CLI and the shell make.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_node::client::{CallError, Client};
use shoal_xmlrpc::Value;

use crate::config::Layers;

/// A node to talk to.
pub struct Remote {
    pub url: String,
    pub secret: Option<String>,
    client: Client,
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
        }
    }

    /// The node a command means: `--node`, then `SHOAL_NODE`, then the config file, then the
    /// node running on the state directory. Its secret is the state directory's, when readable.
    pub fn find(node: Option<&str>, state: Option<&Path>) -> anyhow::Result<Remote> {
        let layers = Layers::load(state)?;
        let secret = Self::local_secret(&layers.state);
        let setting = layers.get("node", node.filter(|n| !n.is_empty()).map(String::from));
        if let Some(url) = setting.value {
            return Ok(Remote::new(&url, layers.get("secret", None).value.or(secret)));
        }
        let url_file = layers.state.join(shoal_node::node::URL_FILE);
        match std::fs::read_to_string(&url_file) {
            Ok(url) => Ok(Remote::new(url.trim(), layers.get("secret", None).value.or(secret))),
            Err(_) => bail!(
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

    /// One call, with a clear error naming the node.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, CallError> {
        self.client
            .call(&self.url, method, &params, Duration::from_secs(60), 64 << 20)
            .await
    }

    /// A call whose failure is an error for the user.
    pub async fn must(&self, method: &str, params: Vec<Value>) -> anyhow::Result<Value> {
        self.call(method, params)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{method} on the node at {}", self.url))
    }

    fn secret(&self) -> anyhow::Result<Value> {
        match &self.secret {
            Some(secret) => Ok(Value::String(secret.clone())),
            None => bail!("this needs the node's secret: give --secret or run on the node's state directory"),
        }
    }

    pub async fn search(&self, pattern: &str) -> anyhow::Result<Vec<shoal_node::Match>> {
        let found = self.must("shoal.search", vec![Value::String(pattern.to_string())]).await?;
        Ok(as_matches(found))
    }

    /// The node's own files with sizes and ids (a search that does not leave the node).
    pub async fn files(&self) -> anyhow::Result<Vec<shoal_node::Match>> {
        let qid = Value::String(hex::encode(rand_bytes()));
        let found = self
            .must("shoal.search", vec![Value::String(String::new()), qid, Value::Integer(1)])
            .await?;
        Ok(as_matches(found))
    }

    pub async fn fetch(&self, name: &str) -> Result<Value, CallError> {
        let secret = self.secret().map_err(|e| CallError::Fault {
            url: self.url.clone(),
            fault: shoal_xmlrpc::Fault::new(200, e.to_string()),
        })?;
        self.call("fetch", vec![Value::String(name.to_string()), secret]).await
    }

    pub async fn download(&self, targets: &[String]) -> anyhow::Result<String> {
        let answer = self
            .must(
                "shoal.download",
                vec![self.secret()?, Value::Array(targets.iter().cloned().map(Value::String).collect())],
            )
            .await?;
        match answer {
            Value::Struct(fields) => Ok(fields
                .get("name")
                .map(|v| to_json(v).as_str().unwrap_or_default().to_string())
                .unwrap_or_default()),
            _ => Ok(String::new()),
        }
    }

    pub async fn control(&self, method: &str, target: &str) -> anyhow::Result<()> {
        self.must(method, vec![self.secret()?, Value::String(target.to_string())])
            .await
            .map(drop)
    }

    pub async fn hello(&self, url: &str) -> anyhow::Result<()> {
        self.must("hello", vec![Value::String(url.to_string())]).await.map(drop)
    }

    pub async fn json(&self, method: &str) -> anyhow::Result<serde_json::Value> {
        Ok(to_json(&self.must(method, vec![]).await?))
    }
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

fn as_matches(value: Value) -> Vec<shoal_node::Match> {
    match value {
        Value::Array(items) => items.into_iter().filter_map(shoal_node::api::match_from_value).collect(),
        _ => Vec::new(),
    }
}
