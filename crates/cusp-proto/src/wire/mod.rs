//! Byte layouts of channel datagrams (`spec/channel.md` §2) and stream
//! segments (`spec/streams.md` §1).
//!
//! Parsers return views borrowing the input and never allocate or panic; every
//! length is checked before use and nothing is sized by a length read from the
//! input. Writers fill caller-supplied buffers and return the written length.
//!
//! * [`datagram`]: the common header, HELLO/WELCOME/FAIL/NOSTATE, DATA headers,
//!   FORWARD_REQ/FORWARD_ACK/ICMP_ACK; sizes of §2.11.
//! * [`address`]: munged IPv4 socket addresses (§2.3).
//! * [`seq`]: 28-bit sequence number extension (§2.9).
//! * [`segment`]: stream segments and payload iteration.
//! * [`error`]: the error type, [`WireError`].

pub mod address;
pub mod datagram;
pub mod error;
pub mod segment;
pub mod seq;

pub use address::{ADDRESS_LEN, munge, unmunge};
pub use datagram::{
    Data, DataHeader, Datagram, HEADER_LEN, MAC_LEN, MTU, MessageType, NEGOTIATION_LEN,
    Negotiation, NegotiationBits, STREAM_BUDGET, WELCOME_LEN, Welcome,
};
pub use error::WireError;
pub use segment::{PayloadWriter, Segment, Segments};
pub use seq::{extend28, truncate28};

#[cfg(test)]
mod tests;
