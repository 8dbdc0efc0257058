//! Nodes introduced by `hello` that did not answer yet: the seed's client says hello to every
//! URL of its url file when it starts, whether or not those nodes run yet, and the seed's
//! `hello` learns them all (`know.add(other); return 0`). A shoal node learns a stranger only
//! after it answered as a node, so a URL that does not answer is kept here as a candidate and
//! probed again later, with a backoff, until it answers (and joins the table) or has been
//! tried for [`GIVE_UP_AFTER`].
//!
//! The set is bounded in every way a stranger could push on it: at most [`MAX_CANDIDATES`] in
//! all, [`MAX_PER_HOST`] per host and [`MAX_PER_SUBNET`] per /24 (IPv4) or /48 (IPv6) outside
//! loopback, each probed at most once per backoff step (from [`FIRST_RETRY`] doubling up to
//! [`LONGEST_RETRY`]), at most [`PROBES_PER_ROUND`] at once. `hello` itself is rate-limited
//! per caller (see `http::guard`). When the set is full the oldest candidate makes room: a
//! flood of introductions can delay a genuine one, never grow memory or traffic.
//!
//! Pure bookkeeping: no I/O, no clock of its own (every call is given `now`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most candidates kept at once.
pub const MAX_CANDIDATES: usize = 256;
/// Most candidates on one host, and on one network, outside loopback.
pub const MAX_PER_HOST: usize = 4;
pub const MAX_PER_SUBNET: usize = 16;
/// The wait before the first retry; it doubles after every failed probe.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two probes of one candidate.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// A candidate that has not answered this long after its introduction is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(6 * 3600);
/// Most candidates probed in one round.
pub const PROBES_PER_ROUND: usize = 8;

/// One node introduced but not heard from.
#[derive(Debug, Clone)]
struct Candidate {
    /// As introduced (a URL, an id or a ticket).
    raw: String,
    /// What the limits key on: the host (none on loopback, where only a local user runs
    /// nodes) and its network (none for a host name).
    host: Option<String>,
    subnet: Option<Vec<u8>>,
    added: Instant,
    wait: Duration,
    next: Instant,
    /// A probe is under way: the candidate is not handed out again until it is reported.
    probing: bool,
}

/// The candidates, oldest first.
#[derive(Debug, Default)]
pub struct Candidates {
    list: VecDeque<Candidate>,
}

impl Candidates {
    /// Keeps `raw` (whose host and network the caller worked out) for a later probe. A URL
    /// already kept is left as it is (its backoff goes on). Returns whether it was kept.
    pub fn add(&mut self, raw: &str, host: Option<&str>, subnet: Option<Vec<u8>>, now: Instant) -> bool {
        if self.list.iter().any(|c| c.raw == raw) {
            return true;
        }
        if let Some(host) = host {
            let same_host = self.list.iter().filter(|c| c.host.as_deref() == Some(host)).count();
            let same_subnet = self.list.iter().filter(|c| subnet.is_some() && c.subnet == subnet).count();
            if same_host >= MAX_PER_HOST || same_subnet >= MAX_PER_SUBNET {
                return false;
            }
        }
        if self.list.len() >= MAX_CANDIDATES {
            self.list.pop_front();
        }
        self.list.push_back(Candidate {
            raw: raw.to_string(),
            host: host.map(str::to_string),
            subnet,
            added: now,
            wait: FIRST_RETRY,
            next: now + FIRST_RETRY,
            probing: false,
        });
        true
    }

    /// The candidates due for a probe now (at most [`PROBES_PER_ROUND`]), marked as being
    /// probed; candidates past [`GIVE_UP_AFTER`] are dropped first.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        self.list.retain(|c| c.probing || now.duration_since(c.added) < GIVE_UP_AFTER);
        self.list
            .iter_mut()
            .filter(|c| !c.probing && c.next <= now)
            .take(PROBES_PER_ROUND)
            .map(|c| {
                c.probing = true;
                c.raw.clone()
            })
            .collect()
    }

    /// A probe of `raw` failed: the next one waits twice as long.
    pub fn failed(&mut self, raw: &str, now: Instant) {
        if let Some(c) = self.list.iter_mut().find(|c| c.raw == raw) {
            c.probing = false;
            c.wait = (c.wait * 2).min(LONGEST_RETRY);
            c.next = now + c.wait;
        }
    }

    /// `raw` answered (or must not be probed again): it leaves the set.
    pub fn remove(&mut self, raw: &str) {
        self.list.retain(|c| c.raw != raw);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(last: u8) -> Option<Vec<u8>> {
        Some(vec![10, 0, last])
    }

    #[test]
    fn a_candidate_is_probed_again_with_a_growing_wait_and_dropped_at_last() {
        let start = Instant::now();
        let mut c = Candidates::default();
        assert!(c.add("http://10.0.0.1:1", Some("10.0.0.1"), net(0), start));
        assert!(c.due(start).is_empty(), "not before the first wait");
        let mut at = start + FIRST_RETRY;
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert_eq!(c.due(at), vec!["http://10.0.0.1:1".to_string()]);
            assert!(c.due(at).is_empty(), "handed out once per probe");
            c.failed("http://10.0.0.1:1", at);
            let wait = c.list[0].wait;
            waits.push(wait);
            at += wait;
        }
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), LONGEST_RETRY);
        assert!(c.due(start + GIVE_UP_AFTER).is_empty());
        assert!(c.is_empty(), "dropped after the give-up time");
    }

    #[test]
    fn the_set_is_bounded_per_host_per_network_and_in_all() {
        let now = Instant::now();
        let mut c = Candidates::default();
        for port in 0..10 {
            c.add(&format!("http://10.0.0.1:{port}"), Some("10.0.0.1"), net(0), now);
        }
        assert_eq!(c.len(), MAX_PER_HOST);
        for host in 2..40 {
            c.add(&format!("http://10.0.0.{host}:1"), Some(&format!("10.0.0.{host}")), net(0), now);
        }
        assert_eq!(c.len(), MAX_PER_SUBNET);
        // Loopback (no host key) is bounded by the total alone; the oldest makes room.
        for port in 0..1000 {
            c.add(&format!("http://127.0.0.1:{port}"), None, None, now);
        }
        assert_eq!(c.len(), MAX_CANDIDATES);
        assert!(c.list.back().is_some_and(|last| last.raw == "http://127.0.0.1:999"));
        assert!(c.add("http://127.0.0.1:999", None, None, now), "known: kept as it is");
        assert_eq!(c.len(), MAX_CANDIDATES);
    }

    #[test]
    fn a_round_probes_a_bounded_number() {
        let now = Instant::now();
        let mut c = Candidates::default();
        for port in 0..100 {
            c.add(&format!("http://127.0.0.1:{port}"), None, None, now);
        }
        assert_eq!(c.due(now + FIRST_RETRY).len(), PROBES_PER_ROUND);
        c.remove("http://127.0.0.1:0");
        assert_eq!(c.len(), 99);
    }
}
