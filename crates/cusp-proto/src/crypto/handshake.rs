//! Ephemeral handshake secrets (the spec's handshake "half") and key agreement
//! for both public-key suites.
// spec: channel.md §3.3, §3.4.6

use super::curve::{Point, clamp};
use super::hmqv::{HmqvOutput, hmqv};
use super::keys::{PrivateKey, xor_repeat};
use super::{CryptoError, Entropy, KeyMaterial, PublicKeySuite, SymmetricSuite};
use curve25519_dalek::Scalar;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// One ephemeral secret for one public-key suite, created with a handshake half
/// and reused for all retransmissions of its HELLO/WELCOME (§3.4.6 notes).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Ephemeral {
    #[zeroize(skip)]
    suite: PublicKeySuite,
    /// curve: `x mod ℓ` for `x = clamp(raw)`; xor: unused (zero).
    scalar: Scalar,
    /// Field Y as sent: curve `encode(x·G)`, xor the 32 raw bytes.
    public: [u8; 32],
}

impl Ephemeral {
    /// A fresh ephemeral for `suite`, taking exactly 32 bytes from `entropy`.
    pub fn generate(suite: PublicKeySuite, entropy: &mut impl Entropy) -> Ephemeral {
        let mut raw = Zeroizing::new([0u8; 32]);
        entropy.fill(&mut raw[..]);
        Ephemeral::from_raw(suite, &raw)
    }

    /// The ephemeral built from 32 raw entropy bytes: xor sends them as they are,
    /// curve25519 uses `x = clamp(LE256⁻¹(raw))` and sends `X = encode(x·G)`.
    // spec: channel.md §3.3, §3.4.4
    pub fn from_raw(suite: PublicKeySuite, raw: &[u8; 32]) -> Ephemeral {
        match suite {
            PublicKeySuite::Xor => Ephemeral {
                suite,
                scalar: Scalar::ZERO,
                public: *raw,
            },
            PublicKeySuite::Curve25519Whirlpool => {
                let clamped = Zeroizing::new(clamp(raw));
                Ephemeral {
                    suite,
                    scalar: Scalar::from_bytes_mod_order(*clamped),
                    public: Point::mul_base_clamped(&clamped).encode(),
                }
            }
        }
    }

    /// The public-key suite this ephemeral belongs to.
    pub fn suite(&self) -> PublicKeySuite {
        self.suite
    }

    /// Field Y as sent in HELLO/WELCOME.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// Derive the directional keys from the own static key `own`, and the peer's
    /// static key (field B) and ephemeral value (field Y), for symmetric suite `sym`.
    ///
    /// Both values are untrusted: any unacceptable input yields an error, never a panic.
    pub fn agree(
        &self,
        own: &PrivateKey,
        peer_static: &[u8; 32],
        peer_ephemeral: &[u8; 32],
        sym: SymmetricSuite,
    ) -> Result<KeyMaterial, CryptoError> {
        match self.suite {
            PublicKeySuite::Xor => Ok(self.agree_xor(own, peer_static, peer_ephemeral, sym)),
            PublicKeySuite::Curve25519Whirlpool => {
                let out = self.agree_hmqv(own, peer_static, peer_ephemeral, sym)?;
                Ok(out.keys.clone())
            }
        }
    }

    /// The curve25519+whirlpool agreement with its intermediates (d, e, σ).
    /// `WrongSuite` if this ephemeral belongs to the xor suite.
    pub fn agree_hmqv(
        &self,
        own: &PrivateKey,
        peer_static: &[u8; 32],
        peer_ephemeral: &[u8; 32],
        sym: SymmetricSuite,
    ) -> Result<HmqvOutput, CryptoError> {
        if self.suite != PublicKeySuite::Curve25519Whirlpool {
            return Err(CryptoError::WrongSuite);
        }
        hmqv(
            own,
            &self.scalar,
            &self.public,
            peer_static,
            peer_ephemeral,
            sym,
        )
    }

    /// xor: `k1 = xorKey ⊕ y`, `k2 = b ⊕ x`; `k_send = LE64(k1)×4`, `k_recv = LE64(k2)×4`,
    /// truncated to `keyLen`. Only the first 8 bytes of B, Y and X matter.
    // spec: channel.md §3.3
    fn agree_xor(
        &self,
        own: &PrivateKey,
        peer_static: &[u8; 32],
        peer_ephemeral: &[u8; 32],
        sym: SymmetricSuite,
    ) -> KeyMaterial {
        let le64 = |v: &[u8; 32]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&v[..8]);
            u64::from_le_bytes(w)
        };
        let k1 = Zeroizing::new(xor_repeat(own.xor_key() ^ le64(peer_ephemeral)));
        let k2 = Zeroizing::new(xor_repeat(le64(peer_static) ^ le64(&self.public)));
        let len = sym.key_len();
        KeyMaterial::new(&k1[..len], &k2[..len])
    }
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ephemeral({}, public ", self.suite)?;
        for b in &self.public {
            write!(f, "{b:02x}")?;
        }
        f.write_str(", secret redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CURVE: PublicKeySuite = PublicKeySuite::Curve25519Whirlpool;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// A private key whose curve scalar is `clamp(raw)` (xor key = 0).
    fn static_key(raw: &str) -> PrivateKey {
        let mut e = [0u8; 40];
        e[8..].copy_from_slice(&h::<32>(raw));
        PrivateKey::from_entropy(&e)
    }

    struct Side {
        key: PrivateKey,
        eph: Ephemeral,
    }

    /// Check both sides against `[d, e, sigma, k_send, k_recv]` as seen by side one.
    fn check_session(one: &Side, two: &Side, sym: SymmetricSuite, expected: [&str; 5]) {
        let [d, e, sigma, send, recv] = expected;
        let a = *one.key.public_key(CURVE).as_bytes();
        let b = *two.key.public_key(CURVE).as_bytes();
        let o1 = one
            .eph
            .agree_hmqv(&one.key, &b, two.eph.public(), sym)
            .unwrap();
        let o2 = two
            .eph
            .agree_hmqv(&two.key, &a, one.eph.public(), sym)
            .unwrap();
        assert_eq!(hex::encode(o1.d), d);
        assert_eq!(hex::encode(o1.e), e);
        assert_eq!(hex::encode(o2.d), e);
        assert_eq!(hex::encode(o2.e), d);
        assert_eq!(hex::encode(o1.sigma), sigma);
        assert_eq!(hex::encode(o2.sigma), sigma);
        assert_eq!(hex::encode(o1.keys.send()), send);
        assert_eq!(hex::encode(o1.keys.recv()), recv);
        assert_eq!(hex::encode(o2.keys.send()), recv);
        assert_eq!(hex::encode(o2.keys.recv()), send);
        let k = one.eph.agree(&one.key, &b, two.eph.public(), sym).unwrap();
        assert_eq!((k.send(), k.recv()), (o1.keys.send(), o1.keys.recv()));
    }

    #[test]
    fn spec_vector_c() {
        // spec: channel.md §10 C
        let one = Side {
            key: static_key("434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162"),
            eph: Ephemeral::from_raw(
                CURVE,
                &h("838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2"),
            ),
        };
        let two = Side {
            key: static_key("636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182"),
            eph: Ephemeral::from_raw(
                CURVE,
                &h("a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2"),
            ),
        };
        assert_eq!(
            one.key.public_key(CURVE).to_string(),
            "D87A9CB8B89EC911CE8E7CC97CF61B6FC37936D237EE67F29956D89311301886"
        );
        assert_eq!(
            hex::encode(one.eph.public()),
            "9e1f5271ef5159acc415019e32ec04f327d9d859795a82bcc40f0dffd9566e6b"
        );
        assert_eq!(
            hex::encode(two.key.public_key(CURVE).as_bytes()),
            "95d2b57c9f49b01106f95b1dd593d4ac11c9a7623bedd06f32d5e00bda17e90e"
        );
        assert_eq!(
            hex::encode(two.eph.public()),
            "e293411aefc44dd15f5ff5f6f73e415e73629223b8003a2f6fe626a175aa69ab"
        );
        let d = "3a8ef7f0e787360f7ff2fe93f24f56d2";
        let e = "afe526906c9aee9cef4fd9b5d53335d1";
        let sigma = "4a1e5148b09deb5aa89b81144d0456a37bfd93e8d67f41dc243dda24af8042dd";
        check_session(
            &one,
            &two,
            SymmetricSuite::Poly1305Aes,
            [
                d,
                e,
                sigma,
                "a6a31effae9c987c275500886ea6405a1fc81c913a8266b24e56f4efb5280768",
                "78194a0744e062582ca956041f67e6aa7b94ee7b3d3f93b25e5fc8777cc81404",
            ],
        );
        check_session(
            &one,
            &two,
            SymmetricSuite::Crc32,
            [d, e, sigma, "a6a31effae9c987c", "78194a0744e06258"],
        );
    }

    /// The vector files' entropy rule: byte i = (seed + i) mod 256.
    fn seeded(seed: u8) -> impl FnMut(&mut [u8]) {
        let mut next = seed;
        move |buf: &mut [u8]| {
            for b in buf {
                *b = next;
                next = next.wrapping_add(1);
            }
        }
    }

    #[test]
    fn v1_cusp_default() {
        // ../vectors/V1-cusp-default.txt: keys and ephemeral 0 drawn from the entropy stream.
        let mut ce = seeded(128);
        let client = Side {
            key: PrivateKey::generate(&mut ce),
            eph: Ephemeral::generate(CURVE, &mut ce),
        };
        let mut se = seeded(0);
        let server = Side {
            key: PrivateKey::generate(&mut se),
            eph: Ephemeral::generate(CURVE, &mut se),
        };
        assert_eq!(
            hex::encode(client.key.public_key(CURVE).as_bytes()),
            "8e5fae12f4dc7537df8c9e57fd467b50f225a51c4f4d85c9b560e0589323fb36"
        );
        assert_eq!(
            hex::encode(server.key.public_key(CURVE).as_bytes()),
            "6ab71182224ee3a8eef1a590dc471ade6dab86fdeef038907cba1a727d42704f"
        );
        assert_eq!(
            hex::encode(client.eph.public()),
            "a13278bbff246f6e02ffa447f68c2ffabc821880fa64b588cad8b183425f0fdd"
        );
        assert_eq!(
            hex::encode(server.eph.public()),
            "492f1cb85847ffc7bb427865f64c5e8041ec0499b37a1da945a15b4102af02fe"
        );
        check_session(
            &client,
            &server,
            SymmetricSuite::Poly1305Aes,
            [
                "064027b9f9f3605abd3a45ffc32c6ec7",
                "2b0eb99234634df142236c3ac8d63bf8",
                "caf8a77525ec3fba3063b4160f71d45deb9e39c035f6a1187dcfdc5c95bcdd2c",
                "4f392622a94b6843012b63fe8e9ab19f588dfba64fd16d1ca76ab01b7ce617f4",
                "e2eb9c705b338382479a327ba2221731bb21a398b1749d080e487c2afc7542ba",
            ],
        );
    }

    #[test]
    fn v7_xor_crc32() {
        // ../vectors/V7-xor-crc32.txt
        let xor = PublicKeySuite::Xor;
        let mut ce = seeded(211);
        let ck = PrivateKey::generate(&mut ce);
        let cx = Ephemeral::generate(xor, &mut ce);
        let mut se = seeded(96);
        let sk = PrivateKey::generate(&mut se);
        let sx = Ephemeral::generate(xor, &mut se);
        assert_eq!(
            hex::encode(ck.public_key(xor).as_bytes()),
            "d3d4d5d6d7d8d9dad3d4d5d6d7d8d9dad3d4d5d6d7d8d9dad3d4d5d6d7d8d9da"
        );
        assert_eq!(
            hex::encode(sk.public_key(xor).as_bytes()),
            "6061626364656667606162636465666760616263646566676061626364656667"
        );
        assert_eq!(
            hex::encode(cx.public()),
            "fbfcfdfeff000102030405060708090a0b0c0d0e0f101112131415161718191a"
        );
        assert_eq!(
            hex::encode(sx.public()),
            "88898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7"
        );
        let crc = SymmetricSuite::Crc32;
        let kc = cx
            .agree(&ck, sk.public_key(xor).as_bytes(), sx.public(), crc)
            .unwrap();
        let ks = sx
            .agree(&sk, ck.public_key(xor).as_bytes(), cx.public(), crc)
            .unwrap();
        assert_eq!(hex::encode(kc.send()), "5b5d5f5d5b555755");
        assert_eq!(hex::encode(kc.recv()), "9b9d9f9d9b656765");
        assert_eq!(hex::encode(ks.send()), "9b9d9f9d9b656765");
        assert_eq!(hex::encode(ks.recv()), "5b5d5f5d5b555755");
        // poly1305+aes with xor: the 32-byte repetition as is.
        let k32 = cx
            .agree(
                &ck,
                sk.public_key(xor).as_bytes(),
                sx.public(),
                SymmetricSuite::Poly1305Aes,
            )
            .unwrap();
        assert_eq!(hex::encode(k32.send()), "5b5d5f5d5b555755".repeat(4));
        // An xor ephemeral has no HMQV.
        let r = cx.agree_hmqv(&ck, sk.public_key(xor).as_bytes(), sx.public(), crc);
        assert_eq!(r.err(), Some(CryptoError::WrongSuite));
    }

    #[test]
    fn generate_takes_32_bytes() {
        let mut calls = Vec::new();
        let mut entropy = |buf: &mut [u8]| {
            calls.push(buf.len());
            buf.fill(7);
        };
        let e = Ephemeral::generate(CURVE, &mut entropy);
        let _ = Ephemeral::generate(PublicKeySuite::Xor, &mut entropy);
        assert_eq!(calls, vec![32, 32]);
        assert_eq!(e.public(), Ephemeral::from_raw(CURVE, &[7; 32]).public());
        assert_eq!(e.suite(), CURVE);
        assert!(format!("{e:?}").contains("redacted"));
    }

    fn fixture() -> (PrivateKey, Ephemeral, PrivateKey, Ephemeral) {
        let mut ent = seeded(1);
        (
            PrivateKey::generate(&mut ent),
            Ephemeral::generate(CURVE, &mut ent),
            PrivateKey::generate(&mut ent),
            Ephemeral::generate(CURVE, &mut ent),
        )
    }

    #[test]
    fn hostile_points_are_rejected() {
        let (own, eph, peer, peer_eph) = fixture();
        let good_b = *peer.public_key(CURVE).as_bytes();
        let good_y = *peer_eph.public();
        let sym = SymmetricSuite::Poly1305Aes;
        assert!(eph.agree(&own, &good_b, &good_y, sym).is_ok());

        let mut hostile: Vec<[u8; 32]> = vec![[0; 32], [0xff; 32]];
        for hx in [
            "0100000000000000000000000000000000000000000000000000000000000000", // x = 1
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // x = p - 1
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // x = p
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // x = p + 1
            "0200000000000000000000000000000000000000000000000000000000000000", // x = 2: z is not a square
        ] {
            let v = h::<32>(hx);
            hostile.push(v);
            let mut neg = v;
            neg[31] ^= 0x80;
            hostile.push(neg);
        }
        for v in &hostile {
            assert!(
                eph.agree(&own, v, &good_y, sym).is_err(),
                "B = {}",
                hex::encode(v)
            );
            assert!(
                eph.agree(&own, &good_b, v, sym).is_err(),
                "Y = {}",
                hex::encode(v)
            );
        }
    }

    #[test]
    fn exceptional_addition_is_rejected() {
        // Remark R2: choose B = e⁻¹·Y (so e·B = Y) or B = −e⁻¹·Y (S at infinity).
        let (own, eph, _, peer_eph) = fixture();
        let y_bytes = *peer_eph.public();
        let y = Point::decode(&y_bytes).unwrap();
        let mut e = [0u8; 16];
        super::super::whirlpool::hash_n(&y_bytes, own.public_key(CURVE).as_bytes(), &mut e);
        let mut e32 = [0u8; 32];
        e32[..16].copy_from_slice(&e);
        let e_inv = Scalar::from_bytes_mod_order(e32).invert();
        let b = y.mul(&e_inv).unwrap();
        for b in [b, b.negate()] {
            let r = eph.agree(&own, &b.encode(), &y_bytes, SymmetricSuite::Crc32);
            assert_eq!(r.err(), Some(CryptoError::Degenerate));
        }
    }

    #[test]
    fn loopback_gives_equal_keys() {
        let (own, eph, _, peer_eph) = fixture();
        let a = *own.public_key(CURVE).as_bytes();
        let k = eph
            .agree(&own, &a, peer_eph.public(), SymmetricSuite::Poly1305Aes)
            .unwrap();
        assert_eq!(k.send(), k.recv());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agree_never_panics(b in any::<[u8; 32]>(), y in any::<[u8; 32]>(), valid_b in any::<bool>()) {
            let (own, eph, peer, _) = fixture();
            let b = if valid_b { *peer.public_key(CURVE).as_bytes() } else { b };
            for sym in SymmetricSuite::ALL {
                let _ = eph.agree(&own, &b, &y, sym);
                let xor = Ephemeral::from_raw(PublicKeySuite::Xor, &y);
                prop_assert!(xor.agree(&own, &b, &y, sym).is_ok());
            }
        }
    }
}
