//! Sealing and opening with both symmetric suites against the spec's worked
//! vectors (channel.md §10 E, F), plus tampering properties. Every DATA and
//! WELCOME of the reference captures is checked in `tests/vectors.rs`.

use cusp_proto::crypto::session::{DATA_HEADER_LEN, TAG_LEN, WELCOME_HEADER_LEN};
use cusp_proto::crypto::{CryptoError, KeyMaterial, SessionKeys, SymmetricSuite};
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn keys(suite: SymmetricSuite, send: &str, recv: &str) -> SessionKeys {
    SessionKeys::new(suite, &KeyMaterial::new(&unhex(send), &unhex(recv)))
}

// §10 C, poly1305+aes, side 1 (side 2 has them swapped).
const C_SIDE1_SEND: &str = "a6a31effae9c987c275500886ea6405a1fc81c913a8266b24e56f4efb5280768";
const C_SIDE1_RECV: &str = "78194a0744e062582ca956041f67e6aa7b94ee7b3d3f93b25e5fc8777cc81404";

const E_WELCOME: &str = concat!(
    "3000000000020002",
    "95d2b57c9f49b01106f95b1dd593d4ac11c9a7623bedd06f32d5e00bda17e90e",
    "e293411aefc44dd15f5ff5f6f73e415e73629223b8003a2f6fe626a175aa69ab",
    "39cc9bfede76",
    "8cc4d06ab3adf6aadca73db82f4d8a42",
);

#[test]
fn vector_e_welcome_mac() {
    // Sealed by side 2 (k_send = side 1's k_recv), opened by side 1.
    let side2 = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_RECV, C_SIDE1_SEND);
    let side1 = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_SEND, C_SIDE1_RECV);
    let expected = unhex(E_WELCOME);
    let mut buf = expected.clone();
    buf[WELCOME_HEADER_LEN..].fill(0);
    side2.seal(0, &mut buf, WELCOME_HEADER_LEN, false);
    assert_eq!(hex::encode(&buf), E_WELCOME);
    side1.open(0, &mut buf, WELCOME_HEADER_LEN, false).unwrap();
    assert_eq!(buf, expected);
    // The WELCOME is never opened with the sender's own receive key.
    assert_eq!(
        side2.open(0, &mut buf, WELCOME_HEADER_LEN, false),
        Err(CryptoError::BadTag)
    );
}

#[test]
fn vector_f_first_data_poly1305aes() {
    let side1 = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_SEND, C_SIDE1_RECV);
    let side2 = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_RECV, C_SIDE1_SEND);
    let mut buf = unhex("6000000100000000");
    buf.extend_from_slice(b"hello, cusp");
    buf.extend_from_slice(&[0; TAG_LEN]);
    side1.seal(1, &mut buf, DATA_HEADER_LEN, true);
    assert_eq!(
        hex::encode(&buf),
        "6000000100000000\
         79ccb4481a5b8610ecb779\
         3202e9000348dce2b19cfb25cd5ad14a"
    );
    side2.open(1, &mut buf, DATA_HEADER_LEN, true).unwrap();
    assert_eq!(&buf[8..buf.len() - TAG_LEN], b"hello, cusp");
    // Wrong counter: the MAC's nonce block differs.
    side1.seal(1, &mut buf, DATA_HEADER_LEN, true);
    assert_eq!(
        side2.open(2, &mut buf, DATA_HEADER_LEN, true),
        Err(CryptoError::BadTag)
    );
}

#[test]
fn vector_f_first_data_crc32() {
    let side1 = keys(
        SymmetricSuite::Crc32,
        &C_SIDE1_SEND[..16],
        &C_SIDE1_RECV[..16],
    );
    let side2 = keys(
        SymmetricSuite::Crc32,
        &C_SIDE1_RECV[..16],
        &C_SIDE1_SEND[..16],
    );
    let mut buf = unhex("6000000100000000");
    buf.extend_from_slice(b"hello, cusp");
    buf.extend_from_slice(&[0; TAG_LEN]);
    // crc32 never encrypts, whatever `encrypt` says.
    side1.seal(1, &mut buf, DATA_HEADER_LEN, true);
    assert_eq!(
        hex::encode(&buf),
        "6000000100000000 68656c6c6f2c2063757370 adbbfb28ae9c987c7301afd044e06258".replace(' ', "")
    );
    side2.open(1, &mut buf, DATA_HEADER_LEN, true).unwrap();
    assert_eq!(&buf[8..buf.len() - TAG_LEN], b"hello, cusp");
}

#[test]
fn loopback_and_accessors() {
    let k = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_SEND, C_SIDE1_SEND);
    assert!(k.is_loopback());
    assert_eq!(k.suite(), SymmetricSuite::Poly1305Aes);
    let k = keys(
        SymmetricSuite::Crc32,
        "0001020304050607",
        "0001020304050608",
    );
    assert!(!k.is_loopback());
    assert_eq!(k.suite(), SymmetricSuite::Crc32);
    let dbg = format!("{k:?}");
    assert!(
        dbg.contains("redacted") && !dbg.contains("0001020304050607") && !dbg.contains("[0, 1")
    );
}

#[test]
fn too_short() {
    let k = keys(SymmetricSuite::Poly1305Aes, C_SIDE1_SEND, C_SIDE1_RECV);
    let mut b = [0u8; 23];
    assert_eq!(
        k.open(1, &mut b, DATA_HEADER_LEN, true),
        Err(CryptoError::TooShort)
    );
    let mut b = [0u8; 93];
    assert_eq!(
        k.open(0, &mut b, WELCOME_HEADER_LEN, false),
        Err(CryptoError::TooShort)
    );
    assert_eq!(k.open(0, &mut [], 0, false), Err(CryptoError::TooShort));
    assert_eq!(
        k.open(0, &mut b, usize::MAX, false),
        Err(CryptoError::TooShort)
    );
}

// ---- properties --------------------------------------------------------------------

fn suite_strategy() -> impl Strategy<Value = SymmetricSuite> {
    prop_oneof![
        Just(SymmetricSuite::Crc32),
        Just(SymmetricSuite::Poly1305Aes)
    ]
}

/// Both ends of one session: (sender, receiver).
fn pair(suite: SymmetricSuite, a: &[u8; 32], b: &[u8; 32]) -> (SessionKeys, SessionKeys) {
    let n = suite.key_len();
    let tx = SessionKeys::new(suite, &KeyMaterial::new(&a[..n], &b[..n]));
    let rx = SessionKeys::new(suite, &KeyMaterial::new(&b[..n], &a[..n]));
    (tx, rx)
}

proptest! {
    #[test]
    fn seal_open_roundtrip_and_any_bit_flip_fails(
        suite in suite_strategy(),
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        counter in any::<u64>(),
        welcome in any::<bool>(),
        encrypt in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        flip in any::<prop::sample::Index>(),
    ) {
        let (tx, rx) = pair(suite, &a, &b);
        let header_len = if welcome { WELCOME_HEADER_LEN } else { DATA_HEADER_LEN };
        let mut plain = vec![0x5a; header_len];
        plain.extend_from_slice(&payload);
        let mut buf = plain.clone();
        buf.extend_from_slice(&[0; TAG_LEN]);
        tx.seal(counter, &mut buf, header_len, encrypt);
        let sealed = buf.clone();

        let mut tampered = sealed.clone();
        let bit = flip.index(tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        let before = tampered.clone();
        prop_assert_eq!(rx.open(counter, &mut tampered, header_len, encrypt), Err(CryptoError::BadTag));
        prop_assert_eq!(&tampered, &before, "failed open must leave the buffer alone");

        rx.open(counter, &mut buf, header_len, encrypt).unwrap();
        prop_assert_eq!(&buf[..buf.len() - TAG_LEN], &plain[..]);
    }

    #[test]
    fn open_never_panics(
        suite in suite_strategy(),
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        counter in any::<u64>(),
        header_len in 0usize..120,
        encrypt in any::<bool>(),
        mut input in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (_, rx) = pair(suite, &a, &b);
        let len = input.len();
        match rx.open(counter, &mut input, header_len, encrypt) {
            Err(CryptoError::TooShort) => prop_assert!(len < header_len + TAG_LEN),
            Err(CryptoError::BadTag) | Ok(()) => prop_assert!(len >= header_len + TAG_LEN),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}
