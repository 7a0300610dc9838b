//! quinn 0.11 (pinned in Cargo.toml) with its rustls/ring crypto: the reference column.
//!
//! Each end is one OS thread with a current-thread tokio runtime and its own
//! `Endpoint` on 127.0.0.1. Transport config: quinn defaults except the stream
//! limits (16 384 concurrent bidirectional streams so 512 outstanding requests and
//! 10 000 idle streams fit; 1 024 concurrent unidirectional streams for churn).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig, VarInt};
use tokio::sync::oneshot;

use super::{TlsMaterial, block_on, nanos_since, two_threads};
use crate::measure::{MemSnapshot, heap_counting, thread_cpu};
use crate::{
    BenchError, BulkResult, ChurnResult, Context, MemoryResult, ReqRespResult, Result, System,
    UrgentResult,
};

/// The quinn system.
pub struct Quinn;

const MSG: [u8; 100] = [0x5A; 100];
const URGENT_LEN: usize = 1024;

fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(16_384));
    t.max_concurrent_uni_streams(VarInt::from_u32(1_024));
    Arc::new(t)
}

fn server_endpoint(sock: UdpSocket) -> Result<Endpoint> {
    let tls = TlsMaterial::get()?;
    let mut sc = ServerConfig::with_single_cert(vec![tls.cert.clone()], tls.key_der())
        .ctx("quinn server config")?;
    sc.transport_config(transport());
    Ok(Endpoint::new(
        EndpointConfig::default(),
        Some(sc),
        sock,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A client endpoint with a fresh client config (so no TLS session cache is shared
/// between endpoints).
fn client_endpoint() -> Result<Endpoint> {
    let tls = TlsMaterial::get()?;
    let mut cc = ClientConfig::with_root_certificates(tls.roots()?).ctx("quinn client config")?;
    cc.transport_config(transport());
    let mut ep = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    ep.set_default_client_config(cc);
    Ok(ep)
}

async fn accept(ep: &Endpoint) -> Result<Connection> {
    let incoming = ep
        .accept()
        .await
        .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
    incoming.await.ctx("quinn accept")
}

async fn connect(ep: &Endpoint, addr: SocketAddr) -> Result<Connection> {
    ep.connect(addr, "localhost")
        .ctx("quinn connect")?
        .await
        .ctx("quinn handshake")
}

fn bind() -> Result<(UdpSocket, SocketAddr)> {
    let sock = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = sock.local_addr()?;
    Ok((sock, addr))
}

impl System for Quinn {
    fn name(&self) -> &'static str {
        "quinn"
    }

    fn bulk(&self, bytes: u64) -> Result<BulkResult> {
        let (sock, addr) = bind()?;
        let ((received, end, rcpu), (start, scpu)) = two_threads(
            move || {
                let c0 = thread_cpu();
                let (n, end) = block_on("quinn bulk receiver", async move {
                    let ep = server_endpoint(sock)?;
                    let conn = accept(&ep).await?;
                    let mut recv = conn.accept_uni().await.ctx("accept_uni")?;
                    let mut n = 0u64;
                    while let Some(c) = recv.read_chunk(usize::MAX, true).await.ctx("read")? {
                        n += c.bytes.len() as u64;
                    }
                    let end = Instant::now();
                    conn.closed().await;
                    Ok((n, end))
                })?;
                Ok((n, end, thread_cpu() - c0))
            },
            move || {
                let c0 = thread_cpu();
                let start = block_on("quinn bulk sender", async move {
                    let ep = client_endpoint()?;
                    let conn = connect(&ep, addr).await?;
                    let mut send = conn.open_uni().await.ctx("open_uni")?;
                    let chunk = Bytes::from(vec![0xAB; 1 << 20]);
                    let start = Instant::now();
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        send.write_chunk(chunk.slice(..n)).await.ctx("write")?;
                        left -= n as u64;
                    }
                    send.finish().ctx("finish")?;
                    send.stopped().await.ctx("stopped")?;
                    conn.close(0u32.into(), b"done");
                    ep.wait_idle().await;
                    Ok(start)
                })?;
                Ok((start, thread_cpu() - c0))
            },
        )?;
        Ok(BulkResult {
            bytes: received,
            elapsed: end.saturating_duration_since(start),
            sender_cpu: scpu,
            receiver_cpu: rcpu,
        })
    }

    fn req_resp(&self, requests: usize, outstanding: usize) -> Result<ReqRespResult> {
        let (sock, addr) = bind()?;
        let ((), res) = two_threads(
            move || {
                block_on("quinn req/resp server", async move {
                    let ep = server_endpoint(sock)?;
                    let conn = accept(&ep).await?;
                    // Ends when the client closes the connection.
                    while let Ok((mut s, mut r)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            if r.read_to_end(1024).await.is_ok() && s.write_all(&MSG).await.is_ok()
                            {
                                let _ = s.finish();
                            }
                        });
                    }
                    Ok(())
                })
            },
            move || {
                block_on("quinn req/resp client", async move {
                    let ep = client_endpoint()?;
                    let conn = connect(&ep, addr).await?;
                    let remaining = Arc::new(AtomicUsize::new(requests));
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..outstanding {
                        let conn = conn.clone();
                        let rem = remaining.clone();
                        tasks.spawn(async move {
                            let mut lats = Vec::new();
                            while rem
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                                    r.checked_sub(1)
                                })
                                .is_ok()
                            {
                                let t = Instant::now();
                                let (mut s, mut r) = conn.open_bi().await.ctx("open_bi")?;
                                s.write_all(&MSG).await.ctx("write")?;
                                s.finish().ctx("finish")?;
                                let resp = r.read_to_end(1024).await.ctx("read")?;
                                if resp.len() != MSG.len() {
                                    return Err(BenchError::Other("short response".into()));
                                }
                                lats.push(t.elapsed());
                            }
                            Ok::<_, BenchError>(lats)
                        });
                    }
                    let mut latencies = Vec::with_capacity(requests);
                    while let Some(r) = tasks.join_next().await {
                        latencies.extend(r.ctx("request task")??);
                    }
                    let elapsed = start.elapsed();
                    conn.close(0u32.into(), b"done");
                    ep.wait_idle().await;
                    Ok(ReqRespResult { elapsed, latencies })
                })
            },
        )?;
        Ok(res)
    }

    fn churn(&self, streams: usize) -> Result<ChurnResult> {
        let (sock, addr) = bind()?;
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (end, start) = two_threads(
            move || {
                block_on("quinn churn receiver", async move {
                    let ep = server_endpoint(sock)?;
                    let conn = accept(&ep).await?;
                    for _ in 0..streams {
                        let mut r = conn.accept_uni().await.ctx("accept_uni")?;
                        let d = r.read_to_end(1024).await.ctx("read")?;
                        if d.len() != MSG.len() {
                            return Err(BenchError::Other("short stream".into()));
                        }
                    }
                    let end = Instant::now();
                    let _ = done_tx.send(());
                    conn.closed().await;
                    Ok(end)
                })
            },
            move || {
                block_on("quinn churn sender", async move {
                    let ep = client_endpoint()?;
                    let conn = connect(&ep, addr).await?;
                    let start = Instant::now();
                    for _ in 0..streams {
                        let mut s = conn.open_uni().await.ctx("open_uni")?;
                        s.write_all(&MSG).await.ctx("write")?;
                        s.finish().ctx("finish")?;
                    }
                    done_rx.await.ctx("receiver gone")?;
                    conn.close(0u32.into(), b"done");
                    ep.wait_idle().await;
                    Ok(start)
                })
            },
        )?;
        Ok(ChurnResult {
            streams,
            elapsed: end.saturating_duration_since(start),
        })
    }

    fn urgent(&self, duration: Duration, interval: Duration) -> Result<UrgentResult> {
        let (sock, addr) = bind()?;
        let count = (duration.as_nanos() / interval.as_nanos().max(1)).max(1) as usize;
        let base = Instant::now();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let ((delays, bulk_bytes), elapsed) = two_threads(
            move || {
                block_on("quinn urgent receiver", async move {
                    let ep = server_endpoint(sock)?;
                    let conn = accept(&ep).await?;
                    // Streams are accepted in id order: bulk (opened first), then urgent.
                    let mut bulk = conn.accept_uni().await.ctx("accept bulk")?;
                    let mut urgent = conn.accept_uni().await.ctx("accept urgent")?;
                    let bulk_bytes = Arc::new(AtomicU64::new(0));
                    let bb = bulk_bytes.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(c)) = bulk.read_chunk(usize::MAX, true).await {
                            bb.fetch_add(c.bytes.len() as u64, Ordering::Relaxed);
                        }
                    });
                    let mut delays = Vec::with_capacity(count);
                    let mut buf = [0u8; URGENT_LEN];
                    for _ in 0..count {
                        urgent.read_exact(&mut buf).await.ctx("read urgent")?;
                        let sent = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
                        delays.push(Duration::from_nanos(nanos_since(base).saturating_sub(sent)));
                    }
                    let _ = done_tx.send(());
                    conn.closed().await;
                    Ok((delays, bulk_bytes.load(Ordering::Relaxed)))
                })
            },
            move || {
                block_on("quinn urgent sender", async move {
                    let ep = client_endpoint()?;
                    let conn = connect(&ep, addr).await?;
                    let start = Instant::now();
                    let mut bulk = conn.open_uni().await.ctx("open bulk")?;
                    bulk.set_priority(0).ctx("priority")?;
                    let chunk = Bytes::from(vec![0xAB; 1 << 20]);
                    bulk.write_chunk(chunk.clone()).await.ctx("write bulk")?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let st = stop.clone();
                    let bulk_task = tokio::spawn(async move {
                        while !st.load(Ordering::Relaxed) {
                            if bulk.write_chunk(chunk.clone()).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut urgent = conn.open_uni().await.ctx("open urgent")?;
                    urgent.set_priority(10).ctx("priority")?;
                    tokio::time::sleep(Duration::from_millis(50)).await; // let bulk saturate
                    let mut tick = tokio::time::interval(interval);
                    let mut msg = [0u8; URGENT_LEN];
                    for _ in 0..count {
                        tick.tick().await;
                        msg[..8].copy_from_slice(&nanos_since(base).to_le_bytes());
                        urgent.write_all(&msg).await.ctx("write urgent")?;
                    }
                    done_rx.await.ctx("receiver gone")?;
                    stop.store(true, Ordering::Relaxed);
                    let elapsed = start.elapsed();
                    conn.close(0u32.into(), b"done");
                    let _ = bulk_task.await;
                    ep.wait_idle().await;
                    Ok(elapsed)
                })
            },
        )?;
        Ok(UrgentResult {
            delays,
            bulk_bytes,
            elapsed,
        })
    }

    fn first_byte(&self, samples: usize) -> Result<Vec<Duration>> {
        let (sock, addr) = bind()?;
        let base = Instant::now();
        let (arrivals, starts) = two_threads(
            move || {
                block_on("quinn first-byte server", async move {
                    let ep = server_endpoint(sock)?;
                    let mut arrivals = Vec::with_capacity(samples);
                    for _ in 0..samples {
                        let conn = accept(&ep).await?;
                        let mut r = conn.accept_uni().await.ctx("accept_uni")?;
                        let mut b = [0u8; 1];
                        r.read_exact(&mut b).await.ctx("read")?;
                        arrivals.push(nanos_since(base));
                        conn.close(0u32.into(), b"got it");
                    }
                    Ok(arrivals)
                })
            },
            move || {
                block_on("quinn first-byte client", async move {
                    let mut starts = Vec::with_capacity(samples);
                    for _ in 0..samples {
                        // A new endpoint and config: new port, empty session cache.
                        let ep = client_endpoint()?;
                        starts.push(nanos_since(base));
                        let conn = connect(&ep, addr).await?;
                        let mut s = conn.open_uni().await.ctx("open_uni")?;
                        s.write_all(&MSG).await.ctx("write")?;
                        s.finish().ctx("finish")?;
                        conn.closed().await;
                    }
                    Ok(starts)
                })
            },
        )?;
        Ok(arrivals
            .iter()
            .zip(&starts)
            .map(|(a, s)| Duration::from_nanos(a.saturating_sub(*s)))
            .collect())
    }

    fn memory(&self, connections: usize, streams: usize) -> Result<MemoryResult> {
        let (sock, addr) = bind()?;
        let (conns_tx, conns_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let (streams_tx, streams_rx) = oneshot::channel::<()>();
        let ((), res) = two_threads(
            move || {
                block_on("quinn memory server", async move {
                    let ep = server_endpoint(sock)?;
                    let mut held = Vec::with_capacity(connections);
                    for _ in 0..connections {
                        held.push(accept(&ep).await?);
                    }
                    let _ = conns_tx.send(());
                    let conn = accept(&ep).await?;
                    drop(held);
                    let mut open = Vec::with_capacity(streams);
                    let mut b = [0u8; 1];
                    for _ in 0..streams {
                        let (s, mut r) = conn.accept_bi().await.ctx("accept_bi")?;
                        r.read_exact(&mut b).await.ctx("read")?;
                        open.push((s, r));
                    }
                    let _ = streams_tx.send(());
                    let _ = release_rx.await;
                    conn.closed().await;
                    Ok(())
                })
            },
            move || {
                block_on("quinn memory client", async move {
                    let ep = client_endpoint()?;
                    let mut res = MemoryResult::default();
                    heap_counting(true);
                    let m0 = MemSnapshot::now()?;
                    let mut conns = Vec::with_capacity(connections);
                    for _ in 0..connections {
                        conns.push(connect(&ep, addr).await?);
                    }
                    conns_rx.await.ctx("server gone")?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (rss, heap) = MemSnapshot::now()?.per_item_since(&m0, connections);
                    res.conn_rss = Some(rss);
                    res.conn_heap = Some(heap);
                    for c in &conns {
                        c.close(0u32.into(), b"next phase");
                    }
                    drop(conns);
                    let conn = connect(&ep, addr).await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let m1 = MemSnapshot::now()?;
                    let mut open = Vec::with_capacity(streams);
                    for _ in 0..streams {
                        let (mut s, r) = conn.open_bi().await.ctx("open_bi")?;
                        s.write_all(&[1]).await.ctx("write")?;
                        open.push((s, r));
                    }
                    streams_rx.await.ctx("server gone")?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (rss, heap) = MemSnapshot::now()?.per_item_since(&m1, streams);
                    heap_counting(false);
                    res.stream_rss = Some(rss);
                    res.stream_heap = Some(heap);
                    let _ = release_tx.send(());
                    drop(open);
                    conn.close(0u32.into(), b"done");
                    ep.wait_idle().await;
                    Ok(res)
                })
            },
        )?;
        Ok(res)
    }
}
