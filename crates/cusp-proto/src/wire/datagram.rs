//! Channel datagrams: the common header, the negotiation messages, DATA and the
//! NAT helper messages, as borrowed views ([`Datagram::parse`]) and writers
//! into caller-supplied buffers.
//!
//! Parsing never allocates and never panics: every view borrows the input and
//! every length is checked before the bytes are read.
// spec: channel.md §2

use std::net::SocketAddrV4;

use super::address::{ADDRESS_LEN, munge, unmunge};
use super::error::{WireError, need_input, need_room};
use super::seq::{SEQ_MASK, extend28, truncate28};
use crate::crypto::suite::{PublicKeySuites, SymmetricSuites};

// spec: channel.md §2.11
/// Largest UDP payload a peer may send or receive (1500 − IPv4 20 − UDP 8 − PPPoE 8).
pub const MTU: usize = 1468;
/// Length of the common header (`W1`, `W2`).
pub const HEADER_LEN: usize = 8;
/// Length of the MAC of WELCOME and DATA (both symmetric suites).
pub const MAC_LEN: usize = 16;
/// Length of a long-term public key or ephemeral value (both public-key suites).
pub const KEY_LEN: usize = 32;
/// Length of a HELLO, and of the MACed part of a WELCOME: header, two keys, munged address.
pub const NEGOTIATION_LEN: usize = HEADER_LEN + 2 * KEY_LEN + ADDRESS_LEN;
/// Length of a HELLO as sent.
pub const HELLO_LEN: usize = NEGOTIATION_LEN;
/// Length of a WELCOME as sent (negotiation part plus MAC).
pub const WELCOME_LEN: usize = NEGOTIATION_LEN + MAC_LEN;
/// Length of FAIL, FORWARD_ACK and ICMP_ACK as sent.
pub const SHORT_LEN: usize = HEADER_LEN;
/// Shortest DATA datagram that is not dropped: header plus MAC.
pub const MIN_DATA_LEN: usize = HEADER_LEN + MAC_LEN;
/// Stream payload budget of one DATA datagram: `MTU − header − MAC`.
pub const STREAM_BUDGET: usize = MTU - HEADER_LEN - MAC_LEN;
/// Longest NOSTATE token a sender produces (`last16` of a datagram).
pub const MAX_TOKEN_LEN: usize = 16;
/// Offset of the embedded datagram in a FORWARD_REQ (header plus munged address).
pub const FORWARD_REQ_HEADER_LEN: usize = HEADER_LEN + ADDRESS_LEN;
/// Shortest embedded datagram a FORWARD_REQ may carry.
pub const MIN_FORWARDED_LEN: usize = 8;

/// The message type, the high nibble of byte 0.
// spec: channel.md §2.1
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// NOSTATE (0): "I have no state for the datagram ending in this token".
    Nostate = 0,
    /// FAIL (1): no common suite.
    Fail = 1,
    /// HELLO (2): handshake offer.
    Hello = 2,
    /// WELCOME (3): handshake answer, MACed.
    Welcome = 3,
    /// DATA (6): sealed stream payload.
    Data = 6,
    /// DATA with the finish flag (7).
    DataFinish = 7,
    /// FORWARD_REQ (8): ask a helper to deliver a HELLO.
    ForwardReq = 8,
    /// FORWARD_ACK (9): the helper's answer.
    ForwardAck = 9,
    /// ICMP_ACK (10): hole-punching ICMP was received.
    IcmpAck = 10,
}

impl MessageType {
    /// The type of a header nibble; 4, 5 and 11..15 are [`WireError::UnknownType`].
    pub const fn from_nibble(nibble: u8) -> Result<Self, WireError> {
        Ok(match nibble {
            0 => MessageType::Nostate,
            1 => MessageType::Fail,
            2 => MessageType::Hello,
            3 => MessageType::Welcome,
            6 => MessageType::Data,
            7 => MessageType::DataFinish,
            8 => MessageType::ForwardReq,
            9 => MessageType::ForwardAck,
            10 => MessageType::IcmpAck,
            n => return Err(WireError::UnknownType(n)),
        })
    }

    /// The 4-bit value in the header.
    pub const fn nibble(self) -> u8 {
        self as u8
    }

    /// The type of a datagram; datagrams shorter than the 8-byte header are truncated.
    pub fn of(datagram: &[u8]) -> Result<Self, WireError> {
        need_input(datagram, HEADER_LEN)?;
        Self::from_nibble(datagram[0] >> 4)
    }
}

/// Reads the two header words; the caller has checked the length.
fn words(datagram: &[u8]) -> (u32, u32) {
    let mut w1 = [0; 4];
    let mut w2 = [0; 4];
    w1.copy_from_slice(&datagram[0..4]);
    w2.copy_from_slice(&datagram[4..8]);
    (u32::from_be_bytes(w1), u32::from_be_bytes(w2))
}

fn put_words(buf: &mut [u8], w1: u32, w2: u32) {
    buf[0..4].copy_from_slice(&w1.to_be_bytes());
    buf[4..8].copy_from_slice(&w2.to_be_bytes());
}

/// Fixed-size sub-array of `bytes` at `at`; the caller has checked the length.
fn array<const N: usize>(bytes: &[u8], at: usize) -> &[u8; N] {
    bytes[at..at + N]
        .try_into()
        .expect("length checked by caller")
}

/// The flags and suite masks of a FAIL, HELLO or WELCOME header.
// spec: channel.md §2.2
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NegotiationBits {
    /// Public-key suite mask (`W2` bits 31..16).
    pub public_key: PublicKeySuites,
    /// Symmetric suite mask (`W2` bits 15..0); unknown bits are tolerated.
    pub symmetric: SymmetricSuites,
    /// `W1` bit 1: DATA payloads may travel (or, in a WELCOME, will travel) unencrypted.
    pub no_encrypt: bool,
    /// `W1` bit 0: resume the host state presented earlier.
    pub resume: bool,
}

impl NegotiationBits {
    const NO_ENCRYPT: u32 = 1 << 1;
    const RESUME: u32 = 1 << 0;

    /// The bits of a header; bits 27..2 of `W1` are ignored, masks are not validated.
    fn from_words(w1: u32, w2: u32) -> Self {
        NegotiationBits {
            public_key: PublicKeySuites::from_mask((w2 >> 16) as u16),
            symmetric: SymmetricSuites::from_mask(w2 as u16),
            no_encrypt: w1 & Self::NO_ENCRYPT != 0,
            resume: w1 & Self::RESUME != 0,
        }
    }

    /// `Err(BadSuiteMask)` if the public-key mask is empty or has a bit other than
    /// 0x0001 and 0x0002 (the receiver rule of HELLO and WELCOME).
    // spec: channel.md §2.4 receiver rules
    pub fn check_public_key(&self) -> Result<(), WireError> {
        if self.public_key.is_empty() || !self.public_key.is_known() {
            Err(WireError::BadSuiteMask(self.public_key.mask()))
        } else {
            Ok(())
        }
    }

    /// Writes the 8-byte header of type `ty` with these bits (reserved bits zero).
    fn put_header(&self, ty: MessageType, buf: &mut [u8]) {
        let mut w1 = u32::from(ty.nibble()) << 28;
        if self.no_encrypt {
            w1 |= Self::NO_ENCRYPT;
        }
        if self.resume {
            w1 |= Self::RESUME;
        }
        let w2 = u32::from(self.public_key.mask()) << 16 | u32::from(self.symmetric.mask());
        put_words(buf, w1, w2);
    }

    /// Writes a FAIL datagram (8 bytes) carrying these bits; returns its length.
    // spec: channel.md §2.5
    pub fn emit_fail(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        need_room(buf, SHORT_LEN)?;
        self.put_header(MessageType::Fail, buf);
        Ok(SHORT_LEN)
    }
}

/// The 78-byte negotiation part shared by HELLO and WELCOME: header bits, the
/// sender's long-term public key and ephemeral value, and the address the
/// datagram was sent to.
// spec: channel.md §2.4
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Negotiation<'a> {
    /// Flags and suite masks.
    pub bits: NegotiationBits,
    /// The sender's long-term public key (field B at offset 8).
    pub static_key: &'a [u8; KEY_LEN],
    /// The sender's ephemeral public value (field Y at offset 40).
    pub ephemeral: &'a [u8; KEY_LEN],
    /// The receiver's address as seen by the sender (un-munged from offset 72).
    pub address: SocketAddrV4,
}

impl<'a> Negotiation<'a> {
    /// Parses bytes 0..78 of a HELLO or WELCOME; the type nibble is not checked here.
    fn parse(datagram: &'a [u8]) -> Result<Self, WireError> {
        need_input(datagram, NEGOTIATION_LEN)?;
        let (w1, w2) = words(datagram);
        let bits = NegotiationBits::from_words(w1, w2);
        bits.check_public_key()?;
        Ok(Negotiation {
            bits,
            static_key: array(datagram, HEADER_LEN),
            ephemeral: array(datagram, HEADER_LEN + KEY_LEN),
            address: unmunge(array(datagram, HEADER_LEN + 2 * KEY_LEN)),
        })
    }

    fn put(&self, ty: MessageType, buf: &mut [u8]) -> Result<(), WireError> {
        self.bits.check_public_key()?;
        self.bits.put_header(ty, buf);
        buf[HEADER_LEN..HEADER_LEN + KEY_LEN].copy_from_slice(self.static_key);
        buf[HEADER_LEN + KEY_LEN..HEADER_LEN + 2 * KEY_LEN].copy_from_slice(self.ephemeral);
        buf[HEADER_LEN + 2 * KEY_LEN..NEGOTIATION_LEN].copy_from_slice(&munge(self.address));
        Ok(())
    }

    /// Writes a HELLO (78 bytes); returns its length. A public-key mask the
    /// receiver would reject is refused with [`WireError::BadSuiteMask`].
    pub fn emit_hello(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        need_room(buf, HELLO_LEN)?;
        self.put(MessageType::Hello, buf)?;
        Ok(HELLO_LEN)
    }

    /// Writes bytes 0..78 of a WELCOME into a buffer of at least [`WELCOME_LEN`]
    /// (94) bytes and returns 78, the length of the MAC input. The crypto layer
    /// then writes the 16-byte MAC over `buf[..78]` into `buf[78..94]`.
    pub fn emit_welcome_body(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        need_room(buf, WELCOME_LEN)?;
        self.put(MessageType::Welcome, buf)?;
        Ok(NEGOTIATION_LEN)
    }
}

/// A received WELCOME: the negotiation part, and the MAC with its input.
// spec: channel.md §2.4, §3.8
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Welcome<'a> {
    /// Bits, keys and address from bytes 0..78.
    pub body: Negotiation<'a>,
    /// The last 16 bytes of the datagram.
    pub mac: &'a [u8; MAC_LEN],
    /// Every byte before the MAC (bytes 0..78 for a well-formed WELCOME).
    pub mac_input: &'a [u8],
}

/// The header fields of a DATA datagram (types 6 and 7).
// spec: channel.md §2.7
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// Type 7: the sender's host is a zombie.
    pub finish: bool,
    /// Low 28 bits of the sender's TSN.
    pub tsn28: u32,
    /// Number of TSNs below `asn` also acknowledged (0..15).
    pub acklen: u8,
    /// Low 28 bits of the acknowledged sequence number.
    pub asn28: u32,
}

impl DataHeader {
    /// The header for full sequence numbers: TSN and ASN are reduced mod 2^28,
    /// `acklen` saturates at 15.
    pub fn new(finish: bool, tsn: u64, acklen: u32, asn: u64) -> Self {
        DataHeader {
            finish,
            tsn28: truncate28(tsn),
            acklen: acklen.min(15) as u8,
            asn28: truncate28(asn),
        }
    }

    fn from_words(w1: u32, w2: u32) -> Self {
        DataHeader {
            finish: w1 >> 28 == u32::from(MessageType::DataFinish.nibble()),
            tsn28: w1 & SEQ_MASK,
            acklen: (w2 >> 28) as u8,
            asn28: w2 & SEQ_MASK,
        }
    }

    /// Writes the 8-byte header `W1 = (finish ? 7 : 6) << 28 | tsn28`,
    /// `W2 = min(acklen, 15) << 28 | asn28` (fields masked to their width); returns 8.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        need_room(buf, HEADER_LEN)?;
        let ty = if self.finish {
            MessageType::DataFinish
        } else {
            MessageType::Data
        };
        let w1 = u32::from(ty.nibble()) << 28 | (self.tsn28 & SEQ_MASK);
        let w2 = u32::from(self.acklen.min(15)) << 28 | (self.asn28 & SEQ_MASK);
        put_words(buf, w1, w2);
        Ok(HEADER_LEN)
    }

    /// The peer's full TSN, extended against `reference` (see [`super::seq`]).
    pub fn tsn(&self, reference: u64) -> u64 {
        extend28(self.tsn28, reference)
    }

    /// The peer's full ASN, extended against `reference` (see [`super::seq`]).
    pub fn asn(&self, reference: u64) -> u64 {
        extend28(self.asn28, reference)
    }
}

/// A received DATA datagram of at least 24 bytes: header fields and the sealed body.
// spec: channel.md §2.7
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Data<'a> {
    /// Header fields.
    pub header: DataHeader,
    datagram: &'a [u8],
}

impl<'a> Data<'a> {
    /// The whole datagram.
    pub fn datagram(&self) -> &'a [u8] {
        self.datagram
    }

    /// The sealed body, bytes `[8, len)`: ciphertext then MAC.
    pub fn sealed(&self) -> &'a [u8] {
        &self.datagram[HEADER_LEN..]
    }

    /// The (possibly encrypted) stream payload, bytes `[8, len − 16)`.
    pub fn ciphertext(&self) -> &'a [u8] {
        &self.datagram[HEADER_LEN..self.datagram.len() - MAC_LEN]
    }

    /// The MAC input: header and ciphertext, bytes `[0, len − 16)`.
    pub fn mac_input(&self) -> &'a [u8] {
        &self.datagram[..self.datagram.len() - MAC_LEN]
    }

    /// The MAC, the last 16 bytes.
    pub fn mac(&self) -> &'a [u8; MAC_LEN] {
        array(self.datagram, self.datagram.len() - MAC_LEN)
    }
}

/// A parsed channel datagram borrowing the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datagram<'a> {
    /// NOSTATE (type 0).
    // spec: channel.md §2.6
    Nostate {
        /// Bytes 8..end: the tail of the datagram that caused the NOSTATE (non-empty).
        token: &'a [u8],
    },
    /// FAIL (type 1).
    Fail {
        /// The sender's configured bits; not validated, receivers only use the type.
        bits: NegotiationBits,
    },
    /// HELLO (type 2). Bytes after offset 78 are ignored.
    Hello(Negotiation<'a>),
    /// WELCOME (type 3).
    Welcome(Welcome<'a>),
    /// DATA (types 6 and 7).
    Data(Data<'a>),
    /// FORWARD_REQ (type 8).
    // spec: channel.md §2.8
    ForwardReq {
        /// Where the helper should deliver the embedded datagram.
        address: SocketAddrV4,
        /// The embedded datagram (a HELLO in practice), at least 8 bytes.
        hello: &'a [u8],
    },
    /// FORWARD_ACK (type 9).
    ForwardAck,
    /// ICMP_ACK (type 10).
    IcmpAck,
}

impl<'a> Datagram<'a> {
    /// Parses a received datagram, applying the receiver rules of `spec/channel.md` §2.
    ///
    /// Errors are the event CORRUPT, except [`WireError::DataTooShort`] (dropped);
    /// see [`WireError::is_corrupt`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, WireError> {
        let ty = MessageType::of(datagram)?;
        let (w1, w2) = words(datagram);
        Ok(match ty {
            // spec: channel.md §2.6
            MessageType::Nostate => {
                let token = &datagram[HEADER_LEN..];
                if token.is_empty() {
                    return Err(WireError::EmptyToken);
                }
                Datagram::Nostate { token }
            }
            // spec: channel.md §2.5
            MessageType::Fail => Datagram::Fail {
                bits: NegotiationBits::from_words(w1, w2),
            },
            // spec: channel.md §2.4
            MessageType::Hello => Datagram::Hello(Negotiation::parse(datagram)?),
            MessageType::Welcome => {
                let body = Negotiation::parse(datagram)?;
                // The MAC is the last 16 bytes of the datagram, whatever its length (≥ 78).
                let split = datagram.len() - MAC_LEN;
                Datagram::Welcome(Welcome {
                    body,
                    mac: array(datagram, split),
                    mac_input: &datagram[..split],
                })
            }
            // spec: channel.md §2.7
            MessageType::Data | MessageType::DataFinish => {
                if datagram.len() < MIN_DATA_LEN {
                    return Err(WireError::DataTooShort {
                        got: datagram.len(),
                    });
                }
                Datagram::Data(Data {
                    header: DataHeader::from_words(w1, w2),
                    datagram,
                })
            }
            // spec: channel.md §2.8
            MessageType::ForwardReq => {
                need_input(datagram, FORWARD_REQ_HEADER_LEN + MIN_FORWARDED_LEN)?;
                Datagram::ForwardReq {
                    address: unmunge(array(datagram, HEADER_LEN)),
                    hello: &datagram[FORWARD_REQ_HEADER_LEN..],
                }
            }
            MessageType::ForwardAck => Datagram::ForwardAck,
            MessageType::IcmpAck => Datagram::IcmpAck,
        })
    }

    /// The message type (DATA with finish is [`MessageType::DataFinish`]).
    pub fn message_type(&self) -> MessageType {
        match self {
            Datagram::Nostate { .. } => MessageType::Nostate,
            Datagram::Fail { .. } => MessageType::Fail,
            Datagram::Hello(_) => MessageType::Hello,
            Datagram::Welcome(_) => MessageType::Welcome,
            Datagram::Data(d) if d.header.finish => MessageType::DataFinish,
            Datagram::Data(_) => MessageType::Data,
            Datagram::ForwardReq { .. } => MessageType::ForwardReq,
            Datagram::ForwardAck => MessageType::ForwardAck,
            Datagram::IcmpAck => MessageType::IcmpAck,
        }
    }

    /// Length of the datagram [`Datagram::emit`] writes.
    pub fn wire_len(&self) -> usize {
        match self {
            Datagram::Nostate { token } => HEADER_LEN + token.len(),
            Datagram::Fail { .. } | Datagram::ForwardAck | Datagram::IcmpAck => SHORT_LEN,
            Datagram::Hello(_) => HELLO_LEN,
            Datagram::Welcome(_) => WELCOME_LEN,
            Datagram::Data(d) => d.datagram.len(),
            Datagram::ForwardReq { hello, .. } => FORWARD_REQ_HEADER_LEN + hello.len(),
        }
    }

    /// Writes this datagram in its canonical form (reserved bits zero, a WELCOME
    /// with its `mac`, a DATA with its header and sealed body copied); returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            Datagram::Nostate { token } => emit_nostate(token, buf),
            Datagram::Fail { bits } => bits.emit_fail(buf),
            Datagram::Hello(h) => h.emit_hello(buf),
            Datagram::Welcome(w) => {
                let n = w.body.emit_welcome_body(buf)?;
                buf[n..WELCOME_LEN].copy_from_slice(w.mac);
                Ok(WELCOME_LEN)
            }
            Datagram::Data(d) => {
                let len = d.datagram.len();
                need_room(buf, len)?;
                d.header.emit(buf)?;
                buf[HEADER_LEN..len].copy_from_slice(d.sealed());
                Ok(len)
            }
            Datagram::ForwardReq { address, hello } => emit_forward_req(*address, hello, buf),
            Datagram::ForwardAck => emit_forward_ack(buf),
            Datagram::IcmpAck => emit_icmp_ack(buf),
        }
    }
}

/// Writes a NOSTATE carrying `token` (1..=16 bytes); returns `8 + token.len()`.
// spec: channel.md §2.6
pub fn emit_nostate(token: &[u8], buf: &mut [u8]) -> Result<usize, WireError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(WireError::FieldOutOfRange {
            field: "NOSTATE token length",
            value: token.len() as u64,
        });
    }
    let len = HEADER_LEN + token.len();
    need_room(buf, len)?;
    put_words(buf, 0, 0);
    buf[HEADER_LEN..len].copy_from_slice(token);
    Ok(len)
}

/// The NOSTATE token for `datagram`: its last `min(16, len)` bytes (`last16`).
// spec: channel.md §0.1, §2.6
pub fn tail_token(datagram: &[u8]) -> &[u8] {
    &datagram[datagram.len().saturating_sub(MAX_TOKEN_LEN)..]
}

/// Writes a FORWARD_REQ asking a helper to deliver `hello` (at least 8 bytes) to
/// `address`; returns `14 + hello.len()`.
// spec: channel.md §2.8
pub fn emit_forward_req(
    address: SocketAddrV4,
    hello: &[u8],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    if hello.len() < MIN_FORWARDED_LEN {
        return Err(WireError::FieldOutOfRange {
            field: "forwarded datagram length",
            value: hello.len() as u64,
        });
    }
    let len = FORWARD_REQ_HEADER_LEN + hello.len();
    need_room(buf, len)?;
    put_words(buf, u32::from(MessageType::ForwardReq.nibble()) << 28, 0);
    buf[HEADER_LEN..FORWARD_REQ_HEADER_LEN].copy_from_slice(&munge(address));
    buf[FORWARD_REQ_HEADER_LEN..len].copy_from_slice(hello);
    Ok(len)
}

fn emit_short(ty: MessageType, buf: &mut [u8]) -> Result<usize, WireError> {
    need_room(buf, SHORT_LEN)?;
    put_words(buf, u32::from(ty.nibble()) << 28, 0);
    Ok(SHORT_LEN)
}

/// Writes a FORWARD_ACK (8 bytes); returns 8.
// spec: channel.md §2.8
pub fn emit_forward_ack(buf: &mut [u8]) -> Result<usize, WireError> {
    emit_short(MessageType::ForwardAck, buf)
}

/// Writes an ICMP_ACK (8 bytes); returns 8.
// spec: channel.md §2.8
pub fn emit_icmp_ack(buf: &mut [u8]) -> Result<usize, WireError> {
    emit_short(MessageType::IcmpAck, buf)
}
