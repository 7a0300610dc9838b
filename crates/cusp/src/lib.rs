//! Tokio runtime for CUSP: reliable, authenticated, unidirectional streams over UDP.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # async fn demo() -> cusp::Result<()> {
//! let server = cusp::Endpoint::bind(cusp::EndpointConfig::loopback())?;
//! let mut incoming = server.advertise(Some(23))?;
//! let client = cusp::Endpoint::bind(cusp::EndpointConfig::loopback())?;
//! let (_host, mut out) = client.contact(server.local_addr(), 23).await?;
//! out.write_all(b"hello").await?;
//! out.finish().await?;
//! let (_peer, _service, stream) = incoming.accept().await.unwrap();
//! assert_eq!(stream.read_to_end(1 << 20).await?, b"hello");
//! # Ok(()) }
//! ```
//!
//! * [`Endpoint`]: one UDP socket and our identity; `contact`, `advertise`, hosts, address
//!   watch, `close`. A driver task per endpoint runs the sans-IO core of `cusp-proto`.
//! * [`Host`]: a peer by public key; `connect`, `listen`.
//! * [`OutStream`] (`AsyncWrite`) and [`InStream`] (`AsyncRead`).
//! * [`conversation`]: request/response over two streams ([`Endpoint::request`],
//!   [`Endpoint::serve`]).
//! * [`keys`]: key generation and key files in the reference format.
//! * [`udp`]: batched UDP I/O (GSO/GRO); [`relay`]: a UDP impairment relay for tests.
//!
//! Errors are one [`Error`] enum.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod conversation;
mod driver;
mod endpoint;
mod error;
mod host;
pub mod keys;
pub mod relay;
mod slots;
mod stream;
pub mod udp;

pub use config::EndpointConfig;
pub use conversation::{MAX_MESSAGE, Server};
pub use endpoint::{Accepted, Endpoint, Stats};
pub use error::{Error, Result};
pub use host::{Host, Incoming};
pub use stream::{InStream, OutStream};

/// Types of the sans-IO core that appear in this API.
pub mod proto {
    pub use cusp_proto::channel::{ChannelConfig, ChannelStats};
    pub use cusp_proto::crypto::{
        PrivateKey, PublicKey, PublicKeySuite, PublicKeySuites, SymmetricSuite, SymmetricSuites,
    };
    pub use cusp_proto::endpoint::{EndpointConfig, EndpointStats, RateLimit};
    pub use cusp_proto::host::{
        HostConfig, HostInfo, HostStats, InStreamInfo, OutStreamInfo, StreamHandle,
    };
    pub use cusp_proto::stream::{InStreamConfig, InStreamState, OutStreamConfig, OutStreamState};
}
pub use cusp_proto::crypto::{PrivateKey, PublicKey};
