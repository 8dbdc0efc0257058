//! Where this node may send a request that someone else chose the address of.
//!
//! A peer names holders and peers by URL; a caller `hello`s any URL into the table. Without a
//! policy, a node becomes a proxy into the networks it can reach: its own loopback services,
//! the LAN, the cloud metadata service. The rules, per address:
//! - never: unspecified, link-local (which holds the cloud metadata addresses 169.254.169.254
//!   and fd00:ec2::254's neighbours), multicast, broadcast, documentation ranges;
//! - loopback: only when the node itself announces a loopback URL (a node on one machine, as in
//!   tests and the two-node example), or for what the owner asked for;
//! - private and shared ranges (RFC 1918, 100.64/10, fc00::/7): only when the node's own URL is
//!   private or loopback (a LAN node reaches LAN peers), or for what the owner asked for;
//! - everything else (public unicast): allowed.
//!
//! Host names are checked after resolution, inside the HTTP client's resolver, so a name that
//! resolves to a forbidden address is refused as an IP literal is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Which addresses a class of requests may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub loopback: bool,
    pub private: bool,
}

/// How far an address is from the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Forbidden,
    Loopback,
    Private,
    Public,
}

/// The scope of an address.
pub fn scope(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => scope_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => scope_v4(v4),
            None => scope_v6(v6),
        },
    }
}

fn scope_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || ip.is_link_local() || ip.is_multicast() || ip.is_broadcast() || ip.is_documentation() || a == 0 || a >= 240 {
        Scope::Forbidden
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) || (a == 198 && (b == 18 || b == 19)) {
        Scope::Private
    } else {
        Scope::Public
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-compatible (`::a.b.c.d`, deprecated), NAT64
/// well-known (`64:ff9b::/96`) and 6to4 (`2002:aabb:ccdd::/48`) addresses reach that IPv4
/// address, so they are judged as it is.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(low(seg[6], seg[7]));
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(seg[6], seg[7]));
    }
    if seg[0] == 0x2002 {
        return Some(low(seg[1], seg[2]));
    }
    None
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    if let Some(v4) = embedded_v4(ip) {
        return scope_v4(v4);
    }
    let first = ip.segments()[0];
    // The NAT64 prefix for local use (64:ff9b:1::/48) embeds IPv4 addresses at a length only
    // its network knows; site-local (fec0::/10) is deprecated and means "this site".
    let local_nat64 = first == 0x64 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1;
    let site_local = (first & 0xffc0) == 0xfec0;
    if local_nat64 || site_local {
        return Scope::Forbidden;
    }
    if ip.is_unspecified() || ip.is_multicast() || (first & 0xffc0) == 0xfe80 || first == 0x2001 && ip.segments()[1] == 0xdb8 {
        Scope::Forbidden
    } else if ip.is_loopback() {
        Scope::Loopback
    } else if (first & 0xfe00) == 0xfc00 {
        Scope::Private
    } else {
        Scope::Public
    }
}

impl Policy {
    /// What the owner asked for: anything but the addresses that are never legitimate.
    pub const OWNER: Policy = Policy {
        loopback: true,
        private: true,
    };

    /// The policy for addresses peers and callers name, given the host of the node's own URL:
    /// a loopback node reaches loopback and private peers, a private node private ones, a
    /// public node public ones only.
    pub fn for_node(own_host: Option<IpAddr>) -> Policy {
        match own_host.map(scope) {
            Some(Scope::Loopback) => Policy {
                loopback: true,
                private: true,
            },
            Some(Scope::Private) => Policy {
                loopback: false,
                private: true,
            },
            // A node known by a domain name may be anywhere: it reaches LAN peers but never
            // its own machine's other services.
            None => Policy {
                loopback: false,
                private: true,
            },
            _ => Policy {
                loopback: false,
                private: false,
            },
        }
    }

    /// The policy of a node listening on `local` and naming itself with a URL on `own_host`.
    /// A node bound to every address (`0.0.0.0`, `::`) is reachable from other machines
    /// whatever it calls itself, so strangers never get the loopback policy from it: it reaches
    /// private ranges when one of `interfaces` (the machine's addresses) is private, and its
    /// own URL's situation otherwise.
    pub fn for_listener(own_host: Option<IpAddr>, local: SocketAddr, interfaces: &[IpAddr]) -> Policy {
        let named = Policy::for_node(own_host);
        if !local.ip().is_unspecified() {
            return named;
        }
        let on_lan = interfaces.iter().any(|ip| scope(*ip) == Scope::Private);
        Policy {
            loopback: false,
            private: on_lan || (named.private && own_host.is_none_or(|ip| scope(ip) != Scope::Loopback)),
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        match scope(ip) {
            Scope::Forbidden => false,
            Scope::Loopback => self.loopback,
            Scope::Private => self.private,
            Scope::Public => true,
        }
    }
}

/// The addresses of this machine's interfaces (empty when they cannot be read).
pub fn interface_addrs() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer; the list is walked read-only and freed once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut cursor = list;
        while !cursor.is_null() {
            let addr = (*cursor).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cursor = (*cursor).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// The HTTP client's resolver: the system's, with every address the policy refuses removed.
pub struct Resolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Resolver {
    pub fn shared(policy: Policy) -> Arc<Resolver> {
        Arc::new(Resolver { policy })
    }
}

/// An address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("the address is not one this node may contact")]
pub struct Refused;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        for (ip, expected) in [
            ("169.254.169.254", Scope::Forbidden),
            ("0.0.0.0", Scope::Forbidden),
            ("224.0.0.1", Scope::Forbidden),
            ("255.255.255.255", Scope::Forbidden),
            ("fe80::1", Scope::Forbidden),
            ("::", Scope::Forbidden),
            ("127.0.0.1", Scope::Loopback),
            ("127.9.9.9", Scope::Loopback),
            ("::1", Scope::Loopback),
            ("::ffff:127.0.0.1", Scope::Loopback),
            ("::ffff:169.254.169.254", Scope::Forbidden),
            ("10.1.2.3", Scope::Private),
            ("192.168.1.1", Scope::Private),
            ("172.16.0.1", Scope::Private),
            ("100.64.0.1", Scope::Private),
            ("fd00::1", Scope::Private),
            ("8.8.8.8", Scope::Public),
            ("2606:4700::1111", Scope::Public),
            // Addresses that embed an IPv4 address are what that address is.
            ("64:ff9b::7f00:1", Scope::Loopback),
            ("64:ff9b::a9fe:a9fe", Scope::Forbidden),
            ("64:ff9b::a00:1", Scope::Private),
            ("64:ff9b::808:808", Scope::Public),
            ("2002:7f00:1::1", Scope::Loopback),
            ("2002:a9fe:a9fe::", Scope::Forbidden),
            ("2002:c0a8:101::1", Scope::Private),
            ("2002:808:808::1", Scope::Public),
            ("::127.0.0.1", Scope::Loopback),
            ("::10.0.0.1", Scope::Private),
            ("::169.254.169.254", Scope::Forbidden),
            ("64:ff9b:1::a00:1", Scope::Forbidden),
            ("fec0::1", Scope::Forbidden),
        ] {
            assert_eq!(scope(ip.parse().unwrap()), expected, "{ip}");
        }
    }

    #[test]
    fn a_node_reaches_what_its_situation_makes_legitimate() {
        let public = Policy::for_node(Some("203.0.113.7".parse().unwrap()));
        let public = Policy { ..public };
        assert!(!public.allows("127.0.0.1".parse().unwrap()));
        assert!(!public.allows("10.0.0.1".parse().unwrap()));
        let lan = Policy::for_node(Some("192.168.1.5".parse().unwrap()));
        assert!(lan.allows("192.168.1.9".parse().unwrap()));
        assert!(!lan.allows("127.0.0.1".parse().unwrap()));
        let local = Policy::for_node(Some("127.0.0.1".parse().unwrap()));
        assert!(local.allows("127.0.0.1".parse().unwrap()));
        // Bound to every address and named by loopback (the default `serve`): reachable from
        // other machines, so never the loopback policy.
        let any: SocketAddr = "0.0.0.0:4242".parse().unwrap();
        let loopback = Some("127.0.0.1".parse().unwrap());
        let lan_box = Policy::for_listener(loopback, any, &["127.0.0.1".parse().unwrap(), "192.168.1.5".parse().unwrap()]);
        assert_eq!(
            lan_box,
            Policy {
                loopback: false,
                private: true
            }
        );
        let public_box = Policy::for_listener(loopback, any, &["127.0.0.1".parse().unwrap(), "203.0.113.7".parse().unwrap()]);
        assert_eq!(
            public_box,
            Policy {
                loopback: false,
                private: false
            }
        );
        let bound: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(Policy::for_listener(loopback, bound, &[]), local);
        for policy in [public, lan, local, Policy::OWNER] {
            assert!(!policy.allows("169.254.169.254".parse().unwrap()));
        }
    }
}
