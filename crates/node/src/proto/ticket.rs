//! Node ids and tickets: how a node reachable over iroh is named.
//!
//! A node's id is its ed25519 public key, written as 64 lower-case hex digits. In the peer
//! table, in histories and in holder lists it is spelled `iroh://<id>`, so that it goes
//! wherever a URL goes. A ticket adds where to find the node: a relay URL and direct
//! addresses. It is one shell-safe word, `shoal1` followed by the lower-case base32 (RFC 4648,
//! no padding) of:
//!
//! ```text
//! 1 byte    version (1)
//! 32 bytes  the node id
//! 1 byte    length of the relay URL (0: none), then that many bytes of UTF-8 (at most 128)
//! 1 byte    number of addresses (at most 6), then each as
//!           4 | 4 bytes IPv4 | 2 bytes port (big-endian)  or  6 | 16 bytes IPv6 | 2 bytes port
//! ```
//!
//! The addresses and relay are hints: whatever they say, a connection succeeds only with the
//! node that holds the id's key, because iroh's handshake proves the key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The scheme under which node ids travel as URLs.
pub const SCHEME: &str = "iroh";
/// What every ticket starts with.
pub const PREFIX: &str = "shoal1";
/// Most direct addresses in a ticket.
pub const MAX_ADDRS: usize = 6;
/// Longest relay URL in a ticket.
pub const MAX_RELAY: usize = 128;

/// A node id and where it may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The node's public key.
    pub id: [u8; 32],
    /// Its home relay, an http or https URL.
    pub relay: Option<String>,
    /// Its direct addresses.
    pub addrs: Vec<SocketAddr>,
}

/// Why a node id or ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("not a node id (64 hex digits) or a shoal ticket")]
    NotAnId,
    #[error("the node id is not a valid ed25519 public key")]
    BadKey,
    #[error("the ticket is damaged or of an unknown version")]
    Damaged,
    #[error("the ticket's relay is not an http or https URL")]
    BadRelay,
}

const BASE32: data_encoding::Encoding = data_encoding::BASE32_NOPAD;

impl Ticket {
    /// A ticket with no hints.
    pub fn bare(id: [u8; 32]) -> Ticket {
        Ticket {
            id,
            relay: None,
            addrs: Vec::new(),
        }
    }

    /// The id as 64 hex digits.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The `iroh://<id>` spelling used in the peer table.
    pub fn url(&self) -> String {
        format!("{SCHEME}://{}", self.id_hex())
    }

    /// The ticket as one word. Addresses past [`MAX_ADDRS`] and a relay URL longer than
    /// [`MAX_RELAY`] are left out.
    pub fn encode(&self) -> String {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&self.id);
        match self.relay.as_deref().filter(|r| r.len() <= MAX_RELAY) {
            Some(relay) => {
                bytes.push(relay.len() as u8);
                bytes.extend_from_slice(relay.as_bytes());
            }
            None => bytes.push(0),
        }
        let addrs: Vec<_> = self.addrs.iter().take(MAX_ADDRS).collect();
        bytes.push(addrs.len() as u8);
        for addr in addrs {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    bytes.push(4);
                    bytes.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    bytes.push(6);
                    bytes.extend_from_slice(&ip.octets());
                }
            }
            bytes.extend_from_slice(&addr.port().to_be_bytes());
        }
        format!("{PREFIX}{}", BASE32.encode(&bytes).to_ascii_lowercase())
    }

    /// Reads a ticket, an `iroh://<id>` URL or a bare id. Every field is bounded; the id must
    /// be a point on the curve.
    pub fn parse(raw: &str) -> Result<Ticket, TicketError> {
        let raw = raw.trim();
        if raw.len() > crate::proto::limits::MAX_URL_BYTES {
            return Err(TicketError::Damaged);
        }
        if let Some(body) = raw.strip_prefix(PREFIX) {
            return Self::decode(body);
        }
        let hex_id = raw.strip_prefix("iroh://").map(|rest| rest.trim_end_matches('/')).unwrap_or(raw);
        if hex_id.len() != 64 || !hex_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TicketError::NotAnId);
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(hex_id, &mut id).map_err(|_| TicketError::NotAnId)?;
        check_key(&id)?;
        Ok(Ticket::bare(id))
    }

    fn decode(body: &str) -> Result<Ticket, TicketError> {
        let bytes = BASE32
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| TicketError::Damaged)?;
        let mut rest = bytes.as_slice();
        let mut take = |n: usize| -> Result<&[u8], TicketError> {
            if rest.len() < n {
                return Err(TicketError::Damaged);
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(1)? != [1] {
            return Err(TicketError::Damaged);
        }
        let id: [u8; 32] = take(32)?.try_into().map_err(|_| TicketError::Damaged)?;
        check_key(&id)?;
        let relay_len = take(1)?[0] as usize;
        let relay = if relay_len == 0 {
            None
        } else {
            if relay_len > MAX_RELAY {
                return Err(TicketError::Damaged);
            }
            let text = std::str::from_utf8(take(relay_len)?).map_err(|_| TicketError::BadRelay)?;
            let url = url::Url::parse(text).map_err(|_| TicketError::BadRelay)?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !url.username().is_empty() {
                return Err(TicketError::BadRelay);
            }
            Some(url.to_string())
        };
        let count = take(1)?[0] as usize;
        if count > MAX_ADDRS {
            return Err(TicketError::Damaged);
        }
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match take(1)?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(take(4)?).map_err(|_| TicketError::Damaged)?)),
                6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(take(16)?).map_err(|_| TicketError::Damaged)?)),
                _ => return Err(TicketError::Damaged),
            };
            let port = u16::from_be_bytes(take(2)?.try_into().map_err(|_| TicketError::Damaged)?);
            addrs.push(SocketAddr::new(ip, port));
        }
        if !take(0)?.is_empty() || !rest.is_empty() {
            return Err(TicketError::Damaged);
        }
        Ok(Ticket { id, relay, addrs })
    }
}

/// A node id must be a point on the curve, spelt the one canonical way (so one node has one
/// id, not several), and not of small order (a "weak" key, for which signatures prove nothing).
fn check_key(id: &[u8; 32]) -> Result<(), TicketError> {
    let key = iroh_base::PublicKey::from_bytes(id).map_err(|_| TicketError::BadKey)?;
    let key = key.as_verifying_key();
    if key.is_weak() || key.to_edwards().compress().to_bytes() != *id {
        return Err(TicketError::BadKey);
    }
    Ok(())
}

/// True when `raw` names a node by id or ticket rather than by an http URL.
pub fn is_keyed(raw: &str) -> bool {
    let raw = raw.trim();
    raw.starts_with(PREFIX) || raw.starts_with("iroh://") || (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 32] {
        iroh_base::SecretKey::from_bytes(&[7; 32]).public().as_bytes().to_owned()
    }

    #[test]
    fn a_ticket_round_trips_and_every_spelling_names_one_id() {
        let ticket = Ticket {
            id: key(),
            relay: Some("http://127.0.0.1:3340/".into()),
            addrs: vec!["127.0.0.1:4000".parse().unwrap(), "[::1]:4001".parse().unwrap()],
        };
        let text = ticket.encode();
        assert!(
            text.starts_with(PREFIX) && text.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{text}"
        );
        assert_eq!(Ticket::parse(&text).unwrap(), ticket);
        let hex_id = ticket.id_hex();
        assert_eq!(Ticket::parse(&hex_id).unwrap(), Ticket::bare(key()));
        assert_eq!(
            Ticket::parse(&format!("iroh://{}", hex_id.to_uppercase())).unwrap().url(),
            ticket.url()
        );
    }

    #[test]
    fn damaged_tickets_and_non_keys_are_refused() {
        let text = Ticket::bare(key()).encode();
        assert_eq!(Ticket::parse(&text[..text.len() - 3]), Err(TicketError::Damaged));
        assert_eq!(Ticket::parse(&format!("{text}aa")), Err(TicketError::Damaged));
        assert_eq!(Ticket::parse("shoal1!!"), Err(TicketError::Damaged));
        assert_eq!(Ticket::parse("abc"), Err(TicketError::NotAnId));
        assert_eq!(Ticket::parse(&"z".repeat(64)), Err(TicketError::NotAnId));
        // Not every 32 bytes are a point on the curve.
        let bad = (0u8..=255)
            .map(|b| [b; 32])
            .find(|k| check_key(k).is_err())
            .expect("some byte pattern is no key");
        assert_eq!(Ticket::parse(&hex::encode(bad)), Err(TicketError::BadKey));
        // Small-order ("weak") points: the identity (y = 1) and the point y = 0.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for weak in [identity, [0u8; 32]] {
            assert_eq!(Ticket::parse(&hex::encode(weak)), Err(TicketError::BadKey));
        }
        // A point spelt with y + p instead of y (p = 2^255 - 19): the same node under a second id.
        let (y, canonical) = (2u8..19)
            .map(|y| {
                let mut k = [0u8; 32];
                k[0] = y;
                (y, k)
            })
            .find(|(_, k)| check_key(k).is_ok())
            .expect("some small y is a point");
        let mut other_spelling = [0xffu8; 32];
        other_spelling[0] = 0xed + y;
        other_spelling[31] = 0x7f;
        assert!(
            iroh_base::PublicKey::from_bytes(&other_spelling).is_ok(),
            "the curve library takes it"
        );
        assert_eq!(Ticket::parse(&hex::encode(other_spelling)), Err(TicketError::BadKey));
        assert!(Ticket::parse(&hex::encode(canonical)).is_ok());
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&key());
        bytes.extend_from_slice(&[3, b'f', b't', b'p', 0]);
        assert!(Ticket::parse(&format!("{PREFIX}{}", BASE32.encode(&bytes).to_ascii_lowercase())).is_err());
        assert!(Ticket::parse(&format!("{PREFIX}{}", "a".repeat(600))).is_err());
    }
}
