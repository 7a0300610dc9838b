//! The endpoint: one UDP socket's worth of channels, by remote address, and the
//! host layer above them (`spec/channel.md` §1, §4.1, §5.2, `spec/streams.md`
//! §3.3, §3.7, §4.4, §4.8).
//!
//! [`Endpoint`] is sans-IO like the rest of the crate: the caller hands it
//! received datagrams ([`Endpoint::handle`]), pulls datagrams to send
//! ([`Endpoint::poll_transmit`]) and fires its timers ([`Endpoint::poll_timeout`],
//! [`Endpoint::handle_timeout`]).
//!
//! Cost: [`Endpoint::handle`] is O(1) per datagram (one hash lookup). The
//! scheduler and the timer scan every channel in [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_timeout`] and [`Endpoint::handle_timeout`]: O(channels) per
//! call, fine for the hundreds of channels of a typical node; a priority queue
//! keyed by (priority, serial) and a timer wheel are the later optimisation.

pub mod config;
mod context;
pub mod host_layer;

use crate::hash::{HashMap, HashSet};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Instant;

use crate::channel::{Channel, ChannelState, ChannelStats, MIN_TRANSMIT_BUFFER};
use crate::crypto::{Entropy, PrivateKey, PublicKey};
use crate::wire::Datagram;
use config::TokenBucket;
use context::{Core, Ctx, PeekCtx};

pub use config::{EndpointConfig, RateLimit};
pub use host_layer::{ChannelRequest, HostLayer};

/// Most host-layer requests processed after one call (the rest wait for the
/// next call), so a misbehaving host layer cannot stall the endpoint.
const MAX_REQUESTS_PER_CALL: usize = 1_024;

/// A datagram to send, built into the caller's buffer by [`Endpoint::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddrV4,
    /// Its length: the datagram is `buf[..len]`.
    pub len: usize,
}

/// Counters of an endpoint. Byte counts are UDP payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to [`Endpoint::handle`].
    pub datagrams_in: u64,
    /// Bytes handed to [`Endpoint::handle`].
    pub bytes_in: u64,
    /// Datagrams returned by [`Endpoint::poll_transmit`].
    pub datagrams_out: u64,
    /// Bytes returned by [`Endpoint::poll_transmit`].
    pub bytes_out: u64,
    /// Bytes received on channels whose address was unverified at the time.
    pub unverified_bytes_in: u64,
    /// Bytes sent on channels whose address was unverified at the time.
    pub unverified_bytes_out: u64,
    /// Channels now in the table.
    pub channels: u64,
    /// Of those, channels an inbound datagram created that have not yet established.
    pub unverified: u64,
    /// Most channels in the table at once.
    pub max_channels_seen: u64,
    /// Most unverified channels at once.
    pub max_unverified_seen: u64,
    /// Channels created (both directions).
    pub channels_created: u64,
    /// Establishments (including re-establishments of one channel).
    pub established: u64,
    /// Channels destroyed because a newer channel bound their host (§3.7).
    pub channels_replaced: u64,
    /// Unverified channels evicted to make room for newer ones.
    pub unverified_evicted: u64,
    /// Datagrams from unknown addresses dropped without creating state:
    /// corrupt, or of a type that never opens a channel (NOSTATE, FAIL, NAT messages).
    pub dropped_stateless: u64,
    /// HELLOs from unknown addresses dropped by the new-channel rate limit.
    pub hellos_refused: u64,
    /// Datagrams from unknown addresses dropped because the table was full.
    pub refused_full: u64,
    /// Key agreements admitted for unverified addresses.
    pub key_agreements_admitted: u64,
    /// Key agreements refused (answered with a HELLO, or WELCOME ignored).
    pub key_agreements_refused: u64,
    /// DATA datagrams whose MAC did not verify, over all channels (live and gone).
    pub bad_mac: u64,
}

impl EndpointStats {
    /// Handshakes turned away by a limit: HELLOs dropped by the rate limit or a
    /// full table, and key agreements refused.
    pub fn handshakes_refused(&self) -> u64 {
        self.hellos_refused + self.refused_full + self.key_agreements_refused
    }
}

/// A channel and the endpoint's bookkeeping for it.
pub(crate) struct Slot {
    channel: Channel,
    /// Creation order: deterministic tie-breaks and FIFO eviction.
    id: u64,
    /// Transmission serial: among equal priorities the lowest goes first (§5.2).
    serial: u64,
    /// Created by an inbound datagram and not yet established.
    unverified: bool,
    /// The host the channel is bound to.
    peer: Option<PublicKey>,
}

/// The channel table of one UDP socket, and the host layer `H` above it.
pub struct Endpoint<H: HostLayer> {
    config: EndpointConfig,
    core: Core<H>,
    channels: HashMap<SocketAddrV4, Slot>,
    /// Unverified channels by creation, oldest first (entries of channels that
    /// are gone or verified are skipped lazily; compacted at twice the cap).
    unverified_order: VecDeque<(SocketAddrV4, u64)>,
    new_unverified: TokenBucket,
    next_id: u64,
    next_serial: u64,
    /// Addresses whose channel was closing (state CLOSED, about to die) when a
    /// connect was asked for: a new channel is opened as soon as it is gone.
    reconnect: HashSet<SocketAddrV4>,
}

impl<H: HostLayer> Endpoint<H> {
    /// An endpoint with no channels.
    pub fn new(
        config: EndpointConfig,
        private_key: PrivateKey,
        entropy: Box<dyn Entropy + Send>,
        hosts: H,
    ) -> Self {
        let core = Core {
            private_key,
            entropy,
            hosts,
            key_agreements: TokenBucket::new(config.key_agreement_rate),
            stats: EndpointStats::default(),
            bound: HashMap::default(),
        };
        Endpoint {
            new_unverified: TokenBucket::new(config.new_unverified_rate),
            config,
            core,
            channels: HashMap::default(),
            unverified_order: VecDeque::new(),
            next_id: 0,
            next_serial: 0,
            reconnect: HashSet::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The host layer.
    pub fn hosts(&self) -> &H {
        &self.core.hosts
    }

    /// The host layer, mutably (the caller must then call [`Endpoint::poll_requests`]
    /// or any other entry point so that its channel requests are processed).
    pub fn hosts_mut(&mut self) -> &mut H {
        &mut self.core.hosts
    }

    /// Our long-term public key for the default suite of the channel config.
    pub fn public_key(&self) -> Option<PublicKey> {
        let suite = self.config.channel.public_key_suites.cheapest()?;
        Some(self.core.private_key.public_key(suite))
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        let mut s = self.core.stats;
        s.channels = self.channels.len() as u64;
        s.bad_mac += self
            .channels
            .values()
            .map(|c| c.channel.stats().bad_mac)
            .sum::<u64>();
        s
    }

    /// Number of channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The channel to `addr`: its state and counters.
    pub fn channel(&self, addr: SocketAddrV4) -> Option<(ChannelState, ChannelStats)> {
        self.channels
            .get(&addr)
            .map(|s| (s.channel.state(), s.channel.stats()))
    }

    /// The address of the channel bound to `peer`, if any.
    pub fn bound_channel(&self, peer: &PublicKey) -> Option<SocketAddrV4> {
        self.core.bound.get(peer).copied()
    }

    /// Remote addresses of all channels, in creation order.
    pub fn channel_addrs(&self) -> Vec<SocketAddrV4> {
        let mut v: Vec<_> = self.channels.iter().map(|(a, s)| (s.id, *a)).collect();
        v.sort_unstable();
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// No channels left: the moment `whenSafeToDestroy` waits for (`spec/streams.md` §4.8).
    pub fn is_idle(&self) -> bool {
        self.channels.is_empty()
    }

    // ---- opening ----------------------------------------------------------

    /// Open a channel to `addr` (state SENT, a HELLO is due). A no-op if a
    /// channel to `addr` exists. Returns whether a channel was created; `false`
    /// also when the table is full of verified channels.
    // spec: channel.md §4.1, streams.md §4.4 reconnect
    pub fn connect(&mut self, now: Instant, addr: SocketAddrV4) -> bool {
        let created = self.connect_inner(now, addr);
        self.poll_requests(now);
        created
    }

    fn connect_inner(&mut self, now: Instant, addr: SocketAddrV4) -> bool {
        if let Some(slot) = self.channels.get(&addr) {
            // A channel in CLOSED only sends its last NOSTATE/FAIL and dies (e.g.
            // the fast close of an idle host, streams.md §3.7). A connect asked
            // for now (a new stream to that host) must not be lost: open a new
            // channel once this one is gone (see `drive`).
            if slot.channel.state() == ChannelState::Closed {
                self.reconnect.insert(addr);
            }
            return false;
        }
        if !self.make_room(now) {
            return false;
        }
        let mut peer = None;
        let mut ctx = Ctx {
            core: &mut self.core,
            others: &mut self.channels,
            addr,
            peer: &mut peer,
        };
        let channel = Channel::connect(now, addr, self.config.channel.clone(), &mut ctx);
        self.insert(addr, channel, false);
        true
    }

    /// Make room for one more channel: evict the oldest unverified channel if
    /// the table or the unverified share is full. `false`: no room.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.channels.len() < self.config.max_channels {
            return true;
        }
        self.evict_oldest_unverified(now)
    }

    fn evict_oldest_unverified(&mut self, now: Instant) -> bool {
        while let Some((addr, id)) = self.unverified_order.pop_front() {
            let live = self
                .channels
                .get(&addr)
                .is_some_and(|s| s.id == id && s.unverified);
            if live {
                self.drive(now, addr, |ch, ctx| ch.destroy(now, ctx));
                self.core.stats.unverified_evicted += 1;
                return true;
            }
        }
        false
    }

    fn insert(&mut self, addr: SocketAddrV4, channel: Channel, unverified: bool) {
        let id = self.next_id;
        self.next_id += 1;
        let serial = self.next_serial;
        self.next_serial += 1;
        let slot = Slot {
            channel,
            id,
            serial,
            unverified,
            peer: None,
        };
        self.channels.insert(addr, slot);
        let stats = &mut self.core.stats;
        stats.channels_created += 1;
        stats.max_channels_seen = stats.max_channels_seen.max(self.channels.len() as u64);
        if unverified {
            stats.unverified += 1;
            stats.max_unverified_seen = stats.max_unverified_seen.max(stats.unverified);
            self.unverified_order.push_back((addr, id));
            if self.unverified_order.len() > 2 * self.config.max_unverified + 64 {
                let channels = &self.channels;
                self.unverified_order
                    .retain(|(a, i)| channels.get(a).is_some_and(|s| s.id == *i && s.unverified));
            }
        }
    }

    // ---- driving one channel ----------------------------------------------

    /// Run `f` on the channel to `addr` with its context, then do the table's
    /// bookkeeping: a channel that established is no longer unverified, a dead
    /// one leaves the table.
    fn drive<R>(
        &mut self,
        now: Instant,
        addr: SocketAddrV4,
        f: impl FnOnce(&mut Channel, &mut Ctx<'_, H>) -> R,
    ) -> Option<R> {
        let mut slot = self.channels.remove(&addr)?;
        let r = {
            let mut ctx = Ctx {
                core: &mut self.core,
                others: &mut self.channels,
                addr,
                peer: &mut slot.peer,
            };
            f(&mut slot.channel, &mut ctx)
        };
        let verified = slot.channel.state() == ChannelState::Established;
        if slot.unverified && (verified || slot.channel.is_dead()) {
            slot.unverified = false;
            self.core.stats.unverified = self.core.stats.unverified.saturating_sub(1);
        }
        if !slot.channel.is_dead() {
            self.channels.insert(addr, slot);
            return Some(r);
        }
        self.core.stats.bad_mac += slot.channel.stats().bad_mac;
        if let Some(peer) = slot.peer
            && self.core.bound.get(&peer) == Some(&addr)
        {
            // Dead without unbinding (cannot happen: teardown unbinds); keep the
            // host layer consistent anyway.
            self.core.bound.remove(&peer);
            self.core.hosts.on_unbound(now, &peer);
        }
        if self.reconnect.remove(&addr) {
            // A connect was asked for while this channel was closing: open anew;
            // contacts waiting for the address wait for the new channel.
            self.connect_inner(now, addr);
        } else {
            // spec: streams.md §4.4 "when rec is destroyed before that: every waiter w: w(NONE)"
            // The channel record for `addr` is gone: contacts still waiting for a channel
            // there fail (those of an established channel were settled when it established).
            self.core.hosts.on_connect_failed(now, addr);
        }
        Some(r)
    }

    // ---- receiving --------------------------------------------------------

    /// A datagram arrived from `from`; it is decrypted in place. Routed to the
    /// channel of `from`. Without one, only a datagram that warrants an answer
    /// creates a channel (§4.4 CLOSED column): a HELLO (within the limits), or
    /// a WELCOME or DATA (answered by one NOSTATE, then the channel dies).
    /// Corrupt datagrams, NOSTATE, FAIL and the NAT messages leave no state.
    ///
    /// Returns whether [`Endpoint::poll_transmit`] must be drained before the
    /// next datagram is handed in (an ack is due at once: one ack covers only
    /// 16 TSNs, §5.3, see [`Channel::ack_urgent`]). Otherwise a driver may
    /// hand in a whole receive batch first and drain once, which lets one ack
    /// cover up to 16 datagrams; draining after every datagram is also fine.
    // spec: channel.md §4.1, §4.4
    pub fn handle(&mut self, now: Instant, from: SocketAddrV4, datagram: &mut [u8]) -> bool {
        let len = datagram.len() as u64;
        self.core.stats.datagrams_in += 1;
        self.core.stats.bytes_in += len;
        if !self.channels.contains_key(&from) && !self.open_for(now, from, datagram) {
            self.poll_requests(now);
            return false;
        }
        if self.channels.get(&from).is_some_and(|s| s.unverified) {
            self.core.stats.unverified_bytes_in += len;
        }
        self.drive(now, from, |ch, ctx| ch.handle(now, datagram, ctx));
        self.poll_requests(now);
        self.channels
            .get(&from)
            .is_some_and(|s| s.channel.ack_urgent())
    }

    /// Create the channel for a datagram from an unknown address if it warrants one.
    fn open_for(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> bool {
        let is_hello = match Datagram::parse(datagram) {
            Ok(Datagram::Hello(_)) => true,
            Ok(Datagram::Welcome(_) | Datagram::Data(_)) => false,
            _ => {
                self.core.stats.dropped_stateless += 1;
                return false;
            }
        };
        if is_hello && !self.new_unverified.take(now) {
            self.core.stats.hellos_refused += 1;
            return false;
        }
        let full = self.channels.len() >= self.config.max_channels
            || self.core.stats.unverified >= self.config.max_unverified as u64;
        if full && !self.evict_oldest_unverified(now) {
            self.core.stats.refused_full += 1;
            return false;
        }
        let channel = Channel::accept(now, from, self.config.channel.clone(), 0);
        self.insert(from, channel, true);
        true
    }

    // ---- transmitting -----------------------------------------------------

    /// Build the next datagram into `buf` (at least [`MIN_TRANSMIT_BUFFER`]
    /// bytes; the channel MTU caps what is used). Serves the channel with the
    /// highest priority ≥ 0, the least recently served first among equals
    /// (§5.2, `spec/streams.md` §3.3). `None`: nothing to send now.
    // spec: channel.md §5.2, streams.md §3.3
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if buf.len() < MIN_TRANSMIT_BUFFER {
            return None;
        }
        let mut result = None;
        // A channel may turn out to have nothing after all (its priority was
        // stale); it then goes to the back of its class and the next one is tried.
        for _ in 0..self.channels.len() {
            let Some(addr) = self.best() else { break };
            let unverified = self.channels.get(&addr).is_some_and(|s| s.unverified);
            let serial = self.next_serial;
            self.next_serial += 1;
            if let Some(s) = self.channels.get_mut(&addr) {
                s.serial = serial;
            }
            let sent = self
                .drive(now, addr, |ch, ctx| ch.poll_transmit(now, buf, ctx))
                .flatten();
            if let Some(len) = sent {
                let stats = &mut self.core.stats;
                stats.datagrams_out += 1;
                stats.bytes_out += len as u64;
                if unverified {
                    stats.unverified_bytes_out += len as u64;
                }
                result = Some(Transmit {
                    destination: addr,
                    len,
                });
                break;
            }
        }
        self.poll_requests(now);
        result
    }

    /// The latest datagram [`Endpoint::poll_transmit`] returned for `to` could
    /// not be sent because it was too large for the path (EMSGSIZE, the
    /// reference's `MTU` status, `spec/channel.md` §5.4): its payload is
    /// reported lost at once instead of after a retransmission timeout. Call
    /// it before the next `poll_transmit` for `to`; later it is a no-op or
    /// reports a newer datagram, which loss detection would catch anyway.
    // spec: channel.md §5.4 (pull: on_status(MTU) when not sent)
    pub fn on_send_failed(&mut self, now: Instant, to: SocketAddrV4) {
        self.drive(now, to, |ch, ctx| ch.on_send_failed(now, ctx));
        self.poll_requests(now);
    }

    /// The channel to serve next: highest priority, then lowest serial.
    fn best(&self) -> Option<SocketAddrV4> {
        let mut best: Option<(f32, u64, SocketAddrV4)> = None;
        for (addr, slot) in &self.channels {
            let ctx = PeekCtx {
                core: &self.core,
                peer: slot.peer.as_ref(),
            };
            let Some(p) = slot.channel.priority(&ctx) else {
                continue;
            };
            if p.is_nan() || p < 0.0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((bp, bs, _)) => p > bp || (p == bp && slot.serial < bs),
            };
            if better {
                best = Some((p, slot.serial, *addr));
            }
        }
        best.map(|(_, _, a)| a)
    }

    // ---- timers -----------------------------------------------------------

    /// When [`Endpoint::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|s| s.channel.poll_timeout())
            .chain(self.core.hosts.poll_timeout())
            .min()
    }

    /// Fire every expired timer: the host layer's, then the channels' in
    /// creation order.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.core.hosts.poll_timeout().is_some_and(|t| t <= now) {
            self.core.hosts.handle_timeout(now);
        }
        self.poll_requests(now);
        let mut due: Vec<(u64, SocketAddrV4)> = self
            .channels
            .iter()
            .filter(|(_, s)| s.channel.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, s)| (s.id, *a))
            .collect();
        due.sort_unstable();
        for (_, addr) in due {
            self.drive(now, addr, |ch, ctx| ch.handle_timeout(now, ctx));
        }
        self.poll_requests(now);
    }

    // ---- host-layer requests and shutdown ---------------------------------

    /// Process the host layer's pending [`ChannelRequest`]s. Every entry point
    /// does this; call it after using [`Endpoint::hosts_mut`].
    pub fn poll_requests(&mut self, now: Instant) {
        for _ in 0..MAX_REQUESTS_PER_CALL {
            let Some(req) = self.core.hosts.poll_channel_request() else {
                break;
            };
            match req {
                ChannelRequest::Connect(addr) => {
                    self.connect_inner(now, addr);
                }
                ChannelRequest::Disconnect(peer) => {
                    if let Some(addr) = self.core.bound.get(&peer).copied() {
                        self.drive(now, addr, |ch, ctx| ch.destroy(now, ctx));
                    }
                }
            }
        }
    }

    /// Destroy every channel, sending nothing (endpoint shutdown, `spec/streams.md` §4.8).
    pub fn destroy_all(&mut self, now: Instant) {
        self.reconnect.clear();
        for addr in self.channel_addrs() {
            self.drive(now, addr, |ch, ctx| ch.destroy(now, ctx));
        }
        self.unverified_order.clear();
        self.poll_requests(now);
    }
}

#[cfg(test)]
mod tests;
