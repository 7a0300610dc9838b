//! Crypto suites of `spec/channel.md` §3.
//!
//! * [`suite`]: suite identifiers, 16-bit suite sets, costs, `cheapest`.
//! * [`field`]: constant-time GF(2^255 − 19) arithmetic (on `fiat-crypto`).
//! * [`curve`]: full (x, y) Curve25519 points, CUSP's point encoding, group operations.
//! * [`whirlpool`]: the raw Whirlpool compression function and `H_n`.
//! * [`keys`]: long-term private keys, public keys, the saved-key hex format.
//! * [`hmqv`]: the curve25519+whirlpool HMQV computation with its intermediates.
//! * [`handshake`]: ephemeral halves and key agreement for both public-key suites.
//! * [`poly1305aes`]: AES-128 keystream and Poly1305-AES tag of `poly1305+aes` (§3.6).
//! * [`crc32`]: the keyed checksum and tag of `crc32` (§3.5).
//! * [`session`]: [`SessionKeys`], in-place sealing and opening of WELCOME and DATA (§3.8).

pub mod crc32;
pub mod curve;
pub mod field;
pub mod handshake;
pub mod hmqv;
pub mod keys;
mod poly1305;
pub mod poly1305aes;
pub mod session;
pub mod suite;
pub mod whirlpool;

pub use handshake::Ephemeral;
pub use keys::{PrivateKey, PublicKey};
pub use session::SessionKeys;
pub use suite::{PublicKeySuite, PublicKeySuites, SymmetricSuite, SymmetricSuites};

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Errors of key agreement, sealing and key handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A peer's public key or ephemeral value is not an acceptable curve point
    /// (x ≥ p, x = 0, not on the curve, small order or outside the prime-order subgroup).
    #[error("invalid public point: {0}")]
    InvalidPoint(&'static str),
    /// The key agreement produced a degenerate value (identity or exceptional addition, remark R2).
    #[error("degenerate key agreement")]
    Degenerate,
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    BadTag,
    /// The sealed input is shorter than the tag (or the DATA header plus tag).
    #[error("sealed datagram too short")]
    TooShort,
    /// An operation of one public-key suite was asked of a value of another suite.
    #[error("public-key suite mismatch")]
    WrongSuite,
    /// A saved private key string could not be parsed.
    #[error("invalid private key: {0}")]
    BadPrivateKey(&'static str),
}

/// A source of random bytes, injected so that the protocol core stays deterministic under test.
pub trait Entropy {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> Entropy for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf)
    }
}

/// Directional key material produced by a key agreement: `len` bytes each,
/// where `len` is the symmetric suite's key length (channel.md §3.1).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial {
    send: [u8; 32],
    recv: [u8; 32],
    len: usize,
}

impl KeyMaterial {
    /// Key material from `send` and `recv`, which must have equal length ≤ 32.
    ///
    /// # Panics
    /// If the lengths differ or exceed 32 (a programming error, never input-driven).
    pub fn new(send: &[u8], recv: &[u8]) -> Self {
        assert!(
            send.len() == recv.len() && send.len() <= 32,
            "key material length"
        );
        let mut m = KeyMaterial {
            send: [0; 32],
            recv: [0; 32],
            len: send.len(),
        };
        m.send[..send.len()].copy_from_slice(send);
        m.recv[..recv.len()].copy_from_slice(recv);
        m
    }

    /// This side's sending key (`k_send`).
    pub fn send(&self) -> &[u8] {
        &self.send[..self.len]
    }

    /// This side's receiving key (`k_recv`).
    pub fn recv(&self) -> &[u8] {
        &self.recv[..self.len]
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({} bytes, redacted)", self.len)
    }
}
