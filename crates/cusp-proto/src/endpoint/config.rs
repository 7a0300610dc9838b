//! Endpoint-wide limits: how many channels one socket may hold, and how fast
//! unverified addresses may make it spend state and key agreements
//! (`spec/channel.md` §4.11, remark R13).

use std::time::Duration;

use crate::channel::ChannelConfig;

/// A token bucket's parameters: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held at once (also the initial fill).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        RateLimit { per_second, burst }
    }

    /// Most tokens a bucket with these parameters can hand out over `elapsed`.
    pub fn budget(&self, elapsed: Duration) -> u64 {
        u64::from(self.burst) + (self.per_second * elapsed.as_secs_f64()).floor() as u64
    }
}

/// Settings of an [`Endpoint`](super::Endpoint). `Default` gives the numbers
/// documented on each field.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Settings shared by every channel.
    pub channel: ChannelConfig,
    /// Most channels at once (default 65 536: one per remote address; a
    /// channel without traffic costs well under 1 kB, so this bounds the table
    /// to tens of MB). At the cap, a new inbound datagram first evicts the
    /// oldest unverified channel; if there is none it is dropped and leaves no
    /// state, and [`Endpoint::connect`](super::Endpoint::connect) returns `false`.
    pub max_channels: usize,
    /// Most channels created by an inbound datagram whose address has not yet
    /// proven, by completing a handshake, that it receives what we send
    /// ("half-open"; default 1 024). Beyond it a new unverified channel
    /// **evicts the oldest unverified one** (destroyed silently, as a handshake
    /// timeout would): refusing instead would let a spoofed flood lock out
    /// every legitimate client for the 128-255 s a half-open handshake lives
    /// (§4.6), whereas with eviction a legitimate handshake only has to finish
    /// within the time the flood takes to create this many channels, and a
    /// retransmitted HELLO gets a fresh chance.
    pub max_unverified: usize,
    /// Rate at which a HELLO from an address without a channel may create one
    /// (default 1 000/s, burst 256). Each such channel costs an ephemeral key
    /// (one fixed-base scalar multiplication) even when no key agreement is
    /// admitted; beyond the rate the HELLO is dropped without state and the
    /// peer's retransmission (0.5 s, 1 s, 2 s, ...) tries again.
    pub new_unverified_rate: RateLimit,
    /// Key agreements (HMQV, the expensive part of a handshake) spent on
    /// unverified addresses (default 200/s, burst 64: a few percent of one
    /// core). Used by [`ChannelContext::admit_key_agreement`]
    /// (crate::channel::ChannelContext::admit_key_agreement); a refused HELLO
    /// is answered with a HELLO (the peer then proves its address with a
    /// WELCOME), a refused WELCOME is ignored until retransmitted.
    pub key_agreement_rate: RateLimit,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            channel: ChannelConfig::default(),
            max_channels: 65_536,
            max_unverified: 1_024,
            new_unverified_rate: RateLimit::new(1_000.0, 256),
            key_agreement_rate: RateLimit::new(200.0, 64),
        }
    }
}

impl EndpointConfig {
    /// Sets the channel settings.
    pub fn channel(mut self, channel: ChannelConfig) -> Self {
        self.channel = channel;
        self
    }

    /// Sets [`EndpointConfig::max_channels`].
    pub fn max_channels(mut self, n: usize) -> Self {
        self.max_channels = n;
        self
    }

    /// Sets [`EndpointConfig::max_unverified`].
    pub fn max_unverified(mut self, n: usize) -> Self {
        self.max_unverified = n;
        self
    }

    /// Sets [`EndpointConfig::new_unverified_rate`].
    pub fn new_unverified_rate(mut self, limit: RateLimit) -> Self {
        self.new_unverified_rate = limit;
        self
    }

    /// Sets [`EndpointConfig::key_agreement_rate`].
    pub fn key_agreement_rate(mut self, limit: RateLimit) -> Self {
        self.key_agreement_rate = limit;
        self
    }
}

/// A token bucket over virtual time.
#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Option<std::time::Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(limit: RateLimit) -> Self {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst),
            last: None,
        }
    }

    /// Take one token if there is one.
    pub(super) fn take(&mut self, now: std::time::Instant) -> bool {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens =
                (self.tokens + dt * self.limit.per_second).min(f64::from(self.limit.burst));
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn bucket_bursts_then_refills_at_rate() {
        let t0 = Instant::now();
        let limit = RateLimit::new(10.0, 3);
        let mut b = TokenBucket::new(limit);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!((0..5).filter(|_| b.take(t1)).count(), 2);
        // Never more than the budget over any interval.
        let mut granted = 3 + 2;
        for ms in (260..2000).step_by(10) {
            granted += usize::from(b.take(t0 + Duration::from_millis(ms)));
        }
        assert!(granted as u64 <= limit.budget(Duration::from_millis(1990)));
    }
}
