//! ssfd's HyperLogLog against vectors produced by the library Veneur vendors
//! (`testdata/hll/`): member hashing and encoding, the sparse-to-dense switch, the
//! exact sparse bytes, and the estimates.

use ssfd_engine::sketch::hll::{HyperLogLog, metro_hash64};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hll")
}

fn members(n: usize) -> HyperLogLog {
    let mut sketch = HyperLogLog::default();
    for index in 1..=n {
        sketch.insert(format!("flow-{index}").as_bytes());
    }
    sketch
}

fn go_estimate(file: &str) -> u64 {
    let text = std::fs::read_to_string(root().join("estimates.txt")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{file} ")))
        .unwrap_or_else(|| panic!("{file} in estimates.txt"))
        .parse()
        .unwrap()
}

#[test]
fn member_hashes_match() {
    let text = std::fs::read_to_string(root().join("member_vectors.txt")).unwrap();
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with('"')) {
        let fields: Vec<&str> = line.split(" | ").collect();
        let member = fields[0].trim_matches('"');
        let hash = u64::from_str_radix(fields[1], 16).unwrap();
        assert_eq!(metro_hash64(member.as_bytes(), 1337), hash, "{member:?}");
        let mut sketch = HyperLogLog::default();
        sketch.insert(member.as_bytes());
        let encoded = u32::from_str_radix(fields[2], 16).unwrap();
        assert_eq!(sketch.sparse_entries(), [encoded], "{member:?}");
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn sparse_bytes_and_estimates_match_exactly() {
    for (n, file) in [(1000, "flow_1_1000.bin"), (7707, "flow_1_7707.bin")] {
        let go_bytes = std::fs::read(root().join(file)).unwrap();
        let mut ours = members(n);
        assert!(ours.is_sparse(), "{n} members stay sparse");
        assert_eq!(ours.estimate(), go_estimate(file), "{file}");
        assert_eq!(ours.to_bytes(), go_bytes, "{file}: byte for byte");
        let mut theirs = HyperLogLog::from_bytes(&go_bytes).unwrap();
        assert_eq!(theirs.estimate(), go_estimate(file));
    }
}

#[test]
fn dense_switch_and_estimates() {
    let dense = members(7708);
    assert!(!dense.is_sparse(), "7708 members turn dense, as in Veneur");
    let go_bytes = std::fs::read(root().join("flow_1_7708_dense_before_estimate.bin")).unwrap();
    assert_eq!(go_bytes[3], 0);
    let mut theirs = HyperLogLog::from_bytes(&go_bytes).unwrap();
    let mut ours = dense.clone();
    assert_eq!(
        theirs.estimate(),
        ours.estimate(),
        "same registers, same estimate"
    );
    assert_eq!(ours.to_bytes(), go_bytes, "dense registers byte for byte");
    for (n, file) in [
        (20_000, "flow_1_20000.bin"),
        (1_000_000, "flow_1_1000000.bin"),
    ] {
        let go_bytes = std::fs::read(root().join(file)).unwrap();
        let mut ours = members(n);
        assert_eq!(ours.to_bytes(), go_bytes, "{file}: registers byte for byte");
        let go = go_estimate(file) as f64;
        let mine = ours.estimate() as f64;
        // Veneur's estimate counts zero registers of even slots twice; ssfd counts each once
        assert!(
            (mine - go).abs() / go < 0.005,
            "{file}: {mine} vs Veneur's {go}"
        );
        assert!(
            (mine - n as f64).abs() / n as f64 <= 0.02,
            "{file}: {mine} vs {n}"
        );
    }
}
