//! The cusp column: this workspace's `cusp` runtime (`crates/cusp`) over `cusp-proto`.
//!
//! Each end is one OS thread with a current-thread tokio runtime and its own
//! [`Endpoint`] on 127.0.0.1 (the endpoint spawns its driver task on that runtime).
//! Endpoint config: [`EndpointConfig::loopback`], i.e. the defaults: encryption on
//! (`curve25519+whirlpool`, `poly1305+aes`), a fresh key per endpoint, 1 MiB send
//! buffer per stream, 4 096 out-/in-streams per host, 5 s close timeout. Only the
//! memory workload's idle-streams phase raises the stream limits (see [`Cusp::memory`]).
//!
//! Mapping of the workloads onto CUSP's unidirectional streams and services:
//!
//! * The server binds first and hands its address to the client thread (quinn binds
//!   the socket before the threads start; a cusp endpoint binds its own socket, and a
//!   HELLO sent to a port not yet bound would only be retried after 500 ms).
//! * "Connect" (quinn's `connect`/`accept` pair, outside every timed section): the
//!   client `contact`s the server's hello service with an empty stream and waits for
//!   it to be acknowledged; the server reads it to its end. `bulk` and `urgent` use the
//!   `contact` stream as their (first) bulk stream instead.
//! * `req_resp` uses the runtime's own request/response helper
//!   ([`Host::request`] / [`Endpoint::serve`], `crates/cusp/src/conversation.rs`): per
//!   request the client opens a per-host reply service and a new stream carrying the
//!   2-byte reply service and the 100 B body; the server answers with a new 100 B
//!   stream to that service. The latency ends when the response is read to its end
//!   (the helper also waits for the request to be acknowledged, which it is by then).
//! * `churn`: quinn's sender loop (open, write 100 B, finish) with each `finish` (which
//!   waits for the acknowledgement) in its own task and at most [`CHURN_IN_FLIGHT`]
//!   streams unacknowledged, the counterpart of quinn's 1 024 concurrent
//!   unidirectional streams. CUSP has no stream credit: beyond the writer's
//!   out-stream limit `connect` fails, and beyond the reader's in-stream limit (4 096)
//!   a CONNECT is refused and only comes back through the retransmission timer, whose
//!   timeouts inflate the RTT estimate; with 4 000 in flight the receiver can fall that
//!   far behind and the run stalls for minutes, with 1 024 it keeps up.
//! * `urgent`: the bulk stream (priority 0) and the urgent stream (priority 10; higher
//!   is served first) go to two services, so the receiver knows which is which.
//! * `first_byte`: a new client endpoint (new key, new port) per sample, bound and its
//!   driver started before the clock; then `open` (no round trip wait), write 100 B;
//!   the server records the time its application reads the first byte.
//!
//! Closing: the client closes its endpoint ([`Endpoint::close`]) and the server waits
//! up to 500 ms for its channels to go idle before closing its own (as quinn.rs'
//! `settle`). When both ends close at once while data still flows, a channel can miss
//! the NOSTATE that ends the graceful close (`spec/channel.md` §4.8: it must echo the
//! tail of the *last* datagram sent, and the peer's endpoint has stopped by the time a
//! fresh one could come), and its close waits for the 5 s close timeout; such a close is
//! reported on stderr. Closes are outside every timed section.
//!
//! Memory (see [`Cusp::memory`]): a CUSP channel is one per pair of endpoints (a host
//! is a public key), so N idle channels take N client endpoints. Those endpoints (a
//! socket, a driver task and its 2 MiB receive arena and 256 KiB transmit batch each)
//! are bound, and their drivers started, **before** the baseline, as quinn's one client
//! endpoint is: the per-channel figure is the channel and host state of both ends.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::cusp::{Endpoint, EndpointConfig, Host, Incoming};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{RUN_TIMEOUT, block_on, nanos_since, two_threads};
use crate::measure::{MemSnapshot, heap_counting, thread_cpu};
use crate::{
    BenchError, BulkResult, ChurnResult, Context, MemoryResult, ReqRespResult, Result, System,
    UrgentResult,
};

/// The cusp system.
pub struct Cusp;

const MSG: [u8; 100] = [0x5A; 100];
const URGENT_LEN: usize = 1024;

/// Unacknowledged churn streams at once (see the module doc).
pub const CHURN_IN_FLIGHT: usize = 1_024;

/// Well-known services of the server endpoint.
const HELLO: u16 = 1;
const BULK: u16 = 2;
const REQUEST: u16 = 3;
const CHURN: u16 = 4;
const URGENT: u16 = 5;
const FIRST_BYTE: u16 = 6;
const IDLE: u16 = 7;

type AddrTx = oneshot::Sender<SocketAddrV4>;
type AddrRx = oneshot::Receiver<SocketAddrV4>;

fn bind(config: EndpointConfig) -> Result<Endpoint> {
    Endpoint::bind(config).ctx("cusp bind")
}

/// The server's endpoint: binds, advertises `services` and sends its address to the
/// client thread (only once it accepts streams).
async fn server(
    config: EndpointConfig,
    services: &[u16],
    addr: AddrTx,
) -> Result<(Endpoint, Vec<Incoming>)> {
    let ep = bind(config)?;
    let incoming = services
        .iter()
        .map(|&s| ep.advertise(Some(s)).ctx("advertise"))
        .collect::<Result<Vec<_>>>()?;
    // The driver makes its buffers when it first runs: before the client starts
    // counting memory.
    let_drivers_start(1).await;
    addr.send(ep.local_addr())
        .map_err(|_| BenchError::Other("client thread gone".into()))?;
    Ok((ep, incoming))
}

async fn server_addr(rx: AddrRx) -> Result<SocketAddrV4> {
    rx.await.ctx("server thread gone")
}

/// Establishes the channel to `addr`: an empty stream to the hello service, acknowledged.
async fn connect(ep: &Endpoint, addr: SocketAddrV4) -> Result<Host> {
    let (host, hello) = ep.contact(addr, HELLO).await.ctx("cusp contact")?;
    if !hello.finish().await.ctx("hello")? {
        return Err(BenchError::Other("hello stream reset".into()));
    }
    Ok(host)
}

/// The server side of [`connect`].
async fn accept(incoming: &mut Incoming) -> Result<Host> {
    let (host, _, s) = incoming
        .accept()
        .await
        .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
    s.read_to_end(16).await.ctx("hello")?;
    Ok(host)
}

/// Lets the driver tasks of `n` endpoints just bound run their first turn, in which
/// each allocates its receive arena and transmit batch. Each yield of the `block_on`
/// future lets the current-thread scheduler run at least one queued task (a batch of up
/// to 61), so `n` yields are enough; a sleep is not (a timer can fire between two
/// batches when those allocations are slow).
async fn let_drivers_start(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// Closes `ep`: resets what is left and waits for its channels to close (at most the
/// endpoint's close timeout, 5 s). A close that runs into the timeout is reported on
/// stderr (see the module doc on closing).
async fn close(ep: &Endpoint) {
    let t = Instant::now();
    if !ep.close().await {
        eprintln!(
            "  (cusp endpoint {} did not close gracefully: {:.1} s)",
            ep.local_addr(),
            t.elapsed().as_secs_f64()
        );
    }
}

/// The server's end of a workload: gives the client up to 500 ms to close its end
/// (which closes the channels), then closes. See the module doc on closing.
async fn settle(ep: &Endpoint) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while !ep.is_idle() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    close(ep).await;
}

impl System for Cusp {
    fn name(&self) -> &'static str {
        "cusp"
    }

    fn bulk(&self, bytes: u64) -> Result<BulkResult> {
        let (addr_tx, addr_rx) = oneshot::channel();
        let ((received, end, rcpu), (start, scpu)) = two_threads(
            move || {
                let c0 = thread_cpu();
                let (n, end) = block_on("cusp bulk receiver", async move {
                    let (ep, mut inc) =
                        server(EndpointConfig::loopback(), &[BULK], addr_tx).await?;
                    let (_, _, mut recv) = inc[0]
                        .accept()
                        .await
                        .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
                    let mut n = 0u64;
                    while let Some(c) = recv.read_chunk(usize::MAX).await.ctx("read")? {
                        n += c.len() as u64;
                    }
                    let end = Instant::now();
                    settle(&ep).await;
                    Ok((n, end))
                })?;
                Ok((n, end, thread_cpu() - c0))
            },
            move || {
                let c0 = thread_cpu();
                let start = block_on("cusp bulk sender", async move {
                    let ep = bind(EndpointConfig::loopback())?;
                    let addr = server_addr(addr_rx).await?;
                    let (_host, mut send) = ep.contact(addr, BULK).await.ctx("cusp contact")?;
                    let chunk = Bytes::from(vec![0xAB; 1 << 20]);
                    let start = Instant::now();
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        send.write_bytes(chunk.slice(..n)).await.ctx("write")?;
                        left -= n as u64;
                    }
                    if !send.finish().await.ctx("finish")? {
                        return Err(BenchError::Other("bulk stream reset".into()));
                    }
                    close(&ep).await;
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
        let (addr_tx, addr_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let ((), res) = two_threads(
            move || {
                block_on("cusp req/resp server", async move {
                    let (ep, mut inc) =
                        server(EndpointConfig::loopback(), &[HELLO], addr_tx).await?;
                    let serving = ep
                        .serve(Some(REQUEST), |_, _| async { MSG.to_vec() })
                        .ctx("serve")?;
                    accept(&mut inc[0]).await?;
                    // Ends when the client has all its responses.
                    let _ = done_rx.await;
                    drop(serving);
                    settle(&ep).await;
                    Ok(())
                })
            },
            move || {
                block_on("cusp req/resp client", async move {
                    let ep = bind(EndpointConfig::loopback())?;
                    let addr = server_addr(addr_rx).await?;
                    let host = connect(&ep, addr).await?;
                    let remaining = Arc::new(AtomicUsize::new(requests));
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..outstanding {
                        let host = host.clone();
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
                                let resp = host
                                    .request(REQUEST, &MSG, RUN_TIMEOUT)
                                    .await
                                    .ctx("request")?;
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
                    let _ = done_tx.send(());
                    close(&ep).await;
                    Ok(ReqRespResult { elapsed, latencies })
                })
            },
        )?;
        Ok(res)
    }

    fn churn(&self, streams: usize) -> Result<ChurnResult> {
        let (addr_tx, addr_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (end, start) = two_threads(
            move || {
                block_on("cusp churn receiver", async move {
                    let (ep, mut inc) =
                        server(EndpointConfig::loopback(), &[HELLO, CHURN], addr_tx).await?;
                    accept(&mut inc[0]).await?;
                    for _ in 0..streams {
                        let (_, _, r) = inc[1]
                            .accept()
                            .await
                            .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
                        let d = r.read_to_end(1024).await.ctx("read")?;
                        if d.len() != MSG.len() {
                            return Err(BenchError::Other("short stream".into()));
                        }
                    }
                    let end = Instant::now();
                    let _ = done_tx.send(());
                    settle(&ep).await;
                    Ok(end)
                })
            },
            move || {
                block_on("cusp churn sender", async move {
                    let ep = bind(EndpointConfig::loopback())?;
                    let addr = server_addr(addr_rx).await?;
                    let host = connect(&ep, addr).await?;
                    let start = Instant::now();
                    let mut finishing = tokio::task::JoinSet::new();
                    for _ in 0..streams {
                        while finishing.len() >= CHURN_IN_FLIGHT {
                            if let Some(r) = finishing.join_next().await {
                                finished(r)?;
                            }
                        }
                        let mut s = host.connect(CHURN).ctx("connect")?;
                        s.write_all(&MSG).await.ctx("write")?;
                        finishing.spawn(s.finish());
                    }
                    while let Some(r) = finishing.join_next().await {
                        finished(r)?;
                    }
                    done_rx.await.ctx("receiver gone")?;
                    close(&ep).await;
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
        let (addr_tx, addr_rx) = oneshot::channel();
        let count = (duration.as_nanos() / interval.as_nanos().max(1)).max(1) as usize;
        let base = Instant::now();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let ((delays, bulk_bytes), elapsed) = two_threads(
            move || {
                block_on("cusp urgent receiver", async move {
                    let (ep, mut inc) =
                        server(EndpointConfig::loopback(), &[BULK, URGENT], addr_tx).await?;
                    let closed = || BenchError::Other("endpoint closed".into());
                    let (_, _, mut bulk) = inc[0].accept().await.ok_or_else(closed)?;
                    let (_, _, mut urgent) = inc[1].accept().await.ok_or_else(closed)?;
                    let bulk_bytes = Arc::new(AtomicU64::new(0));
                    let bb = bulk_bytes.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(c)) = bulk.read_chunk(usize::MAX).await {
                            bb.fetch_add(c.len() as u64, Ordering::Relaxed);
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
                    settle(&ep).await;
                    Ok((delays, bulk_bytes))
                })
            },
            move || {
                block_on("cusp urgent sender", async move {
                    let ep = bind(EndpointConfig::loopback())?;
                    let addr = server_addr(addr_rx).await?;
                    let (host, mut bulk) = ep.contact(addr, BULK).await.ctx("cusp contact")?;
                    let start = Instant::now();
                    bulk.set_priority(0.0).ctx("priority")?;
                    let chunk = Bytes::from(vec![0xAB; 1 << 20]);
                    bulk.write_bytes(chunk.clone()).await.ctx("write bulk")?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let st = stop.clone();
                    let bulk_task = tokio::spawn(async move {
                        while !st.load(Ordering::Relaxed) {
                            if bulk.write_bytes(chunk.clone()).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut urgent = host.connect(URGENT).ctx("open urgent")?;
                    urgent.set_priority(10.0).ctx("priority")?;
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
                    // Dropping the bulk stream mid-write resets it.
                    bulk_task.abort();
                    let _ = bulk_task.await;
                    close(&ep).await;
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
        let (addr_tx, addr_rx) = oneshot::channel();
        let base = Instant::now();
        let (arrivals, starts) = two_threads(
            move || {
                block_on("cusp first-byte server", async move {
                    let (ep, mut inc) =
                        server(EndpointConfig::loopback(), &[FIRST_BYTE], addr_tx).await?;
                    let mut arrivals = Vec::with_capacity(samples);
                    for _ in 0..samples {
                        let (_, _, mut r) = inc[0]
                            .accept()
                            .await
                            .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
                        let mut b = [0u8; 1];
                        r.read_exact(&mut b).await.ctx("read")?;
                        arrivals.push(nanos_since(base));
                        r.read_to_end(1024).await.ctx("read")?;
                    }
                    settle(&ep).await;
                    Ok(arrivals)
                })
            },
            move || {
                block_on("cusp first-byte client", async move {
                    let addr = server_addr(addr_rx).await?;
                    let mut starts = Vec::with_capacity(samples);
                    for _ in 0..samples {
                        // A new endpoint: new port, new key, no state about the server.
                        let ep = bind(EndpointConfig::loopback())?;
                        // Its driver allocates its buffers before the clock starts.
                        let_drivers_start(1).await;
                        starts.push(nanos_since(base));
                        let mut s = ep.open(addr, FIRST_BYTE).ctx("open")?;
                        s.write_all(&MSG).await.ctx("write")?;
                        s.finish().await.ctx("finish")?;
                        close(&ep).await;
                    }
                    Ok(starts)
                })
            },
        )?;
        Ok(super::delays(&arrivals, &starts))
    }

    /// Idle connections: `connections` client endpoints (bound and their drivers
    /// started before the baseline, see the module doc) each establish a channel to
    /// one server endpoint (an empty hello stream, acknowledged and read); channels
    /// and hosts are held idle on both ends; heap/RSS delta from before the first
    /// contact. Idle streams: one channel between endpoints permitting `streams + 240`
    /// out- and in-streams per host (quinn: 10 240 bidirectional streams); the client
    /// opens `streams` unidirectional streams (the first is the `contact` stream) and
    /// writes 1 byte on each, the server accepts and reads each; both ends hold their
    /// `OutStream`s and `InStream`s; delta from before the contact, so the channel's
    /// share is spread over the streams as quinn's is. A cusp stream is one direction:
    /// quinn's figure is per bidirectional stream (a send and a receive half on each
    /// end), cusp's per unidirectional stream (an out-stream on one end, an in-stream
    /// on the other).
    fn memory(&self, connections: usize, streams: usize) -> Result<MemoryResult> {
        Ok(MemoryResult::of(
            memory_conns(connections)?,
            memory_streams(streams)?,
        ))
    }
}

/// The outcome of a churn stream's `finish`.
fn finished(r: std::result::Result<::cusp::Result<bool>, tokio::task::JoinError>) -> Result<()> {
    match r.ctx("finish task")?.ctx("finish")? {
        true => Ok(()),
        false => Err(BenchError::Other("churn stream reset".into())),
    }
}

fn memory_conns(connections: usize) -> Result<(f64, f64)> {
    let (addr_tx, addr_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let ((), per) = two_threads(
        move || {
            block_on("cusp memory server", async move {
                let (ep, mut inc) = server(EndpointConfig::loopback(), &[HELLO], addr_tx).await?;
                let mut held = Vec::with_capacity(connections);
                for _ in 0..connections {
                    held.push(accept(&mut inc[0]).await?);
                }
                let _ = ready_tx.send(());
                let _ = release_rx.await;
                drop(held);
                settle(&ep).await;
                Ok(())
            })
        },
        move || {
            block_on("cusp memory client", async move {
                let eps = (0..connections)
                    .map(|_| bind(EndpointConfig::loopback()))
                    .collect::<Result<Vec<_>>>()?;
                let addr = server_addr(addr_rx).await?;
                let_drivers_start(connections).await;
                heap_counting(true);
                let m0 = MemSnapshot::now()?;
                let mut hosts = Vec::with_capacity(connections);
                for ep in &eps {
                    hosts.push(connect(ep, addr).await?);
                }
                ready_rx.await.ctx("server gone")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let per = MemSnapshot::now()?.per_item_since(&m0, connections);
                heap_counting(false);
                let _ = release_tx.send(());
                drop(hosts);
                for ep in &eps {
                    close(ep).await;
                }
                Ok(per)
            })
        },
    )?;
    Ok(per)
}

fn memory_streams(streams: usize) -> Result<(f64, f64)> {
    let config = || {
        let mut c = EndpointConfig::loopback();
        c.hosts.max_out_streams = streams + 240;
        c.hosts.max_in_streams = streams + 240;
        c
    };
    let (addr_tx, addr_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let ((), per) = two_threads(
        move || {
            block_on("cusp memory server", async move {
                let (ep, mut inc) = server(config(), &[IDLE], addr_tx).await?;
                let mut open = Vec::with_capacity(streams);
                let mut b = [0u8; 1];
                for _ in 0..streams {
                    let (_, _, mut r) = inc[0]
                        .accept()
                        .await
                        .ok_or_else(|| BenchError::Other("endpoint closed".into()))?;
                    r.read_exact(&mut b).await.ctx("read")?;
                    open.push(r);
                }
                let _ = ready_tx.send(());
                let _ = release_rx.await;
                drop(open);
                settle(&ep).await;
                Ok(())
            })
        },
        move || {
            block_on("cusp memory client", async move {
                let ep = bind(config())?;
                let addr = server_addr(addr_rx).await?;
                let_drivers_start(1).await;
                heap_counting(true);
                let m0 = MemSnapshot::now()?;
                let mut open = Vec::with_capacity(streams);
                if streams > 0 {
                    let (host, mut first) = ep.contact(addr, IDLE).await.ctx("cusp contact")?;
                    first.write_all(&[1]).await.ctx("write")?;
                    open.push(first);
                    for _ in 1..streams {
                        let mut s = host.connect(IDLE).ctx("connect")?;
                        s.write_all(&[1]).await.ctx("write")?;
                        open.push(s);
                    }
                }
                ready_rx.await.ctx("server gone")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let per = MemSnapshot::now()?.per_item_since(&m0, streams);
                heap_counting(false);
                let _ = release_tx.send(());
                drop(open);
                close(&ep).await;
                Ok(per)
            })
        },
    )?;
    Ok(per)
}
