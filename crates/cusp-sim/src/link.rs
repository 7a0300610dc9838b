//! One-directional links: configuration, impairments, queueing state and statistics.
//!
//! A datagram crossing a link goes through, in order: the up/down switch, the loss model,
//! the drop-tail queue and serialisation (when a bandwidth is set), duplication, and then
//! per copy: bit corruption, propagation delay with jitter, and optional reordering.

use std::collections::VecDeque;
use std::time::Duration;

use crate::rng::Rng;
use crate::trace::DropReason;

/// Identifies a link within one [`Sim`](crate::Sim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub usize);

/// How a link decides to lose datagrams.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum LossModel {
    /// Nothing is lost.
    #[default]
    None,
    /// Each datagram is lost independently with this probability.
    Bernoulli(f64),
    /// Gilbert–Elliott two-state burst loss. The state changes (with the given probabilities)
    /// before each datagram, which is then lost with the loss probability of the new state.
    /// Stationary loss rate: `(p_good_to_bad * loss_bad + p_bad_to_good * loss_good) /
    /// (p_good_to_bad + p_bad_to_good)`; mean time in the bad state: `1 / p_bad_to_good`.
    GilbertElliott {
        /// Probability of moving from the good to the bad state per datagram.
        p_good_to_bad: f64,
        /// Probability of moving from the bad to the good state per datagram.
        p_bad_to_good: f64,
        /// Loss probability while good.
        loss_good: f64,
        /// Loss probability while bad.
        loss_bad: f64,
    },
}

/// Configuration of one direction of a link. Changes take effect for datagrams entering
/// the link afterwards.
///
/// Defaults: 10 ms one-way latency (a short continental path), no jitter, unlimited
/// bandwidth, a 64 KiB queue (only used once a bandwidth is set), 28 bytes of per-datagram
/// overhead (IPv4 + UDP headers, as the spec's rate limiter counts them), no impairments.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per datagram. Jitter never reorders:
    /// a datagram does not overtake one that entered the link before it (as with queueing
    /// delay on a real path); use `reorder` for that.
    pub jitter: Duration,
    /// Serialisation rate in bits per second; `None` means infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Drop-tail limit on the bytes waiting or being serialised (including overhead);
    /// `None` means unbounded. Only meaningful with a bandwidth.
    pub queue_limit_bytes: Option<usize>,
    /// Bytes added to each datagram's length for serialisation and queue accounting.
    pub overhead_bytes: usize,
    /// How datagrams are lost.
    pub loss: LossModel,
    /// Probability that a datagram is delivered twice (the copy has its own jitter).
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, letting later ones pass.
    pub reorder: f64,
    /// Extra delay of reordered datagrams.
    pub reorder_delay: Duration,
    /// Probability that a datagram has bits flipped.
    pub corrupt: f64,
    /// A corrupted datagram has between 1 and this many distinct bits flipped (uniformly).
    pub corrupt_max_bits: u32,
    /// When false the link drops everything (a partition).
    pub up: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            bandwidth_bps: None,
            queue_limit_bytes: Some(64 * 1024),
            overhead_bytes: 28,
            loss: LossModel::None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            corrupt: 0.0,
            corrupt_max_bits: 1,
            up: true,
        }
    }
}

impl LinkConfig {
    /// Sets the one-way latency.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// Sets the jitter bound.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
    /// Sets the bandwidth in bits per second.
    pub fn bandwidth(mut self, bps: u64) -> Self {
        self.bandwidth_bps = Some(bps);
        self
    }
    /// Sets the drop-tail queue limit in bytes.
    pub fn queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit_bytes = Some(bytes);
        self
    }
    /// Sets the per-datagram overhead in bytes.
    pub fn overhead(mut self, bytes: usize) -> Self {
        self.overhead_bytes = bytes;
        self
    }
    /// Independent loss with probability `p`.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = LossModel::Bernoulli(p);
        self
    }
    /// Sets any loss model.
    pub fn loss_model(mut self, model: LossModel) -> Self {
        self.loss = model;
        self
    }
    /// Sets the duplication probability.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
    /// Holds back a fraction `p` of datagrams by `delay`.
    pub fn reorder(mut self, p: f64, delay: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }
    /// Corrupts a fraction `p` of datagrams with 1..=`max_bits` flipped bits.
    pub fn corrupt(mut self, p: f64, max_bits: u32) -> Self {
        self.corrupt = p;
        self.corrupt_max_bits = max_bits.max(1);
        self
    }
    /// Brings the link up or down.
    pub fn up(mut self, up: bool) -> Self {
        self.up = up;
        self
    }

    /// Serialisation time of `wire_bytes` at the configured bandwidth (rounded up to 1 ns).
    pub fn serialisation_time(&self, wire_bytes: usize) -> Duration {
        match self.bandwidth_bps {
            None | Some(0) => Duration::ZERO,
            Some(bps) => {
                let bits = wire_bytes as u128 * 8 * 1_000_000_000;
                let nanos = bits.div_ceil(u128::from(bps));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }
}

/// Counters of one link. Byte counts are datagram payload bytes (without overhead).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams that entered the link.
    pub entered: u64,
    /// Payload bytes that entered the link.
    pub entered_bytes: u64,
    /// Datagrams (including duplicates) that reached the far end.
    pub delivered: u64,
    /// Payload bytes that reached the far end.
    pub delivered_bytes: u64,
    /// Dropped by the loss model.
    pub dropped_loss: u64,
    /// Dropped because the queue was full.
    pub dropped_queue: u64,
    /// Dropped because the link was down.
    pub dropped_down: u64,
    /// Extra copies created.
    pub duplicated: u64,
    /// Copies that had bits flipped.
    pub corrupted: u64,
    /// Copies held back for reordering.
    pub reordered: u64,
    /// Largest queue occupancy seen, in bytes including overhead and the datagram being sent.
    pub max_queue_bytes: usize,
}

impl LinkStats {
    /// Datagrams dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_down
    }
}

/// What happens to one copy of a datagram that made it through the queue.
#[derive(Debug)]
pub(crate) struct CopyFate {
    /// When it reaches the far end.
    pub arrival: Duration,
    /// Bit positions flipped (empty if not corrupted).
    pub flipped: Vec<usize>,
    /// Whether it was held back.
    pub reordered: bool,
}

/// A link's configuration plus its mutable state.
#[derive(Debug)]
pub(crate) struct Link {
    pub cfg: LinkConfig,
    pub stats: LinkStats,
    rng: Rng,
    busy_until: Duration,
    /// (serialisation finish time, wire bytes) of datagrams still in the queue.
    in_queue: VecDeque<(Duration, usize)>,
    queued_bytes: usize,
    last_arrival: Duration,
    gilbert_bad: bool,
}

impl Link {
    pub fn new(cfg: LinkConfig, rng: Rng) -> Self {
        Self {
            cfg,
            stats: LinkStats::default(),
            rng,
            busy_until: Duration::ZERO,
            in_queue: VecDeque::new(),
            queued_bytes: 0,
            last_arrival: Duration::ZERO,
            gilbert_bad: false,
        }
    }

    /// Bytes (with overhead) queued or being serialised at `now`.
    pub fn queue_bytes(&mut self, now: Duration) -> usize {
        while let Some(&(finish, bytes)) = self.in_queue.front() {
            if finish > now {
                break;
            }
            self.in_queue.pop_front();
            self.queued_bytes -= bytes;
        }
        self.queued_bytes
    }

    fn lost(&mut self) -> bool {
        match self.cfg.loss {
            LossModel::None => false,
            LossModel::Bernoulli(p) => self.rng.chance(p),
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.gilbert_bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if self.rng.chance(flip) {
                    self.gilbert_bad = !self.gilbert_bad;
                }
                self.rng.chance(if self.gilbert_bad {
                    loss_bad
                } else {
                    loss_good
                })
            }
        }
    }

    /// Admits a datagram of `len` payload bytes at `now`: returns when its serialisation
    /// ends, or why it was dropped.
    pub fn admit(&mut self, now: Duration, len: usize) -> Result<Duration, DropReason> {
        self.stats.entered += 1;
        self.stats.entered_bytes += len as u64;
        if !self.cfg.up {
            self.stats.dropped_down += 1;
            return Err(DropReason::LinkDown);
        }
        if self.lost() {
            self.stats.dropped_loss += 1;
            return Err(DropReason::Loss);
        }
        if self.cfg.bandwidth_bps.is_none() {
            return Ok(now);
        }
        let wire = len + self.cfg.overhead_bytes;
        let queued = self.queue_bytes(now);
        if self
            .cfg
            .queue_limit_bytes
            .is_some_and(|limit| queued + wire > limit)
        {
            self.stats.dropped_queue += 1;
            return Err(DropReason::QueueFull);
        }
        let finish = self.busy_until.max(now) + self.cfg.serialisation_time(wire);
        self.busy_until = finish;
        self.in_queue.push_back((finish, wire));
        self.queued_bytes += wire;
        self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(self.queued_bytes);
        Ok(finish)
    }

    /// Whether an admitted datagram gets an extra copy.
    pub fn duplicates(&mut self) -> bool {
        let dup = self.rng.chance(self.cfg.duplicate);
        if dup {
            self.stats.duplicated += 1;
        }
        dup
    }

    /// Decides corruption and delay for one copy of a `len`-byte datagram whose serialisation
    /// ended at `departure`.
    pub fn copy_fate(&mut self, departure: Duration, len: usize) -> CopyFate {
        let mut flipped = Vec::new();
        if len > 0 && self.rng.chance(self.cfg.corrupt) {
            let total_bits = len * 8;
            let max = (self.cfg.corrupt_max_bits.max(1) as usize).min(total_bits);
            let n = self.rng.range_inclusive(1, max as u64) as usize;
            while flipped.len() < n {
                let bit = self.rng.below(total_bits as u64) as usize;
                if !flipped.contains(&bit) {
                    flipped.push(bit);
                }
            }
            self.stats.corrupted += 1;
        }
        let mut arrival = departure + self.cfg.latency + self.rng.duration_up_to(self.cfg.jitter);
        let reordered = self.rng.chance(self.cfg.reorder);
        if reordered {
            self.stats.reordered += 1;
            arrival += self.cfg.reorder_delay;
        } else {
            arrival = arrival.max(self.last_arrival);
            self.last_arrival = arrival;
        }
        CopyFate {
            arrival,
            flipped,
            reordered,
        }
    }
}

/// Flips the given bit positions (bit 0 is the most significant bit of byte 0).
pub(crate) fn flip_bits(data: &mut [u8], bits: &[usize]) {
    for &bit in bits {
        data[bit / 8] ^= 0x80 >> (bit % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialisation_time_is_exact() {
        let cfg = LinkConfig::default().bandwidth(8_000_000);
        // 1000 bytes at 1 MB/s = 1 ms.
        assert_eq!(cfg.serialisation_time(1000), Duration::from_millis(1));
        assert_eq!(
            LinkConfig::default().serialisation_time(1000),
            Duration::ZERO
        );
    }

    #[test]
    fn queue_is_drop_tail_in_bytes() {
        let cfg = LinkConfig::default()
            .bandwidth(8_000)
            .queue_limit(300)
            .overhead(0);
        let mut link = Link::new(cfg, Rng::new(1));
        let t0 = Duration::ZERO;
        assert_eq!(link.admit(t0, 100), Ok(Duration::from_millis(100)));
        assert_eq!(link.admit(t0, 100), Ok(Duration::from_millis(200)));
        assert_eq!(link.admit(t0, 100), Ok(Duration::from_millis(300)));
        assert_eq!(link.admit(t0, 1), Err(DropReason::QueueFull));
        // After the first one is serialised there is room again.
        assert_eq!(
            link.admit(Duration::from_millis(100), 100),
            Ok(Duration::from_millis(400))
        );
        assert_eq!(link.stats.max_queue_bytes, 300);
        assert_eq!(link.stats.dropped_queue, 1);
    }

    #[test]
    fn corruption_flips_between_one_and_max_distinct_bits() {
        let cfg = LinkConfig::default().corrupt(1.0, 5);
        let mut link = Link::new(cfg, Rng::new(9));
        for _ in 0..200 {
            let fate = link.copy_fate(Duration::ZERO, 4);
            assert!((1..=5).contains(&fate.flipped.len()));
            let mut data = [0u8; 4];
            flip_bits(&mut data, &fate.flipped);
            let ones: u32 = data.iter().map(|b| b.count_ones()).sum();
            assert_eq!(ones as usize, fate.flipped.len());
        }
    }

    #[test]
    fn jitter_does_not_reorder() {
        let cfg = LinkConfig::default().jitter(Duration::from_millis(50));
        let mut link = Link::new(cfg, Rng::new(5));
        let mut last = Duration::ZERO;
        for i in 0..500u64 {
            let fate = link.copy_fate(Duration::from_micros(i * 100), 10);
            assert!(fate.arrival >= last);
            last = fate.arrival;
        }
    }
}
