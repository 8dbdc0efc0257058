//! The shared directory of a shoal node: safe names, BLAKE3 content ids, bao verification data,
//! and the redb index that ties them together.
//!
//! Invariants for the whole crate: it does no networking, everything is synchronous (the node
//! calls it through `spawn_blocking`), and memory stays bounded whatever the file sizes (files are
//! streamed, only outboards are held).
//!
//! Map of the modules:
//!
//! - [`name`]: checks names that callers send and resolves them under the share root without
//!   leaving it. Nothing hidden (leading `.`) is ever addressable.
//! - [`hash`]: content ids (BLAKE3, as `b3sum` prints them), pre-order bao outboards at 16 KiB
//!   granularity, and per-piece hashes proven against the id for multi-source downloads.
//!   Pure computation apart from reading the file being hashed.
//! - [`store`]: the `index_*` tables in the node's redb database: name → entry, id → names,
//!   id → outboard, always updated together in one transaction.
//! - [`beneath`]: opens and creates files beneath the share root through descriptors, never
//!   following a symlink, so a directory swapped for a symlink mid-lookup cannot lead outside.
//!   Linux only.
//! - [`share`]: the shared directory itself: parallel incremental scans, refreshes of a few
//!   paths, and lookups.
//! - [`watch`]: watches the shared directory (inotify) and batches what changed for
//!   [`Share::refresh`], so a new file is searchable within about a second. It runs its own
//!   thread, the one exception to "synchronous", and needs no async runtime either.

#[cfg(target_os = "linux")]
pub mod beneath;
pub mod hash;
pub mod name;
pub mod share;
pub mod store;
pub mod watch;

#[cfg(target_os = "linux")]
pub use beneath::{Dir, Root};
pub use hash::{
    BLOCK_BYTES, BLOCK_SIZE_LOG, ContentId, HashError, Hashed, MAX_SIZE, OutboardVerifier, PieceCheck, PieceHashes, Tail, VerifyError,
    hash_bytes, hash_file, piece_hashes, piece_outboard, piece_outboard_size,
};
pub use name::{NameError, SafeName, check_name, is_invisible};
pub use share::{ScanReport, Share, ShareError};
pub use store::{FileEntry, IndexStore, StoreError};
pub use watch::{Batch, WatchConfig, WatchError, Watcher};
