//! Arbitrary bytes into DATA opening with both symmetric suites: never panics,
//! and only the genuine datagram (sealed here from the same input) opens.
#![no_main]
use cusp_proto::crypto::{KeyMaterial, SessionKeys, SymmetricSuite};
use cusp_proto::wire::HEADER_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (ctl, rest) = data.split_at(2);
    let suite = if ctl[0] & 1 == 0 { SymmetricSuite::Poly1305Aes } else { SymmetricSuite::Crc32 };
    let encrypt = ctl[0] & 2 == 0;
    let len = suite.key_len();
    let a = [0x5au8; 32];
    let b = [0xa5u8; 32];
    let tx = SessionKeys::new(suite, &KeyMaterial::new(&a[..len], &b[..len]));
    let rx = SessionKeys::new(suite, &KeyMaterial::new(&b[..len], &a[..len]));
    let counter = u64::from(ctl[1]);

    // Arbitrary input opens exactly when its tag is the genuine tag of its bytes.
    let mut input = rest.to_vec();
    let opened = rx.open(counter, &mut input, HEADER_LEN, encrypt).is_ok();
    if rest.len() >= HEADER_LEN + 16 {
        let mut genuine = rest.to_vec();
        tx.seal(counter, &mut genuine, HEADER_LEN, false); // MAC over the bytes as they are
        assert_eq!(opened, genuine[rest.len() - 16..] == rest[rest.len() - 16..]);
    } else {
        assert!(!opened);
    }

    // Sealing then opening round-trips the payload.
    let mut buf = vec![0u8; HEADER_LEN + rest.len() + 16];
    buf[HEADER_LEN..HEADER_LEN + rest.len()].copy_from_slice(rest);
    tx.seal(counter, &mut buf, HEADER_LEN, encrypt);
    rx.open(counter, &mut buf, HEADER_LEN, encrypt).expect("genuine datagram opens");
    assert_eq!(&buf[HEADER_LEN..HEADER_LEN + rest.len()], rest);
});
