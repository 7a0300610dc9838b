//! Known-answer tests against the transcripts recorded from the reference
//! implementation (`tests/data/vectors/`, format `cusp-vector-1`).
//!
//! For every file this rebuilds, from the recorded entropy alone:
//! * each peer's long-term keys (xor and curve25519 public keys, saved-key string)
//!   and every ephemeral value;
//! * each session's HMQV intermediates (d, e, σ) and both sides' k_send / k_recv;
//! * every datagram byte for byte: HELLO and WELCOME (with MAC) from the sender's
//!   keys, flags and the carried address; every DATA by opening it with the
//!   receiver's keys, parsing its payload into exactly the listed stream segments,
//!   re-encoding those segments and re-sealing with the sender's keys; every
//!   NOSTATE from the tail of the datagram it echoes.
//!
//! Datagrams whose bytes the lossy captures omit (V9, V10) are rebuilt from the
//! quoted header and the listed segments (stream byte at offset `o` is `o mod 251`)
//! and must reproduce the recorded MAC.

mod support;

use std::net::SocketAddrV4;

use cusp_proto::crypto::{
    Ephemeral, KeyMaterial, PrivateKey, PublicKeySuite, PublicKeySuites, SessionKeys,
    SymmetricSuite, SymmetricSuites,
};
use cusp_proto::wire::datagram::{
    DataHeader, Datagram, Negotiation, NegotiationBits, emit_nostate, tail_token,
};
use cusp_proto::wire::segment::{PayloadWriter, Segment, Segments};
use cusp_proto::wire::{HEADER_LEN, MAC_LEN, WELCOME_LEN};
use support::vector_file::{Section, SegmentLine, VectorFile, direction, parse_int};

/// Byte `i` of a peer's entropy stream (`entropy_rule` of the README).
fn entropy_at(peer: &Section, offset: usize, len: usize) -> Vec<u8> {
    let seed = peer.int("entropy_seed");
    (0..len)
        .map(|i| ((seed + (offset + i) as u64) % 256) as u8)
        .collect()
}

fn pk_suite(name: &str) -> PublicKeySuite {
    PublicKeySuite::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("suite {name}"))
}

fn sym_suite(name: &str) -> SymmetricSuite {
    SymmetricSuite::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("suite {name}"))
}

/// A peer's identity and ephemerals, rebuilt from its entropy stream and checked
/// against the recorded values.
struct Peer {
    key: PrivateKey,
    ephemerals: Vec<Ephemeral>,
}

fn rebuild_peer(file: &str, name: &str, s: &Section) -> Peer {
    let entropy: [u8; 40] = entropy_at(s, 0, 40).try_into().unwrap();
    assert_eq!(
        entropy,
        s.bytes::<40>("private_key_entropy"),
        "{file} {name}: entropy rule"
    );
    let key = PrivateKey::from_entropy(&entropy);
    let curve = key.public_key(PublicKeySuite::Curve25519Whirlpool);
    assert_eq!(
        curve.as_bytes(),
        &s.bytes::<32>("static_public"),
        "{file} {name}: static_public"
    );
    let xor = key.public_key(PublicKeySuite::Xor);
    assert_eq!(
        xor.as_bytes(),
        &s.bytes::<32>("xor_public"),
        "{file} {name}: xor_public"
    );
    assert_eq!(
        key.to_hex().to_lowercase(),
        s.get("saved_private_key"),
        "{file} {name}: saved key"
    );
    let reloaded = PrivateKey::from_hex(s.get("saved_private_key")).expect("saved key loads");
    assert_eq!(
        reloaded.public_key(PublicKeySuite::Curve25519Whirlpool),
        curve
    );

    let mut ephemerals = Vec::new();
    for k in 0.. {
        let prefix = format!("ephemeral.{k}");
        let Some(offset) = s.try_get(&format!("{prefix}.entropy_offset")) else {
            break;
        };
        let raw: [u8; 32] = entropy_at(s, parse_int(offset) as usize, 32)
            .try_into()
            .unwrap();
        assert_eq!(
            raw,
            s.bytes::<32>(&format!("{prefix}.raw")),
            "{file} {name} {prefix}: raw"
        );
        let e = Ephemeral::from_raw(pk_suite(s.get(&format!("{prefix}.suite"))), &raw);
        assert_eq!(
            e.public(),
            &s.bytes::<32>(&format!("{prefix}.public")),
            "{file} {name} {prefix}"
        );
        ephemerals.push(e);
    }
    Peer { key, ephemerals }
}

/// `client.ephemeral.1` → ("client", 1).
fn ephemeral_ref(r: &str) -> (&str, usize) {
    let (peer, k) = r
        .rsplit_once(".ephemeral.")
        .unwrap_or_else(|| panic!("ephemeral ref {r}"));
    (peer, k.parse().expect("ephemeral index"))
}

/// One agreed session with both sides' keys.
struct Session {
    sides: Vec<String>,
    sym: SymmetricSuite,
    encrypt: bool,
    keys: Vec<SessionKeys>,
    /// `(side, ephemeral index)` used by each side.
    ephemerals: Vec<(String, usize)>,
}

impl Session {
    /// Keys of the session's side other than `side` (the intended receiver; a
    /// restarted process such as `server#2` may receive a datagram of a session it never had).
    fn peer_keys_of(&self, side: &str) -> &SessionKeys {
        let i = self
            .sides
            .iter()
            .position(|s| s != side)
            .expect("two sides");
        &self.keys[i]
    }

    fn keys_of(&self, side: &str) -> &SessionKeys {
        let i = self
            .sides
            .iter()
            .position(|s| s == side)
            .unwrap_or_else(|| panic!("no side {side}"));
        &self.keys[i]
    }
}

fn rebuild_session(v: &VectorFile, peers: &[(String, Peer)], n: u64, s: &Section) -> Session {
    let file = &v.name;
    let suite = pk_suite(s.get("publickey_suite"));
    let sym = sym_suite(s.get("symmetric_suite"));
    let sides: Vec<String> = peers
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| s.try_get(&format!("{name}.k_send")).is_some())
        .collect();
    assert_eq!(sides.len(), 2, "{file} session {n}: two sides");
    let peer = |name: &str| &peers.iter().find(|(p, _)| p == name).expect("peer").1;
    let mut keys = Vec::new();
    let mut ephemerals = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let other = &sides[1 - i];
        let (own_name, own_k) = ephemeral_ref(s.get(&format!("{side}.ephemeral")));
        let (other_name, other_k) = ephemeral_ref(s.get(&format!("{other}.ephemeral")));
        assert_eq!((own_name, other_name), (side.as_str(), other.as_str()));
        let own = &peer(side).ephemerals[own_k];
        let peer_static = *peer(other).key.public_key(suite).as_bytes();
        let peer_eph = *peer(other).ephemerals[other_k].public();
        let material: KeyMaterial = if suite == PublicKeySuite::Curve25519Whirlpool {
            let out = own
                .agree_hmqv(&peer(side).key, &peer_static, &peer_eph, sym)
                .expect("hmqv");
            assert_eq!(
                out.d,
                s.bytes::<16>(&format!("{side}.d")),
                "{file} session {n} {side}.d"
            );
            assert_eq!(
                out.e,
                s.bytes::<16>(&format!("{side}.e")),
                "{file} session {n} {side}.e"
            );
            assert_eq!(
                out.sigma,
                s.bytes::<32>("sigma"),
                "{file} session {n} sigma"
            );
            out.keys.clone()
        } else {
            own.agree(&peer(side).key, &peer_static, &peer_eph, sym)
                .expect("xor agreement")
        };
        assert_eq!(
            material.send(),
            &s.hex(&format!("{side}.k_send")).unwrap()[..],
            "{file} {n} {side}.k_send"
        );
        assert_eq!(
            material.recv(),
            &s.hex(&format!("{side}.k_recv")).unwrap()[..],
            "{file} {n} {side}.k_recv"
        );
        keys.push(SessionKeys::new(sym, &material));
        ephemerals.push((side.clone(), own_k));
    }
    Session {
        sides,
        sym,
        encrypt: s.int("noEncrypt") == 0,
        keys,
        ephemerals,
    }
}

fn flags(d: &Section) -> (bool, bool) {
    let raw = d.raw("flags").expect("flags");
    (raw.contains("resume=1"), raw.contains("noEncrypt=1"))
}

fn address(d: &Section) -> SocketAddrV4 {
    d.get("address").parse().expect("address")
}

/// Stream bytes of the lossy captures: the byte at offset `o` is `o mod 251`.
fn pattern(offset: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((offset as u64 + i as u64) % 251) as u8)
        .collect()
}

/// A segment line with omitted DATA bytes filled in (lossy captures: byte `o` is `o mod 251`).
fn filled(line: SegmentLine) -> SegmentLine {
    match line {
        SegmentLine::Data {
            id,
            eof,
            offset_field,
            offset,
            len,
            bytes: None,
        } => SegmentLine::Data {
            id,
            eof,
            offset_field,
            offset,
            len,
            bytes: Some(pattern(offset, len)),
        },
        other => other,
    }
}

/// Check that `payload` parses into exactly the listed segments and re-encodes to itself.
fn check_segments(ctx: &str, d: &Section, payload: &[u8]) {
    let expected: Vec<SegmentLine> = d
        .all("segment")
        .map(|l| filled(SegmentLine::parse(l)))
        .collect();
    let parsed: Vec<Segment<'_>> = Segments::new(payload).collect::<Result<_, _>>().expect(ctx);
    assert_eq!(parsed.len(), expected.len(), "{ctx}: segment count");
    let mut out = vec![0u8; payload.len()];
    let mut w = PayloadWriter::new(&mut out);
    for (seg, line) in parsed.iter().zip(&expected) {
        assert_eq!(&SegmentLine::from_segment(seg), line, "{ctx}: segment");
        w.push(seg).expect(ctx);
    }
    let n = w.finish().expect(ctx);
    assert_eq!(
        hex::encode(&out[..n]),
        hex::encode(payload),
        "{ctx}: segments re-encode"
    );
}

/// Build the stream payload of a datagram whose bytes were omitted, from its segment lines.
fn payload_from_segments(ctx: &str, d: &Section) -> Vec<u8> {
    let lines: Vec<SegmentLine> = d
        .all("segment")
        .map(|l| filled(SegmentLine::parse(l)))
        .collect();
    let mut out = vec![0u8; 2048];
    let mut w = PayloadWriter::new(&mut out);
    for line in &lines {
        let seg = match line {
            SegmentLine::Connect { seq, service } => Segment::Connect {
                seq: *seq,
                service: *service,
            },
            SegmentLine::Data {
                id,
                eof,
                offset_field,
                offset,
                bytes,
                ..
            } => Segment::Data {
                id: *id,
                offset: *offset,
                eof: *eof,
                explicit_offset: *offset_field,
                bytes: bytes.as_deref().unwrap_or_default(),
            },
            SegmentLine::WriterResets { id } => Segment::WriterResets { id: *id },
            SegmentLine::ReaderResets { seq, id } => Segment::ReaderResets { seq: *seq, id: *id },
            SegmentLine::ReaderBarrier { seq, id, barrier } => Segment::ReaderBarrier {
                seq: *seq,
                id: *id,
                barrier: *barrier,
            },
        };
        w.push(&seg).expect(ctx);
    }
    let n = w.finish().expect(ctx);
    out.truncate(n);
    out
}

/// Rebuild and check every datagram of one transcript; returns the number of
/// datagrams reproduced byte for byte.
fn check_file(name: &str) -> usize {
    let v = VectorFile::load(name);
    let peers: Vec<(String, Peer)> = v
        .peers
        .iter()
        .map(|(n, s)| (n.clone(), rebuild_peer(name, n, s)))
        .collect();
    let peer = |n: &str| {
        &peers
            .iter()
            .find(|(p, _)| p == n)
            .unwrap_or_else(|| panic!("peer {n}"))
            .1
    };
    let sessions: Vec<(u64, Session)> = v
        .sessions
        .iter()
        .map(|(n, s)| (*n, rebuild_session(&v, &peers, *n, s)))
        .collect();
    let session = |n: u64| &sessions.iter().find(|(k, _)| *k == n).expect("session").1;

    let mut reproduced = 0;
    let mut sent: Vec<Vec<u8>> = Vec::new(); // datagram bytes by index, for NOSTATE tokens
    for (i, d) in v.datagrams.iter().enumerate() {
        let ctx = format!("{name} [datagram {}]", i + 1);
        let (from, to) = direction(d);
        let recorded = d.hex("hex");
        let rebuilt: Vec<u8> = match d.get("type") {
            t @ ("HELLO" | "WELCOME") => {
                let (resume, no_encrypt) = flags(d);
                let bits = NegotiationBits {
                    public_key: PublicKeySuites::from_mask(d.int("publickey_mask") as u16),
                    symmetric: SymmetricSuites::from_mask(d.int("symmetric_mask") as u16),
                    no_encrypt,
                    resume,
                };
                let suite = bits.public_key.cheapest().expect("public-key suite");
                let (eph_peer, k) = ephemeral_ref(d.get("Y_is"));
                assert_eq!(eph_peer, from, "{ctx}: Y is the sender's");
                let static_key = *peer(from).key.public_key(suite).as_bytes();
                assert_eq!(static_key, d.bytes::<32>("B"), "{ctx}: B");
                let ephemeral = peer(from).ephemerals[k].public();
                assert_eq!(ephemeral, &d.bytes::<32>("Y"), "{ctx}: Y");
                let msg = Negotiation {
                    bits,
                    static_key: &static_key,
                    ephemeral,
                    address: address(d),
                };
                let mut buf = [0u8; WELCOME_LEN];
                if t == "HELLO" {
                    let n = msg.emit_hello(&mut buf).expect(&ctx);
                    buf[..n].to_vec()
                } else {
                    let n = msg.emit_welcome_body(&mut buf).expect(&ctx);
                    // The WELCOME belongs to the session in which the sender used this ephemeral.
                    let s = sessions
                        .iter()
                        .map(|(_, s)| s)
                        .find(|s| s.ephemerals.iter().any(|(side, e)| side == from && *e == k))
                        .expect("session of WELCOME");
                    assert_eq!(
                        Some(s.sym),
                        bits.symmetric.cheapest(),
                        "{ctx}: agreed suite"
                    );
                    s.keys_of(from).seal(0, &mut buf, n, false);
                    assert_eq!(&buf[n..], &d.bytes::<16>("mac"), "{ctx}: WELCOME MAC");
                    let mut opened = buf;
                    assert!(
                        s.sides.iter().any(|side| side == to),
                        "{ctx}: receiver in session"
                    );
                    s.peer_keys_of(from)
                        .open(0, &mut opened, n, false)
                        .expect("receiver opens WELCOME");
                    buf.to_vec()
                }
            }
            "DATA" => {
                let s = session(d.int("session"));
                let tsn = d.int("tsn");
                let finish = d.int("finish") == 1;
                let header = DataHeader::new(finish, tsn, d.int("acklen") as u32, d.int("asn"));
                let mut head = [0u8; HEADER_LEN];
                header.emit(&mut head).expect(&ctx);
                let payload = match &recorded {
                    Some(bytes) => {
                        let Ok(Datagram::Data(data)) = Datagram::parse(bytes) else {
                            panic!("{ctx}: not DATA")
                        };
                        assert_eq!(data.header, header, "{ctx}: header fields");
                        let mut opened = bytes.clone();
                        s.peer_keys_of(from)
                            .open(tsn, &mut opened, HEADER_LEN, s.encrypt)
                            .expect("peer opens");
                        let payload = opened[HEADER_LEN..opened.len() - MAC_LEN].to_vec();
                        if let Some(listed) = d.hex("payload") {
                            assert_eq!(
                                hex::encode(&payload),
                                hex::encode(listed),
                                "{ctx}: payload"
                            );
                        }
                        payload
                    }
                    None => {
                        let quoted = d.raw("hex").unwrap();
                        let h = quoted
                            .split("header ")
                            .nth(1)
                            .and_then(|r| r.get(..16))
                            .expect("quoted header");
                        assert_eq!(hex::encode(head), h, "{ctx}: quoted header");
                        payload_from_segments(&ctx, d)
                    }
                };
                check_segments(&ctx, d, &payload);
                let mut buf = head.to_vec();
                buf.extend_from_slice(&payload);
                buf.extend_from_slice(&[0; MAC_LEN]);
                s.keys_of(from).seal(tsn, &mut buf, HEADER_LEN, s.encrypt);
                assert_eq!(
                    &buf[buf.len() - MAC_LEN..],
                    &d.bytes::<16>("mac"),
                    "{ctx}: MAC"
                );
                assert_eq!(buf.len() as u64, d.int("len"), "{ctx}: length");
                buf
            }
            "NOSTATE" => {
                let of = d.int("token_of_datagram") as usize;
                let token = tail_token(&sent[of - 1]);
                assert_eq!(token, &d.hex("token").unwrap()[..], "{ctx}: token");
                let mut buf = [0u8; 24];
                let n = emit_nostate(token, &mut buf).expect(&ctx);
                buf[..n].to_vec()
            }
            other => panic!("{ctx}: unexpected type {other}"),
        };
        if let Some(bytes) = &recorded {
            assert_eq!(hex::encode(&rebuilt), hex::encode(bytes), "{ctx}: bytes");
            // The parser's view re-emits the same bytes.
            let parsed = Datagram::parse(bytes).expect(&ctx);
            let mut again = vec![0u8; bytes.len()];
            let n = parsed.emit(&mut again).expect(&ctx);
            assert_eq!(&again[..n], &bytes[..n], "{ctx}: parse → emit");
        }
        reproduced += 1;
        sent.push(rebuilt);
    }
    println!(
        "{name}: {reproduced} of {} datagrams reproduced byte for byte",
        v.datagrams.len()
    );
    reproduced
}

macro_rules! vector_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                let n = check_file($file);
                assert!(n > 0);
            }
        )*

        /// Every transcript in the data folder has a test above.
        #[test]
        fn every_vector_file_is_tested() {
            let mut listed = vec![$($file.to_owned()),*];
            listed.sort();
            assert_eq!(VectorFile::all_names(), listed);
        }
    };
}

vector_tests! {
    v1_cusp_default => "V1-cusp-default",
    v2_crc32 => "V2-crc32",
    v3_poly1305aes_noencrypt => "V3-poly1305aes-noencrypt",
    v4_multi_stream => "V4-multi-stream",
    v5_peer_restart_nostate => "V5-peer-restart-nostate",
    v6_resume_address_change => "V6-resume-address-change",
    v7_xor_crc32 => "V7-xor-crc32",
    v8_unknown_service => "V8-unknown-service",
    v9_loss => "V9-loss",
    v10_reorder => "V10-reorder",
}
