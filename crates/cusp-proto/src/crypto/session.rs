//! Session keys of one channel establishment: the agreed symmetric suite and
//! both directions' keys, with in-place sealing and opening of WELCOME and DATA.
// spec: channel.md §3.5, §3.6, §3.7, §3.8, §2.10

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::crc32;
use super::poly1305aes::{self, Poly1305AesKey};
use super::{CryptoError, KeyMaterial, SymmetricSuite};

/// Length of the authentication tag of both symmetric suites (`macLen`).
pub const TAG_LEN: usize = 16;

const _: () = assert!(
    crc32::TAG_LEN == TAG_LEN
        && poly1305aes::TAG_LEN == TAG_LEN
        && SymmetricSuite::Crc32.mac_len() == TAG_LEN
        && SymmetricSuite::Poly1305Aes.mac_len() == TAG_LEN
);

/// Header length to pass for a WELCOME: the MAC covers bytes 0..77, nothing is encrypted.
pub const WELCOME_HEADER_LEN: usize = 78;

/// Header length to pass for a DATA datagram (the two header words).
pub const DATA_HEADER_LEN: usize = 8;

/// The two 8-byte `crc32` keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Crc32Keys {
    send: [u8; crc32::KEY_LEN],
    recv: [u8; crc32::KEY_LEN],
}

/// Per-suite key state; AES key schedules are expanded once per direction.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per channel; the default suite's schedules stay inline, crc32 is rare"
)]
enum Keys {
    Crc32(Crc32Keys),
    Poly1305Aes {
        send: Poly1305AesKey,
        recv: Poly1305AesKey,
    },
}

/// The agreed symmetric suite with this side's `k_send` and `k_recv`.
///
/// Key bytes are wiped on drop and never printed by `Debug`.
#[derive(Clone)]
pub struct SessionKeys {
    suite: SymmetricSuite,
    loopback: bool,
    keys: Keys,
}

impl SessionKeys {
    /// Session keys for `suite` from the key agreement's output.
    ///
    /// # Panics
    /// If `material`'s keys are not `suite.key_len()` bytes long (a programming
    /// error: the key agreement is always run with the agreed suite's length).
    pub fn new(suite: SymmetricSuite, material: &KeyMaterial) -> Self {
        let (send, recv) = (material.send(), material.recv());
        assert!(
            send.len() == suite.key_len() && recv.len() == suite.key_len(),
            "key material length does not match the symmetric suite"
        );
        // spec: channel.md §3.5, §3.6 (loopback = (k_send = k_recv))
        let loopback = bool::from(send.ct_eq(recv));
        let keys = match suite {
            SymmetricSuite::Crc32 => {
                let mut k = Crc32Keys {
                    send: [0; crc32::KEY_LEN],
                    recv: [0; crc32::KEY_LEN],
                };
                k.send.copy_from_slice(send);
                k.recv.copy_from_slice(recv);
                Keys::Crc32(k)
            }
            SymmetricSuite::Poly1305Aes => {
                let mut buf = [0u8; poly1305aes::KEY_LEN];
                buf.copy_from_slice(send);
                let send = Poly1305AesKey::new(&buf);
                buf.copy_from_slice(recv);
                let recv = Poly1305AesKey::new(&buf);
                buf.zeroize();
                Keys::Poly1305Aes { send, recv }
            }
        };
        SessionKeys {
            suite,
            loopback,
            keys,
        }
    }

    /// The agreed symmetric suite.
    pub fn suite(&self) -> SymmetricSuite {
        self.suite
    }

    /// True when `k_send == k_recv` (the reference's `loopback` flag, §4.8).
    ///
    /// With the `xor` public-key suite this can also hold between two different
    /// peers (remark R5); compare static keys to detect talking to oneself.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Seal `buf = header || plaintext || [16 bytes of tag space]` in place.
    ///
    /// When `encrypt` is set and the suite encrypts (`poly1305+aes`; `crc32`
    /// never does), `buf[header_len..len-16]` is encrypted with counter `counter`;
    /// then the tag over `buf[..len-16]` under `k_send` is written into the last
    /// 16 bytes. WELCOME: counter 0, `header_len` = [`WELCOME_HEADER_LEN`], no
    /// payload. DATA: counter = full TSN, `header_len` = [`DATA_HEADER_LEN`],
    /// `encrypt = !noEncrypt`.
    ///
    /// # Panics
    /// If `buf.len() < header_len + 16` (the caller builds `buf`; never input-driven).
    // spec: channel.md §3.8 (seal_welcome, seal_data), §2.10 (encrypt-then-MAC)
    pub fn seal(&self, counter: u64, buf: &mut [u8], header_len: usize, encrypt: bool) {
        assert!(
            buf.len() >= header_len.saturating_add(TAG_LEN),
            "seal: buffer shorter than header plus tag"
        );
        let (msg, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        match &self.keys {
            Keys::Crc32(k) => {
                // spec: channel.md §3.5 (no encryption; tag with (Ks, Kr) = (k_send, k_recv))
                tag.copy_from_slice(&crc32::tag(msg, &k.send, &k.recv));
            }
            Keys::Poly1305Aes { send, .. } => {
                if encrypt {
                    send.apply_keystream(counter, &mut msg[header_len..]);
                }
                tag.copy_from_slice(&send.mac(counter, msg));
            }
        }
    }

    /// Verify and open `buf = header || ciphertext || tag` in place.
    ///
    /// The tag is the last 16 bytes and covers everything before it (for a
    /// WELCOME that is bytes 0..len-16, §2.4). It is checked under `k_recv` in
    /// constant time; only if it verifies is `buf[header_len..len-16]` decrypted
    /// (when `encrypt` is set and the suite encrypts). On error `buf` is unchanged.
    ///
    /// # Errors
    /// [`CryptoError::TooShort`] if `buf.len() < header_len + 16`;
    /// [`CryptoError::BadTag`] if the tag does not verify.
    // spec: channel.md §3.8 (open_welcome, open_data), §2.10 (MAC first, then decrypt)
    pub fn open(
        &self,
        counter: u64,
        buf: &mut [u8],
        header_len: usize,
        encrypt: bool,
    ) -> Result<(), CryptoError> {
        if buf.len() < header_len.saturating_add(TAG_LEN) {
            return Err(CryptoError::TooShort);
        }
        let (msg, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let tag: &[u8] = tag;
        match &self.keys {
            Keys::Crc32(k) => {
                // spec: channel.md §3.5 (receiver recomputes with its keys swapped)
                // Remark R9 (the C routine's zero bytes over the stored tag) is not reproduced.
                let expected = crc32::tag(msg, &k.recv, &k.send);
                if !bool::from(expected.ct_eq(tag)) {
                    return Err(CryptoError::BadTag);
                }
            }
            Keys::Poly1305Aes { recv, .. } => {
                let expected = recv.mac(counter, msg);
                if !bool::from(expected.ct_eq(tag)) {
                    return Err(CryptoError::BadTag);
                }
                if encrypt {
                    recv.apply_keystream(counter, &mut msg[header_len..]);
                }
            }
        }
        Ok(())
    }
}

// Every field wipes itself on drop (`Crc32Keys` derives it, `Poly1305AesKey` and the AES
// key schedule implement `Drop`).
impl ZeroizeOnDrop for SessionKeys {}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .field("loopback", &self.loopback)
            .field("keys", &"redacted")
            .finish()
    }
}
