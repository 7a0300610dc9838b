//! Limits and timers of the host table (`spec/streams.md` §3, §4.2, §4.10).

use std::time::Duration;

use crate::stream::ids::USABLE_IDS;
use crate::stream::{InStreamConfig, OutStreamConfig};

/// Idle-channel linger and resume-promise keep-alive of the reference (§3.7, §3.8).
pub const IDLE_LINGER: Duration = Duration::from_secs(240);

/// Default [`HostConfig::idle_grace`].
pub const IDLE_GRACE: Duration = Duration::from_secs(10);
/// Host-table purge period of the reference (§3.10).
pub const PURGE_PERIOD: Duration = Duration::from_secs(120);

/// Settings of a [`HostTable`](super::HostTable). Every table it keeps has a
/// limit here; exceeding one is a clear error (or, for network input, a
/// refused payload that the peer retransmits later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Hosts kept at once. Default 4096. When a channel establishes with a new
    /// peer and the table is full, dead hosts are purged first, then the
    /// least recently active unbound host is dropped (its streams reset).
    pub max_hosts: usize,
    /// Out-streams per host (open or draining). Default 4096; never more than
    /// the 65 535 usable wire ids (`spec/streams.md` §8 Q5).
    pub max_out_streams: usize,
    /// In-streams per host. Default 4096. A CONNECT beyond it refuses the
    /// whole payload (not acknowledged): the peer retransmits it once some
    /// in-stream completed, which is flow control on stream creation.
    pub max_in_streams: usize,
    /// Per-host listeners (`Host.listen`). Default 1024 (the service range
    /// holds 32 768).
    pub max_listeners: usize,
    /// Per-stream out-stream settings (send buffer, default 1 MiB).
    pub out_stream: OutStreamConfig,
    /// Per-stream in-stream settings (window clamp 16 MiB, slack one window).
    pub in_stream: InStreamConfig,
    /// Bytes all out-streams of one host may hold unacknowledged. Default
    /// 64 MiB; writes are cut short beyond it.
    pub max_host_send_buffer: usize,
    /// Bytes all in-streams of one host may buffer. Default 64 MiB. Beyond
    /// it, DATA that would be buffered out of order is refused, and in-order
    /// DATA is refused while unread bytes alone exceed it (reading always
    /// unblocks, so no deadlock).
    pub max_host_recv_buffer: usize,
    /// Packets per host whose outcome is pending. Default 4096 (far above any
    /// congestion window of the channel layer); `pull` returns an empty
    /// payload while it is reached.
    pub max_outstanding_packets: usize,
    /// Addresses with parked contact streams. Default 256.
    pub max_pending_contacts: usize,
    /// Give up on a contact whose channel never established after this long
    /// (a safety net; the endpoint normally reports the failure earlier, the
    /// reference negotiation gives up after at most 255 s). Default 300 s.
    pub contact_timeout: Duration,
    /// Idle channel linger (§3.7). Default 240 s.
    pub idle_linger: Duration,
    /// How long a host whose last stream ended still tells its channel it is
    /// busy, so that a next stream soon after reuses the channel instead of
    /// negotiating a new one. Afterwards the channel says the host is idle and
    /// closes at once if the peer is idle too (fast close, §3.7). Zero: at once,
    /// as the reference. Closing the endpoint ends every grace period. Default 10 s.
    pub idle_grace: Duration,
    /// How long a resume promise keeps a host (§3.8 `poke`). Default 240 s.
    pub keep_alive: Duration,
    /// Period of the dead-host purge (§3.10). Default 120 s.
    pub purge_period: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            max_hosts: 4096,
            max_out_streams: 4096,
            max_in_streams: 4096,
            max_listeners: 1024,
            out_stream: OutStreamConfig::default(),
            in_stream: InStreamConfig::default(),
            max_host_send_buffer: 64 << 20,
            max_host_recv_buffer: 64 << 20,
            max_outstanding_packets: 4096,
            max_pending_contacts: 256,
            contact_timeout: Duration::from_secs(300),
            idle_linger: IDLE_LINGER,
            idle_grace: IDLE_GRACE,
            keep_alive: IDLE_LINGER,
            purge_period: PURGE_PERIOD,
        }
    }
}

impl HostConfig {
    /// The effective out-stream limit (`max_out_streams` capped at 65 535 ids).
    pub fn out_stream_limit(&self) -> usize {
        self.max_out_streams.min(USABLE_IDS)
    }
}
