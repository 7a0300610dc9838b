//! Symmetric suite `crc32`: the reference's keyed checksum and its 16-byte tag.
//!
//! Not a MAC: it offers no integrity against an attacker and leaks key bytes
//! (remark R5). It exists for interoperability with peers that enable it.
// spec: channel.md §3.5

use crc::{CRC_32_BZIP2, Crc, Table};

/// Length of one directional `crc32` key.
pub const KEY_LEN: usize = 8;

/// Length of the `crc32` tag.
pub const TAG_LEN: usize = 16;

/// CRC-32/BZIP2 (poly 0x04C11DB7, init and xorout 0xFFFFFFFF, not reflected).
static BZIP2: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_BZIP2);

/// The checksum `c(M)`: CRC-32/BZIP2 over `M` zero-padded to a multiple of
/// 4 bytes minus its last 4-byte word, XORed with that word read big-endian.
///
/// The reference only checksums messages of at least 8 bytes; shorter ones are
/// handled by the same rule (an empty message is padded to one zero word).
// spec: channel.md §3.5 (c(M))
pub fn checksum(msg: &[u8]) -> u32 {
    // M' = M || zeros, |M'| = max(4, roundup4(|M|)); P = M'[..|M'|-4] lies inside M.
    let p_len = msg.len().div_ceil(4).max(1) * 4 - 4;
    let (p, t) = msg.split_at(p_len);
    let mut last = [0u8; 4];
    last[..t.len()].copy_from_slice(t);
    BZIP2.checksum(p) ^ u32::from_be_bytes(last)
}

/// The 16-byte tag `(C8 ⊕ first) || (C8 ⊕ second)` with `C8 = BE32(c(msg)) || 00000000`.
///
/// The sender passes `(k_send, k_recv)`; the receiver recomputes it with its
/// own keys swapped, `(k_recv, k_send)`, which are the same two values.
// spec: channel.md §3.5 (tag)
pub fn tag(msg: &[u8], first: &[u8; KEY_LEN], second: &[u8; KEY_LEN]) -> [u8; TAG_LEN] {
    let mut c8 = [0u8; 8];
    c8[..4].copy_from_slice(&checksum(msg).to_be_bytes());
    let mut out = [0u8; TAG_LEN];
    for i in 0..KEY_LEN {
        out[i] = c8[i] ^ first[i];
        out[KEY_LEN + i] = c8[i] ^ second[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzip2_check_value() {
        assert_eq!(BZIP2.checksum(b"123456789"), 0xFC89_1918);
    }

    #[test]
    fn vector_a() {
        // spec: channel.md §10 A
        assert_eq!(checksum(&[0, 1, 2, 3, 4, 5, 6, 7]), 0x9097_30d2);
        assert_eq!(checksum(&[0, 1, 2, 3, 4, 5, 6, 7, 8]), 0xbd35_23ed);
    }

    #[test]
    fn short_messages_do_not_panic() {
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[0x12, 0x34]), 0x1234_0000);
        assert_eq!(checksum(&[1, 2, 3, 4]), 0x0102_0304);
    }

    #[test]
    fn vector_f_crc32() {
        // spec: channel.md §10 F (crc32 suite), side 1 keys from §10 C.
        let mut m = hex::decode("6000000100000000").unwrap();
        m.extend_from_slice(b"hello, cusp");
        assert_eq!(checksum(&m), 0x0b18_e5d7);
        let ks = [0xa6, 0xa3, 0x1e, 0xff, 0xae, 0x9c, 0x98, 0x7c];
        let kr = [0x78, 0x19, 0x4a, 0x07, 0x44, 0xe0, 0x62, 0x58];
        assert_eq!(
            hex::encode(tag(&m, &ks, &kr)),
            "adbbfb28ae9c987c7301afd044e06258"
        );
    }
}
