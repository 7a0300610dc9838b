//! Sans-IO core of CUSP, the Channel-based Unidirectional Stream Protocol.
//!
//! This crate owns no sockets, clocks or threads: time is passed in as an
//! [`std::time::Instant`], randomness through an injected entropy source, and
//! datagrams are handed in and pulled out by the caller. Data flows one way:
//! datagram → [`wire`] view → channel → host → stream → application, and back.
//!
//! * [`wire`]: zero-copy views and writers for channel datagrams
//!   (`spec/channel.md` §2) and stream segments (`spec/streams.md` §1).
//! * [`channel`]: one channel per remote address (`spec/channel.md` §4, §5):
//!   negotiation, sealing, acks, loss detection and RTT, congestion control.
//! * [`stream`]: per-stream algorithms (`spec/streams.md` §1-§3): out-streams,
//!   in-streams, flow control, the priority scheduler, stream ids.
//! * [`host`]: hosts by public key, their streams and services (`spec/streams.md`
//!   §3, §4.2-§4.5): the [`endpoint::host_layer::HostLayer`] of real applications.
//! * [`endpoint`]: channels by address and the host layer above them.
//! * [`crypto`]: the suites of `spec/channel.md` §3: key agreement
//!   (`curve25519+whirlpool`, `xor`), sealing (`poly1305+aes`, `crc32`),
//!   long-term keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod crypto;
pub mod endpoint;
pub mod hash;
pub mod host;
pub mod stream;
pub mod wire;
