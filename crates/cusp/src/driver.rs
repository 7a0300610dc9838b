//! The driver task of an endpoint: the only owner of its socket.
//!
//! One turn of the loop:
//! 1. **Receive**: take what the socket holds (one `recvmmsg` with GRO per batch, up to
//!    [`MAX_RECV_ROUNDS`] batches per turn), hand each datagram to the core in place, and
//!    drain `poll_transmit` into the transmit batch after the batch, or at once when the
//!    core says an ack cannot wait (one ack covers only 16 TSNs). So one ack covers up to
//!    16 datagrams of a batch instead of every second one.
//! 2. **Timers and sends**: fire due timers, drain `poll_transmit`, dispatch events.
//! 3. **Flush** the transmit batch outside the lock: runs of consecutive datagrams to one
//!    destination with one size (the last may be shorter) leave in one GSO `sendmsg`.
//! 4. **Wait** for a datagram, a [`Notify`](tokio::sync::Notify) from a handle, or the
//!    core's next timeout, unless the batch filled up (then go round at once).
//!
//! The lock is held only while the core runs: never across an await.

use std::future::poll_fn;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use cusp_proto::endpoint::Endpoint as ProtoEndpoint;
use cusp_proto::host::HostTable;

use crate::endpoint::{Shared, wake_all};
use crate::udp::{RecvBuf, UdpError, UdpIo};

/// Receive batches processed per turn before timers and other work get a look in.
const MAX_RECV_ROUNDS: usize = 8;
/// Bytes of datagrams gathered before a flush: one GSO send of about 43 full-size
/// datagrams. The driver then looks at the acknowledgements that arrived meanwhile before
/// it builds more: with 256 KiB batches a bulk sender read its acks up to four sends late,
/// its RTT samples grew by that much, and the delay-gated window shrank for it (bulk
/// goodput on loopback 0.7–1.8 Gbit/s instead of 3.1–3.3, docs/BENCHMARKS.md).
const TX_BYTES: usize = 64 * 1024;

/// Datagrams waiting to be sent, packed back to back so that a run to one destination is
/// one contiguous GSO buffer.
struct TxBatch {
    buf: Box<[u8]>,
    used: usize,
    items: Vec<(SocketAddrV4, usize)>,
    max_datagram: usize,
}

impl TxBatch {
    fn new(max_datagram: usize) -> Self {
        let cap = TX_BYTES.max(4 * max_datagram);
        TxBatch {
            buf: vec![0; cap].into_boxed_slice(),
            used: 0,
            items: Vec::with_capacity(cap / 64),
            max_datagram,
        }
    }

    /// Drains the core's datagrams into the batch. `true`: the core has nothing more to
    /// send now; `false`: the batch is full (flush, then call again).
    fn drain(&mut self, ep: &mut ProtoEndpoint<HostTable>, now: Instant) -> bool {
        loop {
            let Some(slot) = self.buf.get_mut(self.used..self.used + self.max_datagram) else {
                return false;
            };
            let Some(t) = ep.poll_transmit(now, slot) else {
                return true;
            };
            self.used += t.len;
            self.items.push((t.destination, t.len));
        }
    }

    /// Sends everything gathered. Returns the destinations whose last datagram in the batch
    /// was refused as too large (EMSGSIZE), for the core's channel to learn it.
    async fn flush(&mut self, io: &UdpIo, too_large: &mut Vec<SocketAddrV4>) {
        let mut off = 0;
        let mut i = 0;
        while i < self.items.len() {
            let (dest, seg) = self.items[i];
            let mut j = i + 1;
            let mut total = seg;
            // A run: same destination, same size; a shorter datagram ends it.
            while let Some(&(d, len)) = self.items.get(j) {
                if d != dest || len > seg {
                    break;
                }
                total += len;
                j += 1;
                if len < seg {
                    break;
                }
            }
            let contents = &self.buf[off..off + total];
            match io.send_batch(SocketAddr::V4(dest), seg, contents).await {
                Ok(()) => {}
                Err(UdpError::MessageTooLarge { size }) => {
                    tracing::warn!(%dest, size, "datagram too large for the path (EMSGSIZE)");
                    let last_to_dest = !self.items[j..].iter().any(|(d, _)| *d == dest);
                    if last_to_dest {
                        too_large.push(dest);
                    }
                }
                Err(err) => tracing::debug!(%dest, %err, "UDP send failed; datagrams dropped"),
            }
            off += total;
            i = j;
        }
        self.items.clear();
        self.used = 0;
    }
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

/// Runs the endpoint until it is closed, aborted, or dropped and idle.
pub(crate) async fn run(shared: Arc<Shared>, io: UdpIo, max_datagram: usize) {
    let mut rx = RecvBuf::new();
    let mut spans: Vec<(SocketAddrV4, std::ops::Range<usize>)> = Vec::new();
    let mut tx = TxBatch::new(max_datagram);
    let mut wake = Vec::new();
    let mut too_large = Vec::new();
    let mut have_rx = false;
    let graceful = loop {
        // 1. Receive.
        let mut rounds = 0;
        loop {
            if !have_rx {
                if rounds == MAX_RECV_ROUNDS {
                    break;
                }
                match io.try_recv_batch(&mut rx) {
                    Ok(_) => {}
                    Err(UdpError::WouldBlock) => break,
                    Err(err) => {
                        tracing::debug!(%err, "UDP receive failed");
                        break;
                    }
                }
            }
            have_rx = false;
            rounds += 1;
            spans.clear();
            spans.extend(rx.spans().filter_map(|(a, r)| Some((v4(a)?, r))));
            let mut next = 0;
            loop {
                let done = {
                    let mut st = shared.lock();
                    let now = Instant::now();
                    let done = loop {
                        let Some((from, range)) = spans.get(next) else {
                            break tx.drain(&mut st.ep, now);
                        };
                        next += 1;
                        if let Some(d) = rx.bytes_mut(range.clone())
                            && st.ep.handle(now, *from, d)
                            && !tx.drain(&mut st.ep, now)
                        {
                            break false;
                        }
                    };
                    st.dispatch(&shared, &mut wake);
                    done
                };
                wake_all(&mut wake);
                send(&shared, &io, &mut tx, &mut too_large).await;
                if done {
                    break;
                }
            }
        }

        // 2. Timers, closing, sends, events.
        let (stop, more, deadline) = {
            let mut st = shared.lock();
            let now = Instant::now();
            if st.ep.poll_timeout().is_some_and(|t| t <= now) {
                st.ep.handle_timeout(now);
            }
            if st.closing.is_none() && !st.closed {
                if st.abort_requested {
                    st.begin_close(now, now, &mut wake);
                } else if st.close_requested || shared.refs() == 0 {
                    st.begin_close(now, now + shared.close_timeout, &mut wake);
                }
            }
            let more = !tx.drain(&mut st.ep, now);
            st.dispatch(&shared, &mut wake);
            let mut stop = None;
            if let Some(deadline) = st.closing
                && (st.ep.is_idle() || now >= deadline || st.abort_requested)
            {
                let idle = st.ep.is_idle();
                st.ep.destroy_all(now);
                st.dispatch(&shared, &mut wake);
                st.finish_close(&mut wake);
                stop = Some(idle && !st.abort_requested);
            }
            st.udp_stats = io.stats();
            (stop, more, st.ep.poll_timeout())
        };
        wake_all(&mut wake);
        if let Some(graceful) = stop {
            // Whatever the last turn built (resets, acks) still goes out, unless aborted.
            if graceful {
                send(&shared, &io, &mut tx, &mut too_large).await;
            }
            break graceful;
        }
        send(&shared, &io, &mut tx, &mut too_large).await;
        if more || rounds == MAX_RECV_ROUNDS {
            tokio::task::yield_now().await;
            continue;
        }

        // 3. Wait.
        let closing_deadline = shared.lock().closing;
        let deadline = match (deadline, closing_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = poll_fn(|cx| io.poll_recv_batch(cx, &mut rx)) => match r {
                Ok(_) => have_rx = true,
                Err(err) => tracing::debug!(%err, "UDP receive failed"),
            },
            () = shared.notify.notified() => {}
            () = sleep => {}
        }
    };
    tracing::debug!(local = %shared.local_addr, graceful, "endpoint driver stopped");
    shared.stopped.send_replace(Some(graceful));
}

/// Flushes the batch, then reports refused sizes to the core.
async fn send(shared: &Shared, io: &UdpIo, tx: &mut TxBatch, too_large: &mut Vec<SocketAddrV4>) {
    if tx.items.is_empty() {
        return;
    }
    tx.flush(io, too_large).await;
    if !too_large.is_empty() {
        let mut st = shared.lock();
        let now = Instant::now();
        for dest in too_large.drain(..) {
            st.ep.on_send_failed(now, dest);
        }
    }
}
