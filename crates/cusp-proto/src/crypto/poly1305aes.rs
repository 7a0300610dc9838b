//! Symmetric suite `poly1305+aes`: AES-128 keystream with the reference's
//! counter block and the Poly1305-AES authenticator.
// spec: channel.md §3.6

use aes::Aes128Enc as Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use zeroize::Zeroize;

/// Length of one directional `poly1305+aes` key: AES key `K` || Poly1305 `r`.
pub const KEY_LEN: usize = 32;

/// Length of the Poly1305-AES tag.
pub const TAG_LEN: usize = 16;

/// Keystream blocks computed per `encrypt_blocks` call (lets AES-NI/VAES pipeline).
const BATCH: usize = 8;

/// Index of the nonce block `N || FF FF FF FF` that yields the Poly1305 `s`.
const NONCE_BLOCK_INDEX: u32 = 0xFFFF_FFFF;

/// One direction's `poly1305+aes` key with the AES key schedule expanded once.
///
/// Zeroized on drop (the `aes` crate wipes its round keys, this type wipes `r`).
#[derive(Clone)]
pub struct Poly1305AesKey {
    aes: Aes128,
    r: [u8; 16],
}

impl Poly1305AesKey {
    /// The key from its 32-byte wire layout: bytes 0..15 are the AES-128 key `K`,
    /// bytes 16..31 Poly1305's `r` (clamped on use).
    // spec: channel.md §3.6 (key layout)
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut k = [0u8; 16];
        let mut r = [0u8; 16];
        k.copy_from_slice(&key[..16]);
        r.copy_from_slice(&key[16..]);
        let mut k_arr = Array::from(k);
        let aes = Aes128::new(&k_arr);
        k.zeroize();
        k_arr.as_mut_slice().zeroize();
        Poly1305AesKey { aes, r }
    }

    /// The 16-byte block `LE96(counter) || LE32(index)`.
    // spec: channel.md §3.6 (counter block; LE96 of a u64 has four zero high bytes)
    fn counter_block(counter: u64, index: u32) -> aes::Block {
        let mut b = aes::Block::default();
        b[..8].copy_from_slice(&counter.to_le_bytes());
        b[12..].copy_from_slice(&index.to_le_bytes());
        b
    }

    /// XOR `data` in place with the keystream `AES_K(LE96(counter) || LE32(i))`,
    /// i = 0, 1, 2, …; encryption and decryption are the same operation.
    ///
    /// Block indices wrap at 2^32; the reference never gets near that (datagrams
    /// hold at most 92 blocks), and index 0xFFFFFFFF would coincide with the MAC
    /// nonce block only past 64 GiB of data.
    // spec: channel.md §3.6 (keystream, ciphertext = plaintext ⊕ keystream)
    pub fn apply_keystream(&self, counter: u64, data: &mut [u8]) {
        let mut blocks = [aes::Block::default(); BATCH];
        let mut index: u32 = 0;
        for chunk in data.chunks_mut(16 * BATCH) {
            let n = chunk.len().div_ceil(16);
            for b in blocks.iter_mut().take(n) {
                *b = Self::counter_block(counter, index);
                index = index.wrapping_add(1);
            }
            self.aes.encrypt_blocks(&mut blocks[..n]);
            let mut whole = chunk.chunks_exact_mut(16);
            for (bytes, ks) in (&mut whole).zip(blocks.iter()) {
                xor_in(bytes, ks);
            }
            // A partial last block uses the block after the whole ones.
            xor_in(whole.into_remainder(), &blocks[n - 1]);
        }
        for b in blocks.iter_mut() {
            b.as_mut_slice().zeroize();
        }
    }

    /// Poly1305-AES of `msg` with an explicit 16-byte `nonce`:
    /// `Poly1305(r, AES_K(nonce), msg)` with an unpadded final chunk.
    // spec: channel.md §3.6 (tag = Poly1305(r, s, M))
    pub fn mac_with_nonce(&self, nonce: &[u8; 16], msg: &[u8]) -> [u8; TAG_LEN] {
        let mut s = Array::from(*nonce);
        self.aes.encrypt_block(&mut s);
        let mut s_bytes: [u8; 16] = s.into();
        let tag = super::poly1305::tag(&self.r, &s_bytes, msg);
        s_bytes.zeroize();
        tag
    }

    /// The tag of `msg` sealed with `counter`: Poly1305-AES with the nonce block
    /// `LE96(counter) || FF FF FF FF`.
    // spec: channel.md §3.6 (s = AES_K(N || FF FF FF FF)), §3.8
    pub fn mac(&self, counter: u64, msg: &[u8]) -> [u8; TAG_LEN] {
        let nonce: [u8; 16] = Self::counter_block(counter, NONCE_BLOCK_INDEX).into();
        self.mac_with_nonce(&nonce, msg)
    }
}

/// `data ^= keystream` over the shorter of the two.
fn xor_in(data: &mut [u8], keystream: &[u8]) {
    for (d, k) in data.iter_mut().zip(keystream) {
        *d ^= k;
    }
}

impl Drop for Poly1305AesKey {
    fn drop(&mut self) {
        self.r.zeroize();
    }
}

impl std::fmt::Debug for Poly1305AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Poly1305AesKey(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn key(k: &str, r: &str) -> Poly1305AesKey {
        let mut kr = [0u8; 32];
        kr[..16].copy_from_slice(&h::<16>(k));
        kr[16..].copy_from_slice(&h::<16>(r));
        Poly1305AesKey::new(&kr)
    }

    #[test]
    fn aes128_fips197_c1() {
        // FIPS-197 Appendix C.1.
        let aes = Aes128::new(&Array::from(h::<16>("000102030405060708090a0b0c0d0e0f")));
        let mut b = Array::from(h::<16>("00112233445566778899aabbccddeeff"));
        aes.encrypt_block(&mut b);
        assert_eq!(hex::encode(b), "69c4e0d86a7b0430d8cdb78070b4c55a");
    }

    #[test]
    fn poly1305_aes_paper_vector_2_two_bytes() {
        // spec: channel.md §10 B (Bernstein, "The Poly1305-AES message-authentication code").
        let k = key(
            "ec074c835580741701425b623235add6",
            "851fc40c3467ac0be05cc20404f3f700",
        );
        let tag = k.mac_with_nonce(&h("fb447350c4e868c52ac3275cf9d4327e"), &h::<2>("f3f6"));
        assert_eq!(hex::encode(tag), "f4c633c3044fc145f84f335cb81953de");
    }

    #[test]
    fn poly1305_aes_paper_vector_empty() {
        let k = key(
            "75deaa25c09f208e1dc4ce6b5cad3fbf",
            "a0f3080000f46400d0c7e9076c834403",
        );
        let tag = k.mac_with_nonce(&h("61ee09218d29b0aaed7e154a2c5509cc"), &[]);
        assert_eq!(hex::encode(tag), "dd3fab2251f11ac759f0887129cc2ee7");
    }

    #[test]
    fn poly1305_aes_paper_vector_32_bytes() {
        // Third vector of the paper's appendix B (two full blocks).
        let k = key(
            "6acb5f61a7176dd320c5c1eb2edcdc74",
            "48443d0bb0d21109c89a100b5ce2c208",
        );
        let m = h::<32>("663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136");
        let tag = k.mac_with_nonce(&h("ae212a55399729595dea458bc621ff0e"), &m);
        assert_eq!(hex::encode(tag), "0ee1c16bb73f0f4fd19881753c01cdbe");
    }

    #[test]
    fn vector_f_keystream_and_nonce_block() {
        // spec: channel.md §10 F, side 1 k_send of §10 C.
        let k = Poly1305AesKey::new(&h(
            "a6a31effae9c987c275500886ea6405a1fc81c913a8266b24e56f4efb5280768",
        ));
        let mut ks = [0u8; 16];
        k.apply_keystream(1, &mut ks);
        assert_eq!(hex::encode(ks), "11a9d8247577a67399c4096a9a48a6bf");
        let mut s = Poly1305AesKey::counter_block(1, NONCE_BLOCK_INDEX);
        assert_eq!(hex::encode(s), "010000000000000000000000ffffffff");
        k.aes.encrypt_block(&mut s);
        assert_eq!(hex::encode(s), "582d11c8a1d531895ed8c4fd9f6939fc");
    }

    #[test]
    fn keystream_batches_match_single_blocks() {
        let k = Poly1305AesKey::new(&[7u8; 32]);
        let mut long = [0u8; 16 * (2 * BATCH + 3) + 5];
        k.apply_keystream(0x0123_4567_89ab_cdef, &mut long);
        for (i, chunk) in long.chunks(16).enumerate() {
            let mut b = Poly1305AesKey::counter_block(0x0123_4567_89ab_cdef, i as u32);
            k.aes.encrypt_block(&mut b);
            assert_eq!(chunk, &b[..chunk.len()], "block {i}");
        }
    }
}
