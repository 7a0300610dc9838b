//! Loss detection and RTT estimation, the send side of a channel
//! ("FastRetransmit", `spec/channel.md` §5.4).
//!
//! [`Recovery`] keeps one [`SentRecord`] per tracked DATA datagram in send
//! order, matches incoming `(ASN, acklen)` pairs against them, runs the
//! retransmission timer and maintains the smoothed RTT. Every record leaves
//! the queue exactly once, with one [`Outcome`]: through [`Recovery::on_ack`],
//! [`Recovery::on_timeout`], [`Recovery::on_send_failed`] or
//! [`Recovery::drain_lost`]. Lost datagrams are never retransmitted as such:
//! the caller hands the outcome to the stream layer, which re-sends the bytes
//! in new datagrams.
//!
//! The record carries a caller-chosen `token` of any type `T` (for example the
//! stream layer's handle for the datagram's segments together with the
//! congestion controller's ticket), so nothing is stored as a closure.
//!
//! Pure-ack datagrams (built without pulling the host, §5.2) are not tracked:
//! the channel simply does not call [`Recovery::on_sent`] for them. A datagram
//! whose payload came from the host is tracked even if the host wrote 0 bytes,
//! as in the reference.

// spec: channel.md §5.4

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Outcome;
use super::congestion::RttInfo;
use super::constants::{
    JITTER_ALLOWANCE, MAX_INITIAL_RTT, MAX_RTT, MIN_RTT, REORDER_THRESHOLD, RTT_NEW_SAMPLE_PERCENT,
};
use super::delay::DelayEstimate;
use super::serial::{at_least, diff, is_newer};

/// One tracked DATA datagram (`spec/channel.md` §5.4, queue record).
#[derive(Debug, Clone)]
pub struct SentRecord<T> {
    /// Full (extended) TSN of the datagram; its low 32 bits are the serial
    /// number the peer acknowledges.
    pub tsn: u64,
    /// Stream payload bytes it carried.
    pub bytes: usize,
    /// When it was handed to the socket (a Rust peer stamps at transmission,
    /// §5.4, rather than at the start of the event-loop turn).
    pub sent: Instant,
    /// The RTT estimate when it was sent; bounds the estimate's growth from
    /// this record's sample to a doubling.
    pub rtt_at_send: Duration,
    /// The caller's identification of the datagram.
    pub token: T,
}

impl<T> SentRecord<T> {
    /// The 32-bit serial TSN compared with the peer's ASN.
    pub fn seq(&self) -> u32 {
        self.tsn as u32
    }
}

/// Loss detection, retransmission timer and RTT estimator of one channel
/// establishment (`spec/channel.md` §5.4).
#[derive(Debug, Clone)]
pub struct Recovery<T> {
    /// Outstanding records, oldest (smallest TSN) first.
    queue: VecDeque<SentRecord<T>>,
    /// Smoothed RTT, always within `MIN_RTT ..= MAX_RTT`.
    rtt: Duration,
    /// Raw samples of acknowledged datagrams, for the congestion controller.
    delay: DelayEstimate,
}

impl<T> Recovery<T> {
    /// A new estimator whose initial RTT is `rtt0` (the handshake duration,
    /// §4.7) clamped to `100 ms ..= 10 s`.
    pub fn new(rtt0: Duration) -> Self {
        // spec: channel.md §5.4 (new)
        Recovery {
            queue: VecDeque::new(),
            rtt: rtt0.clamp(MIN_RTT, MAX_INITIAL_RTT),
            delay: DelayEstimate::default(),
        }
    }

    /// The current smoothed RTT.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The smoothed RTT and the raw-sample queueing delay, for the congestion
    /// controller.
    pub fn rtt_info(&self) -> RttInfo {
        RttInfo {
            smoothed: self.rtt,
            queueing: self.delay.queueing(),
            limit: self.delay.limit(),
            recent: self.delay.recent(),
        }
    }

    /// The retransmission timeout, `1.5·RTT + 50 ms`.
    pub fn rto(&self) -> Duration {
        // spec: channel.md §5.4 (reschedule)
        self.rtt + self.rtt / 2 + JITTER_ALLOWANCE
    }

    /// Number of outstanding (tracked, not yet reported) datagrams.
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    /// Iterate over the outstanding records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &SentRecord<T>> {
        self.queue.iter()
    }

    /// Track a DATA datagram that has just been transmitted. TSNs must
    /// increase from call to call (they do: every datagram gets the next TSN).
    pub fn on_sent(&mut self, now: Instant, tsn: u64, bytes: usize, token: T) {
        // spec: channel.md §5.4 (pull: record pushed once the send succeeded)
        debug_assert!(self.queue.back().is_none_or(|r| r.tsn < tsn));
        self.queue.push_back(SentRecord {
            tsn,
            bytes,
            sent: now,
            rtt_at_send: self.rtt,
            token,
        });
    }

    /// The datagram with full TSN `tsn` could not be sent (EMSGSIZE): remove
    /// its record and report [`Outcome::SendFailed`]. No RTT sample is taken.
    /// `None` if no such record is outstanding.
    pub fn on_send_failed(&mut self, tsn: u64) -> Option<(T, Outcome)> {
        // spec: channel.md §5.4 (pull: on_status(MTU) when not sent)
        let i = self.queue.iter().rposition(|r| r.tsn == tsn)?;
        let r = self.queue.remove(i)?;
        Some((r.token, Outcome::SendFailed))
    }

    /// Process the ack fields `(asn, acklen)` of an accepted peer DATA
    /// datagram (32-bit serial values; the range is `[asn − acklen, asn]`).
    ///
    /// Records are examined oldest first: the scan stops at the first one
    /// newer than `asn`; a record inside the range is [`Outcome::Acked`]; one
    /// at least 3 below `asn` and outside the range is [`Outcome::Missing`]
    /// (fast retransmit); the rest (1 or 2 below `asn`, not covered) stay.
    /// Every removed record gives an RTT sample and is passed to `report`
    /// with the RTT knowledge after that sample.
    ///
    /// Afterwards the caller should drain [`Recovery::on_timeout`] (the new
    /// RTT may put the oldest record's deadline in the past).
    pub fn on_ack(
        &mut self,
        now: Instant,
        asn: u32,
        acklen: u8,
        mut report: impl FnMut(T, Outcome, RttInfo),
    ) {
        // spec: channel.md §5.4 (on_packet)
        let low = asn.wrapping_sub(u32::from(acklen));
        let mut i = 0;
        while i < self.queue.len() {
            let seq = self.queue[i].seq();
            if is_newer(seq, asn) {
                break; // keep this and all later (newer) records
            }
            let outcome = if at_least(seq, low) {
                Outcome::Acked
            } else if diff(asn, seq) >= REORDER_THRESHOLD {
                Outcome::Missing
            } else {
                i += 1; // 1 or 2 below asn and not covered: keep in place
                continue;
            };
            let r = self.queue.remove(i).expect("index in bounds");
            self.update_rtt(now, &r);
            if outcome == Outcome::Acked {
                self.delay
                    .on_sample(now, now.saturating_duration_since(r.sent));
            }
            report(r.token, outcome, self.rtt_info());
        }
    }

    // spec: channel.md §5.4 (update_rtt)
    fn update_rtt(&mut self, now: Instant, r: &SentRecord<T>) {
        let sample = now.saturating_duration_since(r.sent);
        let old = 100 - RTT_NEW_SAMPLE_PERCENT;
        let rtt = (self.rtt.saturating_mul(old))
            .saturating_add(sample.saturating_mul(RTT_NEW_SAMPLE_PERCENT))
            / 100;
        let rtt = rtt.clamp(MIN_RTT, MAX_RTT);
        // at most doubling per round trip
        self.rtt = rtt.min(r.rtt_at_send.saturating_mul(2));
    }

    /// Deadline of the retransmission timer: oldest record's `sent + RTO`
    /// (with the current RTT), or `None` when nothing is outstanding.
    pub fn timeout(&self) -> Option<Instant> {
        // spec: channel.md §5.4 (reschedule)
        self.queue.front().map(|r| r.sent + self.rto())
    }

    /// If the retransmission deadline has passed, time out the oldest record
    /// only (as the reference: one record per expiry), take its RTT sample and
    /// report it as [`Outcome::Timeout`]. Call repeatedly until `None`: the
    /// next record's deadline may already have passed too.
    pub fn on_timeout(&mut self, now: Instant) -> Option<(T, Outcome)> {
        // spec: channel.md §5.4 (on_timeout)
        if self.timeout()? > now {
            return None;
        }
        let r = self.queue.pop_front()?;
        self.update_rtt(now, &r);
        Some((r.token, Outcome::Timeout))
    }

    /// Teardown: report every outstanding record as lost
    /// ([`Outcome::Timeout`], as the reference's `destroy`), oldest first.
    /// Afterwards nothing is outstanding and no timer is armed.
    pub fn drain_lost(&mut self) -> impl Iterator<Item = (T, Outcome)> + '_ {
        // spec: channel.md §5.4 (destroy)
        self.queue.drain(..).map(|r| (r.token, Outcome::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const MS: Duration = Duration::from_millis(1);

    fn acks(r: &mut Recovery<u64>, now: Instant, asn: u32, acklen: u8) -> Vec<(u64, Outcome)> {
        let mut v = Vec::new();
        r.on_ack(now, asn, acklen, |t, o, _| v.push((t, o)));
        v
    }

    #[test]
    fn initial_rtt_is_clamped() {
        assert_eq!(Recovery::<()>::new(MS).rtt(), MIN_RTT);
        assert_eq!(Recovery::<()>::new(MS * 250).rtt(), MS * 250);
        assert_eq!(Recovery::<()>::new(MS * 30_000).rtt(), MAX_INITIAL_RTT);
    }

    #[test]
    fn rto_is_one_and_a_half_rtt_plus_50ms() {
        let r = Recovery::<()>::new(MS * 100);
        assert_eq!(r.rto(), MS * 200);
        let r = Recovery::<()>::new(MS * 1000);
        assert_eq!(r.rto(), MS * 1550);
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        assert_eq!(r.timeout(), None);
        r.on_sent(t0, 1, 1444, 1u64);
        r.on_sent(t0 + MS * 5, 2, 1444, 2u64);
        assert_eq!(r.timeout(), Some(t0 + MS * 200), "oldest record");
    }

    #[test]
    fn rtt_ewma_clamp_and_doubling() {
        let t0 = Instant::now();
        // EWMA: 80 % old + 20 % sample
        let mut r = Recovery::new(MS * 500);
        r.on_sent(t0, 1, 100, 1u64);
        acks(&mut r, t0 + MS * 1000, 1, 0);
        assert_eq!(r.rtt(), MS * 600);
        // lower clamp
        let mut r = Recovery::new(MS * 100);
        r.on_sent(t0, 1, 100, 1u64);
        acks(&mut r, t0 + MS, 1, 0);
        assert_eq!(r.rtt(), MIN_RTT);
        // doubling bound: a huge sample at most doubles rtt_at_send
        let mut r = Recovery::new(MS * 100);
        r.on_sent(t0, 1, 100, 1u64);
        acks(&mut r, t0 + MS * 10_000, 1, 0);
        assert_eq!(r.rtt(), MS * 200);
        // upper clamp, reached in three doublings-limited steps from 10 s
        let mut r = Recovery::new(Duration::from_secs(10));
        let mut now = t0;
        for (tsn, want) in [(1u64, 20u64), (2, 40), (3, 60)] {
            r.on_sent(now, tsn, 100, tsn);
            now += Duration::from_secs(400);
            acks(&mut r, now, tsn as u32, 0);
            assert_eq!(r.rtt(), Duration::from_secs(want));
        }
        assert_eq!(r.rtt(), MAX_RTT);
    }

    #[test]
    fn fast_retransmit_threshold() {
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        for tsn in 1..=6 {
            r.on_sent(t0, tsn, 1444, tsn);
        }
        // ASN 4 alone: 1 is 3 below (MISSING), 2 and 3 stay, 5 and 6 newer
        assert_eq!(
            acks(&mut r, t0 + MS, 4, 0),
            vec![(1, Outcome::Missing), (4, Outcome::Acked)]
        );
        assert_eq!(r.iter().map(|x| x.tsn).collect::<Vec<_>>(), [2, 3, 5, 6]);
        // ASN 5 alone: 2 is now 3 below
        assert_eq!(
            acks(&mut r, t0 + MS, 5, 0),
            vec![(2, Outcome::Missing), (5, Outcome::Acked)]
        );
        // a range covering 3..=6
        assert_eq!(
            acks(&mut r, t0 + MS, 6, 3),
            vec![(3, Outcome::Acked), (6, Outcome::Acked)]
        );
        assert_eq!(r.outstanding(), 0);
        assert_eq!(r.timeout(), None);
    }

    #[test]
    fn nothing_acked_by_initial_fields_and_tsn0_range() {
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        r.on_sent(t0, 1, 1444, 1u64);
        r.on_sent(t0, 2, 1444, 2u64);
        assert!(acks(&mut r, t0, 0, 0).is_empty());
        // ASN 2 acklen 2 covers 0..=2 (TSN 0 does not exist)
        assert_eq!(
            acks(&mut r, t0, 2, 2),
            vec![(1, Outcome::Acked), (2, Outcome::Acked)]
        );
    }

    #[test]
    fn spurious_missing_below_a_hole_v9() {
        // V9: TSNs 1..=12 sent, 3 and 4 dropped; first ack after the hole is
        // ASN 12, acklen 7: TSN 2 (delivered, never covered) is MISSING too.
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        for tsn in 1..=12 {
            r.on_sent(t0, tsn, 1444, tsn);
        }
        let got = acks(&mut r, t0 + MS, 1, 1);
        assert_eq!(got, vec![(1, Outcome::Acked)]);
        let got = acks(&mut r, t0 + MS * 2, 12, 7);
        let missing: Vec<u64> = got
            .iter()
            .filter(|x| x.1 == Outcome::Missing)
            .map(|x| x.0)
            .collect();
        let acked: Vec<u64> = got
            .iter()
            .filter(|x| x.1 == Outcome::Acked)
            .map(|x| x.0)
            .collect();
        assert_eq!(missing, [2, 3, 4]);
        assert_eq!(acked, (5..=12).collect::<Vec<_>>());
    }

    #[test]
    fn timeout_chain_of_spec_5_4() {
        // Five records outstanding, their ack lost: each times out separately
        // at sent + 1.5·rtt + 50 ms, rtt 100, 120, 142, 166, 193 ms.
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        for tsn in 1..=5 {
            r.on_sent(t0, tsn, 1444, tsn);
        }
        let us = Duration::from_micros(1);
        let expected_rtt_us = [120_000, 142_000, 166_200, 192_820];
        let expected_fire_us = [200_000, 230_000, 263_000, 299_300, 339_230];
        for (k, fire) in expected_fire_us.into_iter().enumerate() {
            let deadline = r.timeout().expect("armed");
            assert_eq!(deadline, t0 + us * fire);
            assert_eq!(r.on_timeout(deadline - us), None, "not before the deadline");
            assert_eq!(
                r.on_timeout(deadline),
                Some((k as u64 + 1, Outcome::Timeout))
            );
            if let Some(&want) = expected_rtt_us.get(k) {
                assert_eq!(r.rtt(), us * want);
            }
        }
        assert_eq!(r.timeout(), None);
        // the channel was silent for 340 ms (last timeout at 339.23 ms)
    }

    #[test]
    fn overdue_timeouts_are_reported_one_at_a_time() {
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        for tsn in 1..=3 {
            r.on_sent(t0, tsn, 1444, tsn);
        }
        let late = t0 + Duration::from_secs(5);
        let mut seen = Vec::new();
        while let Some((t, o)) = r.on_timeout(late) {
            assert_eq!(o, Outcome::Timeout);
            seen.push(t);
        }
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn send_failed_and_drain() {
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        for tsn in 1..=4 {
            r.on_sent(t0, tsn, 1444, tsn);
        }
        assert_eq!(r.on_send_failed(3), Some((3, Outcome::SendFailed)));
        assert_eq!(r.on_send_failed(3), None);
        assert_eq!(r.rtt(), MS * 100, "no sample");
        let lost: Vec<_> = r.drain_lost().collect();
        assert_eq!(
            lost,
            [
                (1, Outcome::Timeout),
                (2, Outcome::Timeout),
                (4, Outcome::Timeout)
            ]
        );
        assert_eq!(r.outstanding(), 0);
        assert_eq!(r.timeout(), None);
    }

    #[test]
    fn serial_wraparound() {
        let t0 = Instant::now();
        let mut r = Recovery::new(MS * 100);
        let base = (1u64 << 32) - 2; // seqs 0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1
        for k in 0..4 {
            r.on_sent(t0, base + k, 1444, k);
        }
        let got = acks(&mut r, t0, 1, 2);
        assert_eq!(
            got,
            vec![
                (0, Outcome::Missing),
                (1, Outcome::Acked),
                (2, Outcome::Acked),
                (3, Outcome::Acked)
            ]
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send { bytes: usize },
        Ack { back: u32, acklen: u8 },
        Advance { ms: u64 },
        Fail { back: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..1445).prop_map(|bytes| Op::Send { bytes }),
            3 => (0u32..24, 0u8..16).prop_map(|(back, acklen)| Op::Ack { back, acklen }),
            2 => (0u64..400).prop_map(|ms| Op::Advance { ms }),
            1 => (0u64..8).prop_map(|back| Op::Fail { back }),
        ]
    }

    proptest! {
        /// Every tracked datagram gets exactly one outcome by the end.
        #[test]
        fn every_record_reported_exactly_once(ops in proptest::collection::vec(op(), 0..300), start in any::<u32>()) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut r = Recovery::new(MS * 100);
            let mut next_tsn = u64::from(start) + 1;
            let mut count: HashMap<u64, u32> = HashMap::new();
            let mut sent = Vec::new();
            let note = |count: &mut HashMap<u64, u32>, t: u64| *count.entry(t).or_default() += 1;
            for op in ops {
                match op {
                    Op::Send { bytes } => {
                        r.on_sent(now, next_tsn, bytes, next_tsn);
                        sent.push(next_tsn);
                        next_tsn += 1;
                    }
                    Op::Ack { back, acklen } => {
                        let asn = (next_tsn as u32).wrapping_sub(1).wrapping_sub(back);
                        r.on_ack(now, asn, acklen, |t, _, _| note(&mut count, t));
                        while let Some((t, _)) = r.on_timeout(now) { note(&mut count, t); }
                    }
                    Op::Advance { ms } => {
                        now += MS * ms as u32;
                        while let Some((t, o)) = r.on_timeout(now) {
                            prop_assert_eq!(o, Outcome::Timeout);
                            note(&mut count, t);
                        }
                    }
                    Op::Fail { back } => {
                        if let Some((t, o)) = r.on_send_failed(next_tsn.wrapping_sub(1 + back)) {
                            prop_assert_eq!(o, Outcome::SendFailed);
                            note(&mut count, t);
                        }
                    }
                }
                prop_assert!(r.rtt() >= MIN_RTT && r.rtt() <= MAX_RTT);
            }
            for (t, _) in r.drain_lost() { note(&mut count, t); }
            prop_assert_eq!(count.len(), sent.len());
            for t in sent {
                prop_assert_eq!(count.get(&t).copied(), Some(1), "tsn {}", t);
            }
        }
    }
}
