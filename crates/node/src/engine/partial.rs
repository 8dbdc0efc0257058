//! Downloads in progress, served to other downloaders of the same content (the swarm's supply
//! side).
//!
//! A node's engine registers each download with a content id and verification data in
//! [`Partials`] once its size is bound, and marks each piece there the moment it is verified and
//! written. The HTTP layer serves `/content/<id>` ranges whose pieces are all marked, the
//! verification data (`/outboard/<id>`, kept from the download's first phase) and the bitfield
//! (`/have/<id>`, with a long poll on [`Partial::newer_than`]); see [`crate::proto::have`] for the
//! wire format. A download leaves the registry when it ends, whatever the outcome; a finished
//! file is served from the share's index from then on.
//!
//! Only verified pieces are ever marked, so a partial holder serves nothing it could not have
//! served from a complete file. The registry holds at most one entry per content id (the first
//! download of an id serves it; a second one of the same id at another path does not).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_index::ContentId;
use tokio::sync::watch;

use super::PIECE_SIZE;
use super::disk::PartFile;
use crate::proto::have::Bits;

/// What a download in progress holds: the pieces verified and written, at a version that grows
/// by one with each.
#[derive(Debug, Clone)]
pub struct Holding {
    pub version: u64,
    pub bits: Bits,
}

/// One download in progress, as others may fetch from it.
pub struct Partial {
    pub id: ContentId,
    pub size: u64,
    outboard: Arc<[u8]>,
    disk: PartFile,
    have: watch::Sender<Holding>,
    /// When the download was placed under its final name: it is served from the open file a
    /// little longer ([`LINGER`]), until the share's index serves it.
    placed: Mutex<Option<std::time::Instant>>,
}

/// How long a finished download stays served from its open file.
pub const LINGER: Duration = Duration::from_secs(30);

impl Partial {
    /// What it holds now.
    pub fn holding(&self) -> Holding {
        self.have.borrow().clone()
    }

    /// What it holds once that differs from `version`, or after `wait` whatever it holds then.
    pub async fn newer_than(&self, version: u64, wait: Duration) -> Holding {
        let mut seen = self.have.subscribe();
        let _ = tokio::time::timeout(wait, seen.wait_for(|h| h.version != version)).await;
        seen.borrow().clone()
    }

    /// Whether every piece that `bytes` touches is held.
    pub fn holds(&self, bytes: Range<u64>) -> bool {
        if bytes.is_empty() || bytes.end > self.size {
            return false;
        }
        let pieces = bytes.start / PIECE_SIZE..(bytes.end - 1) / PIECE_SIZE + 1;
        self.have.borrow().bits.has_all(pieces)
    }

    /// Reads `buf.len()` bytes at `offset` (blocking). Call only for held ranges.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.disk.read_at(buf, offset)
    }

    /// The verification data as the download checked it: the piece outboard for
    /// [`Self::piece_size`] (`shoal_index::piece_outboard`).
    pub fn outboard(&self) -> &[u8] {
        &self.outboard
    }

    /// The piece size its verification data is for.
    pub fn piece_size(&self) -> u64 {
        PIECE_SIZE
    }

    /// Marks piece `index` held (it was verified and written).
    pub(super) fn mark(&self, index: u64) {
        self.have.send_if_modified(|h| {
            let new = h.bits.set(index);
            if new {
                h.version += 1;
            }
            new
        });
    }
}

/// The downloads in progress that a node serves, by content id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Partials {
    map: Arc<Mutex<HashMap<ContentId, Arc<Partial>>>>,
}

impl Partials {
    pub fn get(&self, id: &ContentId) -> Option<Arc<Partial>> {
        self.lock().get(id).cloned()
    }

    /// The ids of the downloads being served now.
    pub fn ids(&self) -> Vec<ContentId> {
        self.lock().keys().copied().collect()
    }

    /// Downloads being served now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The registry, without the downloads placed more than [`LINGER`] ago.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentId, Arc<Partial>>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| {
            p.placed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| t.elapsed() < LINGER)
        });
        map
    }

    /// Serves a download: `done` are the pieces held already. `None` when another download
    /// serves the id.
    pub(super) fn register(&self, id: ContentId, size: u64, outboard: Arc<[u8]>, disk: PartFile, done: &[bool]) -> Option<Serving> {
        let mut map = self.lock();
        if map.contains_key(&id) {
            return None;
        }
        let (have, _) = watch::channel(Holding {
            version: 1,
            bits: Bits::from_flags(done),
        });
        let partial = Arc::new(Partial {
            id,
            size,
            outboard,
            disk,
            have,
            placed: Mutex::new(None),
        });
        map.insert(id, partial.clone());
        Some(Serving {
            partials: self.clone(),
            partial,
        })
    }
}

/// A download being served; dropping it stops serving, unless it was [`Serving::placed`].
pub(super) struct Serving {
    partials: Partials,
    pub partial: Arc<Partial>,
}

impl Serving {
    /// The download is complete and placed: it stays served from its open file for
    /// [`LINGER`], so that downloaders asking between now and the share's next index of the
    /// file are not turned away.
    pub fn placed(self) {
        *self.partial.placed.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // A placed download leaves the registry on a later look-up, after [`LINGER`].
        if self.partial.placed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return;
        }
        let mut map = self.partials.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.partial.id).is_some_and(|p| Arc::ptr_eq(p, &self.partial)) {
            map.remove(&self.partial.id);
        }
    }
}
