//! Handles, events, errors and snapshots of the host layer's public API.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Instant;

use crate::crypto::PublicKey;
use crate::stream::{InStreamState, OutStreamState};

/// An application's name for one stream (in or out) of a
/// [`HostTable`](super::HostTable). Never reused (unique among the table's
/// first 2^40 streams) and ordered by creation; it is *not* the wire id (wire
/// ids are reused, §1.8). Once a stream completed (its final event was
/// queued, or `Finished` was read) the handle is forgotten and operations on
/// it fail with [`UnknownStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamHandle(pub(crate) u64);

impl fmt::Display for StreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream#{}", super::streams::serial(*self))
    }
}

/// Something the application should react to; see [`HostTable::poll_event`](super::HostTable::poll_event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostEvent {
    /// A peer opened a stream to a service we advertise or listen on (§3.5).
    IncomingStream {
        /// The peer's public key (check it before trusting the stream, §4.4).
        peer: PublicKey,
        /// The service the stream was opened to.
        service: u16,
        /// The new in-stream.
        handle: StreamHandle,
    },
    /// An in-stream has bytes or its end (Finished) to read.
    StreamReadable(StreamHandle),
    /// An out-stream whose write was cut short can take bytes again.
    StreamWritable(StreamHandle),
    /// The shutdown of an out-stream resolved: `delivered` is `true` when every
    /// byte and the EOF were acknowledged by the peer's transport, `false`
    /// when the stream was reset first (§2.1.6). Final event of the stream
    /// (none after [`HostTable::release`](super::HostTable::release)).
    StreamFinished {
        /// The out-stream.
        handle: StreamHandle,
        /// Its peer (`None`: it was still waiting for a contact's channel).
        peer: Option<PublicKey>,
        /// Whether everything was acknowledged.
        delivered: bool,
    },
    /// The stream was reset by the peer or by a state wipe (§3.8), not by
    /// the application. Final event of the stream (none after
    /// [`HostTable::release`](super::HostTable::release)).
    StreamReset {
        /// The stream (in or out).
        handle: StreamHandle,
        /// Its peer (`None`: it was still waiting for a contact's channel).
        peer: Option<PublicKey>,
    },
    /// A channel was bound to or unbound from the host: its addresses may
    /// have changed (§4.6 `Host.onAddressChange`).
    HostAddressChanged(PublicKey),
    /// A channel to the address of a [`HostTable::contact`](super::HostTable::contact)
    /// established: its parked streams now belong to `peer`.
    Contacted {
        /// The contacted address.
        addr: SocketAddrV4,
        /// Who answered there.
        peer: PublicKey,
    },
    /// No channel to a contacted address could be established; its parked
    /// streams were reset (each also gets [`HostEvent::StreamReset`]).
    ContactFailed(SocketAddrV4),
}

/// The handle names no stream of the table (never existed, or completed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown stream handle")]
pub struct UnknownStream;

/// Why `connect` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Service 0 is reserved and cannot be connected to (§3.6).
    #[error("service 0 is reserved")]
    ReservedService,
    /// No host with that key is known (use `contact` with an address).
    #[error("unknown host")]
    UnknownHost,
    /// The host has `max_out_streams` out-streams, or all 65 535 wire ids are
    /// taken (§8 Q5).
    #[error("too many out-streams to this host")]
    TooManyStreams,
}

/// Why `contact` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// Service 0 is reserved and cannot be connected to (§3.6).
    #[error("service 0 is reserved")]
    ReservedService,
    /// `max_pending_contacts` addresses, or `max_out_streams` streams to this
    /// address, are already waiting for their channel.
    #[error("too many pending contacts")]
    TooManyPending,
    /// The established host at that address has too many out-streams.
    #[error("too many out-streams to this host")]
    TooManyStreams,
}

/// Why a service number could not be advertised or listened on (§4.3; the
/// reference raises `AddressInUse` for all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The number is advertised already.
    #[error("service number in use")]
    InUse,
    /// Service 0 is reserved.
    #[error("service 0 is reserved")]
    Reserved,
    /// `advertise(Some(s))` needs `s` in 1..=0x3FFF.
    #[error("well-known service numbers are 1..=0x3FFF")]
    OutOfRange,
    /// Every number of the dynamic range is taken (or the listener limit is reached).
    #[error("no free service number")]
    Exhausted,
    /// `listen` on a host the table does not know.
    #[error("unknown host")]
    UnknownHost,
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Unknown handle, or an in-stream.
    #[error("unknown out-stream")]
    UnknownStream,
    /// The stream was reset.
    #[error("stream was reset")]
    Reset,
    /// The stream was shut down.
    #[error("stream was shut down")]
    Finished,
}

/// Why a shutdown was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    /// Unknown handle, or an in-stream.
    #[error("unknown out-stream")]
    UnknownStream,
    /// The stream was reset; the shutdown outcome is `false`.
    #[error("stream was reset")]
    Reset,
    /// Shutdown was called already.
    #[error("stream was shut down already")]
    AlreadyShutdown,
}

/// Why a priority change was refused.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum SetPriorityError {
    /// Unknown handle, or an in-stream.
    #[error("unknown out-stream")]
    UnknownStream,
    /// NaN or an infinity (§4.11 raises Domain).
    #[error("stream priority must be finite, got {0}")]
    NotFinite(f32),
}

/// Host counters of §4.12 (sums over the host's streams, including reset
/// streams still draining).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostStats {
    /// Stream payload bytes placed in pulled packets.
    pub bytes_sent: u64,
    /// Stream payload bytes of accepted payloads.
    pub bytes_received: u64,
    /// Time of the last pull (initially the host's creation).
    pub last_send: Instant,
    /// Time of the last accepted payload (initially the host's creation).
    pub last_receive: Instant,
    /// In-stream bytes buffered out of order.
    pub queued_out_of_order: usize,
    /// In-stream bytes received in order but not read.
    pub queued_unread: usize,
    /// Out-stream bytes in unacknowledged packets.
    pub queued_inflight: usize,
    /// Out-stream bytes waiting for (re)transmission.
    pub queued_to_retransmit: usize,
}

/// A snapshot of one host (§3.1, §5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// The peer's public key.
    pub key: PublicKey,
    /// The peer's address on the latest channel.
    pub remote_addr: SocketAddrV4,
    /// Our address as the peer reported it on the latest channel.
    pub local_addr: SocketAddrV4,
    /// A channel is bound to the host.
    pub bound: bool,
    /// Live (not reset) streams.
    pub live_streams: usize,
    /// Per-host listeners.
    pub listeners: Vec<u16>,
    /// Counters.
    pub stats: HostStats,
}

/// A snapshot of one out-stream (§5.5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutStreamInfo {
    /// The peer, or `None` while the stream waits for a contact's channel.
    pub peer: Option<PublicKey>,
    /// The service connected to.
    pub service: u16,
    /// The wire id, once assigned (at first pull).
    pub id: Option<u16>,
    /// API state.
    pub state: OutStreamState,
    /// Application priority.
    pub priority: f32,
    /// Acknowledged bytes (`bytesSent`).
    pub bytes_acked: u64,
    /// Bytes in unacknowledged packets.
    pub queued_inflight: usize,
    /// Bytes waiting for (re)transmission.
    pub queued_to_retransmit: usize,
    /// Bytes a write would accept now.
    pub writable: usize,
    /// The CONNECT prefix is still sent (no packet of the stream acknowledged yet).
    pub connect_pending: bool,
}

/// A snapshot of one in-stream (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InStreamInfo {
    /// The peer.
    pub peer: PublicKey,
    /// The service the peer connected to.
    pub service: u16,
    /// The wire id (the peer's).
    pub id: u16,
    /// API state.
    pub state: InStreamState,
    /// Bytes delivered to the application (`bytesReceived`).
    pub bytes_delivered: u64,
    /// Bytes buffered out of order.
    pub queued_out_of_order: usize,
    /// Bytes ready to read.
    pub queued_unread: usize,
}
