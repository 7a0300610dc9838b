//! Per-stream algorithms of CUSP (`spec/streams.md` §1.5-§1.8, §2, §3.2).
//!
//! Everything here is sans-IO and stores no callbacks: operations return
//! results, and the host asks the streams for their state afterwards.
//!
//! * [`out_stream`]: [`OutStream`], the writer side (§2.1): bounded send
//!   buffer, segmentation, re-cutting of lost bytes, EOF, WRITER_RESETS.
//! * [`in_stream`]: [`InStream`], the reader side (§2.2): reassembly,
//!   reads, flow-control window and READER_BARRIER / READER_RESETS.
//! * [`scheduler`]: [`Scheduler`], the per-host priority order (§3.2) with
//!   an anti-starvation rule for negative priorities.
//! * [`ids`]: [`StreamIds`], stream-id allocation, cooldown ring and the
//!   sequence nibbles (§1.5, §1.8).
//!
//! # Building a payload (host side, §1.7)
//!
//! ```text
//! ids.tick()                                   -- once per built packet (cooldown ring)
//! used = 0; tickets = []
//! while budget - used >= MIN_PULL_ROOM:
//!     key = sched.top_ready(now) else break
//!     sched.take(key, &mut entry(key))          -- out of the order, restamped
//!     match record(key):
//!       Out(s, id, connect_service):
//!         id = id or ids.allocate() (None: skip the record for this packet)
//!         if connect_service != 0: used += write_connect(buf[used..], ids.writer_seq(id), service)
//!         (n, t) = s.pull(id, &mut buf[used..])  -- None: undo the CONNECT, stop
//!       In(s, id):
//!         (n, t) = s.pull(id, ids.reader_seq(id), &mut buf[used..])
//!     used += n; tickets.push((key, t))
//!     sched.set_priority(key, &mut entry(key), s.scheduling_priority(), now)
//! announce sched.announce(now) to the channel
//! ```
//!
//! When the channel reports the packet's outcome, every ticket goes back to its
//! stream (`on_packet_outcome(ticket, acked)`, ignored if the stream is gone);
//! an ack also clears the CONNECT prefix of the out-streams in the packet.
//! Afterwards the host re-reads `scheduling_priority()` and `is_complete()`.
//!
//! # Receiving a payload (host side, §1.6)
//!
//! DATA goes to `InStream::on_data(offset, bytes, eof)`; an `Err` rejects the
//! whole packet. WRITER_RESETS goes to `InStream::on_writer_reset`,
//! READER_BARRIER (sequence checked with [`StreamIds::writer_seq`]) to
//! `OutStream::on_barrier`, READER_RESETS to `OutStream::on_reader_reset`.
//! After each stream event the host updates the scheduler with
//! `scheduling_priority()`, releases ids of complete streams
//! ([`StreamIds::release`] for out-streams, [`StreamIds::bump_reader_seq`] for
//! in-streams once [`InStream::id_releasable`]) and wakes the application.

// spec: streams.md §1, §2, §3.2

mod codec;
pub mod ids;
pub mod in_stream;
pub mod out_stream;
mod ready;
pub mod scheduler;
#[cfg(test)]
mod test_util;

pub use codec::write_connect;
pub use ids::{IdsExhausted, StreamIds};
pub use in_stream::{DataError, InStream, InStreamConfig, InStreamState, InTicket, ReadResult};
pub use out_stream::{
    OutStream, OutStreamConfig, OutStreamState, OutTicket, PriorityError, ShutdownError, WriteError,
};
pub use scheduler::{SchedEntry, Scheduler};

// spec: streams.md §2.0
/// Initial credit of every stream and lower clamp of the receive window.
pub const MIN_WINDOW: u32 = 21568;
/// The reader announces a new barrier once it advanced this much past the last one sent.
pub const BARRIER_INCREMENT: u32 = MIN_WINDOW / 4;
/// The writer starts a DATA segment only if its first byte lies more than this below the barrier.
pub const SILLY_WINDOW: u32 = 2048;
/// Maximum `L` of one DATA segment.
pub use crate::wire::segment::MAX_SEGMENT_DATA;
/// Upper clamp of the receive window in the reference (16 MiB margin below 2^31).
pub const WINDOW_MAX: u32 = 0x7FFF_FFFF - 16 * (1 << 20);
/// A packet stops taking further segments when less room than this remains.
pub const MIN_PULL_ROOM: usize = 32;
/// Number of built packets before a completed out-stream id can be reused.
pub const COOLDOWN_SLOTS: usize = 16;
/// Priority of a new out-stream.
pub const DEFAULT_PRIORITY: f32 = 0.0;

/// Maps a 32-bit serial stream offset to the absolute 64-bit position nearest
/// to `reference` (within ±2^31), saturating at 0.
// spec: streams.md §0.1 (serial arithmetic)
pub(crate) fn unwrap_offset(wire: u32, reference: u64) -> u64 {
    let diff = i64::from(wire.wrapping_sub(reference as u32) as i32);
    reference.saturating_add_signed(diff)
}

/// Like [`unwrap_offset`] but `None` when the position would lie before 0.
pub(crate) fn unwrap_offset_checked(wire: u32, reference: u64) -> Option<u64> {
    let diff = i64::from(wire.wrapping_sub(reference as u32) as i32);
    reference.checked_add_signed(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_is_nearest() {
        assert_eq!(unwrap_offset(5, 0), 5);
        assert_eq!(unwrap_offset(u32::MAX, 0), 0);
        assert_eq!(unwrap_offset_checked(u32::MAX, 0), None);
        assert_eq!(unwrap_offset(3, 1 << 32), (1 << 32) + 3);
        assert_eq!(unwrap_offset(u32::MAX, 1 << 32), (1 << 32) - 1);
        assert_eq!(unwrap_offset(0x8000_0000, 0x1_0000_0000), 0x0_8000_0000);
    }

    #[test]
    fn constants_match_spec() {
        assert_eq!(BARRIER_INCREMENT, 5392);
        assert_eq!(WINDOW_MAX, 2_130_706_431);
    }
}
