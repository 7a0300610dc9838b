//! The raw Whirlpool compression function and the hash `H_n` built on it.
//!
//! CUSP does not use the Whirlpool *hash* (which pads and appends a length):
//! it applies the ISO/IEC 10118-3 compression function once, from the all-zero
//! chaining value, to the 64-byte block `encode(P) || encode(Q)`.
//!
//! Route through the `whirlpool` 0.11 crate: the chaining value is loaded with
//! `SerializableState::deserialize` (64 state bytes plus an 8-byte block counter,
//! which the compression function ignores), one block goes through
//! `UpdateCore::update_blocks`, and the first 64 bytes of
//! `SerializableState::serialize` are the new chaining value, in the byte order
//! of the Whirlpool digest.
// spec: channel.md §3.4.5, §9.1

use whirlpool::block_api::WhirlpoolCore;
use whirlpool::digest::array::Array;
use whirlpool::digest::block_api::UpdateCore;
use whirlpool::digest::common::hazmat::SerializableState;
use zeroize::Zeroize;

/// Apply the Whirlpool compression function to `state` with one 64-byte `block`
/// (Miyaguchi–Preneel: `state ← E_state(block) ⊕ state ⊕ block`). No padding.
pub fn compress(state: &mut [u8; 64], block: &[u8; 64]) {
    let mut serialized = Array::<u8, _>::default();
    serialized[..64].copy_from_slice(state);
    // Bytes 64..72: the block counter, zero (it only matters for finalization).
    // `deserialize` accepts every byte string in whirlpool 0.11 (its error case is unused).
    let mut core = WhirlpoolCore::deserialize(&serialized).unwrap_or_default();
    serialized.zeroize();
    core.update_blocks(&[Array::from(*block)]);
    let mut out = core.serialize();
    state.copy_from_slice(&out[..64]);
    out.zeroize();
}

/// `H_n(P, Q)`: the first `out.len()` bytes of one Whirlpool compression of the block
/// `P || Q` from the all-zero chaining value, where `P` and `Q` are 32-byte point
/// encodings.
///
/// CUSP uses `n ∈ {8, 16, 32}`. Longer outputs (`n > 64`, never used by the
/// protocol) follow the spec's description of the reference's unused extension,
/// as read here: state `i` (from the zero IV) is first compressed with
/// `LE64(i) || 56 zero bytes`, then with `P || Q`; unverified against the
/// reference, present only so that no length can panic.
// spec: channel.md §3.4.5
pub fn hash_n(p: &[u8; 32], q: &[u8; 32], out: &mut [u8]) {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(p);
    block[32..].copy_from_slice(q);
    if out.len() <= 64 {
        let mut state = [0u8; 64];
        compress(&mut state, &block);
        out.copy_from_slice(&state[..out.len()]);
        state.zeroize();
    } else {
        for (i, chunk) in out.chunks_mut(64).enumerate() {
            let mut state = [0u8; 64];
            let mut prefix = [0u8; 64];
            prefix[..8].copy_from_slice(&(i as u64).to_le_bytes());
            compress(&mut state, &prefix);
            compress(&mut state, &block);
            chunk.copy_from_slice(&state[..chunk.len()]);
            state.zeroize();
        }
    }
    block.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use whirlpool::{Digest, Whirlpool};

    const EMPTY: &str = "19fa61d75522a4669b44e39c1d2e1726c530232130d407f89afee0964997f7a7\
                         3e83be698b288febcf88e3e03c4f0757ea8964e59b63d93708b138cc42a66eb3";

    #[test]
    fn padding_block_gives_empty_digest() {
        // spec: channel.md §10 B
        let mut state = [0u8; 64];
        let mut block = [0u8; 64];
        block[0] = 0x80;
        compress(&mut state, &block);
        assert_eq!(hex::encode(state), EMPTY);
    }

    #[test]
    fn chained_compression_matches_digest() {
        // "abc" padded into one block: 0x80 then a 256-bit big-endian bit length (24).
        let mut block = [0u8; 64];
        block[..3].copy_from_slice(b"abc");
        block[3] = 0x80;
        block[63] = 24;
        let mut state = [0u8; 64];
        compress(&mut state, &block);
        assert_eq!(state.as_slice(), Whirlpool::digest(b"abc").as_slice());

        // A two-block message exercises a non-zero chaining value.
        let msg = [0x61u8; 64];
        let mut state = [0u8; 64];
        compress(&mut state, &msg);
        let mut pad = [0u8; 64];
        pad[0] = 0x80;
        pad[62] = 0x02; // 512 bits
        compress(&mut state, &pad);
        assert_eq!(state.as_slice(), Whirlpool::digest(msg).as_slice());
    }

    #[test]
    fn iso_digests() {
        // ISO/IEC 10118-3 test strings through the crate's normal Digest API.
        let cases: [(&[u8], &str); 3] = [
            (
                b"abc",
                "4e2448a4c6f486bb16b6562c73b4020bf3043e3a731bce721ae1b303d97e6d4c\
                 7181eebdb6c57e277d0e34957114cbd6c797fc9d95d8b582d225292076d4eef5",
            ),
            (
                b"message digest",
                "378c84a4126e2dc6e56dcc7458377aac838d00032230f53ce1f5700c0ffb4d3b\
                 8421557659ef55c106b4b52ac5a4aaa692ed920052838f3362e86dbd37a8903e",
            ),
            (b"", EMPTY),
        ];
        for (msg, want) in cases {
            assert_eq!(hex::encode(Whirlpool::digest(msg)), want);
        }
    }

    #[test]
    fn hash_n_is_a_prefix_of_one_compression() {
        let p = [1u8; 32];
        let q = [2u8; 32];
        let mut full = [0u8; 64];
        hash_n(&p, &q, &mut full);
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&p);
        block[32..].copy_from_slice(&q);
        let mut state = [0u8; 64];
        compress(&mut state, &block);
        assert_eq!(full, state);
        let mut short = [0u8; 16];
        hash_n(&p, &q, &mut short);
        assert_eq!(short, full[..16]);
        let mut long = [0u8; 100];
        hash_n(&p, &q, &mut long); // extension path: no panic, deterministic
        assert_ne!(long[..64], full[..]);
    }
}
