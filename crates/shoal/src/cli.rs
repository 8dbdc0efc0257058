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
}
