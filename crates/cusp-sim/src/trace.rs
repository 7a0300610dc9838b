//! The datagram trace: one record per thing that happens to a datagram.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::link::LinkId;
use crate::node::NodeId;

/// Identifies one datagram (or one duplicate copy) for the lifetime of a [`Sim`](crate::Sim).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatagramId(pub u64);

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// No node owned the destination address when it was sent.
    NoRoute,
    /// The link's loss model dropped it.
    Loss,
    /// The link's queue was full (drop-tail).
    QueueFull,
    /// The link was down.
    LinkDown,
    /// On arrival, no node (or NAT mapping) owned the destination address any more.
    Unreachable,
    /// A NAT with endpoint filtering refused a sender its node had not contacted.
    NatFiltered,
}

/// What happened to a datagram in one [`TraceEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// A node sent it (the source address is after NAT translation).
    Sent {
        /// The sending node.
        node: NodeId,
    },
    /// The scenario injected it with [`Sim::inject`](crate::Sim::inject).
    Injected,
    /// It was handed to a node.
    Delivered {
        /// The receiving node.
        node: NodeId,
    },
    /// It was dropped.
    Dropped(DropReason),
    /// A link duplicated it; the copy travels on as `copy`.
    Duplicated {
        /// Identity of the new copy.
        copy: DatagramId,
    },
    /// A link flipped these bit positions (bit 0 = most significant bit of byte 0).
    Corrupted {
        /// The flipped bit positions.
        bits: Vec<usize>,
    },
    /// A link held it back so later datagrams may overtake it.
    Reordered,
}

/// One record of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time since the start of the simulation.
    pub time: Duration,
    /// Which datagram (copies get their own id).
    pub id: DatagramId,
    /// Source address as seen on the wire at this point.
    pub from: SocketAddrV4,
    /// Destination address.
    pub to: SocketAddrV4,
    /// Payload length in bytes.
    pub len: usize,
    /// The link involved, for link events.
    pub link: Option<LinkId>,
    /// What happened.
    pub fate: Fate,
    /// The payload, on `Sent`, `Injected` and `Delivered` records when the trace was
    /// enabled with payloads.
    pub payload: Option<Vec<u8>>,
}

impl std::fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>12.6}s #{:<6} {} -> {} len {:>5}",
            self.time.as_secs_f64(),
            self.id.0,
            self.from,
            self.to,
            self.len
        )?;
        if let Some(link) = self.link {
            write!(f, " link {}", link.0)?;
        }
        write!(f, " {:?}", self.fate)
    }
}
