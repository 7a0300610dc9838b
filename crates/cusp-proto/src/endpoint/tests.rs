use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::channel::{EstablishedInfo, PacketId};
use crate::crypto::PrivateKey;

/// A host layer that sends queued payloads and records what arrives.
#[derive(Default)]
struct TestHosts {
    outbox: BTreeMap<PublicKey, VecDeque<Vec<u8>>>,
    inbox: Vec<(PublicKey, Vec<u8>)>,
    in_flight: BTreeMap<PacketId, (PublicKey, Vec<u8>)>,
    established: Vec<EstablishedInfo>,
    unbound: Vec<PublicKey>,
    acked: u64,
    next_packet: PacketId,
    requests: VecDeque<ChannelRequest>,
}

impl HostLayer for TestHosts {
    fn has_resumable_state(&mut self, _now: Instant, peer: &PublicKey) -> bool {
        self.established.iter().any(|i| i.peer == *peer)
    }
    fn on_established(&mut self, _now: Instant, info: &EstablishedInfo) {
        self.established.push(*info);
    }
    fn on_unbound(&mut self, _now: Instant, peer: &PublicKey) {
        self.unbound.push(*peer);
    }
    fn priority(&self, peer: &PublicKey) -> Option<f32> {
        self.outbox
            .get(peer)
            .is_some_and(|q| !q.is_empty())
            .then_some(0.0)
    }
    fn is_zombie(&self, _peer: &PublicKey) -> bool {
        false
    }
    fn pull(&mut self, _now: Instant, peer: &PublicKey, buf: &mut [u8]) -> (usize, PacketId) {
        let Some(msg) = self.outbox.get_mut(peer).and_then(|q| q.pop_front()) else {
            return (0, 0);
        };
        buf[..msg.len()].copy_from_slice(&msg);
        self.next_packet += 1;
        self.in_flight
            .insert(self.next_packet, (*peer, msg.clone()));
        (msg.len(), self.next_packet)
    }
    fn on_packet_outcome(
        &mut self,
        _now: Instant,
        _peer: &PublicKey,
        packet: PacketId,
        acked: bool,
    ) {
        let (peer, msg) = self
            .in_flight
            .remove(&packet)
            .expect("outcome of an unknown packet");
        if acked {
            self.acked += 1;
        } else {
            self.outbox.entry(peer).or_default().push_back(msg);
        }
    }
    fn recv(&mut self, _now: Instant, peer: &PublicKey, payload: &[u8]) -> bool {
        if !payload.is_empty() {
            self.inbox.push((*peer, payload.to_vec()));
        }
        true
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_channel_request(&mut self) -> Option<ChannelRequest> {
        self.requests.pop_front()
    }
}

fn addr(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
}

fn entropy(seed: u64) -> Box<dyn Entropy + Send> {
    let mut state = seed;
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (state >> 33) as u8;
        }
    })
}

fn endpoint(seed: u64, config: EndpointConfig) -> Endpoint<TestHosts> {
    let mut e = entropy(seed);
    let key = PrivateKey::generate(&mut |b: &mut [u8]| e.fill(b));
    Endpoint::new(config, key, entropy(seed + 1000), TestHosts::default())
}

/// Two endpoints on a lossless 5 ms path, stepped in virtual time.
struct Pair {
    now: Instant,
    eps: [Endpoint<TestHosts>; 2],
    addrs: [SocketAddrV4; 2],
    /// (arrival, to index, from address, bytes)
    wire: Vec<(Instant, usize, SocketAddrV4, Vec<u8>)>,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            now: Instant::now(),
            eps: [
                endpoint(1, EndpointConfig::default()),
                endpoint(2, EndpointConfig::default()),
            ],
            addrs: [addr(1, 1000), addr(2, 2000)],
            wire: Vec::new(),
        }
    }

    fn key(&self, i: usize) -> PublicKey {
        self.eps[i].public_key().unwrap()
    }

    fn flush(&mut self) {
        let mut buf = [0u8; 1500];
        for i in 0..2 {
            while let Some(t) = self.eps[i].poll_transmit(self.now, &mut buf) {
                let to = self.addrs.iter().position(|a| *a == t.destination);
                if let Some(to) = to {
                    let at = self.now + Duration::from_millis(5);
                    self.wire
                        .push((at, to, self.addrs[i], buf[..t.len].to_vec()));
                }
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            self.flush();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next_timer = self.eps.iter().filter_map(|e| e.poll_timeout()).min();
            let Some(next) = [next_wire, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest;
            for (_, to, from, mut data) in due {
                self.eps[to].handle(self.now, from, &mut data);
                // The endpoint's contract: drain transmissions before the next datagram.
                self.flush();
            }
            for e in &mut self.eps {
                if e.poll_timeout().is_some_and(|t| t <= self.now) {
                    e.handle_timeout(self.now);
                }
            }
        }
        self.now = self.now.max(end);
    }
}

#[test]
fn connect_establishes_and_delivers_both_ways() {
    let mut p = Pair::new();
    let (k0, k1) = (p.key(0), p.key(1));
    for i in 0..20u8 {
        p.eps[0]
            .hosts_mut()
            .outbox
            .entry(k1)
            .or_default()
            .push_back(vec![i; 100 + usize::from(i)]);
        p.eps[1]
            .hosts_mut()
            .outbox
            .entry(k0)
            .or_default()
            .push_back(vec![i; 50]);
    }
    assert!(p.eps[0].connect(p.now, p.addrs[1]));
    assert!(
        !p.eps[0].connect(p.now, p.addrs[1]),
        "second connect is a no-op"
    );
    p.run(Duration::from_secs(2));
    assert_eq!(p.eps[1].hosts().inbox.len(), 20);
    assert_eq!(p.eps[0].hosts().inbox.len(), 20);
    assert!(p.eps[1].hosts().inbox.iter().all(|(k, _)| *k == k0));
    assert_eq!(p.eps[0].bound_channel(&k1), Some(p.addrs[1]));
    assert_eq!(p.eps[1].bound_channel(&k0), Some(p.addrs[0]));
    let s = p.eps[1].stats();
    assert_eq!((s.channels, s.unverified), (1, 0));
    assert_eq!(p.eps[0].hosts().acked, 20);
}

#[test]
fn unsolicited_datagrams_leave_no_state() {
    let mut p = Pair::new();
    let now = p.now;
    let stranger = addr(9, 9);
    let ep = &mut p.eps[1];
    // Corrupt (unknown type nibble), NOSTATE, FAIL, FORWARD_ACK, ICMP_ACK, too short.
    let mut junk: Vec<Vec<u8>> = vec![
        vec![0xF0; 30],
        vec![0x00, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
        vec![0x10, 0, 0, 2, 0, 0, 0, 2],
        vec![0x90, 0, 0, 0, 0, 0, 0, 0],
        vec![0xA0, 0, 0, 0, 0, 0, 0, 0],
        vec![],
        vec![0x20; 20],
    ];
    for d in &mut junk {
        ep.handle(now, stranger, d);
        assert_eq!(ep.channel_count(), 0, "{d:?}");
    }
    // DATA from a stranger: one NOSTATE, then nothing.
    let mut data = vec![0x60, 0, 0, 1, 0, 0, 0, 0];
    data.extend_from_slice(&[7; 16]);
    ep.handle(now, stranger, &mut data);
    let mut buf = [0u8; 1500];
    let t = ep.poll_transmit(now, &mut buf).expect("a NOSTATE");
    assert_eq!((t.destination, t.len), (stranger, 24));
    assert_eq!(buf[0] >> 4, 0);
    assert_eq!(&buf[8..24], &[7; 16]);
    assert!(ep.poll_transmit(now, &mut buf).is_none());
    assert!(ep.is_idle());
}

/// The first HELLO `from` would send to `to`.
fn hello(from: &mut Endpoint<TestHosts>, now: Instant, to: SocketAddrV4) -> Vec<u8> {
    from.connect(now, to);
    let mut buf = [0u8; 1500];
    let t = from.poll_transmit(now, &mut buf).unwrap();
    from.destroy_all(now);
    buf[..t.len].to_vec()
}

#[test]
fn hello_flood_is_capped_and_rate_limited() {
    let mut p = Pair::new();
    let cfg = EndpointConfig::default()
        .max_unverified(16)
        .new_unverified_rate(RateLimit::new(1_000.0, 40))
        .key_agreement_rate(RateLimit::new(10.0, 5));
    let mut server = endpoint(7, cfg.clone());
    let now = p.now;
    let padded = hello(&mut p.eps[0], now, p.addrs[1]);
    assert_eq!(padded.len(), 94);
    let mut buf = [0u8; 1500];
    let (mut sent, mut received) = (0u64, 0u64);
    for i in 0..2_000u32 {
        let t = now + Duration::from_micros(u64::from(i) * 100);
        let from = SocketAddrV4::new(Ipv4Addr::from(0x0B00_0000 + i), 7);
        let mut d = if i % 2 == 0 {
            padded.clone()
        } else {
            padded[..78].to_vec()
        };
        received += d.len() as u64;
        server.handle(t, from, &mut d);
        assert!(server.channel_count() <= 16);
        while let Some(tx) = server.poll_transmit(t, &mut buf) {
            sent += tx.len as u64;
        }
    }
    let s = server.stats();
    assert!(s.max_unverified_seen <= 16);
    assert!(s.unverified_evicted > 0);
    assert!(s.hellos_refused > 1_000);
    assert!(s.key_agreements_admitted <= cfg.key_agreement_rate.budget(Duration::from_millis(200)));
    assert!(sent <= received);
    assert_eq!(s.unverified_bytes_out, sent);
}

#[test]
fn newer_channel_replaces_the_bound_one_and_disconnect_destroys() {
    let mut p = Pair::new();
    let k1 = p.key(1);
    let k0 = p.key(0);
    p.eps[0]
        .hosts_mut()
        .outbox
        .entry(k1)
        .or_default()
        .push_back(vec![1; 10]);
    p.eps[0].connect(p.now, p.addrs[1]);
    p.run(Duration::from_secs(1));
    assert_eq!(p.eps[1].bound_channel(&k0), Some(p.addrs[0]));
    // Endpoint 0 moves to a new address; its old channel state stays at 1.
    p.addrs[0] = addr(1, 1001);
    p.eps[0]
        .hosts_mut()
        .outbox
        .entry(k1)
        .or_default()
        .push_back(vec![2; 10]);
    p.run(Duration::from_secs(5));
    assert_eq!(p.eps[1].bound_channel(&k0), Some(p.addrs[0]));
    assert_eq!(p.eps[1].channel_count(), 1, "the old channel was replaced");
    assert!(p.eps[1].stats().channels_replaced >= 1);
    assert_eq!(p.eps[1].hosts().inbox.len(), 2);
    // The host layer asks to drop the channel.
    p.eps[1]
        .hosts_mut()
        .requests
        .push_back(ChannelRequest::Disconnect(k0));
    p.eps[1].poll_requests(p.now);
    assert!(p.eps[1].is_idle());
    assert_eq!(p.eps[1].hosts().unbound.last(), Some(&k0));
}

#[test]
fn round_robin_among_equal_priorities() {
    let mut p = Pair::new();
    let mut third = endpoint(3, EndpointConfig::default());
    let k3 = third.public_key().unwrap();
    let a3 = addr(3, 3000);
    // Establish 0↔1 and 0↔3 by hand-pumping the three.
    p.eps[0].connect(p.now, p.addrs[1]);
    p.eps[0].connect(p.now, a3);
    let mut buf = [0u8; 1500];
    let mut now = p.now;
    for _ in 0..20 {
        now += Duration::from_millis(5);
        while let Some(t) = p.eps[0].poll_transmit(now, &mut buf) {
            let mut d = buf[..t.len].to_vec();
            if t.destination == a3 {
                third.handle(now, p.addrs[0], &mut d);
            } else {
                p.eps[1].handle(now, p.addrs[0], &mut d);
            }
        }
        while let Some(t) = p.eps[1].poll_transmit(now, &mut buf) {
            p.eps[0].handle(now, p.addrs[1], &mut buf[..t.len].to_vec());
        }
        while let Some(t) = third.poll_transmit(now, &mut buf) {
            p.eps[0].handle(now, a3, &mut buf[..t.len].to_vec());
        }
    }
    let k1 = p.key(1);
    assert!(p.eps[0].bound_channel(&k1).is_some() && p.eps[0].bound_channel(&k3).is_some());
    for i in 0..6u8 {
        p.eps[0]
            .hosts_mut()
            .outbox
            .entry(k1)
            .or_default()
            .push_back(vec![i; 10]);
        p.eps[0]
            .hosts_mut()
            .outbox
            .entry(k3)
            .or_default()
            .push_back(vec![i; 10]);
    }
    let order: Vec<SocketAddrV4> = std::iter::from_fn(|| p.eps[0].poll_transmit(now, &mut buf))
        .map(|t| t.destination)
        .collect();
    assert_eq!(order.len(), 12);
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "alternates: {order:?}");
    }
}

#[test]
fn failed_handshake_fails_parked_contacts() {
    use crate::host::{HostConfig, HostEvent, HostTable};
    let t0 = Instant::now();
    let mut config = EndpointConfig::default();
    config.channel.handshake_gap = Duration::from_millis(10);
    config.channel.handshake_retransmissions = 2;
    let key = PrivateKey::from_entropy(&[7; 40]);
    let hosts = HostTable::new(HostConfig::default(), t0);
    let mut ep = Endpoint::new(config, key, Box::new(|b: &mut [u8]| b.fill(3)), hosts);
    let dead = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 9);
    let h = ep.hosts_mut().contact(t0, dead, 23).unwrap();
    ep.poll_requests(t0);
    assert_eq!(ep.channel_count(), 1);
    let mut buf = vec![0u8; 2048];
    let mut now = t0;
    let mut events = Vec::new();
    for _ in 0..1000 {
        while ep.poll_transmit(now, &mut buf).is_some() {}
        let Some(t) = ep.poll_timeout() else { break };
        now = now.max(t);
        ep.handle_timeout(now);
        while let Some(e) = ep.hosts_mut().poll_event() {
            events.push(e);
        }
        if ep.is_idle() {
            break;
        }
    }
    assert!(ep.is_idle(), "the channel gave up");
    assert!(now - t0 < Duration::from_secs(1), "{:?}", now - t0);
    assert!(
        events.contains(&HostEvent::StreamReset {
            handle: h,
            peer: None
        }),
        "{events:?}"
    );
    assert!(
        events.contains(&HostEvent::ContactFailed(dead)),
        "{events:?}"
    );
}
