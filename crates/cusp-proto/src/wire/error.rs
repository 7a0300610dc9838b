//! Errors of the wire layer: parse failures of datagrams and stream payloads,
//! and refusals of the writers.

/// Why a datagram or stream payload could not be parsed, or why a writer refused.
///
/// Datagram parse errors map onto the receive events of `spec/channel.md` §4.4:
/// every variant is the internal event CORRUPT except [`WireError::DataTooShort`],
/// which is silently dropped (see [`WireError::is_corrupt`]). Stream payload
/// errors all mean REJECT (`spec/streams.md` §1.6): the packet must not be acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends before a field that must be present.
    #[error("truncated input: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes required from the start of the datagram or segment.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The datagram type nibble is reserved (4, 5) or invalid (11..15).
    #[error("datagram type {0} is reserved or invalid")]
    UnknownType(u8),
    /// The public-key suite mask of a HELLO or WELCOME is empty or names an unknown suite.
    #[error("public-key suite mask {0:#06x} is empty or has unknown bits")]
    BadSuiteMask(u16),
    /// A NOSTATE datagram carries no token.
    #[error("NOSTATE without a token")]
    EmptyToken,
    /// A DATA datagram is shorter than header plus MAC (24 bytes); it is dropped, not corrupt.
    #[error("DATA datagram of {got} bytes is shorter than header and MAC (24)")]
    DataTooShort {
        /// Length of the datagram.
        got: usize,
    },
    /// The caller's output buffer cannot hold the message.
    #[error("output buffer too small: needed {needed} bytes, got {got}")]
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// A writer was asked to encode a value the format cannot carry or the spec forbids
    /// (a sequence nibble above 15, a DATA segment longer than 4092 bytes, stream id
    /// 0xFFFF, a NOSTATE token longer than 16 bytes, ...).
    #[error("{field} = {value} cannot be sent")]
    FieldOutOfRange {
        /// Name of the field.
        field: &'static str,
        /// The refused value.
        value: u64,
    },
    /// A stream segment has type 8..15.
    #[error("stream segment type {0} is invalid")]
    UnknownSegmentType(u8),
    /// 1 to 3 bytes remain after the last segment of a payload.
    #[error("{0} stray bytes after the last segment")]
    TrailingBytes(usize),
    /// A CONNECT segment is the last segment of the payload.
    #[error("CONNECT at the end of the payload")]
    ConnectAtEnd,
    /// A CONNECT segment is followed by a segment of type 5..15 instead of a
    /// writer-to-reader segment (types 0..4).
    #[error("CONNECT followed by segment type {0}")]
    ConnectNotPaired(u8),
}

impl WireError {
    /// True when a datagram parse failure is the event CORRUPT of `spec/channel.md` §4.4
    /// (a CLOSED channel is destroyed); false for a DATA datagram too short to carry a
    /// MAC, which is dropped without effect (§2.7), and for writer errors.
    pub fn is_corrupt(&self) -> bool {
        !matches!(
            self,
            WireError::DataTooShort { .. }
                | WireError::BufferTooSmall { .. }
                | WireError::FieldOutOfRange { .. }
        )
    }
}

/// `Err(BufferTooSmall)` unless `buf` has room for `needed` bytes.
pub(crate) fn need_room(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::BufferTooSmall {
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// `Err(Truncated)` unless `input` holds at least `needed` bytes.
pub(crate) fn need_input(input: &[u8], needed: usize) -> Result<(), WireError> {
    if input.len() < needed {
        Err(WireError::Truncated {
            needed,
            got: input.len(),
        })
    } else {
        Ok(())
    }
}
