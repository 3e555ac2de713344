//! Fuzzes HyperLogLog bytes as a forward import would receive them: decode, estimate,
//! merge both ways with a sketch of our own, re-encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssfd_engine::sketch::hll::HyperLogLog;

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut sketch) = HyperLogLog::from_bytes(bytes) else { return };
    let _ = sketch.estimate();
    let mut ours = HyperLogLog::default();
    for member in [&b"a"[..], b"b", b"c"] {
        ours.insert(member);
    }
    let mut merged = ours.clone();
    merged.merge(&sketch);
    let _ = merged.estimate();
    sketch.merge(&ours);
    let encoded = sketch.to_bytes();
    let mut again = HyperLogLog::from_bytes(&encoded).expect("our own bytes decode");
    assert_eq!(again.estimate(), sketch.estimate());
});
