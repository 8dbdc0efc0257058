//! The one HTTP server of a node: XML-RPC, file data, verification data. Only this module (and
//! the outbound [`crate::client`]) knows HTTP.
//!
//! The accept loop follows mini-redis: it takes an already-bound listener, bounds the number of
//! connections with a semaphore (a connection over the bound is closed at once), gives each
//! connection its own task with a header read timeout (against slow-drip clients), and on
//! shutdown stops accepting and lets open requests finish for a bounded time.

pub mod content;
pub mod range;
pub mod rpc;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::Api;

/// How long open requests may run on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The routes of a node.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/", post(rpc::handle))
        .route("/RPC2", post(rpc::handle))
        .route("/content/{id}", get(content::by_id))
        .route("/files/{*name}", get(content::by_name))
        .route("/outboard/{id}", get(content::outboard))
        .with_state(api)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken, max_connections: usize, header_timeout: Duration) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: say so, and keep serving.
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing a new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
}
