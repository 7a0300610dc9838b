#![no_main]
use cusp_proto::crypto::PublicKeySuites;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let s = PublicKeySuites::from_mask(u16::from_be_bytes([data[0], data[1]]));
        let _ = s.cheapest();
    }
});
