//! Constants of the channel layer that concern reliability and timing
//! (`spec/channel.md` §5.6), in one place. Each says where it comes from in the
//! reference implementation and which spec section uses it.

// spec: channel.md §5.6

use std::time::Duration;

// Byte-layout sizes (MTU, header, MAC, stream budget) live in [`crate::wire`].

/// Delayed-ack timer: an ack is wanted at the latest 10 ms after the first
/// unacknowledged non-empty datagram (`cusp/channel/delayed-ack.fun`, §5.3).
pub const DELAYED_ACK: Duration = Duration::from_millis(10);

/// Width of the receive mask, in TSNs (`cusp/channel/delayed-ack.fun`, §5.3).
pub const ACK_MASK_BITS: u32 = 16;

/// Largest value of the 4-bit acklen field: one ack covers at most 16 TSNs
/// (`cusp/channel/packet-format.fun`, §2.7).
pub const MAX_ACKLEN: u8 = 15;

/// A datagram 16 or more TSNs behind the newest received is discarded unseen
/// (`cusp/channel/delayed-ack.fun`, §5.3, `streams.md` §0.4). \[BEHAV\]
pub const OLD_DATAGRAM_DISCARD: u32 = ACK_MASK_BITS;

/// Lower clamp of the RTT estimate (`cusp/channel/fast-retransmit.fun`, §5.4).
pub const MIN_RTT: Duration = Duration::from_millis(100);

/// Upper clamp of the RTT estimate (`cusp/channel/fast-retransmit.fun`, §5.4).
pub const MAX_RTT: Duration = Duration::from_secs(60);

/// Upper clamp of the initial RTT (the handshake duration, §4.7)
/// (`cusp/channel/fast-retransmit.fun`, §5.4). The lower clamp is [`MIN_RTT`].
pub const MAX_INITIAL_RTT: Duration = Duration::from_secs(10);

/// Weight of a new RTT sample in the EWMA, in percent: `rtt = (80·rtt +
/// 20·sample) / 100` (`cusp/channel/fast-retransmit.fun`, §5.4).
pub const RTT_NEW_SAMPLE_PERCENT: u32 = 20;

/// Scheduling jitter allowance added to the RTO: `RTO = 1.5·RTT + 50 ms`
/// (`cusp/channel/fast-retransmit.fun`, §5.4).
pub const JITTER_ALLOWANCE: Duration = Duration::from_millis(50);

/// Fast-retransmit (reorder) threshold: a record is MISSING once an ack with
/// `ASN − seq ≥ 3` does not cover it (`cusp/channel/fast-retransmit.fun`, §5.4).
pub const REORDER_THRESHOLD: u32 = 3;

/// Initial congestion window in bytes, "10 Ethernet segments"
/// (`cusp/channel/reno.fun`, §5.5).
pub const INITIAL_CWND: f32 = 15_000.0;

/// Smallest congestion window in bytes; a timeout sets the window to this
/// (`cusp/channel/reno.fun`, §5.5).
pub const MIN_CWND: f32 = 1.0;

/// Largest congestion window in bytes, also the initial ssthresh
/// (`cusp/channel/reno.fun`, §5.5).
pub const MAX_CWND: f32 = 1e9;

/// Bytes counted per datagram in the window on top of the stream payload:
/// IP 20 + UDP 8 + CUSP header 8 + MAC 16 (`cusp/channel/reno.fun`, §5.5).
pub const DATAGRAM_OVERHEAD: u32 = 52;

/// Base gap of the handshake retransmission timer, doubling per retry
/// (`cusp/channel/negotiation.fun`, §4.6).
pub const HANDSHAKE_GAP: Duration = Duration::from_millis(500);

/// Handshake retransmissions before the channel dies at the 9th tick
/// (`cusp/channel/negotiation.fun`, §4.6).
pub const HANDSHAKE_RETRANSMISSIONS: u32 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values() {
        use crate::wire::{HEADER_LEN, MAC_LEN, MTU, STREAM_BUDGET};
        assert_eq!(STREAM_BUDGET, 1444);
        assert_eq!(STREAM_BUDGET % 4, 0);
        assert_eq!(STREAM_BUDGET as u32 + DATAGRAM_OVERHEAD, 1496);
        assert_eq!(DATAGRAM_OVERHEAD as usize, 20 + 8 + HEADER_LEN + MAC_LEN);
        assert_eq!(MTU, 1468);
        assert_eq!(u32::from(MAX_ACKLEN) + 1, ACK_MASK_BITS);
    }
}
