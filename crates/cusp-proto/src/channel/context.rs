//! What a channel needs from the layers around it: the endpoint (identity,
//! randomness, the host table) and, once established, the host it is bound to
//! (`spec/channel.md` §5.1, `spec/streams.md` §0.4).

use std::net::SocketAddrV4;
use std::time::Instant;

use crate::crypto::{PrivateKey, PublicKey};

/// Identifies the payload of one tracked DATA datagram to the host that filled
/// it; handed back exactly once with the datagram's fate.
pub type PacketId = u64;

/// Facts about a channel that has just reached ESTABLISHED (`spec/channel.md` §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstablishedInfo {
    /// The peer's long-term public key for the agreed suite: the host's identity.
    pub peer: PublicKey,
    /// Both sides still held state for each other: streams survive (resume), or
    /// the host's stream state must be wiped (`spec/streams.md` §3.8).
    pub resume: bool,
    /// Our own address as the peer sees it (reflected in HELLO/WELCOME, §6.1).
    pub local_addr: SocketAddrV4,
    /// The peer's address: the channel's remote address.
    pub remote_addr: SocketAddrV4,
    /// The agreed `noEncrypt` flag (MAC only, §3.7).
    pub no_encrypt: bool,
}

/// The services a [`Channel`](super::Channel) calls back into while it handles
/// a datagram, a timeout or a transmission. The endpoint implements it for one
/// channel at a time, routing the host operations to the host bound to that
/// channel (none before establishment).
pub trait ChannelContext {
    /// Our long-term private key.
    fn private_key(&self) -> &PrivateKey;

    /// Fill `buf` with fresh random bytes (ephemeral keys).
    fn fill_random(&mut self, buf: &mut [u8]);

    /// Whether the host table holds live state for `peer` (listeners or live
    /// streams); a `true` answer promises to keep it for a while (§4.7
    /// `have_resumable_state`, `spec/streams.md` §3.8 `exist`).
    fn has_resumable_state(&mut self, now: Instant, peer: &PublicKey) -> bool;

    /// May a key agreement (the expensive part of a handshake) be spent now on
    /// a HELLO from an unverified address? The endpoint rate-limits these;
    /// when refused, the channel answers with a HELLO and computes nothing.
    fn admit_key_agreement(&mut self, now: Instant) -> bool;

    /// The channel reached ESTABLISHED: attach (or create) the host for
    /// `info.peer`, wipe its stream state unless `info.resume`, and bind it to
    /// this channel, destroying any other channel bound to it (§4.7).
    fn on_established(&mut self, now: Instant, info: &EstablishedInfo);

    /// The reliability stack was torn down (the channel dies or renegotiates):
    /// every outstanding datagram has already been reported lost; unbind the host.
    fn on_unbound(&mut self, now: Instant);

    /// The bound host's most urgent pending work: `Some(p)` with `p ≥ 0`
    /// (including `+∞` for control segments) or `None` (nothing that justifies
    /// a datagram, §5.2).
    fn host_priority(&self) -> Option<f32>;

    /// The bound host has no live streams (fast close on the peer's finish
    /// flag, a NOSTATE closes rather than renegotiates, §4.8).
    fn host_is_zombie(&self) -> bool;

    /// The bound host says it is idle: our finish flag and the datagram that
    /// announces it. Defaults to [`host_is_zombie`](Self::host_is_zombie); a
    /// host table may wait a grace period after the last stream ended.
    fn host_announces_idle(&self) -> bool {
        self.host_is_zombie()
    }

    /// Fill `buf` (the stream budget) with stream payload; returns the length
    /// and the id under which the datagram's fate will be reported.
    fn pull(&mut self, now: Instant, buf: &mut [u8]) -> (usize, PacketId);

    /// The fate of a datagram filled by [`pull`](Self::pull): `true` when
    /// acknowledged, `false` when lost, unsendable or torn down. Exactly once per id.
    fn on_packet_outcome(&mut self, now: Instant, packet: PacketId, acked: bool);

    /// Deliver an authenticated payload; `false` refuses it (it is then not
    /// acknowledged and the peer sends its contents again).
    fn recv(&mut self, now: Instant, payload: &[u8]) -> bool;
}
