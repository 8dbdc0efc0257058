//! The one HTTP server of a node: XML-RPC, file data, verification data. Only this module (and
//! the outbound [`crate::net`]) knows HTTP.
//!
//! The accept loop follows mini-redis: it takes an already-bound listener, bounds the number of
//! connections with a semaphore (a connection over the bound is closed at once) and per caller
//! address (for callers not on loopback), backs off when accepting fails (out of descriptors:
//! said once in the log, not once per retry), gives each connection its own task with a header
//! read timeout (against slow-drip clients), and drops a connection whose reads or writes make
//! no progress for [`ServeOptions::stall_timeout`] (a client that asks for a large file and
//! never reads holds no slot for good). On shutdown it stops accepting and lets open requests
//! finish for a bounded time. TCP and iroh have budgets of their own ([`ServeOptions::slots`],
//! [`IrohLimits`]), so that callers of one transport cannot take the other's places.

pub mod content;
pub mod faults;
pub mod guard;
pub mod iroh;
pub mod json;
pub mod metrics;
pub mod range;
pub mod rpc;
pub mod stall;
pub mod web;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::service::Api;
use guard::{Caller, Guard};

/// How long open requests may run on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The TCP connections that may be open at once: one permit each. iroh has its own budget
    /// ([`IrohLimits::slots`]), so a flood over one transport leaves the other's places free.
    pub slots: Arc<Semaphore>,
    /// Most connections at once from one address (counted apart for TCP and iroh).
    pub max_per_address: usize,
    /// Loopback callers (the owner's machine) skip the per-address cap.
    pub loopback_exempt: bool,
    /// Time a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// A connection whose reads or writes make no progress for this long is dropped (an idle
    /// keep-alive connection included).
    pub stall_timeout: Duration,
    /// The iroh transport's own limits.
    pub iroh: IrohLimits,
}

/// What bounds connections over iroh (see [`iroh::serve`]).
#[derive(Debug, Clone)]
pub struct IrohLimits {
    /// Strangers' iroh connections at once, handshakes in progress included: one permit each.
    pub slots: Arc<Semaphore>,
    /// Places only the owner's keys keep: a connection that finds `slots` spent, or its address
    /// or key at its cap, may still finish its handshake on one of these, and is closed at once
    /// unless its key turns out to be the owner's (the key is known only after the handshake).
    pub owner_slots: Arc<Semaphore>,
    /// Most connections at once from one node id (owner keys exempt; loopback not exempt, since
    /// ids, not addresses, tell callers apart there).
    pub max_per_key: usize,
    /// A connection that has had no stream open for this long is closed (QUIC keep-alives would
    /// otherwise hold an unused connection, and its place, for good).
    pub idle_timeout: Duration,
}

/// The routes of a node.
pub fn router(api: Api, guard: Arc<Guard>) -> Router {
    Router::new()
        .route("/", post(rpc::handle))
        .route("/RPC2", post(rpc::handle))
        .route("/content/{id}", get(content::by_id))
        .route("/files/{*name}", get(content::by_name))
        .route("/outboard/{id}", get(content::outboard))
        .route("/have/{id}", get(content::have))
        .merge(json::routes())
        .merge(web::routes())
        .route("/metrics", get(metrics::metrics))
        // No answer of a node is for a browser to guess the type of (XML-RPC and /metrics too).
        .layer(axum::middleware::map_response(content::no_sniffing))
        .layer(axum::middleware::from_fn_with_state(api.clone(), metrics::timed))
        .layer(axum::Extension(Arc::new(json::Sessions::default())))
        .layer(axum::middleware::from_fn(guard::browser))
        .layer(axum::Extension(guard))
        .with_state(api)
}

/// Counts connections per caller: per address, or over iroh per node id too.
pub(crate) struct PerCaller<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for PerCaller<K> {
    fn default() -> Self {
        PerCaller(Mutex::new(HashMap::new()))
    }
}

/// A connection's place in [`PerCaller`], given back on drop.
pub(crate) struct CallerSlot<K: Hash + Eq> {
    table: Arc<PerCaller<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> PerCaller<K> {
    /// A place for one more connection of `key`, unless it holds `max` already.
    pub(crate) fn take(self: &Arc<Self>, key: K, max: usize) -> Option<CallerSlot<K>> {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = table.entry(key.clone()).or_default();
        if *count >= max {
            if *count == 0 {
                table.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(CallerSlot { table: self.clone(), key })
    }
}

impl<K: Hash + Eq> Drop for CallerSlot<K> {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = table.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.key);
            }
        }
    }
}

/// Shortest and longest wait after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));
/// Least time between two warnings that accepting fails.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken, options: ServeOptions) {
    let graceful = GracefulShutdown::new();
    let slots = options.slots.clone();
    let per_address = Arc::new(PerCaller::<IpAddr>::default());
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut failing = false;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: say so once, wait, and keep serving.
                    // Under descriptor pressure accepting flaps between working and failing
                    // (each accepted connection takes the descriptor a closed one gave back),
                    // so the warning is given at most once per ACCEPT_WARN_EVERY, not per flap.
                    if !failing {
                        let now = std::time::Instant::now();
                        if last_warning.is_none_or(|at| now.duration_since(at) >= ACCEPT_WARN_EVERY) {
                            tracing::warn!(%error, "accepting connections fails; backing off until it works again");
                            last_warning = Some(now);
                        } else {
                            tracing::debug!(%error, "accepting connections fails again");
                        }
                        failing = true;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
        };
        if failing {
            tracing::info!("accepting connections works again");
            failing = false;
        }
        backoff = ACCEPT_BACKOFF.0;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing a new connection");
            continue;
        };
        let address_slot = if options.loopback_exempt && peer.ip().is_loopback() {
            None
        } else {
            match per_address.take(peer.ip(), options.max_per_address) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "too many connections from one address; closing a new one");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let working = stall::Working::default();
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(Caller(peer, None)))
                .layer(axum::Extension(working.clone())),
        );
        let io = stall::Stall::new(stream, options.stall_timeout, working);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(address_slot);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
}

/// Raises the soft limit on open descriptors to the hard limit and returns the new soft limit,
/// so that the connection cap can sit below it.
pub fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}
