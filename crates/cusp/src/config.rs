//! Settings of an [`Endpoint`](crate::Endpoint).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use cusp_proto::channel::ChannelConfig;
use cusp_proto::crypto::{PrivateKey, PublicKeySuites, SymmetricSuites};
use cusp_proto::endpoint::EndpointConfig as ProtoEndpointConfig;
use cusp_proto::host::HostConfig;

use crate::udp::UdpConfig;

/// Settings of an [`Endpoint`](crate::Endpoint), with chained setters. `Default`: any
/// interface, an ephemeral port, a fresh key, the reference's suites with encryption, the
/// core's default limits, 8 MiB socket buffers.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Local address to bind (IPv4 only, as the protocol). Default `0.0.0.0:0`.
    pub bind: SocketAddrV4,
    /// Our identity; a fresh key from the OS entropy when `None`.
    pub private_key: Option<PrivateKey>,
    /// Channel table limits and the channel settings (suites, encryption, MTU, handshake
    /// timers) of the sans-IO core.
    pub proto: ProtoEndpointConfig,
    /// Host table limits and per-stream buffers of the sans-IO core.
    pub hosts: HostConfig,
    /// UDP socket buffer sizes.
    pub udp: UdpConfig,
    /// Send low-water mark of new out-streams: a writer blocked on a full send buffer is
    /// woken only once this many bytes are free, so it writes in large pieces instead of one
    /// packet at a time (default 64 KiB; clamped to the stream's send buffer; 0 wakes on
    /// any free byte). Per stream: [`OutStream::set_low_water`](crate::OutStream::set_low_water).
    pub send_low_water: usize,
    /// How long [`Endpoint::close`](crate::Endpoint::close) (and the background close
    /// after the last handle is dropped) waits for the channels to close before destroying
    /// them. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            private_key: None,
            proto: ProtoEndpointConfig::default(),
            hosts: HostConfig::default(),
            udp: UdpConfig::default(),
            send_low_water: 64 << 10,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("bind", &self.bind)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<secret>"),
            )
            .field("proto", &self.proto)
            .field("hosts", &self.hosts)
            .field("udp", &self.udp)
            .field("send_low_water", &self.send_low_water)
            .field("close_timeout", &self.close_timeout)
            .finish()
    }
}

impl EndpointConfig {
    /// Binds `addr`.
    pub fn bind(mut self, addr: SocketAddrV4) -> Self {
        self.bind = addr;
        self
    }

    /// Binds `127.0.0.1` on an ephemeral port (tests, examples).
    pub fn loopback() -> Self {
        Self::default().bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
    }

    /// Uses `key` as our identity.
    pub fn private_key(mut self, key: PrivateKey) -> Self {
        self.private_key = Some(key);
        self
    }

    /// Asks for encrypted (`true`, default) or authenticated-only (`false`) channels; the
    /// latter takes effect only if the peer asks for it too.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.proto.channel.encrypt = on;
        self
    }

    /// Public-key suites accepted (default `curve25519+whirlpool`).
    pub fn public_key_suites(mut self, suites: PublicKeySuites) -> Self {
        self.proto.channel.public_key_suites = suites;
        self
    }

    /// Symmetric suites accepted (default `poly1305+aes`).
    pub fn symmetric_suites(mut self, suites: SymmetricSuites) -> Self {
        self.proto.channel.symmetric_suites = suites;
        self
    }

    /// Replaces the channel settings.
    pub fn channel(mut self, channel: ChannelConfig) -> Self {
        self.proto.channel = channel;
        self
    }

    /// First handshake retransmission gap and the number of retransmissions: a contact
    /// fails after about `gap * (2^(retransmissions+1) - 1)` (reference: 500 ms, 8, i.e.
    /// 127.5-255 s with jitter).
    pub fn handshake(mut self, gap: Duration, retransmissions: u32) -> Self {
        self.proto.channel.handshake_gap = gap;
        self.proto.channel.handshake_retransmissions = retransmissions;
        self
    }

    /// Replaces the channel-table limits (and channel settings) of the core.
    pub fn proto(mut self, proto: ProtoEndpointConfig) -> Self {
        self.proto = proto;
        self
    }

    /// Replaces the host-table limits and stream buffers of the core.
    pub fn hosts(mut self, hosts: HostConfig) -> Self {
        self.hosts = hosts;
        self
    }

    /// Per-stream send buffer (default 1 MiB).
    pub fn stream_send_buffer(mut self, bytes: usize) -> Self {
        self.hosts.out_stream.send_buffer = bytes;
        self
    }

    /// Requested socket buffer sizes (`SO_SNDBUF`, `SO_RCVBUF`).
    pub fn socket_buffers(mut self, send: usize, recv: usize) -> Self {
        self.udp = UdpConfig {
            send_buffer: send,
            recv_buffer: recv,
        };
        self
    }

    /// See [`EndpointConfig::send_low_water`].
    pub fn send_low_water(mut self, bytes: usize) -> Self {
        self.send_low_water = bytes;
        self
    }

    /// See [`EndpointConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}
