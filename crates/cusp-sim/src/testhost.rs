//! A [`HostLayer`] with self-checking test messages instead of streams, and a
//! [`Node`] that runs a cusp-proto [`Endpoint`] over it, so scenarios can test
//! channels alone and assert exact delivery.
//!
//! Each host sends numbered messages to the peers it has a [`Flow`] for, one
//! message per datagram: header (message id u64, length u16, CRC-32 of the
//! content u32, big-endian) and content derived from (the sender's public key,
//! id), so the receiver can recompute and verify every byte. A message whose
//! datagram is reported lost is sent again; the receiver records each id once
//! (later copies are counted as duplicates) and counts anything that does not
//! verify.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use cusp_proto::channel::{EstablishedInfo, PacketId};
use cusp_proto::crypto::{Entropy, PrivateKey, PublicKey};
use cusp_proto::endpoint::{ChannelRequest, Endpoint, EndpointConfig, HostLayer};

use crate::node::{Node, Transmit};
use crate::nodes::crc32;
use crate::rng::Rng;

/// Bytes of a message header: id (8), length (2), CRC-32 (4).
pub const MESSAGE_HEADER: usize = 14;

/// What one host sends to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Number of messages (`u64::MAX`: a bulk sender that never runs out).
    pub count: u64,
    /// Smallest message length, header included (≥ [`MESSAGE_HEADER`]).
    pub min_len: usize,
    /// Largest message length (≤ the stream budget, 1 444 bytes).
    pub max_len: usize,
    /// Message `i` becomes available `i · interval` after the host starts.
    pub interval: Duration,
}

impl Flow {
    /// `count` messages of 40-1 000 bytes, all available at once.
    pub fn messages(count: u64) -> Flow {
        Flow {
            count,
            min_len: 40,
            max_len: 1_000,
            interval: Duration::ZERO,
        }
    }

    /// An endless stream of full-size (1 444-byte) messages.
    pub fn bulk() -> Flow {
        Flow {
            count: u64::MAX,
            min_len: 1_444,
            max_len: 1_444,
            interval: Duration::ZERO,
        }
    }

    /// Spread the messages `interval` apart.
    pub fn every(mut self, interval: Duration) -> Flow {
        self.interval = interval;
        self
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key_seed(sender: &PublicKey) -> u64 {
    let b = sender.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        ^ u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
}

/// Write message `id` of `sender` (with length from `flow`) into `buf`; returns its length.
fn encode(sender: &PublicKey, flow: &Flow, id: u64, buf: &mut [u8]) -> usize {
    let mut state = key_seed(sender) ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let span = (flow.max_len - flow.min_len + 1) as u64;
    let len = (flow.min_len + (splitmix(&mut state) % span) as usize).min(buf.len());
    let content = &mut buf[MESSAGE_HEADER..len];
    for chunk in content.chunks_mut(8) {
        let r = splitmix(&mut state).to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let crc = crc32(content);
    buf[..8].copy_from_slice(&id.to_be_bytes());
    buf[8..10].copy_from_slice(&(len as u16).to_be_bytes());
    buf[10..14].copy_from_slice(&crc.to_be_bytes());
    len
}

/// What a receiver makes of a payload.
enum Verdict {
    Valid(u64),
    Malformed,
    Corrupted,
}

fn verify(sender: &PublicKey, payload: &[u8]) -> Verdict {
    if payload.len() < MESSAGE_HEADER {
        return Verdict::Malformed;
    }
    let id = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
    let len = usize::from(u16::from_be_bytes([payload[8], payload[9]]));
    if len != payload.len() {
        return Verdict::Malformed;
    }
    // Regenerate the content with the same length.
    let flow = Flow {
        count: 0,
        min_len: len,
        max_len: len,
        interval: Duration::ZERO,
    };
    let mut expect = vec![0u8; len];
    encode(sender, &flow, id, &mut expect);
    // The length drawn for `id` consumed one random word either way, so the
    // content matches whatever the sender's length range was.
    if expect[10..] == payload[10..] {
        Verdict::Valid(id)
    } else {
        Verdict::Corrupted
    }
}

/// Sending state towards one peer.
#[derive(Debug, Clone)]
struct OutFlow {
    flow: Flow,
    /// Messages `0..next_new` have been sent at least once.
    next_new: u64,
    /// Messages `0..released` may be sent (the flow's pacing).
    released: u64,
    /// Lost messages to send again, oldest first.
    resend: VecDeque<u64>,
    /// Ids acknowledged at least once.
    acked: BTreeSet<u64>,
    in_flight: u64,
}

impl OutFlow {
    fn has_work(&self) -> bool {
        !self.resend.is_empty() || self.next_new < self.released
    }

    fn done(&self) -> bool {
        self.acked.len() as u64 >= self.flow.count
    }
}

/// What one host received from one peer.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    /// Distinct message ids received intact.
    pub ids: BTreeSet<u64>,
    /// Arrival time and length of each distinct message, in arrival order.
    pub arrivals: Vec<(Instant, u32)>,
    /// Copies of ids already received.
    pub duplicates: u64,
}

/// Counters of a [`TestHosts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHostStats {
    /// Payloads that were not a well-formed message.
    pub malformed: u64,
    /// Well-formed messages whose content did not verify.
    pub corrupted: u64,
    /// Payloads from a peer the layer had not accepted (contract violation).
    pub unknown_peer: u64,
    /// Establishments reported by the endpoint.
    pub established: u64,
    /// Establishments without resume (the host's state would be wiped).
    pub wipes: u64,
    /// Unbinds reported by the endpoint.
    pub unbound: u64,
    /// Outcomes reported true / false.
    pub acked: u64,
    /// Outcomes reported false (lost, torn down).
    pub lost: u64,
}

/// The test host layer: flows out, inboxes in.
#[derive(Debug, Clone)]
pub struct TestHosts {
    start: Instant,
    own: PublicKey,
    flows: BTreeMap<PublicKey, OutFlow>,
    inboxes: BTreeMap<PublicKey, Inbox>,
    /// Peers established at least once, with their last address.
    known: BTreeMap<PublicKey, SocketAddrV4>,
    bound: BTreeSet<PublicKey>,
    in_flight: HashMap<PacketId, (PublicKey, u64)>,
    next_packet: PacketId,
    requests: VecDeque<ChannelRequest>,
    /// Counters.
    pub stats: TestHostStats,
    /// Every establishment, in order.
    pub establishments: Vec<EstablishedInfo>,
}

impl TestHosts {
    /// The host layer of the endpoint whose public key is `own`, starting at
    /// `start` with no flows.
    pub fn new(start: Instant, own: PublicKey) -> Self {
        TestHosts {
            start,
            own,
            flows: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            known: BTreeMap::new(),
            bound: BTreeSet::new(),
            in_flight: HashMap::new(),
            next_packet: 0,
            requests: VecDeque::new(),
            stats: TestHostStats::default(),
            establishments: Vec::new(),
        }
    }

    /// Send `flow` to `peer`.
    pub fn with_flow(mut self, peer: PublicKey, flow: Flow) -> Self {
        assert!(flow.min_len >= MESSAGE_HEADER && flow.min_len <= flow.max_len);
        assert!(flow.max_len <= cusp_proto::wire::STREAM_BUDGET);
        self.flows.insert(
            peer,
            OutFlow {
                flow,
                next_new: 0,
                released: 0,
                resend: VecDeque::new(),
                acked: BTreeSet::new(),
                in_flight: 0,
            },
        );
        let start = self.start;
        self.release(start);
        self
    }

    /// What arrived from `peer`.
    pub fn inbox(&self, peer: &PublicKey) -> Option<&Inbox> {
        self.inboxes.get(peer)
    }

    /// Messages of the flow to `peer` acknowledged at least once.
    pub fn acked(&self, peer: &PublicKey) -> u64 {
        self.flows.get(peer).map_or(0, |f| f.acked.len() as u64)
    }

    /// Every flow is completely acknowledged.
    pub fn all_acked(&self) -> bool {
        self.flows.values().all(OutFlow::done)
    }

    /// `peer` is bound to a channel.
    pub fn is_bound(&self, peer: &PublicKey) -> bool {
        self.bound.contains(peer)
    }

    /// Check that `inbox` of `peer` holds exactly ids `0..count`, and that
    /// nothing malformed or corrupted was accepted.
    pub fn check_exact(&self, peer: &PublicKey, count: u64) -> Result<(), String> {
        if self.stats.malformed + self.stats.corrupted + self.stats.unknown_peer > 0 {
            return Err(format!("bad payloads accepted: {:?}", self.stats));
        }
        let ids = self.inboxes.get(peer).map(|i| &i.ids);
        let n = ids.map_or(0, |s| s.len() as u64);
        let last = ids.and_then(|s| s.last().copied());
        if n != count || (count > 0 && last != Some(count - 1)) {
            return Err(format!(
                "{n} of {count} messages delivered (last id {last:?})"
            ));
        }
        Ok(())
    }

    fn release(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        for f in self.flows.values_mut() {
            f.released = if f.flow.interval.is_zero() {
                f.flow.count
            } else {
                let n = elapsed.as_nanos() / f.flow.interval.as_nanos() + 1;
                (n.min(u128::from(f.flow.count))) as u64
            };
        }
    }
}

impl HostLayer for TestHosts {
    fn has_resumable_state(&mut self, _now: Instant, peer: &PublicKey) -> bool {
        self.known.contains_key(peer)
    }

    fn on_established(&mut self, _now: Instant, info: &EstablishedInfo) {
        self.stats.established += 1;
        if !info.resume {
            // Messages are end-to-end here: nothing to wipe, only counted.
            self.stats.wipes += 1;
        }
        self.known.insert(info.peer, info.remote_addr);
        self.bound.insert(info.peer);
        self.establishments.push(*info);
    }

    fn on_unbound(&mut self, _now: Instant, peer: &PublicKey) {
        self.stats.unbound += 1;
        self.bound.remove(peer);
    }

    fn priority(&self, peer: &PublicKey) -> Option<f32> {
        self.flows
            .get(peer)
            .is_some_and(OutFlow::has_work)
            .then_some(0.0)
    }

    fn is_zombie(&self, peer: &PublicKey) -> bool {
        self.flows.get(peer).is_none_or(OutFlow::done)
    }

    fn pull(&mut self, now: Instant, peer: &PublicKey, buf: &mut [u8]) -> (usize, PacketId) {
        self.release(now);
        let Some(f) = self.flows.get_mut(peer) else {
            return (0, 0);
        };
        let id = match f.resend.pop_front() {
            Some(id) => id,
            None if f.next_new < f.released => {
                f.next_new += 1;
                f.next_new - 1
            }
            None => return (0, 0),
        };
        let len = encode(&self.own, &f.flow, id, buf);
        f.in_flight += 1;
        self.next_packet += 1;
        self.in_flight.insert(self.next_packet, (*peer, id));
        (len, self.next_packet)
    }

    fn on_packet_outcome(
        &mut self,
        _now: Instant,
        peer: &PublicKey,
        packet: PacketId,
        acked: bool,
    ) {
        let Some((p, id)) = self.in_flight.remove(&packet) else {
            return;
        };
        debug_assert_eq!(p, *peer);
        let Some(f) = self.flows.get_mut(&p) else {
            return;
        };
        f.in_flight = f.in_flight.saturating_sub(1);
        if acked {
            self.stats.acked += 1;
            f.acked.insert(id);
        } else {
            self.stats.lost += 1;
            if !f.acked.contains(&id) {
                f.resend.push_back(id);
            }
        }
    }

    fn recv(&mut self, now: Instant, peer: &PublicKey, payload: &[u8]) -> bool {
        if payload.is_empty() {
            return true;
        }
        if !self.bound.contains(peer) {
            self.stats.unknown_peer += 1;
        }
        match verify(peer, payload) {
            Verdict::Valid(id) => {
                let inbox = self.inboxes.entry(*peer).or_default();
                if inbox.ids.insert(id) {
                    inbox.arrivals.push((now, payload.len() as u32));
                } else {
                    inbox.duplicates += 1;
                }
            }
            Verdict::Malformed => self.stats.malformed += 1,
            Verdict::Corrupted => self.stats.corrupted += 1,
        }
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.flows
            .values()
            .filter(|f| !f.flow.interval.is_zero() && f.released < f.flow.count)
            .map(|f| {
                self.start
                    + f.flow
                        .interval
                        .saturating_mul(f.released.min(u64::from(u32::MAX)) as u32)
            })
            .min()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.release(now);
        // A host with work but no channel asks for one (streams.md §4.4 reconnect).
        for (peer, f) in &self.flows {
            if f.has_work()
                && !self.bound.contains(peer)
                && let Some(addr) = self.known.get(peer)
            {
                self.requests.push_back(ChannelRequest::Connect(*addr));
            }
        }
    }

    fn poll_channel_request(&mut self) -> Option<ChannelRequest> {
        self.requests.pop_front()
    }
}

/// A simulator [`Node`] running an [`Endpoint`] over [`TestHosts`].
pub struct EndpointNode {
    /// The endpoint.
    pub endpoint: Endpoint<TestHosts>,
    buf: Vec<u8>,
}

impl EndpointNode {
    /// An endpoint with `key`, randomness from `rng`, and `hosts` above it.
    pub fn new(config: EndpointConfig, key: PrivateKey, rng: Rng, hosts: TestHosts) -> Self {
        let mut rng = rng;
        let entropy: Box<dyn Entropy + Send> = Box::new(move |buf: &mut [u8]| rng.fill_bytes(buf));
        EndpointNode {
            endpoint: Endpoint::new(config, key, entropy, hosts),
            buf: vec![0; 2048],
        }
    }

    /// The host layer.
    pub fn hosts(&self) -> &TestHosts {
        self.endpoint.hosts()
    }
}

impl Node for EndpointNode {
    fn handle(&mut self, now: Instant, from: SocketAddrV4, _local: SocketAddrV4, data: Vec<u8>) {
        let mut data = data;
        self.endpoint.handle(now, from, &mut data);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let t = self.endpoint.poll_transmit(now, &mut self.buf)?;
        Some(Transmit {
            destination: t.destination,
            contents: self.buf[..t.len].to_vec(),
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
    }
}

/// A private key drawn from `rng`.
pub fn test_key(rng: &mut Rng) -> PrivateKey {
    PrivateKey::generate(&mut |buf: &mut [u8]| rng.fill_bytes(buf))
}
