//! The channel state machine: negotiation (HELLO / WELCOME / FAIL / NOSTATE),
//! establishment and teardown (`spec/channel.md` §4), with the ESTABLISHED
//! state's DATA handling delegated to [`super::established`].
//!
//! A [`Channel`] is the state for one remote address. It is sans-IO: the
//! endpoint hands it received datagrams ([`Channel::handle`]), pulls datagrams
//! from it when its [`Channel::priority`] says it wants to send
//! ([`Channel::poll_transmit`]), and fires its timers ([`Channel::poll_timeout`],
//! [`Channel::handle_timeout`]). Everything it needs from the outside comes
//! through a [`ChannelContext`].
//!
//! Beyond the reference, and invisible to a reference peer:
//! * A channel created by a datagram from an unverified address never sends
//!   that address more bytes than it received from it, until the address is
//!   verified by establishment (anti-amplification). A HELLO too small to pay
//!   for a WELCOME (the reference's 78 bytes) is answered with a HELLO instead,
//!   which the peer treats as a simultaneous open (one more round trip, no key
//!   agreement spent on an unverified address). Our own HELLOs are padded to a
//!   WELCOME's size (the reference ignores bytes after 78) so a cusp responder
//!   answers them with a WELCOME at once.
//! * Hostile handshake values (invalid points, degenerate agreements, remark R2)
//!   make the HELLO or WELCOME count as not received, never a panic.
//! * FORWARD_REQ is ignored rather than obeyed (remark R3): we are never an
//!   ICMP helper, so an unauthenticated datagram cannot destroy a channel.

use std::net::SocketAddrV4;
use std::time::Instant;

use zeroize::Zeroize;

use super::Tail;
use super::config::ChannelConfig;
use super::congestion::{CongestionControl, Reno};
use super::context::{ChannelContext, EstablishedInfo};
use super::established::{AfterData, Agreement, ChannelStats, Established};
use super::handshake_timer::{Expiry, HandshakeTimer};
use crate::crypto::{Ephemeral, KeyMaterial, PublicKey, PublicKeySuite, SessionKeys};
use crate::wire::{
    DataHeader, Datagram, HEADER_LEN, HELLO_LEN, MAC_LEN, NEGOTIATION_LEN, Negotiation,
    NegotiationBits, WELCOME_LEN, emit_nostate,
};

/// Smallest buffer [`Channel::poll_transmit`] accepts: a WELCOME (94 bytes).
pub const MIN_TRANSMIT_BUFFER: usize = WELCOME_LEN;

/// The negotiation state of a channel, without its secrets (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// No handshake in progress; a FAIL or NOSTATE may still be sent before the channel dies.
    Closed,
    /// We sent a HELLO and wait for the peer's WELCOME (or HELLO).
    Sent,
    /// We answered a HELLO with a WELCOME and wait for the peer's first DATA.
    Received,
    /// Keys agreed and confirmed; DATA flows.
    Established,
}

/// Our half of a handshake plus the agreed bits (states SENT and RECEIVED).
struct Offer {
    agreed: NegotiationBits,
    half: Ephemeral,
}

enum State<C: CongestionControl> {
    Closed {
        token: Option<Tail>,
    },
    Sent {
        offer: Offer,
        token: Option<Tail>,
    },
    Received {
        offer: Offer,
        peer: PublicKey,
        keys: Box<SessionKeys>,
        local_addr: SocketAddrV4,
        tail: Tail,
    },
    Established(Box<Established<C>>),
}

/// Bytes exchanged with a remote address that has not proven it receives what
/// we send there (anti-amplification accounting).
#[derive(Debug, Clone, Copy, Default)]
struct Unverified {
    received: u64,
    sent: u64,
}

/// One channel: all protocol state for one remote address (`spec/channel.md` §4).
pub struct Channel<C: CongestionControl = Reno> {
    remote: SocketAddrV4,
    config: ChannelConfig,
    created: Instant,
    state: State<C>,
    timer: HandshakeTimer,
    /// The negotiation asked for a transmission (priority +∞, §4.5, §5.2).
    transmit: bool,
    /// Set once the channel decided to die; the endpoint drops it.
    dead: bool,
    /// `Some` while the remote address is unverified (channel created by an inbound datagram).
    unverified: Option<Unverified>,
    /// Counters kept across establishments.
    stats: ChannelStats,
}

impl<C: CongestionControl + Default> Channel<C> {
    /// A channel we open to `remote`: state SENT with a fresh ephemeral (§4.3 `go_SENT`).
    pub fn connect(
        now: Instant,
        remote: SocketAddrV4,
        config: ChannelConfig,
        ctx: &mut impl ChannelContext,
    ) -> Self {
        let mut ch = Self::new(now, remote, config, None);
        ch.go_sent(now, ch.config.local_bits(), None, ctx);
        ch
    }

    /// A channel created because a datagram arrived from `remote`, which has no
    /// channel yet (state CLOSED). `credit` is what `remote` already sent us
    /// (bytes) that no channel accounted for; the first datagram is counted by
    /// [`Channel::handle`].
    pub fn accept(now: Instant, remote: SocketAddrV4, config: ChannelConfig, credit: u64) -> Self {
        Self::new(
            now,
            remote,
            config,
            Some(Unverified {
                received: credit,
                sent: 0,
            }),
        )
    }

    fn new(
        now: Instant,
        remote: SocketAddrV4,
        config: ChannelConfig,
        unverified: Option<Unverified>,
    ) -> Self {
        let timer = HandshakeTimer::new(
            now,
            config.handshake_gap,
            config.handshake_retransmissions,
            config.jitter_seed,
        );
        Channel {
            remote,
            config,
            created: now,
            state: State::Closed { token: None },
            timer,
            transmit: false,
            dead: false,
            unverified,
            stats: ChannelStats::default(),
        }
    }

    /// The remote address this channel talks to.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The negotiation state.
    pub fn state(&self) -> ChannelState {
        match self.state {
            State::Closed { .. } => ChannelState::Closed,
            State::Sent { .. } => ChannelState::Sent,
            State::Received { .. } => ChannelState::Received,
            State::Established(_) => ChannelState::Established,
        }
    }

    /// The channel has died; the endpoint should drop it (it sends nothing more).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The peer's identity once established.
    pub fn peer(&self) -> Option<&PublicKey> {
        match &self.state {
            State::Established(e) => Some(&e.peer),
            State::Received { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// Counters of the current (or last) establishment.
    pub fn stats(&self) -> ChannelStats {
        match &self.state {
            State::Established(e) => e.stats,
            _ => self.stats,
        }
    }

    /// Smoothed RTT, congestion window and bytes in flight while established.
    pub fn path(&self) -> Option<(std::time::Duration, u64, u64)> {
        match &self.state {
            State::Established(e) => {
                let (cwnd, in_flight) = e.window();
                Some((e.rtt(), cwnd, in_flight))
            }
            _ => None,
        }
    }

    /// How urgently the channel wants to send (§5.2): `None` when idle,
    /// `Some(+∞)` for negotiation work and acks, otherwise the host's priority
    /// while the congestion window is open.
    pub fn priority(&self, ctx: &impl ChannelContext) -> Option<f32> {
        if self.dead {
            return None;
        }
        match &self.state {
            State::Established(e) => e.priority(self.transmit, ctx),
            _ if self.transmit && self.may_send(self.next_handshake_len()) => Some(f32::INFINITY),
            _ => None,
        }
    }

    /// Whether an ack must be built before the next datagram is handed in:
    /// an unreported datagram is about to leave the 16-TSN range of every
    /// future ack ([`AckGenerator::ack_urgent`](super::AckGenerator::ack_urgent)).
    /// A driver that hands in a batch of datagrams may build everything else
    /// after the batch.
    pub fn ack_urgent(&self) -> bool {
        match &self.state {
            State::Established(e) if !self.dead => e.ack_urgent(),
            _ => false,
        }
    }

    /// When [`Channel::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        match &self.state {
            State::Established(e) => e.deadline(),
            _ => self.timer.deadline(),
        }
    }

    /// Fire expired timers: handshake retransmission or death (§4.6), delayed
    /// acks and retransmission timeouts (§5.3, §5.4).
    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        if self.dead {
            return;
        }
        if let State::Established(e) = &mut self.state {
            e.on_timeout(now, ctx);
            return;
        }
        match self.timer.poll(now) {
            Some(Expiry::Retransmit) => self.transmit = true,
            Some(Expiry::Die) => self.die(now, ctx),
            None => {}
        }
    }

    /// Tear the channel down now (endpoint shutdown, a newer channel bound the
    /// host, idle timeout). Sends nothing (§4.1).
    pub fn destroy(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        self.die(now, ctx);
    }

    fn die(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        if let State::Established(e) = &mut self.state {
            e.teardown(now, ctx);
            self.stats = e.stats;
        }
        self.state = State::Closed { token: None };
        self.transmit = false;
        self.dead = true;
        self.timer.cancel();
    }

    // ---- receiving --------------------------------------------------------

    /// Process one datagram received from [`Channel::remote`]. The buffer is
    /// decrypted in place.
    // spec: channel.md §4.4
    pub fn handle(&mut self, now: Instant, datagram: &mut [u8], ctx: &mut impl ChannelContext) {
        if self.dead {
            return;
        }
        if let Some(u) = &mut self.unverified {
            u.received += datagram.len() as u64;
        }
        let parsed = match Datagram::parse(datagram) {
            Ok(d) => d,
            Err(e) => {
                if e.is_corrupt() && matches!(self.state, State::Closed { .. }) {
                    self.die(now, ctx);
                }
                return;
            }
        };
        let tail = Tail::of(datagram);
        match parsed {
            Datagram::Nostate { token } => self.on_nostate(now, token, ctx),
            Datagram::Fail { .. } => {
                // spec: channel.md §4.4 FAIL (unauthenticated, remark R4: SENT dies too)
                if matches!(self.state, State::Closed { .. } | State::Sent { .. }) {
                    self.die(now, ctx);
                }
            }
            Datagram::Hello(h) => {
                let h = OwnedNegotiation::from(&h);
                self.on_hello(now, &h, ctx);
            }
            Datagram::Welcome(w) => {
                let body = OwnedNegotiation::from(&w.body);
                self.on_welcome(now, &body, datagram, tail, ctx);
            }
            Datagram::Data(d) => {
                let header = d.header;
                self.on_data(now, header, datagram, tail, ctx);
            }
            Datagram::ForwardReq { .. } | Datagram::ForwardAck | Datagram::IcmpAck => {
                // spec: channel.md §4.4 forwarding rows; remark R3: never obey FORWARD_REQ
                if matches!(self.state, State::Closed { .. }) {
                    self.die(now, ctx);
                }
            }
        }
    }

    fn on_nostate(&mut self, now: Instant, token: &[u8], ctx: &mut impl ChannelContext) {
        match &mut self.state {
            State::Closed { .. } => self.die(now, ctx),
            State::Sent { .. } => {}
            State::Received { tail, .. } => {
                if tail.matches(token) {
                    self.go_sent(now, self.config.local_bits(), None, ctx);
                }
            }
            State::Established(e) => {
                let zombie = ctx.host_is_zombie();
                if !e.tail.matches(token) {
                    // An idle host also takes the answer to its last finish
                    // datagram when it sent others since (simultaneous close).
                    if zombie && e.finish_tail.matches(token) {
                        self.die(now, ctx);
                    }
                    return;
                }
                if zombie {
                    self.die(now, ctx);
                } else {
                    // The peer lost our state (restart) or we moved: renegotiate.
                    e.teardown(now, ctx);
                    self.stats = e.stats;
                    self.timer.restart(now);
                    self.go_sent(now, self.config.local_bits(), None, ctx);
                }
            }
        }
    }

    fn on_hello(&mut self, now: Instant, h: &OwnedNegotiation, ctx: &mut impl ChannelContext) {
        match std::mem::replace(&mut self.state, State::Closed { token: None }) {
            State::Closed { .. } => self.process_hello(now, self.config.local_bits(), None, h, ctx),
            State::Sent { offer, .. } => {
                let agreed = offer.agreed;
                self.process_hello(now, agreed, Some(offer.half), h, ctx)
            }
            state @ State::Received { .. } => {
                // The reference ignores it and relies on its WELCOME timer. A
                // repeated HELLO means our WELCOME was lost: answer (within the
                // anti-amplification budget the HELLO itself extended).
                self.state = state;
                self.transmit = true;
            }
            State::Established(e) => {
                // The peer may have lost its state: our next DATA provokes an
                // authenticated NOSTATE.
                self.state = State::Established(e);
                self.transmit = true;
            }
        }
    }

    fn on_welcome(
        &mut self,
        now: Instant,
        w: &OwnedNegotiation,
        datagram: &mut [u8],
        tail: Tail,
        ctx: &mut impl ChannelContext,
    ) {
        match std::mem::replace(&mut self.state, State::Closed { token: None }) {
            State::Closed { .. } => {
                self.state = State::Closed { token: Some(tail) };
                self.progress(now);
            }
            State::Sent { offer, token } if self.unverified.is_some() => {
                // A WELCOME costs a key agreement before its MAC can be checked;
                // on a channel an unverified address created, spend it only within
                // the endpoint's admission budget (otherwise spoofed WELCOMEs would
                // buy unlimited key agreements). Refused: ignored, the peer's
                // WELCOME timer retransmits it.
                if ctx.admit_key_agreement(now) {
                    self.state = State::Sent { offer, token };
                    self.welcome_in_sent(now, w, datagram, tail, ctx);
                } else {
                    self.state = State::Sent { offer, token };
                }
            }
            state @ State::Sent { .. } => {
                self.state = state;
                self.welcome_in_sent(now, w, datagram, tail, ctx);
            }
            State::Received {
                offer,
                peer,
                keys,
                local_addr,
                tail: our_tail,
            } => {
                if confirm_welcome(&offer.agreed, &w.bits) && open_welcome(&keys, datagram) {
                    let (no_encrypt, resume) = (w.bits.no_encrypt, w.bits.resume);
                    let agreement = Agreement {
                        keys: *keys,
                        peer,
                        no_encrypt,
                        resume,
                        local_addr,
                    };
                    self.establish(now, agreement, true, ctx);
                } else {
                    self.state = State::Received {
                        offer,
                        peer,
                        keys,
                        local_addr,
                        tail: our_tail,
                    };
                }
            }
            State::Established(e) => {
                // Our last ack may have been lost (§4.4).
                self.state = State::Established(e);
                self.transmit = true;
            }
        }
    }

    /// `process_WELCOME_in_SENT` of §4.3; the state is SENT.
    // spec: channel.md §4.3 process_WELCOME_in_SENT
    fn welcome_in_sent(
        &mut self,
        now: Instant,
        w: &OwnedNegotiation,
        datagram: &mut [u8],
        tail: Tail,
        ctx: &mut impl ChannelContext,
    ) {
        let State::Sent { offer, .. } =
            std::mem::replace(&mut self.state, State::Closed { token: None })
        else {
            unreachable!("called in SENT only")
        };
        let confirmed = confirm_welcome(&offer.agreed, &w.bits)
            .then(|| self.derive(&offer.half, w, ctx))
            .flatten()
            .filter(|keys| open_welcome(keys, datagram));
        match confirmed {
            Some(keys) => {
                let peer = PublicKey::new(offer.half.suite(), w.static_key);
                let (no_encrypt, resume, local_addr) =
                    (w.bits.no_encrypt, w.bits.resume, w.address);
                let agreement = Agreement {
                    keys,
                    peer,
                    no_encrypt,
                    resume,
                    local_addr,
                };
                self.establish(now, agreement, true, ctx);
            }
            None => {
                self.state = State::Sent {
                    offer,
                    token: Some(tail),
                };
                self.progress(now);
            }
        }
    }

    fn on_data(
        &mut self,
        now: Instant,
        header: DataHeader,
        datagram: &mut [u8],
        tail: Tail,
        ctx: &mut impl ChannelContext,
    ) {
        match &mut self.state {
            State::Closed { .. } => {
                self.state = State::Closed { token: Some(tail) };
                self.progress(now);
            }
            State::Sent { token, .. } => {
                // Out-of-band NOSTATE; the HELLOs continue.
                *token = Some(tail);
                self.progress(now);
            }
            State::Received { offer, keys, .. } => {
                // spec: channel.md §4.4 DATA in RECEIVED: references (0, 0)
                let tsn = header.tsn(self.config.initial_tsn);
                if keys
                    .open(tsn, datagram, HEADER_LEN, !offer.agreed.no_encrypt)
                    .is_err()
                {
                    return;
                }
                let State::Received {
                    offer,
                    peer,
                    keys,
                    local_addr,
                    ..
                } = std::mem::replace(&mut self.state, State::Closed { token: None })
                else {
                    unreachable!("matched above")
                };
                let (no_encrypt, resume) = (offer.agreed.no_encrypt, offer.agreed.resume);
                let agreement = Agreement {
                    keys: *keys,
                    peer,
                    no_encrypt,
                    resume,
                    local_addr,
                };
                self.establish(now, agreement, false, ctx);
                if let State::Established(e) = &mut self.state {
                    let after = e.process_opened(now, header, tsn, datagram, ctx);
                    self.after_data(now, after, tail, ctx);
                }
            }
            State::Established(e) => {
                if let Some(after) = e.receive(now, header, datagram, ctx) {
                    self.after_data(now, after, tail, ctx);
                }
            }
        }
    }

    fn after_data(
        &mut self,
        now: Instant,
        after: AfterData,
        tail: Tail,
        ctx: &mut impl ChannelContext,
    ) {
        match after {
            AfterData::Continue => {}
            AfterData::Transmit => self.transmit = true,
            AfterData::Close => {
                // spec: channel.md §4.8: NOSTATE(token) is sent, then the channel dies
                if let State::Established(e) = &mut self.state {
                    e.teardown(now, ctx);
                    self.stats = e.stats;
                }
                self.state = State::Closed { token: Some(tail) };
                self.progress(now);
            }
        }
    }

    // ---- decisions --------------------------------------------------------

    /// `process_HELLO` of §4.3.
    // spec: channel.md §4.3 process_HELLO
    fn process_hello(
        &mut self,
        now: Instant,
        mine: NegotiationBits,
        own_half: Option<Ephemeral>,
        h: &OwnedNegotiation,
        ctx: &mut impl ChannelContext,
    ) {
        let ip = mine.public_key.intersect(h.bits.public_key);
        let is = mine.symmetric.intersect(h.bits.symmetric);
        let ie = mine.no_encrypt && h.bits.no_encrypt;
        // Can the peer use the key we already offered? Otherwise forget our half.
        let prior = own_half.is_some().then_some(mine);
        let own_half = own_half.filter(|half| h.bits.public_key.contains(half.suite()));
        // Can we use the key the peer offered?
        let suite = h
            .bits
            .public_key
            .cheapest()
            .filter(|s| mine.public_key.contains(*s));
        let peer = suite.map(|s| PublicKey::new(s, h.static_key));
        let known = peer.is_some_and(|p| ctx.has_resumable_state(now, &p));
        let offer = NegotiationBits {
            public_key: ip,
            symmetric: is,
            no_encrypt: ie,
            resume: known,
        };

        if ip.is_empty() || is.is_empty() {
            self.state = State::Closed { token: None };
            self.progress(now); // FAIL, then the channel dies
            return;
        }
        let (Some(suite), Some(peer)) = (suite, peer) else {
            self.go_sent(now, offer, own_half, ctx); // re-offer the intersection
            return;
        };
        if known && !h.bits.resume {
            self.go_sent(now, offer, own_half, ctx); // ask the peer to resume
            return;
        }
        if self.unverified.is_some()
            && (!self.may_send(WELCOME_LEN) || !ctx.admit_key_agreement(now))
        {
            // Anti-amplification and CPU protection: answer with a HELLO no larger
            // than what the unverified address sent us, without a key agreement.
            // The peer, in SENT, treats it as a simultaneous open and sends a
            // WELCOME, whose arrival proves its address (§4.9; the reference's
            // resume path answers a HELLO with a HELLO the same way).
            self.go_sent(now, offer, own_half, ctx);
            return;
        }
        // A kept half always has the peer's suite (the costs are distinct, §4.3).
        let (half, unused) = match own_half {
            Some(half) if half.suite() == suite => (half, None),
            other => (self.new_half(suite, ctx), other),
        };
        match self.derive(&half, h, ctx) {
            Some(keys) => {
                let offer = Offer {
                    agreed: offer,
                    half,
                };
                self.state = State::Received {
                    offer,
                    peer,
                    keys: Box::new(keys),
                    local_addr: h.address,
                    tail: Tail::EMPTY,
                };
                self.progress(now);
            }
            None => {
                // Hostile or degenerate values (remark R2): the HELLO counts as
                // not received. A SENT channel keeps offering; a CLOSED one dies
                // silently, leaving no state behind.
                match (prior, unused.or(prior.map(|_| half))) {
                    (Some(agreed), Some(half)) => {
                        self.state = State::Sent {
                            offer: Offer { agreed, half },
                            token: None,
                        };
                    }
                    _ => {
                        self.dead = true;
                        self.timer.cancel();
                    }
                }
            }
        }
    }

    fn go_sent(
        &mut self,
        now: Instant,
        bits: NegotiationBits,
        half: Option<Ephemeral>,
        ctx: &mut impl ChannelContext,
    ) {
        let half = match half {
            Some(h) => h,
            None => {
                let suite = bits
                    .public_key
                    .cheapest()
                    .expect("offers always name a public-key suite");
                self.new_half(suite, ctx)
            }
        };
        self.state = State::Sent {
            offer: Offer { agreed: bits, half },
            token: None,
        };
        self.progress(now);
    }

    fn new_half(&self, suite: PublicKeySuite, ctx: &mut impl ChannelContext) -> Ephemeral {
        let mut raw = [0u8; 32];
        ctx.fill_random(&mut raw);
        let half = Ephemeral::from_raw(suite, &raw);
        raw.zeroize();
        half
    }

    fn derive(
        &self,
        half: &Ephemeral,
        peer: &OwnedNegotiation,
        ctx: &impl ChannelContext,
    ) -> Option<SessionKeys> {
        let sym = peer
            .bits
            .symmetric
            .intersect(self.config.symmetric_suites)
            .cheapest()?;
        let material: KeyMaterial = half
            .agree(ctx.private_key(), &peer.static_key, &peer.ephemeral, sym)
            .ok()?;
        Some(SessionKeys::new(sym, &material))
    }

    /// `progress()` of §4.6: request a transmission and re-arm the timer.
    fn progress(&mut self, now: Instant) {
        self.transmit = true;
        self.timer.arm(now);
    }

    // spec: channel.md §4.7
    fn establish(
        &mut self,
        now: Instant,
        agreement: Agreement,
        initial_ack_timer: bool,
        ctx: &mut impl ChannelContext,
    ) {
        let info = EstablishedInfo {
            peer: agreement.peer,
            resume: agreement.resume,
            local_addr: agreement.local_addr,
            remote_addr: self.remote,
            no_encrypt: agreement.no_encrypt,
        };
        ctx.on_established(now, &info);
        // Talking to ourselves is decided by the static keys (remark R5).
        let loopback = ctx.private_key().public_key(agreement.peer.suite()) == agreement.peer;
        let rtt0 = now.saturating_duration_since(self.created);
        let initial_tsn = self.config.initial_tsn;
        let e = Established::new(
            now,
            agreement,
            loopback,
            rtt0,
            initial_ack_timer,
            initial_tsn,
        );
        self.state = State::Established(Box::new(e));
        self.timer.cancel();
        self.unverified = None;
        self.transmit = false;
    }

    // ---- transmitting -----------------------------------------------------

    /// Length of the handshake-state datagram [`Channel::poll_transmit`] would build.
    fn next_handshake_len(&self) -> usize {
        match &self.state {
            State::Closed { token: None } => HEADER_LEN,
            State::Closed { token: Some(t) } | State::Sent { token: Some(t), .. } => {
                HEADER_LEN + t.len()
            }
            State::Sent { .. } => HELLO_LEN,
            State::Received { .. } => WELCOME_LEN,
            State::Established(_) => 0,
        }
    }

    /// Whether `len` more bytes may go to an unverified remote.
    fn may_send(&self, len: usize) -> bool {
        !self.config.anti_amplification
            || self
                .unverified
                .is_none_or(|u| u.sent + len as u64 <= u.received)
    }

    /// Build the datagram the channel wants to send into `buf` (at least
    /// [`MIN_TRANSMIT_BUFFER`] bytes); returns its length, or `None` when the
    /// channel has nothing to send. The channel may die after this datagram
    /// (check [`Channel::is_dead`]).
    // spec: channel.md §4.5
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        ctx: &mut impl ChannelContext,
    ) -> Option<usize> {
        assert!(
            buf.len() >= MIN_TRANSMIT_BUFFER,
            "transmit buffer too small"
        );
        self.priority(ctx)?;
        let len = match &mut self.state {
            State::Established(e) => {
                self.transmit = false;
                let mtu = self.config.mtu;
                return Some(e.build(now, buf, mtu, ctx));
            }
            State::Closed { token } => {
                let n = match token {
                    None => self
                        .config
                        .local_bits()
                        .emit_fail(buf)
                        .expect("buffer holds FAIL"),
                    Some(t) => emit_nostate(t.as_slice(), buf).expect("buffer holds NOSTATE"),
                };
                self.dead = true;
                self.timer.cancel();
                n
            }
            State::Sent {
                token: token @ Some(_),
                ..
            } => {
                let t = token.take().expect("matched Some");
                emit_nostate(t.as_slice(), buf).expect("buffer holds NOSTATE")
            }
            State::Sent { offer, token: None } => {
                let own = ctx.private_key().public_key(offer.half.suite());
                let msg = Negotiation {
                    bits: offer.agreed,
                    static_key: own.as_bytes(),
                    ephemeral: offer.half.public(),
                    address: self.remote,
                };
                let n = msg.emit_hello(buf).expect("buffer holds HELLO");
                let padded = WELCOME_LEN;
                if self.config.pad_hello && self.may_send(padded) {
                    buf[n..padded].fill(0);
                    padded
                } else {
                    n
                }
            }
            State::Received {
                offer, keys, tail, ..
            } => {
                let own = ctx.private_key().public_key(offer.half.suite());
                let msg = Negotiation {
                    bits: offer.agreed,
                    static_key: own.as_bytes(),
                    ephemeral: offer.half.public(),
                    address: self.remote,
                };
                let n = msg.emit_welcome_body(buf).expect("buffer holds WELCOME");
                keys.seal(0, &mut buf[..WELCOME_LEN], n, false);
                *tail = Tail::of(&buf[..WELCOME_LEN]);
                WELCOME_LEN
            }
        };
        self.transmit = false;
        if let Some(u) = &mut self.unverified {
            u.sent += len as u64;
        }
        Some(len)
    }

    /// The datagram just returned by [`Channel::poll_transmit`] could not be
    /// sent because it was too large for the path (EMSGSIZE).
    pub fn on_send_failed(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        if let State::Established(e) = &mut self.state {
            e.on_send_failed(now, ctx);
        }
    }
}

/// The fields of a received HELLO or WELCOME, copied out of the datagram so
/// that the datagram buffer can be used (MAC check) while deciding.
struct OwnedNegotiation {
    bits: NegotiationBits,
    static_key: [u8; 32],
    ephemeral: [u8; 32],
    address: SocketAddrV4,
}

impl From<&Negotiation<'_>> for OwnedNegotiation {
    fn from(n: &Negotiation<'_>) -> Self {
        OwnedNegotiation {
            bits: n.bits,
            static_key: *n.static_key,
            ephemeral: *n.ephemeral,
            address: n.address,
        }
    }
}

/// `confirm_WELCOME` of §4.3.
// spec: channel.md §4.3 confirm_WELCOME
fn confirm_welcome(agreed: &NegotiationBits, w: &NegotiationBits) -> bool {
    !w.public_key.is_empty()
        && !w.symmetric.is_empty()
        && w.public_key.is_subset(agreed.public_key)
        && w.symmetric.is_subset(agreed.symmetric)
        && w.public_key.cheapest() == agreed.public_key.cheapest()
        && (!w.no_encrypt || agreed.no_encrypt)
        && (!w.resume || agreed.resume)
}

/// `open_welcome` of §3.8: the MAC is the last 16 bytes, counter 0.
fn open_welcome(keys: &SessionKeys, datagram: &mut [u8]) -> bool {
    datagram.len() >= NEGOTIATION_LEN + MAC_LEN
        && keys
            .open(0, datagram, datagram.len() - MAC_LEN, false)
            .is_ok()
}
