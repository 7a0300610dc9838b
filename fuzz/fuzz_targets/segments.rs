//! Arbitrary bytes into the stream-segment parser: never panics, and a payload
//! that validates re-encodes to the same bytes.
#![no_main]
use cusp_proto::wire::segment::{PayloadWriter, Segments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let all: Result<Vec<_>, _> = Segments::new(data).collect();
    if let Ok(segments) = all {
        let mut out = vec![0u8; data.len()];
        let mut w = PayloadWriter::new(&mut out);
        for s in &segments {
            if w.push(s).is_err() {
                return; // e.g. a received 4093..4095-byte DATA, which writers refuse
            }
        }
        if let Ok(n) = w.finish() {
            // Reserved bits and padding are not preserved, so compare segment views.
            let again: Vec<_> = Segments::new(&out[..n]).collect::<Result<_, _>>().expect("re-parse");
            assert_eq!(again, segments);
        }
    }
});
