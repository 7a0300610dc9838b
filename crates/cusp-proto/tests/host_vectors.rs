//! Replays the client's decrypted stream payloads of the reference transcripts
//! V1, V4 and V8 (`tests/data/vectors/`) into a server-side [`HostTable`] and
//! checks the incoming streams, their services and bytes against the
//! transcript's segment lines, and every payload the server would send
//! (READER_BARRIER, READER_RESETS, or nothing) against the server's recorded
//! DATA datagrams.
//!
//! The server application accepts every incoming stream and reads all
//! available bytes after each datagram, like the reference servers did
//! (V4's READER_BARRIER 27568 = 6000 read + 21568 proves the read).

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use cusp_proto::channel::EstablishedInfo;
use cusp_proto::crypto::PublicKey;
use cusp_proto::crypto::suite::PublicKeySuite;
use cusp_proto::endpoint::host_layer::HostLayer;
use cusp_proto::host::{HostConfig, HostEvent, HostTable, StreamHandle};
use cusp_proto::stream::ReadResult;
use cusp_proto::wire::segment::Segments;
use support::vector_file::{
    SegmentLine, StreamSeen, VectorFile, direction, expected_client_streams,
};

/// The reference budget (1468 - 8 - 16).
const BUDGET: usize = 1444;

/// What the transcript says the client sent, per stream id (no id is reused in V1/V4/V8).
fn expected(file: &VectorFile) -> BTreeMap<u16, StreamSeen> {
    let streams = expected_client_streams(file);
    let n = streams.len();
    let map: BTreeMap<u16, StreamSeen> = streams.into_iter().collect();
    assert_eq!(map.len(), n, "{}: a stream id is reused", file.name);
    map
}

/// Replays one transcript; returns the streams the server application saw
/// (by wire id) and the number of server payloads compared.
fn replay(name: &str, advertised: &[u16]) -> (BTreeMap<u16, StreamSeen>, usize) {
    let file = VectorFile::load(name);
    let client = &file.peers["client"];
    let client_key = PublicKey::new(
        PublicKeySuite::Curve25519Whirlpool,
        client.bytes::<32>("static_public"),
    );
    let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    let now = Instant::now();
    let mut server = HostTable::new(HostConfig::default(), now);
    for &s in advertised {
        server.advertise(Some(s)).unwrap();
    }
    server.on_established(
        now,
        &EstablishedInfo {
            peer: client_key,
            resume: false,
            local_addr: any,
            remote_addr: any,
            no_encrypt: false,
        },
    );
    let mut seen: BTreeMap<u16, StreamSeen> = BTreeMap::new();
    let mut ids: BTreeMap<StreamHandle, u16> = BTreeMap::new();
    let mut compared = 0;
    let mut received = 0u64;
    for d in &file.datagrams {
        if d.get("type") != "DATA" {
            continue;
        }
        let n = d.title.clone();
        let payload = d.hex("payload").expect("payload recorded");
        if direction(d).0 == "client" {
            assert!(
                server.recv(now, &client_key, &payload),
                "{name} {n}: refused"
            );
            received += payload.len() as u64;
        } else {
            // The server's channel builds this datagram: does our host agree?
            let announce = server.priority(&client_key);
            let mut buf = vec![0u8; BUDGET];
            let (len, id) = server.pull(now, &client_key, &mut buf);
            let mine: Vec<SegmentLine> = Segments::new(&buf[..len])
                .map(|s| SegmentLine::from_segment(&s.unwrap()))
                .collect();
            let theirs: Vec<SegmentLine> = d.all("segment").map(SegmentLine::parse).collect();
            assert_eq!(mine, theirs, "{name} {n}: server payload");
            assert_eq!(buf[..len], payload[..], "{name} {n}: server payload bytes");
            assert_eq!(announce.is_some(), len > 0, "{name} {n}: announcement");
            // Every server datagram of V1, V4, V8 was acknowledged.
            server.on_packet_outcome(now, &client_key, id, true);
            compared += 1;
        }
        // The server application.
        while let Some(e) = server.poll_event() {
            match e {
                HostEvent::IncomingStream {
                    peer,
                    service,
                    handle,
                } => {
                    assert_eq!(peer, client_key);
                    let id = server.in_stream_info(handle).unwrap().id;
                    ids.insert(handle, id);
                    let prev = seen.insert(
                        id,
                        StreamSeen {
                            service,
                            ..StreamSeen::default()
                        },
                    );
                    assert!(prev.is_none(), "{name}: id {id} reused");
                }
                HostEvent::StreamReadable(h) => {
                    let s = seen.get_mut(&ids[&h]).unwrap();
                    loop {
                        match server.read_to_vec(h, &mut s.bytes) {
                            Ok(ReadResult::Data(_)) => {}
                            Ok(ReadResult::Finished) => {
                                s.finished = true;
                                break;
                            }
                            _ => break,
                        }
                    }
                }
                HostEvent::StreamReset { handle: h, .. } => {
                    let s = seen.get_mut(&ids[&h]).unwrap();
                    s.reset = true;
                    s.bytes.clear();
                }
                HostEvent::HostAddressChanged(k) => assert_eq!(k, client_key),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
    let stats = server.host_info(&client_key).unwrap().stats;
    assert_eq!(stats.bytes_received, received);
    (seen, compared)
}

fn check(name: &str, advertised: &[u16]) -> usize {
    let (seen, compared) = replay(name, advertised);
    let mut want = expected(&VectorFile::load(name));
    want.retain(|_, s| advertised.contains(&s.service));
    assert_eq!(seen, want, "{name}: streams seen by the server application");
    compared
}

#[test]
fn v1_hello_world() {
    assert_eq!(check("V1-cusp-default", &[23]), 1);
}

#[test]
fn v4_multi_stream_barrier_and_reader_resets() {
    // "5 streams to 3 services (one not advertised)": 23 and 24 are, 25 is not.
    // Server payloads: ack-only, READER_BARRIER id 0 + READER_RESETS id 3, ack-only.
    assert_eq!(check("V4-multi-stream", &[23, 24]), 3);
}

#[test]
fn v8_unknown_service_with_eof_is_dropped_silently() {
    assert_eq!(check("V8-unknown-service", &[23]), 1);
}
