//! The reader side of a stream (`spec/streams.md` §2.2).
//!
//! Received bytes are copied once: in-order bytes into a FIFO of ready chunks
//! ([`ReadyQueue`](super::ready)),
//! early bytes into an out-of-order map whose ranges never overlap (duplicates
//! and overlaps are trimmed on insertion, copying only the new bytes, so a
//! duplicate never grows memory).
//!
//! Memory bound: the stream accepts DATA ending at most `slack` bytes beyond
//! the barrier it advertises (default slack: one `MIN_WINDOW`, so the reference
//! writer's shutdown quirk of §2.1.4 does not stall on timeouts), and the
//! barrier is at most `max_window` ahead of the application's read position.
//! Buffered bytes are therefore at most `max_window + slack`; the number of
//! out-of-order ranges is capped at one per 256 bytes of that credit (plus 16)
//! so per-range bookkeeping cannot amplify memory either. Segments that would
//! break these bounds are refused, which rejects the packet (§1.6).
//!
//! The buffers live in a `RecvBuf` allocated when bytes arrive and released
//! once everything received was read, so an idle stream holds no allocation
//! of its own.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codec::{write_reader_barrier, write_reader_resets};
use super::ready::ReadyQueue;
use super::{BARRIER_INCREMENT, MIN_WINDOW, WINDOW_MAX, unwrap_offset, unwrap_offset_checked};

/// Per-stream settings of an [`InStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InStreamConfig {
    /// Upper clamp of the receive window. Default 16 MiB (the reference allows
    /// up to `WINDOW_MAX` ≈ 2 GiB, which would let one stream buffer that much);
    /// values are clamped to `[MIN_WINDOW, WINDOW_MAX]`.
    pub max_window: u32,
    /// Tolerated overshoot of DATA beyond the advertised barrier. Default
    /// `MIN_WINDOW` (§2.2.3 recommendation); clamped to at most `MIN_WINDOW * 16`.
    pub slack: u32,
}

impl InStreamConfig {
    /// `max_window` clamped to `[MIN_WINDOW, WINDOW_MAX]`.
    fn window_limit(&self) -> u32 {
        self.max_window.clamp(MIN_WINDOW, WINDOW_MAX)
    }

    /// `slack` clamped to at most `MIN_WINDOW * 16`.
    fn slack_limit(&self) -> u32 {
        self.slack.min(MIN_WINDOW * 16)
    }
}

impl Default for InStreamConfig {
    fn default() -> Self {
        InStreamConfig {
            max_window: 16 << 20,
            slack: MIN_WINDOW,
        }
    }
}

/// API view of the stream state (`spec/streams.md` §2.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InStreamState {
    /// Open, or the EOF is known but bytes are still unread or missing.
    Active,
    /// Every byte up to the EOF was received and read.
    Shutdown,
    /// Reset locally or by the writer.
    Reset,
}

/// Result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult<T> {
    /// Bytes (a chunk, or a count of bytes copied into the caller's buffer).
    Data(T),
    /// Every byte up to the EOF was read; repeatable.
    Finished,
    /// The stream was reset; unread data was discarded.
    Reset,
    /// Nothing to read yet.
    WouldBlock,
}

/// Why a DATA segment was refused; the host must reject the whole packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The segment ends beyond the barrier plus the tolerated slack.
    #[error("data beyond the barrier")]
    BeyondBarrier,
    /// The segment contradicts a known EOF, or lies before offset 0.
    #[error("data inconsistent with the stream's EOF or start")]
    Inconsistent,
    /// Too many separate out-of-order ranges buffered.
    #[error("too many out-of-order ranges")]
    TooFragmented,
}

// spec: streams.md §2.2.1 state
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    /// The EOF position is known (`InStream::eof`); `finished`: the application read it.
    Shutdown {
        finished: bool,
    },
    /// Reset locally; READER_RESETS to send / in flight / acknowledged.
    Reset(ResetPhase),
    /// Reset with nothing to tell the writer (writer reset, or EOF already seen).
    ResetDown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResetPhase {
    ToSend,
    Inflight,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum TicketKind {
    Barrier {
        old_reader: u64,
        sent: u64,
        prev: u64,
        /// When the barrier was sent, the writer had used all but a quarter
        /// window of its credit and the application had read all but a quarter
        /// window: the window, not the reader, limited the stream.
        starved: bool,
    },
    ReaderResets,
}

/// What one pulled control segment put into a packet; hand it back exactly
/// once to [`InStream::on_packet_outcome`].
#[derive(Debug, PartialEq, Eq)]
pub struct InTicket(TicketKind);

/// The received bytes the application has not read yet (only while there are any).
#[derive(Debug, Default)]
struct RecvBuf {
    /// In-order bytes, oldest first.
    ready: ReadyQueue,
    /// Out-of-order ranges, keyed by absolute start, never overlapping, all > edge.
    ooo: BTreeMap<u64, Bytes>,
    /// Bytes in `ooo`.
    ooo_bytes: usize,
}

/// The reader side of one stream.
///
/// Memory (every idle stream has one): 40 bytes. One absolute position
/// (`read`), the others in 32 bits: the edge (the first byte not yet received
/// in order) is at most the credit `window + slack` ahead of `read`, and the
/// barrier and the EOF lie within `WINDOW_MAX + slack` (< 2^31) of the edge,
/// so their serial values are unambiguous near it.
#[derive(Debug)]
pub struct InStream {
    state: State,
    /// Bytes handed to the application (`bytesReceived`).
    read: u64,
    /// `edge - read`: bytes received in order and not read; after a reset
    /// (which freezes the edge) the ones it dropped.
    unread: u32,
    /// The barrier, mod 2^32 (see [`InStream::barrier`]).
    barrier: u32,
    /// How far the barrier advanced beyond the value last sent, saturating
    /// (only beyond 4 GiB of unsent advance would the last value read too
    /// high, which merely skips a re-arm or a window doubling).
    unsent: u32,
    /// The EOF, mod 2^32 near the edge, once known (in `State::Shutdown`).
    eof: u32,
    /// Within `[MIN_WINDOW, max_window]`, so 32 bits suffice (`WINDOW_MAX` < 2^31).
    window: u32,
    /// `None` while nothing is buffered.
    buf: Option<Box<RecvBuf>>,
}

impl Default for InStream {
    fn default() -> Self {
        Self::new()
    }
}

impl InStream {
    /// A new ACTIVE stream with barrier and window `MIN_WINDOW`.
    // spec: streams.md §2.2.1
    ///
    /// The limits of an [`InStreamConfig`] are not stored in the stream (it
    /// would cost every idle stream 8 bytes): the methods that need them take
    /// the config, which must be the same for the stream's whole life.
    pub fn new() -> Self {
        InStream {
            state: State::Active,
            read: 0,
            unread: 0,
            barrier: MIN_WINDOW,
            unsent: 0,
            eof: 0,
            window: MIN_WINDOW,
            buf: None,
        }
    }

    /// Absolute position of the first byte not yet received in order.
    fn edge(&self) -> u64 {
        self.read + u64::from(self.unread)
    }

    /// Moves the edge to `edge` (at most the credit ahead of `read`).
    fn set_edge(&mut self, edge: u64) {
        self.unread = u32::try_from(edge - self.read).expect("the edge stays within the credit");
    }

    fn reader_offset(&self) -> u64 {
        self.edge() - self.ready_bytes() as u64
    }

    /// The last barrier sent (or due again after a loss).
    fn last_barrier(&self) -> u64 {
        self.barrier().saturating_sub(u64::from(self.unsent))
    }

    /// The receive buffer, allocated on first use.
    fn buf_mut(&mut self) -> &mut RecvBuf {
        self.buf.get_or_insert_default()
    }

    /// Releases the receive buffer once nothing is left in it.
    fn release_if_empty(&mut self) {
        if self
            .buf
            .as_ref()
            .is_some_and(|b| b.ready.is_empty() && b.ooo.is_empty())
        {
            self.buf = None;
        }
    }

    fn is_reset(&self) -> bool {
        matches!(self.state, State::Reset(_) | State::ResetDown)
    }

    // spec: streams.md §2.2.7 barrier = max_s(barrier, reader_offset + window)
    fn update_barrier(&mut self) {
        let old = self.barrier();
        let new = old.max(self.reader_offset() + u64::from(self.window));
        let advance = u32::try_from(new - old).unwrap_or(u32::MAX);
        self.unsent = self.unsent.saturating_add(advance);
        self.barrier = new as u32;
    }

    // ---- network side -----------------------------------------------------

    /// A DATA segment at serial offset `off` (with `eof` for types 1 and 3).
    /// `Err` means the packet must be rejected; the stream is then unchanged.
    /// The EOF is recorded only from accepted segments.
    // spec: streams.md §2.2.3 on_data, on_eof
    pub fn on_data(
        &mut self,
        config: &InStreamConfig,
        off: u32,
        data: &[u8],
        eof: bool,
    ) -> Result<(), DataError> {
        let slack = config.slack_limit();
        let edge = self.edge();
        let start = unwrap_offset_checked(off, edge).ok_or(DataError::Inconsistent)?;
        let end = start + data.len() as u64;
        if end > self.barrier() + u64::from(slack) {
            return Err(DataError::BeyondBarrier);
        }
        let known_eof = self.known_eof();
        if known_eof.is_some_and(|e| end > e || (eof && end != e)) || (eof && end < edge) {
            return Err(DataError::Inconsistent);
        }
        if self.is_reset() {
            if eof && self.state == State::Reset(ResetPhase::ToSend) {
                // spec: streams.md §2.2.5: once the EOF is seen nothing needs to be sent
                self.state = State::ResetDown;
            }
            return Ok(());
        }
        if end > edge {
            if start <= edge {
                let skip = (edge - start) as usize;
                self.feed(&data[skip..]);
            } else {
                self.insert_ooo(start, data, slack)?;
            }
        }
        if eof && self.state == State::Active {
            // spec: streams.md §2.2.3 on_eof (no more barrier updates)
            self.state = State::Shutdown { finished: false };
            self.eof = end as u32;
            self.trim_ooo_beyond(end);
        }
        self.update_barrier();
        Ok(())
    }

    // spec: streams.md §2.2.3 feed
    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() && self.buf.is_none() {
            return;
        }
        let mut edge = self.edge();
        let hint = self.window as usize / 8;
        let b = self.buf_mut();
        b.ready.push_copy(data, hint);
        edge += data.len() as u64;
        while let Some(entry) = b.ooo.first_entry() {
            let o = *entry.key();
            if o > edge {
                break;
            }
            let c = entry.remove();
            b.ooo_bytes -= c.len();
            let e = o + c.len() as u64;
            if e > edge {
                b.ready.push(c.slice((edge - o) as usize..));
                edge = e;
            }
        }
        self.set_edge(edge);
        self.release_if_empty();
    }

    /// Inserts the parts of `[start, start + data.len())` not yet buffered,
    /// copying only those bytes. Refuses (without change) if the range count
    /// would exceed its cap.
    fn insert_ooo(&mut self, start: u64, data: &[u8], slack: u32) -> Result<(), DataError> {
        let end = start + data.len() as u64;
        let credit = self.barrier() + u64::from(slack) - self.reader_offset();
        let cap = (credit / 256 + 16) as usize;
        let b = self.buf_mut();
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let mut cur = start;
        let before = b.ooo.range(..start).next_back();
        for (&a, c) in before.into_iter().chain(b.ooo.range(start..end)) {
            let b = a + c.len() as u64;
            if a > cur {
                gaps.push((cur, a.min(end)));
            }
            cur = cur.max(b);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            gaps.push((cur, end));
        }
        if b.ooo.len() + gaps.len() > cap {
            self.release_if_empty();
            return Err(DataError::TooFragmented);
        }
        for (a, e) in gaps {
            let piece = &data[(a - start) as usize..(e - start) as usize];
            b.ooo_bytes += piece.len();
            b.ooo.insert(a, Bytes::copy_from_slice(piece));
        }
        self.release_if_empty();
        Ok(())
    }

    fn trim_ooo_beyond(&mut self, eof: u64) {
        let Some(b) = self.buf.as_deref_mut() else {
            return;
        };
        while let Some(entry) = b.ooo.last_entry() {
            let a = *entry.key();
            let len = entry.get().len() as u64;
            if a + len <= eof {
                break;
            }
            if a >= eof {
                b.ooo_bytes -= entry.remove().len();
            } else {
                let keep = (eof - a) as usize;
                b.ooo_bytes -= len as usize - keep;
                entry.into_mut().truncate(keep);
                break;
            }
        }
        self.release_if_empty();
    }

    /// WRITER_RESETS received: unread data is discarded, nothing is sent back,
    /// the stream completes.
    // spec: streams.md §2.2.5 on_writer_reset
    pub fn on_writer_reset(&mut self) {
        self.clear_buffers();
        if !matches!(self.state, State::Reset(ResetPhase::Done)) {
            self.state = State::ResetDown;
        }
    }

    // ---- application side -------------------------------------------------

    /// Reads one buffered chunk of at most `max` bytes (a chunk is at most one
    /// received segment's bytes). `max == 0` is a readiness probe: an empty
    /// `Data` if bytes are available, nothing consumed.
    // spec: streams.md §2.2.4 read
    pub fn read_chunk(&mut self, max: usize) -> ReadResult<Bytes> {
        if self.is_reset() {
            return ReadResult::Reset;
        }
        let Some(b) = self.buf.as_deref_mut().filter(|b| !b.ready.is_empty()) else {
            return self.end_of_data();
        };
        let Some(give) = b.ready.pop_chunk(max) else {
            return ReadResult::Data(Bytes::new());
        };
        self.consumed(give.len());
        ReadResult::Data(give)
    }

    /// Copies as many buffered bytes as fit into `buf`, across chunks.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadResult<usize> {
        if self.is_reset() {
            return ReadResult::Reset;
        }
        let Some(b) = self.buf.as_deref_mut().filter(|b| !b.ready.is_empty()) else {
            return self.end_of_data();
        };
        let n = b.ready.read_into(buf);
        self.consumed(n);
        ReadResult::Data(n)
    }

    /// Appends every buffered byte to `out` and returns the count.
    pub fn read_to_vec(&mut self, out: &mut Vec<u8>) -> ReadResult<usize> {
        if self.is_reset() {
            return ReadResult::Reset;
        }
        let Some(b) = self.buf.as_deref_mut().filter(|b| !b.ready.is_empty()) else {
            return self.end_of_data();
        };
        let n = b.ready.drain_into(out);
        self.consumed(n);
        ReadResult::Data(n)
    }

    fn end_of_data<T>(&mut self) -> ReadResult<T> {
        if self.all_received() {
            self.state = State::Shutdown { finished: true };
            ReadResult::Finished
        } else {
            ReadResult::WouldBlock
        }
    }

    fn consumed(&mut self, n: usize) {
        self.release_if_empty();
        self.read += n as u64;
        self.unread -= u32::try_from(n).expect("read bytes were unread");
        self.update_barrier();
    }

    /// Application reset: buffers are dropped; a READER_RESETS is scheduled
    /// unless the EOF was already seen (then the stream just completes).
    // spec: streams.md §2.2.5 reset
    pub fn reset(&mut self) {
        self.clear_buffers();
        self.state = match self.state {
            State::Active => State::Reset(ResetPhase::ToSend),
            State::Shutdown { finished: false } => State::ResetDown,
            s => s,
        };
    }

    fn clear_buffers(&mut self) {
        self.buf = None;
    }

    /// API state (`spec/streams.md` §2.2.1).
    pub fn state(&self) -> InStreamState {
        match self.state {
            State::Reset(_) | State::ResetDown => InStreamState::Reset,
            State::Shutdown { .. } if self.all_received() && self.ready_bytes() == 0 => {
                InStreamState::Shutdown
            }
            _ => InStreamState::Active,
        }
    }

    /// Bytes received in order but not yet read (`queuedUnread`).
    pub fn ready_bytes(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.ready.len())
    }

    /// Bytes buffered out of order (`queuedOutOfOrder`).
    pub fn out_of_order_bytes(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.ooo_bytes)
    }

    /// Bytes handed to the application (`bytesReceived`).
    pub fn bytes_delivered(&self) -> u64 {
        self.read
    }

    /// The current receive window.
    pub fn window(&self) -> u64 {
        u64::from(self.window)
    }

    /// The current barrier (absolute position; the wire carries it mod 2^32).
    pub fn barrier(&self) -> u64 {
        unwrap_offset(self.barrier, self.edge())
    }

    // ---- host side --------------------------------------------------------

    /// Every byte up to the EOF has arrived (§2.2.8 "unassigned").
    pub fn all_received(&self) -> bool {
        self.known_eof() == Some(self.edge())
    }

    fn known_eof(&self) -> Option<u64> {
        matches!(self.state, State::Shutdown { .. }).then(|| unwrap_offset(self.eof, self.edge()))
    }

    /// The stream is done: Finished was read, or a reset ended (§2.2.8).
    pub fn is_complete(&self) -> bool {
        matches!(
            self.state,
            State::Shutdown { finished: true } | State::ResetDown | State::Reset(ResetPhase::Done)
        )
    }

    /// The host should release the id and bump the reader sequence (once):
    /// the stream is unassigned or complete (§1.5, §2.2.8).
    pub fn id_releasable(&self) -> bool {
        self.all_received() || self.is_complete()
    }

    /// A barrier update is due: the barrier advanced at least
    /// `BARRIER_INCREMENT` beyond the value last sent (§2.2.2).
    pub fn barrier_update_due(&self) -> bool {
        self.state == State::Active && self.unsent >= BARRIER_INCREMENT
    }

    /// `+inf` while a READER_BARRIER or READER_RESETS is to be sent, else `-inf`.
    // spec: streams.md §2.2.2, §3.2
    pub fn scheduling_priority(&self) -> f32 {
        if self.barrier_update_due() || self.state == State::Reset(ResetPhase::ToSend) {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Writes READER_BARRIER (8 bytes) or READER_RESETS (4 bytes) for stream
    /// `id` with reader sequence `seq`; `None` if nothing is due or `buf` is short.
    // spec: streams.md §2.2.6 pull
    pub fn pull(&mut self, id: u16, seq: u8, buf: &mut [u8]) -> Option<(usize, InTicket)> {
        if self.state == State::Reset(ResetPhase::ToSend) {
            if buf.len() < 4 {
                return None;
            }
            self.state = State::Reset(ResetPhase::Inflight);
            let n = write_reader_resets(buf, seq, id);
            return Some((n, InTicket(TicketKind::ReaderResets)));
        }
        if !self.barrier_update_due() || buf.len() < 8 {
            return None;
        }
        let (sent, prev) = (self.barrier(), self.last_barrier());
        let ticket = TicketKind::Barrier {
            old_reader: self.reader_offset(),
            sent,
            prev,
            starved: self.edge() + u64::from(self.window / 4) >= prev
                && self.ready_bytes() as u64 <= u64::from(self.window / 4),
        };
        self.unsent = 0;
        let n = write_reader_barrier(buf, seq, id, self.barrier);
        Some((n, InTicket(ticket)))
    }

    /// The channel acknowledged or lost the packet carrying the ticket's
    /// segment. An acked barrier grows the window to twice the bytes read
    /// since it was sent (the reference's rule) or, if the window limited the
    /// stream when it was sent, to twice the window; unlike the reference it
    /// never shrinks (local policy, docs/decisions.md "Receive window growth").
    /// A lost barrier re-arms the update if nothing newer was sent; a lost
    /// READER_RESETS is sent again.
    // spec: streams.md §2.2.6 ack(ok)
    pub fn on_packet_outcome(&mut self, config: &InStreamConfig, ticket: InTicket, acked: bool) {
        match ticket.0 {
            TicketKind::ReaderResets => {
                if self.state == State::Reset(ResetPhase::Inflight) {
                    self.state = State::Reset(if acked {
                        ResetPhase::Done
                    } else {
                        ResetPhase::ToSend
                    });
                }
            }
            TicketKind::Barrier {
                old_reader,
                sent,
                prev,
                starved,
            } => {
                if acked {
                    let window = u64::from(self.window);
                    let consumed = self.reader_offset().saturating_sub(old_reader);
                    let grown = if starved { 2 * window } else { window };
                    let w = grown.max(2 * consumed);
                    let w = w.clamp(u64::from(MIN_WINDOW), u64::from(config.window_limit()));
                    self.window = u32::try_from(w).expect("clamped to max_window");
                    self.update_barrier();
                } else if self.last_barrier() == sent {
                    let behind = self.barrier().saturating_sub(prev);
                    self.unsent = u32::try_from(behind).unwrap_or(u32::MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
