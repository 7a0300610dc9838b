//! Recovering full sequence numbers from the 28-bit fields of a DATA header.
//!
//! Only the low 28 bits of the TSN and ASN travel in a DATA header
//! (`spec/channel.md` §2.7). The receiver extends each field to the full value
//! closest to a *reference* it keeps ([`extend28`]). Which reference is used
//! matters (`spec/channel.md` §2.9, remark R1 in §7):
//!
//! * **Peer TSN** (`W1` field): extend against the **largest peer TSN accepted
//!   so far** on this establishment (0 before the first DATA). The sender's
//!   counter is authoritative; the extended TSN is the crypto counter, so a wrong
//!   guess only makes the MAC fail.
//! * **Peer ASN** (`W2` field): extend against **our own last sent TSN** (the
//!   newest TSN the peer can possibly acknowledge).
//!
//! The reference implementation crosses the two (peer TSN against its own send
//! counter, peer ASN against the last received peer TSN); that agrees with the
//! recommendation above while the two send counters differ by less than 2^27.
//! A bug-compatible peer can pass the crossed references to the same function.

/// Number of bits of a sequence number carried in a DATA header.
pub const SEQ_BITS: u32 = 28;
/// Mask of the 28-bit sequence field.
pub const SEQ_MASK: u32 = (1 << SEQ_BITS) - 1;

const MODULUS: u64 = 1 << SEQ_BITS;
const HALF: u64 = 1 << (SEQ_BITS - 1);

/// The low 28 bits of a full sequence number, as they travel on the wire.
pub const fn truncate28(full: u64) -> u32 {
    (full & SEQ_MASK as u64) as u32
}

/// The full sequence number closest to `reference` whose low 28 bits are `field`.
///
/// `extend28(f, r) = r + signext28((f − r) mod 2^28)`, i.e. the candidate in
/// `r − 2^27 ..= r + 2^27 − 1` (`spec/channel.md` §2.9). Bits of `field` above
/// bit 27 are ignored.
///
/// Sequence numbers are non-negative, so when the closest candidate would be
/// negative (a backwards step below 0 near `reference = 0`), the result is the
/// non-negative candidate `r + ((f − r) mod 2^28)` instead. Symmetrically, if
/// the forward candidate would overflow `u64` the backward one is returned.
/// Either way the result always has low 28 bits equal to `field`.
// spec: channel.md §2.9
pub fn extend28(field: u32, reference: u64) -> u64 {
    let field = u64::from(field & SEQ_MASK);
    let forward = field.wrapping_sub(reference) & (MODULUS - 1);
    let backward = MODULUS - forward; // distance to the candidate below `reference`
    let up = reference.checked_add(forward);
    let down = reference.checked_sub(backward);
    match (up, down) {
        (Some(u), Some(d)) => {
            if forward < HALF {
                u
            } else {
                d
            }
        }
        (Some(u), None) => u,
        (None, Some(d)) => d,
        // Unreachable for a 28-bit modulus; fall back to something with the right low bits.
        (None, None) => (reference & !(MODULUS - 1)) | field,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: u64 = 1 << 28;
    const H: u64 = 1 << 27;

    #[test]
    fn small_values() {
        assert_eq!(extend28(0, 0), 0);
        assert_eq!(extend28(1, 0), 1);
        assert_eq!(extend28(5, 3), 5);
        assert_eq!(extend28(3, 5), 3);
        // V1: first DATA in each direction, TSN 1 against reference 0.
        assert_eq!(extend28(1, 0), 1);
    }

    #[test]
    fn never_negative_near_zero() {
        // Closest candidate would be -1; the non-negative one is chosen.
        assert_eq!(extend28((M - 1) as u32, 0), M - 1);
        assert_eq!(extend28((M - 1) as u32, 5), M - 1);
        // Exactly half way: forward distance 2^27 is outside the window, but the
        // backward candidate is negative, so the forward one is chosen.
        assert_eq!(extend28(H as u32, 0), H);
    }

    #[test]
    fn crossing_2_pow_27() {
        assert_eq!(extend28((H - 1) as u32, 0), H - 1);
        assert_eq!(extend28(H as u32, H - 1), H);
        assert_eq!(extend28((H + 1) as u32, H - 10), H + 1);
        assert_eq!(extend28((H - 1) as u32, H + 10), H - 1);
        // Forward distance exactly 2^27 from a reference ≥ 2^27: goes backwards.
        assert_eq!(extend28(0, H), 0);
        assert_eq!(extend28((M + H) as u32 & SEQ_MASK, M), M + H - M);
    }

    #[test]
    fn crossing_2_pow_28() {
        // Field wraps to small values while the reference is just below 2^28.
        assert_eq!(extend28(0, M - 1), M);
        assert_eq!(extend28(3, M - 2), M + 3);
        assert_eq!(extend28((M - 1) as u32, M + 2), M - 1);
        assert_eq!(extend28(7, 5 * M - 3), 5 * M + 7);
        assert_eq!(extend28((M - 3) as u32, 5 * M + 7), 5 * M - 3);
    }

    #[test]
    fn high_bits_of_field_ignored() {
        assert_eq!(extend28(0xF000_0001, 0), 1);
        assert_eq!(truncate28(M + 9), 9);
    }

    #[test]
    fn overflow_edge() {
        let r = u64::MAX;
        let v = extend28(truncate28(r), r);
        assert_eq!(v, r);
        let v = extend28(truncate28(r) + 1, r); // forward would overflow
        assert_eq!(truncate28(v), (truncate28(r) + 1) & SEQ_MASK);
        assert!(v < r);
    }

    proptest! {
        #[test]
        fn recovers_within_window(r in 0u64..(1 << 62), delta in -(H as i64 - 1)..(H as i64)) {
            let v = r as i64 + delta;
            prop_assume!(v >= 0);
            let v = v as u64;
            prop_assert_eq!(extend28(truncate28(v), r), v);
        }

        #[test]
        fn low_bits_always_match(field: u32, r: u64) {
            prop_assert_eq!(truncate28(extend28(field, r)), field & SEQ_MASK);
        }

        #[test]
        fn result_is_closest_non_negative(field in 0u32..(1 << 28), r in 0u64..(1 << 40)) {
            let v = extend28(field, r);
            if r >= H {
                // The full window r − 2^27 ..= r + 2^27 − 1 is available.
                prop_assert!(v + H >= r && v < r + H);
            } else {
                // Never below zero; within the window whenever the window candidate is ≥ 0.
                prop_assert!(v < r + M);
            }
        }
    }
}
