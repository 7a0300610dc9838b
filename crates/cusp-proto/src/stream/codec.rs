//! The few places where the stream layer touches the segment encoding
//! (`spec/streams.md` §1.2, §1.3).
//!
//! Kept behind small functions so that they can follow `wire::segment`; the
//! DATA header is written here directly because the body is gathered from
//! several pieces straight into the packet buffer.
// spec: streams.md §1.2, §1.3

/// `pad4(L)`.
pub(crate) const fn pad4(len: usize) -> usize {
    (len + 3) & !3
}

const T_WRITER_RESETS: u32 = 4;
const T_READER_RESETS: u32 = 5;
const T_READER_BARRIER: u32 = 6;
const T_CONNECT: u32 = 7;

/// Length of a DATA header for a segment starting at serial offset `off`:
/// the offset field is present exactly when `off != 0`.
// spec: streams.md §1.3 DATA layout
pub(crate) fn data_header_len(off: u32) -> usize {
    if off == 0 { 4 } else { 8 }
}

/// Writes a DATA header (types 0-3) for `len` body bytes; `buf` must hold
/// `data_header_len(off)` bytes. The caller writes the body and padding.
pub(crate) fn write_data_header(buf: &mut [u8], id: u16, off: u32, eof: bool, len: usize) {
    debug_assert!(len <= crate::stream::MAX_SEGMENT_DATA && id != 0xFFFF);
    let ty = u32::from(eof) | if off != 0 { 2 } else { 0 };
    let h = ty << 28 | (len as u32 & 0xFFF) << 16 | u32::from(id);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    if off != 0 {
        buf[4..8].copy_from_slice(&off.to_be_bytes());
    }
}

/// Writes WRITER_RESETS (4 bytes).
pub(crate) fn write_writer_resets(buf: &mut [u8], id: u16) -> usize {
    let h = T_WRITER_RESETS << 28 | u32::from(id);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    4
}

/// Writes READER_RESETS (4 bytes).
pub(crate) fn write_reader_resets(buf: &mut [u8], seq: u8, id: u16) -> usize {
    let h = T_READER_RESETS << 28 | u32::from(seq & 0xF) << 24 | u32::from(id);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    4
}

/// Writes READER_BARRIER (8 bytes).
pub(crate) fn write_reader_barrier(buf: &mut [u8], seq: u8, id: u16, barrier: u32) -> usize {
    let h = T_READER_BARRIER << 28 | u32::from(seq & 0xF) << 24 | u32::from(id);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    buf[4..8].copy_from_slice(&barrier.to_be_bytes());
    8
}

/// Writes a CONNECT prefix (4 bytes) carrying the writer sequence `seq` of the
/// following segment's id and the `service`; returns 4, or 0 if `buf` is shorter.
///
/// The host must follow it with the out-stream's segment in the same payload.
// spec: streams.md §1.3 CONNECT, §1.7
pub fn write_connect(buf: &mut [u8], seq: u8, service: u16) -> usize {
    if buf.len() < 4 {
        return 0;
    }
    let h = T_CONNECT << 28 | u32::from(seq & 0xF) << 24 | u32::from(service);
    buf[0..4].copy_from_slice(&h.to_be_bytes());
    4
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
}
