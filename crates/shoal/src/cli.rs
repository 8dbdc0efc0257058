//! Command-line flags, with help text and an example for every subcommand. Settings that can
//! also come from the environment or the config file are `Option`s here; [`crate::config`]
//! resolves them in order.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "A peer-to-peer file-sharing node and multi-source downloader",
    long_about = "A peer-to-peer file-sharing node and multi-source downloader.\n\nSettings come from flags, then SHOAL_* environment variables, then <state>/config.toml, then defaults; `shoal config` shows what is in force.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Share a directory and answer the network until Ctrl-C.
    #[command(
        after_help = "Examples:\n  shoal serve\n  shoal serve --dir ./a --listen 127.0.0.1:4242 --state ./a-state\n  shoal serve --dir ./b --listen 127.0.0.1:4243 --state ./b-state --peer http://127.0.0.1:4242"
    )]
    Serve(ServeArgs),
    /// Download files from peers and HTTP mirrors at once, every piece verified: one file, a
    /// whole folder (DIR/), the files a glob matches, or a list (-i); run the same command again
    /// to resume.
    #[command(
        after_help = "Examples:\n  shoal get notes.txt --peer http://127.0.0.1:4242\n  shoal get <64-hex content id> -o ./iso/\n  shoal get http://m1/x.iso http://m2/x.iso --hash <content id>\n  shoal get x.iso http://mirror/x.iso --peer http://127.0.0.1:4242   (peers and mirrors at once)\n  shoal get https://mirror.example/x.iso --ca-cert ./my-ca.pem -H 'Authorization: Bearer TOKEN'\n  shoal get http://mirror/x.iso -x 4   (at most 4 connections to each source)\n  shoal get photos/ --peer http://127.0.0.1:4242 -o ./backup      (every file under photos/ into ./backup/photos/)\n  shoal get 'photos/**/*.jpg' --peer http://127.0.0.1:4242 -j 32   (a glob, 32 files at once)\n  shoal get -i list.txt -o ./downloads --json                       (one download a line; tab-separated mirrors)\n\nFolders and globs: a TARGET ending in / names every file under that shared folder, recursively;\none with *, ?, [ is a glob over the paths the peers list (* stays within a folder, ** crosses\nfolders). The layout is kept under -o (default: the current directory) as scp -r does. A file\nalready complete at its target (checked by its content id) is skipped; a different one is left\nalone unless --force.\n\nList files (-i): one download a line: a file name, a content id, a folder or glob, or URLs\n(several mirrors of one file separated by tabs); lines starting with # and blank lines are\nignored; an indented line `  out=NAME` below a download names its file under -o."
    )]
    Get(GetArgs),
    /// Start a node and open a prompt (the seed's client), or attach to a running node.
    #[command(
        after_help = "Examples:\n  shoal shell --dir ./shared --peers-file urls.txt\n  shoal shell --node                 (attach to the node on this state directory)\n  echo 'search iso' | shoal shell --node http://127.0.0.1:4242"
    )]
    Shell(ShellArgs),
    /// Search the network for file names (glob with * and ?, or a substring) or a content id.
    #[command(after_help = "Examples:\n  shoal search '*.iso'\n  shoal search notes --json")]
    Search(SearchArgs),
    /// List the files the node shares.
    #[command(after_help = "Example:\n  shoal ls --json")]
    Ls(RemoteArgs),
    /// List the node's peers and their state.
    #[command(after_help = "Example:\n  shoal peers")]
    Peers(RemoteArgs),
    /// List the node's downloads with their progress.
    #[command(after_help = "Example:\n  shoal downloads --json")]
    Downloads(RemoteArgs),
    /// Show the node's URL, counters and health.
    #[command(after_help = "Example:\n  shoal status --node http://127.0.0.1:4242")]
    Status(RemoteArgs),
    /// Show the node on the Mainline DHT: routing table, reachability, ids announced, recent lookups.
    #[command(after_help = "Example:\n  shoal dht --json")]
    Dht(RemoteArgs),
    /// Print this state directory's node id and ticket (and the id its CLI proves ownership with).
    #[command(
        after_help = "Examples:\n  shoal id\n  shoal id --state ./a-state\n\nWith a node running on the state directory the ticket holds its relay and addresses;\notherwise only the id. Give the ticket to another machine: shoal get NAME --peer TICKET"
    )]
    Id(IdArgs),
    /// Run a relay (iroh-relay) for a group's own nodes: plain HTTP for local use and tests, or https with QUIC address discovery.
    #[command(
        after_help = "Examples:\n  shoal relay --listen 127.0.0.1:3340\n  shoal serve --relay http://127.0.0.1:3340\n  shoal relay --tls-cert relay.pem --tls-key relay.key   (https on 443, QUIC address discovery on UDP 7842)\n  shoal serve --relay https://relay.example\n\nWith TLS the relay also answers QUIC address discovery on UDP port 7842 (the port nodes\nask), so nodes behind NAT learn their public address and can connect directly. Nodes trust\nthe certificate through the web's roots, or through --ca-cert for a group's own CA."
    )]
    Relay(RelayArgs),
    /// Print the settings in force and where each came from.
    #[command(after_help = "Examples:\n  shoal config\n  SHOAL_LISTEN=127.0.0.1:9000 shoal config --json")]
    Config(ConfigArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  shoal completions bash > ~/.local/share/bash-completion/completions/shoal\n  shoal completions zsh > ~/.zfunc/_shoal"
    )]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:\n  shoal man > shoal.1 && man ./shoal.1")]
    Man,
}

impl Command {
    /// True for the commands that only print a report (no node, no download runs in them).
    pub fn prints_a_report(&self) -> bool {
        matches!(
            self,
            Command::Search(_)
                | Command::Ls(_)
                | Command::Peers(_)
                | Command::Downloads(_)
                | Command::Status(_)
                | Command::Dht(_)
                | Command::Config(_)
                | Command::Id(_)
                | Command::Completions { .. }
                | Command::Man
        )
    }
}

/// Flags of a node (serve, shell, config).
#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// The directory to share, created if missing [default: ./shared].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Address and port to listen on; port 0 picks a free one [default: 0.0.0.0:4242].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The URL other nodes reach this one at [default: http://<listen address>, loopback for 0.0.0.0].
    #[arg(long)]
    pub url: Option<String>,
    /// A peer to know from the start (repeatable): an http URL, a node id or a ticket.
    #[arg(long = "peer", value_name = "URL|ID|TICKET")]
    pub peers: Vec<String>,
    /// A file of peer URLs, one a line; blank lines and # comments are ignored (the seed's urls.txt).
    #[arg(long, value_name = "FILE")]
    pub peers_file: Option<PathBuf>,
    /// The state directory (index, peers, downloads, secret) [default: the platform's data directory + /shoal].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// A directory the owner's downloads (shoal.download, fetch) may write into besides the share.
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// Also trust the certificate authorities in this PEM file for https mirrors (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Do not serve the pieces of downloads in progress to other downloaders of the same file (by default every download is part of its swarm).
    #[arg(long)]
    pub no_partial_upload: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// How a node or a download reaches nodes named by id or ticket (iroh).
#[derive(Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Use this relay instead of iroh's public ones (repeatable), e.g. http://relay.example:3340 (see `shoal relay`).
    #[arg(long = "relay", value_name = "URL", conflicts_with = "no_relay")]
    pub relays: Vec<String>,
    /// Use no relay: only direct connections.
    #[arg(long)]
    pub no_relay: bool,
    /// Do not ask the local router to map a port (UPnP, PCP, NAT-PMP).
    #[arg(long)]
    pub no_portmap: bool,
    /// Neither announce this node on the LAN nor look for others there (mDNS).
    #[arg(long, conflicts_with = "mdns")]
    pub no_mdns: bool,
    /// Find nodes on the LAN (mDNS) even with --local-only (the LAN is then the one place reached).
    #[arg(long)]
    pub mdns: bool,
    /// Reach nothing past the peers and relays given explicitly: no public relays, no public address look-up, no port mapping, no mDNS.
    #[arg(long, env = "SHOAL_LOCAL_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    pub local_only: bool,
    /// The UDP address the iroh endpoint binds [default: every address, a free port].
    #[arg(long, value_name = "ADDR:PORT")]
    pub iroh_listen: Option<std::net::SocketAddr>,
    /// No node key and no iroh endpoint: plain HTTP over TCP only.
    #[arg(long)]
    pub no_iroh: bool,
    /// The UDP address (IPv4) of this node on the Mainline DHT; given, it answers others' queries from the start [default: every address, port 6881 (BitTorrent's) when free, else a free one; answering once others reach it].
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_dht")]
    pub dht_listen: Option<std::net::SocketAddrV4>,
    /// Join the Mainline DHT through this node (repeatable) [default: the public BitTorrent routers; with --local-only, no DHT unless this or --dht-listen is given].
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT", conflicts_with = "no_dht")]
    pub dht_bootstrap: Vec<String>,
    /// Run no DHT node: holders of a content id are found through peers alone.
    #[arg(long)]
    pub no_dht: bool,
    /// Where a node named by id alone is looked up, and this node's addresses published: `dht` (the Mainline DHT, when a DHT node runs), `n0` (number 0's DNS service), both, or `none` [default: dht,n0; dht alone with --local-only].
    #[arg(long, value_name = "dht,n0", value_delimiter = ',')]
    pub address_lookup: Option<Vec<String>>,
}

impl NetArgs {
    /// The DHT settings these flags ask for; `None` with --no-dht, and with --local-only unless
    /// a DHT flag names where to go.
    pub fn dht_options(&self) -> Option<shoal_node::options::DhtOptions> {
        if self.no_dht || (self.local_only && self.dht_listen.is_none() && self.dht_bootstrap.is_empty()) {
            return None;
        }
        Some(shoal_node::options::DhtOptions {
            listen: self.dht_listen,
            // With --local-only the DHT talks only to the nodes named (and whom they lead to).
            bootstrap: if self.dht_bootstrap.is_empty() && !self.local_only {
                None
            } else {
                Some(self.dht_bootstrap.clone())
            },
            nodes_file: None,
        })
    }

    /// The iroh settings these flags ask for; `None` with --no-iroh.
    pub fn iroh_options(&self) -> anyhow::Result<Option<shoal_node::options::IrohOptions>> {
        if self.no_iroh {
            return Ok(None);
        }
        let mut options = if self.local_only {
            shoal_node::options::IrohOptions::local_only()
        } else {
            shoal_node::options::IrohOptions::everything()
        };
        for relay in &self.relays {
            let url = reqwest::Url::parse(relay).map_err(|_| anyhow::anyhow!("--relay: {relay:?} is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                anyhow::bail!("--relay: {relay:?} must be an http or https URL");
            }
        }
        options.relays = self.relays.clone();
        if self.no_relay {
            options.public_relays = false;
        }
        options.portmap &= !self.no_portmap;
        options.mdns = (options.mdns || self.mdns) && !self.no_mdns;
        options.bind = self.iroh_listen;
        if let Some(lookups) = &self.address_lookup {
            for lookup in lookups {
                if !matches!(lookup.as_str(), "dht" | "n0" | "none") {
                    anyhow::bail!("--address-lookup: {lookup:?} is not one of dht, n0, none");
                }
            }
            let named = |what: &str| lookups.iter().any(|l| l == what);
            if named("n0") && self.local_only {
                anyhow::bail!("--address-lookup n0 reaches number 0's public service, which --local-only rules out");
            }
            options.public_lookup = named("n0");
            options.dht_lookup = named("dht");
        }
        Ok(Some(options))
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The owner's secret for fetch (every user of the machine can see it in ps; prefer --secret-file) [default: SHOAL_SECRET, `secret =` in config.toml, or one made once and kept in the state directory].
    #[arg(long, conflicts_with = "secret_file")]
    pub secret: Option<String>,
    /// A file holding the owner's secret (its first line).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Cap the rate this node serves file data at (all clients together), e.g. 25M.
    #[arg(long, value_name = "RATE")]
    pub max_upload_rate: Option<String>,
    /// A node id (from `shoal id` on another machine: its "owner id") that may act as this node's owner over iroh without the secret (repeatable).
    #[arg(long = "owner-key", value_name = "ID")]
    pub owner_keys: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// File names, content ids (64 hex characters) or http/https URLs of mirrors, mixed freely; or folders (DIR/) and globs ('photos/*.jpg').
    #[arg(required_unless_present = "input_file", value_name = "TARGET")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub web: WebArgs,
    /// Where to save: a file path, or an existing directory [default: the current directory]; for folders, globs and lists the directory the files go into (created if missing).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Read downloads from FILE, one a line (a name, a content id, a folder, a glob, or URLs separated by tabs); - reads standard input.
    #[arg(short = 'i', long = "input-file", value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// How many files of a folder, glob or list to download at once.
    #[arg(short = 'j', long = "max-concurrent", value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_concurrent: u16,
    /// A peer to search (repeatable): an http URL, a node id or a ticket; the state directory's peer table is searched too.
    #[arg(long = "peer", value_name = "URL|ID|TICKET")]
    pub peers: Vec<String>,
    /// A file of peer URLs, one a line.
    #[arg(long, value_name = "FILE")]
    pub peers_file: Option<PathBuf>,
    /// The content id the file must have (checks mirrors-only downloads, picks among versions).
    #[arg(long, value_name = "CONTENT_ID")]
    pub hash: Option<String>,
    /// Cap the download rate, e.g. 10M, 500K.
    #[arg(long, value_name = "RATE")]
    pub max_download_rate: Option<String>,
    /// Most connections to one source at once (1-16). Below it shoal adapts: it adds
    /// connections while they add speed and the server accepts them, and drops one when the
    /// server refuses; -x 1 keeps one connection per source.
    #[arg(short = 'x', long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub max_connections_per_source: u8,
    /// Replace an existing file (with folders and lists: every existing file that differs).
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
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// How requests to the URLs a user gives are made.
#[derive(Args, Debug, Clone, Default)]
pub struct WebArgs {
    /// Also trust the certificate authorities in this PEM file for https (repeatable; the
    /// platform's roots, SSL_CERT_FILE and SSL_CERT_DIR stay trusted). Verification cannot be turned off.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Send this header to the mirrors, e.g. 'Authorization: Bearer TOKEN' (repeatable): only to the origin (scheme, host, port) of each mirror URL given, never to peers, never after a redirect to another origin.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Send --header and the credentials of a mirror URL (user:password@) on after redirects to other hosts too, as curl's --location-trusted.
    #[arg(long)]
    pub location_trusted: bool,
}

#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Attach to a running node instead of starting one: its URL, id or ticket, or none for the
    /// node running on the state directory.
    #[arg(long = "node", value_name = "URL|TICKET", num_args = 0..=1, default_missing_value = "")]
    pub attach: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// A secret given for the node of this one command. The state directory's secret
/// (`SHOAL_SECRET`, `secret =` in its config.toml, or the file the node keeps there) belongs to
/// the node running on that directory and goes to no other; a secret given here goes to the
/// node this command names, whichever it is.
#[derive(Args, Debug, Clone, Default)]
pub struct SecretArgs {
    /// The owner's secret of the node this command names (every user of the machine can see it in ps; prefer --secret-file) [default: the state directory's, for the node running on it only].
    #[arg(long, value_name = "SECRET", conflicts_with = "secret_file")]
    pub secret: Option<String>,
    /// A file holding the owner's secret of the node this command names (its first line).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

/// How a command finds the node it talks to.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The node's URL, id or ticket [default: the node running on the state directory].
    #[arg(long = "node", value_name = "URL|TICKET")]
    pub node: Option<String>,
    /// The state directory of the local node.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// A glob (*.iso), a substring, or a content id; empty lists everything.
    #[arg(default_value = "")]
    pub pattern: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// The state directory [default: the platform's data directory + /shoal].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Address and port of the plain-HTTP side: the whole relay without TLS, or only the
    /// captive-portal check with --tls-cert.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:3340")]
    pub listen: std::net::SocketAddr,
    /// Serve the relay over https with this certificate chain (PEM), and QUIC address discovery
    /// beside it, which lets nodes behind NAT learn their public address (hole punching).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address and port of the https side [default: the --listen address, port 443].
    #[arg(long, value_name = "ADDR:PORT", requires = "tls_cert")]
    pub https_listen: Option<std::net::SocketAddr>,
    /// Serve only this node id (an id or a ticket; repeatable) [default: any node].
    #[arg(long, value_name = "NODE_ID")]
    pub allow: Vec<String>,
    /// Serve only the node ids in this file, one a line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub allow_file: Option<PathBuf>,
    /// Most clients connected at once; further ones are refused.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_clients: usize,
    /// Most bytes a second read from one client (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub client_rate: u32,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
