//! The node's routes over iroh: the same router as on TCP, one HTTP/1.1 exchange per QUIC
//! stream. A connection counts against the same cap as a TCP one; a stream gets the same header
//! timeout and stall guard. The caller's node id, proven by the handshake, travels with every
//! request in [`Caller`] (the owner's keys need no secret); its address is the direct path's
//! when there is one, and otherwise one made from the id (behind a relay the sender's address is
//! unknown), so that the per-address limits still have a key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use super::guard::Caller;
use super::{SHUTDOWN_GRACE, ServeOptions, stall};
use crate::net::iroh::{ALPN, Iroh};

/// Serves `router` on the iroh endpoint until `shutdown` is cancelled.
pub async fn serve(iroh: Arc<Iroh>, router: Router, shutdown: CancellationToken, options: ServeOptions) {
    let connections = tokio_util::task::TaskTracker::new();
    let slots = options.slots.clone();
    let endpoint = iroh.endpoint().clone();
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached; refusing an iroh connection");
            incoming.refuse();
            continue;
        };
        let (router, shutdown, options) = (router.clone(), shutdown.clone(), options.clone());
        connections.spawn(async move {
            let conn = match tokio::time::timeout(options.header_timeout, incoming).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "an iroh handshake failed");
                    return;
                }
                Err(_) => return,
            };
            if conn.alpn() != ALPN {
                conn.close(0u32.into(), b"unknown protocol");
                return;
            }
            let key: Arc<str> = conn.remote_id().to_string().into();
            let caller = Caller(caller_addr(&conn), Some(key));
            let router = router.layer(axum::Extension(caller));
            let graceful = GracefulShutdown::new();
            loop {
                let (send, recv) = tokio::select! {
                    () = shutdown.cancelled() => break,
                    stream = conn.accept_bi() => match stream {
                        Ok(pair) => pair,
                        Err(_) => break,
                    },
                };
                let working = stall::Working::default();
                let service = TowerToHyperService::new(router.clone().layer(axum::Extension(working.clone())));
                let io = stall::Stall::new(tokio::io::join(recv, send), options.stall_timeout, working);
                let exchange = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(options.header_timeout)
                    .serve_connection(TokioIo::new(io), service);
                let exchange = graceful.watch(exchange);
                tokio::spawn(async move {
                    if let Err(error) = exchange.await {
                        tracing::debug!(%error, "an iroh stream ended with an error");
                    }
                });
            }
            if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
                tracing::debug!("some iroh streams were still open after the shutdown grace period");
            }
            drop(slot);
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await.is_err() {
        tracing::warn!("some iroh connections were still open after the shutdown grace period");
    }
    iroh.close().await;
}

/// The address the per-caller limits key on: the direct path's, or `fd53:686f:616c::/48` plus
/// the id's first bytes when the connection runs through a relay.
fn caller_addr(conn: &::iroh::endpoint::Connection) -> SocketAddr {
    let paths = conn.paths();
    let direct = paths.iter().filter(|p| p.is_ip()).find_map(|p| match p.remote_addr() {
        ::iroh::TransportAddr::Ip(addr) => Some(*addr),
        _ => None,
    });
    direct.unwrap_or_else(|| {
        let id = conn.remote_id();
        let b = id.as_bytes();
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd53, 0x686f, 0x616c, word(0), word(2), word(4), word(6), word(8))),
            0,
        )
    })
}
