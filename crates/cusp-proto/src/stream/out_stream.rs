//! The writer side of a stream (`spec/streams.md` §2.1).
//!
//! Bytes written by the application sit in a send queue keyed by stream
//! offset until a packet takes them; in-flight pieces are remembered per
//! packet ([`OutTicket`]); lost pieces go back into the queue at their
//! offsets and are re-cut with whatever else is queued next to them.
//!
//! Instead of the reference's "one pending write + callback" the application
//! gets a bounded send buffer: [`OutStream::write`] accepts as many bytes as
//! [`OutStream::writable_space`] allows. The limit counts every byte not yet
//! acknowledged (queued, lost or in flight), so it is a hard memory bound and
//! also caps one stream's throughput at about `send_buffer / RTT`.
//!
//! Offsets are absolute 64-bit positions in the API and the tickets; the
//! stream record keeps one (`send_offset`) and the rest as 32-bit distances or
//! serial values near it (see [`OutStream`]), since every position it tracks
//! lies within 2^31 of the written end.
//!
//! Memory: the queues live in a `SendBuf` allocated at the first write and
//! released as soon as every byte written was acknowledged, so an idle stream
//! holds no allocation of its own.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::codec::{data_header_len, pad4, write_data_header, write_writer_resets};
use super::{
    DEFAULT_PRIORITY, MAX_SEGMENT_DATA, MIN_WINDOW, SILLY_WINDOW, WINDOW_MAX, unwrap_offset,
};

/// Largest configurable send buffer: keeps every unacknowledged byte within
/// 2^30 of the barrier so serial offsets stay unambiguous.
pub const MAX_SEND_BUFFER: usize = 1 << 30;

/// Per-stream settings of an [`OutStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutStreamConfig {
    /// Maximum number of unacknowledged bytes (queued + in flight) the stream
    /// holds. Default 1 MiB: 48 reference windows (`MIN_WINDOW` = 21568), enough
    /// for ~10 MB/s per stream at 100 ms RTT; clamped to [`MAX_SEND_BUFFER`].
    pub send_buffer: usize,
}

impl OutStreamConfig {
    /// The send buffer size, clamped to [`MAX_SEND_BUFFER`]: the most bytes a
    /// stream holds unacknowledged.
    pub fn limit(&self) -> usize {
        self.send_buffer.min(MAX_SEND_BUFFER)
    }
}

impl Default for OutStreamConfig {
    fn default() -> Self {
        OutStreamConfig {
            send_buffer: 1 << 20,
        }
    }
}

/// API view of the stream state (`spec/streams.md` §2.1.1 "State mapping").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutStreamState {
    /// Writable, or shut down but not every byte and the EOF acknowledged yet.
    Active,
    /// Every byte and the EOF were acknowledged.
    Shutdown,
    /// Reset locally or by the reader.
    Reset,
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The stream was reset (locally or by the reader).
    #[error("stream was reset")]
    Reset,
    /// [`OutStream::shutdown`] was called already.
    #[error("stream was shut down")]
    Finished,
}

/// Why a shutdown was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    /// The stream was reset; the shutdown outcome is `false`.
    #[error("stream was reset")]
    Reset,
    /// [`OutStream::shutdown`] was called already.
    #[error("stream was shut down already")]
    AlreadyShutdown,
}

/// A priority that is NaN or infinite (`spec/streams.md` §2.1.2 `set_priority`).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("stream priority must be finite, got {0}")]
pub struct PriorityError(pub f32);

// spec: streams.md §2.1.1 state
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shut {
    /// The EOF still has to be sent (again).
    Retransmit,
    /// A segment carrying the EOF is in flight.
    Inflight,
    /// The EOF was acknowledged.
    Acked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResetPhase {
    /// WRITER_RESETS must be sent; `lost` raises it to priority +inf.
    ToSend { lost: bool },
    /// WRITER_RESETS is in flight.
    Inflight,
    /// Nothing more to do: acknowledged, or reset by the reader.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    Shutdown(Shut),
    Reset(ResetPhase),
}

#[derive(Debug, PartialEq, Eq)]
enum TicketKind {
    Data { start: u64, len: u32, eof: bool },
    WriterResets,
}

/// What one pulled segment put into a packet. Hand it back exactly once to
/// [`OutStream::on_packet_outcome`] when the channel reports the packet acked
/// or lost (deliberately neither `Clone` nor `Copy`).
#[derive(Debug, PartialEq, Eq)]
pub struct OutTicket(TicketKind);

/// Non-overlapping pieces of a stream, sorted by absolute start. New bytes
/// join at the back, pulls and acknowledgements mostly take from the front
/// and lost pieces go back near the front, so a deque (one allocation, binary
/// search) serves them better than a tree with a node per map.
type Pieces = VecDeque<(u64, Bytes)>;

/// Puts a piece at its place in `pieces`.
fn insert_piece(pieces: &mut Pieces, start: u64, piece: Bytes) {
    let i = pieces.partition_point(|&(k, _)| k < start);
    pieces.insert(i, (start, piece));
}

/// The unacknowledged bytes of a stream (only while there are any).
#[derive(Debug, Default)]
struct SendBuf {
    /// Pieces waiting for (re)transmission.
    queue: Pieces,
    /// Bytes of copied writes not yet moved into `queue`; they end at `send_offset`.
    tail: BytesMut,
    /// Pieces inside unacknowledged packets.
    inflight: Pieces,
    /// Bytes in `queue`.
    queued_bytes: usize,
    /// Bytes in `inflight`.
    inflight_bytes: usize,
}

impl SendBuf {
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.tail.is_empty() && self.inflight.is_empty()
    }

    /// Moves the tail (ending at `end`) to the back of the queue.
    fn flush_tail(&mut self, end: u64) {
        if !self.tail.is_empty() {
            let start = end - self.tail.len() as u64;
            self.queued_bytes += self.tail.len();
            self.queue
                .push_back((start, std::mem::take(&mut self.tail).freeze()));
        }
    }

    /// Takes the queued bytes starting at `at`, at most `max` of them: the
    /// front piece of the queue, or the whole tail (ending at `end`) if the
    /// queue is empty and it fits, without a trip through the queue.
    fn take_at(&mut self, at: u64, max: usize, end: u64) -> Option<Bytes> {
        if self.queue.is_empty()
            && !self.tail.is_empty()
            && self.tail.len() <= max
            && end - self.tail.len() as u64 == at
        {
            return Some(std::mem::take(&mut self.tail).freeze());
        }
        if self.queue.is_empty() {
            self.flush_tail(end);
        }
        let (_, mut piece) = self.queue.pop_front_if(|(k, _)| *k == at)?;
        if piece.len() > max {
            let rest = piece.split_off(max);
            self.queue.push_front((at + max as u64, rest));
        }
        self.queued_bytes -= piece.len();
        Some(piece)
    }
}

/// The writer side of one stream.
///
/// Memory (every idle stream has one): 32 bytes. Positions other than
/// `send_offset` are stored in 32 bits: the written but unacknowledged bytes
/// are at most the send buffer (2^30), and the barrier lies in
/// `[send_offset - 2^30, send_offset + WINDOW_MAX]` (bytes are only sent below
/// it; [`OutStream::on_barrier`] caps it), so its serial value is unambiguous.
#[derive(Debug)]
pub struct OutStream {
    state: State,
    priority: f32,
    /// Absolute position just past the last byte accepted from the application.
    send_offset: u64,
    /// `send_offset - bytes_acked`: written bytes not acknowledged (after a
    /// reset, including the dropped ones).
    unacked: u32,
    /// Latest barrier from the reader, mod 2^32 (see [`OutStream::barrier`]).
    barrier: u32,
    /// `None` while every byte written was acknowledged (or dropped by a reset).
    buf: Option<Box<SendBuf>>,
}

impl Default for OutStream {
    fn default() -> Self {
        Self::new()
    }
}

impl OutStream {
    /// A new ACTIVE stream with priority 0 and the initial credit `MIN_WINDOW`.
    // spec: streams.md §2.1.1
    ///
    /// The send buffer size of an [`OutStreamConfig`] is not stored in the
    /// stream (it would cost every idle stream 4 bytes): the methods that need
    /// it take the config, which must be the same for the stream's whole life.
    pub fn new() -> Self {
        OutStream {
            state: State::Active,
            priority: DEFAULT_PRIORITY,
            send_offset: 0,
            unacked: 0,
            barrier: MIN_WINDOW,
            buf: None,
        }
    }

    /// The reader's latest barrier as an absolute position.
    fn barrier(&self) -> u64 {
        unwrap_offset(self.barrier, self.send_offset)
    }

    /// Counts `n` more bytes accepted from the application (within the send
    /// buffer, so `unacked` stays below 2^30).
    fn accepted(&mut self, n: usize) {
        self.send_offset += n as u64;
        self.unacked += u32::try_from(n).expect("writes fit the send buffer");
    }

    /// The send buffer, allocated on first use.
    fn buf_mut(&mut self) -> &mut SendBuf {
        self.buf.get_or_insert_default()
    }

    /// Releases the send buffer once nothing is left in it.
    fn release_if_empty(&mut self) {
        if self.buf.as_ref().is_some_and(|b| b.is_empty()) {
            self.buf = None;
        }
    }

    // ---- application side -------------------------------------------------

    /// Bytes that [`OutStream::write`] would accept now (0 once shut down or reset).
    pub fn writable_space(&self, config: &OutStreamConfig) -> usize {
        if self.state != State::Active {
            return 0;
        }
        config
            .limit()
            .saturating_sub(self.queued_bytes() + self.inflight_bytes())
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        match self.state {
            State::Active => Ok(()),
            State::Shutdown(_) => Err(WriteError::Finished),
            State::Reset(_) => Err(WriteError::Reset),
        }
    }

    /// Copies as much of `data` as the send buffer allows and returns that
    /// count (`Ok(0)` when the buffer is full or `data` is empty).
    // spec: streams.md §2.1.2 write (bounded buffer instead of one pending write)
    pub fn write(&mut self, config: &OutStreamConfig, data: &[u8]) -> Result<usize, WriteError> {
        self.check_writable()?;
        let n = data.len().min(self.writable_space(config));
        if n > 0 {
            self.buf_mut().tail.extend_from_slice(&data[..n]);
            self.accepted(n);
        }
        Ok(n)
    }

    /// Zero-copy variant of [`OutStream::write`]: takes a prefix of `data`
    /// (sharing its allocation) and returns its length.
    pub fn write_bytes(
        &mut self,
        config: &OutStreamConfig,
        data: &Bytes,
    ) -> Result<usize, WriteError> {
        self.check_writable()?;
        let n = data.len().min(self.writable_space(config));
        if n > 0 {
            let offset = self.send_offset;
            let b = self.buf_mut();
            b.flush_tail(offset);
            b.queue.push_back((offset, data.slice(..n)));
            b.queued_bytes += n;
            self.accepted(n);
        }
        Ok(n)
    }

    /// Announces the end of the stream: the EOF goes out with (or after) the
    /// last byte once it fits below the barrier.
    // spec: streams.md §2.1.2 shutdown
    pub fn shutdown(&mut self) -> Result<(), ShutdownError> {
        match self.state {
            State::Active => {
                self.state = State::Shutdown(Shut::Retransmit);
                Ok(())
            }
            State::Shutdown(_) => Err(ShutdownError::AlreadyShutdown),
            State::Reset(_) => Err(ShutdownError::Reset),
        }
    }

    /// Aborts the stream: queued bytes are dropped and a WRITER_RESETS is
    /// scheduled. In-flight pieces are forgotten as their packets resolve.
    /// No effect on a complete or already reset stream.
    // spec: streams.md §2.1.2 reset
    pub fn reset(&mut self) {
        if self.is_complete() || matches!(self.state, State::Reset(_)) {
            return;
        }
        self.drop_queue();
        self.state = State::Reset(ResetPhase::ToSend { lost: false });
    }

    /// Sets the scheduling priority; NaN and infinities are refused. The host
    /// must then update the scheduler with [`OutStream::scheduling_priority`].
    // spec: streams.md §2.1.2 set_priority
    pub fn set_priority(&mut self, priority: f32) -> Result<(), PriorityError> {
        if !priority.is_finite() {
            return Err(PriorityError(priority));
        }
        self.priority = priority;
        Ok(())
    }

    /// The application priority.
    pub fn priority(&self) -> f32 {
        self.priority
    }

    /// API state (`spec/streams.md` §2.1.1 state mapping).
    pub fn state(&self) -> OutStreamState {
        match self.state {
            State::Reset(_) => OutStreamState::Reset,
            State::Shutdown(Shut::Acked) if self.all_acked() => OutStreamState::Shutdown,
            _ => OutStreamState::Active,
        }
    }

    /// Outcome of the shutdown: `Some(true)` once every byte and the EOF were
    /// acknowledged, `Some(false)` if the stream was reset, `None` while pending.
    // spec: streams.md §2.1.6
    pub fn shutdown_result(&self) -> Option<bool> {
        match self.state {
            State::Reset(_) => Some(false),
            State::Shutdown(Shut::Acked) if self.all_acked() => Some(true),
            _ => None,
        }
    }

    /// The host may retire the stream: shutdown delivered, WRITER_RESETS
    /// acknowledged, or reset by the reader (§2.1.6, §2.1.7).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Reset(ResetPhase::Done)) || self.shutdown_result() == Some(true)
    }

    /// Bytes waiting for (re)transmission (`queuedToRetransmit`).
    pub fn queued_bytes(&self) -> usize {
        self.buf
            .as_ref()
            .map_or(0, |b| b.queued_bytes + b.tail.len())
    }

    /// Bytes inside unacknowledged packets (`queuedInflight`).
    pub fn inflight_bytes(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.inflight_bytes)
    }

    /// Total acknowledged payload bytes (`bytesSent`).
    pub fn bytes_acked(&self) -> u64 {
        self.send_offset - u64::from(self.unacked)
    }

    /// Bytes accepted from the application so far.
    pub fn bytes_written(&self) -> u64 {
        self.send_offset
    }

    // ---- scheduler side ---------------------------------------------------

    /// Readiness of §2.1.3, with the barrier rule in every state: queued bytes
    /// are sendable when their first byte lies more than `SILLY_WINDOW` below
    /// the barrier, or, after shutdown, when everything up to the EOF fits
    /// below the barrier (finishing is never silly).
    // spec: streams.md §2.1.3 wants_to_send (without the SHUTDOWN quirk of §2.1.4)
    pub fn wants_to_send(&self) -> bool {
        match self.state {
            State::Reset(ResetPhase::ToSend { .. }) => true,
            State::Reset(_) => false,
            State::Active | State::Shutdown(_) => {
                let eof_due = self.state == State::Shutdown(Shut::Retransmit);
                let barrier = self.barrier();
                let Some(first) = self.first_queued() else {
                    return eof_due && self.send_offset <= barrier;
                };
                let finishing = matches!(self.state, State::Shutdown(_));
                first + u64::from(SILLY_WINDOW) < barrier
                    || (finishing && self.send_offset <= barrier)
            }
        }
    }

    /// Priority the host gives the stream's scheduler record: `+inf` for a
    /// WRITER_RESETS whose first copy was lost, the application priority while
    /// [`OutStream::wants_to_send`], otherwise `-inf`.
    // spec: streams.md §2.1.3 announce, §3.2
    pub fn scheduling_priority(&self) -> f32 {
        match self.state {
            State::Reset(ResetPhase::ToSend { lost: true }) => f32::INFINITY,
            _ if self.wants_to_send() => self.priority,
            _ => f32::NEG_INFINITY,
        }
    }

    fn first_queued(&self) -> Option<u64> {
        let b = self.buf.as_deref()?;
        match b.queue.front() {
            Some(&(k, _)) => Some(k),
            None if !b.tail.is_empty() => Some(self.send_offset - b.tail.len() as u64),
            None => None,
        }
    }

    fn drop_queue(&mut self) {
        if let Some(b) = self.buf.as_deref_mut() {
            b.queue.clear();
            b.tail = BytesMut::new();
            b.queued_bytes = 0;
        }
        self.release_if_empty();
    }

    fn all_acked(&self) -> bool {
        self.buf.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Writes one segment for stream `id` at the start of `buf` (whose length
    /// is the room left in the packet) and returns its length and ticket:
    /// WRITER_RESETS after a reset, otherwise DATA (with an explicit offset
    /// unless the offset is 0 mod 2^32, with EOF when the final bytes fit).
    ///
    /// `None` when nothing is sendable or `buf` has no room for a useful
    /// segment (the host keeps at least `MIN_PULL_ROOM` bytes, which always
    /// suffices). Segments never end beyond the barrier and carry at most
    /// `MAX_SEGMENT_DATA` bytes.
    // spec: streams.md §2.1.4
    pub fn pull(&mut self, id: u16, buf: &mut [u8]) -> Option<(usize, OutTicket)> {
        if !self.wants_to_send() {
            return None;
        }
        if let State::Reset(_) = self.state {
            if buf.len() < 4 {
                return None;
            }
            let n = write_writer_resets(buf, id);
            self.state = State::Reset(ResetPhase::Inflight);
            return Some((n, OutTicket(TicketKind::WriterResets)));
        }
        let off = self.first_queued().unwrap_or(self.send_offset);
        let hdr = data_header_len(off as u32);
        if buf.len() < hdr {
            return None;
        }
        // MUST: L <= 4092 and off + L <= barrier (in every state).
        let credit = self.barrier().saturating_sub(off);
        let room = ((buf.len() - hdr) & !3)
            .min(MAX_SEGMENT_DATA)
            .min(usize::try_from(credit).unwrap_or(usize::MAX));
        let body = &mut buf[hdr..];
        let mut len = 0usize;
        let end = self.send_offset;
        if let Some(b) = self.buf.as_deref_mut() {
            // A gap (or the end of what is queued) ends the segment.
            while len < room
                && let Some(piece) = b.take_at(off + len as u64, room - len, end)
            {
                let n = piece.len();
                body[len..len + n].copy_from_slice(&piece);
                insert_piece(&mut b.inflight, off + len as u64, piece);
                len += n;
            }
            b.inflight_bytes += len;
        }
        let eof =
            self.state == State::Shutdown(Shut::Retransmit) && off + len as u64 == self.send_offset;
        if len == 0 && !eof {
            return None;
        }
        if eof {
            self.state = State::Shutdown(Shut::Inflight);
        }
        body[len..pad4(len)].fill(0);
        write_data_header(buf, id, off as u32, eof, len);
        let ticket = OutTicket(TicketKind::Data {
            start: off,
            len: len as u32,
            eof,
        });
        Some((hdr + pad4(len), ticket))
    }

    /// The channel acknowledged (`acked`) or lost the packet that carried the
    /// ticket's segment. Acked bytes are released; lost bytes return to the
    /// queue at their offsets (unless reset) and will be re-cut.
    // spec: streams.md §2.1.4 ack(ok)
    pub fn on_packet_outcome(&mut self, ticket: OutTicket, acked: bool) {
        match ticket.0 {
            TicketKind::WriterResets => {
                if self.state == State::Reset(ResetPhase::Inflight) {
                    self.state = State::Reset(if acked {
                        ResetPhase::Done
                    } else {
                        ResetPhase::ToSend { lost: true }
                    });
                }
            }
            TicketKind::Data { start, len, eof } => {
                let end = start + u64::from(len);
                let requeue = !acked && !matches!(self.state, State::Reset(_));
                if let Some(b) = self.buf.as_deref_mut() {
                    let i = b.inflight.partition_point(|&(k, _)| k < start);
                    let n = b.inflight.range(i..).take_while(|&&(k, _)| k < end).count();
                    for (k, piece) in b.inflight.drain(i..i + n) {
                        b.inflight_bytes -= piece.len();
                        if requeue {
                            b.queued_bytes += piece.len();
                            insert_piece(&mut b.queue, k, piece);
                        }
                    }
                }
                self.release_if_empty();
                if eof && self.state == State::Shutdown(Shut::Inflight) {
                    self.state =
                        State::Shutdown(if acked { Shut::Acked } else { Shut::Retransmit });
                }
                if acked {
                    self.unacked = self.unacked.saturating_sub(len);
                }
            }
        }
    }

    /// A READER_BARRIER (sequence already checked by the host) grants credit up
    /// to serial offset `barrier`. Older, reordered barriers never lower it
    /// (the reader's barrier is monotonic, so taking the maximum is safe).
    /// A reader never grants more than `WINDOW_MAX` beyond what it read, hence
    /// beyond `send_offset`: a larger grant is capped there.
    // spec: streams.md §2.1.5 on_barrier
    pub fn on_barrier(&mut self, barrier: u32) {
        let old = self.barrier();
        let b = unwrap_offset(barrier, old).min(self.send_offset + u64::from(WINDOW_MAX));
        self.barrier = old.max(b) as u32;
    }

    /// A READER_RESETS was accepted: like [`OutStream::reset`] but nothing is
    /// sent and the stream completes at once. The host also uses this to retire
    /// a stream whose peer lost its state (§3.8 wipe) or a reset stream that
    /// was never pulled.
    // spec: streams.md §2.1.5 on_reader_reset
    pub fn on_reader_reset(&mut self) {
        if self.is_complete() {
            return;
        }
        self.drop_queue();
        self.state = State::Reset(ResetPhase::Done);
    }

    /// After a state wipe (§3.8) a kept, never-acknowledged stream restarts
    /// under a new id; the new reader starts with the initial credit again.
    pub fn restart_after_wipe(&mut self) {
        self.barrier = MIN_WINDOW;
    }
}

#[cfg(test)]
mod tests;
