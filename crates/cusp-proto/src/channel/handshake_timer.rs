//! The handshake retransmission timer with exponential backoff, deterministic
//! jitter and death after the last retry (`spec/channel.md` §4.6).

use std::time::{Duration, Instant};

/// What the channel must do when the timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Retransmit the current handshake datagram.
    Retransmit,
    /// The retries are used up: the channel dies.
    Die,
}

/// One channel's handshake timer. Armed at creation, re-armed by every
/// `progress()`, cancelled on reaching ESTABLISHED.
#[derive(Debug, Clone)]
pub struct HandshakeTimer {
    gap: Duration,
    max_retries: u32,
    seed: u64,
    counter: u32,
    deadline: Option<Instant>,
}

impl HandshakeTimer {
    /// A timer armed at `now + delay(0)`.
    pub fn new(now: Instant, gap: Duration, max_retries: u32, seed: u64) -> Self {
        let mut t = HandshakeTimer {
            gap,
            max_retries,
            seed,
            counter: 0,
            deadline: None,
        };
        t.arm(now);
        t
    }

    /// `delay(k) = gap·2^k + jitter_k`, `jitter_k = ((seed·k mod 2^64) >> 1) mod base_k` ns.
    // spec: channel.md §4.6
    pub fn delay(&self, k: u32) -> Duration {
        let base = self
            .gap
            .saturating_mul(1u32.checked_shl(k).unwrap_or(u32::MAX));
        let base_ns = base.as_nanos().min(u128::from(u64::MAX)) as u64;
        let jitter = if base_ns == 0 {
            0
        } else {
            (self.seed.wrapping_mul(u64::from(k)) >> 1) % base_ns
        };
        base + Duration::from_nanos(jitter)
    }

    /// `progress()`: re-arm at `now + delay(counter)`, counter unchanged.
    pub fn arm(&mut self, now: Instant) {
        self.deadline = Some(now + self.delay(self.counter));
    }

    /// Restart the backoff (ESTABLISHED → NOSTATE → SENT) and arm.
    pub fn restart(&mut self, now: Instant) {
        self.counter = 0;
        self.arm(now);
    }

    /// Stop the timer (ESTABLISHED).
    pub fn cancel(&mut self) {
        self.deadline = None;
    }

    /// When the timer fires next, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Number of timer-driven retransmissions so far.
    pub fn retries(&self) -> u32 {
        self.counter
    }

    /// Fire if the deadline has passed: die after the last retry, otherwise
    /// re-arm with the current backoff and count one more retry.
    pub fn poll(&mut self, now: Instant) -> Option<Expiry> {
        if self.deadline? > now {
            return None;
        }
        if self.counter >= self.max_retries {
            self.deadline = None;
            return Some(Expiry::Die);
        }
        self.arm(now);
        self.counter += 1;
        Some(Expiry::Retransmit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::constants::{HANDSHAKE_GAP, HANDSHAKE_RETRANSMISSIONS};

    #[test]
    fn schedule_without_jitter_matches_spec() {
        // seed 0: no jitter. HELLO at 0, retransmissions at 0.5, 1.5, 3.5, ... (each
        // re-arm uses the backoff of the current counter), death at the 9th tick.
        let t0 = Instant::now();
        let mut t = HandshakeTimer::new(t0, HANDSHAKE_GAP, HANDSHAKE_RETRANSMISSIONS, 0);
        let mut fired = Vec::new();
        while let Some(now) = t.deadline() {
            fired.push(((now - t0).as_millis(), t.poll(now).unwrap()));
        }
        let retransmits = fired
            .iter()
            .filter(|(_, e)| *e == Expiry::Retransmit)
            .count();
        assert_eq!(retransmits, 8);
        assert_eq!(fired.last().unwrap().1, Expiry::Die);
        let times: Vec<u128> = fired.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            vec![500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000]
        );
    }

    #[test]
    fn jitter_is_zero_for_first_two_and_bounded() {
        let t = HandshakeTimer::new(Instant::now(), HANDSHAKE_GAP, 8, 0x9e37_79b9_7f4a_7c15);
        assert_eq!(t.delay(0), HANDSHAKE_GAP);
        for k in 1..8 {
            let base = HANDSHAKE_GAP * (1 << k);
            assert!(t.delay(k) >= base && t.delay(k) < base * 2, "k={k}");
        }
    }

    #[test]
    fn progress_rearms_without_counting() {
        let t0 = Instant::now();
        let mut t = HandshakeTimer::new(t0, HANDSHAKE_GAP, 8, 0);
        assert_eq!(t.poll(t0 + Duration::from_millis(499)), None);
        t.arm(t0 + Duration::from_millis(400));
        assert_eq!(t.deadline(), Some(t0 + Duration::from_millis(900)));
        assert_eq!(t.retries(), 0);
        t.cancel();
        assert_eq!(t.poll(t0 + Duration::from_secs(1000)), None);
    }
}
