//! quinn 0.11 (pinned in Cargo.toml) with its rustls/ring crypto: the reference column.
//!
//! Each end is one OS thread with a current-thread tokio runtime and its own
//! `Endpoint` on 127.0.0.1. Transport config: quinn defaults except the stream
//! limits: 1 024 concurrent bidirectional (so 512 outstanding requests fit) and
//! 1 024 unidirectional (churn) streams. The memory workload uses quinn's default
//! limits (100/100) for idle connections, because quinn-proto preallocates a map
//! slot per permitted remote stream, and 10 240 bidirectional streams for the
//! idle-stream phase (see [`Quinn::memory`]).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{
    ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig, VarInt,
};
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

/// Stream limits of the workloads (see the module doc).
const WORKLOAD_LIMITS: (u32, u32) = (1_024, 1_024);
/// quinn's own defaults, for idle-connection memory.
const DEFAULT_LIMITS: (u32, u32) = (100, 100);

fn transport((bidi, uni): (u32, u32)) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi));
    t.max_concurrent_uni_streams(VarInt::from_u32(uni));
    Arc::new(t)
}

/// Closes `conn` from this side too (a lone CONNECTION_CLOSE can be lost under
/// load, which would leave the peer waiting for the 30 s idle timeout) and waits
/// briefly for the endpoint to drain.
async fn settle(conn: &Connection, ep: &Endpoint) {
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
}

fn server_endpoint(sock: UdpSocket) -> Result<Endpoint> {
    server_endpoint_with(sock, WORKLOAD_LIMITS)
}

fn server_endpoint_with(sock: UdpSocket, limits: (u32, u32)) -> Result<Endpoint> {
    let tls = TlsMaterial::get()?;
    let mut sc = ServerConfig::with_single_cert(vec![tls.cert.clone()], tls.key_der())
        .ctx("quinn server config")?;
    sc.transport_config(transport(limits));
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
    client_endpoint_with(WORKLOAD_LIMITS)
}

fn client_endpoint_with(limits: (u32, u32)) -> Result<Endpoint> {
    let tls = TlsMaterial::get()?;
    let mut cc = ClientConfig::with_root_certificates(tls.roots()?).ctx("quinn client config")?;
    cc.transport_config(transport(limits));
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
                    settle(&conn, &ep).await;
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                    settle(&conn, &ep).await;
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                    let bulk_bytes = bulk_bytes.load(Ordering::Relaxed);
                    settle(&conn, &ep).await;
                    Ok((delays, bulk_bytes))
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
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
                        // The server closes once it has the byte.
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                    }
                    Ok(starts)
                })
            },
        )?;
        Ok(super::delays(&arrivals, &starts))
    }

    /// Idle connections: `connections` handshaken connections with quinn's default
    /// stream limits, both ends held; heap/RSS delta from before the first connect.
    /// Idle streams: one connection permitting 10 240 bidirectional streams; the
    /// client opens `streams` of them and writes 1 byte on each (so the server
    /// sees them), the server accepts and reads each; delta from before the
    /// connect, so each stream's share includes its preallocated slot.
    fn memory(&self, connections: usize, streams: usize) -> Result<MemoryResult> {
        Ok(MemoryResult::of(
            memory_conns(connections)?,
            memory_streams(streams)?,
        ))
    }
}

fn memory_conns(connections: usize) -> Result<(f64, f64)> {
    let (sock, addr) = bind()?;
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let ((), per) = two_threads(
        move || {
            block_on("quinn memory server", async move {
                let ep = server_endpoint_with(sock, DEFAULT_LIMITS)?;
                let mut held = Vec::with_capacity(connections);
                for _ in 0..connections {
                    held.push(accept(&ep).await?);
                }
                let _ = ready_tx.send(());
                let _ = release_rx.await;
                for c in &held {
                    c.close(0u32.into(), b"done");
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
                Ok(())
            })
        },
        move || {
            block_on("quinn memory client", async move {
                let ep = client_endpoint_with(DEFAULT_LIMITS)?;
                heap_counting(true);
                let m0 = MemSnapshot::now()?;
                let mut conns = Vec::with_capacity(connections);
                for _ in 0..connections {
                    conns.push(connect(&ep, addr).await?);
                }
                ready_rx.await.ctx("server gone")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let per = MemSnapshot::now()?.per_item_since(&m0, connections);
                heap_counting(false);
                let _ = release_tx.send(());
                for c in &conns {
                    c.close(0u32.into(), b"done");
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
                Ok(per)
            })
        },
    )?;
    Ok(per)
}

fn memory_streams(streams: usize) -> Result<(f64, f64)> {
    let limits = (u32::try_from(streams).unwrap_or(u32::MAX / 2) + 240, 100);
    let (sock, addr) = bind()?;
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let ((), per) = two_threads(
        move || {
            block_on("quinn memory server", async move {
                let ep = server_endpoint_with(sock, limits)?;
                let conn = accept(&ep).await?;
                let mut open = Vec::with_capacity(streams);
                let mut b = [0u8; 1];
                for _ in 0..streams {
                    let (s, mut r) = conn.accept_bi().await.ctx("accept_bi")?;
                    r.read_exact(&mut b).await.ctx("read")?;
                    open.push((s, r));
                }
                let _ = ready_tx.send(());
                let _ = release_rx.await;
                drop(open);
                settle(&conn, &ep).await;
                Ok(())
            })
        },
        move || {
            block_on("quinn memory client", async move {
                let ep = client_endpoint_with(limits)?;
                heap_counting(true);
                let m0 = MemSnapshot::now()?;
                let conn = connect(&ep, addr).await?;
                let mut open = Vec::with_capacity(streams);
                for _ in 0..streams {
                    let (mut s, r) = conn.open_bi().await.ctx("open_bi")?;
                    s.write_all(&[1]).await.ctx("write")?;
                    open.push((s, r));
                }
                ready_rx.await.ctx("server gone")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let per = MemSnapshot::now()?.per_item_since(&m0, streams);
                heap_counting(false);
                let _ = release_tx.send(());
                drop(open);
                conn.close(0u32.into(), b"done");
                let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
                Ok(per)
            })
        },
    )?;
    Ok(per)
}
