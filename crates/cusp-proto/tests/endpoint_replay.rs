//! Endpoint-level replay of the reference transcripts: a server `Endpoint<HostTable>` built
//! from the recorded private key and entropy stream (byte i = (seed + i) mod 256, continuing
//! after the 40 key bytes, so its ephemeral values match) with `pad_hello` and
//! `anti_amplification` off, advertising the services the transcript names, is fed every
//! client->server datagram in order (from the recorded source address, at the recorded
//! time). The server's HELLO/WELCOME datagrams must equal the recorded ones byte for byte,
//! and the streams its application sees (service, bytes, EOF, reset) must be exactly the
//! ones the client sent to advertised services.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use cusp_proto::channel::ChannelConfig;
use cusp_proto::crypto::{Entropy, PrivateKey};
use cusp_proto::endpoint::{Endpoint, EndpointConfig};
use cusp_proto::host::{HostConfig, HostEvent, HostTable, StreamHandle};
use cusp_proto::stream::ReadResult;
use support::vector_file::{Section, StreamSeen, VectorFile, direction, expected_client_streams};

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().expect("address")
}

fn server_endpoint(peer: &Section, now: Instant, advertised: &[u16]) -> Endpoint<HostTable> {
    let key = PrivateKey::from_entropy(&peer.bytes::<40>("private_key_entropy"));
    let seed = peer.int("entropy_seed");
    let mut i = 40u64;
    let entropy: Box<dyn Entropy + Send> = Box::new(move |buf: &mut [u8]| {
        for b in buf {
            *b = ((seed + i) % 256) as u8;
            i += 1;
        }
    });
    let opts = peer.raw("options").expect("options");
    assert!(
        opts.contains("encrypt=1 publickey_mask=0x0002 symmetric_mask=0x0002"),
        "only the default suites are replayed: {opts}"
    );
    let config = EndpointConfig::default().channel(ChannelConfig {
        pad_hello: false,
        anti_amplification: false,
        ..ChannelConfig::default()
    });
    let mut ep = Endpoint::new(
        config,
        key,
        entropy,
        HostTable::new(HostConfig::default(), now),
    );
    for s in advertised {
        ep.hosts_mut().advertise(Some(*s)).expect("advertise");
    }
    ep
}

#[derive(Default)]
struct Seen {
    streams: Vec<(u16, StreamSeen)>,
    by_handle: BTreeMap<StreamHandle, usize>,
}

fn drain(ep: &mut Endpoint<HostTable>, seen: &mut Seen) {
    while let Some(ev) = ep.hosts_mut().poll_event() {
        let h = match ev {
            HostEvent::IncomingStream {
                service, handle, ..
            } => {
                let id = ep.hosts().in_stream_info(handle).expect("in-stream").id;
                seen.by_handle.insert(handle, seen.streams.len());
                seen.streams.push((
                    id,
                    StreamSeen {
                        service,
                        ..StreamSeen::default()
                    },
                ));
                handle
            }
            HostEvent::StreamReadable(h) => h,
            HostEvent::StreamReset { handle: h, .. } => {
                if let Some(&i) = seen.by_handle.get(&h) {
                    let s = &mut seen.streams[i].1;
                    s.reset = true;
                    s.bytes.clear();
                }
                continue;
            }
            _ => continue,
        };
        let Some(&i) = seen.by_handle.get(&h) else {
            continue;
        };
        let s = &mut seen.streams[i].1;
        loop {
            match ep.hosts_mut().read_to_vec(h, &mut s.bytes) {
                Ok(ReadResult::Data(_)) => {}
                Ok(ReadResult::Finished) => {
                    s.finished = true;
                    break;
                }
                Ok(ReadResult::Reset) => {
                    s.reset = true;
                    s.bytes.clear();
                    break;
                }
                _ => break,
            }
        }
    }
}

/// Replays `name`; returns (handshake datagrams compared, streams seen).
fn replay(name: &str, advertised: &[u16]) -> (usize, usize) {
    let file = VectorFile::load(name);
    let t0 = Instant::now();
    let mut ep = server_endpoint(&file.peers["server"], t0, advertised);
    let mut seen = Seen::default();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut compared = 0;
    let mut server_handshakes = Vec::new();
    for d in &file.datagrams {
        let now = t0 + Duration::from_secs_f64(d.get("time_offset_s").parse().expect("time"));
        if d.all("note")
            .any(|n| n.contains("server process restarted"))
        {
            ep = server_endpoint(&file.peers["server#2"], now, advertised);
        }
        let (from, _) = direction(d);
        if from != "client" {
            let ty = d.get("type");
            if ty == "HELLO" || ty == "WELCOME" {
                server_handshakes.push(d.hex("hex").expect("hex"));
            }
            continue;
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        let udp = d.raw("udp").expect("udp");
        let src = addr(udp.split_whitespace().next().expect("src"));
        let mut data = d.hex("hex").expect("hex");
        ep.handle(now, src, &mut data);
        drain(&mut ep, &mut seen);
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            sent.push(buf[..t.len].to_vec());
            drain(&mut ep, &mut seen);
        }
    }
    // Every recorded server HELLO/WELCOME was produced byte for byte, in order.
    let ours: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|d| matches!(d[0] >> 4, 2 | 3) || matches!(d[0], 0x20..=0x3f))
        .collect();
    for want in &server_handshakes {
        assert!(
            sent.iter().any(|d| d == want),
            "{name}: recorded server handshake datagram {} not produced; ours: {:?}",
            hex::encode(want),
            ours.iter().map(hex::encode).collect::<Vec<_>>()
        );
        compared += 1;
    }
    let mut want = expected_client_streams(&file);
    want.retain(|(_, s)| advertised.contains(&s.service));
    assert_eq!(
        seen.streams, want,
        "{name}: streams seen by the server application"
    );
    (compared, seen.streams.len())
}

#[test]
fn v1_endpoint_replay() {
    assert_eq!(replay("V1-cusp-default", &[23]), (1, 1));
}

#[test]
fn v4_endpoint_replay() {
    // 23 and 24 are advertised, 25 is not.
    assert_eq!(replay("V4-multi-stream", &[23, 24]), (1, 4));
}

#[test]
fn v8_endpoint_replay() {
    assert_eq!(replay("V8-unknown-service", &[23]), (1, 1));
}

#[test]
fn v5_endpoint_replay_restart() {
    let (hs, streams) = replay("V5-peer-restart-nostate", &[23]);
    assert_eq!(hs, 2);
    assert!(streams >= 1);
}

#[test]
fn v6_endpoint_replay_resume() {
    let (hs, streams) = replay("V6-resume-address-change", &[23]);
    // WELCOME of the first handshake, HELLO (resume = 1) of the second.
    assert_eq!(hs, 2);
    assert_eq!(streams, 1);
}
