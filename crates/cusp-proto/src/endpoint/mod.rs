//! The endpoint: one UDP socket's worth of channels, by remote address, and the
//! host layer above them (`spec/channel.md` §4.1, `spec/streams.md` §4).

pub mod host_layer;

pub use host_layer::{ChannelRequest, HostLayer};
