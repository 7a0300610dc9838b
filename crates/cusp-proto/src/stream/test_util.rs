//! Test helpers: decode single segments with the wire parser into an owned form.

use crate::wire::segment::Segment;

/// A decoded segment (owned), as far as the stream tests need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Data {
        id: u16,
        offset: u32,
        eof: bool,
        bytes: Vec<u8>,
    },
    WriterResets {
        id: u16,
    },
    ReaderResets {
        seq: u8,
        id: u16,
    },
    ReaderBarrier {
        seq: u8,
        id: u16,
        barrier: u32,
    },
}

/// Decodes the segment at the start of `p` with [`Segment::parse`] and returns
/// it with its length; also checks that padding and reserved bits are zero and
/// that the offset field is present exactly when the offset is not 0.
pub(crate) fn parse_one(p: &[u8]) -> Option<(Seg, usize)> {
    let (seg, n) = Segment::parse(p).ok()?;
    let h = u32::from_be_bytes(p[..4].try_into().ok()?);
    let seg = match seg {
        Segment::Data {
            id,
            offset,
            eof,
            explicit_offset,
            bytes,
        } => {
            assert_eq!(explicit_offset, offset != 0, "offset field iff offset != 0");
            let body_end = if explicit_offset { 8 } else { 4 } + bytes.len();
            assert!(p[body_end..n].iter().all(|&b| b == 0), "padding is zero");
            Seg::Data {
                id,
                offset,
                eof,
                bytes: bytes.to_vec(),
            }
        }
        Segment::WriterResets { id } => {
            assert_eq!(h & 0x0FFF_0000, 0, "reserved bits");
            Seg::WriterResets { id }
        }
        Segment::ReaderResets { seq, id } => {
            assert_eq!(h & 0x00FF_0000, 0, "reserved bits");
            Seg::ReaderResets { seq, id }
        }
        Segment::ReaderBarrier { seq, id, barrier } => {
            assert_eq!(h & 0x00FF_0000, 0, "reserved bits");
            Seg::ReaderBarrier { seq, id, barrier }
        }
        Segment::Connect { .. } => return None,
    };
    Some((seg, n))
}
