//! The ESTABLISHED state: building and processing DATA datagrams with the
//! agreed keys and the reliability stack (`spec/channel.md` §4.8, §5).

use std::time::{Duration, Instant};

use super::ack::AckGenerator;
use super::congestion::{CongestionControl, Reno};
use super::context::{ChannelContext, PacketId};
use super::recovery::Recovery;
use super::{Outcome, Tail};
use crate::crypto::{PublicKey, SessionKeys};
use crate::wire::{DataHeader, HEADER_LEN, MAC_LEN, truncate28};

/// Counters of one establishment, for statistics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// DATA datagrams built (including pure acks).
    pub data_sent: u64,
    /// DATA datagrams that carried a tracked payload.
    pub tracked_sent: u64,
    /// Authenticated DATA datagrams received.
    pub data_received: u64,
    /// DATA datagrams dropped because their MAC did not verify.
    pub bad_mac: u64,
    /// Tracked datagrams acknowledged.
    pub acked: u64,
    /// Tracked datagrams declared lost by fast retransmit.
    pub missing: u64,
    /// Tracked datagrams declared lost by the retransmission timeout.
    pub timeouts: u64,
    /// Stream payload bytes handed to the host.
    pub payload_bytes_received: u64,
    /// Stream payload bytes sent in tracked datagrams (retransmissions included).
    pub payload_bytes_sent: u64,
}

impl ChannelStats {
    fn tally(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Acked => self.acked += 1,
            Outcome::Missing => self.missing += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::SendFailed => {}
        }
    }
}

/// What processing a DATA datagram asks the state machine to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterData {
    /// Nothing special.
    Continue,
    /// Send a datagram soon (empty datagram while zombie: our finish flag must go out).
    Transmit,
    /// Close: the peer finished (or we talk to ourselves) and we are idle.
    Close,
}

/// The outcome of a successful negotiation: what establishment needs (§4.7).
pub(super) struct Agreement {
    pub(super) keys: SessionKeys,
    pub(super) peer: PublicKey,
    pub(super) no_encrypt: bool,
    pub(super) resume: bool,
    pub(super) local_addr: std::net::SocketAddrV4,
}

/// State of an established channel.
pub(super) struct Established<C: CongestionControl = Reno> {
    pub(super) keys: SessionKeys,
    pub(super) no_encrypt: bool,
    pub(super) peer: PublicKey,
    /// The peer's static key is our own: close as soon as idle (remark R5).
    pub(super) loopback: bool,
    /// Last 16 bytes of the last DATA we sent (the NOSTATE token we accept).
    pub(super) tail: Tail,
    /// The last DATA we sent carried the finish flag.
    finish_sent: bool,
    /// The peer's last DATA carried the finish flag: it is idle.
    peer_finished: bool,
    /// Tail of the last DATA we sent with the finish flag: while idle we also
    /// accept a NOSTATE echoing it (docs/decisions.md "Closing NOSTATE").
    pub(super) finish_tail: Tail,
    /// TSN of the last DATA datagram sent.
    tsn: u64,
    /// Largest authenticated peer TSN: the reference for extending the next (R1).
    max_peer_tsn: u64,
    acks: AckGenerator,
    recovery: Recovery<(PacketId, C::Ticket)>,
    cc: C,
    pub(super) stats: ChannelStats,
}

impl<C: CongestionControl + Default> Established<C> {
    /// The state right after establishment (§4.7): `rtt0` is the handshake
    /// duration, `initial_tsn` the TSN counted as already sent (normally 0).
    pub(super) fn new(
        now: Instant,
        agreement: Agreement,
        loopback: bool,
        rtt0: Duration,
        initial_ack_timer: bool,
        initial_tsn: u64,
    ) -> Self {
        Established {
            keys: agreement.keys,
            no_encrypt: agreement.no_encrypt,
            peer: agreement.peer,
            loopback,
            tail: Tail::EMPTY,
            finish_sent: false,
            peer_finished: false,
            finish_tail: Tail::EMPTY,
            tsn: initial_tsn,
            // Both peers use the same initial TSN (a testing knob, see ChannelConfig).
            max_peer_tsn: initial_tsn,
            acks: AckGenerator::new(now, initial_ack_timer).starting_after(initial_tsn as u32),
            recovery: Recovery::new(rtt0),
            cc: C::default(),
            stats: ChannelStats::default(),
        }
    }
}

impl<C: CongestionControl> Established<C> {
    /// Priority of this channel for the scheduler (§5.2): `+∞` for a wanted
    /// ack or negotiation work, the host's priority while the window is open,
    /// otherwise `None`.
    ///
    /// Beyond the reference: when the host has just become idle (a zombie) and
    /// our last DATA did not say so, one datagram with the finish flag is
    /// wanted, so that an idle peer closes the channel at once instead of
    /// after the 240 s idle timer (§4.8 graceful close). The reference only
    /// sends it in answer to an empty datagram.
    pub(super) fn priority(&self, requested: bool, ctx: &impl ChannelContext) -> Option<f32> {
        if requested || self.acks.wants_ack() || (!self.finish_sent && self.says_idle(ctx)) {
            return Some(f32::INFINITY);
        }
        ctx.host_priority().filter(|_| self.cc.window_open())
    }

    /// Earliest deadline of the ack timer and the retransmission timer.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.acks.deadline(), self.recovery.timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fire whatever timers have expired.
    pub(super) fn on_timeout(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        if self.acks.deadline().is_some_and(|d| d <= now) {
            self.acks.on_timeout(now);
        }
        self.drain_timeouts(now, ctx);
    }

    fn report(
        &mut self,
        now: Instant,
        packet: PacketId,
        ticket: C::Ticket,
        outcome: Outcome,
        ctx: &mut impl ChannelContext,
    ) {
        let rtt = self.recovery.rtt_info();
        self.stats.tally(outcome);
        self.cc.on_outcome(now, ticket, outcome, rtt);
        ctx.on_packet_outcome(now, packet, outcome.is_acked());
    }

    fn drain_timeouts(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        while let Some(((packet, ticket), outcome)) = self.recovery.on_timeout(now) {
            self.report(now, packet, ticket, outcome, ctx);
        }
    }

    /// Build one DATA datagram into `buf` (at most `mtu` bytes are used);
    /// returns its length. `buf` must hold at least 24 bytes.
    // spec: channel.md §4.8 (building), §5.3 pull
    pub(super) fn build(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mtu: usize,
        ctx: &mut impl ChannelContext,
    ) -> usize {
        let limit = buf.len().min(mtu);
        debug_assert!(limit >= HEADER_LEN + MAC_LEN);
        // Keep the stream budget a multiple of 4 (streams.md §0.4).
        let budget = (limit - HEADER_LEN - MAC_LEN) & !3;
        self.tsn += 1;
        let tsn = self.tsn;
        let mut filled = 0;
        if ctx.host_priority().is_some() && self.cc.window_open() {
            let (n, packet) = ctx.pull(now, &mut buf[HEADER_LEN..HEADER_LEN + budget]);
            filled = n.min(budget);
            let ticket = self.cc.on_sent(now, filled);
            self.recovery.on_sent(now, tsn, filled, (packet, ticket));
            self.stats.tracked_sent += 1;
            self.stats.payload_bytes_sent += filled as u64;
        }
        let (asn, acklen) = self.acks.take_ack(now);
        self.finish_sent = self.says_idle(ctx);
        let header = DataHeader::new(self.finish_sent, tsn, u32::from(acklen), u64::from(asn));
        header.emit(buf).expect("buffer holds the header");
        let len = HEADER_LEN + filled + MAC_LEN;
        self.keys
            .seal(tsn, &mut buf[..len], HEADER_LEN, !self.no_encrypt);
        self.tail = Tail::of(&buf[..len]);
        if self.finish_sent {
            self.finish_tail = self.tail;
        }
        self.stats.data_sent += 1;
        len
    }

    /// The datagram of TSN `tsn` could not be sent (EMSGSIZE).
    pub(super) fn on_send_failed(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        if let Some(((packet, ticket), outcome)) = self.recovery.on_send_failed(self.tsn) {
            self.report(now, packet, ticket, outcome, ctx);
        }
    }

    /// Authenticate and process a received DATA datagram (decrypted in place).
    /// Returns `None` if it did not authenticate (it is then ignored).
    // spec: channel.md §4.8 (process_DATA), §2.9
    pub(super) fn receive(
        &mut self,
        now: Instant,
        header: DataHeader,
        datagram: &mut [u8],
        ctx: &mut impl ChannelContext,
    ) -> Option<AfterData> {
        let tsn = header.tsn(self.max_peer_tsn);
        if !self.open(tsn, datagram) {
            return None;
        }
        Some(self.process_opened(now, header, tsn, datagram, ctx))
    }

    /// Check the MAC of `datagram` for peer TSN `tsn` and decrypt it in place.
    pub(super) fn open(&mut self, tsn: u64, datagram: &mut [u8]) -> bool {
        let ok = self
            .keys
            .open(tsn, datagram, HEADER_LEN, !self.no_encrypt)
            .is_ok();
        if !ok {
            self.stats.bad_mac += 1;
        }
        ok
    }

    /// Process a DATA datagram whose MAC verified for peer TSN `tsn`.
    pub(super) fn process_opened(
        &mut self,
        now: Instant,
        header: DataHeader,
        tsn: u64,
        datagram: &[u8],
        ctx: &mut impl ChannelContext,
    ) -> AfterData {
        self.stats.data_received += 1;
        self.max_peer_tsn = self.max_peer_tsn.max(tsn);
        let payload = &datagram[HEADER_LEN..datagram.len() - MAC_LEN];
        let tsn32 = tsn as u32;
        if self.acks.classify(tsn32).is_processed() {
            let asn = truncate_asn(header.asn(self.tsn));
            let (recovery, cc, stats) = (&mut self.recovery, &mut self.cc, &mut self.stats);
            recovery.on_ack(now, asn, header.acklen, |(packet, ticket), outcome, rtt| {
                stats.tally(outcome);
                cc.on_outcome(now, ticket, outcome, rtt);
                ctx.on_packet_outcome(now, packet, outcome.is_acked());
            });
            self.drain_timeouts(now, ctx);
            let accepted = ctx.recv(now, payload);
            if accepted {
                self.stats.payload_bytes_received += payload.len() as u64;
            }
            self.acks.record(now, tsn32, accepted, !payload.is_empty());
        }
        // The reference evaluates the close rule even for duplicates.
        let zombie = ctx.host_is_zombie();
        self.peer_finished = header.finish;
        if (header.finish || self.loopback) && zombie {
            AfterData::Close
        } else if payload.is_empty() && self.says_idle(ctx) {
            AfterData::Transmit
        } else {
            AfterData::Continue
        }
    }

    /// Whether our DATA says the host is idle (the finish flag): once the host
    /// announces it, or at once when it has no streams and the peer said it is
    /// idle too (the channel then closes; waiting would only keep a peer that
    /// is done, or closing, waiting).
    fn says_idle(&self, ctx: &impl ChannelContext) -> bool {
        ctx.host_announces_idle() || (self.peer_finished && ctx.host_is_zombie())
    }

    /// Tear down the reliability stack: every outstanding datagram is reported
    /// lost exactly once, then the host is unbound (§4.1).
    pub(super) fn teardown(&mut self, now: Instant, ctx: &mut impl ChannelContext) {
        let lost: Vec<_> = self.recovery.drain_lost().collect();
        for ((packet, ticket), outcome) in lost {
            self.report(now, packet, ticket, outcome, ctx);
        }
        ctx.on_unbound(now);
    }

    /// See [`Channel::ack_urgent`](super::Channel::ack_urgent).
    pub(super) fn ack_urgent(&self) -> bool {
        self.acks.ack_urgent()
    }

    /// The smoothed round-trip time.
    pub(super) fn rtt(&self) -> Duration {
        self.recovery.rtt()
    }

    /// Congestion window and bytes in flight.
    pub(super) fn window(&self) -> (u64, u64) {
        (self.cc.cwnd(), self.cc.in_flight())
    }
}

/// The low 32 bits of an extended ASN, as the reliability layers use them (§2.9).
fn truncate_asn(asn: u64) -> u32 {
    debug_assert_eq!(truncate28(asn), asn as u32 & 0x0FFF_FFFF);
    asn as u32
}
