//! Endpoint-wide settings every channel of the endpoint shares.

use std::time::Duration;

use super::constants::{HANDSHAKE_GAP, HANDSHAKE_RETRANSMISSIONS};
use crate::crypto::{PublicKeySuites, SymmetricSuites};
use crate::wire::{MTU, NegotiationBits};

/// Settings of the channels of one endpoint (`spec/channel.md` §4.2 `local`,
/// §4.6, §2.11). `Default` gives the reference's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelConfig {
    /// Public-key suites we accept (default: `curve25519+whirlpool` only; the
    /// `xor` test suite offers no security at all, remark R5).
    pub public_key_suites: PublicKeySuites,
    /// Symmetric suites we accept (default: `poly1305+aes` only).
    pub symmetric_suites: SymmetricSuites,
    /// Encrypt DATA payloads. `false` asks for "MAC only", which takes effect
    /// only if the peer asks for it too (§3.7).
    pub encrypt: bool,
    /// Largest UDP payload sent. The reference receives at most 1468 bytes, so
    /// larger values are only safe between cusp peers (§2.11).
    pub mtu: usize,
    /// First handshake retransmission gap; doubles per retry (§4.6: 500 ms).
    pub handshake_gap: Duration,
    /// Handshake retransmissions before the channel dies (§4.6: 8).
    pub handshake_retransmissions: u32,
    /// Seed of the deterministic handshake jitter (§4.6, remark R7).
    pub jitter_seed: u64,
    /// Pad our HELLOs to the size of a WELCOME (94 bytes; the reference
    /// ignores bytes after 78, §2.4) so that a responder limiting its replies to
    /// what an unverified address sent it can answer the first HELLO at once.
    pub pad_hello: bool,
    /// Never send an unverified address (one that has not completed a
    /// handshake) more bytes than it sent us. Off, a responder answers every
    /// HELLO with a WELCOME as the reference does (94 bytes for 78).
    pub anti_amplification: bool,
    /// TSN counted as sent before the first DATA of an establishment. The
    /// protocol starts at 0 (first DATA carries TSN 1); tests set it high to
    /// cross the 2^27 and 2^28 boundaries of the 28-bit fields (§2.9). Both
    /// peers must use the same value: the receive side also starts from it
    /// (the "nothing received yet" ack, ASN = 0 on the wire, would otherwise
    /// extend to a real TSN near 2^28).
    pub initial_tsn: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            public_key_suites: PublicKeySuites::DEFAULTS,
            symmetric_suites: SymmetricSuites::DEFAULTS,
            encrypt: true,
            mtu: MTU,
            handshake_gap: HANDSHAKE_GAP,
            handshake_retransmissions: HANDSHAKE_RETRANSMISSIONS,
            jitter_seed: 0,
            pad_hello: true,
            anti_amplification: true,
            initial_tsn: 0,
        }
    }
}

impl ChannelConfig {
    /// The `local` negotiation bits of §4.2: configured suites, `noEncrypt`, no resume.
    pub fn local_bits(&self) -> NegotiationBits {
        NegotiationBits {
            public_key: self.public_key_suites,
            symmetric: self.symmetric_suites,
            no_encrypt: !self.encrypt,
            resume: false,
        }
    }
}
