//! The swarm as a node sees it: who else fetches a content id it holds or downloads (a small
//! tracker, [`Swarms`]), what it holds of an id (`/have`), and its pieces of downloads in
//! progress, served to others ([`crate::engine::Partials`]).
//!
//! A downloader calls `shoal.swarm(id, url, pieces)` on the nodes it fetches from (see
//! [`crate::proto::calls::swarm`]); each answers with other members of that id's swarm. So 16
//! nodes that each know only the one holder find each other within one round of calls, and a
//! member that knows other members passes them on (peer exchange).
//!
//! What a stranger can do with it, and what stops it:
//! - name another server as its URL, to have this node's downloaders call it: a URL is listed
//!   only after this node asked it for `/have/<id>` and it answered as a node that holds or
//!   fetches that id (the address policy applies to that request, as to every peer's);
//! - grow the table: at most [`MAX_MEMBERS`] members per id (the least recently seen go) and
//!   [`MAX_SWARMS`] ids (only ids this node holds or fetches have a swarm at all), members
//!   unseen for [`MEMBER_TTL`] are dropped, and at most [`MAX_PROBES`] probes run at once (an
//!   announcement beyond that is simply not probed; the member asks again in a few seconds);
//! - call it often: `shoal.swarm` counts against the caller's search rate;
//! - lie about its pieces: the count is only a hint for the order in which downloaders try
//!   members; what a member holds is read from its own `/have`, and every byte it serves is
//!   checked against the content id.
//!
//! **Spreading.** While this node holds a whole file whose swarm has two members or more, it
//! counts how often each piece went out ([`Swarms::spread`]) and refuses a downloader that takes
//! hints a range whose first piece went out already while some piece has not gone out at all,
//! naming up to [`HINTS_PER_REFUSAL`] pieces that have not instead (each promised to one asker for
//! [`HINT_HOLD`]). So no piece goes out twice before every piece has gone out once, and the
//! holder's upload feeds the swarm new pieces, as BitTorrent's super-seeding does. At most
//! [`MAX_SPREAD_TABLES`] files are tracked (the least recently served go), each with a bit per
//! piece and at most 1,024 held hints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use shoal_index::ContentId;
use tokio::sync::Semaphore;

use super::slots::{REGULAR_SLOTS, Slots};
use crate::net::{Client, Trust};
use crate::proto::calls::Member;
use crate::proto::have::{Bits, HAVE_HEADER, Have, have_body_cap};
use crate::proto::limits::MAX_SWARM_ANSWER;

/// Most members kept per content id.
pub const MAX_MEMBERS: usize = 64;
/// Most content ids with a swarm table.
pub const MAX_SWARMS: usize = 256;
/// A member not heard from for this long is dropped.
pub const MEMBER_TTL: Duration = Duration::from_secs(60);
/// Most admission probes at once.
pub const MAX_PROBES: usize = 8;
/// How long an admission probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most files whose pieces sent are counted.
pub const MAX_SPREAD_TABLES: usize = 64;
/// Pieces named in one refusal.
pub const HINTS_PER_REFUSAL: usize = 4;
/// How long a hinted piece is kept for the asker it was named to.
pub const HINT_HOLD: Duration = Duration::from_secs(3);

/// Which pieces of one file went out at least once, and which were just named to someone.
struct Spread {
    out: Bits,
    /// Pieces that never went out (the rule applies while this is above 0).
    unsent: u64,
    /// Pieces named to an asker, and when (at most [`MAX_HELD_HINTS`], none older than
    /// [`HINT_HOLD`]).
    hinted: HashMap<u64, Instant>,
    used: Instant,
}

/// Most hints kept for their askers at once, per file.
const MAX_HELD_HINTS: usize = 1024;

impl Spread {
    /// Up to [`HINTS_PER_REFUSAL`] pieces that never went out and were not named to another
    /// asker lately, chosen at random (so that askers get different ones), each kept for this
    /// asker a while.
    fn hints(&mut self) -> Vec<u64> {
        let now = Instant::now();
        self.hinted.retain(|_, at| now.duration_since(*at) < HINT_HOLD);
        let count = self.out.count().max(1);
        let mut hints = Vec::new();
        // Pieces scattered at random (a few dozen tries), then, when unsent ones are rare, the
        // rest in order from a random place: bounded by the piece count either way.
        let from = rand::random::<u64>() % count;
        let tries = (0..64)
            .map(|_| rand::random::<u64>() % count)
            .chain((0..count).map(|step| (from + step) % count));
        for piece in tries {
            if hints.len() == HINTS_PER_REFUSAL || self.hinted.len() >= MAX_HELD_HINTS {
                break;
            }
            if !self.out.has(piece) && !self.hinted.contains_key(&piece) {
                self.hinted.insert(piece, now);
                hints.push(piece);
            }
        }
        hints
    }
}

/// A member of a swarm: its URL, the pieces it last said it held, when it last asked.
struct Entry {
    url: String,
    pieces: u64,
    seen: Instant,
}

/// The members of each swarm this node takes part in. Cheap to clone.
#[derive(Clone)]
pub struct Swarms {
    table: Arc<Mutex<HashMap<ContentId, Vec<Entry>>>>,
    probes: Arc<Semaphore>,
    spread: Arc<Mutex<HashMap<ContentId, Spread>>>,
    /// Upload slots per content id, with when each was last asked and the ranges being sent.
    slots: Arc<Mutex<HashMap<ContentId, SlotTable>>>,
    /// Bytes of each content id sent to each downloader, for the owner's view.
    uploads: Arc<Mutex<HashMap<ContentId, UploadTable>>>,
}

/// Bytes of one content id sent to each downloader, and when the table was last used.
type UploadTable = (HashMap<String, Arc<AtomicU64>>, Instant);

/// One content id's upload slots, when they were last asked, and the ranges being sent.
type SlotTable = (Slots, Instant, Arc<AtomicUsize>);

/// The swarm as `/metrics` shows it (see [`Swarms::stats`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SwarmStats {
    pub swarms: usize,
    pub members: usize,
    pub slots_busy: usize,
    pub slots_held: usize,
}

/// One range of a swarm's content being sent; counts as busy until dropped (with the answer's
/// body).
pub struct UploadSlot {
    active: Arc<AtomicUsize>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Swarms {
    fn default() -> Self {
        Swarms {
            table: Arc::default(),
            probes: Arc::new(Semaphore::new(MAX_PROBES)),
            spread: Arc::default(),
            slots: Arc::default(),
            uploads: Arc::default(),
        }
    }
}

impl Swarms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentId, Vec<Entry>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Members of `id`'s swarm other than `except`, at most [`MAX_SWARM_ANSWER`] of them chosen
    /// at random (so that in a swarm larger than that, every member is named to someone, and
    /// downloaders, which take a bounded number of sources, do not all take the same ones).
    pub fn members(&self, id: &ContentId, except: Option<&str>) -> Vec<Member> {
        let mut table = self.lock();
        let Some(entries) = table.get_mut(id) else { return Vec::new() };
        entries.retain(|e| e.seen.elapsed() < MEMBER_TTL);
        let mut listed: Vec<&Entry> = entries.iter().filter(|e| Some(e.url.as_str()) != except).collect();
        listed.shuffle(&mut rand::rng());
        listed
            .into_iter()
            .take(MAX_SWARM_ANSWER)
            .map(|e| Member {
                url: e.url.clone(),
                pieces: e.pieces,
            })
            .collect()
    }

    /// Members of `id` heard from lately.
    fn fresh_members(&self, id: &ContentId) -> usize {
        self.lock()
            .get(id)
            .map_or(0, |entries| entries.iter().filter(|e| e.seen.elapsed() < MEMBER_TTL).count())
    }

    /// Whether pieces `pieces` of a whole file of `count` pieces may go out now (see the
    /// module's comment): `Ok` counts them as sent; `Err` names the pieces to ask for instead
    /// (possibly none, when all of them were just named to others). Only a downloader that
    /// `takes_hints` is ever refused.
    pub fn spread(&self, id: &ContentId, count: u64, pieces: std::ops::Range<u64>, takes_hints: bool) -> Result<(), Vec<u64>> {
        let members = self.fresh_members(id);
        let mut tables = self.spread.lock().unwrap_or_else(|p| p.into_inner());
        if members < 2 && !tables.contains_key(id) {
            return Ok(());
        }
        if !tables.contains_key(id)
            && tables.len() >= MAX_SPREAD_TABLES
            && let Some(oldest) = tables.iter().min_by_key(|(_, t)| t.used).map(|(id, _)| *id)
        {
            tables.remove(&oldest);
        }
        let table = tables.entry(*id).or_insert_with(|| Spread {
            out: Bits::new(count),
            unsent: count,
            hinted: HashMap::new(),
            used: Instant::now(),
        });
        table.used = Instant::now();
        let end = pieces.end.min(table.out.count());
        let start = pieces.start;
        if start >= end {
            return Ok(());
        }
        // Only until every piece went out once: after that, every request is served (a
        // downloader that lacks only pieces sent often must not wait on others').
        if takes_hints && members >= 2 && table.unsent > 0 && table.out.has(start) {
            return Err(table.hints());
        }
        for i in start..end {
            if table.out.set(i) {
                table.unsent -= 1;
            }
            table.hinted.remove(&i);
        }
        Ok(())
    }

    /// Whether `who` is served pieces of `id` now (see [`Slots`]); `gave`: the bytes it gave this
    /// node's download of the id in all; `seeding`: this node holds the whole file.
    /// `None` when choked; otherwise the slot, held while the range is sent.
    pub fn admit_upload(&self, id: &ContentId, who: &str, gave: u64, seeding: bool) -> Option<UploadSlot> {
        let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(id)
            && all.len() >= MAX_SPREAD_TABLES
            && let Some(oldest) = all.iter().min_by_key(|(_, (_, used, _))| *used).map(|(id, _)| *id)
        {
            all.remove(&oldest);
        }
        let now = Instant::now();
        let (slots, used, active) = all
            .entry(*id)
            .or_insert_with(|| (Slots::new(REGULAR_SLOTS, rand::random()), now, Arc::default()));
        *used = now;
        slots.set_gave(who, gave);
        if !slots.admit(who, seeding, now, active.load(Ordering::Relaxed)) {
            return None;
        }
        active.fetch_add(1, Ordering::Relaxed);
        Some(UploadSlot { active: active.clone() })
    }

    /// Figures for `/metrics`: ids with members, members in all (heard from lately), ranges
    /// being sent under upload slots, downloaders holding a slot.
    pub fn stats(&self) -> SwarmStats {
        let (swarms, members) = {
            let table = self.lock();
            let fresh: Vec<usize> = table
                .values()
                .map(|entries| entries.iter().filter(|e| e.seen.elapsed() < MEMBER_TTL).count())
                .filter(|n| *n > 0)
                .collect();
            (fresh.len(), fresh.iter().sum())
        };
        let all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        SwarmStats {
            swarms,
            members,
            slots_busy: all.values().map(|(_, _, active)| active.load(Ordering::Relaxed)).sum(),
            slots_held: all.values().map(|(slots, _, _)| slots.served().len()).sum(),
        }
    }

    /// The counter of bytes of `id` sent to `who` (at most [`MAX_SPREAD_TABLES`] ids and
    /// [`crate::service::slots::MAX_TRACKED`] downloaders each; beyond that, `None`: not
    /// counted).
    pub fn upload_counter(&self, id: &ContentId, who: &str) -> Option<Arc<AtomicU64>> {
        let mut all = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(id)
            && all.len() >= MAX_SPREAD_TABLES
            && let Some(oldest) = all.iter().min_by_key(|(_, (_, used))| *used).map(|(id, _)| *id)
        {
            all.remove(&oldest);
        }
        let (table, used) = all.entry(*id).or_insert_with(|| (HashMap::new(), Instant::now()));
        *used = Instant::now();
        if !table.contains_key(who) && table.len() >= crate::service::slots::MAX_TRACKED {
            return None;
        }
        Some(table.entry(who.to_string()).or_default().clone())
    }

    /// Bytes of `id` sent to each downloader, most first.
    pub fn uploads(&self, id: &ContentId) -> Vec<(String, u64)> {
        let all = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(String, u64)> = all
            .get(id)
            .map(|(table, _)| table.iter().map(|(who, n)| (who.clone(), n.load(Ordering::Relaxed))).collect())
            .unwrap_or_default();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// Notes that a known member asked again; false when `url` is not a member (yet).
    pub fn refresh(&self, id: &ContentId, url: &str, pieces: u64) -> bool {
        let mut table = self.lock();
        let Some(entry) = table.get_mut(id).and_then(|entries| entries.iter_mut().find(|e| e.url == url)) else {
            return false;
        };
        entry.pieces = pieces;
        entry.seen = Instant::now();
        true
    }

    /// Adds a member that proved itself.
    pub fn admit(&self, id: ContentId, url: String, pieces: u64) {
        let mut table = self.lock();
        if !table.contains_key(&id) && table.len() >= MAX_SWARMS {
            // Ids whose members are all gone make room first.
            table.retain(|_, entries| entries.iter().any(|e| e.seen.elapsed() < MEMBER_TTL));
            if table.len() >= MAX_SWARMS {
                return;
            }
        }
        let entries = table.entry(id).or_default();
        entries.retain(|e| e.url != url && e.seen.elapsed() < MEMBER_TTL);
        if entries.len() >= MAX_MEMBERS
            && let Some(oldest) = entries.iter().enumerate().min_by_key(|(_, e)| e.seen).map(|(i, _)| i)
        {
            entries.swap_remove(oldest);
        }
        entries.push(Entry {
            url,
            pieces,
            seen: Instant::now(),
        });
    }

    /// Asks `url` for `/have/<id>` in the background and admits it if it answers as a node that
    /// holds or fetches the id (a file of `size` bytes). Skipped when [`MAX_PROBES`] run.
    pub fn probe(&self, client: &Client, id: ContentId, url: String, pieces: u64, size: u64) {
        let Ok(permit) = self.probes.clone().try_acquire_owned() else {
            return;
        };
        let (swarms, client) = (self.clone(), client.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if answers_have(&client, &id, &url, size).await {
                tracing::debug!(%url, %id, "a swarm member joined");
                swarms.admit(id, url, pieces);
            }
        });
    }
}

/// Whether the node at `url` answers `/have/<id>` as a holder or downloader of the id.
async fn answers_have(client: &Client, id: &ContentId, url: &str, size: u64) -> bool {
    let Ok(have) = crate::net::node_url(url, &format!("/have/{id}")) else {
        return false;
    };
    let Ok(request) = client.request(reqwest::Method::GET, &have, Trust::Peer) else {
        return false;
    };
    let Ok(Ok(response)) = tokio::time::timeout(PROBE_TIMEOUT, request.timeout(PROBE_TIMEOUT).send()).await else {
        return false;
    };
    if response.status() != reqwest::StatusCode::OK {
        return false;
    }
    let header = response
        .headers()
        .get(HAVE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let count = size.div_ceil(crate::engine::PIECE_SIZE).max(1);
    let Ok(body) = crate::net::client::read_body(response, url, have_body_cap(count)).await else {
        return false;
    };
    Have::from_wire(header.as_deref(), &body, count).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_bounded_and_the_asker_is_left_out() {
        let swarms = Swarms::default();
        let id = ContentId([1; 32]);
        for port in 0..(MAX_MEMBERS + 10) {
            swarms.admit(id, format!("http://127.0.0.1:{}", port + 1), port as u64);
        }
        assert_eq!(swarms.lock()[&id].len(), MAX_MEMBERS);
        let listed = swarms.members(&id, Some("http://127.0.0.1:74"));
        assert_eq!(listed.len(), MAX_SWARM_ANSWER);
        assert!(listed.iter().all(|m| m.url != "http://127.0.0.1:74"));
        // Over a few answers, more members are named than fit in one.
        let mut named = std::collections::BTreeSet::new();
        for _ in 0..8 {
            named.extend(swarms.members(&id, None).into_iter().map(|m| m.url));
        }
        assert!(named.len() > MAX_SWARM_ANSWER, "{}", named.len());
        assert!(swarms.refresh(&id, "http://127.0.0.1:74", 9));
        assert!(!swarms.refresh(&id, "http://127.0.0.1:1", 9), "the oldest went");
        assert!(swarms.members(&ContentId([2; 32]), None).is_empty());
    }

    #[test]
    fn no_piece_goes_out_twice_before_every_piece_went_out_once() {
        let swarms = Swarms::default();
        let id = ContentId([3; 32]);
        assert_eq!(swarms.spread(&id, 4, 0..1, true), Ok(()), "no swarm: never refused");
        swarms.admit(id, "http://127.0.0.1:1".into(), 0);
        swarms.admit(id, "http://127.0.0.1:2".into(), 0);
        assert_eq!(swarms.spread(&id, 4, 0..1, true), Ok(()));
        let hints = swarms.spread(&id, 4, 0..1, true).unwrap_err();
        assert!(!hints.is_empty() && hints.iter().all(|h| (1..4).contains(h)), "{hints:?}");
        assert_eq!(swarms.spread(&id, 4, 0..1, false), Ok(()), "a client that takes no hints is served");
        for piece in 1..4 {
            assert_eq!(swarms.spread(&id, 4, piece..piece + 1, true), Ok(()));
        }
        // Every piece went out once: from now on every request is served.
        assert_eq!(swarms.spread(&id, 4, 1..2, true), Ok(()));
        assert_eq!(swarms.spread(&id, 4, 1..2, true), Ok(()));
        // A hinted piece is kept for its asker a while: a second refusal names the others.
        let other = ContentId([4; 32]);
        swarms.admit(other, "http://127.0.0.1:1".into(), 0);
        swarms.admit(other, "http://127.0.0.1:2".into(), 0);
        assert_eq!(swarms.spread(&other, 8, 0..1, true), Ok(()));
        let first = swarms.spread(&other, 8, 0..1, true).unwrap_err();
        let second = swarms.spread(&other, 8, 0..1, true).unwrap_err();
        assert_eq!((first.len(), second.len()), (HINTS_PER_REFUSAL, 3), "{first:?} {second:?}");
        assert!(first.iter().all(|p| !second.contains(p)), "{first:?} {second:?}");
    }

    #[test]
    fn the_number_of_swarms_is_bounded() {
        let swarms = Swarms::default();
        for i in 0..(MAX_SWARMS + 5) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            swarms.admit(ContentId(id), "http://127.0.0.1:1".into(), 0);
        }
        assert_eq!(swarms.lock().len(), MAX_SWARMS);
    }
}
