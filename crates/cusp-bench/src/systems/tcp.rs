//! Kernel TCP on 127.0.0.1: [`Tcp`] (plain) and [`TcpTls`] (rustls 0.23 with the
//! ring provider, TLS 1.3, over blocking sockets; bulk and first byte only).
//!
//! TCP has no streams, so the workloads map as follows (stated in the table notes):
//! * bulk: one connection, blocking `write_all` of 1 MiB buffers / `read` into 256 KiB;
//! * request/response: ONE connection, 4-byte length-prefixed messages, pipelined with
//!   up to N requests outstanding; the server answers in order and flushes its
//!   buffered responses whenever its input buffer is drained;
//! * churn: one new connection per 100 B message (64 connects in flight), capped
//!   at [`TCP_CHURN_CAP`] per run because of ephemeral ports and TIME_WAIT;
//! * urgent: a second connection carries the urgent messages;
//! * memory: per idle connection only (no streams); kernel socket memory is not in
//!   the process RSS and so is not counted.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn::rustls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{TlsMaterial, block_on, nanos_since, two_threads};
use crate::measure::{MemSnapshot, heap_counting, thread_cpu};
use crate::{
    BenchError, BulkResult, ChurnResult, Context, MemoryResult, ReqRespResult, Result, System,
    UrgentResult,
};

/// Most TCP connections one churn run opens (the rest of the requested count is skipped).
pub const TCP_CHURN_CAP: usize = 20_000;

const MSG: [u8; 100] = [0x5A; 100];
const URGENT_LEN: usize = 1024;

/// Plain kernel TCP.
pub struct Tcp;

/// Kernel TCP with rustls (ring provider) on top.
pub struct TcpTls;

fn bind() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

fn tokio_listener(l: TcpListener) -> Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(l)?)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_server_config() -> Result<Arc<rustls::ServerConfig>> {
    let tls = TlsMaterial::get()?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ctx("rustls versions")?
        .with_no_client_auth()
        .with_single_cert(vec![tls.cert.clone()], tls.key_der())
        .ctx("rustls server cert")?;
    Ok(Arc::new(cfg))
}

/// A fresh client config each call: an empty session cache, so no resumption.
fn tls_client_config() -> Result<Arc<rustls::ClientConfig>> {
    let tls = TlsMaterial::get()?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ctx("rustls versions")?
        .with_root_certificates(tls.roots()?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn server_name() -> Result<ServerName<'static>> {
    ServerName::try_from("localhost").ctx("server name")
}

/// Drains `r` until EOF or error (used to wait for the peer's close).
fn drain(mut r: impl Read) {
    let mut b = [0u8; 4096];
    while matches!(r.read(&mut b), Ok(n) if n > 0) {}
}

/// Bulk over any blocking byte stream; `wrap_*` add TLS or not.
fn bulk_generic<RS: Read, WS: Write>(
    bytes: u64,
    wrap_server: impl FnOnce(TcpStream) -> Result<RS> + Send,
    wrap_client: impl FnOnce(TcpStream) -> Result<(WS, TcpStream)> + Send,
    finish_client: impl FnOnce(&mut WS) -> Result<()> + Send,
) -> Result<BulkResult> {
    let (listener, addr) = bind()?;
    let ((n, end, rcpu), (start, scpu)) = two_threads(
        move || {
            let c0 = thread_cpu();
            let (sock, _) = listener.accept()?;
            let mut s = wrap_server(sock)?;
            let mut buf = vec![0u8; 256 << 10];
            let mut n = 0u64;
            loop {
                let k = s.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let end = Instant::now();
            drop(s);
            Ok((n, end, thread_cpu() - c0))
        },
        move || {
            let c0 = thread_cpu();
            let sock = TcpStream::connect(addr)?;
            sock.set_nodelay(true)?;
            let (mut w, raw) = wrap_client(sock)?;
            let chunk = vec![0xABu8; 1 << 20];
            let start = Instant::now();
            let mut left = bytes;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                w.write_all(&chunk[..k])?;
                left -= k as u64;
            }
            finish_client(&mut w)?;
            raw.shutdown(Shutdown::Write)?;
            drain(&raw);
            Ok((start, thread_cpu() - c0))
        },
    )?;
    Ok(BulkResult {
        bytes: n,
        elapsed: end.saturating_duration_since(start),
        sender_cpu: scpu,
        receiver_cpu: rcpu,
    })
}

/// First byte over blocking sockets; `tls` adds a full TLS 1.3 handshake.
fn first_byte_generic(samples: usize, tls: bool) -> Result<Vec<Duration>> {
    let (listener, addr) = bind()?;
    let base = Instant::now();
    let server_cfg = if tls {
        Some(tls_server_config()?)
    } else {
        None
    };
    let (arrivals, starts) = two_threads(
        move || {
            let mut arrivals = Vec::with_capacity(samples);
            let mut b = [0u8; 1];
            for _ in 0..samples {
                let (sock, _) = listener.accept()?;
                match &server_cfg {
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(cfg.clone()).ctx("tls server")?;
                        let mut s = rustls::StreamOwned::new(conn, sock);
                        s.read_exact(&mut b)?;
                    }
                    None => (&sock).read_exact(&mut b)?,
                }
                arrivals.push(nanos_since(base));
            }
            Ok(arrivals)
        },
        move || {
            let mut starts = Vec::with_capacity(samples);
            for _ in 0..samples {
                let cfg = if tls {
                    Some(tls_client_config()?)
                } else {
                    None
                };
                starts.push(nanos_since(base));
                let sock = TcpStream::connect(addr)?;
                sock.set_nodelay(true)?;
                match cfg {
                    Some(cfg) => {
                        let conn =
                            rustls::ClientConnection::new(cfg, server_name()?).ctx("tls client")?;
                        let mut s = rustls::StreamOwned::new(conn, sock);
                        s.write_all(&MSG)?;
                        s.flush()?;
                        drain(&s.sock);
                    }
                    None => {
                        (&sock).write_all(&MSG)?;
                        drain(&sock);
                    }
                }
            }
            Ok(starts)
        },
    )?;
    Ok(super::delays(&arrivals, &starts))
}

impl System for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn bulk(&self, bytes: u64) -> Result<BulkResult> {
        bulk_generic(
            bytes,
            Ok,
            |s| {
                let raw = s.try_clone()?;
                Ok((s, raw))
            },
            |_| Ok(()),
        )
    }

    fn req_resp(&self, requests: usize, outstanding: usize) -> Result<ReqRespResult> {
        let (listener, addr) = bind()?;
        let ((), res) = two_threads(
            move || {
                block_on("tcp req/resp server", async move {
                    let l = tokio_listener(listener)?;
                    let (sock, _) = l.accept().await?;
                    sock.set_nodelay(true)?;
                    let (r, w) = sock.into_split();
                    let mut r = BufReader::with_capacity(64 << 10, r);
                    let mut w = BufWriter::with_capacity(64 << 10, w);
                    let mut req = [0u8; 4 + MSG.len()];
                    let mut resp = Vec::with_capacity(4 + MSG.len());
                    resp.extend_from_slice(&(MSG.len() as u32).to_be_bytes());
                    resp.extend_from_slice(&MSG);
                    loop {
                        match r.read_exact(&mut req[..4]).await {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                            Err(e) => return Err(e.into()),
                        }
                        let len = u32::from_be_bytes([req[0], req[1], req[2], req[3]]) as usize;
                        if len != MSG.len() {
                            return Err(BenchError::Other(format!("bad request length {len}")));
                        }
                        r.read_exact(&mut req[4..]).await?;
                        w.write_all(&resp).await?;
                        if r.buffer().is_empty() {
                            w.flush().await?;
                        }
                    }
                    w.flush().await?;
                    Ok(())
                })
            },
            move || {
                block_on("tcp req/resp client", async move {
                    let sock = tokio::net::TcpStream::connect(addr).await?;
                    sock.set_nodelay(true)?;
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::with_capacity(64 << 10, r);
                    let sem = Arc::new(Semaphore::new(outstanding));
                    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
                    let start = Instant::now();
                    let s2 = sem.clone();
                    let writer = tokio::spawn(async move {
                        let mut req = Vec::with_capacity(4 + MSG.len());
                        req.extend_from_slice(&(MSG.len() as u32).to_be_bytes());
                        req.extend_from_slice(&MSG);
                        for _ in 0..requests {
                            s2.acquire().await.ctx("semaphore")?.forget();
                            let _ = tx.send(Instant::now());
                            w.write_all(&req).await?;
                        }
                        Ok::<_, BenchError>(w)
                    });
                    let mut latencies = Vec::with_capacity(requests);
                    let mut resp = [0u8; 4 + MSG.len()];
                    for _ in 0..requests {
                        r.read_exact(&mut resp).await?;
                        let t = rx
                            .recv()
                            .await
                            .ok_or_else(|| BenchError::Other("writer gone".into()))?;
                        latencies.push(t.elapsed());
                        sem.add_permits(1);
                    }
                    let elapsed = start.elapsed();
                    let mut w = writer.await.ctx("writer task")??;
                    w.shutdown().await?;
                    Ok(ReqRespResult { elapsed, latencies })
                })
            },
        )?;
        Ok(res)
    }

    fn churn(&self, streams: usize) -> Result<ChurnResult> {
        let streams = streams.min(TCP_CHURN_CAP);
        let (listener, addr) = bind()?;
        let (end, start) = two_threads(
            move || {
                block_on("tcp churn receiver", async move {
                    let l = tokio_listener(listener)?;
                    let (tx, mut rx) = mpsc::unbounded_channel::<Result<()>>();
                    let acceptor = tokio::spawn(async move {
                        while let Ok((mut s, _)) = l.accept().await {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let mut v = Vec::with_capacity(128);
                                let r = match s.read_to_end(&mut v).await {
                                    Ok(_) if v.len() == MSG.len() => Ok(()),
                                    Ok(n) => Err(BenchError::Other(format!("got {n} bytes"))),
                                    Err(e) => Err(e.into()),
                                };
                                let _ = tx.send(r);
                            });
                        }
                    });
                    for _ in 0..streams {
                        rx.recv()
                            .await
                            .ok_or_else(|| BenchError::Other("acceptor gone".into()))??;
                    }
                    let end = Instant::now();
                    acceptor.abort();
                    Ok(end)
                })
            },
            move || {
                block_on("tcp churn sender", async move {
                    let sem = Arc::new(Semaphore::new(64));
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..streams {
                        let permit = sem.clone().acquire_owned().await.ctx("semaphore")?;
                        tasks.spawn(async move {
                            let mut s = tokio::net::TcpStream::connect(addr).await?;
                            s.set_nodelay(true)?;
                            s.write_all(&MSG).await?;
                            s.shutdown().await?;
                            drop(permit);
                            Ok::<_, BenchError>(())
                        });
                        while let Some(r) = tasks.try_join_next() {
                            r.ctx("connect task")??;
                        }
                    }
                    while let Some(r) = tasks.join_next().await {
                        r.ctx("connect task")??;
                    }
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
        let (listener, addr) = bind()?;
        let count = (duration.as_nanos() / interval.as_nanos().max(1)).max(1) as usize;
        let base = Instant::now();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let ((delays, bulk_bytes), elapsed) = two_threads(
            move || {
                block_on("tcp urgent receiver", async move {
                    let l = tokio_listener(listener)?;
                    // The client connects bulk first and waits for it before urgent.
                    let (mut bulk, _) = l.accept().await?;
                    let (mut urgent, _) = l.accept().await?;
                    urgent.set_nodelay(true)?;
                    let bulk_bytes = Arc::new(AtomicU64::new(0));
                    let bb = bulk_bytes.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 256 << 10];
                        while let Ok(n) = bulk.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            bb.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    });
                    let mut delays = Vec::with_capacity(count);
                    let mut buf = [0u8; URGENT_LEN];
                    for _ in 0..count {
                        urgent.read_exact(&mut buf).await?;
                        let sent = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
                        delays.push(Duration::from_nanos(nanos_since(base).saturating_sub(sent)));
                    }
                    let _ = done_tx.send(());
                    Ok((delays, bulk_bytes.load(Ordering::Relaxed)))
                })
            },
            move || {
                block_on("tcp urgent sender", async move {
                    let start = Instant::now();
                    let mut bulk = tokio::net::TcpStream::connect(addr).await?;
                    let mut urgent = tokio::net::TcpStream::connect(addr).await?;
                    urgent.set_nodelay(true)?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let st = stop.clone();
                    let bulk_task = tokio::spawn(async move {
                        let chunk = vec![0xABu8; 1 << 20];
                        while !st.load(Ordering::Relaxed) {
                            if bulk.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let mut tick = tokio::time::interval(interval);
                    let mut msg = [0u8; URGENT_LEN];
                    for _ in 0..count {
                        tick.tick().await;
                        msg[..8].copy_from_slice(&nanos_since(base).to_le_bytes());
                        urgent.write_all(&msg).await?;
                    }
                    done_rx.await.ctx("receiver gone")?;
                    stop.store(true, Ordering::Relaxed);
                    let elapsed = start.elapsed();
                    bulk_task.abort();
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
        first_byte_generic(samples, false)
    }

    fn memory(&self, connections: usize, _streams: usize) -> Result<MemoryResult> {
        let (listener, addr) = bind()?;
        let (conns_tx, conns_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let ((), res) = two_threads(
            move || {
                block_on("tcp memory server", async move {
                    let l = tokio_listener(listener)?;
                    let mut held = Vec::with_capacity(connections);
                    for _ in 0..connections {
                        held.push(l.accept().await?.0);
                    }
                    let _ = conns_tx.send(());
                    let _ = release_rx.await;
                    Ok(())
                })
            },
            move || {
                block_on("tcp memory client", async move {
                    heap_counting(true);
                    let m0 = MemSnapshot::now()?;
                    let mut conns = Vec::with_capacity(connections);
                    for _ in 0..connections {
                        conns.push(tokio::net::TcpStream::connect(addr).await?);
                    }
                    conns_rx.await.ctx("server gone")?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (rss, heap) = MemSnapshot::now()?.per_item_since(&m0, connections);
                    heap_counting(false);
                    let _ = release_tx.send(());
                    Ok(MemoryResult {
                        conn_rss: Some(rss),
                        conn_heap: Some(heap),
                        ..MemoryResult::default()
                    })
                })
            },
        )?;
        Ok(res)
    }
}

impl System for TcpTls {
    fn name(&self) -> &'static str {
        "tcp+tls"
    }

    fn bulk(&self, bytes: u64) -> Result<BulkResult> {
        let scfg = tls_server_config()?;
        let ccfg = tls_client_config()?;
        bulk_generic(
            bytes,
            move |s| {
                let conn = rustls::ServerConnection::new(scfg).ctx("tls server")?;
                Ok(rustls::StreamOwned::new(conn, s))
            },
            move |s| {
                let raw = s.try_clone()?;
                let conn = rustls::ClientConnection::new(ccfg, server_name()?).ctx("tls client")?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                Ok((tls, raw))
            },
            |tls| {
                tls.conn.send_close_notify();
                tls.flush()?;
                Ok(())
            },
        )
    }

    fn first_byte(&self, samples: usize) -> Result<Vec<Duration>> {
        first_byte_generic(samples, true)
    }
}
