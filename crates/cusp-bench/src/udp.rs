//! Raw UDP ceiling on loopback: 1400-byte datagrams from one thread to another.
//!
//! Three modes: one datagram per `send`/`recv` syscall; GSO (`UDP_SEGMENT`, up to
//! 46 x 1400 B per `sendmsg` via quinn-udp) into a plain one-per-syscall receiver;
//! and GSO plus GRO (quinn-udp's `recvmmsg` with `UDP_GRO`, 32 x 64 KiB buffers).
//! The sender blasts for a fixed time; the figure is what the receiver got, from
//! its first to its last datagram (loss shows as a lower rate, not an error).

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use crate::systems::two_threads;
use crate::{Context, Result};

/// Datagram payload size.
pub const DATAGRAM: usize = 1400;
const SOCK_BUF: usize = 4 << 20;

/// How datagrams are sent and received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpMode {
    /// One datagram per `send` and per `recv` syscall.
    PerSyscall,
    /// GSO batches on send; one datagram per `recv`.
    Gso,
    /// GSO batches on send; `recvmmsg` with GRO on receive.
    GsoGro,
}

impl UdpMode {
    /// All modes in table order.
    pub const ALL: [UdpMode; 3] = [UdpMode::PerSyscall, UdpMode::Gso, UdpMode::GsoGro];

    /// Short label used in metric names.
    pub fn label(self) -> &'static str {
        match self {
            UdpMode::PerSyscall => "1/syscall",
            UdpMode::Gso => "GSO",
            UdpMode::GsoGro => "GSO+GRO",
        }
    }
}

/// What the receiver got.
#[derive(Debug, Clone)]
pub struct UdpResult {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// From first to last datagram received.
    pub elapsed: Duration,
}

impl UdpResult {
    /// Received datagrams per second.
    pub fn packets_per_sec(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Received payload in Gbit/s.
    pub fn gbits(&self) -> f64 {
        self.packets_per_sec() * (DATAGRAM * 8) as f64 / 1e9
    }
}

fn set_bufs(sock: &UdpSocket) -> Result<()> {
    let s = socket2::SockRef::from(sock);
    s.set_send_buffer_size(SOCK_BUF)?;
    s.set_recv_buffer_size(SOCK_BUF)?;
    Ok(())
}

/// Runs one mode for `duration` of sending.
pub fn ceiling(mode: UdpMode, duration: Duration) -> Result<UdpResult> {
    let rx = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let tx = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    set_bufs(&rx)?;
    set_bufs(&tx)?;
    let dest = rx.local_addr()?;
    tx.connect(dest)?;
    rx.set_read_timeout(Some(Duration::from_millis(20)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_rx = stop.clone();
    let ((received, elapsed), sent) = two_threads(
        move || {
            let mut n = 0u64;
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            let mut count = |k: u64, n: &mut u64| {
                if k > 0 {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    *n += k;
                }
            };
            if mode == UdpMode::GsoGro {
                let state = UdpSocketState::new(UdpSockRef::from(&rx))?;
                let mut storage = vec![[0u8; 65536]; quinn_udp::BATCH_SIZE];
                let mut meta = vec![RecvMeta::default(); quinn_udp::BATCH_SIZE];
                while !stop_rx.load(Ordering::Relaxed) {
                    let mut bufs: Vec<IoSliceMut<'_>> = storage
                        .iter_mut()
                        .map(|b| IoSliceMut::new(&mut b[..]))
                        .collect();
                    match state.recv(UdpSockRef::from(&rx), &mut bufs, &mut meta) {
                        Ok(msgs) => {
                            let k: u64 = meta[..msgs]
                                .iter()
                                .map(|m| m.len.div_ceil(m.stride.max(1)) as u64)
                                .sum();
                            count(k, &mut n);
                        }
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            } else {
                let mut buf = [0u8; 2048];
                while !stop_rx.load(Ordering::Relaxed) {
                    match rx.recv(&mut buf) {
                        Ok(_) => count(1, &mut n),
                        Err(e) if is_timeout(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let elapsed = first.map(|f| last - f).unwrap_or_default();
            Ok((n, elapsed))
        },
        move || {
            let deadline = Instant::now() + duration;
            let mut sent = 0u64;
            let payload = vec![0xCDu8; DATAGRAM * 64];
            let result = (|| -> Result<()> {
                if mode == UdpMode::PerSyscall {
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            tx.send(&payload[..DATAGRAM])?;
                        }
                        sent += 64;
                    }
                } else {
                    let state = UdpSocketState::new(UdpSockRef::from(&tx))?;
                    // 46 x 1400 = 64 400 B stays under the 64 KiB UDP limit.
                    let segs = state.max_gso_segments().clamp(1, 46);
                    while Instant::now() < deadline {
                        let t = Transmit {
                            destination: dest,
                            ecn: None,
                            contents: &payload[..segs * DATAGRAM],
                            segment_size: Some(DATAGRAM),
                            src_ip: None,
                        };
                        state.try_send(UdpSockRef::from(&tx), &t).ctx("GSO send")?;
                        sent += segs as u64;
                    }
                }
                Ok(())
            })();
            // Let the receiver drain its buffer, then stop it even on error.
            std::thread::sleep(Duration::from_millis(50));
            stop.store(true, Ordering::Relaxed);
            result.map(|()| sent)
        },
    )?;
    Ok(UdpResult {
        sent,
        received,
        elapsed,
    })
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}
