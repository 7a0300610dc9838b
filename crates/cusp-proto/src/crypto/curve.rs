//! Full (x, y) points of Curve25519, `y² = x³ + 486662·x² + x`, with CUSP's point
//! encoding and the group operations HMQV needs.
//!
//! Route: a validated Montgomery point (u, v) is mapped to the birationally
//! equivalent twisted Edwards curve of Ed25519,
//! `x_ed = c·u/v`, `y_ed = (u − 1)/(u + 1)` with `c` the square root of −486664
//! that sends `G = (9, y_G)` to Ed25519's base point, and handed to
//! `curve25519-dalek` as a `CompressedEdwardsY` (sign = low bit of `x_ed`).
//! dalek then provides constant-time scalar multiplication, complete addition,
//! the subgroup checks and the fixed-base table; results are mapped back with
//! `u = (1 + y_ed)/(1 − y_ed)`, `v = c·u/x_ed` on our own [`Fe`] (the other root
//! −c would only compose the map with negation, which is an automorphism).
//!
//! Every [`Point`] lies in the prime-order subgroup (decode rejects all others),
//! so scalars may be reduced modulo ℓ: `(k mod ℓ)·P` equals the reference's
//! integer `k·P` (channel.md §3.4.6 notes).
// spec: channel.md §3.4.1, §3.4.3

use super::CryptoError;
use super::field::{Fe, fe_const};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;
use curve25519_dalek::{EdwardsPoint, Scalar};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

/// `c = √−486664`, the root (odd one) that maps `G` to Ed25519's base point.
const C: Fe = fe_const(b"e781ba0055fb91337de582b42e2c5e3a81b003fc23f7842d44f95f9f0b12d970");

/// A point of the prime-order subgroup of Curve25519 (order ℓ), never the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Point {
    ed: EdwardsPoint,
}

/// `clamp(k)`: clear bits 0, 1, 2 and 255, set bit 254 (RFC 7748 `decodeScalar25519`).
// spec: channel.md §3.4.4
pub fn clamp(bytes: &[u8; 32]) -> [u8; 32] {
    let mut k = *bytes;
    k[0] &= 0xf8;
    k[31] &= 0x7f;
    k[31] |= 0x40;
    k
}

/// True when `bytes` is already a clamped scalar.
pub fn is_clamped(bytes: &[u8; 32]) -> bool {
    bytes[0] & 0x07 == 0 && bytes[31] & 0xc0 == 0x40
}

/// `z = x³ + 486662·x² + x`, the right-hand side of the curve equation.
fn curve_rhs(x: &Fe) -> Fe {
    *x * ((*x + Fe::A) * *x + Fe::ONE)
}

impl Point {
    /// The generator `G = (9, y_G)` of §3.4.1.
    pub fn generator() -> Point {
        Point {
            ed: ED25519_BASEPOINT_POINT,
        }
    }

    /// The point with Montgomery coordinates `(x, y)`, if it is on the curve and in
    /// the prime-order subgroup.
    pub fn from_affine(x: &Fe, y: &Fe) -> Result<Point, CryptoError> {
        if bool::from(x.is_zero()) {
            return Err(CryptoError::InvalidPoint("x = 0 (point of order 2)"));
        }
        if !bool::from(y.square().ct_eq(&curve_rhs(x))) {
            return Err(CryptoError::InvalidPoint("not on the curve"));
        }
        // x = -1 is excluded: it would be a point of order 4 and has no Edwards image.
        if bool::from((*x + Fe::ONE).is_zero()) {
            return Err(CryptoError::InvalidPoint("small-order point"));
        }
        // One inversion for both coordinates: inv = 1 / (y·(x+1)).
        let inv = (*y * (*x + Fe::ONE)).invert();
        let x_ed = C * *x * (*x + Fe::ONE) * inv;
        let y_ed = (*x - Fe::ONE) * *y * inv;
        let mut compressed = y_ed.to_bytes();
        compressed[31] |= x_ed.is_odd().unwrap_u8() << 7;
        let ed = CompressedEdwardsY(compressed)
            .decompress()
            .ok_or(CryptoError::InvalidPoint("not on the curve"))?;
        if ed.is_small_order() {
            return Err(CryptoError::InvalidPoint("small-order point"));
        }
        if !ed.is_torsion_free() {
            return Err(CryptoError::InvalidPoint("not in the prime-order subgroup"));
        }
        Ok(Point { ed })
    }

    /// Decode a 32-byte point encoding (§3.4.2) and validate it.
    ///
    /// Follows the reference's decode rule, but rejects (remark R8) `x ≥ p`, `x = 0`,
    /// non-square `z` (x not on the curve), and points outside the prime-order
    /// subgroup, which honest peers never send.
    // spec: channel.md §3.4.2, §7 R8
    pub fn decode(bytes: &[u8; 32]) -> Result<Point, CryptoError> {
        let sign = bytes[31] >> 7;
        let mut xb = *bytes;
        xb[31] &= 0x7f;
        let x = Option::<Fe>::from(Fe::from_canonical_bytes(&xb))
            .ok_or(CryptoError::InvalidPoint("x ≥ p"))?;
        if bool::from(x.is_zero()) {
            return Err(CryptoError::InvalidPoint("x = 0 (point of order 2)"));
        }
        let y0 = Option::<Fe>::from(curve_rhs(&x).sqrt()).ok_or(CryptoError::InvalidPoint(
            "x not on the curve (z is not a square)",
        ))?;
        // Choose the root whose negativity equals the sign bit.
        let flip = y0.is_negative() ^ subtle::Choice::from(sign);
        let y = Fe::conditional_select(&y0, &(-y0), flip);
        Point::from_affine(&x, &y)
    }

    /// The Montgomery coordinates `(x, y)` of the point, in constant time.
    pub fn to_affine(&self) -> (Fe, Fe) {
        let compressed = self.ed.compress().to_bytes();
        let sign = subtle::Choice::from(compressed[31] >> 7);
        let y_ed = Fe::from_bytes_mod_p(&compressed);
        let u = (Fe::ONE + y_ed) * (Fe::ONE - y_ed).invert();
        // v = ±√z; the Edwards sign bit (parity of x_ed = c·u/v) picks the root.
        let v0 = curve_rhs(&u).sqrt().unwrap_or(Fe::ZERO); // always a square here
        let x0 = C * u * v0.invert();
        let flip = x0.is_odd() ^ sign;
        let v = Fe::conditional_select(&v0, &(-v0), flip);
        (u, v)
    }

    /// The 32-byte encoding: `LE256(x)` with bit 255 set iff `y > (p−1)/2`.
    // spec: channel.md §3.4.2
    pub fn encode(&self) -> [u8; 32] {
        let (x, y) = self.to_affine();
        let mut out = x.to_bytes();
        out[31] |= y.is_negative().unwrap_u8() << 7;
        out
    }

    /// `clamp(k)·G` for the raw scalar bytes `k` (never the identity: a clamped
    /// scalar is not a multiple of ℓ).
    // spec: channel.md §3.4.4
    pub fn mul_base_clamped(raw: &[u8; 32]) -> Point {
        Point {
            ed: EdwardsPoint::mul_base_clamped(*raw),
        }
    }

    /// `k·G`; `Degenerate` if `k ≡ 0 (mod ℓ)`.
    pub fn mul_base(k: &Scalar) -> Result<Point, CryptoError> {
        Point::checked(EdwardsPoint::mul_base(k))
    }

    /// `k·self` in constant time; `Degenerate` if the result is the identity.
    pub fn mul(&self, k: &Scalar) -> Result<Point, CryptoError> {
        Point::checked(self.ed * k)
    }

    /// `self + other` with the reference's affine chord rule: `Degenerate` when both
    /// points have the same x (equal or opposite points; remark R2).
    // spec: channel.md §3.4.3, §7 R2
    pub fn add(&self, other: &Point) -> Result<Point, CryptoError> {
        if self.x_equals(other) {
            return Err(CryptoError::Degenerate);
        }
        Point::checked(self.ed + other.ed)
    }

    /// The negated point `(x, −y)`.
    pub fn negate(&self) -> Point {
        Point { ed: -self.ed }
    }

    /// True when both points have the same x-coordinate (`P = ±Q`).
    pub fn x_equals(&self, other: &Point) -> bool {
        bool::from(self.ed.ct_eq(&other.ed) | self.ed.ct_eq(&(-other.ed)))
    }

    fn checked(ed: EdwardsPoint) -> Result<Point, CryptoError> {
        if ed.is_identity() {
            Err(CryptoError::Degenerate)
        } else {
            Ok(Point { ed })
        }
    }
}

impl Zeroize for Point {
    fn zeroize(&mut self) {
        self.ed.zeroize();
    }
}

impl std::fmt::Debug for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Points such as σ are secret; public ones are shown through `encode`.
        f.write_str("Point(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::MontgomeryPoint;
    use proptest::prelude::*;

    const Y_G: &str =
        "14781619447589544791020593568409986887264606134616475288964881837755586237401";

    fn fe_u64(n: u64) -> Fe {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        Fe::from_bytes_mod_p(&b)
    }

    /// Decimal string to field element (test helper, small and slow).
    fn fe_dec(s: &str) -> Fe {
        let ten = fe_u64(10);
        s.bytes()
            .fold(Fe::ZERO, |acc, d| acc * ten + fe_u64(u64::from(d - b'0')))
    }

    fn unhex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn c_is_a_square_root_of_minus_486664() {
        assert!(bool::from(C.square().ct_eq(&(-fe_u64(486664)))));
    }

    #[test]
    fn generator_coordinates() {
        let (x, y) = Point::generator().to_affine();
        assert_eq!(x.to_bytes(), fe_u64(9).to_bytes());
        assert_eq!(y.to_bytes(), fe_dec(Y_G).to_bytes());
        assert!(!bool::from(y.is_negative()));
        let mut enc = [0u8; 32];
        enc[0] = 9;
        assert_eq!(Point::generator().encode(), enc);
        assert_eq!(Point::decode(&enc).unwrap(), Point::generator());
        // The other sign decodes to -G.
        enc[31] |= 0x80;
        assert_eq!(Point::decode(&enc).unwrap(), Point::generator().negate());
    }

    #[test]
    fn vector_c_public_points() {
        // spec: channel.md §10 C
        let cases = [
            (
                "434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162",
                "d87a9cb8b89ec911ce8e7cc97cf61b6fc37936d237ee67f29956d89311301886",
            ),
            (
                "838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2",
                "9e1f5271ef5159acc415019e32ec04f327d9d859795a82bcc40f0dffd9566e6b",
            ),
            (
                "636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182",
                "95d2b57c9f49b01106f95b1dd593d4ac11c9a7623bedd06f32d5e00bda17e90e",
            ),
            (
                "a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2",
                "e293411aefc44dd15f5ff5f6f73e415e73629223b8003a2f6fe626a175aa69ab",
            ),
        ];
        for (raw, public) in cases {
            let p = Point::mul_base_clamped(&unhex32(raw));
            assert_eq!(hex::encode(p.encode()), public);
            assert_eq!(Point::decode(&unhex32(public)).unwrap(), p);
        }
    }

    #[test]
    fn affine_round_trip_and_chord_addition() {
        // 2G + 3G = 5G, checked against the explicit chord formula of §3.4.3.
        let two = Point::mul_base(&Scalar::from(2u8)).unwrap();
        let three = Point::mul_base(&Scalar::from(3u8)).unwrap();
        let five = Point::mul_base(&Scalar::from(5u8)).unwrap();
        let (xp, yp) = two.to_affine();
        let (xq, yq) = three.to_affine();
        let lambda = (yp - yq) * (xp - xq).invert();
        let xr = lambda.square() - Fe::A - xp - xq;
        let yr = lambda * (xp - xr) - yp;
        let (x5, y5) = five.to_affine();
        assert_eq!(xr.to_bytes(), x5.to_bytes());
        assert_eq!(yr.to_bytes(), y5.to_bytes());
        assert_eq!(two.add(&three).unwrap(), five);
        assert_eq!(Point::from_affine(&x5, &y5).unwrap(), five);
        assert_eq!(two.add(&two), Err(CryptoError::Degenerate));
        assert_eq!(two.add(&two.negate()), Err(CryptoError::Degenerate));
    }

    #[test]
    fn small_order_and_invalid_encodings_are_rejected() {
        let p_bytes = unhex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        let mut bad: Vec<[u8; 32]> = vec![[0u8; 32], p_bytes];
        // x = p + 9 (non-canonical 9), x = 2^255 - 1 (≥ p), with and without sign.
        let mut p9 = p_bytes;
        p9[0] = 0xf6;
        bad.push(p9);
        bad.push([0xff; 32]);
        let mut top = [0xff; 32];
        top[31] = 0x7f;
        bad.push(top);
        // The 8-torsion x-coordinates (RFC 7748 / libsodium blocklist) with both signs.
        for hx in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            let x = unhex32(hx);
            bad.push(x);
            let mut neg = x;
            neg[31] |= 0x80;
            bad.push(neg);
        }
        for v in &bad {
            assert!(Point::decode(v).is_err(), "accepted {}", hex::encode(v));
        }
        let mut nonsquare = 0;
        for x in 2u8..40 {
            let mut v = [0u8; 32];
            v[0] = x;
            if let Err(CryptoError::InvalidPoint(why)) = Point::decode(&v)
                && why.contains("square")
            {
                nonsquare += 1;
            }
        }
        assert!(nonsquare > 5);
    }

    #[test]
    fn mixed_order_points_are_rejected() {
        // G plus a point of order 2, 4 or 8 is on the curve but outside the subgroup.
        let torsion = curve25519_dalek::constants::EIGHT_TORSION;
        for t in &torsion[1..] {
            let p = Point {
                ed: ED25519_BASEPOINT_POINT + t,
            };
            let enc = p.encode();
            assert!(
                Point::decode(&enc).is_err(),
                "accepted {}",
                hex::encode(enc)
            );
        }
    }

    #[test]
    fn rfc7748_diffie_hellman_public_keys() {
        // RFC 7748 §6.1: Alice's and Bob's public keys are X25519(k, 9) = x(clamp(k)·G).
        for (k, public) in [
            (
                "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
                "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
            ),
            (
                "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
                "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
            ),
        ] {
            let mut x = Point::mul_base_clamped(&unhex32(k)).encode();
            x[31] &= 0x7f;
            assert_eq!(hex::encode(x), public);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn x_coordinate_matches_x25519(k in any::<[u8; 32]>()) {
            let mut x = Point::mul_base_clamped(&k).encode();
            x[31] &= 0x7f;
            prop_assert_eq!(x, MontgomeryPoint::mul_base_clamped(k).to_bytes());
        }

        #[test]
        fn encode_decode_round_trip(k in any::<[u8; 32]>()) {
            let p = Point::mul_base_clamped(&k);
            prop_assert_eq!(Point::decode(&p.encode()).unwrap(), p);
        }

        #[test]
        fn decode_never_panics(v in any::<[u8; 32]>()) {
            if let Ok(p) = Point::decode(&v) {
                prop_assert_eq!(p.encode(), v);
            }
        }
    }
}
