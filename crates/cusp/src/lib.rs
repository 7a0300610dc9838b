//! Tokio runtime for CUSP.
pub mod udp;
