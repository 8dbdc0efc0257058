//! Upload slots: which downloaders a node serves its swarm pieces to right now. A pure state
//! machine with no I/O, like the engine's `pieces`; the HTTP layer asks it before serving a
//! range to a downloader that takes hints ([`crate::proto::have::HINTS_HEADER`]), and refuses
//! the others with `503` and `Shoal-Choked` (they ask other members meanwhile).
//!
//! The policy is BitTorrent's choking, for a protocol where downloaders pull:
//! - while at most [`Slots::regular`] + 1 downloaders are interested (asked within
//!   [`INTERESTED_FOR`]), every one is served;
//! - beyond that, every [`RECHOKE_EVERY`] the node picks `regular` of them: while it downloads
//!   the same content, those that sent it the most bytes since the last pick (tit for tat); as
//!   a seed, those it served longest ago (round robin, so every downloader gets its turn);
//! - a slot whose holder asks for nothing is lent: while fewer than `regular + 1` ranges are
//!   being sent, any interested downloader is served;
//! - one more slot, the optimistic one, goes to a random other downloader and moves every
//!   [`OPTIMISTIC_EVERY`], so a newcomer, who has nothing to give yet, gets its first pieces;
//! - a downloader that gives nothing (a free rider) is served only by the optimistic slot or
//!   as a seed's round robin comes to it: it finishes, later than the others.
//!
//! Downloaders are told apart by the node URL they name (`Shoal-From`), else by address and
//! port. A stranger may claim another's URL: it then shares that one's slot, which costs the
//! swarm nothing it would not lose to a free rider. At most [`MAX_TRACKED`] downloaders are
//! tracked (the longest silent go first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A downloader who asked within this long is interested.
pub const INTERESTED_FOR: Duration = Duration::from_secs(5);
/// How often the slots are given out again.
pub const RECHOKE_EVERY: Duration = Duration::from_secs(10);
/// How often the optimistic slot moves.
pub const OPTIMISTIC_EVERY: Duration = Duration::from_secs(30);
/// Regular slots by default (BitTorrent's usual 4).
pub const REGULAR_SLOTS: usize = 4;
/// Most downloaders tracked.
pub const MAX_TRACKED: usize = 1024;

#[derive(Debug, Clone)]
struct Downloader {
    last_request: Instant,
    /// When it last held a slot (for a seed's round robin).
    last_served: Option<Instant>,
    /// Bytes it gave this node, as of the last pick and now.
    gave_at_pick: u64,
    gave: u64,
}

/// The slots of one node.
#[derive(Debug, Clone)]
pub struct Slots {
    regular: usize,
    downloaders: HashMap<String, Downloader>,
    unchoked: Vec<String>,
    optimistic: Option<String>,
    last_pick: Option<Instant>,
    last_optimistic: Option<Instant>,
    /// A number for choosing the optimistic slot (a seeded generator: tests are repeatable).
    dice: u64,
}

impl Slots {
    /// `regular` slots besides the optimistic one.
    pub fn new(regular: usize, seed: u64) -> Slots {
        Slots {
            regular: regular.max(1),
            downloaders: HashMap::new(),
            unchoked: Vec::new(),
            optimistic: None,
            last_pick: None,
            last_optimistic: None,
            dice: seed | 1,
        }
    }

    /// Whether `who` is served now; `seeding`: the node holds the whole file (round robin)
    /// rather than fetching it too (tit for tat); `active`: ranges of this content being sent
    /// now. A slot whose holder asks for nothing is not left idle: while fewer than
    /// `regular + 1` ranges are being sent, anyone interested is served.
    pub fn admit(&mut self, who: &str, seeding: bool, now: Instant, active: usize) -> bool {
        let known = self.downloaders.contains_key(who);
        if !known && self.downloaders.len() >= MAX_TRACKED {
            self.forget_oldest();
        }
        let entry = self.downloaders.entry(who.to_string()).or_insert(Downloader {
            last_request: now,
            last_served: None,
            gave_at_pick: 0,
            gave: 0,
        });
        entry.last_request = now;
        if self.interested_count(now) <= self.regular + 1 {
            self.mark_served(who, now);
            return true;
        }
        let due = self.last_pick.is_none_or(|t| now.duration_since(t) >= RECHOKE_EVERY);
        if due || !known {
            // A newcomer may take a slot left free since the last pick.
            if due || self.unchoked.len() < self.regular {
                self.pick(seeding, now);
            }
        }
        let served = self.unchoked.iter().any(|u| u == who) || self.optimistic.as_deref() == Some(who) || active < self.regular + 1;
        if served {
            self.mark_served(who, now);
        }
        served
    }

    /// `who` has given this node `total` bytes in all (pieces it served while this node
    /// downloads the same content); a smaller figure than before (a download restarted) counts
    /// from there.
    pub fn set_gave(&mut self, who: &str, total: u64) {
        if let Some(d) = self.downloaders.get_mut(who) {
            if total < d.gave {
                d.gave_at_pick = 0;
            }
            d.gave = total;
        }
    }

    /// Who holds a slot now (regular, then optimistic).
    pub fn served(&self) -> Vec<String> {
        self.unchoked.iter().cloned().chain(self.optimistic.clone()).collect()
    }

    /// How many downloaders are interested (asked lately), without listing them.
    fn interested_count(&self, now: Instant) -> usize {
        self.downloaders
            .values()
            .filter(|d| now.duration_since(d.last_request) < INTERESTED_FOR)
            .count()
    }

    fn interested(&self, now: Instant) -> Vec<String> {
        self.downloaders
            .iter()
            .filter(|(_, d)| now.duration_since(d.last_request) < INTERESTED_FOR)
            .map(|(who, _)| who.clone())
            .collect()
    }

    fn mark_served(&mut self, who: &str, now: Instant) {
        if let Some(d) = self.downloaders.get_mut(who) {
            d.last_served = Some(now);
        }
    }

    /// Gives out the regular slots and, when due, the optimistic one.
    fn pick(&mut self, seeding: bool, now: Instant) {
        let mut interested = self.interested(now);
        interested.sort();
        let score = |who: &String| -> (u64, std::cmp::Reverse<Option<Instant>>) {
            let d = &self.downloaders[who];
            // As a seed: longest unserved first. Downloading: most given since the last pick,
            // then longest unserved.
            let recent = if seeding { 0 } else { d.gave - d.gave_at_pick.min(d.gave) };
            (recent, std::cmp::Reverse(d.last_served))
        };
        interested.sort_by_key(|who| std::cmp::Reverse(score(who)));
        self.unchoked = interested.iter().take(self.regular).cloned().collect();
        let rest: Vec<&String> = interested.iter().skip(self.regular).collect();
        let keep = self
            .optimistic
            .as_ref()
            .is_some_and(|o| rest.contains(&o) && self.last_optimistic.is_some_and(|t| now.duration_since(t) < OPTIMISTIC_EVERY));
        if !keep {
            self.optimistic = if rest.is_empty() {
                None
            } else {
                Some(rest[self.roll(rest.len())].clone())
            };
            self.last_optimistic = Some(now);
        }
        for d in self.downloaders.values_mut() {
            d.gave_at_pick = d.gave;
        }
        self.last_pick = Some(now);
    }

    fn roll(&mut self, n: usize) -> usize {
        self.dice ^= self.dice << 13;
        self.dice ^= self.dice >> 7;
        self.dice ^= self.dice << 17;
        (self.dice % n as u64) as usize
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .downloaders
            .iter()
            .min_by_key(|(_, d)| d.last_request)
            .map(|(who, _)| who.clone())
        {
            self.downloaders.remove(&oldest);
            self.unchoked.retain(|u| *u != oldest);
            if self.optimistic.as_deref() == Some(oldest.as_str()) {
                self.optimistic = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot busy: only the downloaders picked are served.
    const BUSY: usize = 100;

    fn who(i: usize) -> String {
        format!("http://127.0.0.1:{}", 1000 + i)
    }

    #[test]
    fn few_downloaders_are_all_served() {
        let mut slots = Slots::new(4, 1);
        let now = Instant::now();
        for i in 0..5 {
            assert!(slots.admit(&who(i), false, now, 0));
        }
    }

    /// `n` downloaders each asking once a second for `secs` seconds from `t`; gives the time
    /// after and how often each was served.
    fn ask(slots: &mut Slots, n: usize, seeding: bool, t: Instant, secs: u64) -> (Instant, Vec<u32>) {
        let mut served = vec![0; n];
        for s in 0..secs {
            for (i, count) in served.iter_mut().enumerate() {
                if slots.admit(&who(i), seeding, t + Duration::from_secs(s), BUSY) {
                    *count += 1;
                }
            }
        }
        (t + Duration::from_secs(secs), served)
    }

    #[test]
    fn beyond_the_slots_the_ones_that_give_most_are_served() {
        let mut slots = Slots::new(2, 1);
        let (t, _) = ask(&mut slots, 6, false, Instant::now(), 10);
        slots.set_gave(&who(4), 5_000_000);
        slots.set_gave(&who(5), 9_000_000);
        // The next pick, within the next ten seconds, puts the two givers first.
        let (_, served) = ask(&mut slots, 6, false, t, 10);
        let now = slots.served();
        assert_eq!(&now[..2], &[who(5), who(4)], "tit for tat: {now:?}");
        assert_eq!(now.len(), 3, "two regular slots and the optimistic one");
        assert!(served[4] >= 5 && served[5] >= 5, "{served:?}");
    }

    #[test]
    fn a_free_rider_is_served_only_by_the_optimistic_slot_or_a_seeds_turn() {
        // Downloading: the givers give more every round and hold the regular slots; the free
        // rider (0) is served only while it holds the optimistic slot, which moves.
        let mut slots = Slots::new(2, 7);
        let mut t = Instant::now();
        let mut rider = 0;
        let mut giver_best = 0;
        for round in 0..12u64 {
            for i in 1..6 {
                slots.set_gave(&who(i), 1_000_000 * i as u64 * (round + 1));
            }
            let (next, served) = ask(&mut slots, 6, false, t, 10);
            t = next;
            if round > 0 {
                rider += served[0];
                giver_best = giver_best.max(served[5]);
                assert!(!slots.served()[..2].contains(&who(0)), "round {round}: {:?}", slots.served());
            }
        }
        assert!(rider > 0, "the rider was never served");
        assert!(rider < 11 * 10, "the rider was always served");
        assert!(giver_best == 10, "the best giver was served throughout a round");
        // Seeding: everyone's turn comes, the rider's too.
        let mut seed = Slots::new(2, 3);
        let mut t = Instant::now();
        let mut turns = vec![0; 6];
        for _ in 0..12 {
            let (next, served) = ask(&mut seed, 6, true, t, 10);
            t = next;
            turns.iter_mut().zip(served).for_each(|(turn, s)| *turn += s);
        }
        assert!(turns.iter().all(|t| *t >= 10), "round robin: {turns:?}");
    }

    #[test]
    fn an_idle_slot_is_lent_to_anyone() {
        let mut slots = Slots::new(2, 1);
        let t = Instant::now();
        for i in 0..6 {
            slots.admit(&who(i), true, t, BUSY);
        }
        let choked = (0..6).find(|i| !slots.served().contains(&who(*i))).unwrap();
        assert!(!slots.admit(&who(choked), true, t, 3), "all three slots are sending");
        assert!(slots.admit(&who(choked), true, t, 2), "one slot is idle");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut slots = Slots::new(4, 1);
        let now = Instant::now();
        for i in 0..(MAX_TRACKED + 10) {
            slots.admit(&who(i), true, now + Duration::from_millis(i as u64), BUSY);
        }
        assert_eq!(slots.downloaders.len(), MAX_TRACKED);
    }
}
