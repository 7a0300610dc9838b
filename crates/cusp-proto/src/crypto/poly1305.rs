//! Poly1305 (RFC 8439 §2.5, Bernstein 2005) over one contiguous message, in
//! portable 64-bit arithmetic: three 44/44/42-bit limbs, products in `u128`.
//!
//! Why not the `poly1305` crate: its AVX2 backend calls intrinsics from helpers
//! compiled without the `avx2` feature, so on a default (`x86-64` baseline)
//! build every intrinsic becomes a function call and a 1.4 KB datagram costs
//! several times more than this scalar loop (measured in `docs/BENCHMARKS.md`).
//! The crate stays a dev-dependency: the tests below compare both on random input.
//!
//! The computation is branch-free in the key and message contents; only the
//! message length decides the control flow.

use zeroize::Zeroize;

const M44: u64 = (1 << 44) - 1;
const M42: u64 = (1 << 42) - 1;

/// Block size in bytes.
const BLOCK: usize = 16;

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

/// The clamped multiplier `r` in limbs, with `s1 = 20·r1`, `s2 = 20·r2`
/// (2^130 ≡ 5, and the limb shifts add the factor 4).
struct R {
    r0: u64,
    r1: u64,
    r2: u64,
    s1: u64,
    s2: u64,
}

impl R {
    fn new(r: &[u8; 16]) -> R {
        let t0 = le64(&r[0..8]);
        let t1 = le64(&r[8..16]);
        let r0 = t0 & 0xffc_0fff_ffff;
        let r1 = ((t0 >> 44) | (t1 << 20)) & 0xfff_ffc0_ffff;
        let r2 = (t1 >> 24) & 0x00f_ffff_fc0f;
        R::from_limbs([r0, r1, r2])
    }

    fn from_limbs([r0, r1, r2]: [u64; 3]) -> R {
        R {
            r0,
            r1,
            r2,
            s1: r1 * 20,
            s2: r2 * 20,
        }
    }

    /// `r²`, partially reduced (limbs stay below 2^45, which the products of
    /// [`blocks2`] allow).
    fn squared(&self) -> R {
        R::from_limbs(reduce(self.mul([self.r0, self.r1, self.r2])))
    }

    /// The unreduced product `h · r` as three column sums.
    #[inline(always)]
    fn mul(&self, [h0, h1, h2]: [u64; 3]) -> [u128; 3] {
        [
            m(h0, self.r0) + m(h1, self.s2) + m(h2, self.s1),
            m(h0, self.r1) + m(h1, self.r0) + m(h2, self.s2),
            m(h0, self.r2) + m(h1, self.r1) + m(h2, self.r0),
        ]
    }
}

#[inline(always)]
fn m(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

/// Carries column sums back into 44/44/42-bit limbs (partially reduced).
#[inline(always)]
fn reduce([d0, mut d1, mut d2]: [u128; 3]) -> [u64; 3] {
    let c = (d0 >> 44) as u64;
    let mut h0 = d0 as u64 & M44;
    d1 += u128::from(c);
    let c = (d1 >> 44) as u64;
    let h1 = d1 as u64 & M44;
    d2 += u128::from(c);
    let c = (d2 >> 42) as u64;
    let h2 = d2 as u64 & M42;
    h0 += c * 5;
    let c = h0 >> 44;
    h0 &= M44;
    [h0, h1 + c, h2]
}

/// The limbs of one 16-byte block plus `hibit` (2^128 in the top limb for a
/// full block, 0 for the padded final block).
#[inline(always)]
fn limbs(m: &[u8], hibit: u64) -> [u64; 3] {
    let t0 = le64(&m[0..8]);
    let t1 = le64(&m[8..16]);
    [
        t0 & M44,
        ((t0 >> 44) | (t1 << 20)) & M44,
        ((t1 >> 24) & M42) | hibit,
    ]
}

impl Drop for R {
    fn drop(&mut self) {
        self.r0.zeroize();
        self.r1.zeroize();
        self.r2.zeroize();
        self.s1.zeroize();
        self.s2.zeroize();
    }
}

/// `h = (h + block) · r mod 2^130 − 5`, partially reduced.
#[inline(always)]
fn block(h: &mut [u64; 3], r: &R, m: &[u8], hibit: u64) {
    let [m0, m1, m2] = limbs(m, hibit);
    *h = reduce(r.mul([h[0] + m0, h[1] + m1, h[2] + m2]));
}

/// Two full blocks at once: `h = (h + a) · r² + b · r`. The two products are
/// independent (the CPU overlaps them) and share one carry chain.
#[inline(always)]
fn blocks2(h: &mut [u64; 3], r: &R, r2: &R, m: &[u8]) {
    let [a0, a1, a2] = limbs(&m[..16], 1 << 40);
    let [x, y, z] = r2.mul([h[0] + a0, h[1] + a1, h[2] + a2]);
    let [u, v, w] = r.mul(limbs(&m[16..32], 1 << 40));
    *h = reduce([x + u, y + v, z + w]);
}

/// The 16-byte Poly1305 tag of `msg` under the one-time key `(r, s)`.
pub(crate) fn tag(r: &[u8; 16], s: &[u8; 16], msg: &[u8]) -> [u8; 16] {
    let key = R::new(r);
    let key2 = key.squared();
    let mut h = [0u64; 3];
    let mut pairs = msg.chunks_exact(2 * BLOCK);
    for m in &mut pairs {
        blocks2(&mut h, &key, &key2, m);
    }
    let mut chunks = pairs.remainder().chunks_exact(BLOCK);
    for m in &mut chunks {
        block(&mut h, &key, m, 1 << 40);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; BLOCK];
        last[..rest.len()].copy_from_slice(rest);
        last[rest.len()] = 1;
        block(&mut h, &key, &last, 0);
        last.zeroize();
    }
    let out = finish(h, s);
    h.zeroize();
    out
}

/// Full carry, reduction mod 2^130 − 5 (constant time), then `+ s mod 2^128`.
fn finish(h: [u64; 3], s: &[u8; 16]) -> [u8; 16] {
    let [mut h0, mut h1, mut h2] = h;
    let mut c;
    // Two carry rounds leave every limb within its width.
    for _ in 0..2 {
        c = h1 >> 44;
        h1 &= M44;
        h2 += c;
        c = h2 >> 42;
        h2 &= M42;
        h0 += c * 5;
        c = h0 >> 44;
        h0 &= M44;
        h1 += c;
    }

    // g = h + 5 − 2^130; keep g if it did not go negative.
    let mut g0 = h0 + 5;
    c = g0 >> 44;
    g0 &= M44;
    let mut g1 = h1 + c;
    c = g1 >> 44;
    g1 &= M44;
    let mut g2 = (h2 + c).wrapping_sub(1 << 42);
    let keep_g = (g2 >> 63).wrapping_sub(1);
    g0 &= keep_g;
    g1 &= keep_g;
    g2 &= keep_g;
    let keep_h = !keep_g;
    h0 = (h0 & keep_h) | g0;
    h1 = (h1 & keep_h) | g1;
    h2 = (h2 & keep_h) | g2;

    let t0 = le64(&s[0..8]);
    let t1 = le64(&s[8..16]);
    h0 += t0 & M44;
    c = h0 >> 44;
    h0 &= M44;
    h1 += (((t0 >> 44) | (t1 << 20)) & M44) + c;
    c = h1 >> 44;
    h1 &= M44;
    h2 += ((t1 >> 24) & M42) + c;
    h2 &= M42;

    let lo = h0 | (h1 << 44);
    let hi = (h1 >> 20) | (h2 << 24);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_le_bytes());
    out[8..].copy_from_slice(&hi.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use poly1305::universal_hash::KeyInit;
    use proptest::prelude::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc8439_2_5_2() {
        let r = h::<16>("85d6be7857556d337f4452fe42d506a8");
        let s = h::<16>("0103808afb0db2fd4abff6af4149f51b");
        let t = tag(&r, &s, b"Cryptographic Forum Research Group");
        assert_eq!(hex::encode(t), "a8061dc1305136c6c22b8baf0c0127a9");
    }

    #[test]
    fn reduction_edge_cases() {
        // RFC 8439 A.3 #5: h reaches 2^130 − 5 + small, exercising the final select.
        let mut r = [0u8; 16];
        r[0] = 2;
        let s = [0u8; 16];
        let t = tag(&r, &s, &[0xff; 16]);
        assert_eq!(hex::encode(t), "03000000000000000000000000000000");
        // RFC 8439 A.3 #6.
        let mut s6 = [0u8; 16];
        s6[..16].copy_from_slice(&[0xff; 16]);
        let mut m = [0u8; 16];
        m[0] = 2;
        assert_eq!(
            hex::encode(tag(&r, &s6, &m)),
            "03000000000000000000000000000000"
        );
    }

    proptest! {
        #[test]
        fn matches_the_poly1305_crate(
            key in proptest::array::uniform32(any::<u8>()),
            msg in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut r = [0u8; 16];
            let mut s = [0u8; 16];
            r.copy_from_slice(&key[..16]);
            s.copy_from_slice(&key[16..]);
            let expected: [u8; 16] =
                poly1305::Poly1305::new(&poly1305::Key::from(key)).compute_unpadded(&msg).into();
            prop_assert_eq!(tag(&r, &s, &msg), expected);
        }

        #[test]
        fn matches_on_all_ones(len in 0usize..200) {
            let msg = vec![0xff; len];
            let key = [0xff; 32];
            let expected: [u8; 16] =
                poly1305::Poly1305::new(&poly1305::Key::from(key)).compute_unpadded(&msg).into();
            prop_assert_eq!(tag(&[0xff; 16], &[0xff; 16], &msg), expected);
        }
    }
}
