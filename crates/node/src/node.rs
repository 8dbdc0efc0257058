//! Starting and stopping a node: state directory, store, secret, share, peers, server, and the
//! background tasks (rescans, introductions, peer exchange), all under one cancellation token
//! and one task tracker so that shutdown waits for them instead of sleeping.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::discovery::peers::Peers;
use crate::discovery::{DiscoveryOptions, Flood};
use crate::engine::{Engine, Job, Partials};
use crate::http::guard::Guard;
use crate::net::iroh::Iroh;
use crate::net::{Client, ClientOptions, Policy};
use crate::options::NodeOptions;
use crate::proto::url::{SelfUrl, default_url};
use crate::service::downloads::Downloads;
use crate::service::fetch::{Fetcher, FetcherParts};
use crate::service::{Api, Inner};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("opening the state store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("opening the shared directory {path}: {reason}")]
    Share { path: PathBuf, reason: String },
    #[error("the node URL: {0}")]
    Url(#[from] crate::proto::url::UrlError),
    #[error("reading the listening address: {0}")]
    Listener(std::io::Error),
    #[error("the peer table: {0}")]
    Peers(#[from] crate::discovery::peers::PeerError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Iroh(String),
    #[error(transparent)]
    Dht(#[from] crate::net::dht::DhtError),
}

/// A running node.
pub struct Node {
    api: Api,
    /// The iroh endpoint, when the node runs iroh.
    iroh: Option<Arc<Iroh>>,
    local_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    secret_file: Option<PathBuf>,
    url_file: PathBuf,
}

/// How long `start` waits for the first scan of the share before it returns.
pub const FIRST_SCAN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

use crate::state::write_private;
pub use crate::state::{
    CLIENT_KEY_FILE, KEY_FILE, SECRET_FILE, STORE_FILE, URL_FILE, client_key, load_or_create_secret, node_key, open_store,
    prepare_state_dir, private_file,
};

impl Node {
    /// Starts a node serving on `listener` (bind `127.0.0.1:0` in tests).
    pub async fn start(options: NodeOptions, listener: TcpListener) -> Result<Node, StartError> {
        let local_addr = listener.local_addr().map_err(StartError::Listener)?;
        prepare_state_dir(&options.state).map_err(|source| StartError::StateDir {
            path: options.state.clone(),
            source,
        })?;
        let store_path = options.state.join(STORE_FILE);
        let db = {
            let path = store_path.clone();
            tokio::task::spawn_blocking(move || open_store(&path))
                .await
                .map_err(|e| StartError::Store {
                    path: store_path.clone(),
                    reason: e.to_string(),
                })?
                .map_err(|e| StartError::Store {
                    path: store_path.clone(),
                    reason: e.to_string(),
                })?
        };
        let db = Arc::new(db);
        let (secret, secret_file) = match &options.secret {
            Some(secret) => (secret.clone(), None),
            None => {
                let (secret, path) = load_or_create_secret(&options.state)?;
                (secret, Some(path))
            }
        };
        let share = {
            let (dir, db) = (options.dir.clone(), db.clone());
            tokio::task::spawn_blocking(move || shoal_index::Share::open(&dir, db))
                .await
                .map_err(|e| StartError::Share {
                    path: options.dir.clone(),
                    reason: e.to_string(),
                })?
                .map_err(|e| StartError::Share {
                    path: options.dir.clone(),
                    reason: e.to_string(),
                })?
        };
        let url = options.url.clone().unwrap_or_else(|| default_url(local_addr));
        let mut owner_keys = options.owner_keys.clone();
        let dht = match &options.dht {
            Some(dht_options) => {
                let mut dht_options = dht_options.clone();
                if dht_options.nodes_file.is_none() {
                    dht_options.nodes_file = Some(options.state.join(crate::state::DHT_NODES_FILE));
                }
                Some(crate::net::dht::Dht::spawn(dht_options, Default::default()).await?)
            }
            None => None,
        };
        let iroh = match &options.iroh {
            Some(iroh_options) => {
                let key = node_key(&options.state)?;
                owner_keys.push(crate::net::iroh::id_of(&client_key(&options.state)?));
                Some(Arc::new(
                    Iroh::bind_with_dht(key, iroh_options, true, dht.clone())
                        .await
                        .map_err(StartError::Iroh)?,
                ))
            }
            None => None,
        };
        let mut me = SelfUrl::new(&url, local_addr)?;
        if let Some(iroh) = &iroh {
            me = me.with_key(format!("iroh://{}", iroh.id()));
        }
        let own_url = me.url.clone();
        let peers = Peers::load(me, options.peer.clone(), db.clone())?;
        for peer in &options.peers {
            if let Err(error) = peers.add(peer) {
                tracing::warn!(%peer, %error, "ignoring a configured peer");
            }
        }
        // Peers and callers may point this node only where its own situation makes sense.
        let own_host = url::Url::parse(&own_url).ok().and_then(|u| match u.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        });
        let interfaces = crate::net::policy::interface_addrs();
        let client = Client::with_options(ClientOptions {
            connect_timeout: options.connect_timeout,
            policy: Policy::for_listener(own_host, local_addr, &interfaces),
            budget: options.answer_budget,
            extra_roots: options.ca_certs.clone(),
            iroh: iroh.clone(),
            ..Default::default()
        });
        for peer in &options.peers {
            client.learn_ticket(peer, crate::net::Trust::Owner);
        }
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let engine = Engine::new(db, client.clone(), options.engine.clone()).map_err(|e| StartError::Store {
            path: store_path.clone(),
            reason: e.to_string(),
        })?;
        // Downloads in progress are served to other downloaders (unless the owner said not to).
        let partials = Partials::default();
        let engine = if options.partial_upload {
            engine.serving(partials.clone(), own_url.clone())
        } else {
            engine
        };
        let pending = engine.records().all().map_err(|e| StartError::Store {
            path: store_path.clone(),
            reason: e.to_string(),
        })?;
        let downloads = Downloads::new(engine, tasks.clone(), shutdown.child_token());
        let upload_limit = options.max_upload_rate.map(crate::net::rate::rate_limiter);
        let flood = Flood::new(
            peers,
            client,
            DiscoveryOptions {
                ttl: options.ttl,
                search_deadline: options.search_deadline,
                max_content: options.max_rpc_content,
            },
            shutdown.child_token(),
        );
        let root = shoal_index::Root::open(share.root()).map_err(|e| StartError::Share {
            path: options.dir.clone(),
            reason: e.to_string(),
        })?;
        let share = Arc::new(share);
        let share_root = share.root().to_path_buf();
        let mut me = vec![flood.me().to_string()];
        me.extend(flood.peers.me().keyed.clone());
        let fetcher = Fetcher::new(FetcherParts {
            downloads,
            client: flood.client().clone(),
            discover: flood.clone(),
            index: dht.as_ref().map(|dht| {
                Arc::new(crate::discovery::dht::DhtHolders {
                    dht: dht.clone(),
                    by_id: iroh.is_some(),
                }) as Arc<dyn crate::discovery::Discover>
            }),
            me,
            find_more_every: crate::service::FIND_MORE_EVERY,
            finished: Some(crate::service::api::index_in_share(share.clone())),
        });
        let fetcher = if options.partial_upload {
            fetcher.in_swarm_as(flood.me().to_string())
        } else {
            fetcher
        };
        let inner = Inner {
            options: options.clone(),
            share,
            root: Arc::new(root),
            flood,
            secret,
            owner_keys,
            fetcher,
            upload_limit,
            partials,
            swarms: Default::default(),
            stopping: shutdown.child_token(),
            dht: dht.clone(),
        };
        let api = Api::new(inner);
        // Downloads the node had running when it stopped go on.
        for record in pending.into_iter().filter(|r| r.by_node) {
            tracing::info!(target = %record.target, "resuming a download");
            api.start_download(Job::from(record));
        }
        // The TCP connection cap sits below the descriptor limit, leaving room for files, the
        // store and outbound calls.
        let descriptors = crate::http::raise_descriptor_limit().unwrap_or(1024);
        let max_connections = options.max_connections.min((descriptors as usize).saturating_sub(128).max(16));
        let guard = Arc::new(Guard::new(options.guard.clone(), api.url(), local_addr, &interfaces));
        let router = crate::http::router(api.clone(), guard);
        let serve_options = crate::http::ServeOptions {
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            max_per_address: options.max_per_address,
            loopback_exempt: options.guard.loopback_exempt,
            header_timeout: options.request_timeout,
            stall_timeout: options.stall_timeout,
            iroh: crate::http::IrohLimits {
                slots: Arc::new(tokio::sync::Semaphore::new(options.max_iroh_connections)),
                owner_slots: Arc::new(tokio::sync::Semaphore::new(options.iroh_owner_reserve)),
                max_per_key: options.max_iroh_per_key,
                idle_timeout: options.iroh_idle_timeout,
            },
        };
        if let Some(iroh) = &iroh {
            tasks.spawn(crate::http::iroh::serve(
                iroh.clone(),
                api.clone(),
                router.clone(),
                shutdown.child_token(),
                serve_options.clone(),
            ));
            tasks.spawn(crate::tasks::lan_loop(api.clone(), iroh.clone(), shutdown.child_token()));
        }
        tasks.spawn(crate::http::serve(listener, router, shutdown.child_token(), serve_options));
        // The watcher starts before the first scan, so nothing changed in between is missed.
        match shoal_index::Watcher::start(&share_root) {
            Ok((watcher, batches)) => {
                let (api, token) = (api.clone(), shutdown.child_token());
                tasks.spawn(crate::tasks::watch_loop(api, watcher, batches, token));
            }
            Err(error) => tracing::warn!(%error, "cannot watch the share; changes are seen at the next rescan"),
        }
        let (scanned, first_scan) = tokio::sync::oneshot::channel();
        tasks.spawn(crate::tasks::rescan_loop(api.clone(), shutdown.child_token(), scanned));
        tasks.spawn(crate::tasks::introduce(api.clone(), shutdown.child_token()));
        tasks.spawn(crate::tasks::peer_exchange_loop(api.clone(), shutdown.child_token()));
        tasks.spawn(crate::tasks::candidates_loop(api.clone(), shutdown.child_token()));
        if let Some(dht) = &dht {
            // Holders are announced with the port of the URL others reach this node at.
            let port = url::Url::parse(&own_url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .and_then(|u| u.port_or_known_default())
                .unwrap_or(local_addr.port());
            let nat_as = iroh
                .as_ref()
                .and_then(|iroh| hex::decode(iroh.id()).ok())
                .and_then(|id| <[u8; 32]>::try_from(id).ok());
            tasks.spawn(crate::tasks::dht_loop(
                api.clone(),
                dht.clone(),
                port,
                nat_as,
                shutdown.child_token(),
            ));
        }
        // A small share is indexed before the node says it is up (it already answers while
        // it waits); a large one goes on being hashed in the background.
        let _ = tokio::time::timeout(FIRST_SCAN_WAIT, first_scan).await;
        let url_file = options.state.join(URL_FILE);
        if let Err(error) = write_private(&url_file, &format!("{}\n", api.url())) {
            tracing::warn!(path = %url_file.display(), %error, "could not record the node's URL");
        }
        Ok(Node {
            api,
            iroh,
            local_addr,
            shutdown,
            tasks,
            secret_file,
            url_file,
        })
    }

    /// The facade, for in-process callers (the CLI's shell, tests).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The UDP address of this node's DHT node, when it runs one.
    pub async fn dht_addr(&self) -> Option<std::net::SocketAddrV4> {
        Some(self.api.dht()?.info().await.local)
    }

    /// This node's URL.
    pub fn url(&self) -> &str {
        self.api.url()
    }

    /// This node's ticket, when it runs iroh; it says so once it knows a direct address and,
    /// with relays, its home relay (waiting at most `wait`).
    pub async fn ticket(&self, wait: std::time::Duration) -> Option<String> {
        let iroh = self.iroh.as_ref()?;
        iroh.settle(wait).await;
        Some(iroh.ticket().encode())
    }

    /// This node's id (hex), when it runs iroh.
    pub fn id(&self) -> Option<String> {
        self.iroh.as_ref().map(|iroh| iroh.id())
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Where the generated secret is kept, when the secret was not given.
    pub fn secret_file(&self) -> Option<&Path> {
        self.secret_file.as_deref()
    }

    /// Stops accepting, lets open requests finish (bounded), and waits for every task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let _ = std::fs::remove_file(&self.url_file);
    }
}
