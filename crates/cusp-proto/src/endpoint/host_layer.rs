//! The contract between the endpoint's channel table and the layer above it,
//! which owns every host (remote peer, by public key) and what flows over its
//! channel (`spec/channel.md` §5.1, `spec/streams.md` §0.4, §3).
//!
//! The stream layer's host table implements it for real applications; the
//! simulator implements it with test payloads to exercise channels alone.

use std::net::SocketAddrV4;
use std::time::Instant;

use crate::channel::{EstablishedInfo, PacketId};
use crate::crypto::PublicKey;

/// Something the host layer asks the endpoint to do about channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRequest {
    /// Open a channel to this address if none exists (`spec/streams.md` §4.4
    /// `reconnect`: a host with work but no channel).
    Connect(SocketAddrV4),
    /// Destroy the channel bound to this host, sending nothing (idle timeout
    /// after 240 s, `spec/streams.md` §3.7).
    Disconnect(PublicKey),
}

/// Everything above the channels: hosts by public key and their traffic.
///
/// Every method that names a `peer` is only called for a host the layer
/// accepted in [`HostLayer::on_established`] and has not yet been told about
/// in [`HostLayer::on_unbound`].
pub trait HostLayer {
    /// Whether live state (listeners, live streams) exists for `peer`; `true`
    /// promises to keep it for a while so a resume can happen (§4.7, streams.md §3.8).
    fn has_resumable_state(&mut self, now: Instant, peer: &PublicKey) -> bool;

    /// A channel reached ESTABLISHED with `info.peer`: find or create the host,
    /// record the addresses, wipe its streams unless `info.resume`, and bind it.
    fn on_established(&mut self, now: Instant, info: &EstablishedInfo);

    /// The channel bound to `peer` was torn down (its outstanding datagrams
    /// were already reported lost); the host keeps its streams and waits.
    fn on_unbound(&mut self, now: Instant, peer: &PublicKey);

    /// Most urgent pending work of `peer`: `Some(p ≥ 0)` or `None` (§5.2).
    fn priority(&self, peer: &PublicKey) -> Option<f32>;

    /// `peer` has no live streams (fast close on the peer's finish flag).
    fn is_zombie(&self, peer: &PublicKey) -> bool;

    /// `peer` says it is idle (our finish flag); defaults to
    /// [`HostLayer::is_zombie`].
    fn announces_idle(&self, peer: &PublicKey) -> bool {
        self.is_zombie(peer)
    }

    /// Fill `buf` with `peer`'s next payload; returns its length and an id for
    /// [`HostLayer::on_packet_outcome`].
    fn pull(&mut self, now: Instant, peer: &PublicKey, buf: &mut [u8]) -> (usize, PacketId);

    /// The fate of a datagram from [`HostLayer::pull`]; exactly once per id.
    fn on_packet_outcome(&mut self, now: Instant, peer: &PublicKey, packet: PacketId, acked: bool);

    /// An authenticated payload from `peer`; `false` refuses it (not acknowledged).
    fn recv(&mut self, now: Instant, peer: &PublicKey, payload: &[u8]) -> bool;

    /// When [`HostLayer::handle_timeout`] should run next.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Fire the host layer's timers (idle teardown, keep-alive promises, ...).
    fn handle_timeout(&mut self, now: Instant);

    /// The next channel request, if any (polled after every call into the layer).
    fn poll_channel_request(&mut self) -> Option<ChannelRequest>;

    /// Negotiation towards `remote` gave up before ESTABLISHED (timeout, FAIL,
    /// unreachable; `spec/streams.md` §4.4 "when rec is destroyed before
    /// that"): streams parked for a contact to that address fail. The default
    /// does nothing, for layers without pending contacts.
    fn on_connect_failed(&mut self, now: Instant, remote: SocketAddrV4) {
        let _ = (now, remote);
    }
}
