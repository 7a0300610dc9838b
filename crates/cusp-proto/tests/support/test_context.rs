//! A scriptable [`ChannelContext`] for driving channels in tests: a fixed key,
//! a deterministic entropy stream, and a host made of a queue of payloads.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use cusp_proto::channel::{ChannelContext, EstablishedInfo, PacketId};
use cusp_proto::crypto::{PrivateKey, PublicKey};

/// Test stand-in for the endpoint and the host bound to one channel.
pub struct TestContext {
    /// Our identity.
    pub key: PrivateKey,
    /// Entropy stream: byte i is `(seed + i) mod 256`, starting at `position`.
    pub seed: u8,
    /// Next entropy offset (the vectors draw ephemerals after the 40 key bytes).
    pub position: usize,
    /// Answer to `has_resumable_state`.
    pub resumable: bool,
    /// Answer to `admit_key_agreement`.
    pub admit: bool,
    /// The host is a zombie once it has nothing queued or in flight (unless forced).
    pub force_zombie: Option<bool>,
    /// Payloads still to send, in order.
    pub outbox: VecDeque<Vec<u8>>,
    /// Payloads in flight by packet id.
    pub in_flight: BTreeMap<PacketId, Vec<u8>>,
    next_packet: PacketId,
    /// Every outcome reported, in order.
    pub outcomes: Vec<(PacketId, bool)>,
    /// Payloads delivered by the channel (empty ones included).
    pub received: Vec<Vec<u8>>,
    /// Refuse incoming payloads (the channel must then not acknowledge them).
    pub refuse: bool,
    /// Establishments reported.
    pub established: Vec<EstablishedInfo>,
    /// Number of `on_unbound` calls.
    pub unbound: usize,
    /// Number of key agreements admitted.
    pub admitted: usize,
}

impl TestContext {
    /// A context whose key comes from the 40 entropy bytes `seed, seed+1, …`
    /// (the rule of the vector files); ephemerals are drawn from offset 40 on.
    pub fn from_seed(seed: u8) -> Self {
        let entropy: [u8; 40] = std::array::from_fn(|i| seed.wrapping_add(i as u8));
        TestContext {
            key: PrivateKey::from_entropy(&entropy),
            seed,
            position: 40,
            resumable: false,
            admit: true,
            force_zombie: None,
            outbox: VecDeque::new(),
            in_flight: BTreeMap::new(),
            next_packet: 0,
            outcomes: Vec::new(),
            received: Vec::new(),
            refuse: false,
            established: Vec::new(),
            unbound: 0,
            admitted: 0,
        }
    }

    /// Our public key for `suite`.
    pub fn public(&self, suite: cusp_proto::crypto::PublicKeySuite) -> PublicKey {
        self.key.public_key(suite)
    }

    /// Queue a payload to send.
    pub fn send(&mut self, payload: &[u8]) {
        self.outbox.push_back(payload.to_vec());
    }
}

impl ChannelContext for TestContext {
    fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.seed.wrapping_add(self.position as u8);
            self.position += 1;
        }
    }

    fn has_resumable_state(&mut self, _now: Instant, _peer: &PublicKey) -> bool {
        self.resumable
    }

    fn admit_key_agreement(&mut self, _now: Instant) -> bool {
        if self.admit {
            self.admitted += 1;
        }
        self.admit
    }

    fn on_established(&mut self, _now: Instant, info: &EstablishedInfo) {
        self.established.push(*info);
    }

    fn on_unbound(&mut self, _now: Instant) {
        self.unbound += 1;
    }

    fn host_priority(&self) -> Option<f32> {
        (!self.outbox.is_empty()).then_some(0.0)
    }

    fn host_is_zombie(&self) -> bool {
        self.force_zombie
            .unwrap_or(self.outbox.is_empty() && self.in_flight.is_empty())
    }

    fn pull(&mut self, _now: Instant, buf: &mut [u8]) -> (usize, PacketId) {
        let id = self.next_packet;
        self.next_packet += 1;
        let payload = match self.outbox.front() {
            Some(p) if p.len() <= buf.len() => self.outbox.pop_front().expect("front exists"),
            _ => Vec::new(),
        };
        buf[..payload.len()].copy_from_slice(&payload);
        let n = payload.len();
        self.in_flight.insert(id, payload);
        (n, id)
    }

    fn on_packet_outcome(&mut self, _now: Instant, packet: PacketId, acked: bool) {
        let payload = self
            .in_flight
            .remove(&packet)
            .expect("outcome for a packet in flight, once");
        self.outcomes.push((packet, acked));
        if !acked && !payload.is_empty() {
            self.outbox.push_front(payload);
        }
    }

    fn recv(&mut self, _now: Instant, payload: &[u8]) -> bool {
        if self.refuse {
            return false;
        }
        self.received.push(payload.to_vec());
        true
    }
}
