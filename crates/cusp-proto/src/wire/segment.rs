//! Stream segments: the contents of a DATA datagram's payload.
//!
//! A payload is a concatenation of 4-byte aligned segments with no count and no
//! padding after the last one. [`Segments`] walks a payload and yields borrowed
//! [`Segment`] views, stopping after the first malformed segment (the packet is
//! then REJECTed, `spec/streams.md` §1.6); [`Segment::emit`] and
//! [`PayloadWriter`] build payloads into caller buffers.
// spec: streams.md §1

use std::iter::FusedIterator;

use super::error::{WireError, need_input, need_room};

/// Longest DATA segment body a writer may send (keeps segments 4-aligned in any
/// 4-aligned budget; the 12-bit field could carry 4095).
pub const MAX_SEGMENT_DATA: usize = 4092;
/// Stream id reserved by the reference for "unassigned"; never sent.
pub const UNASSIGNED_ID: u16 = 0xFFFF;
/// Length of a segment header word.
pub const SEGMENT_HEADER_LEN: usize = 4;

/// `pad4(L) = (L + 3) & !3`.
// spec: streams.md §1.3
pub const fn pad4(len: usize) -> usize {
    (len + 3) & !3
}

/// One stream segment, borrowing its data bytes from the payload.
// spec: streams.md §1.2, §1.3
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment<'a> {
    /// DATA (types 0..3): stream bytes at `offset`, possibly ending the stream.
    Data {
        /// Stream id, allocated by the writer (the packet's sender).
        id: u16,
        /// Stream offset of the first byte (0 when the segment has no offset field).
        offset: u32,
        /// Types 1 and 3: the stream ends at `offset + bytes.len()`.
        eof: bool,
        /// Types 2 and 3: the segment carries an explicit 32-bit offset field.
        /// Writers set it exactly when `offset != 0` (see [`Segment::data`]).
        explicit_offset: bool,
        /// The stream bytes, without padding (`L` = 0..4095 on receipt, ≤ 4092 on send).
        bytes: &'a [u8],
    },
    /// WRITER_RESETS (type 4): the writer aborted the stream.
    WriterResets {
        /// Stream id, allocated by the writer (the packet's sender).
        id: u16,
    },
    /// READER_RESETS (type 5): the reader reset the stream; stop sending.
    ReaderResets {
        /// The reader's 4-bit sequence number for `id`.
        seq: u8,
        /// Stream id, allocated by the packet's receiver.
        id: u16,
    },
    /// READER_BARRIER (type 6): flow-control credit up to an absolute offset.
    ReaderBarrier {
        /// The reader's 4-bit sequence number for `id`.
        seq: u8,
        /// Stream id, allocated by the packet's receiver.
        id: u16,
        /// The writer may send bytes whose end offset is `<=s barrier`.
        barrier: u32,
    },
    /// CONNECT (type 7): the following segment (types 0..4) belongs to a new
    /// stream to `service`.
    Connect {
        /// The writer's 4-bit sequence number for the following segment's id.
        seq: u8,
        /// The service being connected to.
        service: u16,
    },
}

const T_DATA: u8 = 0;
const T_WRITER_RESETS: u8 = 4;
const T_READER_RESETS: u8 = 5;
const T_READER_BARRIER: u8 = 6;
const T_CONNECT: u8 = 7;

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(w)
}

fn check_seq(seq: u8) -> Result<(), WireError> {
    if seq > 15 {
        return Err(WireError::FieldOutOfRange {
            field: "sequence nibble",
            value: seq.into(),
        });
    }
    Ok(())
}

fn check_id(id: u16) -> Result<(), WireError> {
    if id == UNASSIGNED_ID {
        return Err(WireError::FieldOutOfRange {
            field: "stream id",
            value: id.into(),
        });
    }
    Ok(())
}

impl<'a> Segment<'a> {
    /// A DATA segment following the writer rule: an explicit offset field exactly
    /// when `offset` (mod 2^32) is not 0.
    // spec: streams.md §1.3 DATA layout
    pub fn data(id: u16, offset: u32, eof: bool, bytes: &'a [u8]) -> Self {
        Segment::Data {
            id,
            offset,
            eof,
            explicit_offset: offset != 0,
            bytes,
        }
    }

    /// The 4-bit segment type as sent.
    pub fn segment_type(&self) -> u8 {
        match *self {
            Segment::Data {
                eof,
                explicit_offset,
                ..
            } => T_DATA | u8::from(eof) | (u8::from(explicit_offset) << 1),
            Segment::WriterResets { .. } => T_WRITER_RESETS,
            Segment::ReaderResets { .. } => T_READER_RESETS,
            Segment::ReaderBarrier { .. } => T_READER_BARRIER,
            Segment::Connect { .. } => T_CONNECT,
        }
    }

    /// True for the writer-to-reader types 0..4, the only ones allowed after CONNECT.
    pub fn is_writer_segment(&self) -> bool {
        matches!(self, Segment::Data { .. } | Segment::WriterResets { .. })
    }

    /// Encoded length including the offset field and zero padding.
    pub fn wire_len(&self) -> usize {
        match *self {
            Segment::Data {
                explicit_offset,
                bytes,
                ..
            } => SEGMENT_HEADER_LEN + if explicit_offset { 4 } else { 0 } + pad4(bytes.len()),
            Segment::ReaderBarrier { .. } => 8,
            Segment::WriterResets { .. }
            | Segment::ReaderResets { .. }
            | Segment::Connect { .. } => 4,
        }
    }

    /// Writes the segment at the start of `buf` (reserved bits and padding zero)
    /// and returns [`Segment::wire_len`].
    ///
    /// Refuses ([`WireError::FieldOutOfRange`]) more than 4092 data bytes, a
    /// sequence nibble above 15, stream id 0xFFFF, and a DATA segment without
    /// offset field whose `offset` is not 0.
    // spec: streams.md §1.2, §1.3
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let len = self.wire_len();
        let ty = u32::from(self.segment_type()) << 28;
        let header = match *self {
            Segment::Data {
                id,
                offset,
                explicit_offset,
                bytes,
                ..
            } => {
                check_id(id)?;
                if bytes.len() > MAX_SEGMENT_DATA {
                    return Err(WireError::FieldOutOfRange {
                        field: "segment data length",
                        value: bytes.len() as u64,
                    });
                }
                if !explicit_offset && offset != 0 {
                    return Err(WireError::FieldOutOfRange {
                        field: "offset without offset field",
                        value: offset.into(),
                    });
                }
                ty | (bytes.len() as u32) << 16 | u32::from(id)
            }
            Segment::WriterResets { id } => {
                check_id(id)?;
                ty | u32::from(id)
            }
            Segment::ReaderResets { seq, id } | Segment::ReaderBarrier { seq, id, .. } => {
                check_seq(seq)?;
                check_id(id)?;
                ty | u32::from(seq) << 24 | u32::from(id)
            }
            Segment::Connect { seq, service } => {
                check_seq(seq)?;
                ty | u32::from(seq) << 24 | u32::from(service)
            }
        };
        need_room(buf, len)?;
        buf[0..4].copy_from_slice(&header.to_be_bytes());
        match *self {
            Segment::Data {
                offset,
                explicit_offset,
                bytes,
                ..
            } => {
                let start = if explicit_offset {
                    buf[4..8].copy_from_slice(&offset.to_be_bytes());
                    8
                } else {
                    4
                };
                buf[start..start + bytes.len()].copy_from_slice(bytes);
                buf[start + bytes.len()..len].fill(0);
            }
            Segment::ReaderBarrier { barrier, .. } => {
                buf[4..8].copy_from_slice(&barrier.to_be_bytes())
            }
            _ => {}
        }
        Ok(len)
    }

    /// Parses the segment at the start of a non-empty payload rest `p`, returning it
    /// and its length. A CONNECT is checked to be followed by a writer-to-reader
    /// segment header (types 0..4), but only its own 4 bytes are consumed.
    // spec: streams.md §1.6 recv_segment
    pub fn parse(p: &'a [u8]) -> Result<(Self, usize), WireError> {
        if !p.is_empty() && p.len() < SEGMENT_HEADER_LEN {
            return Err(WireError::TrailingBytes(p.len()));
        }
        need_input(p, SEGMENT_HEADER_LEN)?;
        let h = be32(p, 0);
        let ty = (h >> 28) as u8;
        let seq = ((h >> 24) & 0xF) as u8;
        let low16 = h as u16;
        match ty {
            0..=3 => {
                let len = ((h >> 16) & 0xFFF) as usize;
                let explicit_offset = ty & 2 != 0;
                let start = if explicit_offset { 8 } else { 4 };
                let need = start + pad4(len);
                need_input(p, need)?;
                let offset = if explicit_offset { be32(p, 4) } else { 0 };
                let bytes = &p[start..start + len];
                Ok((
                    Segment::Data {
                        id: low16,
                        offset,
                        eof: ty & 1 != 0,
                        explicit_offset,
                        bytes,
                    },
                    need,
                ))
            }
            T_WRITER_RESETS => Ok((Segment::WriterResets { id: low16 }, 4)),
            T_READER_RESETS => Ok((Segment::ReaderResets { seq, id: low16 }, 4)),
            T_READER_BARRIER => {
                need_input(p, 8)?;
                Ok((
                    Segment::ReaderBarrier {
                        seq,
                        id: low16,
                        barrier: be32(p, 4),
                    },
                    8,
                ))
            }
            T_CONNECT => {
                // spec: streams.md §1.3 CONNECT: the next segment MUST be of type 0..4.
                let q = &p[4..];
                if q.is_empty() {
                    return Err(WireError::ConnectAtEnd);
                }
                if q.len() < SEGMENT_HEADER_LEN {
                    return Err(WireError::TrailingBytes(q.len()));
                }
                let next = q[0] >> 4;
                if next > T_WRITER_RESETS {
                    return Err(WireError::ConnectNotPaired(next));
                }
                Ok((
                    Segment::Connect {
                        seq,
                        service: low16,
                    },
                    4,
                ))
            }
            t => Err(WireError::UnknownSegmentType(t)),
        }
    }
}

/// Iterator over the segments of a payload, yielding `Err` once and then
/// stopping at the first malformed segment.
///
/// Segments before the error have already been yielded; a receiver that wants
/// all-or-nothing processing can run [`Segments::validate`] first.
// spec: streams.md §1.1, §1.6
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Segments<'a> {
    /// Iterates over the segments of `payload` (the decrypted DATA body).
    pub fn new(payload: &'a [u8]) -> Self {
        Segments {
            rest: payload,
            failed: false,
        }
    }

    /// The bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// `Ok(number of segments)` if the whole payload is well-formed, else the first error.
    pub fn validate(payload: &'a [u8]) -> Result<usize, WireError> {
        let mut n = 0;
        for s in Segments::new(payload) {
            s?;
            n += 1;
        }
        Ok(n)
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Result<Segment<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match Segment::parse(self.rest) {
            Ok((segment, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(segment))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for Segments<'_> {}

/// Appends segments to a payload buffer, enforcing the CONNECT pairing rule.
// spec: streams.md §1.7
#[derive(Debug)]
pub struct PayloadWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    pending_connect: bool,
}

impl<'b> PayloadWriter<'b> {
    /// A writer filling `buf` (its length is the payload budget) from the start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        PayloadWriter {
            buf,
            len: 0,
            pending_connect: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes still free in the buffer.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Appends `segment`, returning its length. After a CONNECT only a
    /// writer-to-reader segment (types 0..4) is accepted.
    pub fn push(&mut self, segment: &Segment<'_>) -> Result<usize, WireError> {
        if self.pending_connect && !segment.is_writer_segment() {
            return Err(WireError::ConnectNotPaired(segment.segment_type()));
        }
        let n = segment.emit(&mut self.buf[self.len..])?;
        self.len += n;
        self.pending_connect = matches!(segment, Segment::Connect { .. });
        Ok(n)
    }

    /// The payload length, or [`WireError::ConnectAtEnd`] if the last segment is a CONNECT.
    pub fn finish(self) -> Result<usize, WireError> {
        if self.pending_connect {
            return Err(WireError::ConnectAtEnd);
        }
        Ok(self.len)
    }
}
