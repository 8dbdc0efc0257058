//! Availability on the wire: which pieces of a content id a node holds, and the answer to a range
//! it lacks.
//!
//! A node serves a download in progress under its content id (`/content/<id>`) from the moment a
//! piece is verified, so downloaders of the same file trade pieces with each other. A downloader
//! learns what each source holds from `GET /have/<id>`:
//!
//! - a node holding the whole file answers `200` with `Shoal-Have: complete` and no body;
//! - a node downloading it answers `200` with `Shoal-Have: <version>` and the bitfield as the body:
//!   one bit per 1 MiB piece, piece 0 in the high bit of byte 0 (BitTorrent's order), exactly
//!   `ceil(pieces / 8)` bytes, the spare bits of the last byte zero;
//! - `GET /have/<id>?since=<version>` is a long poll: the answer comes when the node holds more
//!   than at `version`, or after at most [`MAX_HAVE_WAIT`] with what it holds then (the same
//!   version: nothing new). A downloader keeps one such request open per partial source, over a
//!   connection it has open already, so a new piece reaches it within a round trip;
//! - `404` when the node neither holds nor downloads the id.
//!
//! A range of `/content/<id>` that touches a piece the node does not hold is answered `416` with
//! `Content-Range: bytes */<size>` and `Shoal-Lacks: 1`: cheap, and told apart from a range past
//! the end. A node lists only pieces that passed their check; a source whose bitfield claimed a
//! piece it then lacks is treated as a source that lies.
//!
//! Nothing here is believed: a bitfield of the wrong length, or with spare bits set, is refused,
//! and a piece it claims is only a hint of where to ask (the bytes are checked against the id).

/// The header on an answer to `GET /outboard/<id>?piece_size=<bytes>` that says the body is the
/// piece outboard for that piece size (only the hash pairs above the pieces and down the last
/// piece's right edge, `shoal_index::piece_outboard`), not the whole outboard. A node that does
/// not send it sent the whole outboard.
pub const PIECE_SIZE_HEADER: &str = "shoal-piece-size";
/// The largest piece size a piece outboard is asked for (the engine's pieces are 1 MiB).
pub const MAX_PIECE_SIZE: u64 = 1 << 30;

/// The header that says what a node holds (`complete`, or the version of its bitfield).
pub const HAVE_HEADER: &str = "shoal-have";
/// The header on a `416` that means "I lack a piece of that range" (not "past the end").
pub const LACKS_HEADER: &str = "shoal-lacks";
/// The header on answers from a download in progress (the pieces it holds), for users and logs.
pub const PARTIAL_HEADER: &str = "shoal-partial";
/// The request header by which a downloader says it takes hints (`1`): a node holding the whole
/// file and seeding a swarm of two or more members may then refuse a range whose first piece it
/// has sent more often than its least-sent piece, with `409 Conflict` and [`SPREAD_HEADER`], so
/// that no piece goes out twice before every piece has gone out once (BitTorrent's super-seeding,
/// in a pull protocol). Requests without it (curl, aria2c, a size check) are never refused so.
pub const HINTS_HEADER: &str = "shoal-hints";
/// The request header in which a downloader that serves what it fetches names its node URL,
/// so that the upload slots of the node it asks know who gives back (see `service::slots`).
/// A claim like any other: the worst a false one does is share another's slot.
pub const FROM_HEADER: &str = "shoal-from";
/// The answer header of a `503` that means "no upload slot for you now; ask others and come
/// back" (not a failure of the node).
pub const CHOKED_HEADER: &str = "shoal-choked";
/// The answer header of such a refusal: up to [`MAX_HINTS`] pieces, comma-separated, that the
/// node has sent least, for the downloader to ask for instead.
pub const SPREAD_HEADER: &str = "shoal-spread";
/// Most pieces named in one [`SPREAD_HEADER`].
pub const MAX_HINTS: usize = 8;

/// Reads a [`SPREAD_HEADER`]: at most [`MAX_HINTS`] piece indices below `count`; anything else
/// is dropped.
pub fn read_hints(value: &str, count: u64) -> Vec<u64> {
    value
        .split(',')
        .take(MAX_HINTS)
        .filter_map(|p| p.trim().parse::<u64>().ok())
        .filter(|p| *p < count)
        .collect()
}

/// Writes a [`SPREAD_HEADER`].
pub fn write_hints(hints: &[u64]) -> String {
    hints.iter().take(MAX_HINTS).map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The longest a long poll is held by the node.
pub const MAX_HAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A set of pieces, one bit each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bits {
    bytes: Vec<u8>,
    count: u64,
}

/// Why a bitfield was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitsError {
    #[error("a bitfield of {got} bytes for {count} pieces (expected {expected})")]
    Length { got: usize, count: u64, expected: usize },
    #[error("a bitfield with bits set past its last piece")]
    Spare,
}

impl Bits {
    /// `count` pieces, none held.
    pub fn new(count: u64) -> Bits {
        Bits {
            bytes: vec![0; count.div_ceil(8) as usize],
            count,
        }
    }

    /// `count` pieces, those in `done` held.
    pub fn from_flags(done: &[bool]) -> Bits {
        let mut bits = Bits::new(done.len() as u64);
        for (i, d) in done.iter().enumerate() {
            if *d {
                bits.set(i as u64);
            }
        }
        bits
    }

    /// Reads a bitfield for `count` pieces: exactly `ceil(count / 8)` bytes, spare bits zero.
    pub fn from_wire(bytes: &[u8], count: u64) -> Result<Bits, BitsError> {
        let expected = count.div_ceil(8) as usize;
        if bytes.len() != expected {
            return Err(BitsError::Length {
                got: bytes.len(),
                count,
                expected,
            });
        }
        let spare = (expected as u64 * 8 - count) as u32;
        if spare > 0 && bytes[expected - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(BitsError::Spare);
        }
        Ok(Bits {
            bytes: bytes.to_vec(),
            count,
        })
    }

    /// The bitfield as it is sent.
    pub fn to_wire(&self) -> &[u8] {
        &self.bytes
    }

    /// Pieces the set is about.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn has(&self, index: u64) -> bool {
        index < self.count && self.bytes[(index / 8) as usize] & (0x80 >> (index % 8)) != 0
    }

    /// Marks piece `index` held; false when it was already (or is out of range).
    pub fn set(&mut self, index: u64) -> bool {
        if index >= self.count || self.has(index) {
            return false;
        }
        self.bytes[(index / 8) as usize] |= 0x80 >> (index % 8);
        true
    }

    /// Pieces held.
    pub fn held(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Whether every piece in `pieces` is held.
    pub fn has_all(&self, pieces: std::ops::Range<u64>) -> bool {
        pieces.end <= self.count && pieces.into_iter().all(|i| self.has(i))
    }
}

/// What a node says it holds, as read from its `/have` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Have {
    /// The whole file.
    Complete,
    /// Some pieces, at a version that only grows.
    Partial { version: u64, bits: Bits },
}

impl Have {
    /// The `Shoal-Have` header's value.
    pub fn header(&self) -> String {
        match self {
            Have::Complete => "complete".into(),
            Have::Partial { version, .. } => version.to_string(),
        }
    }

    /// Reads an answer: its `Shoal-Have` header and body, for a file of `count` pieces.
    pub fn from_wire(header: Option<&str>, body: &[u8], count: u64) -> Result<Have, HaveError> {
        match header.map(str::trim) {
            Some("complete") => Ok(Have::Complete),
            Some(version) => {
                let version = version.parse::<u64>().map_err(|_| HaveError::Header)?;
                let bits = Bits::from_wire(body, count)?;
                Ok(Have::Partial { version, bits })
            }
            None => Err(HaveError::Header),
        }
    }
}

/// Why a `/have` answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaveError {
    #[error("no usable Shoal-Have header")]
    Header,
    #[error(transparent)]
    Bits(#[from] BitsError),
}

/// The largest `/have` body read for a file of `count` pieces.
pub fn have_body_cap(count: u64) -> usize {
    count.div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_in_bittorrent_order() {
        let mut bits = Bits::new(10);
        assert!(bits.set(0) && bits.set(9) && !bits.set(9) && !bits.set(10));
        assert_eq!(bits.to_wire(), &[0x80, 0x40]);
        assert_eq!(Bits::from_wire(bits.to_wire(), 10).unwrap(), bits);
        assert_eq!(bits.held(), 2);
        assert!(bits.has_all(0..1) && !bits.has_all(0..2) && !bits.has_all(9..11));
    }

    #[test]
    fn a_bitfield_of_the_wrong_shape_is_refused() {
        assert!(matches!(Bits::from_wire(&[0xff], 10), Err(BitsError::Length { .. })));
        assert!(matches!(Bits::from_wire(&[0, 0, 0], 10), Err(BitsError::Length { .. })));
        assert_eq!(Bits::from_wire(&[0xff, 0xc0], 10).unwrap().held(), 10);
        assert_eq!(Bits::from_wire(&[0xff, 0xe0], 10), Err(BitsError::Spare));
        assert_eq!(Bits::from_wire(&[], 0).unwrap().count(), 0);
    }

    #[test]
    fn hints_are_bounded() {
        assert_eq!(read_hints(&write_hints(&[3, 1, 7]), 8), vec![3, 1, 7]);
        assert_eq!(read_hints("1,x,9,2", 8), vec![1, 2]);
        let many: Vec<u64> = (0..20).collect();
        assert_eq!(
            read_hints(&many.iter().map(u64::to_string).collect::<Vec<_>>().join(","), 100).len(),
            MAX_HINTS
        );
    }

    #[test]
    fn answers_are_read_by_their_header() {
        assert_eq!(Have::from_wire(Some("complete"), b"junk", 3), Ok(Have::Complete));
        let partial = Have::from_wire(Some("7"), &[0xa0], 3).unwrap();
        assert_eq!(partial.header(), "7");
        assert!(matches!(partial, Have::Partial { version: 7, ref bits } if bits.has(0) && !bits.has(1) && bits.has(2)));
        assert_eq!(Have::from_wire(None, &[0], 3), Err(HaveError::Header));
        assert_eq!(Have::from_wire(Some("-1"), &[0], 3), Err(HaveError::Header));
        assert!(Have::from_wire(Some("1"), &[0, 0], 3).is_err());
    }
}
