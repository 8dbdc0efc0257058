//! The node's routes over iroh: the same router as on TCP, one HTTP/1.1 exchange per QUIC
//! stream. A stream gets the same header timeout and stall guard as a TCP connection. The
//! caller's node id, proven by the handshake, travels with every request in [`Caller`] (the
//! owner's keys need no secret); its address is the direct path's when there is one, and
//! otherwise one made from the id (behind a relay the sender's address is unknown), so that the
//! per-address limits still have a key.
//!
//! Connections are bounded apart from TCP's ([`IrohLimits`]), so that neither transport's
//! callers can take the other's places:
//! - A stranger's place is taken when its handshake starts: one of the strangers' slots and one
//!   under its address's cap (the address is known then: the direct path's, or, through a
//!   relay, one made from the id the relay vouches for). Once the handshake proves the key, one
//!   under the key's cap too. A handshake has the header timeout, and at most the 10 s a client
//!   waits for one, to finish.
//! - The owner's keys have a small reserve: a connection that finds no stranger's place may
//!   still finish its handshake on one of the reserve's, and is closed at once unless its key is
//!   the owner's. To get that far its sender must first answer a QUIC retry (proving the address
//!   it sends from), so stray and forged first packets take no reserve place. The owner's keys
//!   are never held to the address or key caps.
//! - A connection that has had no stream open for [`IrohLimits::idle_timeout`] is closed with
//!   [`CLOSE_IDLE`]: QUIC keep-alives would otherwise hold an unused connection, and its place,
//!   for good. The code tells the other side that no request of its was taken, so it may dial
//!   again and send it (`net::iroh` does).
//!
//! Before our loop sees them, handshakes waiting to be accepted are bounded by the QUIC stack
//! (noq: at most 65,536 and 100 MiB of buffered packets, not settable through iroh); the loop
//! decides each one at once, so the queue does not grow.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ::iroh::EndpointId;
use ::iroh::endpoint::{Connection, Incoming, IncomingAddr};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::guard::Caller;
use super::{CallerSlot, IrohLimits, PerCaller, SHUTDOWN_GRACE, ServeOptions, stall};
use crate::net::iroh::{ALPN, CLOSE_BUSY, CLOSE_IDLE, Iroh};
use crate::service::Api;

/// Longest time a handshake may hold a place: no client of ours waits longer for one.
const HANDSHAKE_TIMEOUT: std::time::Duration = crate::net::iroh::DIAL_TIMEOUT;

/// How a connection got in, before its key is known; the places are given back when dropped.
enum Admission {
    /// A stranger's place: one of the strangers' slots and, unless its address is exempt, one
    /// under the address's cap.
    Stranger {
        _slot: OwnedSemaphorePermit,
        _address: Option<CallerSlot<IpAddr>>,
    },
    /// One of the owner's reserve, kept only if the key turns out to be the owner's.
    Reserve { _slot: OwnedSemaphorePermit },
}

/// The counts the caps are checked against.
struct Counts {
    limits: IrohLimits,
    max_per_address: usize,
    loopback_exempt: bool,
    per_address: Arc<PerCaller<IpAddr>>,
    per_key: Arc<PerCaller<EndpointId>>,
}

impl Counts {
    /// A stranger's place for a handshake from `ip`, if there is one.
    fn stranger(&self, ip: IpAddr) -> Option<Admission> {
        let address = if self.loopback_exempt && ip.is_loopback() {
            None
        } else {
            Some(self.per_address.take(ip, self.max_per_address)?)
        };
        let slot = self.limits.slots.clone().try_acquire_owned().ok()?;
        Some(Admission::Stranger {
            _slot: slot,
            _address: address,
        })
    }

    /// One of the owner's reserve, if one is free.
    fn reserve(&self) -> Option<Admission> {
        let slot = self.limits.owner_slots.clone().try_acquire_owned().ok()?;
        Some(Admission::Reserve { _slot: slot })
    }
}

/// What a connection holds while it is open; given back when dropped.
type Places = (Admission, Option<CallerSlot<EndpointId>>);

/// Serves `router` on the iroh endpoint until `shutdown` is cancelled.
pub async fn serve(iroh: Arc<Iroh>, api: Api, router: Router, shutdown: CancellationToken, options: ServeOptions) {
    let connections = tokio_util::task::TaskTracker::new();
    let counts = Arc::new(Counts {
        limits: options.iroh.clone(),
        max_per_address: options.max_per_address,
        loopback_exempt: options.loopback_exempt,
        per_address: Arc::default(),
        per_key: Arc::default(),
    });
    let endpoint = iroh.endpoint().clone();
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let ip = incoming_ip(&incoming);
        let admission = match counts.stranger(ip) {
            Some(admission) => admission,
            // Under pressure, a handshake goes on to the owner's reserve only once its sender
            // has answered a retry from the address it claims: a forged or stray first packet
            // (a client's copy sent on another path after its attempt was refused) then holds
            // nothing, where it would otherwise hold a reserve place until the handshake
            // deadline.
            None if !incoming.remote_addr_validated() => {
                if let Err(error) = incoming.retry() {
                    error.into_incoming().refuse();
                }
                continue;
            }
            None => match counts.reserve() {
                Some(admission) => admission,
                None => {
                    tracing::debug!(%ip, "no place for another iroh connection; refusing it");
                    incoming.refuse();
                    continue;
                }
            },
        };
        let (router, shutdown, options, api, counts) = (router.clone(), shutdown.clone(), options.clone(), api.clone(), counts.clone());
        connections.spawn(async move {
            let conn = match tokio::time::timeout(options.header_timeout.min(HANDSHAKE_TIMEOUT), incoming).await {
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
            let id = conn.remote_id();
            let key: Arc<str> = id.to_string().into();
            let places: Places = if api.is_owner_key(&key) {
                (admission, None)
            } else {
                match admission {
                    Admission::Reserve { .. } => {
                        tracing::debug!(%ip, "a stranger's iroh connection with no place left; closing it");
                        conn.close(CLOSE_BUSY.into(), b"busy");
                        return;
                    }
                    stranger => match counts.per_key.take(id, counts.limits.max_per_key) {
                        Some(slot) => (stranger, Some(slot)),
                        None => {
                            tracing::debug!(id = %id.fmt_short(), "too many iroh connections from one key; closing one");
                            conn.close(CLOSE_BUSY.into(), b"too many connections from this key");
                            return;
                        }
                    },
                }
            };
            let caller = Caller(caller_addr(&conn), Some(key));
            serve_streams(conn, caller, router, shutdown, options).await;
            drop(places);
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await.is_err() {
        tracing::warn!("some iroh connections were still open after the shutdown grace period");
    }
    iroh.close().await;
}

/// Serves the streams of `conn` until it closes, `shutdown` is cancelled, or it has had no
/// stream open for the idle timeout.
async fn serve_streams(conn: Connection, caller: Caller, router: Router, shutdown: CancellationToken, options: ServeOptions) {
    let router = router.layer(axum::Extension(caller));
    let graceful = GracefulShutdown::new();
    let open = Arc::new(OpenStreams::default());
    loop {
        let idle = open.count.load(Ordering::Acquire) == 0;
        let (send, recv) = tokio::select! {
            () = shutdown.cancelled() => break,
            // A stream ended: look again whether none is open.
            () = open.ended.notified() => continue,
            () = tokio::time::sleep(options.iroh.idle_timeout), if idle => {
                conn.close(CLOSE_IDLE.into(), b"idle");
                break;
            }
            stream = conn.accept_bi() => match stream {
                Ok(pair) => pair,
                Err(_) => break,
            },
        };
        let held = StreamHeld::new(open.clone());
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
            drop(held);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::debug!("some iroh streams were still open after the shutdown grace period");
    }
}

/// The streams open on one connection, and a wake-up when one ends.
#[derive(Default)]
struct OpenStreams {
    count: AtomicUsize,
    ended: Notify,
}

/// One open stream, counted in [`OpenStreams`] until dropped (however its task ends).
struct StreamHeld(Arc<OpenStreams>);

impl StreamHeld {
    fn new(open: Arc<OpenStreams>) -> Self {
        open.count.fetch_add(1, Ordering::AcqRel);
        StreamHeld(open)
    }
}

impl Drop for StreamHeld {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_one();
    }
}

/// The address a handshake comes from, for the per-address cap: the direct path's, or one made
/// from the id the relay names as the sender.
fn incoming_ip(incoming: &Incoming) -> IpAddr {
    match incoming.remote_addr() {
        IncomingAddr::Ip(addr) => addr.ip(),
        IncomingAddr::Relay { endpoint_id, .. } => relayed_addr(&endpoint_id),
        // No custom transport is configured; were one added, its callers share one cap.
        _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The address the per-caller limits key on: the direct path's, or [`relayed_addr`] when the
/// connection runs through a relay.
fn caller_addr(conn: &Connection) -> SocketAddr {
    let paths = conn.paths();
    let direct = paths.iter().filter(|p| p.is_ip()).find_map(|p| match p.remote_addr() {
        ::iroh::TransportAddr::Ip(addr) => Some(*addr),
        _ => None,
    });
    direct.unwrap_or_else(|| SocketAddr::new(relayed_addr(&conn.remote_id()), 0))
}

/// `fd53:686f:616c::/48` plus the id's first bytes: the address of a caller behind a relay.
fn relayed_addr(id: &EndpointId) -> IpAddr {
    let b = id.as_bytes();
    let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    IpAddr::V6(Ipv6Addr::new(0xfd53, 0x686f, 0x616c, word(0), word(2), word(4), word(6), word(8)))
}
