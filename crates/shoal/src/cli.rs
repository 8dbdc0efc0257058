//! Command-line flags, with help text and examples for every subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "shoal", version, about = "A peer-to-peer file-sharing node and multi-source downloader", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Share a directory and answer the network until Ctrl-C.
    #[command(after_help = "Examples:\n  shoal serve\n  shoal serve --dir ./a --listen 127.0.0.1:4242 --state ./a-state\n  shoal serve --dir ./b --listen 127.0.0.1:4243 --state ./b-state --peer http://127.0.0.1:4242")]
    Serve(ServeArgs),
    /// Download a file from peers and HTTP mirrors at once, every piece verified; run the same
    /// command again to resume.
    #[command(after_help = "Examples:\n  shoal get notes.txt --peer http://127.0.0.1:4242\n  shoal get 5f1c…(64 hex) -o ./iso/\n  shoal get http://m1/x.iso http://m2/x.iso --hash 5f1c…\n  shoal get x.iso http://mirror/x.iso --peer http://127.0.0.1:4242   (peers and mirrors at once)")]
    Get(GetArgs),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// File names, content ids (64 hex characters) or http(s) URLs of mirrors, mixed freely.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Where to save: a file path, or an existing directory (default: the current directory).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// A peer to search (repeatable); the state directory's peer table is searched too.
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// A file of peer URLs, one a line.
    #[arg(long, value_name = "FILE")]
    pub peers_file: Option<PathBuf>,
    /// The content id the file must have (checks mirrors-only downloads, picks among versions).
    #[arg(long, value_name = "CONTENT_ID")]
    pub hash: Option<String>,
    /// Cap the download rate, e.g. 10M, 500K.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print progress and the result as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// How long to keep retrying, in seconds, when no source answers.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub retry_for: u64,
    /// The state directory (peer table, resume records).
    #[arg(long, env = "SHOAL_STATE")]
    pub state: Option<PathBuf>,
}

/// A rate such as 25M or 500K, in bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    shoal_node::engine::parse_rate(text)
}

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The directory to share (created if missing).
    #[arg(long, default_value = "./shared", env = "SHOAL_DIR")]
    pub dir: PathBuf,
    /// Address and port to listen on; port 0 picks a free one.
    #[arg(long, default_value = "0.0.0.0:4242", env = "SHOAL_LISTEN")]
    pub listen: SocketAddr,
    /// The URL other nodes reach this one at (default: http://<listen address>, loopback for 0.0.0.0).
    #[arg(long, env = "SHOAL_URL")]
    pub url: Option<String>,
    /// A peer to know from the start (repeatable).
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// A file of peer URLs, one a line; blank lines and # comments are ignored (the seed's urls.txt).
    #[arg(long, value_name = "FILE")]
    pub peers_file: Option<PathBuf>,
    /// The state directory (store, secret); default: the platform's data directory + /shoal.
    #[arg(long, env = "SHOAL_STATE")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The owner's secret for fetch (default: made once and kept in the state directory).
    #[arg(long, env = "SHOAL_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Cap the rate this node serves file data at (all clients together), e.g. 25M.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
}
