//! Which piece is done, which is being fetched and by whom: the scheduler's state, with no I/O.
//!
//! Workers (one per connection; a source may hold several) claim runs of consecutive missing
//! pieces sized to their speed, so
//! that one HTTP range request carries several pieces. When nothing is missing any more, an idle
//! worker steals the far half of the longest run another worker has claimed but not reached yet,
//! and when only pieces in progress remain, it fetches one of them a second time (endgame): the
//! first verified copy wins, so the tail never waits on the slowest source.
//!
//! **Swarms.** When some sources hold only part of the file (other downloaders, see
//! [`crate::proto::have`]), a worker never claims a piece its source lacks, and the order
//! changes: the first [`RANDOM_FIRST`] pieces are chosen at random (so a newcomer soon has
//! something to trade), then the rarest missing piece among those its source holds, rarity
//! counted over the partial sources (`seen`/`unseen`), ties broken at random. A run still grows
//! from the chosen piece over the next missing pieces its source holds, up to the worker's
//! speed-sized want, so a source that holds everything keeps its long claims. With no partial
//! source, pieces go in order as above.

use std::ops::Range;

use crate::proto::have::Bits;

/// In a swarm, pieces in progress are fetched a second time only when this few remain.
pub const SWARM_ENDGAME: u64 = 2;

/// Pieces chosen at random before rarest first takes over.
pub const RANDOM_FIRST: u64 = 4;

/// Identifies a worker (one connection to a source).
pub type WorkerId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Claimed { by: WorkerId, second: Option<WorkerId> },
    Done,
}

/// What a worker should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Fetch these pieces (one range request).
    Fetch(Range<u64>),
    /// Nothing to take now; wait for a change.
    Wait,
    /// Every piece is done.
    Finished,
}

/// The piece table of one download.
#[derive(Debug, Clone)]
pub struct Pieces {
    slots: Vec<Slot>,
    done: u64,
    /// Every piece before this one is claimed or done: where the search for missing ones starts.
    cursor: usize,
    /// How many partial sources hold each piece (empty until the first partial source).
    seen: Vec<u16>,
    /// Partial sources counted in `seen`.
    partial_sources: usize,
    /// The first pieces are chosen at random even before a partial source shows up (a download
    /// that may become part of a swarm: its first pieces differ from its neighbours').
    random_first: bool,
}

/// A small deterministic generator for choosing among equals (xorshift64*), seeded by the caller.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

impl Pieces {
    /// `count` pieces, with those in `done` already verified and written.
    pub fn new(count: u64, done: &[bool]) -> Self {
        let slots: Vec<Slot> = (0..count as usize)
            .map(|i| {
                if done.get(i).copied().unwrap_or(false) {
                    Slot::Done
                } else {
                    Slot::Missing
                }
            })
            .collect();
        let done = slots.iter().filter(|s| **s == Slot::Done).count() as u64;
        Pieces {
            slots,
            done,
            cursor: 0,
            seen: Vec::new(),
            partial_sources: 0,
            random_first: false,
        }
    }

    /// Chooses the first [`RANDOM_FIRST`] pieces at random from now on (see `random_first`).
    pub fn random_first(&mut self) {
        self.random_first = true;
    }

    /// A partial source joined the download (its pieces follow through [`Pieces::seen`]).
    pub fn partial_source(&mut self) {
        self.partial_sources += 1;
        if self.seen.is_empty() {
            self.seen = vec![0; self.slots.len()];
        }
    }

    /// A partial source left; `held` are the pieces it held.
    pub fn partial_source_left(&mut self, held: &Bits) {
        self.partial_sources = self.partial_sources.saturating_sub(1);
        for (index, seen) in self.seen.iter_mut().enumerate() {
            if held.has(index as u64) {
                *seen = seen.saturating_sub(1);
            }
        }
    }

    /// A partial source holds piece `index` now.
    pub fn seen(&mut self, index: u64) {
        if let Some(seen) = self.seen.get_mut(index as usize) {
            *seen = seen.saturating_add(1);
        }
    }

    /// Whether the download is part of a swarm (some source holds only part of the file).
    pub fn swarming(&self) -> bool {
        self.partial_sources > 0
    }

    pub fn count(&self) -> u64 {
        self.slots.len() as u64
    }

    pub fn done_count(&self) -> u64 {
        self.done
    }

    pub fn is_finished(&self) -> bool {
        self.done == self.count()
    }

    pub fn is_done(&self, index: u64) -> bool {
        self.slots.get(index as usize) == Some(&Slot::Done)
    }

    /// Whether a connection is fetching piece `index`.
    pub fn is_claimed(&self, index: u64) -> bool {
        matches!(self.slots.get(index as usize), Some(Slot::Claimed { .. }))
    }

    /// The done flags, for the resume record.
    pub fn done_flags(&self) -> Vec<bool> {
        self.slots.iter().map(|s| *s == Slot::Done).collect()
    }

    /// The next run for `worker`, at most `want` pieces long, among the pieces its source holds
    /// (`has`; `None`: all of them). `seed` is a random number, used when equals are chosen
    /// among (see the module's comment).
    pub fn claim(&mut self, worker: WorkerId, want: u64, has: Option<&Bits>, seed: u64) -> Next {
        if self.is_finished() {
            return Next::Finished;
        }
        if has.is_some() || self.swarming() || (self.random_first && self.done < RANDOM_FIRST) {
            return self.claim_in_swarm(worker, want, has, &mut Dice(seed | 1));
        }
        let want = want.max(1) as usize;
        // 1. The first run of missing pieces.
        while self.cursor < self.slots.len() && self.slots[self.cursor] != Slot::Missing {
            self.cursor += 1;
        }
        if self.cursor < self.slots.len() {
            let start = self.cursor;
            let mut end = start;
            while end < self.slots.len() && end - start < want && self.slots[end] == Slot::Missing {
                self.slots[end] = Slot::Claimed { by: worker, second: None };
                end += 1;
            }
            self.cursor = end;
            return Next::Fetch(start as u64..end as u64);
        }
        // 2. Steal the far half of the longest run another worker has not reached yet. The first
        //    piece of each run is taken to be in progress and stays with its owner.
        let mut best: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < self.slots.len() {
            if let Slot::Claimed { by, .. } = self.slots[i]
                && by != worker
            {
                let start = i;
                while i < self.slots.len() && matches!(self.slots[i], Slot::Claimed { by: b, .. } if b == by) {
                    i += 1;
                }
                if i - start >= 2 && best.is_none_or(|(s, e)| i - start > e - s) {
                    best = Some((start, i));
                }
            } else {
                i += 1;
            }
        }
        if let Some((start, end)) = best {
            let from = start + (end - start).div_ceil(2);
            let to = end.min(from + want);
            for slot in &mut self.slots[from..to] {
                *slot = Slot::Claimed { by: worker, second: None };
            }
            return Next::Fetch(from as u64..to as u64);
        }
        // 3. Endgame: fetch a piece in progress elsewhere a second time.
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Claimed { by, second: second @ None } = slot
                && *by != worker
            {
                *second = Some(worker);
                return Next::Fetch(index as u64..index as u64 + 1);
            }
        }
        Next::Wait
    }

    /// A run that starts at the first of `hints` still missing (pieces a holder seeding a swarm
    /// would rather send), at most `want` long; `None` when no hint is missing.
    pub fn claim_hinted(&mut self, worker: WorkerId, want: u64, hints: &[u64]) -> Option<Range<u64>> {
        let start = hints
            .iter()
            .map(|h| *h as usize)
            .find(|h| self.slots.get(*h) == Some(&Slot::Missing))?;
        let mut end = start;
        while end < self.slots.len() && end - start < want.max(1) as usize && self.slots[end] == Slot::Missing {
            self.slots[end] = Slot::Claimed { by: worker, second: None };
            end += 1;
        }
        Some(start as u64..end as u64)
    }

    /// [`Pieces::claim`] in a swarm: random first, then rarest first, only what the source holds.
    fn claim_in_swarm(&mut self, worker: WorkerId, want: u64, has: Option<&Bits>, dice: &mut Dice) -> Next {
        let holds = |index: usize| has.is_none_or(|bits| bits.has(index as u64));
        let random = self.done < RANDOM_FIRST;
        let mut best: Option<usize> = None;
        let mut ties = 0u64;
        for (index, slot) in self.slots.iter().enumerate() {
            if *slot != Slot::Missing || !holds(index) {
                continue;
            }
            let rarity = if random { 0 } else { self.seen.get(index).copied().unwrap_or(0) };
            let best_rarity = best.map(|b| if random { 0 } else { self.seen.get(b).copied().unwrap_or(0) });
            match best_rarity {
                Some(r) if rarity > r => {}
                Some(r) if rarity == r => {
                    ties += 1;
                    if dice.below(ties) == 0 {
                        best = Some(index);
                    }
                }
                _ => {
                    best = Some(index);
                    ties = 1;
                }
            }
        }
        if let Some(start) = best {
            // The first pieces are single ones (a newcomer's speed is not known yet).
            let want = if random { 1 } else { want.max(1) as usize };
            let mut end = start;
            while end < self.slots.len() && end - start < want && self.slots[end] == Slot::Missing && holds(end) {
                self.slots[end] = Slot::Claimed { by: worker, second: None };
                end += 1;
            }
            return Next::Fetch(start as u64..end as u64);
        }
        // Nothing missing that the source holds. Only for the last [`SWARM_ENDGAME`] pieces (the
        // end game), a second copy of a piece in progress elsewhere: a swarm's sources are slow
        // and many, and a copy of each of the dozens of pieces in progress would waste what the
        // losing copies had received (its far runs are not stolen here either: runs in a swarm
        // are short).
        if self.slots.contains(&Slot::Missing) || self.count() - self.done > SWARM_ENDGAME {
            return Next::Wait;
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Slot::Claimed { by, second: second @ None } = slot
                && *by != worker
                && has.is_none_or(|bits| bits.has(index as u64))
            {
                *second = Some(worker);
                return Next::Fetch(index as u64..index as u64 + 1);
            }
        }
        Next::Wait
    }

    /// True while `worker` should still fetch piece `index`.
    pub fn is_mine(&self, worker: WorkerId, index: u64) -> bool {
        matches!(self.slots.get(index as usize), Some(Slot::Claimed { by, second }) if *by == worker || *second == Some(worker))
    }

    /// Marks a piece verified and written. Returns false when another copy won already.
    pub fn complete(&mut self, index: u64) -> bool {
        match self.slots.get_mut(index as usize) {
            Some(slot) if *slot != Slot::Done => {
                *slot = Slot::Done;
                self.done += 1;
                true
            }
            _ => false,
        }
    }

    /// Gives back what `worker` claimed in `range` and has not completed.
    pub fn release(&mut self, worker: WorkerId, range: Range<u64>) {
        let end = (range.end as usize).min(self.slots.len());
        for index in range.start as usize..end {
            match self.slots[index] {
                Slot::Claimed { by, second } if by == worker => {
                    self.slots[index] = match second {
                        Some(other) => Slot::Claimed { by: other, second: None },
                        None => Slot::Missing,
                    };
                    self.cursor = self.cursor.min(index);
                }
                Slot::Claimed { by, second: Some(other) } if other == worker => {
                    self.slots[index] = Slot::Claimed { by, second: None };
                }
                _ => {}
            }
        }
    }

    /// Marks a piece missing again (its data on disk failed a check).
    pub fn forget(&mut self, index: u64) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if *slot == Slot::Done {
                self.done -= 1;
            }
            *slot = Slot::Missing;
            self.cursor = self.cursor.min(index as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_consecutive_runs() {
        let mut pieces = Pieces::new(10, &[]);
        assert_eq!(pieces.claim(0, 4, None, 1), Next::Fetch(0..4));
        assert_eq!(pieces.claim(1, 4, None, 1), Next::Fetch(4..8));
        assert_eq!(pieces.claim(2, 4, None, 1), Next::Fetch(8..10));
        assert!(pieces.is_mine(0, 3) && !pieces.is_mine(0, 4));
    }

    #[test]
    fn resumed_pieces_are_skipped() {
        let mut pieces = Pieces::new(4, &[true, true, false, true]);
        assert_eq!(pieces.done_count(), 3);
        assert_eq!(pieces.claim(0, 8, None, 1), Next::Fetch(2..3));
        assert!(pieces.complete(2));
        assert_eq!(pieces.claim(0, 8, None, 1), Next::Finished);
    }

    #[test]
    fn an_idle_worker_steals_the_far_half_of_a_slow_run() {
        let mut pieces = Pieces::new(8, &[]);
        assert_eq!(pieces.claim(0, 8, None, 1), Next::Fetch(0..8));
        assert_eq!(pieces.claim(1, 8, None, 1), Next::Fetch(4..8));
        assert!(!pieces.is_mine(0, 4), "the slow worker sees its tail is gone");
        assert!(pieces.is_mine(0, 3));
    }

    #[test]
    fn the_last_piece_is_fetched_twice_and_the_first_copy_wins() {
        let mut pieces = Pieces::new(2, &[]);
        assert_eq!(pieces.claim(0, 1, None, 1), Next::Fetch(0..1));
        assert_eq!(pieces.claim(3, 1, None, 1), Next::Fetch(1..2));
        assert_eq!(pieces.claim(1, 4, None, 1), Next::Fetch(0..1), "endgame duplicate");
        assert_eq!(pieces.claim(2, 4, None, 1), Next::Fetch(1..2));
        assert_eq!(pieces.claim(4, 4, None, 1), Next::Wait);
        assert!(pieces.complete(0));
        assert!(!pieces.complete(0), "the second copy loses");
        assert!(!pieces.is_mine(1, 0));
    }

    #[test]
    fn released_pieces_go_back_to_others() {
        let mut pieces = Pieces::new(6, &[]);
        assert_eq!(pieces.claim(0, 3, None, 1), Next::Fetch(0..3));
        assert!(pieces.complete(0));
        pieces.release(0, 0..3);
        assert_eq!(pieces.claim(1, 6, None, 1), Next::Fetch(1..6));
        pieces.forget(0);
        assert_eq!(pieces.claim(2, 6, None, 1), Next::Fetch(0..1));
    }

    #[test]
    fn a_worker_never_claims_a_piece_its_source_lacks() {
        let mut pieces = Pieces::new(8, &[]);
        let mut has = Bits::new(8);
        has.set(5);
        has.set(6);
        for seed in 1..50 {
            let mut p = pieces.clone();
            match p.claim(0, 8, Some(&has), seed) {
                Next::Fetch(run) => assert!(run.clone().all(|i| has.has(i)), "{run:?}"),
                other => panic!("{other:?}"),
            }
        }
        let none = Bits::new(8);
        assert_eq!(pieces.claim(1, 8, Some(&none), 1), Next::Wait);
    }

    #[test]
    fn the_first_pieces_are_random_then_the_rarest_go_first() {
        // Random first: over many seeds, a newcomer's first claims spread over the file.
        let mut starts = std::collections::BTreeSet::new();
        for seed in 1..200 {
            let mut pieces = Pieces::new(64, &[]);
            pieces.partial_source();
            if let Next::Fetch(run) = pieces.claim(0, 1, None, seed) {
                starts.insert(run.start);
            }
        }
        assert!(starts.len() > 20, "random first pieces: {starts:?}");
        // Past the first few: the piece no partial source holds comes first.
        let mut done = vec![true; 4];
        done.extend(vec![false; 6]);
        let mut pieces = Pieces::new(10, &done);
        pieces.partial_source();
        pieces.partial_source();
        for index in 4..10 {
            pieces.seen(index);
            if index != 7 {
                pieces.seen(index);
            }
        }
        for seed in 1..20 {
            assert_eq!(pieces.clone().claim(0, 1, None, seed), Next::Fetch(7..8));
        }
        let mut held = Bits::new(10);
        held.set(8);
        pieces.partial_source_left(&held);
        assert!(pieces.swarming());
        assert!(pieces.complete(7));
        for seed in 1..20 {
            assert_eq!(
                pieces.clone().claim(0, 1, None, seed),
                Next::Fetch(8..9),
                "piece 8 is now the rarest"
            );
        }
    }

    #[test]
    fn a_download_that_may_swarm_starts_at_random_places() {
        let mut starts = std::collections::BTreeSet::new();
        for seed in 1..100 {
            let mut pieces = Pieces::new(64, &[]);
            pieces.random_first();
            if let Next::Fetch(run) = pieces.claim(0, 1, None, seed) {
                starts.insert(run.start);
            }
        }
        assert!(starts.len() > 10, "{starts:?}");
        let mut pieces = Pieces::new(64, &[true; 4]);
        pieces.random_first();
        assert_eq!(pieces.claim(0, 1, None, 7), Next::Fetch(4..5), "in order once a few are done");
    }

    #[test]
    fn hinted_pieces_are_claimed_first_while_missing() {
        let mut pieces = Pieces::new(8, &[]);
        assert_eq!(pieces.claim(0, 1, None, 1), Next::Fetch(0..1));
        assert_eq!(pieces.claim_hinted(1, 2, &[0, 5]), Some(5..7), "0 is claimed already");
        assert_eq!(pieces.claim_hinted(1, 2, &[0, 6]), None);
    }

    #[test]
    fn releasing_a_duplicated_piece_keeps_the_other_copy_going() {
        let mut pieces = Pieces::new(1, &[]);
        assert_eq!(pieces.claim(0, 1, None, 1), Next::Fetch(0..1));
        assert_eq!(pieces.claim(1, 1, None, 1), Next::Fetch(0..1));
        pieces.release(0, 0..1);
        assert!(pieces.is_mine(1, 0));
        assert_eq!(pieces.claim(2, 1, None, 1), Next::Fetch(0..1), "a new second copy may start");
    }
}
