//! Holders of a content id as the Mainline DHT names them ([`crate::net::dht`]), behind
//! [`Discover`]: a BEP 5 lookup of the id's key gives addresses, each one a stranger's word.
//! An address is kept only when the DHT's address policy allows it and it has a port; it
//! becomes the holder `http://IP:PORT`, which proves itself only by serving bytes that check.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use shoal_index::ContentId;

use super::Discover;
use crate::net::dht::Dht;

/// The DHT as a [`Discover`].
pub struct DhtHolders {
    pub dht: Arc<Dht>,
    /// This node reaches nodes by id (iroh): holders behind NAT are asked for too.
    pub by_id: bool,
}

/// The holder URLs of `addrs` that `policy` allows (distinct, in order).
pub fn holder_urls(addrs: &[std::net::SocketAddrV4], policy: crate::net::Policy) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for addr in addrs {
        if addr.port() == 0 || !policy.allows(std::net::IpAddr::V4(*addr.ip())) {
            tracing::debug!(%addr, "a DHT answer named an address the policy refuses");
            continue;
        }
        let url = format!("http://{addr}");
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

/// `iroh://<id>` for each valid node id (32 bytes that are a public key).
pub fn nat_holder_urls(ids: &[[u8; 32]]) -> Vec<String> {
    ids.iter()
        .filter(|id| iroh::EndpointId::from_bytes(id).is_ok())
        .map(|id| format!("iroh://{}", hex::encode(id)))
        .collect()
}

impl Discover for DhtHolders {
    fn holders(&self, id: ContentId) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let nat = async { if self.by_id { self.dht.nat_holders(&id).await } else { Vec::new() } };
            let (addrs, nat) = futures_util::future::join(self.dht.peers(&id), nat).await;
            let mut urls = holder_urls(&addrs, self.dht.policy());
            self.dht.count_refused((addrs.len() - urls.len()) as u64);
            // A node id is a holder's word about itself: it is dialled by key, and proves
            // itself by the bytes it serves.
            urls.extend(nat_holder_urls(&nat));
            urls
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Policy;

    #[test]
    fn forbidden_and_portless_addresses_are_dropped() {
        let addrs: Vec<std::net::SocketAddrV4> = [
            "169.254.169.254:80",
            "224.0.0.1:80",
            "0.0.0.0:80",
            "255.255.255.255:80",
            "127.0.0.1:22",
            "10.0.0.5:8080",
            "203.0.113.7:80",
            "8.8.8.8:0",
            "8.8.4.4:4242",
            "8.8.4.4:4242",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let public = Policy {
            loopback: false,
            private: false,
        };
        assert_eq!(holder_urls(&addrs, public), ["http://8.8.4.4:4242"]);
        let lan = Policy::for_node(Some("10.0.0.1".parse().unwrap()));
        assert_eq!(holder_urls(&addrs, lan), ["http://10.0.0.5:8080", "http://8.8.4.4:4242"]);
    }
}
