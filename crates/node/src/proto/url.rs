//! Peer URLs: one spelling for every way of writing the same node.
//!
//! The seed compares URLs as strings, so `http://localhost:4242/` and `http://127.0.0.1:4242`
//! are two different peers to it, and a node can end up asking itself. Every URL that enters the
//! peer table, a history list or a self-check goes through [`normalize`] first.

use std::net::{IpAddr, Ipv4Addr};

/// Why a peer URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("peer URL {0:?} is not a valid URL")]
    Invalid(String),
    #[error("peer URL {0:?} must use http or https")]
    Scheme(String),
    #[error("peer URL {0:?} has no host")]
    NoHost(String),
    #[error("peer URL {0:?} carries credentials, a query or a fragment")]
    Extra(String),
    #[error("peer URL is longer than {} bytes", crate::proto::limits::MAX_URL_BYTES)]
    TooLong,
    #[error("peer URL {0:?} has a path that is not a node's")]
    Path(String),
    #[error("peer {0:?}: {1}")]
    Key(String, crate::proto::ticket::TicketError),
}

/// A node named by id or ticket, as `iroh://<id>`.
fn keyed(raw: &str) -> Result<String, UrlError> {
    crate::proto::ticket::Ticket::parse(raw)
        .map(|t| t.url())
        .map_err(|e| UrlError::Key(short(raw), e))
}

/// The canonical spelling of a peer URL: a node id or ticket as `iroh://<id>`; otherwise
/// lower-case scheme and host, `localhost` as
/// `127.0.0.1`, an explicit port, no query or fragment, and no trailing slash.
pub fn normalize(raw: &str) -> Result<String, UrlError> {
    if raw.len() > crate::proto::limits::MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    if crate::proto::ticket::is_keyed(raw) {
        return keyed(raw);
    }
    let url = url::Url::parse(raw.trim()).map_err(|_| UrlError::Invalid(short(raw)))?;
    spell(&url, raw)
}

/// The canonical spelling of a parsed URL (see [`normalize`]).
fn spell(url: &url::Url, raw: &str) -> Result<String, UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(short(raw)));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => "127.0.0.1".to_string(),
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        None => return Err(UrlError::NoHost(short(raw))),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let path = url.path().trim_end_matches('/');
    Ok(format!("{}://{host}:{port}{path}", url.scheme()))
}

/// A holder or peer named by someone else, as the base URL of a node: [`normalize`]d, with no
/// credentials, query or fragment, and a path that is empty or a short plain one (`/RPC2`).
/// Only the protocol's own paths are ever appended to it (`/content/<id>`, `/outboard/<id>`),
/// so a peer cannot point this node at an arbitrary path of another server.
pub fn holder(raw: &str) -> Result<String, UrlError> {
    if raw.len() > crate::proto::limits::MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    if crate::proto::ticket::is_keyed(raw) {
        return keyed(raw);
    }
    let parsed = url::Url::parse(raw.trim()).map_err(|_| UrlError::Invalid(short(raw)))?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(UrlError::Extra(short(raw)));
    }
    let path = parsed.path().trim_end_matches('/');
    if path.len() > 64 || !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b)) {
        return Err(UrlError::Path(short(raw)));
    }
    spell(&parsed, raw)
}

/// `host:port` of a normalised URL: the key under which holders and peers are deduplicated.
pub fn host_port(normalized: &str) -> &str {
    let rest = normalized.split_once("://").map_or(normalized, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A URL as strangers may see it: scheme, host and port only (no credentials, path or query,
/// which may carry tokens or signatures).
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("?");
            match url.port_or_known_default() {
                Some(port) => format!("{}://{host}:{port}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            }
        }
        Err(_) => "(hidden)".to_string(),
    }
}

/// A URL as its owner may see it in output and logs: whole, but without `user:password@`.
pub fn without_credentials(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(hidden)".to_string(),
    }
}

/// A URL shortened for an error message (callers may send anything).
fn short(raw: &str) -> String {
    raw.chars().take(80).filter(|c| !c.is_control()).collect()
}

/// Recognises this node's own URL in any spelling.
#[derive(Debug, Clone)]
pub struct SelfUrl {
    /// The URL this node gives to others (normalised).
    pub url: String,
    port: u16,
    hosts: Vec<String>,
    /// `iroh://<id>`, when the node has a key.
    pub keyed: Option<String>,
}

impl SelfUrl {
    /// `url` is the node's public URL; `listen` the address its socket is bound to.
    pub fn new(url: &str, listen: std::net::SocketAddr) -> Result<Self, UrlError> {
        let url = normalize(url)?;
        let parsed = url::Url::parse(&url).map_err(|_| UrlError::Invalid(url.clone()))?;
        let mut hosts = vec![parsed.host_str().unwrap_or_default().to_string()];
        let ip = listen.ip();
        hosts.push(ip.to_string());
        if ip.is_unspecified() || ip.is_loopback() {
            hosts.extend(["127.0.0.1".to_string(), "[::1]".to_string(), "0.0.0.0".to_string()]);
        }
        Ok(SelfUrl {
            port: parsed.port_or_known_default().unwrap_or(listen.port()),
            url,
            hosts,
            keyed: None,
        })
    }

    /// The same, for a node that is also reachable by its id.
    pub fn with_key(mut self, keyed: String) -> Self {
        self.keyed = Some(keyed);
        self
    }

    /// True when `other` (any spelling) names this node.
    pub fn is_me(&self, other: &str) -> bool {
        let Ok(other) = normalize(other) else { return false };
        if other == self.url || self.keyed.as_deref() == Some(other.as_str()) {
            return true;
        }
        let Ok(parsed) = url::Url::parse(&other) else { return false };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(other) => other.to_string(),
            None => return false,
        };
        parsed.port_or_known_default() == Some(self.port)
            && (self.hosts.contains(&host)
                || host
                    .parse::<Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback() && self.hosts.iter().any(|h| h == "127.0.0.1")))
    }
}

/// The URL a node announces when none is given: its bound address, with a wildcard address
/// replaced by loopback (give `--url` to be reachable from other machines).
pub fn default_url(listen: std::net::SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}", listen.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}", listen.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_cut_and_the_rest_is_kept() {
        assert_eq!(
            without_credentials("https://alice:pw@m.example:8443/a/b.iso?sig=1"),
            "https://m.example:8443/a/b.iso?sig=1"
        );
        assert_eq!(without_credentials("http://m.example/x"), "http://m.example/x");
        assert_eq!(without_credentials("not a url"), "(hidden)");
    }

    #[test]
    fn spellings_of_one_url_are_equal() {
        for raw in [
            "http://localhost:4242",
            "http://LOCALHOST:4242/",
            "http://127.0.0.1:4242",
            " http://127.0.0.1:4242// ",
        ] {
            assert_eq!(normalize(raw).unwrap(), "http://127.0.0.1:4242", "{raw}");
        }
        assert_eq!(normalize("http://Example.org").unwrap(), "http://example.org:80");
        assert_eq!(normalize("http://h:1/RPC2/").unwrap(), "http://h:1/RPC2");
        assert!(matches!(normalize("ftp://h"), Err(UrlError::Scheme(_))));
        assert!(matches!(normalize("not a url"), Err(UrlError::Invalid(_))));
    }

    #[test]
    fn holders_are_node_base_urls() {
        assert_eq!(holder("http://h:1").unwrap(), "http://h:1");
        assert_eq!(holder("http://h:1/RPC2").unwrap(), "http://h:1/RPC2");
        for bad in [
            "http://u:p@h:1",
            "http://h:1/?x=1",
            "http://h:1/#f",
            "http://h:1/a%20b",
            "file:///etc/passwd",
        ] {
            assert!(holder(bad).is_err(), "{bad}");
        }
        assert!(holder(&format!("http://h:1/{}", "a".repeat(600))).is_err());
        assert_eq!(host_port("http://h:1/RPC2"), "h:1");
        assert_eq!(host_port("http://[::1]:80"), "[::1]:80");
        assert_eq!(redact("http://user:pw@mirror.example/a/b.iso?sig=XYZ"), "http://mirror.example:80");
    }

    #[test]
    fn a_node_knows_itself() {
        let me = SelfUrl::new("http://127.0.0.1:4242", "0.0.0.0:4242".parse().unwrap()).unwrap();
        for raw in [
            "http://localhost:4242/",
            "http://127.0.0.1:4242",
            "http://127.0.0.2:4242",
            "http://0.0.0.0:4242",
        ] {
            assert!(me.is_me(raw), "{raw}");
        }
        for raw in ["http://127.0.0.1:4243", "http://example.org:4242", "garbage"] {
            assert!(!me.is_me(raw), "{raw}");
        }
    }
}
