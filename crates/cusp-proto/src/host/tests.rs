//! Two (or three) host tables driven against each other directly: pull at
//! one, recv at the other, outcome back, with an in-test loss/reorder model.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::*;
use crate::crypto::PublicKeySuite;
use crate::stream::ReadResult;
use crate::wire::segment::{Segment, Segments};

const BUDGET: usize = 1444;

fn key(n: u8) -> PublicKey {
    PublicKey::new(PublicKeySuite::Curve25519Whirlpool, [n; 32])
}

fn addr(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), 8585)
}

struct Node {
    t: HostTable,
    key: PublicKey,
    addr: SocketAddrV4,
    received: HashMap<StreamHandle, Vec<u8>>,
    finished_in: HashSet<StreamHandle>,
    incoming: Vec<(u16, StreamHandle)>,
    events: Vec<HostEvent>,
}

impl Node {
    fn new(n: u8, config: HostConfig, now: Instant) -> Self {
        Node {
            t: HostTable::new(config, now),
            key: key(n),
            addr: addr(n),
            received: HashMap::new(),
            finished_in: HashSet::new(),
            incoming: Vec::new(),
            events: Vec::new(),
        }
    }

    fn establish(&mut self, now: Instant, peer: PublicKey, peer_addr: SocketAddrV4, resume: bool) {
        self.t.on_established(
            now,
            &EstablishedInfo {
                peer,
                resume,
                local_addr: self.addr,
                remote_addr: peer_addr,
                no_encrypt: false,
            },
        );
        self.drain();
    }

    /// The application: accepts every incoming stream and reads everything.
    fn drain(&mut self) {
        while let Some(e) = self.t.poll_event() {
            match e {
                HostEvent::IncomingStream {
                    service, handle, ..
                } => {
                    self.incoming.push((service, handle));
                    self.received.entry(handle).or_default();
                }
                HostEvent::StreamReadable(h) => loop {
                    let buf = self.received.entry(h).or_default();
                    match self.t.read_to_vec(h, buf) {
                        Ok(ReadResult::Data(_)) => {}
                        Ok(ReadResult::Finished) => {
                            self.finished_in.insert(h);
                            break;
                        }
                        _ => break,
                    }
                },
                _ => {}
            }
            self.events.push(e);
        }
    }

    fn has(&self, e: HostEvent) -> bool {
        self.events.contains(&e)
    }

    /// A `StreamReset` of `h` was reported (whatever its peer).
    fn has_reset(&self, h: StreamHandle) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, HostEvent::StreamReset { handle, .. } if *handle == h))
    }

    /// A `StreamFinished` of `h` with `delivered` was reported, naming `peer`.
    fn has_finished(&self, h: StreamHandle, peer: Option<PublicKey>, delivered: bool) -> bool {
        self.has(HostEvent::StreamFinished {
            handle: h,
            peer,
            delivered,
        })
    }
}

fn pair(ca: HostConfig, cb: HostConfig, now: Instant) -> (Node, Node) {
    let mut a = Node::new(1, ca, now);
    let mut b = Node::new(2, cb, now);
    a.establish(now, b.key, b.addr, false);
    b.establish(now, a.key, a.addr, false);
    (a, b)
}

/// Loss (percent) and reordering within bursts of up to 8 packets (below the
/// channel's 16-packet replay window, so every delivered packet is accepted
/// by the channel).
struct Link {
    rng: u64,
    loss: u64,
    reorder: bool,
}

impl Link {
    fn perfect() -> Self {
        Link {
            rng: 1,
            loss: 0,
            reorder: false,
        }
    }

    fn lossy(seed: u64, loss: u64) -> Self {
        Link {
            rng: seed,
            loss,
            reorder: true,
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

fn pull(x: &mut Node, peer: &PublicKey, now: Instant) -> (Vec<u8>, PacketId) {
    let mut buf = vec![0u8; BUDGET];
    let (n, id) = x.t.pull(now, peer, &mut buf);
    buf.truncate(n);
    (buf, id)
}

/// One direction: build up to 8 packets, deliver them (maybe lost,
/// reordered), report their outcomes. Returns the number built.
fn flow(x: &mut Node, y: &mut Node, now: Instant, link: &mut Link) -> usize {
    let mut flight = Vec::new();
    for _ in 0..8 {
        if x.t.priority(&y.key).is_none() {
            break;
        }
        flight.push(pull(x, &y.key, now));
    }
    if link.reorder {
        for i in (1..flight.len()).rev() {
            let j = (link.next() % (i as u64 + 1)) as usize;
            flight.swap(i, j);
        }
    }
    let n = flight.len();
    for (p, id) in flight {
        let lost = link.next() % 100 < link.loss;
        let acked = !lost && y.t.recv(now, &x.key, &p);
        x.t.on_packet_outcome(now, &y.key, id, acked);
        y.drain();
    }
    x.drain();
    n
}

fn pump(a: &mut Node, b: &mut Node, now: Instant, link: &mut Link) {
    for _ in 0..100_000 {
        let n = flow(a, b, now, link) + flow(b, a, now, link);
        if n == 0 {
            return;
        }
    }
    panic!("no quiescence");
}

fn segments(p: &[u8]) -> Vec<Segment<'_>> {
    Segments::new(p).map(|s| s.unwrap()).collect()
}

fn pattern(k: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (k * 31 + i * 7 + i / 251) as u8).collect()
}

fn write_all(
    x: &mut Node,
    y: &mut Node,
    s: StreamHandle,
    data: &[u8],
    now: Instant,
    link: &mut Link,
) {
    let mut off = 0;
    while off < data.len() {
        off += x.t.write(now, s, &data[off..]).unwrap();
        pump(x, y, now, link);
    }
}

#[test]
fn one_stream_bytes_arrive() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let s = a.t.connect(now, &b.key, 23).unwrap();
    let data = pattern(1, 300_000);
    let mut link = Link::perfect();
    write_all(&mut a, &mut b, s, &data, now, &mut link);
    a.t.shutdown(now, s).unwrap();
    pump(&mut a, &mut b, now, &mut link);
    assert_eq!(b.incoming.len(), 1);
    let (svc, h) = b.incoming[0];
    assert_eq!(svc, 23);
    assert_eq!(b.received[&h], data);
    assert!(b.finished_in.contains(&h));
    assert!(a.has_finished(s, Some(b.key), true));
    // Completed streams are forgotten; both hosts are zombie now.
    assert!(a.t.out_stream_info(s).is_none());
    assert!(a.t.is_zombie(&b.key) && b.t.is_zombie(&a.key));
    let st = a.t.host_info(&b.key).unwrap().stats;
    assert!(st.bytes_sent > 300_000);
    assert_eq!(st.queued_inflight + st.queued_to_retransmit, 0);
    let sent = a.t.host_info(&b.key).unwrap().stats.bytes_sent;
    assert_eq!(b.t.host_info(&a.key).unwrap().stats.bytes_received, sent);
}

#[test]
fn many_concurrent_streams_under_loss_and_reorder() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let mut link = Link::lossy(0x9E37_79B9_7F4A_7C15, 15);
    let mut sent = Vec::new();
    for k in 0..40 {
        let s = a.t.connect(now, &b.key, 23).unwrap();
        if k % 3 == 0 {
            a.t.set_priority(s, (k % 5) as f32).unwrap();
        }
        let d = pattern(k, 1000 + k * 997);
        assert_eq!(a.t.write(now, s, &d).unwrap(), d.len());
        a.t.shutdown(now, s).unwrap();
        sent.push((s, d));
    }
    pump(&mut a, &mut b, now, &mut link);
    for _ in 0..50 {
        // lost final packets: nothing is lost forever
        pump(&mut a, &mut b, now, &mut link);
    }
    let mut got: Vec<Vec<u8>> = b.received.values().cloned().collect();
    let mut want: Vec<Vec<u8>> = sent.iter().map(|(_, d)| d.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(b.finished_in.len(), 40);
    for (s, _) in &sent {
        assert!(a.has_finished(*s, Some(b.key), true));
    }
}

#[test]
fn connect_prefix_until_first_ack() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let s = a.t.connect(now, &b.key, 23).unwrap();
    a.t.write(now, s, &pattern(0, 6000)).unwrap();
    let (p1, id1) = pull(&mut a, &b.key, now);
    let (p2, id2) = pull(&mut a, &b.key, now);
    for (p, off) in [(&p1, 0u32), (&p2, 1436)] {
        let segs = segments(p);
        assert_eq!(
            segs[0],
            Segment::Connect {
                seq: 0,
                service: 23
            }
        );
        assert!(matches!(segs[1], Segment::Data { id: 0, offset, .. } if offset == off));
    }
    assert_eq!(p1.len(), BUDGET);
    assert!(b.t.recv(now, &a.key, &p1));
    a.t.on_packet_outcome(now, &b.key, id1, true);
    assert!(!a.t.out_stream_info(s).unwrap().connect_pending);
    let (p3, _) = pull(&mut a, &b.key, now);
    let segs = segments(&p3);
    assert!(matches!(
        segs[0],
        Segment::Data {
            id: 0,
            offset: 2868,
            ..
        }
    ));
    // p2 lost: its bytes come again, without CONNECT.
    a.t.on_packet_outcome(now, &b.key, id2, false);
    let (p4, _) = pull(&mut a, &b.key, now);
    assert!(matches!(
        segments(&p4)[0],
        Segment::Data {
            id: 0,
            offset: 1436,
            ..
        }
    ));
}

#[test]
fn unknown_service_reset_unless_eof_in_first_segment() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    let s1 = a.t.connect(now, &b.key, 25).unwrap();
    a.t.write(now, s1, b"nobody listens").unwrap();
    let s2 = a.t.connect(now, &b.key, 25).unwrap();
    a.t.write(now, s2, b"to nobody").unwrap();
    a.t.shutdown(now, s2).unwrap();
    let (p, id) = pull(&mut a, &b.key, now);
    assert_eq!(segments(&p).len(), 4);
    assert!(b.t.recv(now, &a.key, &p));
    a.t.on_packet_outcome(now, &b.key, id, true);
    b.drain();
    assert!(b.incoming.is_empty());
    // Only the stream without EOF is answered (V4 vs V8).
    let s1_id = a.t.out_stream_info(s1).unwrap().id.unwrap();
    let (q, qid) = pull(&mut b, &a.key, now);
    assert_eq!(segments(&q), [Segment::ReaderResets { seq: 0, id: s1_id }]);
    assert!(b.t.is_zombie(&a.key), "reset streams are not live");
    assert!(a.t.recv(now, &b.key, &q));
    b.t.on_packet_outcome(now, &a.key, qid, true);
    a.drain();
    assert!(a.has_reset(s1));
    assert!(a.has_finished(s2, Some(b.key), true));
    assert_eq!(b.t.priority(&a.key), None);
    assert!(a.t.is_zombie(&b.key));
}

#[test]
fn per_host_listen() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    let mut c = Node::new(3, HostConfig::default(), now);
    c.establish(now, b.key, b.addr, false);
    b.establish(now, c.key, c.addr, false);
    let svc = b.t.listen(&a.key).unwrap();
    assert_eq!(svc, 0x8001);
    assert_eq!(b.t.listen(&a.key).unwrap(), 0x8002);
    b.t.unlisten(&a.key, 0x8002);
    let mut link = Link::perfect();
    let sa = a.t.connect(now, &b.key, svc).unwrap();
    a.t.write(now, sa, b"for b from a").unwrap();
    a.t.shutdown(now, sa).unwrap();
    pump(&mut a, &mut b, now, &mut link);
    assert_eq!(b.incoming.len(), 1);
    assert_eq!(b.incoming[0].0, svc);
    assert_eq!(
        b.t.stream_peer(b.incoming[0].1),
        None,
        "complete: forgotten"
    );
    assert_eq!(b.received[&b.incoming[0].1], b"for b from a");
    // C may not use A's per-host service.
    let sc = c.t.connect(now, &b.key, svc).unwrap();
    c.t.write(now, sc, b"intruder").unwrap();
    pump(&mut c, &mut b, now, &mut link);
    assert_eq!(b.incoming.len(), 1);
    assert!(c.has_reset(sc));
    assert_eq!(b.t.listen(&key(99)), Err(ServiceError::UnknownHost));
}

#[test]
fn resume_keeps_streams_wipe_resets_them() {
    for resume in [true, false] {
        let now = Instant::now();
        let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
        b.t.advertise(Some(23)).unwrap();
        let mut link = Link::perfect();
        let s1 = a.t.connect(now, &b.key, 23).unwrap();
        a.t.write(now, s1, b"acked part ").unwrap();
        pump(&mut a, &mut b, now, &mut link);
        let hb1 = b.incoming[0].1;
        assert!(!a.t.out_stream_info(s1).unwrap().connect_pending);
        // s2: one packet in flight on the old channel, never acknowledged.
        let s2 = a.t.connect(now, &b.key, 23).unwrap();
        a.t.write(now, s2, b"pending").unwrap();
        let (_lost, lost_id) = pull(&mut a, &b.key, now);
        assert_eq!(a.t.out_stream_info(s2).unwrap().id, Some(1));
        assert!(b.t.has_resumable_state(now, &a.key));
        // The old channel reports its outstanding packet lost, then unbinds.
        a.t.on_packet_outcome(now, &b.key, lost_id, false);
        a.t.on_unbound(now, &b.key);
        b.t.on_unbound(now, &a.key);
        a.establish(now, b.key, b.addr, resume);
        b.establish(now, a.key, a.addr, resume);
        if resume {
            a.t.write(now, s1, b"and more").unwrap();
            a.t.shutdown(now, s1).unwrap();
            a.t.shutdown(now, s2).unwrap();
            pump(&mut a, &mut b, now, &mut link);
            assert_eq!(b.received[&hb1], b"acked part and more");
            assert_eq!(b.incoming.len(), 2);
            assert_eq!(b.received[&b.incoming[1].1], b"pending");
        } else {
            assert!(a.has_reset(s1));
            assert!(b.has_reset(hb1));
            assert_eq!(a.t.write(now, s1, b"x"), Err(WriteError::UnknownStream));
            let info = a.t.out_stream_info(s2).unwrap();
            assert_eq!((info.id, info.connect_pending), (None, true));
            // Restarted first, under a new id (tables restart at 0), with CONNECT.
            let (p, id) = pull(&mut a, &b.key, now);
            let segs = segments(&p);
            assert_eq!(
                segs[0],
                Segment::Connect {
                    seq: 0,
                    service: 23
                }
            );
            assert!(matches!(
                segs[1],
                Segment::Data {
                    id: 0,
                    offset: 0,
                    bytes: b"pending",
                    ..
                }
            ));
            assert!(b.t.recv(now, &a.key, &p));
            a.t.on_packet_outcome(now, &b.key, id, true);
            b.drain();
            assert_eq!(b.incoming.len(), 2);
            assert_eq!(b.received[&b.incoming[1].1], b"pending");
        }
    }
}

#[test]
fn id_reused_only_after_sixteen_packets() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let mut link = Link::perfect();
    let s = a.t.connect(now, &b.key, 23).unwrap();
    a.t.write(now, s, b"first").unwrap();
    a.t.shutdown(now, s).unwrap();
    pump(&mut a, &mut b, now, &mut link);
    assert!(a.has_finished(s, Some(b.key), true));
    // Each new stream takes one packet; id 0 comes back in the 16th.
    for packet in 1..=16 {
        let s = a.t.connect(now, &b.key, 23).unwrap();
        a.t.write(now, s, b"x").unwrap();
        let (p, id) = pull(&mut a, &b.key, now);
        let got = a.t.out_stream_info(s).unwrap().id.unwrap();
        if packet < 16 {
            assert_eq!(got, packet as u16, "packet {packet}");
        } else {
            assert_eq!(got, 0);
            // Writer sequence of id 0 advanced: CONNECT carries seq 1.
            assert_eq!(
                segments(&p)[0],
                Segment::Connect {
                    seq: 1,
                    service: 23
                }
            );
        }
        assert!(b.t.recv(now, &a.key, &p));
        a.t.on_packet_outcome(now, &b.key, id, true);
        b.drain();
    }
    assert_eq!(b.incoming.len(), 17);
}

#[test]
fn higher_priority_segments_come_first() {
    let now = Instant::now();
    let (mut a, b) = pair(HostConfig::default(), HostConfig::default(), now);
    let low = a.t.connect(now, &b.key, 23).unwrap();
    let high = a.t.connect(now, &b.key, 24).unwrap();
    let filler = a.t.connect(now, &b.key, 25).unwrap();
    a.t.set_priority(low, 1.0).unwrap();
    a.t.set_priority(high, 5.0).unwrap();
    a.t.set_priority(filler, -1.0).unwrap();
    assert!(matches!(
        a.t.set_priority(high, f32::NAN),
        Err(SetPriorityError::NotFinite(p)) if p.is_nan()
    ));
    a.t.write(now, filler, &[1; 100]).unwrap();
    // Negative priority alone does not justify a packet.
    assert_eq!(a.t.priority(&b.key), None);
    a.t.write(now, low, &[2; 500]).unwrap();
    a.t.write(now, high, &[3; 500]).unwrap();
    assert_eq!(a.t.priority(&b.key), Some(5.0));
    let (p, _) = pull(&mut a, &b.key, now);
    let services: Vec<u16> = segments(&p)
        .iter()
        .filter_map(|s| match s {
            Segment::Connect { service, .. } => Some(*service),
            _ => None,
        })
        .collect();
    assert_eq!(
        services,
        [24, 23, 25],
        "high, low, then the filler in spare room"
    );
}

#[test]
fn limits_and_refusals() {
    let now = Instant::now();
    let ca = HostConfig {
        max_out_streams: 2,
        ..HostConfig::default()
    };
    let cb = HostConfig {
        max_in_streams: 1,
        ..HostConfig::default()
    };
    let (mut a, mut b) = pair(ca, cb, now);
    b.t.advertise(Some(23)).unwrap();
    assert_eq!(
        a.t.connect(now, &b.key, 0),
        Err(ConnectError::ReservedService)
    );
    assert_eq!(
        a.t.connect(now, &key(9), 23),
        Err(ConnectError::UnknownHost)
    );
    let s1 = a.t.connect(now, &b.key, 23).unwrap();
    let s2 = a.t.connect(now, &b.key, 23).unwrap();
    assert_eq!(
        a.t.connect(now, &b.key, 23),
        Err(ConnectError::TooManyStreams)
    );
    a.t.write(now, s1, b"one").unwrap();
    a.t.write(now, s2, b"two").unwrap();
    // Two new streams in one packet, B takes one: the payload is refused.
    let (p, id) = pull(&mut a, &b.key, now);
    assert!(!b.t.recv(now, &a.key, &p));
    a.t.on_packet_outcome(now, &b.key, id, false);
    // Data beyond the barrier (+ slack) is refused; malformed payloads too.
    let mut bad = vec![0x70, 0, 0, 23, 0x20, 4, 0, 7];
    bad.extend_from_slice(&50_000u32.to_be_bytes());
    bad.extend_from_slice(b"late");
    let (_, c) = pair(HostConfig::default(), HostConfig::default(), now);
    let mut c = c;
    c.t.advertise(Some(23)).unwrap();
    let k1 = key(1);
    assert!(!c.t.recv(now, &k1, &bad));
    assert!(!c.t.recv(now, &k1, &[0x70, 0, 0, 23]), "CONNECT alone");
    assert!(!c.t.recv(now, &k1, &[0, 0, 0, 0, 1, 2]), "trailing bytes");
    assert!(!c.t.recv(now, &k1, &[0x60, 0, 0, 0, 0, 0]), "short barrier");
    assert!(!c.t.recv(now, &k1, &[0x80, 0, 0, 0]), "type 8");
    assert!(c.t.recv(now, &k1, &[]), "ack-only payload");
    assert!(
        c.t.recv(now, &k1, &[0x00, 4, 0, 9, 1, 2, 3, 4]),
        "unknown id skipped"
    );
    c.drain();
    // The CONNECT before the refused DATA was applied (§1.6 note); the
    // retransmission will find the stream.
    assert_eq!(c.incoming.len(), 1);
    // Services.
    let t = &mut c.t;
    assert_eq!(t.advertise(Some(0)), Err(ServiceError::Reserved));
    assert_eq!(t.advertise(Some(0x4000)), Err(ServiceError::OutOfRange));
    assert_eq!(t.advertise(Some(23)), Err(ServiceError::InUse));
    assert_eq!(t.advertise(None), Ok(0x4001));
    assert_eq!(t.advertise(Some(0x3FFF)), Ok(0x3FFF));
    t.unadvertise(0x4001);
    assert_eq!(t.advertise(None), Ok(0x4002));
    let mut counter = 0x3FFE;
    assert_eq!(
        next_free(&mut counter, 0x3FFF, 0x4000, |s| s == 0x4000),
        Some(0x7FFF)
    );
    assert_eq!(
        next_free(&mut counter, 0x3FFF, 0x4000, |s| s == 0x4000),
        Some(0x4001)
    );
    assert_eq!(next_free(&mut counter, 0x3FFF, 0x4000, |_| true), None);
    // Per-host listener limit.
    let mut d = Node::new(
        7,
        HostConfig {
            max_listeners: 1,
            ..HostConfig::default()
        },
        now,
    );
    d.establish(now, key(1), addr(1), false);
    assert_eq!(d.t.listen(&key(1)), Ok(0x8001));
    assert_eq!(d.t.listen(&key(1)), Err(ServiceError::Exhausted));
}

#[test]
fn host_send_buffer_limits_writes_and_wakes() {
    let now = Instant::now();
    let ca = HostConfig {
        max_host_send_buffer: 10_000,
        ..HostConfig::default()
    };
    let (mut a, mut b) = pair(ca, HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let s1 = a.t.connect(now, &b.key, 23).unwrap();
    let s2 = a.t.connect(now, &b.key, 23).unwrap();
    assert_eq!(a.t.write(now, s1, &[0; 8000]).unwrap(), 8000);
    assert_eq!(a.t.write(now, s2, &[0; 8000]).unwrap(), 2000);
    pump(&mut a, &mut b, now, &mut Link::perfect());
    assert!(a.has(HostEvent::StreamWritable(s2)));
    assert_eq!(a.t.write(now, s2, &[0; 6000]).unwrap(), 6000);
}

#[test]
fn idle_teardown_and_reconnect() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    // Bound and zombie from the start: the idle grace period and the 240 s timer run.
    assert_eq!(a.t.poll_timeout(), Some(now + IDLE_GRACE));
    let s = a.t.connect(now, &b.key, 23).unwrap();
    assert!(!a.t.is_zombie(&b.key));
    a.t.write(now, s, b"hi").unwrap();
    a.t.shutdown(now, s).unwrap();
    let later = now + Duration::from_secs(10);
    pump(&mut a, &mut b, later, &mut Link::perfect());
    // Idle (a finish flag from the peer closes the channel), but our own finish
    // flag waits for the grace period.
    assert!(a.t.is_zombie(&b.key) && !a.t.announces_idle(&b.key));
    let grace_end = later + IDLE_GRACE;
    assert_eq!(a.t.poll_timeout(), Some(grace_end));
    a.t.handle_timeout(grace_end - Duration::from_millis(1));
    assert!(!a.t.announces_idle(&b.key));
    a.t.handle_timeout(grace_end);
    assert!(a.t.announces_idle(&b.key));
    assert_eq!(a.t.poll_channel_request(), None);
    a.t.handle_timeout(later + Duration::from_secs(239));
    assert_eq!(a.t.poll_channel_request(), None);
    a.t.handle_timeout(later + IDLE_LINGER);
    assert_eq!(
        a.t.poll_channel_request(),
        Some(ChannelRequest::Disconnect(b.key))
    );
    let t = later + IDLE_LINGER;
    a.t.on_unbound(t, &b.key);
    // Q6: connect on an unbound host asks for a channel to its last address.
    let s2 = a.t.connect(t, &b.key, 23).unwrap();
    assert_eq!(
        a.t.poll_channel_request(),
        Some(ChannelRequest::Connect(b.addr))
    );
    a.t.write(t, s2, b"after").unwrap();
    assert!(a.t.has_resumable_state(t, &b.key));
    a.establish(t, b.key, b.addr, true);
    pump(&mut a, &mut b, t, &mut Link::perfect());
    assert_eq!(b.received[&b.incoming[1].1], b"after");
    // A dead, unbound host is purged after its keep-alive.
    b.t.reset(t, b.incoming[1].1).unwrap();
    a.t.reset(t, s2).unwrap();
    pump(&mut a, &mut b, t, &mut Link::perfect());
    a.t.on_unbound(t, &b.key);
    assert!(!a.t.has_resumable_state(t, &b.key));
    let end = t + Duration::from_secs(600);
    a.t.handle_timeout(end);
    assert!(a.t.host_info(&b.key).is_none());
}

#[test]
fn pending_contact_moves_to_the_host_or_fails() {
    let now = Instant::now();
    let mut a = Node::new(1, HostConfig::default(), now);
    let mut b = Node::new(2, HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    assert_eq!(
        a.t.contact(now, b.addr, 0),
        Err(ContactError::ReservedService)
    );
    let s = a.t.contact(now, b.addr, 23).unwrap();
    assert_eq!(
        a.t.poll_channel_request(),
        Some(ChannelRequest::Connect(b.addr))
    );
    a.t.write(now, s, b"zero rtt").unwrap();
    a.t.shutdown(now, s).unwrap();
    assert_eq!(a.t.stream_peer(s), None);
    a.establish(now, b.key, b.addr, false);
    assert!(a.has(HostEvent::Contacted {
        addr: b.addr,
        peer: b.key
    }));
    assert_eq!(a.t.stream_peer(s), Some(b.key));
    b.establish(now, a.key, a.addr, false);
    pump(&mut a, &mut b, now, &mut Link::perfect());
    assert_eq!(b.received[&b.incoming[0].1], b"zero rtt");
    assert!(a.has_finished(s, Some(b.key), true));
    // A contact to an address with a bound channel is a plain connect.
    let s2 = a.t.contact(now, b.addr, 23).unwrap();
    assert_eq!(a.t.stream_peer(s2), Some(b.key));
    // Failure.
    let s3 = a.t.contact(now, addr(3), 23).unwrap();
    a.t.on_connect_failed(now, addr(3));
    a.drain();
    assert!(a.has_reset(s3));
    assert!(a.has(HostEvent::ContactFailed(addr(3))));
    // Timeout safety net.
    let s4 = a.t.contact(now, addr(4), 23).unwrap();
    a.t.handle_timeout(now + a.t.config().contact_timeout);
    a.drain();
    assert!(a.has_reset(s4));
    assert!(a.has(HostEvent::ContactFailed(addr(4))));
}

#[test]
fn reset_before_first_pull_is_silent_and_duplicate_connect_is_consumed() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let s = a.t.connect(now, &b.key, 23).unwrap();
    a.t.write(now, s, b"never").unwrap();
    a.t.reset(now, s).unwrap();
    assert_eq!(a.t.priority(&b.key), None);
    assert!(a.t.out_stream_info(s).is_none());
    // Duplicate CONNECT + DATA (retransmission) is applied to the same stream.
    let s = a.t.connect(now, &b.key, 23).unwrap();
    a.t.write(now, s, b"abcd").unwrap();
    let (p, _) = pull(&mut a, &b.key, now);
    assert!(b.t.recv(now, &a.key, &p));
    assert!(b.t.recv(now, &a.key, &p));
    b.drain();
    assert_eq!(b.incoming.len(), 1);
    assert_eq!(b.received[&b.incoming[0].1], b"abcd");
    // The reader resets: the writer sees RESET.
    b.t.reset(now, b.incoming[0].1).unwrap();
    pump(&mut a, &mut b, now, &mut Link::perfect());
    assert!(a.has_reset(s));
    assert!(!b.has_reset(b.incoming[0].1), "own reset: no event");
}

#[test]
fn send_low_water_delays_the_writable_event() {
    let now = Instant::now();
    let mut ca = HostConfig::default();
    ca.out_stream.send_buffer = 20_000;
    let (mut a, mut b) = pair(ca, HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let s = a.t.connect(now, &b.key, 23).unwrap();
    a.t.set_send_low_water(s, 15_000).unwrap();
    assert_eq!(a.t.write(now, s, &[1; 30_000]).unwrap(), 20_000);
    // One packet acknowledged frees ~1.4 kB: below the mark, no wakeup.
    let (p, id) = pull(&mut a, &b.key, now);
    assert!(b.t.recv(now, &a.key, &p));
    a.t.on_packet_outcome(now, &b.key, id, true);
    a.drain();
    assert!(!a.has(HostEvent::StreamWritable(s)));
    assert!(a.t.out_stream_info(s).unwrap().writable < 15_000);
    // Everything acknowledged: woken with at least the mark free.
    pump(&mut a, &mut b, now, &mut Link::perfect());
    assert!(a.has(HostEvent::StreamWritable(s)));
    assert!(a.t.out_stream_info(s).unwrap().writable >= 15_000);
    // A mark above the buffer is clamped (the writer is still woken).
    a.t.set_send_low_water(s, usize::MAX).unwrap();
    assert_eq!(a.t.write(now, s, &[1; 30_000]).unwrap(), 20_000);
    a.events.clear();
    pump(&mut a, &mut b, now, &mut Link::perfect());
    assert!(a.has(HostEvent::StreamWritable(s)));
}

#[test]
fn held_streams_and_released_ones_get_no_final_event() {
    let now = Instant::now();
    let (mut a, mut b) = pair(HostConfig::default(), HostConfig::default(), now);
    b.t.advertise(Some(23)).unwrap();
    let mut link = Link::perfect();
    let (kept, dropped, never) = (
        a.t.connect(now, &b.key, 23).unwrap(),
        a.t.connect(now, &b.key, 23).unwrap(),
        a.t.connect(now, &b.key, 23).unwrap(),
    );
    assert!(a.t.hold(kept) && a.t.hold(dropped));
    assert_eq!(a.t.held_streams(), [kept, dropped]);
    for s in [kept, dropped, never] {
        a.t.write(now, s, b"x").unwrap();
        a.t.shutdown(now, s).unwrap();
    }
    assert!(a.t.release(dropped));
    assert_eq!(a.t.held_streams(), [kept]);
    pump(&mut a, &mut b, now, &mut link);
    assert!(a.has_finished(kept, Some(b.key), true));
    assert!(
        a.has_finished(never, Some(b.key), true),
        "never held: as before"
    );
    assert!(
        !a.events.iter().any(|e| matches!(e,
            HostEvent::StreamFinished { handle, .. } if *handle == dropped)),
        "released: no final event"
    );
    assert!(a.t.held_streams().is_empty() && !a.t.release(kept) && !a.t.hold(kept));
}
