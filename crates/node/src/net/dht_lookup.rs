//! Node addresses on the Mainline DHT: iroh's address look-up by node id, on this node's own
//! DHT node ([`super::dht::Dht`]), so `--peer NODEID` works with no central service.
//!
//! A node publishes a BEP 44 mutable record under its node key: a pkarr signed packet (iroh's
//! format, so iroh's own DHT look-up reads it and we read theirs) naming its home relay, and
//! its direct addresses only when its DHT node is reachable (behind NAT they lead nowhere, and
//! they would tell the whole DHT where the node lives). It publishes again when its addresses
//! change and every [`REPUBLISH`]. Resolving an id reads the most recent record and checks its
//! signature against the id (`mainline` verifies BEP 44's signature, the pkarr packet its own).
//!
//! What a record names is a stranger's word about where to send packets: direct addresses pass
//! the DHT's address policy, and a relay is kept only when this node uses it too or it is an
//! address literal the policy allows (as for a stranger's ticket). The key decides who answers:
//! a record that points elsewhere cannot make another node answer for the id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use iroh::address_lookup::{AddressLookup, EndpointData, Error as LookupError, Item};
use iroh::endpoint_info::EndpointInfo;
use iroh::{EndpointId, SecretKey, TransportAddr};

use super::dht::Dht;

/// How long a published record says it holds (seconds), as iroh's look-ups use.
const TTL: u32 = 30;
/// How often an unchanged record is published again (BEP 44 nodes drop items after about two
/// hours).
pub const REPUBLISH: Duration = Duration::from_secs(60 * 60);
/// How often the node's reachability is checked for a record to publish again.
const RECHECK: Duration = Duration::from_secs(30);
/// Longest a resolve waits for the DHT.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(15);

/// The look-up. Cheap to clone.
#[derive(Clone)]
pub struct DhtAddressLookup {
    inner: Arc<Inner>,
}

struct Inner {
    dht: Arc<Dht>,
    /// Publishes under this key; `None` resolves only (a command's client endpoint).
    key: Option<SecretKey>,
    /// The relays this node uses (a stranger's record may name these).
    relays: Vec<String>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for DhtAddressLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtAddressLookup").finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl DhtAddressLookup {
    /// A look-up on `dht`, publishing under `key` when given; `relays` are the relays this
    /// node uses.
    pub fn new(dht: Arc<Dht>, key: Option<SecretKey>, relays: Vec<String>) -> DhtAddressLookup {
        DhtAddressLookup {
            inner: Arc::new(Inner {
                dht,
                key,
                relays,
                task: Mutex::new(None),
            }),
        }
    }

    /// What of `info` this node may act on: addresses the DHT's policy allows, relays it uses
    /// itself or whose literal address the policy allows.
    fn kept(&self, info: EndpointInfo) -> EndpointInfo {
        let policy = self.inner.dht.policy();
        let addrs: Vec<TransportAddr> = info
            .data
            .addrs()
            .filter(|addr| match addr {
                TransportAddr::Ip(ip) => policy.allows(ip.ip()),
                TransportAddr::Relay(relay) => {
                    let spelled = relay.to_string();
                    self.uses(&spelled) || super::client::relay_literal_allowed(&spelled, policy)
                }
                _ => false,
            })
            .cloned()
            .collect();
        EndpointInfo::from_parts(info.endpoint_id, EndpointData::new(addrs))
    }

    fn uses(&self, relay: &str) -> bool {
        let trim = |r: &str| r.trim_end_matches('/').to_string();
        self.inner.relays.iter().any(|r| trim(r) == trim(relay))
    }

    async fn resolve_once(self, id: EndpointId) -> Option<Result<Item, LookupError>> {
        let lookup = self.inner.dht.handle().get_mutable_most_recent(id.as_bytes(), None);
        let item = tokio::time::timeout(RESOLVE_DEADLINE, lookup).await.ok().flatten();
        tracing::debug!(%id, found = item.is_some(), "a node's address record on the DHT");
        let item = item?;
        let packet = iroh_dns::pkarr::SignedPacket::from_parts_unchecked(
            item.key(),
            item.signature(),
            iroh_dns::pkarr::Timestamp::from_micros(item.seq() as u64),
            item.value(),
        )
        .ok()?;
        let info = EndpointInfo::from_pkarr_signed_packet(&packet).ok()?;
        if info.endpoint_id != id {
            return None;
        }
        Some(Ok(Item::new(self.kept(info), "shoal-dht", None)))
    }

    /// Publishes `data` under the node key now, again whenever the node's reachability
    /// changes (checked every [`RECHECK`]), and every [`REPUBLISH`].
    async fn publish_loop(self, key: SecretKey, data: EndpointData) {
        self.inner.dht.bootstrapped().await;
        let mut last: Option<(bool, std::time::Instant)> = None;
        loop {
            let reachable = self.inner.dht.info().await.reachable;
            let due = match last {
                None => true,
                Some((was, at)) => was != reachable || at.elapsed() >= REPUBLISH,
            };
            if due {
                tracing::debug!(reachable, "putting this node's address record on the DHT");
                if let Some(item) = record(&key, &data, reachable) {
                    match self.inner.dht.handle().put_mutable(item, None).await {
                        Ok(_) => self.inner.dht.set_published(),
                        Err(error) => tracing::debug!(%error, "publishing this node's addresses on the DHT failed"),
                    }
                }
                last = Some((reachable, std::time::Instant::now()));
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

/// The BEP 44 item of this node's addresses: its relays, and its direct addresses when others
/// reach it unasked (behind NAT they lead nowhere, and would tell the whole DHT where it is).
fn record(key: &SecretKey, data: &EndpointData, reachable: bool) -> Option<mainline::MutableItem> {
    let addrs: Vec<TransportAddr> = data
        .addrs()
        .filter(|a| matches!(a, TransportAddr::Relay(_)) || (reachable && matches!(a, TransportAddr::Ip(_))))
        .cloned()
        .collect();
    if addrs.is_empty() {
        return None;
    }
    let info = EndpointInfo::from_parts(key.public(), EndpointData::new(addrs));
    let packet = info.to_pkarr_signed_packet(key, TTL).ok()?;
    Some(mainline::MutableItem::new_signed_unchecked(
        *packet.public_key().as_bytes(),
        packet.signature().to_bytes(),
        packet.encoded_packet(),
        packet.timestamp().as_micros() as i64,
        None,
    ))
}

impl AddressLookup for DhtAddressLookup {
    fn publish(&self, data: &EndpointData) {
        let Some(key) = &self.inner.key else { return };
        tracing::debug!(?data, "publishing this node's addresses on the DHT");
        let task = tokio::spawn(self.clone().publish_loop(key.clone(), data.clone()));
        if let Some(old) = self.inner.task.lock().unwrap_or_else(|p| p.into_inner()).replace(task) {
            old.abort();
        }
    }

    fn resolve(&self, id: EndpointId) -> Option<futures_util::stream::BoxStream<'static, Result<Item, LookupError>>> {
        let this = self.clone();
        Some(
            futures_util::stream::once(this.resolve_once(id))
                .filter_map(futures_util::future::ready)
                .boxed(),
        )
    }
}
