//! Tokio runtime for CUSP.
//!
//! What is here now:
//! - [`udp`]: [`UdpIo`](udp::UdpIo), the runtime's UDP socket — batched sends through UDP
//!   GSO, batched receives through `recvmmsg` and UDP GRO, large socket buffers, and an error
//!   type that tells the protocol core about EMSGSIZE.
//! - [`relay`]: [`Relay`](relay::Relay), a userspace UDP impairment relay (delay, jitter, loss,
//!   duplication, reordering, rate limit) for testing applications under a bad network
//!   where the kernel offers no netem.
//!
//! Coming next: the `Endpoint` and stream API, driving the sans-IO core of `cusp-proto` over
//! [`udp::UdpIo`].

#![warn(missing_docs)]

pub mod relay;
pub mod udp;
