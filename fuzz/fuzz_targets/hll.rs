//! Fuzzes HyperLogLog bytes as a forward import would receive them: decode, estimate,
//! merge both ways with a sketch of our own, insert members, re-encode and decode again.
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
    // members from the input, twice: new entries and repeats for the sparse merges
    for member in bytes.chunks(3).chain(bytes.chunks(3)) {
        sketch.insert(member);
    }
    if sketch.is_sparse() {
        let entries = sketch.sparse_entries();
        assert!(entries.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    }
    let encoded = sketch.to_bytes();
    let mut again = HyperLogLog::from_bytes(&encoded).expect("our own bytes decode");
    assert_eq!(again.estimate(), sketch.estimate());
});
