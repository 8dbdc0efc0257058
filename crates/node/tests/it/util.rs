//! Starting nodes for tests: each in its own temporary share and state directory, bound to
//! `127.0.0.1:0`, and talking to the others over real HTTP.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_node::{Node, NodeOptions};
use shoal_xmlrpc::{Fault, Value};
use tempfile::TempDir;

/// The secret every test node is started with.
pub const SECRET: &str = "test-secret";

/// A node running in this process.
pub struct TestNode {
    pub node: Node,
    pub dir: TempDir,
    pub state: TempDir,
    pub url: String,
}

impl TestNode {
    /// A node with default options and the test secret.
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// A node whose options `tune` may change (peers, limits...).
    pub async fn start_with(tune: impl FnOnce(&mut NodeOptions)) -> TestNode {
        let dir = tempfile::tempdir().expect("share dir");
        let state = tempfile::tempdir().expect("state dir");
        Self::start_in(dir, state, tune).await
    }

    /// A node over existing directories (for restarts).
    pub async fn start_in(dir: TempDir, state: TempDir, tune: impl FnOnce(&mut NodeOptions)) -> TestNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, dir, state, tune).await
    }

    /// A node on a listener the test made (e.g. on an address it handed out before).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        dir: TempDir,
        state: TempDir,
        tune: impl FnOnce(&mut NodeOptions),
    ) -> TestNode {
        let mut options = NodeOptions::new(dir.path(), state.path());
        options.secret = Some(SECRET.to_string());
        options.search_deadline = Duration::from_secs(10);
        tune(&mut options);
        let node = Node::start(options, listener).await.expect("node starts");
        let url = node.url().to_string();
        TestNode { node, dir, state, url }
    }

    /// Stops the node and gives back its directories.
    pub async fn stop(self) -> (TempDir, TempDir) {
        self.node.shutdown().await;
        (self.dir, self.state)
    }

    /// Writes a file into the share (creating directories) and indexes it.
    pub async fn add(&self, name: &str, bytes: &[u8]) {
        self.write(name, bytes);
        self.rescan().await;
    }

    /// Writes a file into the share without indexing it.
    pub fn write(&self, name: &str, bytes: &[u8]) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn rescan(&self) {
        self.node.api().rescan().await.expect("rescan");
    }

    /// Tells this node about `others` through the seed's `hello`, over HTTP.
    pub async fn knows(&self, others: &[&TestNode]) {
        for other in others {
            assert_eq!(
                self.call("hello", vec![Value::String(other.url.clone())]).await,
                Ok(Value::Integer(0))
            );
        }
    }

    /// An XML-RPC call to this node over HTTP.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, Fault> {
        call(&self.url, method, params).await
    }
}

/// An XML-RPC call over HTTP with a real client.
pub async fn call(url: &str, method: &str, params: Vec<Value>) -> Result<Value, Fault> {
    let body = shoal_xmlrpc::encode_call(method, &params);
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/xml")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the node answers");
    let bytes = response.bytes().await.expect("a body");
    shoal_xmlrpc::decode_response(&bytes).expect("a valid XML-RPC response")
}

/// A `list()` over a fresh connection; `None` when the node closed it or failed.
pub async fn try_list(url: &str) -> Option<Value> {
    let body = shoal_xmlrpc::encode_call("list", &[]);
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/xml")
        .body(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    shoal_xmlrpc::decode_response(&response.bytes().await.ok()?).ok()?.ok()
}

/// `n` nodes in a full mesh (each knows every other).
pub async fn mesh(n: usize) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(TestNode::start().await);
    }
    for node in &nodes {
        let others: Vec<&TestNode> = nodes.iter().filter(|o| o.url != node.url).collect();
        node.knows(&others).await;
    }
    nodes
}

/// `n` nodes in a line: each knows the next one only.
pub async fn line(n: usize) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(TestNode::start().await);
    }
    for pair in nodes.windows(2) {
        pair[0].knows(&[&pair[1]]).await;
    }
    nodes
}

pub fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

pub fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|i| s(i)).collect())
}

/// Random bytes that are not text, so that they travel as base64.
pub fn binary(len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    if let Some(first) = out.first_mut() {
        *first = 0;
    }
    out
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Pseudo-random bytes (splitmix64), different for each seed, with no repeating pieces.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}
