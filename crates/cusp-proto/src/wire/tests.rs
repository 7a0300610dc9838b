//! Cross-module tests of the wire layer: reference vectors (`shared/vectors`),
//! the worked examples of `spec/streams.md` §1.9, receiver rules, round trips
//! and robustness against arbitrary input.

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::collection::vec;
use proptest::prelude::*;

use super::datagram::*;
use super::error::WireError;
use super::segment::*;
use crate::crypto::suite::{PublicKeySuites, SymmetricSuites};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

// V1-cusp-default.txt, datagrams 1..5.
const V1_HELLO: &str = "20000000000200028e5fae12f4dc7537df8c9e57fd467b50f225a51c4f4d85c9b560e0589323fb36a13278bbff246f6e02ffa447f68c2ffabc821880fa64b588cad8b183425f0fdd80fffffede75";
const V1_WELCOME: &str = "30000000000200026ab71182224ee3a8eef1a590dc471ade6dab86fdeef038907cba1a727d42704f492f1cb85847ffc7bb427865f64c5e8041ec0499b37a1da945a15b4102af02fe80fffffede74d20672937da2041c9eb3a2e71662c508";
const V1_DATA: &str =
    "6000000100000000dee551e7c8adbf68313f6e82659f5fa0031fcb13016bf8a2699f34e71ea4d29f9d24e9cd";
const V1_FINISH: &str = "70000001100000014919a006b23ab3013b4b6d4c1b64299d";
const V1_NOSTATE: &str = "00000000000000004919a006b23ab3013b4b6d4c1b64299d";

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

#[test]
fn v1_hello() {
    let bytes = h(V1_HELLO);
    let Datagram::Hello(n) = Datagram::parse(&bytes).unwrap() else {
        panic!("not a HELLO")
    };
    assert_eq!(n.bits.public_key, PublicKeySuites::DEFAULTS);
    assert_eq!(n.bits.symmetric, SymmetricSuites::DEFAULTS);
    assert!(!n.bits.no_encrypt && !n.bits.resume);
    assert_eq!(
        n.static_key[..],
        h("8e5fae12f4dc7537df8c9e57fd467b50f225a51c4f4d85c9b560e0589323fb36")[..]
    );
    assert_eq!(
        n.ephemeral[..],
        h("a13278bbff246f6e02ffa447f68c2ffabc821880fa64b588cad8b183425f0fdd")[..]
    );
    assert_eq!(n.address, addr("127.0.0.1:8586"));
    let mut out = [0u8; HELLO_LEN];
    assert_eq!(n.emit_hello(&mut out), Ok(78));
    assert_eq!(out[..], bytes[..]);
}

#[test]
fn v1_welcome() {
    let bytes = h(V1_WELCOME);
    let Datagram::Welcome(w) = Datagram::parse(&bytes).unwrap() else {
        panic!("not a WELCOME")
    };
    assert_eq!(w.body.address, addr("127.0.0.1:8587"));
    assert_eq!(w.mac[..], h("d20672937da2041c9eb3a2e71662c508")[..]);
    assert_eq!(w.mac_input, &bytes[..78]);
    let mut out = [0u8; WELCOME_LEN];
    assert_eq!(w.body.emit_welcome_body(&mut out), Ok(NEGOTIATION_LEN));
    assert_eq!(out[..78], bytes[..78]);
    out[78..].copy_from_slice(w.mac);
    assert_eq!(out[..], bytes[..]);
    // The body alone does not fit a 78-byte buffer: room for the MAC is required.
    assert_eq!(
        w.body.emit_welcome_body(&mut [0u8; 78]),
        Err(WireError::BufferTooSmall {
            needed: 94,
            got: 78
        })
    );
}

#[test]
fn v1_data_headers() {
    let bytes = h(V1_DATA);
    let Datagram::Data(d) = Datagram::parse(&bytes).unwrap() else {
        panic!("not DATA")
    };
    assert_eq!(
        d.header,
        DataHeader {
            finish: false,
            tsn28: 1,
            acklen: 0,
            asn28: 0
        }
    );
    assert_eq!(d.header.tsn(0), 1);
    assert_eq!(
        d.ciphertext(),
        &h("dee551e7c8adbf68313f6e82659f5fa0031fcb13")[..]
    );
    assert_eq!(d.mac()[..], h("016bf8a2699f34e71ea4d29f9d24e9cd")[..]);
    assert_eq!(d.sealed(), &bytes[8..]);
    assert_eq!(d.mac_input(), &bytes[..28]);
    let mut out = [0u8; 8];
    DataHeader::new(false, 1, 0, 0).emit(&mut out).unwrap();
    assert_eq!(out[..], bytes[..8]);

    let fin = h(V1_FINISH);
    let Datagram::Data(d) = Datagram::parse(&fin).unwrap() else {
        panic!("not DATA")
    };
    assert_eq!(
        d.header,
        DataHeader {
            finish: true,
            tsn28: 1,
            acklen: 1,
            asn28: 1
        }
    );
    assert!(d.ciphertext().is_empty());
    assert_eq!(Datagram::Data(d).message_type(), MessageType::DataFinish);
    DataHeader::new(true, 1, 1, 1).emit(&mut out).unwrap();
    assert_eq!(out[..], fin[..8]);
}

#[test]
fn v1_nostate_echoes_tail() {
    let fin = h(V1_FINISH);
    let bytes = h(V1_NOSTATE);
    let Datagram::Nostate { token } = Datagram::parse(&bytes).unwrap() else {
        panic!("not NOSTATE")
    };
    assert_eq!(token, tail_token(&fin));
    let mut out = [0u8; 24];
    assert_eq!(emit_nostate(tail_token(&fin), &mut out), Ok(24));
    assert_eq!(out[..], bytes[..]);
    assert_eq!(tail_token(&[1, 2, 3]), &[1, 2, 3]);
}

#[test]
fn v4_data_headers() {
    // V4 datagram 9: TSN 2, ASN 5, acklen 5; datagram 13: finish, TSN 8, ASN 3, acklen 3.
    let d9 = h("6000000250000005b4bae3d7241a8c021e8e790124bf26e3fff20d1142d024c12b40ddf1");
    let Ok(Datagram::Data(d)) = Datagram::parse(&d9) else {
        panic!()
    };
    assert_eq!(
        d.header,
        DataHeader {
            finish: false,
            tsn28: 2,
            acklen: 5,
            asn28: 5
        }
    );
    assert_eq!(d.ciphertext().len(), 12);
    let d13 = h("7000000830000003cbe21c47d69477ae5d5d26c31a6143a04e8c2e72");
    let Ok(Datagram::Data(d)) = Datagram::parse(&d13) else {
        panic!()
    };
    assert_eq!(
        d.header,
        DataHeader {
            finish: true,
            tsn28: 8,
            acklen: 3,
            asn28: 3
        }
    );
}

#[test]
fn data_header_reduces_and_saturates() {
    let hdr = DataHeader::new(false, (1 << 28) + 5, 40, (3 << 28) + 7);
    assert_eq!(
        hdr,
        DataHeader {
            finish: false,
            tsn28: 5,
            acklen: 15,
            asn28: 7
        }
    );
    let mut out = [0u8; 8];
    hdr.emit(&mut out).unwrap();
    assert_eq!(out, [0x60, 0, 0, 5, 0xf0, 0, 0, 7]);
    // Out-of-range public fields are masked/saturated on emit.
    let raw = DataHeader {
        finish: true,
        tsn28: u32::MAX,
        acklen: 200,
        asn28: u32::MAX,
    };
    raw.emit(&mut out).unwrap();
    assert_eq!(out, [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
}

// ---- receiver rules (channel.md §2) ----

fn hello_with(w1: u32, w2: u32, len: usize) -> Vec<u8> {
    let mut d = h(V1_HELLO);
    d[0..4].copy_from_slice(&w1.to_be_bytes());
    d[4..8].copy_from_slice(&w2.to_be_bytes());
    d.resize(len, 0xAA);
    d
}

#[test]
fn short_and_reserved_types_are_corrupt() {
    for len in 0..8 {
        let d = vec![0x90; len];
        assert_eq!(
            Datagram::parse(&d),
            Err(WireError::Truncated {
                needed: 8,
                got: len
            })
        );
    }
    for t in [4u8, 5, 11, 12, 13, 14, 15] {
        let mut d = vec![0u8; 100];
        d[0] = t << 4;
        let e = Datagram::parse(&d).unwrap_err();
        assert_eq!(e, WireError::UnknownType(t));
        assert!(e.is_corrupt());
    }
}

#[test]
fn public_key_mask_rules() {
    for bad in [0x0000u32, 0x0004, 0x0007, 0x8002] {
        let d = hello_with(0x2000_0000, bad << 16 | 2, 78);
        assert_eq!(
            Datagram::parse(&d),
            Err(WireError::BadSuiteMask(bad as u16))
        );
        let mut w = hello_with(0x3000_0000, bad << 16 | 2, 94);
        w[0] = 0x30;
        assert_eq!(
            Datagram::parse(&w),
            Err(WireError::BadSuiteMask(bad as u16))
        );
    }
    for good in [1u32, 2, 3] {
        // Unknown symmetric bits (and an empty symmetric mask) are tolerated.
        for sym in [0u32, 0x0002, 0xFFFF] {
            let d = hello_with(0x2000_0000, good << 16 | sym, 78);
            let Ok(Datagram::Hello(n)) = Datagram::parse(&d) else {
                panic!()
            };
            assert_eq!(n.bits.public_key.mask() as u32, good);
            assert_eq!(n.bits.symmetric.mask() as u32, sym);
        }
    }
}

#[test]
fn negotiation_reserved_bits_ignored_flags_read() {
    let d = hello_with(0x2FFF_FFFC | 0b11, 0x0002_0002, 78);
    let Ok(Datagram::Hello(n)) = Datagram::parse(&d) else {
        panic!()
    };
    assert!(n.bits.no_encrypt && n.bits.resume);
    let mut out = [0u8; 78];
    n.emit_hello(&mut out).unwrap();
    assert_eq!(out[0..4], [0x20, 0, 0, 3]); // reserved bits zero when sending
}

#[test]
fn hello_and_welcome_lengths() {
    let short = hello_with(0x2000_0000, 0x0002_0002, 77);
    assert_eq!(
        Datagram::parse(&short),
        Err(WireError::Truncated {
            needed: 78,
            got: 77
        })
    );
    let long = hello_with(0x2000_0000, 0x0002_0002, 200);
    let Ok(Datagram::Hello(n)) = Datagram::parse(&long) else {
        panic!()
    };
    assert_eq!(n.address, addr("127.0.0.1:8586")); // trailing bytes ignored
    // A WELCOME shorter than 94 still parses: the MAC is the last 16 bytes.
    let w = hello_with(0x3000_0000, 0x0002_0002, 80);
    let Ok(Datagram::Welcome(wl)) = Datagram::parse(&w) else {
        panic!()
    };
    assert_eq!(wl.mac[..], w[64..80]);
    assert_eq!(wl.mac_input, &w[..64]);
    let w = hello_with(0x3000_0000, 0x0002_0002, 77);
    assert!(Datagram::parse(&w).is_err());
    // Longer WELCOME: MAC is still the last 16 bytes, input everything before.
    let w = hello_with(0x3000_0000, 0x0002_0002, 100);
    let Ok(Datagram::Welcome(wl)) = Datagram::parse(&w) else {
        panic!()
    };
    assert_eq!(wl.mac_input.len(), 84);
}

#[test]
fn nostate_fail_forward_rules() {
    assert_eq!(Datagram::parse(&[0; 8]), Err(WireError::EmptyToken));
    assert_eq!(
        Datagram::parse(&[0; 9]),
        Ok(Datagram::Nostate { token: &[0] })
    );
    // Longer tokens are accepted (they just never match).
    assert!(
        matches!(Datagram::parse(&[0; 40]), Ok(Datagram::Nostate { token }) if token.len() == 32)
    );
    // FAIL: bits parsed, not validated; trailing bytes ignored.
    let fail = [0x1f, 0xff, 0xff, 0xfe, 0x00, 0x00, 0xab, 0xcd, 9, 9];
    let Ok(Datagram::Fail { bits }) = Datagram::parse(&fail) else {
        panic!()
    };
    assert_eq!(bits.public_key.mask(), 0);
    assert_eq!(bits.symmetric.mask(), 0xabcd);
    assert!(bits.no_encrypt && !bits.resume);
    // FORWARD_REQ: embedded part ≥ 8 bytes.
    let mut fr = vec![
        0x80, 0, 0, 0, 0, 0, 0, 0, 0x3f, 0xff, 0xfd, 0xf8, 0xde, 0x76,
    ];
    for len in 0..8 {
        let e = Datagram::parse(&fr).unwrap_err();
        assert_eq!(
            e,
            WireError::Truncated {
                needed: 22,
                got: 14 + len
            }
        );
        fr.push(len as u8);
    }
    let Ok(Datagram::ForwardReq { address, hello }) = Datagram::parse(&fr) else {
        panic!()
    };
    assert_eq!(address, addr("192.0.2.7:8585"));
    assert_eq!(hello, &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        Datagram::parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 1]),
        Ok(Datagram::ForwardAck)
    );
    assert_eq!(
        Datagram::parse(&[0xa0, 1, 2, 3, 4, 5, 6, 7]),
        Ok(Datagram::IcmpAck)
    );
}

#[test]
fn short_data_is_dropped_not_corrupt() {
    for len in 8..24 {
        let mut d = vec![0u8; len];
        d[0] = 0x60;
        let e = Datagram::parse(&d).unwrap_err();
        assert_eq!(e, WireError::DataTooShort { got: len });
        assert!(!e.is_corrupt());
    }
    let mut d = [0u8; 24];
    d[0] = 0x70;
    assert!(
        matches!(Datagram::parse(&d), Ok(Datagram::Data(x)) if x.header.finish && x.ciphertext().is_empty())
    );
}

#[test]
fn writers_refuse_bad_input() {
    let mut big = [0u8; 200];
    assert!(matches!(
        emit_nostate(&[], &mut big),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert!(matches!(
        emit_nostate(&[0; 17], &mut big),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert_eq!(
        emit_nostate(&[1; 16], &mut [0; 23]),
        Err(WireError::BufferTooSmall {
            needed: 24,
            got: 23
        })
    );
    let a = addr("10.0.0.1:1");
    assert!(matches!(
        emit_forward_req(a, &[0; 7], &mut big),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert_eq!(emit_forward_req(a, &[0; 78], &mut big), Ok(92));
    assert_eq!(
        emit_forward_ack(&mut [0; 7]),
        Err(WireError::BufferTooSmall { needed: 8, got: 7 })
    );
    assert_eq!(emit_icmp_ack(&mut big), Ok(8));
    assert_eq!(big[..8], [0xa0, 0, 0, 0, 0, 0, 0, 0]);
    let bits = NegotiationBits {
        public_key: PublicKeySuites::EMPTY,
        symmetric: SymmetricSuites::ALL,
        no_encrypt: false,
        resume: false,
    };
    let k = [0u8; 32];
    let n = Negotiation {
        bits,
        static_key: &k,
        ephemeral: &k,
        address: a,
    };
    assert_eq!(n.emit_hello(&mut big), Err(WireError::BadSuiteMask(0)));
    assert_eq!(bits.emit_fail(&mut big), Ok(8));
    assert_eq!(big[..8], [0x10, 0, 0, 0, 0, 0, 0, 3]);
    let n = Negotiation {
        bits: NegotiationBits {
            public_key: PublicKeySuites::ALL,
            ..bits
        },
        ..n
    };
    assert_eq!(
        n.emit_hello(&mut [0; 77]),
        Err(WireError::BufferTooSmall {
            needed: 78,
            got: 77
        })
    );
    assert_eq!(
        DataHeader::new(false, 0, 0, 0).emit(&mut [0; 7]),
        Err(WireError::BufferTooSmall { needed: 8, got: 7 })
    );
}

#[test]
fn constants() {
    assert_eq!(MTU, 1468);
    assert_eq!(HEADER_LEN, 8);
    assert_eq!(MAC_LEN, 16);
    assert_eq!(NEGOTIATION_LEN, 78);
    assert_eq!(WELCOME_LEN, 94);
    assert_eq!(STREAM_BUDGET, 1444);
    assert_eq!(MIN_DATA_LEN, 24);
}

// ---- stream segments (streams.md §1) ----

fn collect(payload: &[u8]) -> Vec<Result<Segment<'_>, WireError>> {
    Segments::new(payload).collect()
}

fn emit_all(segments: &[Segment<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let mut w = PayloadWriter::new(&mut buf);
    for s in segments {
        w.push(s).unwrap();
    }
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn streams_1_9_example_1_and_v1_payload() {
    let p = h("70000017100c000048656c6c6f20776f726c642e");
    let want = [
        Segment::Connect {
            seq: 0,
            service: 23,
        },
        Segment::data(0, 0, true, b"Hello world."),
    ];
    assert_eq!(collect(&p), want.map(Ok).to_vec());
    assert_eq!(emit_all(&want), p);
    assert_eq!(p.len(), 20);
}

fn mod251(from: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| ((from + i) % 251) as u8).collect()
}

#[test]
fn streams_1_9_example_2_and_v4_datagram_5() {
    // Second packet of a bulk stream before its CONNECT was acknowledged (V4 datagram 5: id 0, service 24).
    let bytes = mod251(1436, 1432);
    let want = [
        Segment::Connect {
            seq: 0,
            service: 24,
        },
        Segment::data(0, 1436, false, &bytes),
    ];
    let p = emit_all(&want);
    assert_eq!(p.len(), STREAM_BUDGET);
    assert_eq!(p[..12], h("70000018259800000000059c")[..]);
    assert_eq!(p[12..16], h("b5b6b7b8")[..]);
    assert_eq!(collect(&p), want.map(Ok).to_vec());
    // The spec's variant with id 3 and service 23.
    let p = emit_all(&[
        Segment::Connect {
            seq: 0,
            service: 23,
        },
        Segment::data(3, 1436, false, &bytes),
    ]);
    assert_eq!(p[..12], h("70000017259800030000059c")[..]);
}

#[test]
fn streams_1_9_examples_3_4() {
    let barrier = Segment::ReaderBarrier {
        seq: 0,
        id: 0,
        barrier: 26960,
    };
    assert_eq!(emit_all(&[barrier]), h("6000000000006950"));
    let rr = Segment::ReaderResets { seq: 2, id: 5 };
    assert_eq!(emit_all(&[rr]), h("52000005"));
    let wr = Segment::WriterResets { id: 5 };
    assert_eq!(emit_all(&[wr]), h("40000005"));
    for s in [barrier, rr, wr] {
        assert_eq!(collect(&emit_all(&[s])), vec![Ok(s)]);
    }
}

#[test]
fn v4_control_payloads() {
    // V4 datagram 9: READER_BARRIER seq 0 id 0 barrier 27568, READER_RESETS seq 0 id 3.
    let p = h("6000000000006bb050000003");
    let want = [
        Segment::ReaderBarrier {
            seq: 0,
            id: 0,
            barrier: 27568,
        },
        Segment::ReaderResets { seq: 0, id: 3 },
    ];
    assert_eq!(collect(&p), want.map(Ok).to_vec());
    assert_eq!(emit_all(&want), p);
    // V4 datagram 11: zero-length EOF at explicit offset 6000.
    let p = h("3000000000001770");
    let want = Segment::data(0, 6000, true, &[]);
    assert_eq!(collect(&p), vec![Ok(want)]);
    assert_eq!(emit_all(&[want]), p);
    // V4 datagram 13: WRITER_RESETS id 2.
    assert_eq!(
        collect(&h("40000002")),
        vec![Ok(Segment::WriterResets { id: 2 })]
    );
}

#[test]
fn v4_datagram_8_five_streams() {
    let s0 = mod251(5732, 268);
    let s2: Vec<u8> = (7u8..107).collect();
    let want = [
        Segment::Connect {
            seq: 0,
            service: 24,
        },
        Segment::data(0, 5732, false, &s0),
        Segment::Connect {
            seq: 0,
            service: 23,
        },
        Segment::data(1, 0, true, b"stream two, prio 1"),
        Segment::Connect {
            seq: 0,
            service: 24,
        },
        Segment::data(2, 0, false, &s2),
        Segment::Connect {
            seq: 0,
            service: 25,
        },
        Segment::data(3, 0, false, b"nobody listens"),
        Segment::Connect {
            seq: 0,
            service: 23,
        },
        Segment::data(4, 0, true, b"stream zero, priority 0"),
    ];
    let p = emit_all(&want);
    assert_eq!(p[..12], h("70000018210c000000001664")[..]);
    assert_eq!(Segments::validate(&p), Ok(10));
    assert_eq!(collect(&p), want.map(Ok).to_vec());
    // Padding of the 18-byte segment is zero and ignored on receipt.
    let mut q = p.clone();
    let pad_at = 4 + 8 + 268 + 4 + 4 + 18;
    assert_eq!(q[pad_at..pad_at + 2], [0, 0]);
    q[pad_at] = 0xEE;
    assert_eq!(collect(&q), want.map(Ok).to_vec());
}

#[test]
fn segment_errors_stop_iteration() {
    let ok = h("40000002");
    for t in 8u8..16 {
        let mut p = ok.clone();
        p.extend_from_slice(&[t << 4, 0, 0, 0]);
        p.extend_from_slice(&ok);
        assert_eq!(
            collect(&p),
            vec![
                Ok(Segment::WriterResets { id: 2 }),
                Err(WireError::UnknownSegmentType(t))
            ]
        );
    }
    for extra in 1..4 {
        let mut p = ok.clone();
        p.extend(std::iter::repeat_n(0, extra));
        assert_eq!(collect(&p)[1], Err(WireError::TrailingBytes(extra)));
    }
    // Truncated DATA: L = 5 needs 4 + 8 bytes.
    assert_eq!(
        collect(&h("000500010102030405")),
        vec![Err(WireError::Truncated { needed: 12, got: 9 })]
    );
    assert_eq!(
        collect(&h("2000000100000001")),
        vec![Ok(Segment::data(1, 1, false, &[]))]
    );
    assert_eq!(
        collect(&h("20000001000000")),
        vec![Err(WireError::Truncated { needed: 8, got: 7 })]
    );
    // READER_BARRIER cut short.
    assert_eq!(
        collect(&h("600000010000")),
        vec![Err(WireError::Truncated { needed: 8, got: 6 })]
    );
    // CONNECT at the end, before 1-3 bytes, before a reader->writer type.
    assert_eq!(
        collect(&h("40000002700000ff")),
        vec![
            Ok(Segment::WriterResets { id: 2 }),
            Err(WireError::ConnectAtEnd)
        ]
    );
    assert_eq!(
        collect(&h("700000ff0000")),
        vec![Err(WireError::TrailingBytes(2))]
    );
    for t in 5u8..16 {
        let p = [0x70, 0, 0, 1, t << 4, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(collect(&p), vec![Err(WireError::ConnectNotPaired(t))]);
    }
    // CONNECT followed by a truncated DATA: CONNECT is yielded, the DATA fails.
    assert_eq!(
        collect(&h("700000ff00040001")),
        vec![
            Ok(Segment::Connect {
                seq: 0,
                service: 0xff
            }),
            Err(WireError::Truncated { needed: 8, got: 4 })
        ]
    );
    assert_eq!(
        Segments::validate(&h("700000ff00040001")),
        Err(WireError::Truncated { needed: 8, got: 4 })
    );
    assert_eq!(collect(&[]), vec![]);
}

#[test]
fn reserved_bits_ignored_on_receipt() {
    // WRITER_RESETS with bits 27..16 set, READER_RESETS with bits 23..16 set.
    assert_eq!(
        collect(&h("4abc0007")),
        vec![Ok(Segment::WriterResets { id: 7 })]
    );
    assert_eq!(
        collect(&h("53ff0007")),
        vec![Ok(Segment::ReaderResets { seq: 3, id: 7 })]
    );
    assert_eq!(
        collect(&h("7f12000940000009"))[0],
        Ok(Segment::Connect {
            seq: 15,
            service: 9
        })
    );
    // Lengths 4093..4095 are accepted on receipt.
    let mut p = vec![0x0f, 0xff, 0, 1];
    p.extend(std::iter::repeat_n(1, 4096));
    let segs = collect(&p);
    assert!(matches!(segs[..], [Ok(Segment::Data { bytes, .. })] if bytes.len() == 4095));
}

#[test]
fn segment_writer_refusals() {
    let mut buf = [0u8; 8192];
    let big = [0u8; 4093];
    assert!(matches!(
        Segment::data(1, 0, false, &big).emit(&mut buf),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert_eq!(
        Segment::data(1, 0, false, &big[..4092]).emit(&mut buf),
        Ok(4096)
    );
    assert!(matches!(
        Segment::ReaderResets { seq: 16, id: 1 }.emit(&mut buf),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert!(matches!(
        Segment::Connect {
            seq: 16,
            service: 1
        }
        .emit(&mut buf),
        Err(WireError::FieldOutOfRange { .. })
    ));
    assert!(matches!(
        Segment::WriterResets { id: 0xFFFF }.emit(&mut buf),
        Err(WireError::FieldOutOfRange { .. })
    ));
    let bad = Segment::Data {
        id: 1,
        offset: 9,
        eof: false,
        explicit_offset: false,
        bytes: &[],
    };
    assert!(matches!(
        bad.emit(&mut buf),
        Err(WireError::FieldOutOfRange { .. })
    ));
    // An explicit offset of 0 is encodable when asked for.
    let zero = Segment::Data {
        id: 1,
        offset: 0,
        eof: true,
        explicit_offset: true,
        bytes: &[],
    };
    assert_eq!(zero.emit(&mut buf), Ok(8));
    assert_eq!(buf[..8], [0x30, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        Segment::data(1, 0, false, &[1, 2, 3, 4, 5]).emit(&mut buf[..11]),
        Err(WireError::BufferTooSmall {
            needed: 12,
            got: 11
        })
    );
    // Writer types 0/1 exactly when offset mod 2^32 is 0.
    assert_eq!(Segment::data(1, 0, false, &[]).segment_type(), 0);
    assert_eq!(Segment::data(1, 4, true, &[]).segment_type(), 3);
    // CONNECT pairing in the payload writer.
    let mut w = PayloadWriter::new(&mut buf);
    w.push(&Segment::Connect { seq: 1, service: 2 }).unwrap();
    assert_eq!(
        w.push(&Segment::ReaderResets { seq: 0, id: 0 }),
        Err(WireError::ConnectNotPaired(5))
    );
    assert_eq!(w.finish(), Err(WireError::ConnectAtEnd));
}

// ---- property tests ----

fn arb_bits() -> impl Strategy<Value = NegotiationBits> {
    (1u16..4, any::<u16>(), any::<bool>(), any::<bool>()).prop_map(
        |(pk, sym, no_encrypt, resume)| NegotiationBits {
            public_key: PublicKeySuites::from_mask(pk),
            symmetric: SymmetricSuites::from_mask(sym),
            no_encrypt,
            resume,
        },
    )
}

fn arb_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn arb_data_header() -> impl Strategy<Value = DataHeader> {
    (any::<bool>(), 0u32..(1 << 28), 0u8..16, 0u32..(1 << 28)).prop_map(
        |(finish, tsn28, acklen, asn28)| DataHeader {
            finish,
            tsn28,
            acklen,
            asn28,
        },
    )
}

/// An owned description of a segment, turned into a borrowed [`Segment`] by [`seg`].
#[derive(Clone, Debug)]
enum OwnedSeg {
    Data {
        id: u16,
        offset: u32,
        eof: bool,
        explicit: bool,
        bytes: Vec<u8>,
    },
    WriterResets(u16),
    ReaderResets(u8, u16),
    ReaderBarrier(u8, u16, u32),
}

fn seg(o: &OwnedSeg) -> Segment<'_> {
    match o {
        OwnedSeg::Data {
            id,
            offset,
            eof,
            explicit,
            bytes,
        } => Segment::Data {
            id: *id,
            offset: *offset,
            eof: *eof,
            explicit_offset: *explicit,
            bytes,
        },
        OwnedSeg::WriterResets(id) => Segment::WriterResets { id: *id },
        OwnedSeg::ReaderResets(seq, id) => Segment::ReaderResets { seq: *seq, id: *id },
        OwnedSeg::ReaderBarrier(seq, id, b) => Segment::ReaderBarrier {
            seq: *seq,
            id: *id,
            barrier: *b,
        },
    }
}

fn arb_id() -> impl Strategy<Value = u16> {
    0u16..0xFFFF
}

fn arb_owned_seg() -> impl Strategy<Value = OwnedSeg> {
    prop_oneof![
        (
            arb_id(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, offset, eof, explicit, bytes)| OwnedSeg::Data {
                id,
                offset: if explicit { offset } else { 0 },
                eof,
                explicit,
                bytes
            }),
        arb_id().prop_map(OwnedSeg::WriterResets),
        (0u8..16, arb_id()).prop_map(|(s, id)| OwnedSeg::ReaderResets(s, id)),
        (0u8..16, arb_id(), any::<u32>()).prop_map(|(s, id, b)| OwnedSeg::ReaderBarrier(s, id, b)),
    ]
}

/// A payload item: optional CONNECT (seq, service) before a segment; only
/// writer-to-reader segments get one.
fn arb_item() -> impl Strategy<Value = (Option<(u8, u16)>, OwnedSeg)> {
    (
        proptest::option::of((0u8..16, any::<u16>())),
        arb_owned_seg(),
    )
        .prop_map(|(c, s)| match s {
            OwnedSeg::ReaderResets(..) | OwnedSeg::ReaderBarrier(..) => (None, s),
            _ => (c, s),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hello_welcome_round_trip(bits in arb_bits(), b: [u8; 32], y: [u8; 32], a in arb_addr(), mac: [u8; 16]) {
        let n = Negotiation { bits, static_key: &b, ephemeral: &y, address: a };
        let mut buf = [0u8; WELCOME_LEN];
        prop_assert_eq!(n.emit_hello(&mut buf), Ok(78));
        prop_assert_eq!(Datagram::parse(&buf[..78]), Ok(Datagram::Hello(n)));
        let w = Welcome { body: n, mac: &mac, mac_input: &[] };
        prop_assert_eq!(Datagram::Welcome(w).emit(&mut buf), Ok(94));
        let Ok(Datagram::Welcome(got)) = Datagram::parse(&buf) else { panic!() };
        prop_assert_eq!(got.body, n);
        prop_assert_eq!(got.mac, &mac);
        prop_assert_eq!(got.mac_input, &buf[..78]);
    }

    #[test]
    fn fail_round_trip(bits in arb_bits(), pk: u16) {
        let bits = NegotiationBits { public_key: PublicKeySuites::from_mask(pk), ..bits };
        let mut buf = [0u8; 8];
        prop_assert_eq!(bits.emit_fail(&mut buf), Ok(8));
        prop_assert_eq!(Datagram::parse(&buf), Ok(Datagram::Fail { bits }));
    }

    #[test]
    fn nostate_round_trip(token in vec(any::<u8>(), 1..=16)) {
        let mut buf = [0u8; 24];
        let n = emit_nostate(&token, &mut buf).unwrap();
        prop_assert_eq!(Datagram::parse(&buf[..n]), Ok(Datagram::Nostate { token: &token }));
    }

    #[test]
    fn data_round_trip(hdr in arb_data_header(), sealed in vec(any::<u8>(), MAC_LEN..=(MTU - HEADER_LEN))) {
        let mut buf = vec![0u8; MTU];
        hdr.emit(&mut buf).unwrap();
        buf[8..8 + sealed.len()].copy_from_slice(&sealed);
        let bytes = &buf[..8 + sealed.len()];
        let Ok(Datagram::Data(d)) = Datagram::parse(bytes) else { panic!() };
        prop_assert_eq!(d.header, hdr);
        prop_assert_eq!(d.sealed(), &sealed[..]);
        prop_assert_eq!(&d.mac()[..], &sealed[sealed.len() - 16..]);
        let mut again = vec![0u8; MTU];
        let n = Datagram::Data(d).emit(&mut again).unwrap();
        prop_assert_eq!(&again[..n], bytes);
        // Header fields built from full sequence numbers survive extension.
        let tsn = u64::from(hdr.tsn28) + (5 << 28);
        let full = DataHeader::new(hdr.finish, tsn, hdr.acklen.into(), hdr.asn28.into());
        prop_assert_eq!(full.tsn28, hdr.tsn28);
        prop_assert_eq!(full.tsn(tsn - 1000), tsn);
    }

    #[test]
    fn forward_round_trip(a in arb_addr(), hello in vec(any::<u8>(), 8..100)) {
        let mut buf = [0u8; 128];
        let n = emit_forward_req(a, &hello, &mut buf).unwrap();
        prop_assert_eq!(Datagram::parse(&buf[..n]), Ok(Datagram::ForwardReq { address: a, hello: &hello }));
        let n = emit_forward_ack(&mut buf).unwrap();
        prop_assert_eq!(Datagram::parse(&buf[..n]), Ok(Datagram::ForwardAck));
        let n = emit_icmp_ack(&mut buf).unwrap();
        prop_assert_eq!(Datagram::parse(&buf[..n]), Ok(Datagram::IcmpAck));
    }

    #[test]
    fn parsed_datagrams_re_emit(bytes in vec(any::<u8>(), 0..200)) {
        // Whatever parses re-emits to something that parses to the same value.
        if let Ok(d) = Datagram::parse(&bytes) {
            let mut buf = [0u8; 256];
            if let Ok(n) = d.emit(&mut buf) {
                prop_assert_eq!(n, d.wire_len());
                let again = Datagram::parse(&buf[..n]).unwrap();
                match (d, again) {
                    // A short WELCOME's MAC/input differ after canonical re-emission.
                    (Datagram::Welcome(a), Datagram::Welcome(b)) => prop_assert_eq!(a.body, b.body),
                    (a, b) => prop_assert_eq!(a, b),
                }
            }
        }
    }

    #[test]
    fn datagram_parser_never_panics(bytes in vec(any::<u8>(), 0..1600)) {
        let _ = Datagram::parse(&bytes);
        let _ = MessageType::of(&bytes);
        let _ = tail_token(&bytes);
    }

    #[test]
    fn datagram_parser_never_panics_typed(t in 0u8..16, rest in vec(any::<u8>(), 0..120)) {
        // Valid-looking type nibbles reach the per-type rules more often than random bytes.
        let mut bytes = rest;
        if let Some(b) = bytes.first_mut() { *b = (t << 4) | (*b & 0xF); }
        if let Ok(d) = Datagram::parse(&bytes) {
            prop_assert_eq!(d.message_type().nibble(), t);
        }
    }

    #[test]
    fn segment_round_trip(o in arb_owned_seg()) {
        let s = seg(&o);
        let mut buf = [0u8; 320];
        let n = s.emit(&mut buf).unwrap();
        prop_assert_eq!(n, s.wire_len());
        prop_assert_eq!(n % 4, 0);
        prop_assert_eq!(Segment::parse(&buf[..n]), Ok((s, n)));
    }

    #[test]
    fn connect_round_trip(seq in 0u8..16, service: u16, id in arb_id()) {
        let c = Segment::Connect { seq, service };
        let w = Segment::WriterResets { id };
        let p = emit_all(&[c, w]);
        prop_assert_eq!(collect(&p), vec![Ok(c), Ok(w)]);
    }

    #[test]
    fn payload_round_trip(items in vec(arb_item(), 0..12)) {
        let mut want = Vec::new();
        for (c, s) in &items {
            if let Some((seq, service)) = c {
                want.push(Segment::Connect { seq: *seq, service: *service });
            }
            want.push(seg(s));
        }
        let p = emit_all(&want);
        prop_assert_eq!(p.len(), want.iter().map(Segment::wire_len).sum::<usize>());
        let got: Result<Vec<_>, _> = Segments::new(&p).collect();
        prop_assert_eq!(got, Ok(want.clone()));
        prop_assert_eq!(Segments::validate(&p), Ok(want.len()));
    }

    #[test]
    fn segment_parser_never_panics(bytes in vec(any::<u8>(), 0..600)) {
        let mut consumed = 0;
        let mut it = Segments::new(&bytes);
        for s in it.by_ref().flatten() {
            consumed += s.wire_len();
        }
        prop_assert_eq!(consumed + it.remaining().len(), bytes.len());
        prop_assert!(it.next().is_none());
    }

    #[test]
    fn segment_parser_never_panics_structured(words in vec((0u8..16, any::<u8>(), any::<u16>()), 0..40), cut in 0usize..4) {
        // Headers with small lengths so that DATA segments often fit.
        let mut bytes = Vec::new();
        for (t, mid, low) in words {
            bytes.extend_from_slice(&[(t << 4), mid & 0x1f, (low >> 8) as u8, low as u8]);
        }
        bytes.truncate(bytes.len().saturating_sub(cut));
        let _ = Segments::validate(&bytes);
        for r in Segments::new(&bytes) {
            // Canonical re-emission of a parsed non-CONNECT segment parses back to it,
            // unless it uses values a writer must not send (id 0xFFFF, L > 4092).
            if let Ok(s) = r && !matches!(s, Segment::Connect { .. }) {
                let mut buf = [0u8; 8192];
                if let Ok(n) = s.emit(&mut buf) {
                    prop_assert_eq!(Segment::parse(&buf[..n]), Ok((s, n)));
                }
            }
        }
    }
}
