//! Congestion control (`spec/channel.md` §5.5): the [`CongestionControl`]
//! trait the channel drives, and [`Reno`], the reference's controller.
//!
//! The channel calls [`CongestionControl::on_sent`] for every tracked DATA
//! datagram and keeps the returned ticket with the datagram's
//! [`SentRecord`](super::SentRecord) token; when [`Recovery`](super::Recovery)
//! reports the datagram's [`Outcome`] the ticket goes back through
//! [`CongestionControl::on_outcome`]. Tickets are moved, not copied, so each
//! one can be consumed once.
//!
//! # Float or integer
//!
//! # Delay gate (local policy)
//!
//! [`Reno`] adds one thing to the reference: it reads the queueing delay its own
//! traffic causes ([`RttInfo::queueing`], from raw RTT samples, see
//! [`DelayEstimate`](super::delay::DelayEstimate)). When the standing queue
//! exceeds the limit (twice the path's base RTT, within 0.5–100 ms) it cuts the window
//! by 15 % (and leaves slow start), at most once per recent RTT, and does not
//! grow it meanwhile. Otherwise growth and loss reactions are the
//! reference's, so flows sharing an ordinary bottleneck (a queue of up to one
//! or two BDP) split it as fairly as loss-based Reno does; a lower limit would not
//! (a flow that measured a lower base RTT sees more queue and keeps
//! yielding). Without delay samples it behaves exactly as the reference.
//! This keeps the queue in front of a saturated receiver (or a deep socket
//! buffer) within a few ms on a fast path, so high-priority streams are not stuck behind it
//! (docs/decisions.md "Delay-gated Reno").
//!
//! The reference keeps `cwnd`, `ssthresh` and `in_flight` as 32-bit floats
//! (remark R16). [`Reno`] keeps `cwnd` and `ssthresh` as `f32` so that window
//! growth (`bytes²/cwnd` in congestion avoidance, rounded to 24 bits of
//! mantissa) and the exact "ssthresh unchanged since send" test behave as in
//! the reference (a residual sub-datagram difference against the reference in
//! congestion avoidance is still open, §5.5 / Q7, and single precision is a
//! candidate cause). `in_flight` is an exact `u64` byte count instead: in
//! `f32` the count would drift once it exceeds 2^24 bytes (16 MiB) and might
//! never return to 0; below that the two are identical. Comparisons between
//! `in_flight` and `cwnd` are made in `f64`, which is exact for both.

// spec: channel.md §5.5

use std::time::{Duration, Instant};

use super::Outcome;
use super::constants::{DATAGRAM_OVERHEAD, INITIAL_CWND, MAX_CWND, MIN_CWND};

/// A congestion controller as the channel drives it: per-datagram accounting
/// at send time, one outcome per datagram, and a gate for new data.
///
/// Enough for the reference's Reno and for window-based successors (Cubic
/// needs the RTT and the time, which [`on_outcome`](Self::on_outcome)
/// receives); a pacing controller can additionally override
/// [`next_send_time`](Self::next_send_time).
pub trait CongestionControl {
    /// State captured for one datagram at send time and handed back with its
    /// outcome (e.g. its size and the window generation it was sent in).
    type Ticket;

    /// A tracked DATA datagram carrying `payload` stream bytes is being
    /// transmitted at `now`. The controller adds its own per-datagram
    /// overhead.
    fn on_sent(&mut self, now: Instant, payload: usize) -> Self::Ticket;

    /// The datagram of `ticket` left the network with `outcome` (exactly once
    /// per ticket). `rtt` is the channel's RTT knowledge after that datagram's
    /// sample.
    fn on_outcome(&mut self, now: Instant, ticket: Self::Ticket, outcome: Outcome, rtt: RttInfo);

    /// Whether the window admits another datagram carrying new stream data
    /// (`in_flight < cwnd`, §5.2). Pure acks are sent regardless.
    fn window_open(&self) -> bool;

    /// The congestion window in bytes (rounded down).
    fn cwnd(&self) -> u64;

    /// Bytes counted as in flight (payload plus per-datagram overhead).
    fn in_flight(&self) -> u64;

    /// Earliest time the next datagram may be sent, for pacing controllers;
    /// `None` (the default) means "now, if the window is open".
    fn next_send_time(&self, _now: Instant) -> Option<Instant> {
        None
    }
}

/// What the channel knows about round-trip times when it reports an outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttInfo {
    /// The reference's smoothed RTT (never below 100 ms, §5.4).
    pub smoothed: Duration,
    /// Standing queueing delay from raw samples (`None` before the first ack).
    pub queueing: Option<Duration>,
    /// Queueing delay above which the window shrinks.
    pub limit: Option<Duration>,
    /// Recent raw RTT: the pace of delay reactions.
    pub recent: Option<Duration>,
}

impl RttInfo {
    /// The standing queue exceeds the limit.
    fn queue_above_limit(&self) -> bool {
        matches!((self.queueing, self.limit), (Some(q), Some(l)) if q > l)
    }
}

/// Factor of a delay cut.
const DELAY_CUT: f32 = 0.85;
/// A delay cut never takes the window below four full datagrams.
const DELAY_CUT_FLOOR: f32 = 4.0 * 1496.0;

/// Per-datagram state of [`Reno`]: what §5.5's `pull` captures for its
/// outcome callback.
#[derive(Debug, PartialEq)]
pub struct RenoTicket {
    /// Bytes counted: payload + 52.
    bytes: u32,
    /// `in_flight + 2·bytes > cwnd` right after this datagram was counted:
    /// only acks of such datagrams grow the window.
    nearly_full: bool,
    /// `ssthresh` at send time: a loss reduces the window only if it is
    /// unchanged (one reduction per generation).
    ssthresh_at_send: f32,
}

impl RenoTicket {
    /// Bytes this datagram counts in the window (payload + 52).
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

/// The reference's Reno variant (`cusp/channel/reno.fun`, `spec/channel.md`
/// §5.5).
#[derive(Debug, Clone)]
pub struct Reno {
    cwnd: f32,
    ssthresh: f32,
    in_flight: u64,
    /// Time of the last delay cut.
    delay_cut_at: Option<Instant>,
}

impl Default for Reno {
    fn default() -> Self {
        Self::new()
    }
}

impl Reno {
    /// Initial state: `cwnd = 15000`, `ssthresh = 1e9`, nothing in flight.
    pub fn new() -> Self {
        // spec: channel.md §5.5 (initial state)
        Reno {
            cwnd: INITIAL_CWND,
            ssthresh: MAX_CWND,
            in_flight: 0,
            delay_cut_at: None,
        }
    }

    /// The slow-start threshold in bytes (exact `f32` value).
    pub fn ssthresh(&self) -> f32 {
        self.ssthresh
    }

    /// The congestion window in bytes (exact `f32` value).
    pub fn cwnd_exact(&self) -> f32 {
        self.cwnd
    }

    /// Shrinks the window by [`DELAY_CUT`] unless it was cut less than one
    /// recent RTT ago.
    fn delay_cut(&mut self, now: Instant, rtt: RttInfo) {
        let pace = rtt.recent.unwrap_or(rtt.smoothed);
        if self
            .delay_cut_at
            .is_some_and(|t| now.saturating_duration_since(t) < pace)
        {
            return;
        }
        self.delay_cut_at = Some(now);
        if self.cwnd > DELAY_CUT_FLOOR {
            self.cwnd = (self.cwnd * DELAY_CUT).max(DELAY_CUT_FLOOR);
        }
        self.ssthresh = self.cwnd;
    }

    /// Half the bytes in flight, at least `MIN_CWND`.
    fn half_in_flight(&self) -> f32 {
        ((self.in_flight as f64 / 2.0) as f32).max(MIN_CWND)
    }
}

impl CongestionControl for Reno {
    type Ticket = RenoTicket;

    fn on_sent(&mut self, _now: Instant, payload: usize) -> RenoTicket {
        // spec: channel.md §5.5 (pull)
        let bytes = u32::try_from(payload)
            .unwrap_or(u32::MAX)
            .saturating_add(DATAGRAM_OVERHEAD);
        self.in_flight += u64::from(bytes);
        let nearly_full = (self.in_flight + 2 * u64::from(bytes)) as f64 > f64::from(self.cwnd);
        RenoTicket {
            bytes,
            nearly_full,
            ssthresh_at_send: self.ssthresh,
        }
    }

    fn on_outcome(&mut self, now: Instant, ticket: RenoTicket, outcome: Outcome, rtt: RttInfo) {
        // spec: channel.md §5.5 (outcome callback)
        let same_generation = self.ssthresh.to_bits() == ticket.ssthresh_at_send.to_bits();
        match outcome {
            Outcome::Acked => {
                if rtt.queue_above_limit() {
                    self.delay_cut(now, rtt);
                } else if ticket.nearly_full {
                    let b = ticket.bytes as f32;
                    let growth = if self.cwnd < self.ssthresh {
                        b // slow start
                    } else {
                        b * b / self.cwnd // congestion avoidance
                    };
                    self.cwnd = (self.cwnd + growth).min(MAX_CWND);
                }
            }
            Outcome::Timeout => {
                if same_generation {
                    // in_flight still includes the lost datagram
                    let w = self.half_in_flight();
                    self.cwnd = MIN_CWND;
                    self.ssthresh = w;
                }
            }
            Outcome::Missing => {
                if same_generation {
                    let w = self.half_in_flight();
                    self.cwnd = w;
                    self.ssthresh = w;
                }
            }
            Outcome::SendFailed => {}
        }
        debug_assert!(self.in_flight >= u64::from(ticket.bytes));
        self.in_flight = self.in_flight.saturating_sub(u64::from(ticket.bytes));
    }

    fn window_open(&self) -> bool {
        (self.in_flight as f64) < f64::from(self.cwnd)
    }

    fn cwnd(&self) -> u64 {
        self.cwnd as u64
    }

    fn in_flight(&self) -> u64 {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::STREAM_BUDGET;

    const RTT: RttInfo = RttInfo {
        smoothed: Duration::from_millis(100),
        queueing: None,
        limit: None,
        recent: None,
    };

    /// Send full datagrams while the window is open; return their tickets.
    fn fill(r: &mut Reno, now: Instant) -> Vec<RenoTicket> {
        let mut v = Vec::new();
        while r.window_open() {
            v.push(r.on_sent(now, STREAM_BUDGET));
            assert!(v.len() < 10_000);
        }
        v
    }

    #[test]
    fn initial_window_lets_exactly_11_full_datagrams_out() {
        let now = Instant::now();
        let mut r = Reno::new();
        assert_eq!(r.cwnd(), 15_000);
        let t = fill(&mut r, now);
        assert_eq!(t.len(), 11);
        assert_eq!(t[0].bytes(), 1496);
        assert_eq!(r.in_flight(), 11 * 1496);
        // only datagrams sent with the window nearly used up grow it
        let nearly: Vec<bool> = t.iter().map(|x| x.nearly_full).collect();
        assert_eq!(nearly.iter().filter(|&&b| b).count(), 3, "{nearly:?}");
    }

    #[test]
    fn app_limited_acks_do_not_grow_the_window() {
        let now = Instant::now();
        let mut r = Reno::new();
        for _ in 0..100 {
            let t = r.on_sent(now, 100);
            r.on_outcome(now, t, Outcome::Acked, RTT);
        }
        assert_eq!(r.cwnd(), 15_000);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn slow_start_and_congestion_avoidance_growth() {
        let now = Instant::now();
        let mut r = Reno::new();
        let t = fill(&mut r, now);
        for x in t {
            r.on_outcome(now, x, Outcome::Acked, RTT);
        }
        assert_eq!(
            r.cwnd(),
            15_000 + 3 * 1496,
            "slow start: +bytes per nearly-full ack"
        );
        // congestion avoidance after a reduction: +bytes²/cwnd
        let t = fill(&mut r, now);
        let mut it = t.into_iter();
        r.on_outcome(now, it.next().unwrap(), Outcome::Missing, RTT);
        let w = r.cwnd_exact();
        assert_eq!(r.ssthresh(), w);
        let rest: Vec<_> = it.collect();
        let before = r.cwnd_exact();
        let mut expect = before;
        for x in rest {
            if x.nearly_full {
                expect += 1496.0 * 1496.0 / expect;
            }
            r.on_outcome(now, x, Outcome::Acked, RTT);
        }
        assert_eq!(r.cwnd_exact(), expect);
        assert!(r.cwnd_exact() > before);
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn missing_halves_once_per_generation() {
        let now = Instant::now();
        let mut r = Reno::new();
        let t = fill(&mut r, now);
        let mut it = t.into_iter();
        // in_flight = 16456 including the lost datagram → w = 8228
        r.on_outcome(now, it.next().unwrap(), Outcome::Missing, RTT);
        assert_eq!(r.cwnd_exact(), 8228.0);
        assert_eq!(r.ssthresh(), 8228.0);
        assert_eq!(r.in_flight(), 10 * 1496);
        // further losses of the same generation change nothing
        r.on_outcome(now, it.next().unwrap(), Outcome::Missing, RTT);
        r.on_outcome(now, it.next().unwrap(), Outcome::Timeout, RTT);
        assert_eq!(r.cwnd_exact(), 8228.0);
        assert_eq!(r.ssthresh(), 8228.0);
        // a datagram of the new generation can reduce again
        let fresh = r.on_sent(now, STREAM_BUDGET);
        let in_flight = r.in_flight();
        r.on_outcome(now, fresh, Outcome::Missing, RTT);
        assert_eq!(r.cwnd_exact(), (in_flight / 2) as f32);
        for x in it {
            r.on_outcome(now, x, Outcome::Acked, RTT);
        }
        assert_eq!(r.in_flight(), 0);
    }

    #[test]
    fn timeout_sets_cwnd_to_one_byte_then_slow_start_1_2_3() {
        // V9: five datagrams outstanding (4 full, 1 shorter), their ack lost;
        // each times out, then slow start from 1 byte.
        let now = Instant::now();
        let mut r = Reno::new();
        let mut out: Vec<RenoTicket> = [1444, 1444, 1432, 1444, 1444]
            .into_iter()
            .map(|p| r.on_sent(now, p))
            .collect();
        let first = out.remove(0);
        r.on_outcome(now, first, Outcome::Timeout, RTT);
        assert_eq!(r.cwnd_exact(), 1.0);
        assert_eq!(r.ssthresh(), (4 * 1496 + 1484) as f32 / 2.0);
        // nothing can be sent until in_flight reaches 0
        for x in out {
            assert!(!r.window_open());
            r.on_outcome(now, x, Outcome::Timeout, RTT);
        }
        assert_eq!(r.cwnd_exact(), 1.0, "one reduction per generation");
        assert!(r.window_open());
        // one datagram ...
        let a = r.on_sent(now, 1444);
        assert!(!r.window_open());
        r.on_outcome(now, a, Outcome::Acked, RTT);
        assert_eq!(r.cwnd_exact(), 1497.0);
        // ... two after its ack (V9: TSN 19 full, TSN 20 with 1432 bytes) ...
        let b = r.on_sent(now, 1444);
        assert!(r.window_open());
        let c = r.on_sent(now, 1432);
        assert!(!r.window_open());
        r.on_outcome(now, b, Outcome::Acked, RTT);
        r.on_outcome(now, c, Outcome::Acked, RTT);
        assert_eq!(r.cwnd_exact(), 1497.0 + 1496.0 + 1484.0);
        // ... three after theirs (with three full datagrams in flight
        // 4488 ≥ 4477; had TSN 20 been full, a fourth would fit)
        let d = fill(&mut r, now);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn send_failed_only_releases_in_flight() {
        let now = Instant::now();
        let mut r = Reno::new();
        let t = r.on_sent(now, 5000);
        assert_eq!(r.in_flight(), 5052);
        r.on_outcome(now, t, Outcome::SendFailed, RTT);
        assert_eq!(r.in_flight(), 0);
        assert_eq!(r.cwnd(), 15_000);
        assert_eq!(r.ssthresh(), 1e9);
    }

    #[test]
    fn cwnd_is_capped_and_floored() {
        let now = Instant::now();
        let mut r = Reno::new();
        r.cwnd = MAX_CWND - 10.0;
        let t = r.on_sent(now, 1444);
        let t = RenoTicket {
            nearly_full: true,
            ..t
        };
        r.on_outcome(now, t, Outcome::Acked, RTT);
        assert!(r.cwnd_exact() <= MAX_CWND);
        // a loss with a single empty datagram in flight: w = in_flight / 2
        let mut r = Reno::new();
        let t = r.on_sent(now, 0);
        r.on_outcome(now, t, Outcome::Missing, RTT);
        assert_eq!(r.cwnd_exact(), 26.0);
    }
}
