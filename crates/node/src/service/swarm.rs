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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_index::ContentId;
use tokio::sync::Semaphore;

use crate::net::{Client, Trust};
use crate::proto::calls::Member;
use crate::proto::have::{HAVE_HEADER, Have, have_body_cap};
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
}

impl Default for Swarms {
    fn default() -> Self {
        Swarms {
            table: Arc::default(),
            probes: Arc::new(Semaphore::new(MAX_PROBES)),
        }
    }
}

impl Swarms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentId, Vec<Entry>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Members of `id`'s swarm other than `except`, the most recently seen first, at most
    /// [`MAX_SWARM_ANSWER`].
    pub fn members(&self, id: &ContentId, except: Option<&str>) -> Vec<Member> {
        let mut table = self.lock();
        let Some(entries) = table.get_mut(id) else { return Vec::new() };
        entries.retain(|e| e.seen.elapsed() < MEMBER_TTL);
        let mut listed: Vec<&Entry> = entries.iter().filter(|e| Some(e.url.as_str()) != except).collect();
        listed.sort_by_key(|e| std::cmp::Reverse(e.seen));
        listed
            .into_iter()
            .take(MAX_SWARM_ANSWER)
            .map(|e| Member {
                url: e.url.clone(),
                pieces: e.pieces,
            })
            .collect()
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
        assert_eq!(listed[0].url, "http://127.0.0.1:73", "the most recent first");
        assert!(swarms.refresh(&id, "http://127.0.0.1:74", 9));
        assert!(!swarms.refresh(&id, "http://127.0.0.1:1", 9), "the oldest went");
        assert!(swarms.members(&ContentId([2; 32]), None).is_empty());
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
