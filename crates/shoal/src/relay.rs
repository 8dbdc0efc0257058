//! `shoal relay`: an iroh relay, for a group that wants its own instead of the public ones.
//!
//! A relay forwards encrypted QUIC packets between node ids that cannot reach each other
//! directly; it reads none of them. What an open relay on the internet invites is strangers
//! using its bandwidth for traffic of their own, and holding its connections. So it is bounded:
//! at most `--max-clients` connections at once (1,024 by default), each read at most at
//! `--client-rate` bytes a second (16 MiB/s by default, bursts of a second's worth), and, with
//! `--allow ID` (repeatable) or `--allow-file`, only those node ids get in at all. Every
//! client proves its id in the relay handshake before it is admitted.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use iroh_relay::server::{Access, AccessControl, ClientRateLimit, ClientRequest, ConnectionId};

/// Who may use the relay, and how many at once.
#[derive(Debug)]
struct Admission {
    /// Only these ids, when set.
    allowed: Option<HashSet<iroh_base::EndpointId>>,
    max_clients: usize,
    clients: AtomicUsize,
}

impl AccessControl for Admission {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        let id = request.endpoint_id();
        if self.allowed.as_ref().is_some_and(|allowed| !allowed.contains(&id)) {
            tracing::debug!(%id, "a node not on the relay's list was refused");
            return Access::Deny {
                reason: Some("this relay serves listed nodes only".into()),
            };
        }
        let admitted = self
            .clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.max_clients).then_some(n + 1))
            .is_ok();
        if !admitted {
            tracing::debug!(%id, "the relay is full; a client was refused");
            return Access::Deny {
                reason: Some("the relay is full".into()),
            };
        }
        Access::Allow
    }

    fn on_disconnect(&self, _id: iroh_base::EndpointId, _connection: ConnectionId) {
        let _ = self.clients.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// The node ids of `--allow` and `--allow-file` (one id per line; `#` starts a comment).
fn allowed_ids(args: &crate::cli::RelayArgs) -> anyhow::Result<Option<HashSet<iroh_base::EndpointId>>> {
    let mut raw: Vec<String> = args.allow.clone();
    if let Some(file) = &args.allow_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("--allow-file {}", file.display()))?;
        raw.extend(
            text.lines()
                .map(|line| line.split('#').next().unwrap_or_default().trim().to_string())
                .filter(|line| !line.is_empty()),
        );
    }
    if raw.is_empty() {
        return Ok(None);
    }
    let mut ids = HashSet::new();
    for id in raw {
        let bytes = shoal_node::options::node_id(&id).map_err(|e| anyhow::anyhow!("--allow {id}: {e}"))?;
        ids.insert(iroh_base::EndpointId::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("--allow {id}: {e}"))?);
    }
    Ok(Some(ids))
}

/// `shoal relay`: an iroh relay until Ctrl-C: plain HTTP, or https with QUIC address discovery.
pub async fn relay(args: crate::cli::RelayArgs) -> anyhow::Result<()> {
    use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
    let mut relay = RelayConfig::new(args.listen);
    let allowed = allowed_ids(&args)?;
    if let Some(allowed) = &allowed {
        println!("serving {} listed node ids only", allowed.len());
    }
    relay.access = Arc::new(Admission {
        allowed,
        max_clients: args.max_clients,
        clients: AtomicUsize::new(0),
    });
    relay.limits.client_rx = NonZeroU32::new(args.client_rate).map(|rate| {
        let mut limit = ClientRateLimit::new(rate);
        limit.max_burst_bytes = Some(rate);
        limit
    });
    relay.key_cache_capacity = Some(args.max_clients);
    let mut quic = None;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let server_config = tls_server_config(cert, key)?;
        let https = args
            .https_listen
            .unwrap_or_else(|| std::net::SocketAddr::new(args.listen.ip(), iroh_relay::defaults::DEFAULT_HTTPS_PORT));
        // Nodes ask for address discovery on this port of the relay's host; it is not theirs to choose.
        quic = Some(QuicConfig::new(std::net::SocketAddr::new(
            https.ip(),
            iroh_relay::defaults::DEFAULT_RELAY_QUIC_PORT,
        )));
        relay.tls = Some(TlsConfig::new(https, CertConfig::Manual { server_config }));
    }
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    config.quic = quic;
    let server = Server::spawn(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the relay on {}: {e}", args.listen))?;
    let (scheme, addr) = match (server.https_addr(), server.http_addr()) {
        (Some(addr), _) => ("https", addr),
        (None, Some(addr)) => ("http", addr),
        (None, None) => anyhow::bail!("the relay has no address"),
    };
    println!("relay listening on {scheme}://{addr}");
    if let Some(quic) = server.quic_addr() {
        println!("QUIC address discovery on udp {quic}");
    }
    if addr.ip().is_unspecified() {
        println!("give nodes: --relay {scheme}://<this machine's name>:{}", addr.port());
    } else {
        println!("give nodes: --relay {scheme}://{addr}");
    }
    crate::serve::wait_for_signal().await?;
    eprintln!("shutting down");
    let _ = server.shutdown().await;
    Ok(())
}

/// A TLS server configuration from a PEM certificate chain and key.
fn tls_server_config(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(iroh_relay::tls::default_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("the relay's certificate and key: {e}"))
}
