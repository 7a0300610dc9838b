//! What the simulator drives: anything with a sans-IO datagram interface.

use std::any::Any;
use std::net::SocketAddrV4;
use std::time::Instant;

/// Identifies a node within one [`Sim`](crate::Sim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// A datagram a node wants sent. The source address is the node's current address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddrV4,
    /// The UDP payload.
    pub contents: Vec<u8>,
}

/// A sans-IO endpoint the simulator can drive, mirroring the quinn-proto style API that the
/// cusp-proto endpoint exposes.
///
/// The simulator calls `handle` or `handle_timeout`, then drains `poll_transmit` and asks
/// `poll_timeout` again. All times are derived from one base `Instant`, so implementations
/// must only look at differences between instants.
pub trait Node: Any {
    /// A datagram arrived from `from`, addressed to the node's own (pre-NAT) address `local`.
    fn handle(&mut self, now: Instant, from: SocketAddrV4, local: SocketAddrV4, data: Vec<u8>);

    /// The next datagram to send, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;

    /// When `handle_timeout` should next be called, if ever.
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }

    /// The time returned by `poll_timeout` has been reached.
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }
}

/// Per-node counters. Byte counts are UDP payload bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams the node sent.
    pub sent: u64,
    /// Bytes the node sent.
    pub sent_bytes: u64,
    /// Datagrams handed to the node (including injected ones).
    pub received: u64,
    /// Bytes handed to the node.
    pub received_bytes: u64,
    /// Times `handle_timeout` was called.
    pub timeouts: u64,
}

/// Counters of what one node delivered to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Datagrams delivered.
    pub datagrams: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
}
