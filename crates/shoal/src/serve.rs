//! `shoal serve`: run a node until SIGINT or SIGTERM, then shut down cleanly.

use anyhow::Context;
use shoal_node::{Node, NodeOptions};

use crate::cli::{NodeArgs, ServeArgs};

/// The default state directory: the platform's data directory, then `shoal`.
pub fn default_state() -> std::path::PathBuf {
    dirs::data_dir().unwrap_or_else(|| std::path::PathBuf::from(".")).join("shoal")
}

/// Reads a peers file in the seed's `urls.txt` format.
pub fn read_peers_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the peers file {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).map(String::from).collect())
}

/// Node options from the shared node flags.
pub fn node_options(args: &NodeArgs) -> anyhow::Result<NodeOptions> {
    let mut options = NodeOptions::new(&args.dir, args.state.clone().unwrap_or_else(default_state));
    options.url = args.url.clone();
    options.peers = args.peers.clone();
    if let Some(file) = &args.peers_file {
        options.peers.extend(read_peers_file(file)?);
    }
    Ok(options)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut options = node_options(&args.node)?;
    options.secret = args.secret.clone();
    options.max_upload_rate = args.max_upload_rate;
    let listener = tokio::net::TcpListener::bind(args.node.listen).await.with_context(|| format!("listening on {}", args.node.listen))?;
    let node = Node::start(options, listener).await.context("starting the node")?;
    println!("listening on http://{}", node.local_addr());
    if let Some(path) = node.secret_file() {
        println!("secret for fetch is kept in {}", path.display());
    }
    println!("node URL {}", node.url());
    wait_for_signal().await?;
    eprintln!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
