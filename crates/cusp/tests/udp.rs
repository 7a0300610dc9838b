//! `UdpIo` on 127.0.0.1: batched transfer with GSO/GRO, ephemeral bind, error cases.

use std::sync::Arc;
use std::time::Duration;

use cusp::udp::{RecvBuf, UdpError, UdpIo};
use tokio::sync::watch;

const LOCALHOST: &str = "127.0.0.1:0";

fn bind() -> UdpIo {
    UdpIo::bind(LOCALHOST.parse().unwrap()).expect("bind 127.0.0.1")
}

/// FNV-1a, enough to catch a corrupted or misplaced byte.
fn fnv(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Datagram `seq` of `len` bytes: sequence number, a seq-dependent pattern, checksum.
fn fill(seq: u32, out: &mut [u8]) {
    let len = out.len();
    out[..4].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in out[4..len - 4].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    let sum = fnv(&out[..len - 4]);
    out[len - 4..].copy_from_slice(&sum.to_be_bytes());
}

fn check(datagram: &[u8]) -> u32 {
    let len = datagram.len();
    let sum = u32::from_be_bytes(datagram[len - 4..].try_into().unwrap());
    assert_eq!(fnv(&datagram[..len - 4]), sum, "checksum");
    u32::from_be_bytes(datagram[..4].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_datagrams_arrive_intact_and_in_order() {
    const COUNT: u32 = 10_000;
    const SIZE: usize = 1200;
    /// Datagrams in flight at most, well under the receive buffer, so none is dropped.
    const WINDOW: u32 = 1000;

    let sender = bind();
    let receiver = Arc::new(bind());
    let to = receiver.local_addr();
    eprintln!(
        "gso {} gro {} sndbuf {} rcvbuf {} segments/send at {SIZE} B: {}",
        sender.max_gso_segments(),
        receiver.gro_segments(),
        sender.send_buffer_size(),
        receiver.recv_buffer_size(),
        sender.segments_per_send(SIZE)
    );
    let (progress_tx, mut progress) = watch::channel(0u32);

    let rx = receiver.clone();
    let from = sender.local_addr();
    let reader = tokio::spawn(async move {
        let mut buf = RecvBuf::new();
        let mut next = 0u32;
        while next < COUNT {
            for (source, datagram) in rx.recv_batch(&mut buf).await.unwrap() {
                assert_eq!(datagram.len(), SIZE);
                assert_eq!(check(datagram), next, "sequence order");
                assert_eq!(source, from);
                next += 1;
            }
            progress_tx.send_replace(next);
        }
    });

    let mut batch = vec![0u8; 100 * SIZE];
    let mut seq = 0u32;
    let mut round = 0u32;
    while seq < COUNT {
        round += 1;
        while seq - *progress.borrow() >= WINDOW {
            progress.changed().await.unwrap();
        }
        // Batches of 1..=100 datagrams: single ones, GSO-sized ones, and ones longer than
        // one GSO send (54 datagrams of 1200 bytes) that must be split.
        let n = (1 + round * 37 % 100).min(COUNT - seq);
        let contents = &mut batch[..n as usize * SIZE];
        for (i, datagram) in contents.chunks_mut(SIZE).enumerate() {
            fill(seq + i as u32, datagram);
        }
        sender.send_batch(to, SIZE, contents).await.unwrap();
        seq += n;
    }
    tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("all datagrams arrive")
        .unwrap();

    let sent = sender.stats();
    let received = receiver.stats();
    eprintln!("sender {sent:?}\nreceiver {received:?}");
    assert_eq!(sent.datagrams_sent, u64::from(COUNT));
    assert_eq!(received.datagrams_received, u64::from(COUNT));
    if sender.max_gso_segments() > 1 {
        assert!(sent.max_segments_per_send > 1, "GSO never coalesced");
        assert!(sent.send_syscalls < u64::from(COUNT) / 10);
        if receiver.gro_segments() > 1 {
            // On loopback a GSO send reaches a GRO socket still coalesced.
            assert!(
                received.max_segments_per_recv_buffer > 1,
                "GRO never coalesced"
            );
        }
    }
}

#[tokio::test]
async fn last_datagram_of_a_batch_may_be_shorter() {
    let sender = bind();
    let receiver = bind();
    let contents: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    sender
        .send_batch(receiver.local_addr(), 1000, &contents)
        .await
        .unwrap();
    let mut buf = RecvBuf::new();
    let mut got = Vec::new();
    while got.len() < 3 {
        for (source, datagram) in receiver.recv_batch(&mut buf).await.unwrap() {
            assert_eq!(source, sender.local_addr());
            got.push(datagram.to_vec());
        }
    }
    assert_eq!(
        got.iter().map(Vec::len).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(got.concat(), contents);
}

#[tokio::test]
async fn single_and_empty_datagrams() {
    let sender = bind();
    let receiver = bind();
    sender
        .send_to(receiver.local_addr(), b"hello")
        .await
        .unwrap();
    sender.send_to(receiver.local_addr(), b"").await.unwrap();
    sender
        .send_batch(receiver.local_addr(), 100, b"")
        .await
        .unwrap();
    let mut buf = RecvBuf::with_slots(1);
    let mut got = Vec::new();
    while got.len() < 2 {
        for (_, datagram) in receiver.recv_batch(&mut buf).await.unwrap() {
            got.push(datagram.to_vec());
        }
    }
    assert_eq!(got, [b"hello".to_vec(), Vec::new()]);
    assert!(matches!(
        receiver.try_recv_batch(&mut buf),
        Err(UdpError::WouldBlock)
    ));
}

#[tokio::test]
async fn ephemeral_bind_gets_a_port_and_buffers() {
    let io = bind();
    let addr = io.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert!(
        io.send_buffer_size() >= 1 << 20,
        "{}",
        io.send_buffer_size()
    );
    assert!(
        io.recv_buffer_size() >= 1 << 20,
        "{}",
        io.recv_buffer_size()
    );
    assert!(io.max_gso_segments() >= 1 && io.gro_segments() >= 1);
    // 1468-byte datagrams (the protocol's largest) fit 44 to a GSO send.
    assert!(io.segments_per_send(1468) <= 44);
}

#[tokio::test]
async fn sending_to_a_closed_port_does_not_panic() {
    let closed = bind().local_addr(); // bound then dropped: nothing listens there now
    let io = bind();
    let peer = bind();
    for _ in 0..3 {
        // ICMP port unreachable may or may not surface; either way nothing panics.
        let _ = io.send_to(closed, b"anyone?").await;
        let _ = io.send_batch(closed, 100, &[7; 1000]).await;
    }
    // The socket still works afterwards.
    io.send_to(peer.local_addr(), b"still here").await.unwrap();
    let mut buf = RecvBuf::new();
    let received: Vec<Vec<u8>> = peer
        .recv_batch(&mut buf)
        .await
        .unwrap()
        .map(|(_, d)| d.to_vec())
        .collect();
    assert_eq!(received, [b"still here".to_vec()]);
}

#[tokio::test]
async fn oversized_datagram_is_message_too_large() {
    let io = bind();
    let peer = bind();
    let big = vec![0u8; 70_000];
    match io.send_to(peer.local_addr(), &big).await {
        Err(UdpError::MessageTooLarge { size }) => assert_eq!(size, 70_000),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    match io.send_batch(peer.local_addr(), 70_000, &big).await {
        Err(UdpError::MessageTooLarge { size }) => assert_eq!(size, 70_000),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(
        io.send_batch(peer.local_addr(), 0, &big).await,
        Err(UdpError::InvalidBatch(_))
    ));
    // GSO still on: EMSGSIZE is not taken for a GSO failure.
    io.send_batch(peer.local_addr(), 1000, &[1; 3000])
        .await
        .unwrap();
    assert!(io.max_gso_segments() >= 1);
}
