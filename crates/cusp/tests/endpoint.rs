//! Two (or more) endpoints on 127.0.0.1 driving real UDP sockets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use cusp::proto::HostConfig;
use cusp::{Endpoint, EndpointConfig, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use whirlpool::{Digest, Whirlpool};

const SERVICE: u16 = 23;
const LIMIT: usize = 64 << 20;

fn ep() -> Endpoint {
    Endpoint::bind(EndpointConfig::loopback()).unwrap()
}

/// An endpoint whose idle hosts keep their channel for `grace` after their last stream.
fn ep_with_grace(grace: Duration) -> Endpoint {
    let hosts = HostConfig {
        idle_grace: grace,
        ..HostConfig::default()
    };
    Endpoint::bind(EndpointConfig::loopback().hosts(hosts)).unwrap()
}

fn loopback(ep: &Endpoint) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, ep.local_addr().port())
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn hash(data: &[u8]) -> Vec<u8> {
    Whirlpool::digest(data).to_vec()
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_write_read_message() {
    within(10, async {
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (host, mut out) = a.contact(loopback(&b), SERVICE).await.unwrap();
        assert_eq!(host.key(), b.public_key());
        out.write_all(b"hello, cusp").await.unwrap();
        assert!(out.finish().await.unwrap());
        let (peer, service, mut stream) = incoming.accept().await.unwrap();
        assert_eq!(peer.key(), a.public_key());
        assert_eq!(service, SERVICE);
        assert_eq!(stream.peer(), a.public_key());
        let mut got = String::new();
        stream.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello, cusp");
        // A second read after the end is still the end.
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 0);
        // The core forgot the stream; the handle still knows its peer.
        assert_eq!(stream.peer(), a.public_key());
        // A stream reset by its writer knows it too.
        let mut out = host.connect(SERVICE).unwrap();
        out.write_all(b"x").await.unwrap();
        let (_, _, mut reset) = incoming.accept().await.unwrap();
        out.reset();
        while let Ok(n) = reset.read(&mut [0; 8]).await {
            assert!(n > 0, "reset, not the end");
        }
        assert_eq!(reset.peer(), a.public_key());
        assert!(a.host(&b.public_key()).is_some());
        assert_eq!(a.hosts().len(), 1);
        assert_eq!(*a.watch_address().borrow(), Some(loopback(&a)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams_verified_by_hash() {
    within(20, async {
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (host, first) = a.contact(loopback(&b), SERVICE).await.unwrap();
        first.reset();
        let server = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..200 {
                let (_, _, s) = incoming.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let data = s.read_to_end(LIMIT).await.unwrap();
                    let seed = u64::from_be_bytes(data[..8].try_into().unwrap());
                    assert_eq!(hash(&data[8..]), hash(&pattern(seed, data.len() - 8)));
                    seed
                }));
            }
            let mut seeds = Vec::new();
            for t in tasks {
                seeds.push(t.await.unwrap());
            }
            seeds.sort_unstable();
            seeds
        });
        let mut writers = Vec::new();
        for i in 0..200u64 {
            let mut out = host.connect(SERVICE).unwrap();
            writers.push(tokio::spawn(async move {
                let len = 1000 + (i as usize * 997) % 30_000;
                out.write_all(&i.to_be_bytes()).await.unwrap();
                out.write_all(&pattern(i, len)).await.unwrap();
                assert!(out.finish().await.unwrap());
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(server.await.unwrap(), (0..200).collect::<Vec<u64>>());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_verified_by_hash() {
    within(25, async {
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let data = pattern(7, 20 << 20);
        let expect = hash(&data);
        let reader = tokio::spawn(async move {
            let (_, _, mut s) = incoming.accept().await.unwrap();
            let mut h = Whirlpool::new();
            let mut buf = vec![0u8; 256 << 10];
            let mut total = 0;
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                total += n;
            }
            (total, h.finalize().to_vec())
        });
        let start = Instant::now();
        let (_, mut out) = a.contact(loopback(&b), SERVICE).await.unwrap();
        out.write_all(&data).await.unwrap();
        assert!(out.finish().await.unwrap());
        let (total, got) = reader.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(total, data.len());
        assert_eq!(got, expect);
        let s = a.stats();
        eprintln!(
            "20 MiB in {secs:.2} s = {:.1} MB/s; {} datagrams in {} sendmsg (max {} per call)",
            data.len() as f64 / secs / 1e6,
            s.udp.datagrams_sent,
            s.udp.send_syscalls,
            s.udp.max_segments_per_send
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_stream_overtakes_bulk_transfer() {
    within(25, async {
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (host, mut bulk) = a.contact(loopback(&b), SERVICE).await.unwrap();
        let size = 16 << 20;
        let bulk_writer = tokio::spawn(async move {
            bulk.write_all(&[0u8; 1]).await.unwrap();
            bulk.write_all(&pattern(1, size)).await.unwrap();
            bulk.finish().await.unwrap()
        });
        let (_, _, bulk_in) = incoming.accept().await.unwrap();
        let bulk_reader = tokio::spawn(async move {
            let data = bulk_in.read_to_end(LIMIT).await.unwrap();
            (Instant::now(), data.len())
        });
        // Let the bulk transfer get going, then send something urgent.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut urgent = host.connect(SERVICE).unwrap();
        urgent.set_priority(100.0).unwrap();
        urgent.write_all(&[1u8; 100]).await.unwrap();
        let urgent_finish = tokio::spawn(urgent.finish());
        let (_, _, urgent_in) = incoming.accept().await.unwrap();
        let got = urgent_in.read_to_end(LIMIT).await.unwrap();
        let urgent_at = Instant::now();
        assert_eq!(got, vec![1u8; 100]);
        assert!(urgent_finish.await.unwrap().unwrap());
        assert!(bulk_writer.await.unwrap());
        let (bulk_at, len) = bulk_reader.await.unwrap();
        assert_eq!(len, size + 1);
        let lead = bulk_at.duration_since(urgent_at);
        eprintln!("urgent stream arrived {lead:?} before the bulk transfer finished");
        assert!(lead > Duration::from_millis(20), "lead {lead:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_and_dead_address() {
    within(10, async {
        // A peer that disappears mid-stream: finish must not hang past its limit.
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (_, mut out) = a.contact(loopback(&b), SERVICE).await.unwrap();
        out.write_all(b"first").await.unwrap();
        let (_, _, _stream) = incoming.accept().await.unwrap();
        b.abort().await;
        out.write_all(&[0u8; 100_000]).await.unwrap();
        let start = Instant::now();
        let r = out.finish_within(Duration::from_millis(500)).await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));

        // A contact to an address where nobody answers fails within the handshake schedule
        // (20 ms first gap, 3 retransmissions: 20+40+80+160 ms plus jitter).
        let quick =
            Endpoint::bind(EndpointConfig::loopback().handshake(Duration::from_millis(20), 3))
                .unwrap();
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dead) = silent.local_addr().unwrap() else {
            unreachable!()
        };
        let start = Instant::now();
        let r = quick.contact(dead, SERVICE).await;
        assert!(
            matches!(r, Err(Error::ContactFailed(a)) if a == dead),
            "{r:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // A zero-round-trip stream to it fails the same way on finish.
        let mut early = quick.open(dead, SERVICE).unwrap();
        early.write_all(b"lost").await.unwrap();
        assert!(matches!(early.finish().await, Err(Error::ContactFailed(_))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_file_and_port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    std::fs::write(&path, "not a key\n").unwrap();
    assert!(matches!(
        cusp::keys::load(&path),
        Err(Error::BadKeyFile { .. })
    ));
    assert!(matches!(
        cusp::keys::load(dir.path().join("missing")),
        Err(Error::BadKeyFile { .. })
    ));
    let key = cusp::keys::generate();
    cusp::keys::save(&key, &path).unwrap();
    let loaded = cusp::keys::load(&path).unwrap();
    let a = Endpoint::bind(EndpointConfig::loopback().private_key(loaded)).unwrap();
    assert_eq!(a.public_key(), cusp::keys::public_key(&key));

    let taken = a.local_addr();
    let r = Endpoint::bind(EndpointConfig::loopback().bind(taken));
    match r {
        Err(Error::AddrInUse(addr)) => assert_eq!(addr, taken),
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    assert!(matches!(
        a.advertise(Some(0)),
        Err(Error::ServiceReserved(0))
    ));
    let _svc = a.advertise(Some(5)).unwrap();
    assert!(matches!(a.advertise(Some(5)), Err(Error::ServiceInUse(5))));
    assert!(matches!(
        a.advertise(Some(0x4000)),
        Err(Error::ServiceReserved(0x4000))
    ));
    let dynamic = a.advertise(None).unwrap();
    assert_eq!(dynamic.service(), 0x4001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_trip() {
    within(10, async {
        let server = ep();
        let client = ep();
        let srv = server
            .serve(Some(7), |_host, body| async move {
                let mut r = b"echo: ".to_vec();
                r.extend_from_slice(&body);
                r
            })
            .unwrap();
        assert_eq!(srv.service(), 7);
        let reply = client
            .request(loopback(&server), 7, b"ping", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply, b"echo: ping");
        // Again through the known host, with a large body.
        let host = client.host(&server.public_key()).unwrap();
        let big = pattern(3, 300_000);
        let reply = host.request(7, &big, Duration::from_secs(5)).await.unwrap();
        assert_eq!(hash(&reply[6..]), hash(&big));
        // No server on that service: the request stream is reset, no reply comes.
        let r = client
            .request(loopback(&server), 8, b"x", Duration::from_millis(300))
            .await;
        assert!(matches!(r, Err(Error::Timeout | Error::Reset)), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_completes_and_resets() {
    within(15, async {
        let a = ep();
        let b = ep();
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (_, mut out) = a.contact(loopback(&b), SERVICE).await.unwrap();
        out.write_all(b"data").await.unwrap();
        let (_, _, mut stream) = incoming.accept().await.unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        // Dropping the writer resets the stream: the reader sees a reset.
        drop(out);
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(matches!(Error::from_io(err), Error::Reset));
        // A live stream in both directions: close resets them and waits for the channel's
        // fast close; it is graceful and quick.
        let (_, mut live) = a.contact(loopback(&b), SERVICE).await.unwrap();
        live.write_all(&[5u8; 10_000]).await.unwrap();
        let (_, _, _unread) = incoming.accept().await.unwrap();
        assert!(!a.is_idle());
        let start = Instant::now();
        let (ga, gb) = tokio::join!(a.close(), b.close());
        eprintln!("close took {:?} (graceful {ga}, {gb})", start.elapsed());
        assert!(ga && gb);
        assert!(a.is_idle());
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(matches!(live.write(b"more").await, Err(Error::Closed)));
        assert!(matches!(a.advertise(Some(9)), Err(Error::Closed)));
        assert!(matches!(
            a.contact(loopback(&b), SERVICE).await,
            Err(Error::Closed)
        ));
        assert!(incoming.accept().await.is_none());
    })
    .await;
}

/// The writer's side goes idle first (its stream was acknowledged) and says so with the
/// finish flag while the reader still holds unread data; once the reader reads to the end
/// its side is idle too and must send its own finish flag at once, which closes the
/// channel on both sides (no datagram and no timer would wake the driver otherwise, and
/// the channel would stay up until the 240 s idle linger or a close timeout). No idle
/// grace period here: that is the reference's behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_to_the_end_closes_the_idle_channel() {
    within(10, async {
        let a = ep_with_grace(Duration::ZERO);
        let b = ep_with_grace(Duration::ZERO);
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let (_, mut out) = a.contact(loopback(&b), SERVICE).await.unwrap();
        out.write_all(b"hello").await.unwrap();
        assert!(out.finish().await.unwrap());
        let (_, _, stream) = incoming.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!a.is_idle() && !b.is_idle(), "b still has an unread stream");
        assert_eq!(stream.read_to_end(LIMIT).await.unwrap(), b"hello");
        let start = Instant::now();
        while !(a.is_idle() && b.is_idle()) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "the channel did not close after the last stream was read"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let start = Instant::now();
        let (ga, gb) = tokio::join!(a.close(), b.close());
        assert!(ga && gb);
        assert!(start.elapsed() < Duration::from_secs(1));
    })
    .await;
}

/// With an idle grace period, streams one after the other (each finished and read
/// before the next is opened) share one channel instead of negotiating one each; the
/// channel closes once the grace period after the last one is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_streams_reuse_the_channel_within_the_idle_grace() {
    within(20, async {
        let grace = Duration::from_millis(800);
        let a = ep_with_grace(grace);
        let b = ep_with_grace(grace);
        let mut incoming = b.advertise(Some(SERVICE)).unwrap();
        let host = a.contact(loopback(&b), SERVICE).await.unwrap().0;
        for i in 0..20u8 {
            let mut out = host.connect(SERVICE).unwrap();
            out.write_all(&[i]).await.unwrap();
            assert!(out.finish().await.unwrap());
            let (_, _, stream) = incoming.accept().await.unwrap();
            assert_eq!(stream.read_to_end(LIMIT).await.unwrap(), [i]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            a.stats().proto.established,
            1,
            "one channel for all streams"
        );
        assert!(
            !a.is_idle() && !b.is_idle(),
            "the channel outlives the last stream"
        );
        let idle_from = Instant::now();
        while !(a.is_idle() && b.is_idle()) {
            assert!(idle_from.elapsed() < grace + Duration::from_secs(3));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            idle_from.elapsed() >= grace / 2,
            "closed before the grace period was over"
        );
        let (ga, gb) = tokio::join!(a.close(), b.close());
        assert!(ga && gb);
    })
    .await;
}
