//! Ack generation, the receive side of a channel ("DelayedAck",
//! `spec/channel.md` §5.3).
//!
//! [`AckGenerator`] remembers which of the last 16 peer TSNs were received and
//! accepted, decides when an acknowledgement is wanted (second non-empty
//! datagram, 10 ms delayed-ack timer, out-of-order arrival) and produces the
//! `(ASN, acklen)` pair of every DATA datagram the channel builds.
//!
//! Receiving is split in two steps so that no callback has to be stored:
//! [`AckGenerator::classify`] says whether the datagram is new, late,
//! a duplicate or too old; the channel then runs loss detection on the
//! datagram's own ack fields and asks the host whether it accepts the payload;
//! finally [`AckGenerator::record`] records the arrival.
//!
//! # Acknowledging at least every 16 datagrams
//!
//! The reference rule (ack on the second non-empty datagram, or 10 ms after
//! the first) is kept. Two situations could still let a non-empty datagram fall
//! out of the 16-TSN window of every ack the peer sees, which a reference
//! sender treats as a loss (`spec/channel.md` §5.4, "spurious
//! retransmissions", case b):
//!
//! * the peer sends one non-empty datagram followed by 15 or more empty ones
//!   before our delayed-ack timer fires (empty datagrams never ask for an ack);
//! * the driver hands in many datagrams before it builds the next one
//!   (batched receive), so `wants_ack()` is not acted on in time.
//!
//! The generator therefore also tracks the oldest non-empty datagram that no
//! built ack has reported yet. When it reaches the edge of the window (15 TSNs
//! below the newest), [`AckGenerator::ack_urgent`] becomes true and an ack is
//! wanted at once. A driver that builds a datagram whenever `ack_urgent()` is
//! true before handing in the next received datagram never leaves a non-empty
//! datagram unreported while it slides out of range. Holes are not helped by
//! this: a datagram just below a hole is covered only by acks built before the
//! hole appeared (reference behaviour, §2.7).
//!
//! After an out-of-order ack has been built (it reports only the late
//! datagram), non-empty in-order datagrams that arrived while it was pending
//! are still unreported; the generator re-arms the 10 ms timer for them
//! instead of waiting for the peer's next datagram as the reference does. Both
//! additions only make acks earlier, never change their content (\[LOCAL\]).

// spec: channel.md §5.3

use std::time::Instant;

use super::constants::{ACK_MASK_BITS, DELAYED_ACK, MAX_ACKLEN};
use super::serial::{diff, is_newer};

/// The older (in serial order) of `tsn` and `current`, if any.
fn older(current: Option<u32>, tsn: u32) -> u32 {
    match current {
        Some(u) if is_newer(tsn, u) => u,
        _ => tsn,
    }
}

/// How a received peer TSN relates to the receive state
/// (`spec/channel.md` §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Newer than every TSN received so far; `shift` = `tsn − rasn` (≥ 1).
    New {
        /// Distance from the newest TSN received so far.
        shift: u32,
    },
    /// Older than the newest TSN, within the 16-TSN window and not yet
    /// received: `off` = `rasn − tsn`, 1..=15.
    OutOfOrder {
        /// Distance below the newest TSN received so far.
        off: u32,
    },
    /// Already received (and accepted): ignored entirely, not delivered, not
    /// acknowledged again, timer untouched.
    Duplicate,
    /// 16 or more TSNs older than the newest: dropped silently, no ack
    /// processing, not delivered. \[BEHAV\]
    TooOld,
}

impl Arrival {
    /// Whether the datagram goes on to loss detection and the host
    /// (`New` or `OutOfOrder`).
    pub fn is_processed(self) -> bool {
        matches!(self, Arrival::New { .. } | Arrival::OutOfOrder { .. })
    }
}

/// The receive-side ack state of one channel establishment
/// (`spec/channel.md` §5.3).
#[derive(Debug, Clone)]
pub struct AckGenerator {
    /// Bit k set ⇔ peer TSN `rasn − k` was received and accepted. Always odd.
    mask: u16,
    /// Newest peer TSN received and accepted (0 before the first: the mask
    /// starts as if the non-existent TSN 0 had been received).
    rasn: u32,
    /// Pending out-of-order ack: (mask shifted down to the late TSN, late TSN).
    oop: Option<(u16, u32)>,
    /// Delayed-ack deadline, if the timer is armed.
    timer: Option<Instant>,
    /// The channel should send a datagram to carry an ack.
    ack_wanted: bool,
    /// Oldest accepted non-empty TSN that no built ack has reported yet.
    unreported: Option<u32>,
    /// Oldest accepted non-empty in-order TSN since `oop` was set.
    unreported_since_oop: Option<u32>,
}

impl AckGenerator {
    /// A fresh generator for a newly established channel. `ack_wanted` starts
    /// true so that the channel sends one DATA datagram at once (§4.7);
    /// `initial_ack_timer` (WELCOME path) also arms the 10 ms timer, as the
    /// reference does (redundant).
    pub fn new(now: Instant, initial_ack_timer: bool) -> Self {
        // spec: channel.md §5.3 (initial state)
        AckGenerator {
            mask: 0x0001,
            rasn: 0,
            oop: None,
            timer: initial_ack_timer.then(|| now + DELAYED_ACK),
            ack_wanted: true,
            unreported: None,
            unreported_since_oop: None,
        }
    }

    /// Start as if peer TSN `tsn` (instead of the non-existent TSN 0) had been
    /// received: for peers whose TSNs start after `tsn`
    /// ([`ChannelConfig::initial_tsn`](crate::channel::ChannelConfig::initial_tsn)),
    /// so that the "nothing received yet" ack names no TSN they will send.
    pub fn starting_after(mut self, tsn: u32) -> Self {
        self.rasn = tsn;
        self
    }

    /// Classify a received peer TSN (low 32 bits of the extended TSN, §2.9)
    /// without changing any state.
    pub fn classify(&self, tsn: u32) -> Arrival {
        // spec: channel.md §5.3 (on_data case split)
        if is_newer(tsn, self.rasn) {
            return Arrival::New {
                shift: diff(tsn, self.rasn),
            };
        }
        let off = diff(self.rasn, tsn);
        if off >= ACK_MASK_BITS {
            Arrival::TooOld
        } else if self.mask & (1 << off) != 0 {
            Arrival::Duplicate
        } else {
            Arrival::OutOfOrder { off }
        }
    }

    /// Record the arrival of peer TSN `tsn` after the channel has run loss
    /// detection on its ack fields and offered its payload to the host.
    ///
    /// `accepted` is the host's answer (`false`: the datagram is treated as
    /// not received and is not acknowledged); `nonempty` whether the payload
    /// had any bytes (empty datagrams are recorded but never ask for an ack).
    /// Duplicates and too-old TSNs are ignored, so calling this for them is
    /// harmless.
    pub fn record(&mut self, now: Instant, tsn: u32, accepted: bool, nonempty: bool) {
        if !accepted {
            // spec: channel.md §5.3 ("A datagram refused by the host is not recorded")
            return;
        }
        match self.classify(tsn) {
            Arrival::New { shift } => {
                // spec: channel.md §5.3 (in order; shift ≥ 16 yields 0x0001)
                self.mask = if shift >= ACK_MASK_BITS {
                    0x0001
                } else {
                    (self.mask << shift) | 1
                };
                self.rasn = tsn;
                if nonempty {
                    self.note_unreported(tsn);
                    if self.oop.is_some() {
                        self.unreported_since_oop = Some(older(self.unreported_since_oop, tsn));
                    }
                    if self.timer.is_some() {
                        // second packet: ack now
                        self.want_ack_now();
                    } else {
                        // first packet: delay
                        self.timer = Some(now + DELAYED_ACK);
                    }
                }
            }
            Arrival::OutOfOrder { off } => {
                // spec: channel.md §5.3 (out of order, 0 < off ≤ 15)
                let newmask = self.mask | (1 << off);
                let covered = newmask.trailing_ones() > off;
                self.mask = newmask;
                if nonempty {
                    self.note_unreported(tsn);
                    if !covered {
                        self.oop = Some((newmask >> off, tsn));
                        self.unreported_since_oop = None;
                    } else if self.oop.is_some() {
                        self.unreported_since_oop = Some(older(self.unreported_since_oop, tsn));
                    }
                    if !covered || self.timer.is_some() {
                        self.want_ack_now();
                    } else {
                        self.timer = Some(now + DELAYED_ACK);
                    }
                }
            }
            Arrival::Duplicate | Arrival::TooOld => return,
        }
        // Local guard (module docs): never let an unreported non-empty datagram
        // slide out of the 16-TSN window without asking for an ack.
        if self.ack_urgent() {
            self.want_ack_now();
        }
    }

    fn note_unreported(&mut self, tsn: u32) {
        self.unreported = Some(older(self.unreported, tsn));
    }

    fn want_ack_now(&mut self) {
        self.timer = None;
        self.ack_wanted = true;
    }

    /// Whether the channel should send a datagram to carry an ack (raises its
    /// priority to +∞, §5.2).
    pub fn wants_ack(&self) -> bool {
        self.ack_wanted
    }

    /// Whether an accepted non-empty datagram that no built ack has reported
    /// is 15 TSNs below the newest: the next in-order arrival would push it
    /// out of every future ack. The driver should build a datagram before
    /// handing in the next one (module docs).
    pub fn ack_urgent(&self) -> bool {
        self.unreported
            .is_some_and(|u| diff(self.rasn, u) >= u32::from(MAX_ACKLEN))
    }

    /// Deadline of the delayed-ack timer, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.timer
    }

    /// Fire the delayed-ack timer if its deadline has passed: an ack becomes
    /// wanted.
    pub fn on_timeout(&mut self, now: Instant) {
        // spec: channel.md §5.3 (on_timer)
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.ack_wanted = true;
        }
    }

    /// The `(ASN, acklen)` that the next DATA datagram would carry, without
    /// taking it.
    pub fn peek_ack(&self) -> (u32, u8) {
        let (m, r) = self.oop.unwrap_or((self.mask, self.rasn));
        // masks are always odd, so trailing_ones ≥ 1; at most 16 → acklen ≤ 15
        let acklen = (m.trailing_ones() - 1) as u8;
        (r, acklen)
    }

    /// Take the ack fields for the DATA datagram being built (every DATA
    /// datagram carries them): clears the pending out-of-order ack,
    /// `ack_wanted` and the timer (§5.3 `pull`). Returns `(ASN, acklen)`,
    /// `acklen` ≤ 15; the range `[ASN − acklen, ASN]` may include the
    /// non-existent TSN 0 (§2.7).
    pub fn take_ack(&mut self, now: Instant) -> (u32, u8) {
        // spec: channel.md §5.3 (pull)
        let ack = self.peek_ack();
        let was_oop = self.oop.take().is_some();
        self.ack_wanted = false;
        self.timer = None;
        self.unreported = None;
        if was_oop {
            // The out-of-order ack reported only the late datagram; in-order
            // non-empty arrivals since then are still unreported ([LOCAL]).
            self.unreported = self.unreported_since_oop.take();
            if self.unreported.is_some() {
                self.timer = Some(now + DELAYED_ACK);
            }
        }
        ack
    }

    /// Newest peer TSN received and accepted (0 before the first).
    pub fn largest_received(&self) -> u32 {
        self.rasn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_after_reports_the_start_as_nothing_received() {
        let now = Instant::now();
        let start = (1u32 << 28) - 50;
        let mut g = AckGenerator::new(now, false).starting_after(start);
        assert_eq!(
            g.peek_ack(),
            (start, 0),
            "the 'nothing yet' ack names the start, not TSN 0"
        );
        assert!(matches!(g.classify(start + 1), Arrival::New { .. }));
        g.record(now, start + 1, true, true);
        assert_eq!(g.take_ack(now), (start + 1, 1));
    }
    use std::time::Duration;

    fn t0() -> Instant {
        Instant::now()
    }

    /// Receive `tsns` (non-empty, accepted) at `now`.
    fn feed(g: &mut AckGenerator, now: Instant, tsns: impl IntoIterator<Item = u32>) {
        for t in tsns {
            assert!(g.classify(t).is_processed(), "tsn {t}");
            g.record(now, t, true, true);
        }
    }

    #[test]
    fn nothing_received_acks_nothing() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        assert!(g.wants_ack(), "initial ack wanted");
        assert_eq!(g.deadline(), None);
        assert_eq!(g.take_ack(now), (0, 0));
        assert!(!g.wants_ack());
        let g2 = AckGenerator::new(now, true);
        assert_eq!(g2.deadline(), Some(now + DELAYED_ACK));
    }

    #[test]
    fn spec_2_7_examples() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1]);
        assert_eq!(g.peek_ack(), (1, 1), "after TSN 1 alone");
        feed(&mut g, now, [2]);
        assert_eq!(g.peek_ack(), (2, 2), "after TSNs 1 and 2");

        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1, 2]);
        feed(&mut g, now, 5..=12);
        assert_eq!(g.peek_ack(), (12, 7), "a hole ends the range");

        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, 1..=15);
        assert_eq!(g.peek_ack(), (15, 15), "range 0..=15 still includes TSN 0");
        feed(&mut g, now, [16]);
        assert_eq!(g.peek_ack(), (16, 15), "saturated at 15");
        feed(&mut g, now, 17..=40);
        assert_eq!(g.peek_ack(), (40, 15));
    }

    #[test]
    fn large_shift_resets_mask() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, 1..=10);
        assert_eq!(g.classify(26), Arrival::New { shift: 16 });
        feed(&mut g, now, [26]);
        assert_eq!(g.peek_ack(), (26, 0));
        // 10 is now exactly 16 behind: too old
        assert_eq!(g.classify(10), Arrival::TooOld);
        assert_eq!(g.classify(11), Arrival::OutOfOrder { off: 15 });
    }

    #[test]
    fn out_of_order_ack_spec_example() {
        // V10: late TSN 99 with off = 3 gives ASN 99, acklen 12.
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, 1..=98);
        g.take_ack(now);
        feed(&mut g, now, [100, 102]); // 99 late, 101 lost
        assert_eq!(g.peek_ack(), (102, 0));
        g.take_ack(now);
        assert_eq!(g.classify(99), Arrival::OutOfOrder { off: 3 });
        feed(&mut g, now, [99]);
        assert!(
            g.wants_ack(),
            "a not-covered late datagram is acked at once"
        );
        assert_eq!(g.deadline(), None);
        // an in-order arrival before the build does not replace the oop ack
        feed(&mut g, now, [103]);
        assert_eq!(g.take_ack(now), (99, 12));
        // the next ack is a normal one again
        assert_eq!(g.peek_ack(), (103, 1));
    }

    #[test]
    fn late_datagram_closing_the_hole_is_in_order() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1, 2, 4]);
        g.take_ack(now);
        assert_eq!(g.classify(3), Arrival::OutOfOrder { off: 1 });
        g.record(now, 3, true, true);
        // covered: first packet since the ack, so the timer is armed
        assert!(!g.wants_ack());
        assert_eq!(g.deadline(), Some(now + DELAYED_ACK));
        assert_eq!(g.peek_ack(), (4, 4));
    }

    #[test]
    fn duplicates_are_ignored() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1, 2, 3]);
        g.take_ack(now);
        feed(&mut g, now, [5]);
        let armed = g.deadline();
        assert!(armed.is_some());
        for dup in [5, 3, 1] {
            assert_eq!(g.classify(dup), Arrival::Duplicate);
            g.record(now + Duration::from_millis(1), dup, true, true);
        }
        // the timer is not touched (no second-packet ack), state unchanged
        assert_eq!(g.deadline(), armed);
        assert!(!g.wants_ack());
        assert_eq!(g.peek_ack(), (5, 0));
        // TSN 0 counts as received from the start
        assert_eq!(g.classify(0), Arrival::Duplicate);
    }

    #[test]
    fn too_old_is_dropped() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1]);
        feed(&mut g, now, [20]);
        assert_eq!(g.classify(4), Arrival::TooOld);
        assert_eq!(g.classify(5), Arrival::OutOfOrder { off: 15 });
        let before = g.peek_ack();
        g.record(now, 4, true, true);
        assert_eq!(g.peek_ack(), before);
    }

    #[test]
    fn refused_payloads_are_not_recorded() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        g.take_ack(now);
        g.record(now, 1, false, true);
        assert_eq!(g.peek_ack(), (0, 0));
        assert!(!g.wants_ack());
        assert_eq!(g.deadline(), None);
        // it can come again (retransmitted by the peer's stream layer as a
        // new TSN, or the same datagram duplicated) and be accepted then
        assert_eq!(g.classify(1), Arrival::New { shift: 1 });
        g.record(now, 2, true, true);
        assert_eq!(g.peek_ack(), (2, 0), "1 is a hole");
    }

    #[test]
    fn delayed_ack_timer_and_second_packet_rule() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        g.take_ack(now); // initial ack sent
        // empty datagrams never ask for an ack
        g.record(now, 1, true, false);
        assert!(!g.wants_ack());
        assert_eq!(g.deadline(), None);
        // first non-empty: 10 ms timer
        let t1 = now + Duration::from_millis(1);
        g.record(t1, 2, true, true);
        assert!(!g.wants_ack());
        assert_eq!(g.deadline(), Some(t1 + DELAYED_ACK));
        g.on_timeout(t1 + Duration::from_millis(9));
        assert!(!g.wants_ack(), "not yet due");
        g.on_timeout(t1 + DELAYED_ACK);
        assert!(g.wants_ack());
        assert_eq!(g.deadline(), None);
        assert_eq!(g.take_ack(t1 + DELAYED_ACK), (2, 2));

        // second non-empty before the timer: ack at once
        g.record(t1, 3, true, true);
        assert!(!g.wants_ack());
        g.record(t1, 4, true, true);
        assert!(g.wants_ack());
        assert_eq!(g.deadline(), None);
        let (asn, acklen) = g.take_ack(t1);
        assert_eq!((asn, acklen), (4, 4));
        assert!(!g.wants_ack());
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn one_nonempty_then_many_empty_forces_ack_before_window_edge() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        g.take_ack(now);
        g.record(now, 1, true, true);
        for t in 2..=15 {
            g.record(now, t, true, false);
            assert!(!g.wants_ack(), "tsn {t}");
        }
        g.record(now, 16, true, false);
        assert!(g.ack_urgent());
        assert!(g.wants_ack());
        let (asn, acklen) = g.take_ack(now);
        assert_eq!((asn, acklen), (16, 15), "TSN 1 still in range");
        assert!(!g.ack_urgent());
    }

    #[test]
    fn batched_receive_never_exceeds_16() {
        // A driver that builds only when ack_urgent() during a batch: every
        // non-empty TSN is covered by some built ack.
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        let mut covered = [false; 200];
        for t in 1..200u32 {
            g.record(now, t, true, true);
            if g.ack_urgent() {
                let (asn, len) = g.take_ack(now);
                for s in asn - u32::from(len)..=asn {
                    covered[s as usize] = true;
                }
            }
        }
        let (asn, len) = g.take_ack(now);
        for s in asn - u32::from(len)..=asn {
            covered[s as usize] = true;
        }
        assert!(covered[1..].iter().all(|&c| c));
    }

    #[test]
    fn in_order_arrivals_behind_an_oop_ack_are_acked_later() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        feed(&mut g, now, [1, 3]);
        g.take_ack(now);
        feed(&mut g, now, [2]); // closes the hole: covered, no oop
        g.take_ack(now);
        feed(&mut g, now, [5, 7]);
        g.take_ack(now);
        feed(&mut g, now, [4]); // off 3, hole at 6: oop covering 0..=4
        feed(&mut g, now, [8]);
        assert_eq!(g.take_ack(now), (4, 4));
        // 8 not yet reported: timer re-armed
        assert_eq!(g.deadline(), Some(now + DELAYED_ACK));
        g.on_timeout(now + DELAYED_ACK);
        assert!(g.wants_ack());
        assert_eq!(g.take_ack(now), (8, 1));
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn wraps_around_u32() {
        let now = t0();
        let mut g = AckGenerator::new(now, false);
        // walk up in steps of 2^30 (each is "newer") to just below the wrap
        feed(&mut g, now, [1 << 30, 1 << 31, 3 << 30, u32::MAX - 1]);
        feed(&mut g, now, [u32::MAX, 0, 1]);
        assert_eq!(g.peek_ack(), (1, 3));
        assert_eq!(g.classify(u32::MAX - 1), Arrival::Duplicate);
        assert_eq!(g.classify(u32::MAX - 14), Arrival::TooOld);
    }
}
