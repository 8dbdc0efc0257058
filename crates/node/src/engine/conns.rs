//! How many connections one source gets: a small state machine with no I/O, driven by what the
//! source's connections report (an answered request, a refusal) and by a clock tick carrying the
//! bytes the source has sent so far.
//!
//! The rule:
//! - A source starts with one connection; it never has more than its ceiling, which starts at
//!   `EngineOptions::max_connections_per_source` (default 8).
//! - **Ramp (mirrors).** Plain HTTP servers often cap each connection and allow several, so a
//!   mirror ramps by acceptance: every request it answers with data lets one more connection
//!   open, so the count roughly doubles each round trip until the ceiling or the first refusal.
//!   A shoal peer never caps a connection (its upload limit is the node's), so peers skip the
//!   ramp and grow only by measured gain (below).
//! - **Refusal.** A refused request (503, 429, a connection error, a stall) on a source that has
//!   more than one connection ends that connection, and the ceiling drops to the connections
//!   left; growth then holds for a while (4 s, doubling up to 64 s per refusal). With a single
//!   connection, the engine's ordinary backoff (and any `Retry-After`) applies instead.
//! - **Measured gain.** Once the count has settled (no connection opening or retiring), the
//!   source's rate is measured over epochs of one second. Below the ceiling and not holding, the
//!   source tries one more connection and keeps it only when the next epoch's rate rose by at
//!   least half of one connection's average share; otherwise it goes back and holds. At the
//!   ceiling, after four steady epochs, it tries one fewer and keeps that only when the rate
//!   fell by less than half a share (then the ceiling stays down for the hold); otherwise it
//!   goes back up and holds.
//!
//! A connection that is no longer wanted retires after its current run (nothing it fetched is
//! lost). The four-epoch wait and the hold mean that a download shorter than a few seconds never
//! pays for a probe.

use std::time::{Duration, Instant};

/// The length of one measurement.
pub const EPOCH: Duration = Duration::from_secs(1);
/// The first hold after a refusal or a probe that did not pay; doubles up to [`MAX_HOLD`].
const MIN_HOLD: Duration = Duration::from_secs(4);
const MAX_HOLD: Duration = Duration::from_secs(64);
/// Steady epochs at the ceiling before trying one connection fewer.
const DOWN_AFTER: u32 = 4;
/// A change of one connection counts when it moves the rate by this share of one connection's
/// average.
const GAIN: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Growing by acceptance (mirrors, at the start).
    Ramp,
    /// Measuring; may probe.
    Steady,
    /// One connection was added; `before` is the rate with `from`.
    Up { before: f64, from: usize },
    /// One connection was retired; `before` is the rate with `from`.
    Down { before: f64, from: usize },
}

/// The connection count of one source.
#[derive(Debug, Clone)]
pub struct Conns {
    cap: usize,
    ceiling: usize,
    desired: usize,
    open: usize,
    phase: Phase,
    hold_until: Option<Instant>,
    hold: Duration,
    /// Start of the current measurement: time and bytes received by then.
    mark: Option<(Instant, u64)>,
    steady_epochs: u32,
}

impl Conns {
    /// A source allowed at most `cap` connections (at least 1); `ramp` for mirrors.
    pub fn new(cap: usize, ramp: bool) -> Conns {
        let cap = cap.max(1);
        Conns {
            cap,
            ceiling: cap,
            desired: 1,
            open: 0,
            phase: if ramp && cap > 1 { Phase::Ramp } else { Phase::Steady },
            hold_until: None,
            hold: MIN_HOLD,
            mark: None,
            steady_epochs: 0,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// Connections the source should have.
    pub fn desired(&self) -> usize {
        self.desired
    }

    /// Opens one more connection if one is wanted. Returns whether it did.
    pub fn open_one(&mut self) -> bool {
        if self.open < self.desired {
            self.open += 1;
            true
        } else {
            false
        }
    }

    /// A connection asks whether to stop (before its next claim); if so it is counted out.
    pub fn retire(&mut self) -> bool {
        if self.open > self.desired {
            self.open -= 1;
            true
        } else {
            false
        }
    }

    /// A connection ended for a reason of its own (the download finished, the source was dropped).
    pub fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// A request was answered with data.
    pub fn accepted(&mut self) {
        if self.phase == Phase::Ramp {
            self.desired = (self.desired + 1).min(self.ceiling);
            if self.desired >= self.ceiling {
                self.settle(Phase::Steady);
            }
        }
    }

    /// A request was refused or failed. Returns true when the connection that saw it should end
    /// (the source has others); false when it is the last one and should back off instead.
    pub fn refused(&mut self, now: Instant) -> bool {
        self.start_hold(now);
        if self.open > 1 {
            self.open -= 1;
            self.ceiling = self.open;
            self.desired = self.open;
            self.settle(Phase::Steady);
            true
        } else {
            self.desired = 1;
            if self.phase != Phase::Steady {
                self.settle(Phase::Steady);
            }
            false
        }
    }

    /// The clock: `received` is every byte the source has sent so far.
    pub fn tick(&mut self, now: Instant, received: u64) {
        if self.hold_until.is_some_and(|until| now >= until) {
            self.hold_until = None;
            self.ceiling = self.cap;
        }
        if self.phase == Phase::Ramp {
            return;
        }
        // Only a settled count is measured.
        let Some((since, bytes)) = self.mark.filter(|_| self.open == self.desired) else {
            self.mark = Some((now, received));
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed < EPOCH {
            return;
        }
        let rate = received.saturating_sub(bytes) as f64 / elapsed.as_secs_f64();
        self.mark = Some((now, received));
        match self.phase {
            Phase::Ramp => {}
            Phase::Up { before, from } => {
                if rate >= before * (1.0 + GAIN / from as f64) {
                    self.hold = MIN_HOLD;
                } else {
                    self.desired = from;
                    self.start_hold(now);
                }
                self.settle(Phase::Steady);
            }
            Phase::Down { before, from } => {
                if rate >= before * (1.0 - GAIN / from as f64) {
                    // The retired connection added nothing: stay down until the hold ends.
                    self.ceiling = self.desired;
                } else {
                    self.desired = from;
                }
                self.start_hold(now);
                self.settle(Phase::Steady);
            }
            Phase::Steady => {
                self.steady_epochs += 1;
                let holding = self.hold_until.is_some();
                if holding || rate <= 0.0 {
                    return;
                }
                if self.desired < self.ceiling {
                    let from = self.desired;
                    self.desired += 1;
                    self.settle(Phase::Up { before: rate, from });
                } else if self.desired > 1 && self.steady_epochs >= DOWN_AFTER {
                    let from = self.desired;
                    self.desired -= 1;
                    self.settle(Phase::Down { before: rate, from });
                }
            }
        }
    }

    fn settle(&mut self, phase: Phase) {
        self.phase = phase;
        self.mark = None;
        self.steady_epochs = 0;
    }

    fn start_hold(&mut self, now: Instant) {
        self.hold_until = Some(now + self.hold);
        self.hold = (self.hold * 2).min(MAX_HOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Opens every wanted connection.
    fn open_all(c: &mut Conns) {
        while c.open_one() {}
    }

    /// Runs `epochs` settled epochs at `per_conn(n)` bytes per second in all, from `t`.
    fn run(c: &mut Conns, t: &mut Instant, bytes: &mut u64, epochs: u32, rate: impl Fn(usize) -> u64) {
        for _ in 0..epochs {
            while c.retire() {}
            open_all(c);
            c.tick(*t, *bytes);
            for _ in 0..4 {
                *t += EPOCH / 4;
                *bytes += rate(c.open()) / 4;
                c.tick(*t, *bytes);
            }
        }
    }

    #[test]
    fn a_mirror_ramps_by_acceptance_to_its_ceiling() {
        let mut c = Conns::new(8, true);
        open_all(&mut c);
        assert_eq!(c.open(), 1);
        for expected in [2, 4, 8] {
            for _ in 0..c.open() {
                c.accepted();
            }
            open_all(&mut c);
            assert_eq!(c.open(), expected, "one more connection per answered request");
        }
        c.accepted();
        assert_eq!(c.desired(), 8, "never past the ceiling");
    }

    #[test]
    fn a_refusal_drops_one_and_holds_growth() {
        let now = Instant::now();
        let mut c = Conns::new(8, true);
        open_all(&mut c);
        c.accepted();
        open_all(&mut c);
        assert_eq!(c.open(), 2);
        assert!(c.refused(now), "the refused extra connection ends");
        assert_eq!((c.open(), c.desired()), (1, 1));
        c.accepted();
        assert!(!c.open_one(), "no ramp after a refusal");
        assert!(!c.refused(now), "the last connection backs off instead");
        let (mut t, mut bytes) = (now, 0);
        run(&mut c, &mut t, &mut bytes, 3, |n| n as u64 * 10 * MIB);
        assert_eq!(c.desired(), 1, "held");
    }

    #[test]
    fn a_peer_grows_while_connections_add_throughput() {
        let mut c = Conns::new(8, false);
        let (mut t, mut bytes) = (Instant::now(), 0);
        run(&mut c, &mut t, &mut bytes, 12, |n| n as u64 * 10 * MIB);
        assert!(c.desired() >= 5, "grew with each paying probe: {}", c.desired());
    }

    #[test]
    fn a_shared_limit_keeps_one_connection() {
        let mut c = Conns::new(8, false);
        let (mut t, mut bytes) = (Instant::now(), 0);
        run(&mut c, &mut t, &mut bytes, 3, |_| 25 * MIB);
        assert_eq!(c.desired(), 1, "the probe did not pay and was taken back");
        run(&mut c, &mut t, &mut bytes, 20, |_| 25 * MIB);
        assert!(c.desired() <= 2, "later probes also go back: {}", c.desired());
    }

    #[test]
    fn at_the_ceiling_a_connection_that_adds_nothing_is_retired() {
        let mut c = Conns::new(4, true);
        open_all(&mut c);
        for _ in 0..8 {
            c.accepted();
            open_all(&mut c);
        }
        assert_eq!(c.open(), 4);
        let (mut t, mut bytes) = (Instant::now(), 0);
        run(&mut c, &mut t, &mut bytes, 8, |_| 40 * MIB);
        assert!(c.desired() < 4, "a shared limit: fewer connections serve as well");
        let mut c = Conns::new(4, true);
        open_all(&mut c);
        for _ in 0..8 {
            c.accepted();
            open_all(&mut c);
        }
        let (mut t, mut bytes) = (Instant::now(), 0);
        run(&mut c, &mut t, &mut bytes, 30, |n| n as u64 * 10 * MIB);
        assert!(c.desired() >= 3, "a per-connection cap: the probes go back up");
    }

    #[test]
    fn a_cap_of_one_never_grows() {
        let mut c = Conns::new(1, true);
        open_all(&mut c);
        c.accepted();
        let (mut t, mut bytes) = (Instant::now(), 0);
        run(&mut c, &mut t, &mut bytes, 10, |n| n as u64 * 10 * MIB);
        assert_eq!((c.open(), c.desired()), (1, 1));
        assert_eq!(Conns::new(0, true).cap, 1);
    }
}
