//! Helpers shared by the benchmark binaries: a network of in-process nodes on loopback, an
//! XML-RPC client over real HTTP, the network's message count and its "quiet" point, and the
//! statistics and formatting every report uses.
//!
//! Map:
//! - [`Network`]: binds every listener on `127.0.0.1:0` first, then starts each node with the
//!   URLs of its neighbours as configured peers, each in its own temporary share and state.
//! - [`Rpc`]: one XML-RPC endpoint, called over HTTP like any client would.
//! - [`median`], [`percentile`], [`ms`]: figures for the reports.
//!
//! Nothing here leaves loopback, and every wait is bounded.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use shoal_node::{Node, NodeOptions};
use shoal_xmlrpc::{Fault, Value};
use tempfile::TempDir;

/// How often message counts are read while waiting for quiet.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Nodes started at once while a network comes up.
const START_AT_ONCE: usize = 32;

/// A running network of nodes in this process. Node `i` listens at `urls[i]` and shares
/// `dirs[i].0`; a node taken out (stopped) leaves `None` in its slot.
pub struct Network {
    pub nodes: Vec<Option<Node>>,
    pub urls: Vec<String>,
    /// Share and state directory of each node, removed when the network is dropped.
    pub dirs: Vec<(TempDir, TempDir)>,
}

impl Network {
    /// Binds one listener per entry of `peers`, then starts node `i` with the URLs of the nodes
    /// listed in `peers[i]` as configured peers. `configure` may change every node's options
    /// (deadlines, intervals). Waits until each node's introductions (`hello` to each configured
    /// peer) were sent and the network is quiet.
    pub async fn start(peers: &[Vec<usize>], configure: impl Fn(&mut NodeOptions)) -> anyhow::Result<Network> {
        let n = peers.len();
        let mut listeners = Vec::with_capacity(n);
        let mut urls = Vec::with_capacity(n);
        for _ in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding 127.0.0.1:0")?;
            urls.push(format!("http://127.0.0.1:{}", listener.local_addr()?.port()));
            listeners.push(listener);
        }
        let mut nodes = Vec::with_capacity(n);
        let mut dirs = Vec::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        for (i, listener) in listeners.into_iter().enumerate() {
            let dir = tempfile::tempdir().context("creating a share directory")?;
            let state = tempfile::tempdir().context("creating a state directory")?;
            let mut options = NodeOptions::new(dir.path(), state.path());
            options.secret = Some("bench".to_string());
            options.peers = peers[i].iter().map(|&j| urls[j].clone()).collect();
            configure(&mut options);
            pending.push(async move { Node::start(options, listener).await.with_context(|| format!("starting node {i}")) });
            dirs.push((dir, state));
        }
        // Nodes start a batch at a time; their introductions to nodes not started yet wait in
        // the listen backlog, which is already open.
        let mut pending = pending.into_iter();
        loop {
            let batch: Vec<_> = pending.by_ref().take(START_AT_ONCE).collect();
            if batch.is_empty() {
                break;
            }
            for node in futures_util::future::join_all(batch).await {
                nodes.push(Some(node?));
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            let node = node.as_ref().context("a node slot is empty")?;
            ensure!(node.url() == urls[i], "node {i} calls itself {} instead of {}", node.url(), urls[i]);
        }
        let network = Network { nodes, urls, dirs };
        let introductions: u64 = peers.iter().map(|p| p.len() as u64).sum();
        let deadline = Instant::now() + Duration::from_secs(60);
        while network.messages() < introductions {
            ensure!(Instant::now() < deadline, "the introductions did not finish within 60 s");
            tokio::time::sleep(POLL_EVERY).await;
        }
        network.quiet(Duration::from_millis(150)).await;
        Ok(network)
    }

    /// The number of node slots (running or stopped).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a network of no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, unless it was taken out.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Takes node `i` out of the network (to stop it), leaving its slot empty.
    pub fn take(&mut self, i: usize) -> Option<Node> {
        self.nodes.get_mut(i).and_then(Option::take)
    }

    /// Messages sent so far by the running nodes together.
    pub fn messages(&self) -> u64 {
        self.nodes.iter().flatten().map(|node| node.api().messages_sent()).sum()
    }

    /// Waits until no node's message count has changed for `quiet_for` (at most 60 s); returns
    /// the total.
    pub async fn quiet(&self, quiet_for: Duration) -> u64 {
        let mut last = self.messages();
        let mut since = Instant::now();
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(POLL_EVERY.min(quiet_for)).await;
            let now = self.messages();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet_for || Instant::now() >= give_up {
                return now;
            }
        }
    }

    /// Peers that some node has seen fail (in backoff or with failures counted), over all nodes.
    pub fn failing_peers(&self) -> usize {
        self.nodes
            .iter()
            .flatten()
            .map(|node| {
                node.api()
                    .peers()
                    .iter()
                    .filter(|peer| peer.failures > 0 || peer.backing_off)
                    .count()
            })
            .sum()
    }

    /// Stops every running node, all at once, each waiting for its tasks.
    pub async fn shutdown(mut self) {
        let nodes: Vec<Node> = self.nodes.iter_mut().filter_map(Option::take).collect();
        futures_util::future::join_all(nodes.into_iter().map(Node::shutdown)).await;
    }
}

/// An HTTP client for calling nodes: Nagle off (the nodes' own client turns it off too; without
/// it small calls pay delayed ACKs), a pool of keep-alive connections, and an overall timeout.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// An XML-RPC client for one node, over real HTTP.
#[derive(Clone)]
pub struct Rpc {
    http: reqwest::Client,
    url: String,
}

impl Rpc {
    /// A client of its own for `url`, with a 60 s timeout per call.
    pub fn new(url: &str) -> anyhow::Result<Rpc> {
        Ok(Rpc::with_client(http_client(Duration::from_secs(60))?, url))
    }

    /// A client for `url` sharing `http` (and so its connection pool) with others.
    pub fn with_client(http: reqwest::Client, url: &str) -> Rpc {
        Rpc {
            http,
            url: url.to_string(),
        }
    }

    /// The URL called.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one of the protocol's calls; the outer error is a transport or decoding failure,
    /// the inner one a fault.
    pub async fn send<C: shoal_node::proto::calls::Call>(&self, call: &C) -> anyhow::Result<Result<Value, Fault>> {
        self.call(call.method(), &call.encode()).await
    }

    /// Calls `method` with `params` as given (for calls that are malformed on purpose, use
    /// [`Rpc::send`] for any other); the outer error is a transport or decoding failure, the
    /// inner one a fault.
    pub async fn call(&self, method: &str, params: &[Value]) -> anyhow::Result<Result<Value, Fault>> {
        let body = shoal_xmlrpc::encode_call(method, params);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .with_context(|| format!("calling {method} on {}", self.url))?;
        ensure!(
            response.status().is_success(),
            "{method} on {}: HTTP {}",
            self.url,
            response.status()
        );
        let bytes = response.bytes().await.with_context(|| format!("reading the answer to {method}"))?;
        shoal_xmlrpc::decode_response(&bytes).with_context(|| format!("decoding the answer to {method}"))
    }
}

/// The median of `durations` (the mean of the middle two for an even count; zero for none).
pub fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => Duration::ZERO,
        len if len % 2 == 0 => (sorted[mid - 1] + sorted[mid]) / 2,
        _ => sorted[mid],
    }
}

/// The `p`-th percentile of `durations` by nearest rank (`p` in 0..=100; zero for none).
pub fn percentile(durations: &[Duration], p: f64) -> Duration {
    if durations.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Milliseconds as a JSON number.
pub fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&d, 95.0), Duration::from_millis(95));
        assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&d, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&d[..1], 95.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 95.0), Duration::ZERO);
        assert_eq!(median(&d[..4]), Duration::from_micros(2500));
    }
}
