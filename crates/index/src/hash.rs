//! Content ids and the verification data that lets a downloader check pieces from many sources.
//!
//! A [`ContentId`] is the BLAKE3 hash of a file, the same value `b3sum` prints. Hashing a file
//! also yields its bao outboard: the pre-order list of hash pairs of the BLAKE3 tree down to
//! chunk groups of [`BLOCK_BYTES`], without a size prefix. Outboards are stored in the index and
//! handed to peers, who turn them into [`PieceHashes`] with [`piece_hashes`], or with an
//! [`OutboardVerifier`] as the bytes arrive: the walk checks every pair it reads against the
//! content id, so one expected hash per piece comes out, each proven against the root. A lie
//! about the size is caught within a few pairs, so nothing is sized from a peer's claim. A
//! piece's hash is then checked with BLAKE3 alone ([`PieceHashes::verify`]).
//!
//! Files are streamed through a bounded buffer; nothing here reads a whole file into memory.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::CreateOutboard;
use bao_tree::{BaoTree, BlockSize};
use blake3::hazmat::{self, ChainingValue, HasherExt, Mode};

/// Log2 of the number of 1 KiB BLAKE3 chunks in one bao block (16 chunks, 16 KiB).
pub const BLOCK_SIZE_LOG: u8 = 4;
/// Bytes in one bao block, the smallest unit the outboard can prove.
pub const BLOCK_BYTES: u64 = 1024 << BLOCK_SIZE_LOG;

/// Size of the read buffer used when hashing files.
const READ_BUFFER: usize = 1 << 20;

/// The largest file size shoal will consider: 1 PiB.
///
/// Far beyond any real file a node shares, so refusing larger claims loses nothing, while every
/// number derived from a size (piece counts, outboard lengths, offsets) stays small enough to
/// compute and to hold in memory: at most 2^30 pieces of 1 MiB, and no `u64` overflow anywhere.
/// A peer that claims more is refused with [`VerifyError::TooLarge`] before anything is read.
pub const MAX_SIZE: u64 = 1 << 50;

/// Most nodes the verifier's stack holds: one pending right sibling per level of the largest
/// tree, plus the node being visited.
const MAX_DEPTH: usize = (MAX_SIZE / BLOCK_BYTES).ilog2() as usize + 2;

/// Bytes per hash pair in an outboard.
const PAIR_BYTES: usize = 64;

/// The bao block size of every outboard this crate makes.
pub fn block_size() -> BlockSize {
    BlockSize::from_chunk_log(BLOCK_SIZE_LOG)
}

/// Why hashing a file or parsing a content id failed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("open {path} for hashing: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("stat {path} for hashing: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read {path} while hashing: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("content id must be 64 hex characters, got {len} characters")]
    IdLength { len: usize },
    #[error("content id {input:?} is not hexadecimal")]
    IdHex { input: String },
}

/// Why an outboard could not be turned into piece hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("outboard for {size} bytes must be {expected} bytes long, got {actual}")]
    OutboardSize { size: u64, expected: u64, actual: u64 },
    #[error("outboard does not match the content id: hash pair at byte {offset} is wrong")]
    Outboard { offset: u64 },
    #[error("piece size {piece_size} must be a power of two of at least {BLOCK_BYTES} bytes")]
    PieceSize { piece_size: u64 },
    #[error("a file of {size} bytes is larger than the {MAX_SIZE} bytes shoal accepts")]
    TooLarge { size: u64 },
}

/// The BLAKE3 hash of a file's content, used to name it on the network.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<blake3::Hash> for ContentId {
    fn from(hash: blake3::Hash) -> Self {
        ContentId(*hash.as_bytes())
    }
}

impl From<ContentId> for blake3::Hash {
    fn from(id: ContentId) -> Self {
        blake3::Hash::from_bytes(id.0)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = HashError;

    /// Parses exactly 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(HashError::IdLength { len: s.chars().count() });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| HashError::IdHex { input: s.to_owned() })?;
        Ok(ContentId(bytes))
    }
}

/// A file's content id, its size and its pre-order bao outboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub id: ContentId,
    pub size: u64,
    /// Pre-order hash pairs at [`BLOCK_BYTES`] granularity, no size prefix.
    pub outboard: Vec<u8>,
}

/// Hashes a file, streaming it through a bounded buffer.
pub fn hash_file(path: &Path) -> Result<Hashed, HashError> {
    let file = File::open(path).map_err(|source| HashError::Open {
        path: path.to_owned(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| HashError::Stat {
            path: path.to_owned(),
            source,
        })?
        .len();
    hash_reader(file, size).map_err(|source| HashError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Hashes the first `size` bytes of `file`.
pub(crate) fn hash_reader(file: File, size: u64) -> io::Result<Hashed> {
    let reader = BufReader::with_capacity(READ_BUFFER, file);
    let outboard = PreOrderOutboard::<Vec<u8>>::create_sized(reader, size, block_size())?;
    Ok(Hashed {
        id: outboard.root.into(),
        size,
        outboard: outboard.data,
    })
}

/// Hashes bytes already in memory (tests and small data).
pub fn hash_bytes(data: &[u8]) -> Hashed {
    let size = data.len() as u64;
    match PreOrderOutboard::<Vec<u8>>::create_sized(data, size, block_size()) {
        Ok(outboard) => Hashed {
            id: outboard.root.into(),
            size,
            outboard: outboard.data,
        },
        // Reading from a slice of exactly `size` bytes cannot fail.
        Err(e) => unreachable!("hashing an in-memory slice failed: {e}"),
    }
}

/// The outboard length, in bytes, of a file of `size` bytes.
pub fn outboard_size(size: u64) -> u64 {
    BaoTree::new(size, block_size()).outboard_size()
}

/// The expected hash of every piece of a file, each proven against its content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceHashes {
    /// Bytes per piece, a power of two of at least [`BLOCK_BYTES`].
    pub piece_size: u64,
    /// Size of the whole file.
    pub size: u64,
    /// One hash per piece: the BLAKE3 chaining value of the piece's subtree, or the root hash
    /// when a single piece covers the file.
    pub hashes: Vec<blake3::Hash>,
    /// The file's last block and its expected hash: the few KiB that bind the size.
    pub tail: Tail,
}

/// The last block of a file (at most [`BLOCK_BYTES`]) with its expected hash, proven against the
/// content id along the right edge of the tree.
///
/// The tree's shape depends on the size, so a last block that checks binds the size exactly,
/// as the last chunk does in bao: a claimed size that is not the file's would need these bytes,
/// hashed at the claimed offset, to match a chaining value of the real tree (a BLAKE3 preimage).
/// Checking it costs a download one small range instead of its whole last piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Byte range of the block; empty for an empty file.
    pub range: Range<u64>,
    /// Its chaining value, or the root hash when the block is the whole file.
    pub hash: blake3::Hash,
    /// The block is the whole file.
    pub root: bool,
}

impl Tail {
    /// True when `data` is exactly the file's last block.
    pub fn verify(&self, data: &[u8]) -> bool {
        if data.len() as u64 != self.range.end - self.range.start {
            return false;
        }
        let mut hasher = blake3::Hasher::new();
        if self.root {
            hasher.update(data);
            return hasher.finalize() == self.hash;
        }
        hasher.set_input_offset(self.range.start);
        hasher.update(data);
        blake3::Hash::from_bytes(hasher.finalize_non_root()) == self.hash
    }
}

/// Checks `outboard` against `id` and extracts one expected hash per piece of `piece_size` bytes.
///
/// Hash pairs that lie inside a piece's own subtree are not needed to verify the piece and are
/// skipped unread; every pair above the pieces is checked. This is [`OutboardVerifier`] fed the
/// whole outboard at once, after its length has been checked.
pub fn piece_hashes(id: &ContentId, size: u64, outboard: &[u8], piece_size: u64) -> Result<PieceHashes, VerifyError> {
    let mut verifier = OutboardVerifier::new(*id, size, piece_size)?;
    let expected = verifier.expected_len();
    if outboard.len() as u64 != expected {
        return Err(VerifyError::OutboardSize {
            size,
            expected,
            actual: outboard.len() as u64,
        });
    }
    verifier.feed(outboard)?;
    verifier.finish()
}

/// Checks a whole `outboard` of `id` and returns its piece outboard: only the hash pairs a
/// downloader with pieces of `piece_size` needs, those above the pieces and those down the last
/// piece's right edge, in pre-order. This is what a holder answers to a request for one piece
/// size: a few KiB for a 64 MiB file instead of 256 KiB.
pub fn piece_outboard(id: &ContentId, size: u64, outboard: &[u8], piece_size: u64) -> Result<Vec<u8>, VerifyError> {
    let mut verifier = OutboardVerifier::new(*id, size, piece_size)?.keeping_pairs();
    if outboard.len() as u64 != verifier.expected_len() {
        return Err(VerifyError::OutboardSize {
            size,
            expected: verifier.expected_len(),
            actual: outboard.len() as u64,
        });
    }
    verifier.feed(outboard)?;
    verifier.finish_keeping().map(|(_, pairs)| pairs)
}

/// The length of the piece outboard ([`piece_outboard`]) of a file of `size` bytes: a pair per
/// piece but one, and a pair per level of the last piece's right edge above its last block.
pub fn piece_outboard_size(size: u64, piece_size: u64) -> u64 {
    let pieces = piece_count(size, piece_size);
    let mut last = size - (pieces - 1) * piece_size;
    let mut edge = 0;
    while last > BLOCK_BYTES {
        last -= hazmat::left_subtree_len(last);
        edge += 1;
    }
    (pieces - 1 + edge) * PAIR_BYTES as u64
}

fn piece_count(size: u64, piece_size: u64) -> u64 {
    size.div_ceil(piece_size).max(1)
}

/// Number of bao blocks over `len` bytes; an empty range is still one block.
fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK_BYTES).max(1)
}

/// Checks an outboard as it arrives, in slices of any length, and extracts the piece hashes.
///
/// The walk is the pre-order one of [`piece_hashes`], top-down from the content id, kept as an
/// explicit stack of the nodes still to visit (at most one per tree level, plus one) instead of
/// recursion. Each hash pair is checked as soon as its 64 bytes are in, so a wrong pair is refused
/// before anything after it is read.
///
/// This is what makes a peer's claimed size safe to act on: if the claim is larger than the real
/// file, the claimed tree is deeper than the real one, and somewhere down its leftmost path a pair
/// would have to hash to the chaining value of a real chunk: a BLAKE3 preimage. The real
/// outboard, or anything else, is refused within a few pairs past the depth of the real tree
/// (a few hundred bytes), whatever the claim. Memory is a partial pair, the stack, and the piece
/// hashes proven so far, never anything sized from the claim.
#[derive(Debug)]
pub struct OutboardVerifier {
    piece_size: u64,
    size: u64,
    /// [`outboard_size`] of the claimed size.
    expected_len: u64,
    /// Bytes taken so far, pairs skipped inside pieces included.
    received: u64,
    /// Bytes still to pass over unread: the pairs inside the last piece's subtree.
    skip: u64,
    /// The start of a pair split across slices.
    partial: [u8; PAIR_BYTES],
    partial_len: usize,
    /// Nodes still to visit, the next one last.
    stack: Vec<Node>,
    hashes: Vec<blake3::Hash>,
    /// The last block, once the walk down the last piece's right edge reaches it.
    tail: Option<Tail>,
    /// The outboard is a piece outboard: nothing inside a piece is sent, so nothing is skipped.
    compact: bool,
    /// The pairs read, kept when asked ([`Self::keeping_pairs`]): the piece outboard.
    kept: Option<Vec<u8>>,
    /// The first failure, repeated by every later call.
    failed: Option<VerifyError>,
}

/// A node of the claimed tree whose hash has been proven but whose pair is not yet read.
#[derive(Debug, Clone, Copy)]
struct Node {
    start: u64,
    len: u64,
    expected: ChainingValue,
    is_root: bool,
    /// On the right edge of the last piece: only the path to the last block is read.
    tail: bool,
}

impl OutboardVerifier {
    /// Starts checking the outboard of a file of `size` bytes named `id`, for pieces of
    /// `piece_size` bytes.
    ///
    /// Refuses a piece size that is not a power of two of at least [`BLOCK_BYTES`] and a size
    /// above [`MAX_SIZE`]. Allocates nothing that grows with `size`.
    pub fn new(id: ContentId, size: u64, piece_size: u64) -> Result<Self, VerifyError> {
        Self::start(id, size, piece_size, false)
    }

    /// Starts checking a piece outboard ([`piece_outboard`]) instead of a whole one.
    pub fn new_compact(id: ContentId, size: u64, piece_size: u64) -> Result<Self, VerifyError> {
        Self::start(id, size, piece_size, true)
    }

    /// Keeps the pairs read (the piece outboard), returned by [`Self::finish_keeping`].
    pub fn keeping_pairs(mut self) -> Self {
        self.kept = Some(Vec::new());
        self
    }

    fn start(id: ContentId, size: u64, piece_size: u64, compact: bool) -> Result<Self, VerifyError> {
        if !piece_size.is_power_of_two() || piece_size < BLOCK_BYTES {
            return Err(VerifyError::PieceSize { piece_size });
        }
        if size > MAX_SIZE {
            return Err(VerifyError::TooLarge { size });
        }
        let mut stack = Vec::with_capacity(MAX_DEPTH);
        stack.push(Node {
            start: 0,
            len: size,
            expected: id.0,
            is_root: true,
            tail: false,
        });
        let mut verifier = OutboardVerifier {
            piece_size,
            size,
            expected_len: if compact {
                piece_outboard_size(size, piece_size)
            } else {
                outboard_size(size)
            },
            received: 0,
            skip: 0,
            partial: [0; PAIR_BYTES],
            partial_len: 0,
            stack,
            hashes: Vec::new(),
            tail: None,
            compact,
            kept: None,
            failed: None,
        };
        // A file that is a single piece is proven by the id alone.
        verifier.walk(&[])?;
        Ok(verifier)
    }

    /// The outboard length, in bytes, that the claimed size calls for.
    pub fn expected_len(&self) -> u64 {
        self.expected_len
    }

    /// Takes the next bytes of the outboard and checks every hash pair they complete.
    ///
    /// Fails with [`VerifyError::Outboard`] at the first pair that does not match and with
    /// [`VerifyError::OutboardSize`] when the bytes run past [`Self::expected_len`]. After a
    /// failure every call fails the same way.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let actual = self.received.saturating_add(bytes.len() as u64);
        if actual > self.expected_len {
            return Err(self.fail(VerifyError::OutboardSize {
                size: self.size,
                expected: self.expected_len,
                actual,
            }));
        }
        self.walk(bytes)
    }

    /// Ends the outboard and returns the piece hashes, all proven against the id.
    ///
    /// Fails with [`VerifyError::OutboardSize`] when fewer bytes than [`Self::expected_len`] came.
    pub fn finish(self) -> Result<PieceHashes, VerifyError> {
        self.finish_keeping().map(|(hashes, _)| hashes)
    }

    /// [`Self::finish`], with the pairs read when they were kept (else empty).
    pub fn finish_keeping(self) -> Result<(PieceHashes, Vec<u8>), VerifyError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.received != self.expected_len {
            return Err(VerifyError::OutboardSize {
                size: self.size,
                expected: self.expected_len,
                actual: self.received,
            });
        }
        // The walk takes exactly `expected_len` bytes, so it is complete here.
        let Some(tail) = self.tail else {
            return Err(VerifyError::Outboard { offset: self.received });
        };
        if !self.stack.is_empty() || self.skip != 0 || self.partial_len != 0 {
            return Err(VerifyError::Outboard { offset: self.received });
        }
        debug_assert_eq!(self.hashes.len() as u64, piece_count(self.size, self.piece_size));
        let hashes = PieceHashes {
            piece_size: self.piece_size,
            size: self.size,
            hashes: self.hashes,
            tail,
        };
        Ok((hashes, self.kept.unwrap_or_default()))
    }

    /// Records `error` as the verifier's fate and returns it.
    fn fail(&mut self, error: VerifyError) -> VerifyError {
        self.failed = Some(error.clone());
        error
    }

    /// Visits nodes until the stack is empty or the next pair needs more bytes than `bytes` holds.
    fn walk(&mut self, mut bytes: &[u8]) -> Result<(), VerifyError> {
        loop {
            if self.skip > 0 {
                let take = self.skip.min(bytes.len() as u64);
                bytes = &bytes[take as usize..];
                self.skip -= take;
                self.received += take;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let Some(&node) = self.stack.last() else {
                if bytes.is_empty() {
                    return Ok(());
                }
                // Unreachable: the walk takes exactly `expected_len` bytes, checked by `feed`.
                return Err(self.fail(VerifyError::Outboard { offset: self.received }));
            };
            let last = node.start + node.len == self.size;
            if !node.tail && node.start.is_multiple_of(self.piece_size) && node.len <= self.piece_size {
                self.stack.pop();
                self.hashes.push(blake3::Hash::from_bytes(node.expected));
                if last {
                    // The last piece: its right edge is walked down to the last block.
                    self.stack.push(Node { tail: true, ..node });
                } else if !self.compact {
                    // A subtree over n blocks holds n - 1 pairs, all below this piece.
                    self.skip = (blocks(node.len) - 1) * PAIR_BYTES as u64;
                }
                continue;
            }
            if node.tail && node.len <= BLOCK_BYTES {
                self.stack.pop();
                self.tail = Some(Tail {
                    range: node.start..node.start + node.len,
                    hash: blake3::Hash::from_bytes(node.expected),
                    root: node.is_root,
                });
                continue;
            }
            // Unreachable for valid piece sizes: every node above a piece is longer than a block.
            if node.len <= BLOCK_BYTES {
                let offset = self.received - self.partial_len as u64;
                return Err(self.fail(VerifyError::Outboard { offset }));
            }
            let take = (PAIR_BYTES - self.partial_len).min(bytes.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&bytes[..take]);
            self.partial_len += take;
            self.received += take as u64;
            bytes = &bytes[take..];
            if self.partial_len < PAIR_BYTES {
                return Ok(());
            }
            self.partial_len = 0;
            let offset = self.received - PAIR_BYTES as u64;
            let mut left = [0u8; 32];
            let mut right = [0u8; 32];
            left.copy_from_slice(&self.partial[..32]);
            right.copy_from_slice(&self.partial[32..]);
            let merged = if node.is_root {
                *hazmat::merge_subtrees_root(&left, &right, Mode::Hash).as_bytes()
            } else {
                hazmat::merge_subtrees_non_root(&left, &right, Mode::Hash)
            };
            // Constant-time comparison through blake3::Hash's PartialEq.
            if blake3::Hash::from_bytes(merged) != blake3::Hash::from_bytes(node.expected) {
                return Err(self.fail(VerifyError::Outboard { offset }));
            }
            if let Some(kept) = &mut self.kept {
                kept.extend_from_slice(&self.partial);
            }
            self.stack.pop();
            let left_len = hazmat::left_subtree_len(node.len);
            // Right first, so the left child is visited next, as pre-order wants.
            self.stack.push(Node {
                start: node.start + left_len,
                len: node.len - left_len,
                expected: right,
                is_root: false,
                tail: node.tail,
            });
            if node.tail {
                // On the last piece's right edge the left subtree's pairs (next in pre-order)
                // are not needed: the piece's own hash checks those bytes.
                if !self.compact {
                    self.skip = (blocks(left_len) - 1) * PAIR_BYTES as u64;
                }
            } else {
                self.stack.push(Node {
                    start: node.start,
                    len: left_len,
                    expected: left,
                    is_root: false,
                    tail: false,
                });
            }
        }
    }
}

impl PieceHashes {
    /// Number of pieces; an empty file has one empty piece.
    pub fn count(&self) -> u64 {
        piece_count(self.size, self.piece_size)
    }

    /// Byte range of piece `index`; the last piece may be shorter.
    pub fn range(&self, index: u64) -> Range<u64> {
        let start = index.saturating_mul(self.piece_size).min(self.size);
        let end = start.saturating_add(self.piece_size).min(self.size);
        start..end
    }

    /// True when `data` is exactly piece `index` of the file.
    pub fn verify(&self, index: u64, data: &[u8]) -> bool {
        self.check(index).is_some_and(|mut check| {
            check.update(data);
            check.finish()
        })
    }

    /// A check of piece `index` fed as its bytes arrive, so that a piece received in parts need
    /// not be copied into one buffer first; `None` when there is no such piece.
    pub fn check(&self, index: u64) -> Option<PieceCheck> {
        let expected = *self.hashes.get(index as usize)?;
        if index >= self.count() {
            return None;
        }
        let range = self.range(index);
        let mut hasher = blake3::Hasher::new();
        let root = self.count() == 1;
        if !root {
            hasher.set_input_offset(range.start);
        }
        Some(PieceCheck {
            hasher,
            root,
            expected,
            left: range.end - range.start,
            overrun: false,
        })
    }
}

/// The check of one piece in progress ([`PieceHashes::check`]).
#[derive(Debug, Clone)]
pub struct PieceCheck {
    hasher: blake3::Hasher,
    /// The piece is the whole file: its hash is the root hash.
    root: bool,
    expected: blake3::Hash,
    /// Bytes still expected.
    left: u64,
    /// More bytes came than the piece holds.
    overrun: bool,
}

impl PieceCheck {
    /// Feeds the next bytes of the piece.
    pub fn update(&mut self, data: &[u8]) {
        match self.left.checked_sub(data.len() as u64) {
            Some(left) => self.left = left,
            None => {
                self.overrun = true;
                return;
            }
        }
        self.hasher.update(data);
    }

    /// True when exactly the piece's bytes were fed and they hash to its expected hash.
    pub fn finish(self) -> bool {
        if self.overrun || self.left != 0 {
            return false;
        }
        let actual = if self.root {
            self.hasher.finalize()
        } else {
            blake3::Hash::from_bytes(self.hasher.finalize_non_root())
        };
        actual == self.expected
    }
}

/// A content id travels in JSON as its hex string, as `b3sum` prints it.
impl serde::Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;

    /// Deterministic, non-repeating test data.
    fn data(size: u64) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size;
        (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// The piece hash computed directly from the data, independently of the outboard.
    fn direct_piece_hash(data: &[u8], range: Range<u64>, single: bool) -> blake3::Hash {
        let piece = &data[range.start as usize..range.end as usize];
        if single {
            blake3::hash(piece)
        } else {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(range.start);
            hasher.update(piece);
            blake3::Hash::from_bytes(hasher.finalize_non_root())
        }
    }

    const SIZES: &[u64] = &[0, 1, 1023, 1024, 16383, 16384, 16385, 3 * 16384 + 7, MIB, MIB + 1, 5 * MIB + 12345];
    const PIECE_SIZES: &[u64] = &[16 * KIB, 64 * KIB, MIB, 4 * MIB];

    #[test]
    fn piece_hashes_match_direct_computation() {
        for &size in SIZES {
            let content = data(size);
            let hashed = hash_bytes(&content);
            assert_eq!(hashed.id, ContentId::from(blake3::hash(&content)));
            assert_eq!(hashed.size, size);
            assert_eq!(hashed.outboard.len() as u64, outboard_size(size));
            for &piece_size in PIECE_SIZES {
                let pieces = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size)
                    .unwrap_or_else(|e| panic!("size {size} piece {piece_size}: {e}"));
                assert_eq!(pieces.count(), size.div_ceil(piece_size).max(1));
                assert_eq!(pieces.hashes.len() as u64, pieces.count());
                let single = pieces.count() == 1;
                let mut covered = 0;
                for index in 0..pieces.count() {
                    let range = pieces.range(index);
                    assert_eq!(range.start, covered, "pieces must tile the file");
                    covered = range.end;
                    let expected = direct_piece_hash(&content, range.clone(), single);
                    assert_eq!(
                        pieces.hashes[index as usize], expected,
                        "size {size} piece size {piece_size} index {index}"
                    );
                    let piece = &content[range.start as usize..range.end as usize];
                    assert!(pieces.verify(index, piece));
                }
                assert_eq!(covered, size);
                if single {
                    assert_eq!(pieces.hashes[0], blake3::Hash::from(hashed.id));
                }
            }
        }
    }

    #[test]
    fn a_flipped_byte_fails_exactly_its_piece() {
        let size = 5 * MIB + 12345;
        let content = data(size);
        let hashed = hash_bytes(&content);
        for &piece_size in PIECE_SIZES {
            let pieces = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
            for bad in [0, pieces.count() / 2, pieces.count() - 1] {
                let mut tampered = content.clone();
                let range = pieces.range(bad);
                let at = (range.start + (range.end - range.start) / 3) as usize;
                tampered[at] ^= 0x01;
                for index in 0..pieces.count() {
                    let r = pieces.range(index);
                    let piece = &tampered[r.start as usize..r.end as usize];
                    assert_eq!(pieces.verify(index, piece), index != bad);
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_and_indices_fail() {
        let content = data(3 * 16384 + 7);
        let hashed = hash_bytes(&content);
        let pieces = piece_hashes(&hashed.id, hashed.size, &hashed.outboard, 16 * KIB).unwrap();
        assert_eq!(pieces.count(), 4);
        assert_eq!(pieces.range(3), 49152..49159);
        assert!(!pieces.verify(3, &content[49152..49158]));
        assert!(!pieces.verify(0, &content[..16383]));
        assert!(!pieces.verify(4, &[]));
        assert!(pieces.verify(3, &content[49152..]));
    }

    #[test]
    fn a_piece_checked_in_parts_is_checked_as_a_whole() {
        let size = 3 * MIB + 777;
        let content = data(size);
        let hashed = hash_bytes(&content);
        for &piece_size in PIECE_SIZES {
            let pieces = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
            for index in [0, pieces.count() / 2, pieces.count() - 1] {
                let range = pieces.range(index);
                let piece = &content[range.start as usize..range.end as usize];
                for step in [1000, 16 * 1024, 65_537] {
                    let mut check = pieces.check(index).unwrap();
                    piece.chunks(step).for_each(|part| check.update(part));
                    assert!(check.finish(), "piece {index} of {piece_size} in parts of {step}");
                    let mut tampered = piece.to_vec();
                    tampered[piece.len() / 2] ^= 0x10;
                    let mut check = pieces.check(index).unwrap();
                    tampered.chunks(step).for_each(|part| check.update(part));
                    assert!(!check.finish(), "a flipped byte fails in parts too");
                }
                let mut short = pieces.check(index).unwrap();
                short.update(&piece[..piece.len() - 1]);
                assert!(!short.finish(), "a piece one byte short fails");
                let mut long = pieces.check(index).unwrap();
                long.update(piece);
                long.update(b"x");
                assert!(!long.finish(), "a piece one byte long fails");
            }
            assert!(pieces.check(pieces.count()).is_none());
        }
        let one = hash_bytes(b"one piece");
        let single = piece_hashes(&one.id, one.size, &one.outboard, MIB).unwrap();
        let mut check = single.check(0).unwrap();
        check.update(b"one ");
        check.update(b"piece");
        assert!(check.finish(), "a whole file of one piece is checked against the root hash");
    }

    #[test]
    fn empty_file_is_one_empty_piece() {
        let hashed = hash_bytes(&[]);
        assert!(hashed.outboard.is_empty());
        assert_eq!(hashed.id, ContentId::from(blake3::hash(&[])));
        let pieces = piece_hashes(&hashed.id, 0, &[], MIB).unwrap();
        assert_eq!(pieces.count(), 1);
        assert_eq!(pieces.range(0), 0..0);
        assert!(pieces.verify(0, &[]));
        assert!(!pieces.verify(0, b"x"));
    }

    #[test]
    fn tampered_outboards_are_refused() {
        let size = MIB + 1;
        let content = data(size);
        let hashed = hash_bytes(&content);
        // At block-sized pieces every pair is read, so every byte matters.
        for at in (0..hashed.outboard.len()).step_by(97).chain([hashed.outboard.len() - 1]) {
            let mut outboard = hashed.outboard.clone();
            outboard[at] ^= 0x80;
            let err = piece_hashes(&hashed.id, size, &outboard, BLOCK_BYTES).unwrap_err();
            assert!(matches!(err, VerifyError::Outboard { .. }), "{err}");
        }
        // The root pair is checked whenever the file spans more than one piece.
        let mut outboard = hashed.outboard.clone();
        outboard[0] ^= 1;
        let err = piece_hashes(&hashed.id, size, &outboard, MIB).unwrap_err();
        assert!(matches!(err, VerifyError::Outboard { offset: 0 }), "{err}");
        // A different id refuses a correct outboard.
        let other = ContentId::from(blake3::hash(b"other"));
        let err = piece_hashes(&other, size, &hashed.outboard, MIB).unwrap_err();
        assert!(matches!(err, VerifyError::Outboard { .. }), "{err}");
        // Wrong lengths and piece sizes.
        let err = piece_hashes(&hashed.id, size, &hashed.outboard[64..], MIB).unwrap_err();
        assert!(matches!(err, VerifyError::OutboardSize { .. }), "{err}");
        let err = piece_hashes(&hashed.id, size + BLOCK_BYTES, &hashed.outboard, MIB).unwrap_err();
        assert!(matches!(err, VerifyError::OutboardSize { .. }), "{err}");
        for piece_size in [0, 1, 8 * KIB, 3 * BLOCK_BYTES] {
            let err = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap_err();
            assert!(matches!(err, VerifyError::PieceSize { .. }), "{err}");
        }
    }

    #[test]
    fn hash_file_matches_hash_bytes_and_b3sum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = data(3 * MIB + 5);
        std::fs::write(&path, &content).unwrap();
        let from_file = hash_file(&path).unwrap();
        assert_eq!(from_file, hash_bytes(&content));
        assert_eq!(from_file.id.to_string(), blake3::hash(&content).to_hex().as_str());
        // `b3sum` of "abc".
        assert_eq!(
            hash_bytes(b"abc").id.to_string(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        let err = hash_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, HashError::Open { .. }));
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn content_id_parses_its_display() {
        let id = hash_bytes(b"abc").id;
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ContentId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<ContentId>().unwrap(), id);
        for bad in ["", "abc", &text[1..], &format!("{text}0"), &text.replace('6', "g")] {
            assert!(bad.parse::<ContentId>().is_err(), "{bad:?} parsed");
        }
        let err = "abc".parse::<ContentId>().unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
    }

    /// Feeds `outboard` to a new verifier in slices of `step` bytes.
    fn verify_in_slices(id: ContentId, size: u64, outboard: &[u8], piece_size: u64, step: usize) -> Result<PieceHashes, VerifyError> {
        let mut verifier = OutboardVerifier::new(id, size, piece_size)?;
        assert_eq!(verifier.expected_len(), outboard_size(size));
        for slice in outboard.chunks(step) {
            verifier.feed(slice)?;
        }
        verifier.finish()
    }

    #[test]
    fn verifier_accepts_any_slicing_and_agrees_with_piece_hashes() {
        for &size in &[0, 1, 16 * KIB + 1, MIB + 1, 5 * MIB + 123] {
            let content = data(size);
            let hashed = hash_bytes(&content);
            for &piece_size in &[16 * KIB, MIB] {
                let whole = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
                for step in [1, 63, 64, 65, 4096] {
                    let sliced = verify_in_slices(hashed.id, size, &hashed.outboard, piece_size, step)
                        .unwrap_or_else(|e| panic!("size {size} piece {piece_size} step {step}: {e}"));
                    assert_eq!(sliced, whole, "size {size} piece {piece_size} step {step}");
                }
            }
        }
    }

    #[test]
    fn verifier_round_trips_every_size() {
        for &size in &[0, 1, 16 * KIB, 16 * KIB + 1, MIB, MIB + 1, 5 * MIB + 123] {
            let content = data(size);
            let hashed = hash_bytes(&content);
            for &piece_size in &[16 * KIB, MIB] {
                let pieces = verify_in_slices(hashed.id, size, &hashed.outboard, piece_size, 1000)
                    .unwrap_or_else(|e| panic!("size {size} piece {piece_size}: {e}"));
                assert_eq!(pieces.size, size);
                assert_eq!(pieces.piece_size, piece_size);
                assert_eq!(pieces.hashes.len() as u64, pieces.count());
                let single = pieces.count() == 1;
                for index in 0..pieces.count() {
                    let range = pieces.range(index);
                    assert_eq!(pieces.hashes[index as usize], direct_piece_hash(&content, range.clone(), single));
                    assert!(pieces.verify(index, &content[range.start as usize..range.end as usize]));
                }
            }
        }
    }

    #[test]
    fn verifier_refuses_a_flipped_byte_at_its_pair() {
        let size = MIB + 1;
        let content = data(size);
        let hashed = hash_bytes(&content);
        let len = hashed.outboard.len();
        // At block-sized pieces every pair is read, so every byte matters.
        for at in (0..len).step_by(61).chain([31, 32, 63, 64, len - 1]) {
            let mut outboard = hashed.outboard.clone();
            outboard[at] ^= 0x01;
            for step in [1, 64, 4096] {
                let err = verify_in_slices(hashed.id, size, &outboard, BLOCK_BYTES, step).unwrap_err();
                assert_eq!(
                    err,
                    VerifyError::Outboard {
                        offset: (at / 64 * 64) as u64
                    },
                    "byte {at} step {step}"
                );
            }
        }
        // A failed verifier keeps failing.
        let mut outboard = hashed.outboard.clone();
        outboard[0] ^= 1;
        let mut verifier = OutboardVerifier::new(hashed.id, size, MIB).unwrap();
        assert_eq!(verifier.feed(&outboard[..100]), Err(VerifyError::Outboard { offset: 0 }));
        assert_eq!(verifier.feed(&outboard[100..]), Err(VerifyError::Outboard { offset: 0 }));
        assert_eq!(verifier.finish(), Err(VerifyError::Outboard { offset: 0 }));
    }

    #[test]
    fn a_huge_claimed_size_fails_within_a_few_pairs() {
        let size = MIB + 1;
        let hashed = hash_bytes(&data(size));
        let err = OutboardVerifier::new(hashed.id, 1 << 62, MIB).unwrap_err();
        assert_eq!(err, VerifyError::TooLarge { size: 1 << 62 });
        let err = piece_hashes(&hashed.id, 1 << 62, &hashed.outboard, MIB).unwrap_err();
        assert_eq!(err, VerifyError::TooLarge { size: 1 << 62 });
        assert!(OutboardVerifier::new(hashed.id, MAX_SIZE, MIB).is_ok());
        assert!(OutboardVerifier::new(hashed.id, MAX_SIZE + 1, MIB).is_err());
        for &piece_size in &[16 * KIB, MIB] {
            // The real outboard, then zeros forever.
            let mut stream = hashed.outboard.clone();
            stream.resize(MIB as usize, 0);
            let mut verifier = OutboardVerifier::new(hashed.id, 1 << 49, piece_size).unwrap();
            assert!(verifier.expected_len() > MIB);
            let mut fed = 0u64;
            let mut failure = None;
            for slice in stream.chunks(4096) {
                fed += slice.len() as u64;
                if let Err(e) = verifier.feed(slice) {
                    failure = Some(e);
                    break;
                }
            }
            let Some(VerifyError::Outboard { offset }) = failure else {
                panic!("piece size {piece_size}: the lie was not caught: {failure:?}");
            };
            assert!(verifier.stack.len() <= MAX_DEPTH);
            assert!(offset < 4096, "caught only at byte {offset}");
            assert_eq!(fed, 4096, "caught only after {fed} bytes");
            assert!(verifier.hashes.len() <= 1);
        }
    }

    #[test]
    fn a_smaller_claimed_size_yields_pieces_the_real_data_fails() {
        // Same tree shape: only the last piece's length differs.
        let size = 5 * MIB + 123;
        let content = data(size);
        let hashed = hash_bytes(&content);
        let claimed = 5 * MIB + 1;
        assert_eq!(outboard_size(claimed), outboard_size(size));
        for &piece_size in &[16 * KIB, MIB] {
            let pieces = verify_in_slices(hashed.id, claimed, &hashed.outboard, piece_size, 4096).unwrap();
            let last = pieces.count() - 1;
            assert!(!pieces.verify(last, &content[pieces.range(last).start as usize..]));
            let range = pieces.range(last);
            assert!(!pieces.verify(last, &content[range.start as usize..range.end as usize]));
            // The pieces before it are real and still verify.
            let first = pieces.range(0);
            assert!(pieces.verify(0, &content[first.start as usize..first.end as usize]));
        }
        // A single claimed piece is proven by the id alone, but the walk down to its last
        // block needs a pair the shifted tree cannot have, whatever the piece size.
        let size = MIB + 1;
        let content = data(size);
        let hashed = hash_bytes(&content);
        let short = &hashed.outboard[..outboard_size(MIB) as usize];
        for piece_size in [MIB, 16 * KIB] {
            let err = verify_in_slices(hashed.id, MIB, short, piece_size, 64).unwrap_err();
            assert!(matches!(err, VerifyError::Outboard { .. }), "{err}");
        }
    }

    #[test]
    fn a_piece_outboard_gives_the_same_hashes_as_the_whole_one() {
        for &size in SIZES {
            let content = data(size);
            let hashed = hash_bytes(&content);
            for &piece_size in PIECE_SIZES {
                let whole = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
                let compact = piece_outboard(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
                assert_eq!(
                    compact.len() as u64,
                    piece_outboard_size(size, piece_size),
                    "size {size} piece {piece_size}"
                );
                assert!(compact.len() <= hashed.outboard.len());
                for step in [1, 63, 64, 4096] {
                    let mut verifier = OutboardVerifier::new_compact(hashed.id, size, piece_size).unwrap().keeping_pairs();
                    for slice in compact.chunks(step) {
                        verifier.feed(slice).unwrap();
                    }
                    let (hashes, kept) = verifier.finish_keeping().unwrap();
                    assert_eq!(hashes, whole);
                    assert_eq!(kept, compact);
                }
                // Every pair is checked: a flipped byte anywhere is refused.
                for at in [0, compact.len() / 2, compact.len().saturating_sub(1)] {
                    if compact.is_empty() {
                        break;
                    }
                    let mut bad = compact.clone();
                    bad[at] ^= 1;
                    let mut verifier = OutboardVerifier::new_compact(hashed.id, size, piece_size).unwrap();
                    assert!(verifier.feed(&bad).is_err() || verifier.finish().is_err());
                }
                // The whole outboard is not a piece outboard (unless they are the same).
                if compact.len() != hashed.outboard.len() {
                    let mut verifier = OutboardVerifier::new_compact(hashed.id, size, piece_size).unwrap();
                    assert!(verifier.feed(&hashed.outboard).is_err());
                }
            }
        }
        // 64 MiB in 1 MiB pieces: 63 pairs above the pieces and 6 down to the last block.
        assert_eq!(piece_outboard_size(64 * MIB, MIB), 69 * 64);
        assert_eq!(outboard_size(64 * MIB), 4095 * 64);
    }

    #[test]
    fn the_last_block_binds_the_size() {
        for &size in SIZES {
            let content = data(size);
            let hashed = hash_bytes(&content);
            for &piece_size in PIECE_SIZES {
                let pieces = piece_hashes(&hashed.id, size, &hashed.outboard, piece_size).unwrap();
                let tail = &pieces.tail;
                assert_eq!(tail.range.end, size, "size {size}");
                assert!(tail.range.end - tail.range.start <= BLOCK_BYTES);
                assert!(tail.range.start.is_multiple_of(BLOCK_BYTES));
                assert_eq!(tail.root, size <= BLOCK_BYTES);
                let block = &content[tail.range.start as usize..];
                assert!(tail.verify(block), "size {size} piece {piece_size}");
                if let Some((last, rest)) = block.split_last() {
                    assert!(!tail.verify(rest));
                    let mut flipped = block.to_vec();
                    flipped[block.len() - 1] = last ^ 1;
                    assert!(!tail.verify(&flipped));
                }
                let mut longer = block.to_vec();
                longer.push(0);
                assert!(!tail.verify(&longer));
            }
        }
        // A claimed size with the same tree shape as the real one: the real last bytes do not
        // check as the claimed last block.
        let size = 5 * MIB + 123;
        let content = data(size);
        let hashed = hash_bytes(&content);
        let pieces = verify_in_slices(hashed.id, 5 * MIB + 1, &hashed.outboard, MIB, 4096).unwrap();
        let tail = &pieces.tail;
        assert!(!tail.verify(&content[tail.range.start as usize..tail.range.end as usize]));
        assert!(!tail.verify(&content[tail.range.start as usize..]));
    }

    #[test]
    fn verifier_refuses_wrong_outboard_lengths() {
        let size = MIB + 1;
        let hashed = hash_bytes(&data(size));
        let expected = hashed.outboard.len() as u64;
        for &piece_size in &[16 * KIB, MIB] {
            // One byte too many, in the same slice or after the end.
            let mut verifier = OutboardVerifier::new(hashed.id, size, piece_size).unwrap();
            let mut long = hashed.outboard.clone();
            long.push(0);
            let err = verifier.feed(&long).unwrap_err();
            assert_eq!(
                err,
                VerifyError::OutboardSize {
                    size,
                    expected,
                    actual: expected + 1
                }
            );
            let mut verifier = OutboardVerifier::new(hashed.id, size, piece_size).unwrap();
            verifier.feed(&hashed.outboard).unwrap();
            let err = verifier.feed(&[0]).unwrap_err();
            assert_eq!(
                err,
                VerifyError::OutboardSize {
                    size,
                    expected,
                    actual: expected + 1
                }
            );
            // Too few at the end, at a pair boundary or inside a pair.
            for short in [0, 64, expected - 64, expected - 1] {
                let mut verifier = OutboardVerifier::new(hashed.id, size, piece_size).unwrap();
                verifier.feed(&hashed.outboard[..short as usize]).unwrap();
                let err = verifier.finish().unwrap_err();
                assert_eq!(
                    err,
                    VerifyError::OutboardSize {
                        size,
                        expected,
                        actual: short
                    }
                );
            }
        }
        // An empty file has an empty outboard and nothing may follow.
        let empty = hash_bytes(&[]);
        let mut verifier = OutboardVerifier::new(empty.id, 0, MIB).unwrap();
        assert_eq!(verifier.expected_len(), 0);
        verifier.feed(&[]).unwrap();
        assert!(matches!(verifier.feed(&[0]), Err(VerifyError::OutboardSize { .. })));
        for piece_size in [0, 1, 8 * KIB, 3 * BLOCK_BYTES] {
            let err = OutboardVerifier::new(empty.id, 0, piece_size).unwrap_err();
            assert_eq!(err, VerifyError::PieceSize { piece_size });
        }
    }
}
