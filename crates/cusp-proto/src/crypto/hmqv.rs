//! The HMQV key agreement of `curve25519+whirlpool`, with its intermediate values
//! (d, e, σ) exposed for test vectors.
// spec: channel.md §3.4.6

use super::curve::Point;
use super::keys::PrivateKey;
use super::whirlpool::hash_n;
use super::{CryptoError, KeyMaterial, SymmetricSuite};
use curve25519_dalek::Scalar;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Everything one side computes in an HMQV agreement.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmqvOutput {
    /// `H_16(X, B)`: own ephemeral with the peer's static key (little-endian bytes as hashed).
    pub d: [u8; 16],
    /// `H_16(Y, A)`: the peer's ephemeral with the own static key.
    pub e: [u8; 16],
    /// `encode(σ)`, the shared point (secret).
    pub sigma: [u8; 32],
    /// `k_send = H_L(σ, A)`, `k_recv = H_L(σ, B)` with `L = keyLen(sym)`.
    pub keys: KeyMaterial,
}

impl std::fmt::Debug for HmqvOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmqvOutput")
            .field("d", &self.d)
            .field("e", &self.e)
            .field("sigma", &"redacted")
            .field("keys", &self.keys)
            .finish()
    }
}

/// `LE128⁻¹(h)` as a scalar (exact: 2^128 < ℓ).
fn scalar128(h: &[u8; 16]) -> Scalar {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(h);
    Scalar::from_bytes_mod_order(b)
}

/// One side's HMQV computation.
///
/// `own` holds `a` and `A`; `x`/`x_public` are the own ephemeral scalar (mod ℓ) and
/// its encoding `X`; `peer_static` and `peer_ephemeral` are fields B and Y as
/// received. Errors: `InvalidPoint` for an unacceptable B or Y, `Degenerate` when
/// `x(Y) = x(e·B)` (remark R2) or when `S` or `σ` is the point at infinity.
// spec: channel.md §3.4.6
pub fn hmqv(
    own: &PrivateKey,
    x: &Scalar,
    x_public: &[u8; 32],
    peer_static: &[u8; 32],
    peer_ephemeral: &[u8; 32],
    sym: SymmetricSuite,
) -> Result<HmqvOutput, CryptoError> {
    let b = Point::decode(peer_static)?;
    let y = Point::decode(peer_ephemeral)?;
    // Accepted encodings are canonical, so the received bytes equal encode(B), encode(Y).
    let mut d = [0u8; 16];
    hash_n(x_public, peer_static, &mut d);
    let mut e = [0u8; 16];
    hash_n(peer_ephemeral, own.curve_public(), &mut e);

    // S = Y + e·B (affine addition: exceptional when x(Y) = x(e·B), remark R2).
    let eb = b.mul(&scalar128(&e))?;
    let s = y.add(&eb)?;
    // σ = (x + d·a)·S, with the exponent reduced mod ℓ (S is in the prime-order subgroup).
    let mut exponent = x + scalar128(&d) * own.scalar();
    let sigma_point = s.mul(&exponent);
    exponent.zeroize();
    let mut sigma_point = sigma_point?;
    let sigma = sigma_point.encode();
    sigma_point.zeroize();

    let len = sym.key_len();
    let mut send = [0u8; 32];
    let mut recv = [0u8; 32];
    hash_n(&sigma, own.curve_public(), &mut send[..len]);
    hash_n(&sigma, peer_static, &mut recv[..len]);
    let keys = KeyMaterial::new(&send[..len], &recv[..len]);
    send.zeroize();
    recv.zeroize();
    Ok(HmqvOutput { d, e, sigma, keys })
}
