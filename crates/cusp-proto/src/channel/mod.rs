//! Reliability machinery of a CUSP channel (`spec/channel.md` §5): ack
//! generation, loss detection with RTT estimation, and congestion control.
//!
//! Everything here is sans-IO: time is an [`std::time::Instant`] argument,
//! timers are exposed as deadlines, and outcomes are handed back to the caller
//! instead of being delivered through stored callbacks.
//!
//! * [`constants`]: the numbers of §5.6 that concern reliability and timing.
//! * [`ack`]: [`AckGenerator`], the receive side ("DelayedAck", §5.3).
//! * [`recovery`]: [`Recovery`], loss detection and RTT ("FastRetransmit", §5.4).
//! * [`congestion`]: the [`CongestionControl`] trait and [`Reno`] (§5.5).
//!
//! # Driving the pieces (one channel)
//!
//! Building a DATA datagram (`spec/channel.md` §4.8, §5.3 `pull`), with
//! `tokens: Recovery<(HostToken, RenoTicket)>`:
//!
//! ```text
//! tsn += 1
//! if host priority ≥ 0 and cc.window_open():
//!     (filled, host_token) = host.pull(&mut buf[..STREAM_BUDGET])
//!     ticket = cc.on_sent(now, filled)
//!     recovery.on_sent(now, tsn, filled, (host_token, ticket))
//! else:                                   -- pure ack: not tracked
//!     filled = 0
//! (asn, acklen) = acks.take_ack(now)
//! seal W1(finish, tsn), W2(acklen, asn), payload[..filled]
//! if the socket reports EMSGSIZE: recovery.on_send_failed(tsn) -> report
//! ```
//!
//! Receiving an authenticated DATA datagram (peer `tsn`, `asn`, `acklen`,
//! low 32 bits of the extended values, §2.9):
//!
//! ```text
//! if !acks.classify(tsn).is_processed(): stop  -- duplicate / too old
//! report = |(host_token, ticket), outcome| {
//!     cc.on_outcome(now, ticket, outcome, rtt); host.outcome(host_token, outcome.is_acked()) }
//! recovery.on_ack(now, asn, acklen, report)
//! while let Some(r) = recovery.on_timeout(now): report(r)
//! accepted = host.recv(payload)
//! acks.record(now, tsn, accepted, !payload.is_empty())
//! if acks.ack_urgent(): build a datagram before handing in the next one
//! ```
//!
//! Timers: the channel's next deadline is the earliest of
//! [`AckGenerator::deadline`] and [`Recovery::timeout`]; when it passes, call
//! [`AckGenerator::on_timeout`] and drain [`Recovery::on_timeout`]. The channel
//! wants to send (priority +∞, §5.2) while [`AckGenerator::wants_ack`].
//! Teardown: report everything from [`Recovery::drain_lost`].

// spec: channel.md §5

pub mod ack;
pub mod config;
pub mod congestion;
pub mod constants;
pub mod context;
pub mod delay;
pub mod established;
pub mod handshake_timer;
pub mod negotiation;
pub mod recovery;

pub use ack::{AckGenerator, Arrival};
pub use config::ChannelConfig;
pub use congestion::{CongestionControl, Reno, RenoTicket, RttInfo};
pub use context::{ChannelContext, EstablishedInfo, PacketId};
pub use established::ChannelStats;
pub use negotiation::{Channel, ChannelState, MIN_TRANSMIT_BUFFER};
pub use recovery::{Recovery, SentRecord};

use crate::wire::MAX_TOKEN_LEN;

/// The last `min(16, len)` bytes of a datagram we sent: the token a NOSTATE
/// must echo to be accepted (`spec/channel.md` §2.6, §4.2 `tail`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tail {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Tail {
    /// No datagram sent yet: matches no token (received tokens are never empty).
    pub const EMPTY: Tail = Tail {
        len: 0,
        bytes: [0; MAX_TOKEN_LEN],
    };

    /// The tail of `datagram`.
    pub fn of(datagram: &[u8]) -> Tail {
        let n = datagram.len().min(MAX_TOKEN_LEN);
        let mut bytes = [0; MAX_TOKEN_LEN];
        bytes[..n].copy_from_slice(&datagram[datagram.len() - n..]);
        Tail {
            len: n as u8,
            bytes,
        }
    }

    /// The token bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Length of the token.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for [`Tail::EMPTY`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A received NOSTATE token echoes this tail: same length, same bytes,
    /// compared in constant time. An empty tail matches nothing.
    pub fn matches(&self, token: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        !self.is_empty() && bool::from(self.as_slice().ct_eq(token))
    }
}

/// The fate of one tracked datagram, reported exactly once per datagram
/// (`spec/channel.md` §5.1: `ACK`, `MISSING`, `TIMEOUT`, `MTU`).
///
/// Only [`Outcome::Acked`] means "delivered" to the stream layer; every other
/// variant is `on_outcome(false)` there, and the stream layer re-sends the
/// bytes in new datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Covered by an acknowledgement range `[ASN − acklen, ASN]`.
    Acked,
    /// Fast retransmit: an ack with `ASN − seq ≥ 3` did not cover it.
    Missing,
    /// The retransmission timeout expired, or the channel was torn down with
    /// the datagram outstanding.
    Timeout,
    /// The datagram could not be sent (EMSGSIZE; the reference's `MTU`).
    SendFailed,
}

impl Outcome {
    /// `true` only for [`Outcome::Acked`]: the boolean the stream layer sees.
    pub fn is_acked(self) -> bool {
        matches!(self, Outcome::Acked)
    }
}

/// 32-bit serial-number arithmetic (`spec/channel.md` §0.1).
pub mod serial {
    // spec: channel.md §0.1

    /// The u32 difference `d(a, b) = (a − b) mod 2^32`.
    #[inline]
    pub fn diff(a: u32, b: u32) -> u32 {
        a.wrapping_sub(b)
    }

    /// `a` is newer than `b`: `d(b, a) ≥ 2^31`.
    #[inline]
    pub fn is_newer(a: u32, b: u32) -> bool {
        diff(b, a) >= 1 << 31
    }

    /// `a ≥ b` in serial order: `d(a, b) < 2^31`.
    #[inline]
    pub fn at_least(a: u32, b: u32) -> bool {
        diff(a, b) < 1 << 31
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn serial_order_wraps() {
            assert!(is_newer(1, 0));
            assert!(!is_newer(0, 0));
            assert!(is_newer(0, u32::MAX));
            assert!(!is_newer(u32::MAX, 0));
            assert!(at_least(5, 5));
            assert!(at_least(2, u32::MAX - 3));
            assert!(!at_least(u32::MAX - 3, 2));
            assert_eq!(diff(2, u32::MAX), 3);
        }
    }
}
