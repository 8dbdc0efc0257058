//! `shoal serve`: run a node until SIGINT or SIGTERM, then shut down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use shoal_node::{Node, NodeOptions};

use crate::cli::{NodeArgs, ServeArgs};
use crate::config::Layers;

/// Reads a peers file in the seed's `urls.txt` format.
pub fn read_peers_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the peers file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Parses a rate setting (`--max-upload-rate` and the like).
pub fn rate(layers: &Layers, key: &'static str, flag: Option<String>) -> anyhow::Result<Option<u64>> {
    match layers.get(key, flag).value {
        Some(text) => Ok(Some(
            shoal_node::options::parse_rate(&text).map_err(|e| anyhow::anyhow!("{}: {e}", key.replace('_', "-")))?,
        )),
        None => Ok(None),
    }
}

/// Node options and the address to listen on, from flags, environment, config file, defaults.
pub fn node_options(args: &NodeArgs) -> anyhow::Result<(NodeOptions, SocketAddr, Layers)> {
    let layers = Layers::load(args.state.as_deref())?;
    let dir = layers
        .get("dir", args.dir.as_ref().map(|p| p.display().to_string()))
        .value
        .unwrap_or_default();
    let listen_text = layers.get("listen", args.listen.clone()).value.unwrap_or_default();
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| anyhow::anyhow!("--listen: {listen_text:?} is not ADDR:PORT (e.g. 127.0.0.1:4242)"))?;
    let mut options = NodeOptions::new(PathBuf::from(dir), layers.state.clone());
    options.url = layers.get("url", args.url.clone()).value;
    options.peers = layers.list("peers", &args.peers).0;
    if let Some(file) = layers
        .get("peers_file", args.peers_file.as_ref().map(|p| p.display().to_string()))
        .value
    {
        options.peers.extend(read_peers_file(std::path::Path::new(&file))?);
    }
    options.secret = layers.get("secret", None).value;
    options.partial_upload = !args.no_partial_upload;
    options.iroh = args.net.iroh_options()?;
    options.dht = args.net.dht_options();
    // --ca-cert is trusted for https mirrors and for relays alike.
    for path in &args.ca_certs {
        options.trust_ca_file(path).map_err(|e| anyhow::anyhow!("--ca-cert: {e}"))?;
    }
    options.download_dir = layers
        .get("download_dir", args.download_dir.as_ref().map(|p| p.display().to_string()))
        .value
        .map(PathBuf::from);
    Ok((options, listen, layers))
}

/// Says (once) that a secret on the command line is visible to every user of the machine.
pub fn warn_secret_flag() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        eprintln!(
            "warning: a secret given with --secret is visible to every user of this machine (ps shows command lines); \
             use --secret-file FILE (readable by you alone), or for the node on the state directory SHOAL_SECRET, \
             `secret = ...` in its config.toml, or the secret the node keeps there"
        )
    });
}

/// Starts a node from the node flags, printing where it listens. `secret` is the one given on
/// the command line (the caller has warned about `--secret`).
pub async fn start(
    args: &NodeArgs,
    secret: Option<String>,
    max_upload_rate: Option<String>,
    owner_keys: &[String],
) -> anyhow::Result<Node> {
    let (mut options, listen, layers) = node_options(args)?;
    for key in owner_keys {
        let id = shoal_node::options::node_id_hex(key).map_err(|e| anyhow::anyhow!("--owner-key {key:?}: {e}"))?;
        options.owner_keys.push(id);
    }
    if secret.is_some() {
        options.secret = secret;
    }
    options.max_upload_rate = rate(&layers, "max_upload_rate", max_upload_rate)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let node = Node::start(options, listener).await.context("starting the node")?;
    println!("listening on http://{}", node.local_addr());
    if let Some(path) = node.secret_file() {
        println!("secret for fetch is kept in {}", path.display());
    }
    println!("node URL {}", node.url());
    if let Some(dht) = node.dht_addr().await {
        println!("DHT node on udp {dht}");
    }
    if let (Some(id), Some(ticket)) = (node.id(), node.ticket(std::time::Duration::from_secs(3)).await) {
        println!("node id {id}");
        println!("ticket {ticket}");
    }
    Ok(node)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let secret = crate::remote::given_secret(&crate::cli::SecretArgs {
        secret: args.secret.clone(),
        secret_file: args.secret_file.clone(),
    })?;
    let node = start(&args.node, secret, args.max_upload_rate.clone(), &args.owner_keys).await?;
    wait_for_signal().await?;
    eprintln!("shutting down");
    node.shutdown().await;
    Ok(())
}

pub async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_files_skip_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("urls.txt");
        std::fs::write(&file, "http://a:1\n\n  # a comment\n  http://b:2  \n#http://c:3\n").unwrap();
        assert_eq!(read_peers_file(&file).unwrap(), vec!["http://a:1", "http://b:2"]);
        let missing = read_peers_file(&dir.path().join("none.txt")).unwrap_err();
        assert!(format!("{missing:#}").contains("reading the peers file"), "{missing:#}");
    }
}
