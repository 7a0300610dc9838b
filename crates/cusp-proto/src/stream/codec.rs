//! The few places where the stream layer touches the segment encoding
//! (`spec/streams.md` §1.2, §1.3), delegated to [`crate::wire::segment`].
//!
//! Control segments are emitted through [`Segment::emit`]. The DATA header is
//! written here because the body is gathered from several queued pieces
//! straight into the packet buffer (no intermediate copy); the tests decode
//! every DATA segment with [`Segment::parse`].
// spec: streams.md §1.2, §1.3

use crate::wire::segment::{Segment, UNASSIGNED_ID};

pub(crate) use crate::wire::segment::pad4;

/// Length of a DATA header for a segment starting at serial offset `off`:
/// the offset field is present exactly when `off != 0`.
// spec: streams.md §1.3 DATA layout
pub(crate) fn data_header_len(off: u32) -> usize {
    if off == 0 { 4 } else { 8 }
}

/// Writes a DATA header (types 0-3) for `len` body bytes; `buf` must hold
/// `data_header_len(off)` bytes. The caller writes the body and padding.
pub(crate) fn write_data_header(buf: &mut [u8], id: u16, off: u32, eof: bool, len: usize) {
    debug_assert!(len <= super::MAX_SEGMENT_DATA && id != UNASSIGNED_ID);
    let ty = u32::from(eof) | if off != 0 { 2 } else { 0 };
    let h = ty << 28 | (len as u32 & 0xFFF) << 16 | u32::from(id);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    if off != 0 {
        buf[4..8].copy_from_slice(&off.to_be_bytes());
    }
}

/// Emits a control segment whose room the caller has checked; the stream
/// layer never passes id 0xFFFF or a sequence above 15, so 0 is returned only
/// on a host bug (the segment is then simply not sent).
fn emit(segment: Segment<'_>, buf: &mut [u8]) -> usize {
    let r = segment.emit(buf);
    debug_assert!(r.is_ok(), "{segment:?}: {r:?}");
    r.unwrap_or(0)
}

/// Writes WRITER_RESETS (4 bytes).
pub(crate) fn write_writer_resets(buf: &mut [u8], id: u16) -> usize {
    emit(Segment::WriterResets { id }, buf)
}

/// Writes READER_RESETS (4 bytes).
pub(crate) fn write_reader_resets(buf: &mut [u8], seq: u8, id: u16) -> usize {
    emit(Segment::ReaderResets { seq: seq & 0xF, id }, buf)
}

/// Writes READER_BARRIER (8 bytes).
pub(crate) fn write_reader_barrier(buf: &mut [u8], seq: u8, id: u16, barrier: u32) -> usize {
    emit(
        Segment::ReaderBarrier {
            seq: seq & 0xF,
            id,
            barrier,
        },
        buf,
    )
}

/// Writes a CONNECT prefix (4 bytes) carrying the writer sequence `seq` of the
/// following segment's id and the `service`; returns 4, or 0 if `buf` is shorter.
///
/// The host must follow it with the out-stream's segment in the same payload.
// spec: streams.md §1.3 CONNECT, §1.7
pub fn write_connect(buf: &mut [u8], seq: u8, service: u16) -> usize {
    Segment::Connect {
        seq: seq & 0xF,
        service,
    }
    .emit(buf)
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec: streams.md §1.9 worked examples
    #[test]
    fn worked_examples() {
        let mut b = [0u8; 8];
        assert_eq!(write_connect(&mut b, 0, 23), 4);
        assert_eq!(b[..4], [0x70, 0, 0, 0x17]);
        assert_eq!(write_connect(&mut b[..3], 0, 23), 0);
        write_data_header(&mut b, 0, 0, true, 12);
        assert_eq!(b[..4], [0x10, 0x0C, 0, 0]);
        write_data_header(&mut b, 3, 1436, false, 1432);
        assert_eq!(b, [0x25, 0x98, 0, 3, 0, 0, 0x05, 0x9C]);
        assert_eq!(write_reader_barrier(&mut b, 0, 0, 26960), 8);
        assert_eq!(b, [0x60, 0, 0, 0, 0, 0, 0x69, 0x50]);
        write_reader_resets(&mut b, 2, 5);
        assert_eq!(b[..4], [0x52, 0, 0, 5]);
        write_writer_resets(&mut b, 5);
        assert_eq!(b[..4], [0x40, 0, 0, 5]);
        assert_eq!(data_header_len(0), 4);
        assert_eq!(data_header_len(1), 8);
    }

    #[test]
    fn data_header_agrees_with_the_wire_parser() {
        for (off, eof, len) in [
            (0u32, false, 0usize),
            (0, true, 5),
            (7, false, 4092),
            (u32::MAX, true, 1),
        ] {
            let mut buf = vec![0u8; 8 + pad4(len)];
            write_data_header(&mut buf, 0x1234, off, eof, len);
            let n = data_header_len(off) + pad4(len);
            let (seg, m) = Segment::parse(&buf[..n]).unwrap();
            assert_eq!(m, n);
            assert_eq!(
                seg,
                Segment::data(0x1234, off, eof, &buf[n - pad4(len)..n - pad4(len) + len])
            );
        }
    }
}
