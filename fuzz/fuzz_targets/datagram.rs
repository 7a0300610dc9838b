//! Arbitrary bytes into the channel datagram parser: never panics, and an
//! accepted datagram that writers may send (receivers are more lenient, e.g.
//! NOSTATE tokens longer than 16 bytes) re-emits to a datagram of the same kind.
#![no_main]
use cusp_proto::wire::Datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Datagram::parse(data) {
        let mut out = vec![0u8; data.len().max(d.wire_len())];
        let Ok(n) = d.emit(&mut out) else { return };
        let again = Datagram::parse(&out[..n]).expect("re-emitted datagram parses");
        assert_eq!(again.message_type(), d.message_type());
    }
});
