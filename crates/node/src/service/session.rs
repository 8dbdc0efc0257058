//! A download session without a node: what `shoal get` runs on a state directory that no node
//! holds. It opens the same store (the peer table and resume records) and client key a node
//! would, builds the owner's client (CA roots, headers, iroh only when a peer is named by id
//! or ticket), and hands everything to a [`Fetcher`], the one door every download goes
//! through. When a node holds the store, [`Session::open`] says so ([`SessionError::NodeRuns`])
//! and the command hands the download to that node instead.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::downloads::Downloads;
use super::fetch::{FIND_MORE_EVERY, Fetcher, FetcherParts};
use crate::discovery::FixedPeers;
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::net::iroh::Iroh;
use crate::net::{Client, ClientOptions, Trust};
use crate::options::IrohOptions;

/// What a session is made of.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// The state directory (made, owner-only, when missing).
    pub state: PathBuf,
    /// Peers the user named on the command line: URLs, node ids or tickets.
    pub peers: Vec<String>,
    /// Peers from the configuration and peers files. The state directory's peer table is added
    /// to both.
    pub known_peers: Vec<String>,
    /// iroh's options; `None` when iroh is off, and then peers named by id are refused (those
    /// of the peer table are left out).
    pub iroh: Option<IrohOptions>,
    /// CA certificates (PEM files) trusted besides the platform's roots.
    pub ca_certs: Vec<PathBuf>,
    /// `Name: value` headers sent to the origins of the URLs the user gave.
    pub headers: Vec<String>,
    /// Credentials and headers follow redirects to other origins too.
    pub location_trusted: bool,
    /// The engine's options: built once by the caller, the same for one file and for a queue.
    pub engine: EngineOptions,
    /// A DHT node for the session's lookups of content ids (client mode unless it has a listen
    /// address); `None` runs none.
    pub dht: Option<crate::net::dht::DhtOptions>,
}

/// Why a session could not open.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A node holds the state store: hand the download to it.
    #[error("a node runs on the state directory {}", .0.display())]
    NodeRuns(PathBuf),
    #[error("creating the state directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("opening the state store {}: {source}", path.display())]
    Store { path: PathBuf, source: redb::DatabaseError },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("peers named by id or ticket need iroh, which --no-iroh turns off")]
    NeedsIroh,
    #[error("--peer: {0}")]
    Peer(String),
    #[error("--ca-cert: {0}")]
    CaCert(String),
    #[error("--header: {0}")]
    Header(String),
    #[error("starting iroh: {0}")]
    Iroh(String),
    #[error(transparent)]
    Dht(#[from] crate::net::dht::DhtError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// An open session: its fetcher, the peers it asks, and the way to stop it.
pub struct Session {
    fetcher: Fetcher,
    peers: Vec<String>,
    client: Client,
    stop: CancellationToken,
    dht: Option<Arc<crate::net::dht::Dht>>,
}

impl Session {
    /// Opens the state directory's store and builds the client and the fetcher.
    pub async fn open(options: SessionOptions) -> Result<Session, SessionError> {
        let SessionOptions {
            state,
            mut peers,
            known_peers,
            iroh,
            ca_certs,
            headers,
            location_trusted,
            engine,
            dht,
        } = options;
        crate::state::prepare_state_dir(&state).map_err(|source| SessionError::StateDir {
            path: state.clone(),
            source,
        })?;
        let store = state.join(crate::state::STORE_FILE);
        let opened = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || crate::state::open_store(&store))
                .await
                .map_err(|e| SessionError::Iroh(format!("a background task failed: {e}")))?
        };
        let db = match opened {
            Ok(db) => Arc::new(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(SessionError::NodeRuns(state)),
            Err(source) => return Err(SessionError::Store { path: store, source }),
        };
        let named = peers.len();
        peers.extend(known_peers);
        peers.extend(crate::discovery::peers::stored_urls(&db));
        let is_keyed = |p: &String| crate::proto::ticket::is_keyed(p);
        if iroh.is_none() {
            // Peers the user named need iroh; those of the peer table are left out.
            if peers[..named].iter().any(is_keyed) {
                return Err(SessionError::NeedsIroh);
            }
            peers.retain(|p| !is_keyed(p));
        }
        // The DHT first: the iroh endpoint resolves node ids on it.
        let dht = match dht {
            Some(mut options) => {
                options.nodes_file.get_or_insert_with(|| state.join(crate::state::DHT_NODES_FILE));
                Some(crate::net::dht::Dht::spawn(options, Default::default()).await?)
            }
            None => None,
        };
        // An endpoint is bound only when some peer is named by id, or the DHT may name holders
        // by id: a download from http peers and mirrors alone opens none.
        let iroh = match iroh {
            Some(mut options) if peers.iter().any(is_keyed) || dht.is_some() => {
                for path in &ca_certs {
                    options
                        .extra_roots
                        .extend(crate::net::load_ca_der(path).map_err(SessionError::CaCert)?);
                }
                let key = crate::state::client_key(&state)?;
                Some(Arc::new(
                    Iroh::bind_with_dht(key, &options, false, dht.clone())
                        .await
                        .map_err(SessionError::Iroh)?,
                ))
            }
            _ => None,
        };
        let client = owner_client(&ca_certs, &headers, location_trusted, iroh)?;
        let mut spelled = Vec::with_capacity(peers.len());
        for peer in peers {
            client.learn_ticket(&peer, Trust::Owner);
            spelled.push(crate::proto::url::normalize(&peer).map_err(|e| SessionError::Peer(e.to_string()))?);
        }
        spelled.sort();
        spelled.dedup();
        let stop = CancellationToken::new();
        let fixed: Arc<dyn crate::discovery::Discover> = Arc::new(FixedPeers {
            client: client.clone(),
            peers: spelled.clone(),
            deadline: FIND_MORE_EVERY,
        });
        let index = dht.as_ref().map(|dht| {
            Arc::new(crate::discovery::dht::DhtHolders {
                dht: dht.clone(),
                by_id: client.iroh().is_some(),
            }) as Arc<dyn crate::discovery::Discover>
        });
        let fetcher = Fetcher::new(FetcherParts {
            downloads: Downloads::new(Engine::new(db, client.clone(), engine)?, TaskTracker::new(), stop.clone()),
            client: client.clone(),
            discover: fixed,
            index,
            me: Vec::new(),
            find_more_every: FIND_MORE_EVERY,
            finished: None,
        });
        Ok(Session {
            fetcher,
            peers: spelled,
            client,
            stop,
            dht,
        })
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// The peers to search and list, spelled as the engine spells sources.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// Cancelled to stop the session's downloads (their progress is kept).
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// How a node reached over iroh (`iroh://<id>`) was reached: "direct", "relay", or none.
    pub fn path_to(&self, url: &str) -> Option<&'static str> {
        let id = url.strip_prefix("iroh://")?.split('/').next()?;
        Some(self.client.iroh()?.path(id).unwrap_or("closed"))
    }

    /// Ends the session; the iroh endpoint says goodbye to the nodes it reached, so they need
    /// not wait for a timeout.
    pub async fn close(self) {
        if let Some(dht) = &self.dht {
            dht.save_nodes().await;
        }
        if let Some(iroh) = self.client.iroh() {
            iroh.close().await;
        }
    }
}

/// The client for downloads the owner asked for: the platform's CA roots plus `ca_certs`, and
/// `headers` on the requests to the origins of the URLs the owner gave (and beyond their
/// redirects with `location_trusted`).
pub fn owner_client(
    ca_certs: &[PathBuf],
    headers: &[String],
    location_trusted: bool,
    iroh: Option<Arc<Iroh>>,
) -> Result<Client, SessionError> {
    let mut options = ClientOptions {
        iroh,
        location_trusted,
        ..Default::default()
    };
    for path in ca_certs {
        options
            .extra_roots
            .extend(crate::net::load_ca_file(path).map_err(SessionError::CaCert)?);
    }
    for header in headers {
        let (name, value) = crate::net::parse_header(header).map_err(SessionError::Header)?;
        options.owner_headers.append(name, value);
    }
    Ok(Client::with_options(options))
}
