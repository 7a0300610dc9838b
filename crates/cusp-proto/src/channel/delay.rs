//! Queueing-delay estimate for congestion control (local policy beyond the
//! reference, docs/decisions.md "Delay-gated Reno").
//!
//! The reference's smoothed RTT is clamped to at least 100 ms (§5.4), which
//! hides every queue shorter than that. This estimate keeps raw samples of
//! acknowledged datagrams only:
//!
//! * `min`: the smallest sample of the channel (the path's base RTT);
//! * `recent`: the smallest sample of the current and the previous interval
//!   (an interval lasts `max(min, 10 ms)`). A minimum filter ignores samples
//!   that are late for reasons other than a queue (the 10 ms delayed-ack
//!   timer, an ack covering older datagrams), while a standing queue lifts
//!   every sample.
//!
//! `recent − min` is the queueing delay the channel's own traffic causes.

use std::time::{Duration, Instant};

/// Shortest interval of the recent-minimum filter.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Queueing delay above which a controller should back off: twice the base
/// RTT, clamped to this range.
const LIMIT_RANGE: (Duration, Duration) = (Duration::from_micros(500), Duration::from_millis(100));

/// Raw-RTT minimum filters of one channel.
#[derive(Debug, Clone, Default)]
pub struct DelayEstimate {
    min: Option<Duration>,
    current: Option<Duration>,
    previous: Option<Duration>,
    interval_start: Option<Instant>,
}

impl DelayEstimate {
    /// Records the RTT `sample` of a datagram acknowledged at `now`.
    pub fn on_sample(&mut self, now: Instant, sample: Duration) {
        self.min = Some(self.min.map_or(sample, |m| m.min(sample)));
        let interval = self.min.unwrap_or_default().max(MIN_INTERVAL);
        match self.interval_start {
            Some(start) if now.saturating_duration_since(start) < interval => {}
            Some(start) => {
                // A gap of more than one interval leaves no recent history.
                let adjacent = now.saturating_duration_since(start) < 2 * interval;
                self.previous = if adjacent { self.current } else { None };
                self.current = None;
                self.interval_start = Some(now);
            }
            None => self.interval_start = Some(now),
        }
        self.current = Some(self.current.map_or(sample, |c| c.min(sample)));
    }

    /// The smallest sample so far.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// The smallest sample of the current and the previous interval.
    pub fn recent(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `recent − min`: the standing queue the channel sees.
    pub fn queueing(&self) -> Option<Duration> {
        Some(self.recent()?.saturating_sub(self.min?))
    }

    /// Queueing delay above which a controller should back off: twice the
    /// base RTT within 0.5–100 ms.
    pub fn limit(&self) -> Option<Duration> {
        Some((self.min? * 2).clamp(LIMIT_RANGE.0, LIMIT_RANGE.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn late_samples_do_not_count_as_queue_but_a_standing_queue_does() {
        let t0 = Instant::now();
        let mut d = DelayEstimate::default();
        assert_eq!(d.queueing(), None);
        // Base RTT 1 ms, with a delayed-ack straggler of 11 ms in every interval.
        for i in 0..100u32 {
            let now = t0 + MS * i;
            d.on_sample(now, if i % 7 == 0 { MS * 11 } else { MS });
        }
        assert_eq!(d.min(), Some(MS));
        assert_eq!(d.queueing(), Some(Duration::ZERO));
        assert_eq!(d.limit(), Some(MS * 2));
        // A standing queue of 5 ms lifts every sample; after two intervals the
        // recent minimum shows it.
        for i in 100..130u32 {
            d.on_sample(t0 + MS * i, MS * 6);
        }
        assert_eq!(d.queueing(), Some(MS * 5));
        // The queue drains.
        for i in 130..160u32 {
            d.on_sample(t0 + MS * i, MS);
        }
        assert_eq!(d.queueing(), Some(Duration::ZERO));
    }

    #[test]
    fn limit_is_the_base_rtt_within_bounds() {
        let mut d = DelayEstimate::default();
        d.on_sample(Instant::now(), MS * 40);
        assert_eq!(d.limit(), Some(MS * 80));
        d.on_sample(Instant::now(), MS * 400);
        assert_eq!(d.min(), Some(MS * 40));
        let mut far = DelayEstimate::default();
        far.on_sample(Instant::now(), MS * 400);
        assert_eq!(far.limit(), Some(MS * 100));
        let mut near = DelayEstimate::default();
        near.on_sample(Instant::now(), MS / 10);
        assert_eq!(near.limit(), Some(MS / 2));
    }
}
