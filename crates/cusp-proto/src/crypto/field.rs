//! Constant-time arithmetic in GF(2^255 − 19), the field of Curve25519.
//!
//! A thin wrapper around the formally verified field functions of `fiat-crypto`
//! (`curve25519_64`, five 51-bit limbs). Every operation runs in time independent
//! of the values involved; secret-dependent choices go through [`subtle`].
// spec: channel.md §3.4.1

use fiat_crypto::curve25519_64::{
    fiat_25519_add, fiat_25519_carry, fiat_25519_carry_mul, fiat_25519_carry_square,
    fiat_25519_from_bytes, fiat_25519_loose_field_element, fiat_25519_opp, fiat_25519_relax,
    fiat_25519_selectznz, fiat_25519_sub, fiat_25519_tight_field_element, fiat_25519_to_bytes,
};
use std::ops::{Add, Mul, Neg, Sub};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, CtOption};
use zeroize::Zeroize;

/// An element of GF(p), p = 2^255 − 19, always kept in fiat's "tight" limb bounds.
#[derive(Clone, Copy)]
pub struct Fe(fiat_25519_tight_field_element);

/// `(p − 1) / 2 = 2^254 − 10`, little-endian: the bound of the "negative" predicate.
const HALF_P_MINUS_1: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xf6;
    b[31] = 0x3f;
    b
};

impl Fe {
    /// The element 0.
    pub const ZERO: Fe = Fe(fiat_25519_tight_field_element([0; 5]));
    /// The element 1.
    pub const ONE: Fe = Fe(fiat_25519_tight_field_element([1, 0, 0, 0, 0]));
    /// `486662`, the Montgomery coefficient A of Curve25519.
    pub const A: Fe = Fe(fiat_25519_tight_field_element([486662, 0, 0, 0, 0]));
    /// `I = 2^((p−1)/4)`, a square root of −1 (used by the square-root rule of §3.4.2).
    pub const SQRT_M1: Fe = Fe::from_bytes_mod_p(&hex32(
        b"b0a00e4a271beec478e42fad0618432fa7d7fb3d99004d2b0bdfc14f8024832b",
    ));

    /// The element `LE256⁻¹(bytes) mod p`, with bit 255 ignored (the reference's reading of x).
    pub const fn from_bytes_mod_p(bytes: &[u8; 32]) -> Fe {
        let mut b = *bytes;
        b[31] &= 0x7f;
        let mut out = fiat_25519_tight_field_element([0; 5]);
        fiat_25519_from_bytes(&mut out, &b);
        Fe(out)
    }

    /// The element encoded by `bytes` if they are the canonical encoding of a value `< p`
    /// (bit 255 clear); otherwise none.
    pub fn from_canonical_bytes(bytes: &[u8; 32]) -> CtOption<Fe> {
        let fe = Fe::from_bytes_mod_p(bytes);
        let canonical = fe.to_bytes().ct_eq(bytes);
        CtOption::new(fe, canonical)
    }

    /// The canonical little-endian encoding (`0 ≤ value < p`, bit 255 clear).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        fiat_25519_to_bytes(&mut out, &self.0);
        out
    }

    fn loose(&self) -> fiat_25519_loose_field_element {
        let mut out = fiat_25519_loose_field_element([0; 5]);
        fiat_25519_relax(&mut out, &self.0);
        out
    }

    fn tighten(loose: &fiat_25519_loose_field_element) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 5]);
        fiat_25519_carry(&mut out, loose);
        Fe(out)
    }

    /// `self²`.
    pub fn square(&self) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 5]);
        fiat_25519_carry_square(&mut out, &self.loose());
        Fe(out)
    }

    /// `self^(2^k)` (k successive squarings), `k ≥ 1`.
    fn pow2k(&self, k: u32) -> Fe {
        let mut t = self.square();
        for _ in 1..k {
            t = t.square();
        }
        t
    }

    /// `(self^(2^250 − 1), self^11)`, the common prefix of [`Self::invert`] and
    /// [`Self::pow_p58`] (the addition chain of ref10).
    fn pow22501(&self) -> (Fe, Fe) {
        let z = *self;
        let t0 = z.square(); // 2
        let t1 = t0.pow2k(2) * z; // 9
        let z11 = t0 * t1; // 11
        let t0 = z11.square() * t1; // 31 = 2^5 - 1
        let t0 = t0.pow2k(5) * t0; // 2^10 - 1
        let t1 = t0.pow2k(10) * t0; // 2^20 - 1
        let t1 = t1.pow2k(20) * t1; // 2^40 - 1
        let t0 = t1.pow2k(10) * t0; // 2^50 - 1
        let t1 = t0.pow2k(50) * t0; // 2^100 - 1
        let t1 = t1.pow2k(100) * t1; // 2^200 - 1
        let t0 = t1.pow2k(50) * t0; // 2^250 - 1
        (t0, z11)
    }

    /// `self^(p−2)`: the multiplicative inverse, and 0 for 0.
    pub fn invert(&self) -> Fe {
        let (t, z11) = self.pow22501();
        t.pow2k(5) * z11 // 2^255 - 32 + 11 = p - 2
    }

    /// `self^((p−5)/8) = self^(2^252 − 3)`, the exponent β of the square-root rule.
    // spec: channel.md §3.4.2 (step 3)
    pub fn pow_p58(&self) -> Fe {
        let (t, _) = self.pow22501();
        t.pow2k(2) * *self
    }

    /// A square root of `self` if it is a square (0 included); none otherwise.
    ///
    /// The root returned is the reference's candidate `y0` (§3.4.2 step 3): `r = z·β`
    /// if `r² = z`, else `r·I`. Callers fix the sign themselves.
    // spec: channel.md §3.4.2 (step 3)
    pub fn sqrt(&self) -> CtOption<Fe> {
        let r = *self * self.pow_p58();
        let r_is_root = r.square().ct_eq(self);
        let y0 = Fe::conditional_select(&(r * Fe::SQRT_M1), &r, r_is_root);
        CtOption::new(y0, y0.square().ct_eq(self))
    }

    /// True for the element 0.
    pub fn is_zero(&self) -> Choice {
        self.to_bytes().ct_eq(&[0u8; 32])
    }

    /// The "negative" predicate of the point encoding: `self > (p − 1)/2` as canonical integers.
    // spec: channel.md §3.4.2
    pub fn is_negative(&self) -> Choice {
        // (p-1)/2 - self, limb by limb; a final borrow means self > (p-1)/2.
        let y = self.to_bytes();
        let mut borrow = 0u16;
        for (a, b) in HALF_P_MINUS_1.iter().zip(y.iter()) {
            let d = u16::from(*a)
                .wrapping_sub(u16::from(*b))
                .wrapping_sub(borrow);
            borrow = (d >> 8) & 1;
        }
        Choice::from(borrow as u8)
    }

    /// The low bit of the canonical value (the Ed25519 sign convention).
    pub fn is_odd(&self) -> Choice {
        Choice::from(self.to_bytes()[0] & 1)
    }
}

/// Parse 64 hex digits at compile time (for constants only).
const fn hex32(s: &[u8; 64]) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex constant"),
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Field constant from 64 little-endian hex digits, evaluated at compile time.
pub(crate) const fn fe_const(s: &[u8; 64]) -> Fe {
    Fe::from_bytes_mod_p(&hex32(s))
}

impl Add for Fe {
    type Output = Fe;
    fn add(self, rhs: Fe) -> Fe {
        let mut out = fiat_25519_loose_field_element([0; 5]);
        fiat_25519_add(&mut out, &self.0, &rhs.0);
        Fe::tighten(&out)
    }
}

impl Sub for Fe {
    type Output = Fe;
    fn sub(self, rhs: Fe) -> Fe {
        let mut out = fiat_25519_loose_field_element([0; 5]);
        fiat_25519_sub(&mut out, &self.0, &rhs.0);
        Fe::tighten(&out)
    }
}

impl Neg for Fe {
    type Output = Fe;
    fn neg(self) -> Fe {
        let mut out = fiat_25519_loose_field_element([0; 5]);
        fiat_25519_opp(&mut out, &self.0);
        Fe::tighten(&out)
    }
}

impl Mul for Fe {
    type Output = Fe;
    fn mul(self, rhs: Fe) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 5]);
        fiat_25519_carry_mul(&mut out, &self.loose(), &rhs.loose());
        Fe(out)
    }
}

impl ConstantTimeEq for Fe {
    fn ct_eq(&self, other: &Fe) -> Choice {
        self.to_bytes().ct_eq(&other.to_bytes())
    }
}

impl ConditionallySelectable for Fe {
    fn conditional_select(a: &Fe, b: &Fe, choice: Choice) -> Fe {
        let mut out = [0u64; 5];
        fiat_25519_selectznz(&mut out, choice.unwrap_u8(), &(a.0).0, &(b.0).0);
        Fe(fiat_25519_tight_field_element(out))
    }
}

impl Zeroize for Fe {
    fn zeroize(&mut self) {
        (self.0).0.zeroize();
    }
}

impl std::fmt::Debug for Fe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field elements may be secret: show nothing.
        f.write_str("Fe(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fe(n: u64) -> Fe {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        Fe::from_bytes_mod_p(&b)
    }

    /// p − 1 + k as canonical bytes (k small).
    fn p_plus(k: u8) -> [u8; 32] {
        let mut b = [0xff; 32];
        b[31] = 0x7f;
        b[0] = 0xed + k; // p = 2^255 - 19 ends in 0xed
        b
    }

    #[test]
    fn canonical_bytes() {
        assert!(bool::from(Fe::from_canonical_bytes(&p_plus(0)).is_none())); // p
        assert!(bool::from(Fe::from_canonical_bytes(&p_plus(1)).is_none())); // p + 1
        let mut pm1 = p_plus(0);
        pm1[0] = 0xec;
        let x = Fe::from_canonical_bytes(&pm1).unwrap();
        assert_eq!(x.to_bytes(), pm1);
        assert!(bool::from((x + Fe::ONE).is_zero()));
        let mut high = [0u8; 32];
        high[31] = 0x80;
        assert!(bool::from(Fe::from_canonical_bytes(&high).is_none()));
    }

    #[test]
    fn arithmetic() {
        let a = fe(123456789);
        let b = fe(987654321);
        assert_eq!((a * b).to_bytes(), fe(123456789 * 987654321).to_bytes());
        assert_eq!((a + b - b).to_bytes(), a.to_bytes());
        assert!(bool::from((a + (-a)).is_zero()));
        assert_eq!((a * a.invert()).to_bytes(), Fe::ONE.to_bytes());
        assert!(bool::from(Fe::ZERO.invert().is_zero()));
        assert_eq!(a.square().to_bytes(), (a * a).to_bytes());
        assert!(bool::from(Fe::SQRT_M1.square().ct_eq(&(-Fe::ONE))));
    }

    #[test]
    fn square_roots() {
        for n in 1..40u64 {
            let z = fe(n);
            let r = z.sqrt();
            if bool::from(r.is_some()) {
                assert!(bool::from(r.unwrap().square().ct_eq(&z)));
            } else {
                // Non-squares: -1 is a square mod p, so n * I^2 = -n is also a non-square.
                assert!(bool::from((-z).sqrt().is_none()));
            }
        }
        assert!(bool::from(fe(2).sqrt().is_none())); // 2 is a non-square mod p (p ≡ 5 mod 8)
        assert!(bool::from(fe(4).sqrt().is_some()));
        assert!(bool::from(Fe::ZERO.sqrt().unwrap().is_zero()));
    }

    #[test]
    fn negativity_is_a_magnitude_comparison() {
        let half = Fe::from_bytes_mod_p(&HALF_P_MINUS_1);
        assert!(!bool::from(half.is_negative()));
        assert!(bool::from((half + Fe::ONE).is_negative()));
        assert!(!bool::from(Fe::ZERO.is_negative()));
        assert!(!bool::from(Fe::ONE.is_negative()));
        assert!(bool::from((-Fe::ONE).is_negative()));
        // Unlike the Ed25519 rule, parity does not matter.
        assert!(!bool::from(fe(3).is_negative()));
    }

    #[test]
    fn select() {
        let a = fe(5);
        let b = fe(7);
        assert_eq!(
            Fe::conditional_select(&a, &b, Choice::from(0)).to_bytes(),
            a.to_bytes()
        );
        assert_eq!(
            Fe::conditional_select(&a, &b, Choice::from(1)).to_bytes(),
            b.to_bytes()
        );
    }
}
