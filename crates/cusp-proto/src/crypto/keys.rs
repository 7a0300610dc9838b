//! Long-term key material: the private key (one secret per public-key suite), the
//! public keys sent in field B, and the reference's saved-key hex format.
// spec: channel.md §3.2

use super::curve::{Point, clamp, is_clamped};
use super::{CryptoError, Entropy, PublicKeySuite};
use curve25519_dalek::Scalar;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the saved-key record: `LE64(xorKey) || LE256(a) || encode(A)`.
const RECORD_LEN: usize = 8 + 32 + 32;

/// A long-term private key: the `xor` secret and the clamped Curve25519 scalar `a`
/// with its cached public point `A = a·G`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey {
    xor_key: u64,
    /// `a` as the clamped 256-bit integer (little-endian), as saved.
    a: [u8; 32],
    /// `a mod ℓ`, for arithmetic.
    a_scalar: Scalar,
    /// `encode(A)`, the curve public key.
    a_public: [u8; 32],
}

impl PrivateKey {
    /// A fresh key from 40 bytes of `entropy`.
    pub fn generate(entropy: &mut impl Entropy) -> PrivateKey {
        let mut bytes = Zeroizing::new([0u8; 40]);
        entropy.fill(&mut bytes[..]);
        PrivateKey::from_entropy(&bytes)
    }

    /// The key derived from 40 entropy bytes: `xorKey = LE64⁻¹(bytes 0..7)`,
    /// `a = clamp(LE256⁻¹(bytes 8..39))`.
    // spec: channel.md §3.2
    pub fn from_entropy(bytes: &[u8; 40]) -> PrivateKey {
        let mut xor = [0u8; 8];
        xor.copy_from_slice(&bytes[..8]);
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&bytes[8..]);
        let a = clamp(&raw);
        PrivateKey {
            xor_key: u64::from_le_bytes(xor),
            a,
            a_scalar: Scalar::from_bytes_mod_order(a),
            a_public: Point::mul_base_clamped(&a).encode(),
        }
    }

    /// The public key for `suite` (the bytes of field B in HELLO/WELCOME).
    // spec: channel.md §3.2
    pub fn public_key(&self, suite: PublicKeySuite) -> PublicKey {
        match suite {
            PublicKeySuite::Xor => PublicKey::new(suite, xor_repeat(self.xor_key)),
            PublicKeySuite::Curve25519Whirlpool => PublicKey::new(suite, self.a_public),
        }
    }

    /// The reference's saved-key string: upper-case hex of
    /// `LE64(xorKey) || LE256(a) || encode(A)` (144 digits). Unencrypted (remark R14).
    // spec: channel.md §3.2, streams.md §4.2
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut record = Zeroizing::new([0u8; RECORD_LEN]);
        record[..8].copy_from_slice(&self.xor_key.to_le_bytes());
        record[8..40].copy_from_slice(&self.a);
        record[40..].copy_from_slice(&self.a_public);
        Zeroizing::new(hex_upper(&record[..]))
    }

    /// Parse a saved-key string (either case; surrounding whitespace ignored).
    ///
    /// Rejects a wrong length, non-hex digits, an unclamped scalar, an invalid
    /// stored point and a stored point that is not `a·G`.
    pub fn from_hex(s: &str) -> Result<PrivateKey, CryptoError> {
        let s = s.trim().as_bytes();
        if s.len() != 2 * RECORD_LEN {
            return Err(CryptoError::BadPrivateKey(
                "expected 144 hex digits (72 bytes)",
            ));
        }
        let mut record = Zeroizing::new([0u8; RECORD_LEN]);
        for (out, pair) in record.iter_mut().zip(s.chunks_exact(2)) {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => *out = (hi << 4) | lo,
                _ => return Err(CryptoError::BadPrivateKey("not hexadecimal")),
            }
        }
        let mut xor = [0u8; 8];
        xor.copy_from_slice(&record[..8]);
        let mut a = Zeroizing::new([0u8; 32]);
        a.copy_from_slice(&record[8..40]);
        let mut stored = [0u8; 32];
        stored.copy_from_slice(&record[40..]);
        if !is_clamped(&a) {
            return Err(CryptoError::BadPrivateKey("scalar is not clamped"));
        }
        if Point::decode(&stored).is_err() {
            return Err(CryptoError::BadPrivateKey(
                "stored public point is not a valid point",
            ));
        }
        let key = PrivateKey {
            xor_key: u64::from_le_bytes(xor),
            a: *a,
            a_scalar: Scalar::from_bytes_mod_order(*a),
            a_public: Point::mul_base_clamped(&a).encode(),
        };
        if key.a_public != stored {
            return Err(CryptoError::BadPrivateKey(
                "stored public point does not match the scalar",
            ));
        }
        Ok(key)
    }

    /// The `xor` suite secret.
    pub(crate) fn xor_key(&self) -> u64 {
        self.xor_key
    }

    /// `a mod ℓ`.
    pub(crate) fn scalar(&self) -> &Scalar {
        &self.a_scalar
    }

    /// `encode(A)`.
    pub(crate) fn curve_public(&self) -> &[u8; 32] {
        &self.a_public
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey {{ public: {}, secrets: redacted }}",
            hex_upper(&self.a_public)
        )
    }
}

/// A public key: the suite and the 32 bytes of field B. A remote host's identity;
/// compared bytewise.
// spec: channel.md §3.2
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicKey {
    suite: PublicKeySuite,
    bytes: [u8; 32],
}

/// Hashes the key as two 64-bit words (the 32 bytes folded by XOR): keys are
/// curve points, so 128 bits separate any two a table will hold, and tables
/// keyed by host are looked up several times per datagram.
impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        state.write_u64(word(0) ^ word(16));
        state.write_u64(word(8) ^ word(24));
    }
}

impl PublicKey {
    /// The public key `bytes` of `suite` (not validated: identities compare bytewise,
    /// and key agreement validates the point).
    pub const fn new(suite: PublicKeySuite, bytes: [u8; 32]) -> PublicKey {
        PublicKey { suite, bytes }
    }

    /// The public-key suite.
    pub const fn suite(&self) -> PublicKeySuite {
        self.suite
    }

    /// The 32 bytes as sent in field B.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Display for PublicKey {
    /// Upper-case hex of the 32 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_upper(&self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.suite, self)
    }
}

/// `LE64(v)` repeated 4 times.
// spec: channel.md §3.3
pub(crate) fn xor_repeat(v: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (private_key_entropy, xor_public, static_public, saved_private_key) of the vector peers.
    const PEERS: [(&str, &str, &str, &str); 4] = [
        // V1-cusp-default client
        (
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7",
            "8081828384858687808182838485868780818283848586878081828384858687",
            "8e5fae12f4dc7537df8c9e57fd467b50f225a51c4f4d85c9b560e0589323fb36",
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6678e5fae12f4dc7537df8c9e57fd467b50f225a51c4f4d85c9b560e0589323fb36",
        ),
        // V1-cusp-default server
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627",
            "0001020304050607000102030405060700010203040506070001020304050607",
            "6ab71182224ee3a8eef1a590dc471ade6dab86fdeef038907cba1a727d42704f",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526676ab71182224ee3a8eef1a590dc471ade6dab86fdeef038907cba1a727d42704f",
        ),
        // V7-xor-crc32 client
        (
            "d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fa",
            "d3d4d5d6d7d8d9dad3d4d5d6d7d8d9dad3d4d5d6d7d8d9dad3d4d5d6d7d8d9da",
            "7c10766c386fc446decf3a0e6d264402f4db601b69fd4c568a22fa3ccec66525",
            "d3d4d5d6d7d8d9dad8dcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f97a7c10766c386fc446decf3a0e6d264402f4db601b69fd4c568a22fa3ccec66525",
        ),
        // V7-xor-crc32 server
        (
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f8081828384858687",
            "6061626364656667606162636465666760616263646566676061626364656667",
            "7e7c5c7029242d2c69a88b65a089dcdb61806bf92eb758b247df929ea18ac40e",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283848586477e7c5c7029242d2c69a88b65a089dcdb61806bf92eb758b247df929ea18ac40e",
        ),
    ];

    fn key(entropy_hex: &str) -> PrivateKey {
        let e: [u8; 40] = hex::decode(entropy_hex).unwrap().try_into().unwrap();
        PrivateKey::from_entropy(&e)
    }

    #[test]
    fn vector_peers() {
        for (entropy, xor_public, static_public, saved) in PEERS {
            let k = key(entropy);
            let xp = k.public_key(PublicKeySuite::Xor);
            assert_eq!(hex::encode(xp.as_bytes()), xor_public);
            assert_eq!(xp.suite(), PublicKeySuite::Xor);
            let cp = k.public_key(PublicKeySuite::Curve25519Whirlpool);
            assert_eq!(hex::encode(cp.as_bytes()), static_public);
            assert_eq!(cp.to_string(), static_public.to_uppercase());
            assert_eq!(*k.to_hex(), saved.to_uppercase());
            // The vector files write the saved key in lower case: accepted as well.
            let back = PrivateKey::from_hex(saved).unwrap();
            assert_eq!(*back.to_hex(), *k.to_hex());
            assert_eq!(back.public_key(PublicKeySuite::Xor), xp);
        }
    }

    #[test]
    fn generate_takes_40_bytes() {
        let mut calls = Vec::new();
        let mut counter = 0u8;
        let mut entropy = |buf: &mut [u8]| {
            calls.push(buf.len());
            for b in buf {
                *b = counter;
                counter = counter.wrapping_add(1);
            }
        };
        let k = PrivateKey::generate(&mut entropy);
        assert_eq!(calls, vec![40]);
        assert_eq!(*k.to_hex(), *key(PEERS[1].0).to_hex());
    }

    #[test]
    fn from_hex_round_trip_and_rejections() {
        let k = key(PEERS[0].0);
        let good = k.to_hex().to_string();
        assert_eq!(*PrivateKey::from_hex(&good).unwrap().to_hex(), good);
        assert_eq!(
            *PrivateKey::from_hex(&format!(" {good}\n"))
                .unwrap()
                .to_hex(),
            good
        );

        let err = |s: &str| match PrivateKey::from_hex(s) {
            Err(CryptoError::BadPrivateKey(why)) => why,
            other => panic!("expected BadPrivateKey, got {other:?}"),
        };
        assert!(err(&good[..142]).contains("144"));
        assert!(err(&format!("{good}00")).contains("144"));
        assert!(err("").contains("144"));
        let mut nonhex = good.clone();
        nonhex.replace_range(10..11, "G");
        assert!(err(&nonhex).contains("hex"));
        // Multi-byte UTF-8 of the right byte length.
        let mut utf8 = good.clone();
        utf8.replace_range(0..2, "é");
        assert!(err(&utf8).contains("hex"));
        // Scalar bit 0 set (byte 8 of the record = hex digits 16..18): not clamped.
        let mut unclamped = good.clone();
        unclamped.replace_range(16..18, "89");
        assert!(err(&unclamped).contains("clamped"));
        // Another peer's point: valid, but not a·G.
        let mut mismatch = good.clone();
        mismatch.replace_range(80.., &PEERS[1].2.to_uppercase());
        assert!(err(&mismatch).contains("does not match"));
        // A stored point that is not on the curve / not canonical.
        let mut invalid = good.clone();
        invalid.replace_range(80.., &"F".repeat(64));
        assert!(err(&invalid).contains("valid point"));
    }

    #[test]
    fn debug_is_redacted() {
        let k = key(PEERS[0].0);
        let dbg = format!("{k:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.to_lowercase().contains("88898a8b"));
    }

    #[test]
    fn public_key_ordering_and_display() {
        let a = PublicKey::new(PublicKeySuite::Xor, [1; 32]);
        let b = PublicKey::new(PublicKeySuite::Curve25519Whirlpool, [0; 32]);
        assert!(a < b);
        assert_eq!(a.to_string(), "01".repeat(32));
        assert_ne!(
            a,
            PublicKey::new(PublicKeySuite::Curve25519Whirlpool, [1; 32])
        );
    }
}
