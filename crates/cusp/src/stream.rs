//! Unidirectional streams: [`OutStream`] (`AsyncWrite`) and [`InStream`] (`AsyncRead`).
//!
//! A handle is a [`StreamHandle`] into the core plus a reference to the endpoint; each
//! operation locks the endpoint's state briefly, calls the core and, if it must wait,
//! leaves its waker in the stream's slot for the driver to wake on the matching
//! [`HostEvent`](cusp_proto::host::HostEvent). Data is copied once: from the caller's
//! buffer into the core's send queue, and from the core's receive chunks into the
//! caller's buffer ([`OutStream::write_bytes`] and [`InStream::read_chunk`] avoid even that).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes};
use cusp_proto::crypto::PublicKey;
use cusp_proto::endpoint::HostLayer;
use cusp_proto::host::{InStreamInfo, OutStreamInfo, StreamHandle, WriteError};
use cusp_proto::stream::ReadResult;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::endpoint::{End, EpRef, State, wake_all};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::slots::Slot;

/// The writing end of a stream (`spec/streams.md` §5.5).
///
/// * `AsyncWrite`: `poll_write` copies into the core's send queue up to the stream's send
///   buffer (and the host's), so `write_all` works; a writer blocked on a full buffer is
///   woken once the low-water mark is free ([`OutStream::set_low_water`]).
///   `poll_shutdown` is CUSP's shutdown and resolves when every byte and the end of stream
///   are acknowledged by the peer's transport (an error if the stream was reset first).
/// * [`OutStream::finish`] does the same and says whether everything was delivered.
/// * **Drop** without `finish`/`shutdown` resets the stream (`spec/streams.md` §5.8); after
///   a shutdown the stream completes on its own.
pub struct OutStream {
    ep: EpRef,
    h: StreamHandle,
    shutdown: bool,
    /// Reset or completed: Drop has nothing to do but forget the slot.
    done: bool,
}

impl std::fmt::Debug for OutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutStream")
            .field("handle", &self.h)
            .finish()
    }
}

impl OutStream {
    pub(crate) fn new(ep: EpRef, h: StreamHandle) -> OutStream {
        OutStream {
            ep,
            h,
            shutdown: false,
            done: false,
        }
    }

    /// The core's name for the stream (not the wire id).
    pub fn handle(&self) -> StreamHandle {
        self.h
    }

    /// The end of the stream if it has ended, dispatching queued events if the core
    /// forgot the handle already.
    fn end_now(&self, wake: &mut Vec<Waker>) -> Option<End> {
        let mut st = self.ep.0.lock();
        if st.closed {
            return Some(End::Closed);
        }
        match st.streams.get(self.h).and_then(|s| s.end()) {
            Some(e) => Some(e),
            None if st.ep.hosts().out_stream_info(self.h).is_none() => {
                Some(st.resolve_end(&self.ep.0, self.h, wake))
            }
            None => None,
        }
    }

    fn poll_write_inner(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut cusp_proto::host::HostTable, Instant) -> Result<usize, WriteError>,
        empty: bool,
    ) -> Poll<Result<usize>> {
        if self.shutdown {
            return Poll::Ready(Err(Error::Finished));
        }
        let mut wake = Vec::new();
        let mut st = self.ep.0.lock();
        if st.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if let Some(end) = st.streams.get(self.h).and_then(|s| s.end()) {
            return Poll::Ready(Err(end.error()));
        }
        let now = Instant::now();
        let res = match write(st.ep.hosts_mut(), now) {
            Ok(0) if !empty => {
                st.streams.entry(self.h).waiter = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Ok(n) => {
                drop(st);
                self.ep.wake_driver();
                return Poll::Ready(Ok(n));
            }
            Err(WriteError::UnknownStream) => st.resolve_end(&self.ep.0, self.h, &mut wake),
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        drop(st);
        wake_all(&mut wake);
        Poll::Ready(Err(res.error()))
    }

    /// Writes a prefix of `buf`: at least one byte unless the stream ended.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let h = self.h;
        std::future::poll_fn(|cx| {
            self.poll_write_inner(cx, |t, now| t.write(now, h, buf), buf.is_empty())
        })
        .await
    }

    /// Queues all of `data` without copying it (the core keeps slices of the `Bytes`).
    pub async fn write_bytes(&mut self, mut data: Bytes) -> Result<()> {
        let h = self.h;
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| {
                self.poll_write_inner(cx, |t, now| t.write_bytes(now, h, &data), false)
            })
            .await?;
            data.advance(n);
        }
        Ok(())
    }

    /// Ends the stream after the bytes written (CUSP shutdown) at once, and returns a
    /// future that waits until the peer's transport acknowledged everything: `Ok(true)`;
    /// `Ok(false)` if the stream was reset first. Errors: [`Error::ContactFailed`],
    /// [`Error::Closed`]. It does not wait for the peer application to read the data. No
    /// timeout: a vanished peer is retried forever (`spec/streams.md` §3.7), so wrap it in
    /// one, e.g. [`OutStream::finish_within`].
    ///
    /// The shutdown happens in this call, not at the first poll, so the end of stream
    /// leaves with the last bytes even if the future is spawned and runs later.
    pub fn finish(mut self) -> impl Future<Output = Result<bool>> + Send + 'static {
        let ended = self.start_finish();
        async move {
            match ended {
                Some(r) => r,
                None => std::future::poll_fn(|cx| self.poll_finish(cx)).await,
            }
        }
    }

    /// [`OutStream::finish`] with a time limit: [`Error::Timeout`] (and the stream is
    /// reset) if the peer did not acknowledge everything in time.
    pub fn finish_within(
        mut self,
        limit: std::time::Duration,
    ) -> impl Future<Output = Result<bool>> + Send + 'static {
        let ended = self.start_finish();
        async move {
            if let Some(r) = ended {
                return r;
            }
            let wait = std::future::poll_fn(|cx| self.poll_finish(cx));
            match tokio::time::timeout(limit, wait).await {
                Ok(r) => r,
                Err(_) => {
                    self.reset_inner();
                    Err(Error::Timeout)
                }
            }
        }
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool>> {
        if let Some(r) = self.start_finish() {
            return Poll::Ready(r);
        }
        let mut st = self.ep.0.lock();
        let end = match st.streams.get(self.h).and_then(|s| s.end()) {
            Some(e) => Some(e),
            None if st.closed => Some(End::Closed),
            None => {
                st.streams.entry(self.h).waiter = Some(cx.waker().clone());
                None
            }
        };
        drop(st);
        match end {
            None => Poll::Pending,
            Some(end) => {
                self.done = true;
                Poll::Ready(finish_outcome(end))
            }
        }
    }

    /// Shuts the stream down unless that was done already; `Some` if the outcome is known
    /// at once (the stream ended before, or the endpoint is closed).
    fn start_finish(&mut self) -> Option<Result<bool>> {
        let mut wake = Vec::new();
        if !self.shutdown {
            let mut st = self.ep.0.lock();
            if st.closed {
                return Some(Err(Error::Closed));
            }
            let now = Instant::now();
            match st.ep.hosts_mut().shutdown(now, self.h) {
                Ok(()) => {
                    self.shutdown = true;
                    st.streams.entry(self.h).rare_mut().shutdown = true;
                    drop(st);
                    self.ep.wake_driver();
                }
                Err(cusp_proto::host::ShutdownError::AlreadyShutdown) => self.shutdown = true,
                Err(_) => {
                    let end = match st.streams.get(self.h).and_then(|s| s.end()) {
                        Some(e) => e,
                        None => st.resolve_end(&self.ep.0, self.h, &mut wake),
                    };
                    drop(st);
                    wake_all(&mut wake);
                    self.done = true;
                    return Some(finish_outcome(end));
                }
            }
        }
        None
    }

    /// Aborts the stream: queued data is dropped and the reader is told (guaranteed to be
    /// seen if before a shutdown, `spec/streams.md` §5.5).
    pub fn reset(mut self) {
        self.reset_inner();
    }

    fn reset_inner(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut st = self.ep.0.lock();
        let now = Instant::now();
        let _ = st.ep.hosts_mut().reset(now, self.h);
        st.ep.poll_requests(now);
        drop(st);
        self.ep.wake_driver();
    }

    /// Sets the priority (finite; default 0; higher is served first, negative only uses
    /// spare room, `spec/streams.md` §3.2).
    pub fn set_priority(&self, priority: f32) -> Result<()> {
        let mut st = self.ep.0.lock();
        match st.ep.hosts_mut().set_priority(self.h, priority) {
            Ok(()) => {
                drop(st);
                self.ep.wake_driver();
                Ok(())
            }
            Err(cusp_proto::host::SetPriorityError::NotFinite(p)) => Err(Error::InvalidPriority(p)),
            Err(_) => {
                drop(st);
                let mut wake = Vec::new();
                let end = self.end_now(&mut wake).unwrap_or(End::Reset);
                wake_all(&mut wake);
                Err(end.error())
            }
        }
    }

    /// Sets the send low-water mark: a blocked writer is woken once this many bytes of
    /// send buffer are free (clamped to the buffer; 0: any room). New streams get
    /// [`EndpointConfig::send_low_water`](crate::EndpointConfig::send_low_water).
    pub fn set_low_water(&self, bytes: usize) -> Result<()> {
        let mut st = self.ep.0.lock();
        st.ep
            .hosts_mut()
            .set_send_low_water(self.h, bytes)
            .map_err(|_| Error::Reset)
    }

    /// A snapshot of state and counters (`None` once the stream completed).
    pub fn info(&self) -> Option<OutStreamInfo> {
        self.ep.0.lock().ep.hosts().out_stream_info(self.h)
    }

    /// The host the stream goes to, once known (a stream from
    /// [`Endpoint::open`](crate::Endpoint::open) learns it when the channel establishes).
    pub fn host(&self) -> Option<Host> {
        let st = self.ep.0.lock();
        let peer = st
            .streams
            .get(self.h)
            .and_then(|s| s.peer())
            .or_else(|| st.ep.hosts().stream_peer(self.h))?;
        drop(st);
        Some(Host::new(self.ep.clone(), peer))
    }

    /// Waits until the stream's host is known: at once for a stream of a known host, when
    /// the channel establishes for one from [`Endpoint::open`](crate::Endpoint::open).
    /// [`Error::ContactFailed`] if the handshake gave up.
    pub async fn established(&self) -> Result<Host> {
        let peer = std::future::poll_fn(|cx| {
            let mut st = self.ep.0.lock();
            if st.closed {
                return Poll::Ready(Err(Error::Closed));
            }
            let core_peer = st.ep.hosts().stream_peer(self.h);
            let s = st.streams.get(self.h);
            if let Some(p) = s.and_then(Slot::peer).or(core_peer) {
                return Poll::Ready(Ok(p));
            }
            if let Some(end) = s.and_then(Slot::end) {
                return Poll::Ready(Err(end.error()));
            }
            st.streams.entry(self.h).waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(Host::new(self.ep.clone(), peer))
    }
}

/// What [`OutStream::finish`] reports for a stream that ended.
fn finish_outcome(end: End) -> Result<bool> {
    match end {
        End::Finished(d) => Ok(d),
        End::Reset => Ok(false),
        e => Err(e.error()),
    }
}

impl AsyncWrite for OutStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let h = this.h;
        this.poll_write_inner(cx, |t, now| t.write(now, h, buf), buf.is_empty())
            .map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are in the core's queue already; the driver sends them.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().poll_finish(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(true)) => Poll::Ready(Ok(())),
            Poll::Ready(Ok(false)) => Poll::Ready(Err(Error::Reset.into())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
}

impl Drop for OutStream {
    fn drop(&mut self) {
        let mut wake = Vec::new();
        let mut st = self.ep.0.lock();
        let now = Instant::now();
        let slot = st.drop_handle(&self.ep.0, self.h, &mut wake);
        let mut reset = false;
        if let Some(addr) = slot.contact()
            && let Some(v) = st.contacts.get_mut(&addr)
        {
            v.retain(|h| *h != self.h);
        }
        if !self.done && !self.shutdown && slot.end().is_none() && !st.closed {
            // spec: streams.md §5.8 dropping a handle without shutdown resets it
            reset = st.ep.hosts_mut().reset(now, self.h).is_ok();
            st.ep.poll_requests(now);
        }
        drop(st);
        wake_all(&mut wake);
        if reset {
            self.ep.wake_driver();
        }
    }
}

/// The reading end of a stream (`spec/streams.md` §5.4).
///
/// * `AsyncRead`: reads what the core has in order; end of stream (the writer's shutdown,
///   all bytes read) is a 0-byte read; a reset is an [`io::Error`] of kind
///   `ConnectionReset` wrapping [`Error::Reset`] (see [`Error::from_io`]).
/// * [`InStream::read_to_end`] collects the whole message up to a size limit.
/// * **Drop** before the end of stream resets it (`spec/streams.md` §5.8), which tells the
///   writer.
pub struct InStream {
    ep: EpRef,
    h: StreamHandle,
    service: u16,
    eof: bool,
    done: bool,
    /// Discarded by the driver under the lock: Drop must not touch the endpoint.
    forgotten: bool,
}

impl std::fmt::Debug for InStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InStream")
            .field("handle", &self.h)
            .field("service", &self.service)
            .finish()
    }
}

impl InStream {
    pub(crate) fn new(ep: EpRef, h: StreamHandle, service: u16) -> InStream {
        InStream {
            ep,
            h,
            service,
            eof: false,
            done: false,
            forgotten: false,
        }
    }

    /// Makes Drop a no-op (used by the driver, which holds the lock when it must discard a
    /// stream nobody accepted; it resets the stream itself).
    pub(crate) fn forget(mut self) {
        self.forgotten = true;
    }

    /// The core's name for the stream (not the wire id).
    pub fn handle(&self) -> StreamHandle {
        self.h
    }

    /// The service the peer opened the stream to.
    pub fn service(&self) -> u16 {
        self.service
    }

    /// The peer's public key.
    ///
    /// Not kept in the handle (an idle stream should cost little): the core knows it while
    /// the stream lives, the stream's slot once it ended (from the final event, or cached
    /// when the end of stream was read).
    pub fn peer(&self) -> PublicKey {
        let known = |st: &State| {
            st.streams
                .get(self.h)
                .and_then(Slot::peer)
                .or_else(|| st.ep.hosts().stream_peer(self.h))
        };
        let mut st = self.ep.0.lock();
        if let Some(p) = known(&st) {
            return p;
        }
        // The core forgot the stream: its final event, naming the peer, is still queued.
        let mut wake = Vec::new();
        st.dispatch(&self.ep.0, &mut wake);
        let peer = known(&st).expect("an in-stream's peer is known until its handle goes");
        drop(st);
        wake_all(&mut wake);
        peer
    }

    /// A snapshot of state and counters (`None` once the stream completed).
    pub fn info(&self) -> Option<InStreamInfo> {
        self.ep.0.lock().ep.hosts().in_stream_info(self.h)
    }

    /// Runs `read` on the core while it yields data (`Data(n)`, possibly 0); `WouldBlock`
    /// stops (no data now, or the caller's buffer is full); maps the stream's end.
    /// `Ready(Ok(true))`: data was read; `Ready(Ok(false))`: end of stream.
    fn poll_core(
        &mut self,
        cx: &mut Context<'_>,
        mut read: impl FnMut(&mut cusp_proto::host::HostTable) -> Option<ReadResult<usize>>,
    ) -> Poll<Result<bool>> {
        if self.eof {
            return Poll::Ready(Ok(false));
        }
        if self.done {
            return Poll::Ready(Err(Error::Reset));
        }
        let mut wake = Vec::new();
        let mut st = self.ep.0.lock();
        if st.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if let Some(end) = st.streams.get(self.h).and_then(|s| s.end()) {
            self.done = true;
            return Poll::Ready(Err(end.error()));
        }
        // Reading the end of stream retires it in the core, which then forgets the peer.
        let peer = st.ep.hosts().stream_peer(self.h);
        let mut got = 0;
        let result = loop {
            match read(st.ep.hosts_mut()) {
                Some(ReadResult::Data(n)) => got += n,
                Some(ReadResult::Finished) => {
                    self.eof = true;
                    break None;
                }
                Some(ReadResult::Reset) => break Some(End::Reset),
                Some(ReadResult::WouldBlock) => break None,
                None => break Some(st.resolve_end(&self.ep.0, self.h, &mut wake)),
            }
        };
        if let Some(end) = result {
            drop(st);
            wake_all(&mut wake);
            self.done = true;
            return Poll::Ready(Err(end.error()));
        }
        if got > 0 || self.eof {
            // Reading opened the window: the host may owe the peer a barrier update.
            // Reading the end retired the stream: if it was the host's last live one,
            // the channel owes the peer its finish flag (graceful close of an idle
            // channel), and only the driver sends it; nothing else would wake it.
            if self.eof {
                st.streams.entry(self.h).rare_mut().peer = peer;
            }
            let hosts = st.ep.hosts();
            let poke = peer.is_some_and(|p| {
                (got > 0 && hosts.priority(&p).is_some()) || (self.eof && hosts.is_zombie(&p))
            });
            drop(st);
            if poke {
                self.ep.wake_driver();
            }
            return Poll::Ready(Ok(got > 0));
        }
        st.streams.entry(self.h).waiter = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Reads the next buffered chunk of at most `max` bytes without copying; `None` at the
    /// end of stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>> {
        let h = self.h;
        let mut chunk = None;
        let more = std::future::poll_fn(|cx| {
            self.poll_core(cx, |t| {
                if chunk.is_some() {
                    return Some(ReadResult::WouldBlock);
                }
                Some(match t.read_chunk(h, max.max(1)).ok()? {
                    ReadResult::Data(b) if b.is_empty() => ReadResult::Data(0),
                    ReadResult::Data(b) => {
                        let n = b.len();
                        chunk = Some(b);
                        ReadResult::Data(n)
                    }
                    ReadResult::Finished => ReadResult::Finished,
                    ReadResult::Reset => ReadResult::Reset,
                    ReadResult::WouldBlock => ReadResult::WouldBlock,
                })
            })
        })
        .await?;
        Ok(if more { chunk } else { None })
    }

    /// Reads until the end of stream and returns the bytes. More than `limit` bytes: the
    /// stream is reset and [`Error::TooLarge`] returned.
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>> {
        let h = self.h;
        let mut out = Vec::new();
        loop {
            let more = std::future::poll_fn(|cx| {
                let out = &mut out;
                self.poll_core(cx, |t| {
                    if out.len() > limit {
                        return Some(ReadResult::WouldBlock);
                    }
                    t.read_to_vec(h, out).ok()
                })
            })
            .await?;
            if out.len() > limit {
                self.reset_inner();
                return Err(Error::TooLarge { limit });
            }
            if !more {
                return Ok(out);
            }
        }
    }

    /// Aborts the stream: buffered data is discarded and the writer is told.
    pub fn reset(mut self) {
        self.reset_inner();
    }

    fn reset_inner(&mut self) {
        if self.done || self.eof {
            return;
        }
        self.done = true;
        let mut st = self.ep.0.lock();
        let now = Instant::now();
        let _ = st.ep.hosts_mut().reset(now, self.h);
        drop(st);
        self.ep.wake_driver();
    }
}

impl AsyncRead for InStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let h = this.h;
        this.poll_core(cx, |t| {
            if buf.remaining() == 0 {
                return Some(ReadResult::WouldBlock);
            }
            Some(match t.read_chunk(h, buf.remaining()).ok()? {
                ReadResult::Data(b) => {
                    buf.put_slice(&b);
                    ReadResult::Data(b.len())
                }
                ReadResult::Finished => ReadResult::Finished,
                ReadResult::Reset => ReadResult::Reset,
                ReadResult::WouldBlock => ReadResult::WouldBlock,
            })
        })
        .map(|r| r.map(|_| ()).map_err(io::Error::from))
    }
}

impl Drop for InStream {
    fn drop(&mut self) {
        if self.forgotten {
            return;
        }
        let mut wake = Vec::new();
        let mut st = self.ep.0.lock();
        st.drop_handle(&self.ep.0, self.h, &mut wake);
        let reset = !self.done && !self.eof && !st.closed;
        if reset {
            // spec: streams.md §5.8 dropping a handle without reading to the end resets it
            let _ = st.ep.hosts_mut().reset(Instant::now(), self.h);
        }
        drop(st);
        wake_all(&mut wake);
        if reset {
            self.ep.wake_driver();
        }
    }
}
