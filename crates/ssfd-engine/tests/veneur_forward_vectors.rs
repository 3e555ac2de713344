//! What a real Veneur local forwarded (`testdata/veneur/forward/`) decodes into ssfd's
//! sketches with the values `testdata/README.md` states; sets hash members exactly as
//! Veneur does, so merging the same members does not inflate the count.

use prost::Message;
use ssfd_engine::sketch::hll::HyperLogLog;
use ssfd_engine::sketch::tdigest::TDigest;
use ssfd_wire::metricpb::{self, metric::Value};

fn vector(name: &str) -> metricpb::Metric {
    let path = format!(
        "{}/../../testdata/veneur/forward/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    metricpb::Metric::decode(&std::fs::read(&path).unwrap()[..]).unwrap()
}

fn set(name: &str) -> (HyperLogLog, usize) {
    let Some(Value::Set(set)) = vector(name).value else {
        panic!("{name} is not a set")
    };
    (
        HyperLogLog::from_bytes(&set.hyper_log_log).unwrap(),
        set.hyper_log_log.len(),
    )
}

fn within(estimate: u64, exact: u64, bound: f64) {
    let error = (estimate as f64 - exact as f64).abs() / exact as f64;
    assert!(
        error <= bound,
        "estimate {estimate} vs {exact}: {:.3}%",
        error * 100.0
    );
}

#[test]
fn sets_decode_to_their_member_counts() {
    let (mut small, bytes) = set("fwd.set.small__Set.bin");
    assert_eq!(bytes, 32);
    assert_eq!(small.estimate(), 3);
    let (mut medium, bytes) = set("fwd.set.medium__Set.bin");
    assert_eq!(bytes, 2833);
    within(medium.estimate(), 1000, 0.02);
    let (mut large, bytes) = set("fwd.set.large__Set.bin");
    assert_eq!(bytes, 8200);
    assert!(!large.is_sparse());
    within(large.estimate(), 100_000, 0.02);
}

#[test]
fn members_hash_and_encode_as_veneur_does() {
    let (mut from_veneur, _) = set("fwd.set.small__Set.bin");
    let mut ours = HyperLogLog::default();
    for member in ["a", "b", "c"] {
        ours.insert(member.as_bytes());
    }
    assert_eq!(ours.sparse_entries(), from_veneur.sparse_entries());
}

#[test]
fn merging_the_same_members_does_not_inflate() {
    for (name, members) in [
        ("fwd.set.medium__Set.bin", 1000),
        ("fwd.set.large__Set.bin", 100_000),
    ] {
        let (from_veneur, _) = set(name);
        let mut ours = HyperLogLog::default();
        for index in 0..members {
            ours.insert(format!("member-{index}").as_bytes());
        }
        let alone = ours.clone().estimate();
        ours.merge(&from_veneur);
        assert_eq!(
            ours.estimate(),
            alone,
            "{name}: same members, same registers"
        );
        let mut theirs = from_veneur.clone();
        let before = theirs.estimate();
        let mut again = HyperLogLog::default();
        for index in 0..members {
            again.insert(format!("member-{index}").as_bytes());
        }
        theirs.merge(&again);
        assert_eq!(
            theirs.estimate(),
            before,
            "{name}: merged the other way round"
        );
        within(before, members as u64, 0.02);
    }
}

#[test]
fn histograms_decode_with_their_weights_sums_and_extremes() {
    for (name, count, sum, max) in [
        ("fwd.hist__Histogram.bin", 1000.0, 500_500.0, 1000.0),
        ("fwd.hist.global__Histogram.bin", 100.0, 5050.0, 100.0),
        ("fwd.timer__Timer.bin", 100.0, 5050.0, 100.0),
    ] {
        let metric = vector(name);
        let Some(Value::Histogram(histogram)) = metric.value else {
            panic!("{name}")
        };
        let data = histogram.t_digest.unwrap();
        assert_eq!(data.compression, 100.0);
        let mut digest = TDigest::from_wire(&data);
        assert_eq!(digest.count(), count, "{name}");
        assert!(
            (digest.sum() - sum).abs() < 1e-6 * sum,
            "{name}: {}",
            digest.sum()
        );
        assert_eq!((digest.min(), digest.max()), (1.0, max), "{name}");
        let median = digest.quantile(0.5);
        assert!(
            (median - max / 2.0).abs() <= max * 0.01 + 0.5,
            "{name}: median {median}"
        );
    }
    let Some(Value::Histogram(histogram)) = vector("fwd.hist__Histogram.bin").value else {
        panic!()
    };
    let data = histogram.t_digest.unwrap();
    assert_eq!(data.main_centroids.len(), 141);
    assert!((data.reciprocal_sum - 7.48547).abs() < 1e-4);
}

#[test]
fn counters_and_gauges_carry_scope_and_tags() {
    let counter = vector("fwd.counter__Counter.bin");
    assert_eq!(counter.tags, ["env:test"]);
    assert_eq!(counter.scope, metricpb::Scope::Global as i32);
    assert_eq!(
        counter.value,
        Some(Value::Counter(metricpb::CounterValue { value: 15 }))
    );
    let gauge = vector("fwd.gauge__Gauge.bin");
    assert_eq!(
        gauge.value,
        Some(Value::Gauge(metricpb::GaugeValue { value: 42.5 }))
    );
}
