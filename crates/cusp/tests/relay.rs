//! The impairment relay on loopback: an echo server behind it, clients in front.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cusp::relay::{Impairment, Relay, RelayConfig, RelayHandle};
use cusp::udp::{RecvBuf, UdpIo};

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo server: every datagram goes back to where it came from.
fn echo_server() -> SocketAddr {
    let socket = UdpIo::bind(localhost()).unwrap();
    let addr = socket.local_addr();
    tokio::spawn(async move {
        let mut buf = RecvBuf::new();
        loop {
            let Ok(datagrams) = socket.recv_batch(&mut buf).await else {
                continue;
            };
            for (source, datagram) in datagrams {
                let _ = socket.send_to(source, datagram).await;
            }
        }
    });
    addr
}

fn relay(upstream: Impairment, downstream: Impairment) -> RelayHandle {
    let config = RelayConfig::new(localhost(), echo_server())
        .upstream(upstream)
        .downstream(downstream)
        .seed(42);
    Relay::spawn(config).unwrap()
}

/// Sends datagrams `0..count` (sequence number first, `size` bytes) through the relay,
/// `per_ms` of them per millisecond, and returns the send times.
async fn send_sequence(
    client: &UdpIo,
    relay: SocketAddr,
    count: u32,
    size: usize,
    per_ms: u32,
) -> Vec<Instant> {
    let mut sent = Vec::with_capacity(count as usize);
    let mut datagram = vec![0u8; size];
    for seq in 0..count {
        datagram[..4].copy_from_slice(&seq.to_be_bytes());
        sent.push(Instant::now());
        client.send_to(relay, &datagram).await.unwrap();
        if (seq + 1) % per_ms == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sent
}

/// Replies as (sequence number, arrival time), until none came for `quiet`.
async fn collect_replies(client: &UdpIo, quiet: Duration) -> Vec<(u32, Instant)> {
    let mut buf = RecvBuf::new();
    let mut replies = Vec::new();
    while let Ok(Ok(datagrams)) = tokio::time::timeout(quiet, client.recv_batch(&mut buf)).await {
        let now = Instant::now();
        for (_, datagram) in datagrams {
            replies.push((u32::from_be_bytes(datagram[..4].try_into().unwrap()), now));
        }
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_loss_within_statistical_bounds() {
    let relay = relay(Impairment::default().loss(0.10), Impairment::default());
    let client = UdpIo::bind(localhost()).unwrap();
    let (_, replies) = tokio::join!(
        send_sequence(&client, relay.local_addr(), 10_000, 64, 50),
        collect_replies(&client, Duration::from_millis(500)),
    );
    let stats = relay.shutdown().await;
    let delivered = replies.len() as u64;
    // Binomial(10 000, 0.9): sd 30, so ±150 is five standard deviations.
    assert!((8850..=9150).contains(&delivered), "{delivered} delivered");
    assert_eq!(stats.upstream.received, 10_000);
    assert_eq!(stats.upstream.dropped + delivered, 10_000, "{stats:?}");
    assert_eq!(stats.upstream.forwarded, delivered);
    assert_eq!(stats.downstream.forwarded, delivered);
    assert_eq!(stats.upstream.queue_dropped + stats.upstream.send_errors, 0);
    // Without reordering impairments, survivors arrive in order.
    assert!(replies.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test]
async fn delay_is_respected_both_ways() {
    let up = Duration::from_millis(20);
    let down = Duration::from_millis(10);
    let relay = relay(
        Impairment::default().delay(up),
        Impairment::default().delay(down),
    );
    let client = UdpIo::bind(localhost()).unwrap();
    let (sent, replies) = tokio::join!(
        send_sequence(&client, relay.local_addr(), 50, 100, 1),
        collect_replies(&client, Duration::from_millis(300)),
    );
    assert_eq!(replies.len(), 50);
    for (seq, arrival) in replies {
        let rtt = arrival - sent[seq as usize];
        assert!(rtt >= up + down, "datagram {seq} back after {rtt:?}");
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplication_delivers_extra_copies() {
    let relay = relay(Impairment::default().duplicate(0.10), Impairment::default());
    let client = UdpIo::bind(localhost()).unwrap();
    let (_, replies) = tokio::join!(
        send_sequence(&client, relay.local_addr(), 2000, 64, 20),
        collect_replies(&client, Duration::from_millis(300)),
    );
    let stats = relay.shutdown().await;
    let duplicated = stats.upstream.duplicated;
    // Binomial(2000, 0.1): mean 200, sd 13.4.
    assert!((130..=270).contains(&duplicated), "{duplicated}");
    assert_eq!(replies.len() as u64, 2000 + duplicated);
    let mut seqs: Vec<u32> = replies.iter().map(|r| r.0).collect();
    seqs.dedup();
    assert_eq!(
        seqs,
        (0..2000).collect::<Vec<_>>(),
        "copies follow their original"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_lets_later_datagrams_overtake() {
    let impairment = Impairment::default()
        .reorder(0.10)
        .reorder_delay(Duration::from_millis(20));
    let relay = relay(impairment, Impairment::default());
    let client = UdpIo::bind(localhost()).unwrap();
    let (_, replies) = tokio::join!(
        send_sequence(&client, relay.local_addr(), 1000, 64, 5),
        collect_replies(&client, Duration::from_millis(300)),
    );
    let stats = relay.shutdown().await;
    assert_eq!(replies.len(), 1000);
    let reordered = stats.upstream.reordered;
    assert!((55..=145).contains(&reordered), "{reordered}");
    // Late: a later datagram came back first. Only held-back datagrams are late, and all of
    // them are unless they were among the very last sent.
    let mut highest = None;
    let mut late = 0;
    for &(seq, _) in &replies {
        if highest.is_some_and(|h| seq < h) {
            late += 1;
        }
        highest = highest.max(Some(seq));
    }
    assert!(
        late <= reordered && late + 3 >= reordered,
        "{late} late, {reordered} held back"
    );
}

#[tokio::test]
async fn replies_reach_each_client() {
    let relay = relay(Impairment::default(), Impairment::default());
    let clients: Vec<Arc<UdpIo>> = (0..3)
        .map(|_| Arc::new(UdpIo::bind(localhost()).unwrap()))
        .collect();
    let mut tasks = Vec::new();
    for (id, client) in clients.iter().enumerate() {
        let client = client.clone();
        let to = relay.local_addr();
        tasks.push(tokio::spawn(async move {
            for i in 0..100u8 {
                client.send_to(to, &[id as u8, i]).await.unwrap();
            }
            let mut buf = RecvBuf::new();
            let mut got = Vec::new();
            while got.len() < 100 {
                let datagrams =
                    tokio::time::timeout(Duration::from_secs(5), client.recv_batch(&mut buf))
                        .await
                        .expect("replies arrive")
                        .unwrap();
                for (source, datagram) in datagrams {
                    assert_eq!(source, to, "replies come from the relay");
                    assert_eq!(datagram[0], id as u8, "only this client's replies");
                    got.push(datagram[1]);
                }
            }
            assert_eq!(got, (0..100).collect::<Vec<u8>>());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = relay.shutdown().await;
    assert_eq!(stats.clients, 3);
    assert_eq!(stats.downstream.forwarded, 300);
}

#[tokio::test]
async fn client_limit_and_shutdown() {
    let mut config = RelayConfig::new(localhost(), echo_server());
    config.max_clients = 1;
    let relay = Relay::spawn(config).unwrap();
    let to = relay.local_addr();
    let first = UdpIo::bind(localhost()).unwrap();
    let second = UdpIo::bind(localhost()).unwrap();
    first.send_to(to, b"one!").await.unwrap();
    let replies = collect_replies(&first, Duration::from_millis(200)).await;
    assert_eq!(replies.len(), 1);
    second.send_to(to, b"two!").await.unwrap();
    assert!(
        collect_replies(&second, Duration::from_millis(200))
            .await
            .is_empty()
    );
    let stats = relay.shutdown().await;
    assert_eq!((stats.clients, stats.clients_rejected), (1, 1));
    // Nothing answers once the relay is stopped.
    first.send_to(to, b"any?").await.unwrap();
    assert!(
        collect_replies(&first, Duration::from_millis(100))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn invalid_configuration_is_refused() {
    let config =
        RelayConfig::new(localhost(), localhost()).upstream(Impairment::default().loss(2.0));
    assert!(Relay::spawn(config).is_err());
}
