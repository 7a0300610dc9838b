//! Batched UDP I/O for the runtime: one tokio socket driven through quinn-udp, so that a
//! batch of equal-size datagrams leaves in one `sendmsg` (UDP GSO) and arrives through one
//! `recvmmsg` (UDP GRO super-buffers split back into datagrams by their stride).
//!
//! The layer knows nothing about CUSP: it moves datagrams. Errors the protocol core must act
//! on (EMSGSIZE) have their own [`UdpError`] variant; a full socket buffer is
//! [`UdpError::WouldBlock`] from the `try_*` and `poll_*` forms and is waited out by the
//! `async` forms.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Largest UDP payload over IPv4: 65 535 − 20 (IPv4 header) − 8 (UDP header).
///
/// It is also the most one GSO `sendmsg` can carry in total, whatever the segment count.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// How many receive slots one [`UdpIo::recv_batch`] call fills at most (quinn-udp's
/// `recvmmsg` batch). With GRO each slot may hold many datagrams.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Bytes per receive slot: a GRO super-buffer never exceeds 64 KiB (the kernel stops
/// coalescing at `IP_MAX_MTU`), and no single datagram does, so nothing is ever truncated.
const SLOT_LEN: usize = 64 * 1024;

/// Socket options applied by [`UdpIo::bind_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Requested `SO_SNDBUF` in bytes; the kernel caps it at `net.core.wmem_max`.
    pub send_buffer: usize,
    /// Requested `SO_RCVBUF` in bytes; the kernel caps it at `net.core.rmem_max`.
    pub recv_buffer: usize,
}

impl Default for UdpConfig {
    /// 8 MiB each way: about 25 ms of traffic at 2.7 Gbit/s, enough to ride out a scheduling
    /// hiccup of the receiving task without drops. Kernels with a lower limit grant less.
    fn default() -> Self {
        Self {
            send_buffer: 8 << 20,
            recv_buffer: 8 << 20,
        }
    }
}

/// What can go wrong when sending or receiving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UdpError {
    /// The socket is not ready (send buffer full, or nothing to receive); only returned by
    /// the `try_*` and `poll_*` forms, the `async` forms wait instead.
    #[error("UDP socket not ready (would block)")]
    WouldBlock,
    /// The kernel refused a datagram as too large (`EMSGSIZE`): over the UDP maximum, or
    /// over the path MTU since fragmentation is forbidden. The protocol must send smaller.
    #[error("datagram of {size} bytes is too large to send (EMSGSIZE)")]
    MessageTooLarge {
        /// Size in bytes of the datagram (the segment, for a batch) that was refused.
        size: usize,
    },
    /// A batch that cannot be sent as asked (a segment size of zero).
    #[error("invalid send batch: {0}")]
    InvalidBatch(&'static str),
    /// Any other I/O error from the operating system.
    #[error("UDP I/O error: {0}")]
    Io(#[from] io::Error),
}

impl UdpError {
    /// Classifies an OS error; `size` is the datagram size reported with EMSGSIZE.
    fn from_io(err: io::Error, size: usize) -> Self {
        if err.kind() == io::ErrorKind::WouldBlock {
            Self::WouldBlock
        } else if quinn_udp::is_msg_size_err(&err) {
            Self::MessageTooLarge { size }
        } else {
            Self::Io(err)
        }
    }
}

/// Counters of a [`UdpIo`] since it was bound, showing how much GSO and GRO batched.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Successful `sendmsg` calls that carried them.
    pub send_syscalls: u64,
    /// Most datagrams carried by one `sendmsg` (above 1 means GSO was used).
    pub max_segments_per_send: u64,
    /// Datagrams received, after splitting GRO super-buffers.
    pub datagrams_received: u64,
    /// Successful `recvmmsg` calls that delivered them.
    pub recv_syscalls: u64,
    /// Most datagrams found in one received buffer (above 1 means GRO coalesced).
    pub max_segments_per_recv_buffer: u64,
}

/// Relaxed atomic twins of [`UdpStats`], so that sending and receiving need only `&self`.
#[derive(Debug, Default)]
struct Counters {
    datagrams_sent: AtomicU64,
    send_syscalls: AtomicU64,
    max_segments_per_send: AtomicU64,
    datagrams_received: AtomicU64,
    recv_syscalls: AtomicU64,
    max_segments_per_recv_buffer: AtomicU64,
}

/// A UDP socket registered with tokio and set up by quinn-udp for GSO, GRO and batched
/// receive.
///
/// All operations take `&self`, so one `UdpIo` in an `Arc` can be driven by a sending task
/// and a receiving task at once. It must be created inside a tokio runtime.
#[derive(Debug)]
pub struct UdpIo {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
    local_addr: SocketAddr,
    send_buffer: usize,
    recv_buffer: usize,
    counters: Counters,
}

impl UdpIo {
    /// Binds `addr` (port 0 for an ephemeral port) with the default [`UdpConfig`].
    pub fn bind(addr: SocketAddr) -> Result<Self, UdpError> {
        Self::bind_with(addr, &UdpConfig::default())
    }

    /// Binds `addr` (port 0 for an ephemeral port) with the given socket options.
    ///
    /// Buffer sizes the kernel refuses are not an error: [`send_buffer_size`] and
    /// [`recv_buffer_size`] report what was granted.
    ///
    /// [`send_buffer_size`]: Self::send_buffer_size
    /// [`recv_buffer_size`]: Self::recv_buffer_size
    pub fn bind_with(addr: SocketAddr, config: &UdpConfig) -> Result<Self, UdpError> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if let Err(err) = socket.set_send_buffer_size(config.send_buffer) {
            tracing::debug!(%err, "SO_SNDBUF of {} refused", config.send_buffer);
        }
        if let Err(err) = socket.set_recv_buffer_size(config.recv_buffer) {
            tracing::debug!(%err, "SO_RCVBUF of {} refused", config.recv_buffer);
        }
        socket.bind(&addr.into())?;
        let std_socket = std::net::UdpSocket::from(socket);
        // Sets non-blocking mode, IP_PKTINFO, DF (IP_PMTUDISC_PROBE), probes GSO, enables GRO.
        let state = UdpSocketState::new((&std_socket).into())?;
        let send_buffer = state.send_buffer_size((&std_socket).into())?;
        let recv_buffer = state.recv_buffer_size((&std_socket).into())?;
        let local_addr = std_socket.local_addr()?;
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;
        tracing::debug!(
            %local_addr,
            send_buffer,
            recv_buffer,
            gso = state.max_gso_segments(),
            gro = state.gro_segments(),
            "UDP socket bound"
        );
        Ok(Self {
            socket,
            state,
            local_addr,
            send_buffer,
            recv_buffer,
            counters: Counters::default(),
        })
    }

    /// The address the socket is bound to (with the ephemeral port filled in).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Most datagrams one GSO `sendmsg` may carry on this socket (1 without GSO). It drops
    /// to 1 for good if the kernel or driver rejects a segmented send.
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Most datagrams one GRO receive buffer may hold (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    /// Datagrams of `segment_size` bytes that one `sendmsg` carries: bounded both by
    /// [`max_gso_segments`](Self::max_gso_segments) and by [`MAX_UDP_PAYLOAD`] in total.
    pub fn segments_per_send(&self, segment_size: usize) -> usize {
        let by_size = MAX_UDP_PAYLOAD / segment_size.max(1);
        self.max_gso_segments().min(by_size).max(1)
    }

    /// `SO_SNDBUF` as granted by the kernel (Linux reports twice the accounted size).
    pub fn send_buffer_size(&self) -> usize {
        self.send_buffer
    }

    /// `SO_RCVBUF` as granted by the kernel (Linux reports twice the accounted size).
    pub fn recv_buffer_size(&self) -> usize {
        self.recv_buffer
    }

    /// Counters since the socket was bound.
    pub fn stats(&self) -> UdpStats {
        let c = &self.counters;
        UdpStats {
            datagrams_sent: c.datagrams_sent.load(Ordering::Relaxed),
            send_syscalls: c.send_syscalls.load(Ordering::Relaxed),
            max_segments_per_send: c.max_segments_per_send.load(Ordering::Relaxed),
            datagrams_received: c.datagrams_received.load(Ordering::Relaxed),
            recv_syscalls: c.recv_syscalls.load(Ordering::Relaxed),
            max_segments_per_recv_buffer: c.max_segments_per_recv_buffer.load(Ordering::Relaxed),
        }
    }

    /// Sends one datagram, waiting while the send buffer is full.
    pub async fn send_to(&self, destination: SocketAddr, datagram: &[u8]) -> Result<(), UdpError> {
        loop {
            self.socket.writable().await?;
            match self.try_send_to(destination, datagram) {
                Err(UdpError::WouldBlock) => continue,
                other => return other,
            }
        }
    }

    /// Sends one datagram if the socket is ready now.
    pub fn try_send_to(&self, destination: SocketAddr, datagram: &[u8]) -> Result<(), UdpError> {
        self.transmit(destination, datagram, None)
            .map_err(|err| UdpError::from_io(err, datagram.len()))?;
        self.count_send(1);
        Ok(())
    }

    /// Sends `contents` to `destination` as datagrams of `segment_size` bytes (the last may
    /// be shorter), waiting while the send buffer is full.
    ///
    /// Each `sendmsg` carries [`segments_per_send`](Self::segments_per_send) datagrams; if
    /// the kernel rejects segmentation, the rest goes one datagram per call. Empty
    /// `contents` sends nothing. On error, leading datagrams may already have left.
    pub async fn send_batch(
        &self,
        destination: SocketAddr,
        segment_size: usize,
        contents: &[u8],
    ) -> Result<(), UdpError> {
        let mut rest = contents;
        while !rest.is_empty() {
            self.socket.writable().await?;
            match self.try_send_batch(destination, segment_size, rest) {
                Ok(sent) => rest = rest.get(sent.saturating_mul(segment_size)..).unwrap_or(&[]),
                Err(UdpError::WouldBlock) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Polls to send a leading part of a batch (see [`send_batch`](Self::send_batch)).
    ///
    /// `Ready(Ok(n))` means the first `n` datagrams left (`n` is 0 only for empty
    /// `contents`); call again with the rest.
    pub fn poll_send_batch(
        &self,
        cx: &mut Context<'_>,
        destination: SocketAddr,
        segment_size: usize,
        contents: &[u8],
    ) -> Poll<Result<usize, UdpError>> {
        loop {
            ready!(self.socket.poll_send_ready(cx))?;
            match self.try_send_batch(destination, segment_size, contents) {
                Err(UdpError::WouldBlock) => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// Sends as much of a batch as the socket takes now (see [`send_batch`](Self::send_batch)).
    ///
    /// Returns how many leading datagrams left, at least one unless `contents` is empty;
    /// [`UdpError::WouldBlock`] if none could. An error after some progress is held back
    /// and returned by the next call, which starts at the datagram that failed.
    pub fn try_send_batch(
        &self,
        destination: SocketAddr,
        segment_size: usize,
        contents: &[u8],
    ) -> Result<usize, UdpError> {
        if segment_size == 0 {
            return Err(UdpError::InvalidBatch("segment size is zero"));
        }
        let mut sent = 0;
        let mut rest = contents;
        while !rest.is_empty() {
            let per_call = self.segments_per_send(segment_size);
            let (chunk, after) = rest.split_at(rest.len().min(per_call * segment_size));
            let segments = chunk.len().div_ceil(segment_size);
            let segment = (segments > 1).then_some(segment_size);
            match self.transmit(destination, chunk, segment) {
                Ok(()) => {
                    self.count_send(segments);
                    sent += segments;
                    rest = after;
                }
                // quinn-udp turned GSO off after EIO/EINVAL: resend this chunk one by one.
                Err(_) if segments > 1 && self.max_gso_segments() == 1 => continue,
                Err(_) if sent > 0 => break,
                Err(err) => return Err(UdpError::from_io(err, segment_size.min(chunk.len()))),
            }
        }
        Ok(sent)
    }

    /// One `sendmsg` through quinn-udp, clearing tokio's readiness on `WouldBlock`.
    fn transmit(
        &self,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        self.socket.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.socket).into(), &transmit)
        })
    }

    fn count_send(&self, segments: usize) {
        let c = &self.counters;
        let segments = segments as u64;
        c.datagrams_sent.fetch_add(segments, Ordering::Relaxed);
        c.send_syscalls.fetch_add(1, Ordering::Relaxed);
        c.max_segments_per_send
            .fetch_max(segments, Ordering::Relaxed);
    }

    /// Receives at least one datagram into `buf`, waiting until one arrives, and returns
    /// the datagrams with their sources.
    pub async fn recv_batch<'b>(&self, buf: &'b mut RecvBuf) -> Result<Datagrams<'b>, UdpError> {
        loop {
            self.socket.readable().await?;
            match self.recv_into(buf) {
                Ok(_) => return Ok(buf.datagrams()),
                Err(UdpError::WouldBlock) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Receives whatever is queued now into `buf`; [`UdpError::WouldBlock`] if nothing is.
    pub fn try_recv_batch<'b>(&self, buf: &'b mut RecvBuf) -> Result<Datagrams<'b>, UdpError> {
        self.recv_into(buf)?;
        Ok(buf.datagrams())
    }

    /// Polls to receive into `buf`; on `Ready(Ok(n))`, [`RecvBuf::datagrams`] yields the
    /// `n` datagrams received.
    pub fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        buf: &mut RecvBuf,
    ) -> Poll<Result<usize, UdpError>> {
        loop {
            ready!(self.socket.poll_recv_ready(cx))?;
            match self.recv_into(buf) {
                Err(UdpError::WouldBlock) => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// One `recvmmsg` into the arena of `buf`; returns the number of datagrams.
    fn recv_into(&self, buf: &mut RecvBuf) -> Result<usize, UdpError> {
        buf.filled = 0;
        let slots = buf.slots;
        let mut chunks = buf.arena.chunks_mut(SLOT_LEN);
        let mut iovs: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let (Some(iovs), Some(meta)) = (iovs.get_mut(..slots), buf.meta.get_mut(..slots)) else {
            return Err(UdpError::InvalidBatch("receive buffer has no slots"));
        };
        let filled = self
            .socket
            .try_io(Interest::READABLE, || {
                self.state.recv((&self.socket).into(), iovs, meta)
            })
            .map_err(|err| UdpError::from_io(err, 0))?;
        buf.filled = filled;

        let mut datagrams = 0;
        let mut most = 0;
        for meta in buf.meta.iter().take(filled) {
            let segments = segment_count(meta.len, meta.stride) as u64;
            datagrams += segments;
            most = most.max(segments);
        }
        let c = &self.counters;
        c.datagrams_received.fetch_add(datagrams, Ordering::Relaxed);
        c.recv_syscalls.fetch_add(1, Ordering::Relaxed);
        c.max_segments_per_recv_buffer
            .fetch_max(most, Ordering::Relaxed);
        Ok(datagrams as usize)
    }
}

/// Datagrams in a received buffer of `len` bytes cut every `stride` bytes (an empty
/// datagram counts as one).
fn segment_count(len: usize, stride: usize) -> usize {
    if len == 0 || stride == 0 {
        1
    } else {
        len.div_ceil(stride)
    }
}

/// A preallocated receive arena for [`UdpIo::recv_batch`]: up to [`RECV_BATCH`] slots of
/// 64 KiB, allocated once (zeroed lazily by the OS) and reused for every call, so the
/// receive path does no per-datagram allocation.
#[derive(Debug)]
pub struct RecvBuf {
    arena: Box<[u8]>,
    slots: usize,
    meta: [RecvMeta; RECV_BATCH],
    filled: usize,
}

impl RecvBuf {
    /// An arena of [`RECV_BATCH`] slots (2 MiB of address space).
    pub fn new() -> Self {
        Self::with_slots(RECV_BATCH)
    }

    /// An arena of `slots` slots (clamped to `1..=RECV_BATCH`), for sockets that see
    /// little traffic and need not take a full batch per call.
    pub fn with_slots(slots: usize) -> Self {
        let slots = slots.clamp(1, RECV_BATCH);
        Self {
            arena: vec![0; slots * SLOT_LEN].into_boxed_slice(),
            slots,
            meta: [RecvMeta::default(); RECV_BATCH],
            filled: 0,
        }
    }

    /// The datagrams of the last receive, in arrival order with their sources.
    pub fn datagrams(&self) -> Datagrams<'_> {
        Datagrams {
            buf: self,
            slot: 0,
            offset: 0,
        }
    }
}

impl RecvBuf {
    /// Calls `f` with each datagram of the last receive and its source, in arrival order,
    /// mutably: the protocol core decrypts in place, so no datagram is copied.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(SocketAddr, &mut [u8])) {
        for (slot, meta) in self.meta.iter().take(self.filled).enumerate() {
            let start = slot * SLOT_LEN;
            let len = meta.len.min(SLOT_LEN);
            let Some(data) = self.arena.get_mut(start..start + len) else {
                continue;
            };
            let source = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
            if len == 0 {
                f(source, data);
                continue;
            }
            let stride = if meta.stride == 0 { len } else { meta.stride };
            for datagram in data.chunks_mut(stride) {
                f(source, datagram);
            }
        }
    }

    /// The datagrams of the last receive as `(source, range into the arena)`, for callers
    /// that must interleave awaits with processing; see [`RecvBuf::bytes_mut`].
    pub fn spans(&self) -> impl Iterator<Item = (SocketAddr, std::ops::Range<usize>)> + '_ {
        self.meta
            .iter()
            .take(self.filled)
            .enumerate()
            .flat_map(|(slot, meta)| {
                let start = slot * SLOT_LEN;
                let len = meta.len.min(SLOT_LEN);
                let stride = if meta.stride == 0 {
                    len.max(1)
                } else {
                    meta.stride
                };
                let source = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
                let count = segment_count(len, stride);
                (0..count).map(move |i| {
                    let from = start + (i * stride).min(len);
                    let to = start + ((i + 1) * stride).min(len);
                    (source, from..to)
                })
            })
    }

    /// The bytes of one span from [`RecvBuf::spans`], mutably (`None` if out of range).
    pub fn bytes_mut(&mut self, range: std::ops::Range<usize>) -> Option<&mut [u8]> {
        self.arena.get_mut(range)
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// Iterator over the datagrams of a [`RecvBuf`], GRO super-buffers split by their stride.
#[derive(Debug, Clone)]
pub struct Datagrams<'b> {
    buf: &'b RecvBuf,
    slot: usize,
    offset: usize,
}

impl<'b> Iterator for Datagrams<'b> {
    type Item = (SocketAddr, &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.slot < self.buf.filled {
            let meta = self.buf.meta.get(self.slot)?;
            let start = self.slot * SLOT_LEN;
            let len = meta.len.min(SLOT_LEN);
            let data = self.buf.arena.get(start..start + len)?;
            // An empty datagram is still one datagram: yield it once.
            if self.offset < len || (len == 0 && self.offset == 0) {
                let stride = if meta.stride == 0 { len } else { meta.stride };
                let end = (self.offset + stride).min(len);
                let datagram = data.get(self.offset..end)?;
                self.offset = end.max(1);
                let source = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
                return Some((source, datagram));
            }
            self.slot += 1;
            self.offset = 0;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(entries: &[(usize, usize)]) -> RecvBuf {
        let mut buf = RecvBuf::with_slots(entries.len());
        for (slot, &(len, stride)) in entries.iter().enumerate() {
            let mut meta = RecvMeta::default();
            meta.addr = "127.0.0.1:9".parse().unwrap();
            meta.len = len;
            meta.stride = stride;
            buf.meta[slot] = meta;
            for i in 0..len {
                buf.arena[slot * SLOT_LEN + i] = (i % 251) as u8;
            }
        }
        buf.filled = entries.len();
        buf
    }

    #[test]
    fn splits_gro_buffers_by_stride() {
        let buf = filled(&[(2500, 1000), (700, 700), (0, 0), (3000, 1000)]);
        let sizes: Vec<usize> = buf.datagrams().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500, 700, 0, 1000, 1000, 1000]);
        let (source, first) = buf.datagrams().nth(1).unwrap();
        assert_eq!(source, "127.0.0.1:9".parse().unwrap());
        assert_eq!(first[0], (1000 % 251) as u8);
    }

    #[test]
    fn spans_and_for_each_mut_match_datagrams() {
        let mut buf = filled(&[(2500, 1000), (700, 700), (0, 0), (3000, 1000)]);
        let expect: Vec<Vec<u8>> = buf.datagrams().map(|(_, d)| d.to_vec()).collect();
        let spans: Vec<_> = buf.spans().collect();
        let by_span: Vec<Vec<u8>> = spans
            .iter()
            .map(|(_, r)| buf.bytes_mut(r.clone()).unwrap().to_vec())
            .collect();
        assert_eq!(by_span, expect);
        let mut by_each = Vec::new();
        buf.for_each_mut(|_, d| by_each.push(d.to_vec()));
        assert_eq!(by_each, expect);
    }

    #[test]
    fn empty_receive_yields_nothing() {
        assert_eq!(RecvBuf::with_slots(0).datagrams().count(), 0);
        assert_eq!(segment_count(0, 0), 1);
        assert_eq!(segment_count(2401, 1200), 3);
    }
}
