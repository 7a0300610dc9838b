//! The channel state machine (`spec/channel.md` §4): replay of the reference
//! transcripts through two real channels, and the receive (§4.4) and transmit
//! (§4.5) transition tables, state by state.

mod support;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use cusp_proto::channel::{Channel, ChannelConfig, ChannelState};
use cusp_proto::crypto::{PublicKeySuite, PublicKeySuites, SymmetricSuites};
use cusp_proto::wire::{
    Datagram, HELLO_LEN, MessageType, Negotiation, NegotiationBits, WELCOME_LEN,
};
use support::test_context::TestContext;
use support::vector_file::{VectorFile, direction};

const CLIENT: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, 1), 8587);
const SERVER: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, 0, 1), 8586);

struct Peer {
    ch: Channel,
    ctx: TestContext,
}

impl Peer {
    fn transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1500];
        self.ch
            .poll_transmit(now, &mut buf, &mut self.ctx)
            .map(|n| buf[..n].to_vec())
    }

    fn deliver(&mut self, now: Instant, datagram: &[u8]) {
        let mut copy = datagram.to_vec();
        self.ch.handle(now, &mut copy, &mut self.ctx);
    }

    fn kind_sent(&mut self, now: Instant) -> Option<(MessageType, Vec<u8>)> {
        let d = self.transmit(now)?;
        let ty = MessageType::of(&d).expect("valid type");
        Some((ty, d))
    }
}

/// Move datagrams both ways at time `now` until neither side sends; returns
/// the types sent, in order, with their direction (true = a → b).
fn settle(a: &mut Peer, b: &mut Peer, now: Instant) -> Vec<(bool, MessageType)> {
    let mut log = Vec::new();
    for _ in 0..100 {
        let mut quiet = true;
        if let Some((ty, d)) = a.kind_sent(now) {
            log.push((true, ty));
            b.deliver(now, &d);
            quiet = false;
        }
        if let Some((ty, d)) = b.kind_sent(now) {
            log.push((false, ty));
            a.deliver(now, &d);
            quiet = false;
        }
        if quiet {
            return log;
        }
    }
    panic!("no quiescence: {log:?}")
}

fn config_from_options(options: &str) -> ChannelConfig {
    let field = |name: &str| {
        let v = options
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .expect(name);
        support::vector_file::parse_int(v)
    };
    ChannelConfig {
        public_key_suites: PublicKeySuites::from_mask(field("publickey_mask") as u16),
        symmetric_suites: SymmetricSuites::from_mask(field("symmetric_mask") as u16),
        encrypt: field("encrypt") == 1,
        // Reproduce the reference exactly: unpadded HELLOs, WELCOME for any HELLO.
        pad_hello: false,
        anti_amplification: false,
        ..ChannelConfig::default()
    }
}

/// Drive a client and a server channel, built from the transcript's keys,
/// entropy and options, through the whole exchange; every datagram they
/// produce must equal the recorded one.
fn replay(name: &str) {
    let v = VectorFile::load(name);
    let seed = |p: &str| v.peers[p].int("entropy_seed") as u8;
    let now = Instant::now();
    let mut client_ctx = TestContext::from_seed(seed("client"));
    let client_cfg = config_from_options(v.peers["client"].raw("options").unwrap());
    let server_cfg = config_from_options(v.peers["server"].raw("options").unwrap());
    let client = Channel::connect(now, SERVER, client_cfg, &mut client_ctx);
    let mut client = Peer {
        ch: client,
        ctx: client_ctx,
    };
    let mut server = Peer {
        ch: Channel::accept(now, CLIENT, server_cfg, 0),
        ctx: TestContext::from_seed(seed("server")),
    };

    for (i, d) in v.datagrams.iter().enumerate() {
        let (from, _) = direction(d);
        let (tx, rx) = if from == "client" {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        if d.get("type") == "DATA" {
            let payload = d.hex("payload").unwrap();
            if !payload.is_empty() {
                tx.ctx.send(&payload);
            }
        }
        let sent = tx
            .transmit(now)
            .unwrap_or_else(|| panic!("{name} #{}: {from} sends nothing", i + 1));
        assert_eq!(
            hex::encode(&sent),
            d.get("hex"),
            "{name} datagram {} from {from}",
            i + 1
        );
        rx.deliver(now, &sent);
    }
    assert!(
        client.transmit(now).is_none() && server.transmit(now).is_none(),
        "{name}: quiet at the end"
    );
    assert!(
        client.ch.is_dead() && server.ch.is_dead(),
        "{name}: both channels closed"
    );
    // The stream payload went through intact, once.
    let data: Vec<_> = v
        .datagrams
        .iter()
        .filter(|d| d.get("type") == "DATA" && direction(d).0 == "client")
        .collect();
    assert_eq!(server.ctx.received.len(), data.len());
    for (got, d) in server.ctx.received.iter().zip(data) {
        assert_eq!(hex::encode(got), d.get("payload"));
    }
    assert_eq!(
        client
            .ctx
            .outcomes
            .iter()
            .filter(|(_, acked)| *acked)
            .count(),
        1,
        "{name}: the DATA was acked"
    );
    assert_eq!(client.ctx.established.len(), 1);
    assert_eq!(server.ctx.established.len(), 1);
    assert_eq!(
        client.ctx.established[0].peer,
        server.ctx.public(client.ctx.established[0].peer.suite())
    );
}

#[test]
fn replay_v1_default_suites_through_two_channels() {
    replay("V1-cusp-default");
}

#[test]
fn replay_v2_crc32_through_two_channels() {
    replay("V2-crc32");
}

#[test]
fn replay_v3_noencrypt_through_two_channels() {
    replay("V3-poly1305aes-noencrypt");
}

#[test]
fn replay_v7_xor_crc32_through_two_channels() {
    replay("V7-xor-crc32");
}

#[test]
fn replay_v8_through_two_channels() {
    replay("V8-unknown-service");
}

// ---- helpers for the transition tables ----------------------------------------

fn cfg() -> ChannelConfig {
    ChannelConfig::default()
}

/// A busy (non-zombie) test host, so that channels stay open when idle.
fn busy(seed: u8) -> TestContext {
    let mut ctx = TestContext::from_seed(seed);
    ctx.force_zombie = Some(false);
    ctx
}

/// A client in SENT and a server in CLOSED, both with busy hosts.
fn pair(now: Instant) -> (Peer, Peer) {
    let mut cctx = busy(128);
    let ch = Channel::connect(now, SERVER, cfg(), &mut cctx);
    (
        Peer { ch, ctx: cctx },
        Peer {
            ch: Channel::accept(now, CLIENT, cfg(), 0),
            ctx: busy(0),
        },
    )
}

/// Both sides ESTABLISHED after a normal open.
fn established(now: Instant) -> (Peer, Peer) {
    let (mut c, mut s) = pair(now);
    settle(&mut c, &mut s, now);
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert_eq!(s.ch.state(), ChannelState::Established);
    (c, s)
}

fn hello_from(
    ctx: &TestContext,
    bits: NegotiationBits,
    ephemeral: &[u8; 32],
    to: SocketAddrV4,
    len: usize,
) -> Vec<u8> {
    let key = ctx.public(PublicKeySuite::Curve25519Whirlpool);
    let mut buf = vec![0u8; len.max(HELLO_LEN)];
    Negotiation {
        bits,
        static_key: key.as_bytes(),
        ephemeral,
        address: to,
    }
    .emit_hello(&mut buf)
    .unwrap();
    buf.truncate(len);
    buf
}

fn default_bits() -> NegotiationBits {
    cfg().local_bits()
}

/// A valid curve point for use as an ephemeral value: some peer's public key.
fn some_point() -> [u8; 32] {
    *TestContext::from_seed(77)
        .public(PublicKeySuite::Curve25519Whirlpool)
        .as_bytes()
}

// ---- §4.5 normal open and its datagrams -----------------------------------------

#[test]
fn normal_open_is_hello_welcome_data_data() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    let log = settle(&mut c, &mut s, now);
    assert_eq!(
        log,
        vec![
            (true, MessageType::Hello),
            (false, MessageType::Welcome),
            (true, MessageType::Data),
            (false, MessageType::Data),
        ]
    );
    let (ci, si) = (c.ctx.established[0], s.ctx.established[0]);
    assert_eq!(ci.peer, s.ctx.public(PublicKeySuite::Curve25519Whirlpool));
    assert_eq!(si.peer, c.ctx.public(PublicKeySuite::Curve25519Whirlpool));
    assert_eq!(
        (ci.local_addr, si.local_addr),
        (CLIENT, SERVER),
        "reflected addresses"
    );
    assert!(!ci.resume && !si.resume && !ci.no_encrypt);
}

#[test]
fn our_hello_is_padded_and_answered_by_welcome_at_once() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    let hello = c.transmit(now).unwrap();
    assert_eq!(hello.len(), WELCOME_LEN, "padded to a WELCOME's size");
    s.deliver(now, &hello);
    assert_eq!(s.ch.state(), ChannelState::Received);
    let welcome = s.transmit(now).unwrap();
    assert_eq!(welcome.len(), WELCOME_LEN);
    assert_eq!(s.ctx.admitted, 1);
}

#[test]
fn unpadded_hello_from_unverified_address_gets_hello_not_welcome() {
    // Anti-amplification: 78 bytes received cannot pay for a 94-byte WELCOME.
    let now = Instant::now();
    let mut cctx = busy(128);
    let client_cfg = ChannelConfig {
        pad_hello: false,
        ..cfg()
    };
    let ch = Channel::connect(now, SERVER, client_cfg, &mut cctx);
    let mut c = Peer { ch, ctx: cctx };
    let mut s = Peer {
        ch: Channel::accept(now, CLIENT, cfg(), 0),
        ctx: busy(0),
    };
    let hello = c.transmit(now).unwrap();
    assert_eq!(hello.len(), HELLO_LEN);
    s.deliver(now, &hello);
    assert_eq!(
        s.ch.state(),
        ChannelState::Sent,
        "answers as a simultaneous open"
    );
    assert_eq!(
        s.ctx.admitted, 0,
        "no key agreement for an unverified address"
    );
    let reply = s.transmit(now).unwrap();
    assert_eq!(reply.len(), HELLO_LEN, "never more bytes than received");
    c.deliver(now, &reply);
    // The client treats it as a simultaneous open and sends a WELCOME; the rest completes.
    let log = settle(&mut c, &mut s, now);
    assert_eq!(log[0], (true, MessageType::Welcome));
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert_eq!(s.ch.state(), ChannelState::Established);
}

#[test]
fn refused_key_agreement_answers_with_hello() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    s.ctx.admit = false;
    let hello = c.transmit(now).unwrap();
    s.deliver(now, &hello);
    assert_eq!(s.ch.state(), ChannelState::Sent);
    let reply = s.transmit(now).unwrap();
    c.deliver(now, &reply);
    // The client's WELCOME also costs a key agreement before its MAC can be
    // checked: while admission is refused it is ignored.
    let welcome = c.transmit(now).unwrap();
    s.deliver(now, &welcome);
    assert_eq!(s.ch.state(), ChannelState::Sent);
    assert_eq!(s.ctx.admitted, 0);
    s.ctx.admit = true;
    s.deliver(now, &welcome); // the client's WELCOME retransmission
    assert_eq!(s.ctx.admitted, 1);
    settle(&mut c, &mut s, now);
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert_eq!(s.ch.state(), ChannelState::Established);
}

// ---- §4.4 CLOSED ------------------------------------------------------------

fn closed(now: Instant) -> Peer {
    Peer {
        ch: Channel::accept(now, CLIENT, cfg(), 0),
        ctx: TestContext::from_seed(0),
    }
}

#[test]
fn closed_dies_silently_on_corrupt_nostate_fail_and_forwarding() {
    let now = Instant::now();
    let mut fail = [0u8; 8];
    default_bits().emit_fail(&mut fail).unwrap();
    let inputs: Vec<Vec<u8>> = vec![
        vec![0xff; 3],                                                       // too short
        vec![0x40; 30],                                                      // reserved type 4
        vec![0xb0; 30],                                                      // invalid type 11
        [&[0u8; 8][..], &[1, 2, 3]].concat(),                                // NOSTATE
        fail.to_vec(),                                                       // FAIL
        vec![0x90, 0, 0, 0, 0, 0, 0, 0],                                     // FORWARD_ACK
        vec![0xa0, 0, 0, 0, 0, 0, 0, 0],                                     // ICMP_ACK
        [&[0x80u8, 0, 0, 0, 0, 0, 0, 0][..], &[0; 6], &[0x20; 78]].concat(), // FORWARD_REQ
    ];
    for input in inputs {
        let mut p = closed(now);
        p.deliver(now, &input);
        assert!(p.ch.is_dead(), "{input:02x?}");
        assert!(p.transmit(now).is_none(), "nothing sent for {input:02x?}");
        assert!(p.ctx.established.is_empty());
    }
}

#[test]
fn closed_answers_data_and_welcome_with_nostate_then_dies() {
    let now = Instant::now();
    let (mut c, s) = established(now);
    // A DATA and a WELCOME arrive at a fresh (CLOSED) channel, e.g. after a restart.
    c.ctx.send(b"ping");
    let data = c.transmit(now).unwrap();
    let mut fresh = closed(now);
    fresh.deliver(now, &data);
    let nostate = fresh.transmit(now).unwrap();
    assert_eq!(&nostate[..8], &[0; 8]);
    assert_eq!(
        &nostate[8..],
        &data[data.len() - 16..],
        "token = tail of the DATA"
    );
    assert!(fresh.ch.is_dead());

    let (mut c2, mut s2) = pair(now);
    let hello = c2.transmit(now).unwrap();
    s2.deliver(now, &hello);
    let welcome = s2.transmit(now).unwrap();
    let mut fresh = closed(now);
    fresh.deliver(now, &welcome);
    let nostate = fresh.transmit(now).unwrap();
    assert_eq!(&nostate[8..], &welcome[WELCOME_LEN - 16..]);
    assert!(fresh.ch.is_dead());
    assert_eq!(
        s.ch.state(),
        ChannelState::Established,
        "the other side is untouched"
    );
}

#[test]
fn closed_hello_with_disjoint_suites_gets_fail() {
    let now = Instant::now();
    let mut p = closed(now);
    let bits = NegotiationBits {
        symmetric: SymmetricSuites::from_mask(0x0001),
        ..default_bits()
    };
    let peer = TestContext::from_seed(9);
    p.deliver(
        now,
        &hello_from(&peer, bits, &some_point(), SERVER, WELCOME_LEN),
    );
    let fail = p.transmit(now).unwrap();
    assert_eq!(MessageType::of(&fail).unwrap(), MessageType::Fail);
    match Datagram::parse(&fail).unwrap() {
        Datagram::Fail { bits } => {
            assert_eq!(bits, default_bits(), "FAIL carries our configured bits")
        }
        other => panic!("{other:?}"),
    }
    assert!(p.ch.is_dead());
}

#[test]
fn hostile_hello_leaves_no_state_and_sends_nothing() {
    let now = Instant::now();
    let peer = TestContext::from_seed(9);
    let small_order_x1 = {
        let mut x = [0u8; 32];
        x[0] = 1;
        x
    };
    for ephemeral in [[0u8; 32], small_order_x1, [0xff; 32]] {
        let mut p = closed(now);
        p.deliver(
            now,
            &hello_from(&peer, default_bits(), &ephemeral, SERVER, WELCOME_LEN),
        );
        assert!(p.ch.is_dead(), "{ephemeral:02x?}");
        assert!(p.transmit(now).is_none());
    }
}

// ---- §4.4 SENT ----------------------------------------------------------------

#[test]
fn sent_dies_on_fail() {
    let now = Instant::now();
    let (mut c, _) = pair(now);
    let mut fail = [0u8; 8];
    default_bits().emit_fail(&mut fail).unwrap();
    c.deliver(now, &fail);
    assert!(c.ch.is_dead());
}

#[test]
fn sent_ignores_nostate_and_answers_data_out_of_band() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    assert_eq!(c.transmit(now).map(|d| d.len()), Some(WELCOME_LEN)); // the HELLO
    c.deliver(now, &[0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9]);
    assert_eq!(c.ch.state(), ChannelState::Sent);
    assert!(c.transmit(now).is_none(), "NOSTATE ignored in SENT");
    // A DATA from an old establishment: out-of-band NOSTATE, HELLOs continue.
    let (mut oc, _os) = established(now);
    oc.ctx.send(b"x");
    let data = oc.transmit(now).unwrap();
    c.deliver(now, &data);
    let nostate = c.transmit(now).unwrap();
    assert_eq!(MessageType::of(&nostate).unwrap(), MessageType::Nostate);
    assert_eq!(&nostate[8..], &data[data.len() - 16..]);
    assert_eq!(c.ch.state(), ChannelState::Sent);
    // The HELLOs continue on the timer and the handshake completes.
    let t = c.ch.poll_timeout().expect("handshake timer armed");
    c.ch.handle_timeout(t, &mut c.ctx);
    settle(&mut c, &mut s, t);
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert_eq!(s.ch.state(), ChannelState::Established);
}

#[test]
fn sent_rejects_welcome_with_bad_mac() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    let hello = c.transmit(now).unwrap();
    s.deliver(now, &hello);
    let mut welcome = s.transmit(now).unwrap();
    welcome[WELCOME_LEN - 1] ^= 1;
    c.deliver(now, &welcome);
    assert_eq!(c.ch.state(), ChannelState::Sent);
    assert!(c.ctx.established.is_empty());
    let nostate = c.transmit(now).unwrap();
    assert_eq!(
        MessageType::of(&nostate).unwrap(),
        MessageType::Nostate,
        "out-of-band NOSTATE"
    );
}

#[test]
fn handshake_timer_retransmits_eight_times_then_dies() {
    let t0 = Instant::now();
    let (mut c, _) = pair(t0);
    let mut hellos = vec![c.transmit(t0).unwrap()];
    while let Some(deadline) = c.ch.poll_timeout() {
        c.ch.handle_timeout(deadline, &mut c.ctx);
        if let Some(d) = c.transmit(deadline) {
            hellos.push(d);
        }
    }
    assert!(c.ch.is_dead());
    assert_eq!(hellos.len(), 9, "HELLO plus 8 retransmissions");
    assert!(
        hellos.windows(2).all(|w| w[0] == w[1]),
        "retransmissions are byte-identical"
    );
}

#[test]
fn simultaneous_open_establishes_both() {
    let now = Instant::now();
    let mut actx = busy(1);
    let mut bctx = busy(2);
    let a = Channel::connect(now, SERVER, cfg(), &mut actx);
    let b = Channel::connect(now, CLIENT, cfg(), &mut bctx);
    let (mut a, mut b) = (Peer { ch: a, ctx: actx }, Peer { ch: b, ctx: bctx });
    let ha = a.transmit(now).unwrap();
    let hb = b.transmit(now).unwrap();
    a.deliver(now, &hb);
    b.deliver(now, &ha);
    assert_eq!(a.ch.state(), ChannelState::Received);
    assert_eq!(b.ch.state(), ChannelState::Received);
    settle(&mut a, &mut b, now);
    assert_eq!(a.ch.state(), ChannelState::Established);
    assert_eq!(b.ch.state(), ChannelState::Established);
    a.ctx.send(b"from a");
    b.ctx.send(b"from b");
    settle(&mut a, &mut b, now);
    assert!(b.ctx.received.iter().any(|p| p == b"from a"));
    assert!(a.ctx.received.iter().any(|p| p == b"from b"));
}

// ---- resume negotiation (§4.3) -------------------------------------------------

#[test]
fn known_peer_answers_resume0_hello_with_hello_and_both_resume() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    c.ctx.resumable = true;
    s.ctx.resumable = true;
    let log = settle(&mut c, &mut s, now);
    assert_eq!(
        log[..3],
        [
            (true, MessageType::Hello),
            (false, MessageType::Hello),
            (true, MessageType::Welcome)
        ]
    );
    assert!(c.ctx.established[0].resume && s.ctx.established[0].resume);
}

#[test]
fn only_one_side_knows_no_resume() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    s.ctx.resumable = true; // the client has lost its state
    settle(&mut c, &mut s, now);
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert!(!c.ctx.established[0].resume && !s.ctx.established[0].resume);
}

// ---- §4.4 RECEIVED ---------------------------------------------------------------

#[test]
fn received_nostate_with_tail_restarts_handshake_wrong_token_ignored() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    let hello = c.transmit(now).unwrap();
    s.deliver(now, &hello);
    let welcome = s.transmit(now).unwrap();
    let mut fail = [0u8; 8];
    default_bits().emit_fail(&mut fail).unwrap();
    s.deliver(now, &fail);
    assert_eq!(
        s.ch.state(),
        ChannelState::Received,
        "FAIL ignored in RECEIVED"
    );
    let mut wrong = vec![0u8; 24];
    wrong[8..].copy_from_slice(&[7; 16]);
    s.deliver(now, &wrong);
    assert_eq!(s.ch.state(), ChannelState::Received);
    let mut nostate = vec![0u8; 8];
    nostate.extend_from_slice(&welcome[WELCOME_LEN - 16..]);
    s.deliver(now, &nostate);
    assert_eq!(s.ch.state(), ChannelState::Sent, "fresh half, new HELLO");
}

#[test]
fn received_establishes_on_authentic_data_only() {
    let now = Instant::now();
    let (mut c, mut s) = pair(now);
    let hello = c.transmit(now).unwrap();
    s.deliver(now, &hello);
    let welcome = s.transmit(now).unwrap();
    c.deliver(now, &welcome);
    c.ctx.send(b"first");
    let mut data = c.transmit(now).unwrap();
    let genuine = data.clone();
    data[9] ^= 0x80;
    s.deliver(now, &data);
    assert_eq!(s.ch.state(), ChannelState::Received, "forged DATA ignored");
    s.deliver(now, &genuine);
    assert_eq!(s.ch.state(), ChannelState::Established);
    assert_eq!(s.ctx.received, vec![b"first".to_vec()]);
}

// ---- §4.4 ESTABLISHED -----------------------------------------------------------

#[test]
fn established_ignores_fail_forward_req_and_foreign_nostate() {
    let now = Instant::now();
    let (mut c, _s) = established(now);
    let mut fail = [0u8; 8];
    default_bits().emit_fail(&mut fail).unwrap();
    let forward = [&[0x80u8, 0, 0, 0, 0, 0, 0, 0][..], &[0; 6], &[0x20; 78]].concat();
    let mut nostate = vec![0u8; 8];
    nostate.extend_from_slice(&[5; 16]);
    for d in [fail.to_vec(), forward, nostate] {
        c.deliver(now, &d);
        assert_eq!(c.ch.state(), ChannelState::Established, "{d:02x?}");
    }
    assert_eq!(c.ctx.unbound, 0);
}

#[test]
fn established_answers_hello_and_welcome_with_data() {
    let now = Instant::now();
    let (mut c, mut s) = established(now);
    let peer = TestContext::from_seed(9);
    c.deliver(
        now,
        &hello_from(&peer, default_bits(), &some_point(), CLIENT, HELLO_LEN),
    );
    let d = c.transmit(now).unwrap();
    assert_eq!(MessageType::of(&d).unwrap(), MessageType::Data);
    s.deliver(now, &d);
    assert_eq!(c.ch.state(), ChannelState::Established);
}

#[test]
fn established_nostate_with_tail_renegotiates_and_reports_outstanding_lost() {
    let now = Instant::now();
    let (mut c, mut s) = established(now);
    c.ctx.send(b"in flight");
    let data = c.transmit(now).unwrap();
    let mut nostate = vec![0u8; 8];
    nostate.extend_from_slice(&data[data.len() - 16..]);
    c.deliver(now, &nostate);
    assert_eq!(c.ch.state(), ChannelState::Sent, "not idle: new handshake");
    assert_eq!(c.ctx.unbound, 1);
    assert_eq!(
        c.ctx.outcomes.last().map(|o| o.1),
        Some(false),
        "outstanding DATA reported lost"
    );
    assert_eq!(
        c.ctx.outbox.front().map(Vec::as_slice),
        Some(&b"in flight"[..]),
        "bytes re-queued"
    );
    // The server lost nothing; it resumes? It knows nothing in this test context, so no resume.
    s.ctx = TestContext::from_seed(0);
    s.ch = Channel::accept(now, CLIENT, cfg(), 0);
    settle(&mut c, &mut s, now);
    assert_eq!(c.ch.state(), ChannelState::Established);
    assert!(s.ctx.received.iter().any(|p| p == b"in flight"));
}

#[test]
fn established_nostate_with_tail_when_idle_dies() {
    let now = Instant::now();
    let (mut c, _s) = established(now);
    c.ch.handle_timeout(now + Duration::from_millis(20), &mut c.ctx);
    c.ctx.force_zombie = Some(true);
    c.deliver(now, &[0u8; 8]); // not even a NOSTATE: corrupt, ignored
    assert_eq!(c.ch.state(), ChannelState::Established);
    // Make the channel send a datagram so that it has a tail.
    let peer = TestContext::from_seed(9);
    c.deliver(
        now,
        &hello_from(&peer, default_bits(), &some_point(), CLIENT, HELLO_LEN),
    );
    let d = c.transmit(now).unwrap();
    let mut nostate = vec![0u8; 8];
    nostate.extend_from_slice(&d[d.len() - 16..]);
    c.deliver(now, &nostate);
    assert!(c.ch.is_dead());
    assert_eq!(c.ctx.unbound, 1);
}

/// Simultaneous close: the NOSTATE answering our finish datagram arrives after we
/// sent another datagram. An idle host accepts it; a busy one does not.
#[test]
fn idle_host_accepts_nostate_for_its_last_finish_datagram() {
    let now = Instant::now();
    let (mut c, _s) = established(now);
    c.ch.handle_timeout(now + Duration::from_millis(20), &mut c.ctx);
    let peer = TestContext::from_seed(9);
    let hello = hello_from(&peer, default_bits(), &some_point(), CLIENT, HELLO_LEN);
    let nostate_for = |d: &[u8]| [&[0u8; 8][..], &d[d.len() - 16..]].concat();
    let send = |c: &mut Peer, zombie: bool| {
        c.ctx.force_zombie = Some(zombie);
        c.deliver(now, &hello);
        let d = c.transmit(now).unwrap();
        assert_eq!(
            MessageType::of(&d).unwrap() == MessageType::DataFinish,
            zombie
        );
        d
    };
    let finish = send(&mut c, true);
    let plain = send(&mut c, false);
    // Busy: only the last datagram's tail counts.
    c.deliver(now, &nostate_for(&finish));
    assert_eq!(c.ch.state(), ChannelState::Established);
    // A NOSTATE for an older datagram without the finish flag never counts.
    let _ = send(&mut c, true);
    let _ = send(&mut c, false);
    c.ctx.force_zombie = Some(true);
    c.deliver(now, &nostate_for(&plain));
    assert_eq!(c.ch.state(), ChannelState::Established);
    // Idle: the answer to the last finish datagram closes the channel.
    let finish = send(&mut c, true);
    let _ = send(&mut c, false);
    c.ctx.force_zombie = Some(true);
    c.deliver(now, &nostate_for(&finish));
    assert!(c.ch.is_dead());
    assert_eq!(c.ctx.unbound, 1);
}

#[test]
fn refused_payload_is_not_acknowledged_and_comes_again() {
    let now = Instant::now();
    let (mut c, mut s) = established(now);
    s.ctx.refuse = true;
    c.ctx.send(b"later");
    let d = c.transmit(now).unwrap();
    s.deliver(now, &d);
    s.ctx.refuse = false;
    // No ack for it: the retransmission timeout reports it lost, the payload is re-sent.
    let mut t = now;
    for _ in 0..50 {
        settle(&mut c, &mut s, t);
        if s.ctx.received.iter().any(|p| p == b"later") {
            break;
        }
        t = [c.ch.poll_timeout(), s.ch.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        c.ch.handle_timeout(t, &mut c.ctx);
        s.ch.handle_timeout(t, &mut s.ctx);
    }
    assert_eq!(s.ctx.received.iter().filter(|p| *p == b"later").count(), 1);
    assert!(c.ctx.outcomes.iter().any(|(_, acked)| !acked));
}

#[test]
fn loopback_channel_establishes_with_itself_and_closes_when_idle() {
    let now = Instant::now();
    let mut ctx = TestContext::from_seed(5);
    let mut ch = Channel::connect(now, SERVER, cfg(), &mut ctx);
    let mut p = Peer {
        ch: Channel::accept(now, SERVER, cfg(), 0),
        ctx: TestContext::from_seed(6),
    };
    std::mem::swap(&mut p.ch, &mut ch);
    p.ctx = ctx;
    for _ in 0..20 {
        let Some(d) = p.transmit(now) else { break };
        p.deliver(now, &d);
    }
    assert_eq!(p.ctx.established.len(), 1);
    assert_eq!(
        p.ctx.established[0].peer,
        p.ctx.public(PublicKeySuite::Curve25519Whirlpool)
    );
    assert!(p.ch.is_dead(), "idle loopback channel closes at once");
}

#[test]
fn hosts_becoming_idle_close_the_channel_at_once() {
    // Fast close without waiting for the 240 s idle timer: the side whose host
    // becomes idle sends one DATA with the finish flag; an idle peer answers
    // NOSTATE and both channels are gone.
    let now = Instant::now();
    let (mut c, mut s) = established(now);
    c.ctx.send(b"last words");
    settle(&mut c, &mut s, now);
    assert_eq!(c.ch.state(), ChannelState::Established);
    s.ctx.force_zombie = None; // the server has nothing left
    let log = settle(&mut c, &mut s, now);
    assert_eq!(
        log,
        vec![(false, MessageType::DataFinish)],
        "one finish datagram, no reply while busy"
    );
    c.ctx.force_zombie = None; // now the client is idle too
    let log = settle(&mut c, &mut s, now);
    assert_eq!(
        log,
        vec![
            (true, MessageType::DataFinish),
            (false, MessageType::Nostate)
        ]
    );
    assert!(c.ch.is_dead() && s.ch.is_dead());
}
