//! The network seam: every outbound request goes through [`Client`], which applies the address
//! [`policy`], the redirect rules, timeouts, response caps and the budget of answers in flight.
//! A peer named `iroh://<id>` is reached over the second transport, [`iroh`] (node keys,
//! encryption, hole punching, relays), behind the same seam. [`NodeClient`] calls one node with
//! the protocol's typed calls.

pub mod client;
pub mod dht;
pub mod dht_lookup;
pub mod iroh;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod rate;

pub use client::{
    CallError, Client, ClientOptions, Pending, SendError, Trust, describe, http_roots, load_ca_der, load_ca_file, parse_header, tls_failure,
};
pub use node::NodeClient;
pub use policy::Policy;

/// The URL of one of the protocol's paths on the node at `base` (any path in `base` is
/// replaced: holders are contacted only on the protocol's own paths).
pub fn node_url(base: &str, path: &str) -> Result<reqwest::Url, CallError> {
    reqwest::Url::parse(base)
        .and_then(|url| url.join(path))
        .map_err(|_| CallError::Refused {
            url: base.chars().take(80).collect(),
        })
}
