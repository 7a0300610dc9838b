//! The [`ChannelContext`] the endpoint hands a channel while driving it: the
//! endpoint's key, entropy and admission budget, and the host layer, routed to
//! the host the channel is bound to (`spec/channel.md` §5.1, §4.7,
//! `spec/streams.md` §3.7).

use crate::hash::HashMap;
use std::net::SocketAddrV4;
use std::time::Instant;

use super::config::TokenBucket;
use super::host_layer::HostLayer;
use super::{EndpointStats, Slot};
use crate::channel::{ChannelContext, EstablishedInfo, PacketId};
use crate::crypto::{Entropy, PrivateKey, PublicKey};

/// Everything of an endpoint except its channel table, so that a channel can
/// be driven while the table (holding the other channels) is borrowed too.
pub(super) struct Core<H> {
    pub(super) private_key: PrivateKey,
    pub(super) entropy: Box<dyn Entropy + Send>,
    pub(super) hosts: H,
    pub(super) key_agreements: TokenBucket,
    pub(super) stats: EndpointStats,
    /// Which channel (by remote address) each bound host uses: at most one (§3.7).
    pub(super) bound: HashMap<PublicKey, SocketAddrV4>,
}

/// The context of one channel being driven. The channel itself has been taken
/// out of `others` for the duration of the call.
pub(super) struct Ctx<'a, H> {
    pub(super) core: &'a mut Core<H>,
    pub(super) others: &'a mut HashMap<SocketAddrV4, Slot>,
    /// The remote address of the channel being driven.
    pub(super) addr: SocketAddrV4,
    /// The host the channel is bound to, if established.
    pub(super) peer: &'a mut Option<PublicKey>,
}

impl<H: HostLayer> ChannelContext for Ctx<'_, H> {
    fn private_key(&self) -> &PrivateKey {
        &self.core.private_key
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        self.core.entropy.fill(buf);
    }

    fn has_resumable_state(&mut self, now: Instant, peer: &PublicKey) -> bool {
        self.core.hosts.has_resumable_state(now, peer)
    }

    fn admit_key_agreement(&mut self, now: Instant) -> bool {
        let ok = self.core.key_agreements.take(now);
        if ok {
            self.core.stats.key_agreements_admitted += 1;
        } else {
            self.core.stats.key_agreements_refused += 1;
        }
        ok
    }

    // spec: streams.md §3.7 bind: the previously bound channel is destroyed first
    fn on_established(&mut self, now: Instant, info: &EstablishedInfo) {
        if let Some(old) = self.core.bound.get(&info.peer).copied()
            && old != self.addr
            && let Some(mut slot) = self.others.remove(&old)
        {
            let mut ctx = Ctx {
                core: &mut *self.core,
                others: &mut *self.others,
                addr: old,
                peer: &mut slot.peer,
            };
            slot.channel.destroy(now, &mut ctx);
            self.core.stats.channels_replaced += 1;
            if slot.unverified {
                self.core.stats.unverified = self.core.stats.unverified.saturating_sub(1);
            }
        }
        // A binding left behind by a channel that is gone (defensive).
        if let Some(stale) = self.core.bound.remove(&info.peer)
            && stale != self.addr
        {
            self.core.hosts.on_unbound(now, &info.peer);
        }
        self.core.bound.insert(info.peer, self.addr);
        *self.peer = Some(info.peer);
        self.core.stats.established += 1;
        self.core.hosts.on_established(now, info);
    }

    fn on_unbound(&mut self, now: Instant) {
        if let Some(peer) = self.peer.take()
            && self.core.bound.get(&peer) == Some(&self.addr)
        {
            self.core.bound.remove(&peer);
            self.core.hosts.on_unbound(now, &peer);
        }
    }

    fn host_priority(&self) -> Option<f32> {
        self.peer.as_ref().and_then(|p| self.core.hosts.priority(p))
    }

    fn host_is_zombie(&self) -> bool {
        self.peer
            .as_ref()
            .is_none_or(|p| self.core.hosts.is_zombie(p))
    }

    fn host_announces_idle(&self) -> bool {
        self.peer
            .as_ref()
            .is_none_or(|p| self.core.hosts.announces_idle(p))
    }

    fn pull(&mut self, now: Instant, buf: &mut [u8]) -> (usize, PacketId) {
        match self.peer {
            Some(p) => self.core.hosts.pull(now, p, buf),
            None => (0, 0),
        }
    }

    fn on_packet_outcome(&mut self, now: Instant, packet: PacketId, acked: bool) {
        if let Some(p) = self.peer {
            self.core.hosts.on_packet_outcome(now, p, packet, acked);
        }
    }

    fn recv(&mut self, now: Instant, payload: &[u8]) -> bool {
        match self.peer {
            Some(p) => self.core.hosts.recv(now, p, payload),
            None => false,
        }
    }
}

/// A read-only context for asking a channel its priority while scanning the
/// table: only the host queries are meaningful; the mutating operations are
/// never reached by [`Channel::priority`](crate::channel::Channel::priority)
/// and do nothing.
pub(super) struct PeekCtx<'a, H> {
    pub(super) core: &'a Core<H>,
    pub(super) peer: Option<&'a PublicKey>,
}

impl<H: HostLayer> ChannelContext for PeekCtx<'_, H> {
    fn private_key(&self) -> &PrivateKey {
        &self.core.private_key
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        debug_assert!(false, "priority() does not draw randomness");
        buf.fill(0);
    }

    fn has_resumable_state(&mut self, _now: Instant, _peer: &PublicKey) -> bool {
        false
    }

    fn admit_key_agreement(&mut self, _now: Instant) -> bool {
        false
    }

    fn on_established(&mut self, _now: Instant, _info: &EstablishedInfo) {
        debug_assert!(false, "priority() does not establish");
    }

    fn on_unbound(&mut self, _now: Instant) {}

    fn host_priority(&self) -> Option<f32> {
        self.peer.and_then(|p| self.core.hosts.priority(p))
    }

    fn host_is_zombie(&self) -> bool {
        self.peer.is_none_or(|p| self.core.hosts.is_zombie(p))
    }

    fn host_announces_idle(&self) -> bool {
        self.peer.is_none_or(|p| self.core.hosts.announces_idle(p))
    }

    fn pull(&mut self, _now: Instant, _buf: &mut [u8]) -> (usize, PacketId) {
        (0, 0)
    }

    fn on_packet_outcome(&mut self, _now: Instant, _packet: PacketId, _acked: bool) {}

    fn recv(&mut self, _now: Instant, _payload: &[u8]) -> bool {
        false
    }
}
