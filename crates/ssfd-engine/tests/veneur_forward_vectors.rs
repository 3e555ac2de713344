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

/// What an ssfd local forwards for the lines of `testdata/README.md`, by name.
fn ssfd_forwards() -> std::collections::HashMap<String, metricpb::Metric> {
    use ssfd_engine::aggregate::SeriesTable;
    use ssfd_engine::{Flush, FlushConfig, KeyScratch, MetricKind, Scope, ShardedSamples};
    let mut sharded = ShardedSamples::new(1);
    let mut scratch = KeyScratch::default();
    let mut push = |name: &str, kind, tags: &[&str], scope, value: f64, member: &[u8]| {
        scratch.begin(name.as_bytes(), kind);
        for tag in tags {
            scratch.tag(&[tag.as_bytes()]);
        }
        scratch.finish();
        sharded.push(&scratch, scope, value, 1.0, member);
    };
    for _ in 0..3 {
        push(
            "fwd.counter",
            MetricKind::Counter,
            &["env:test"],
            Scope::Global,
            5.0,
            b"",
        );
    }
    push(
        "fwd.gauge",
        MetricKind::Gauge,
        &[],
        Scope::Global,
        42.5,
        b"",
    );
    for n in 1..=1000 {
        push(
            "fwd.hist",
            MetricKind::Histogram,
            &["env:test"],
            Scope::Default,
            f64::from(n),
            b"",
        );
    }
    for member in ["a", "b", "c"] {
        push(
            "fwd.set.small",
            MetricKind::Set,
            &[],
            Scope::Default,
            0.0,
            member.as_bytes(),
        );
    }
    let mut table = SeriesTable::default();
    for (_, batch) in sharded.drain(&ssfd_engine::BatchPool::default()) {
        table.apply(&batch);
    }
    let config = FlushConfig {
        local: true,
        ..FlushConfig::default()
    };
    let mut flush = Flush::default();
    for series in table.into_series() {
        config.flush_series(series, &mut flush);
    }
    flush
        .forward
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect()
}

#[test]
fn what_ssfd_forwards_means_what_veneur_forwards() {
    let ours = ssfd_forwards();
    for (name, file) in [
        ("fwd.counter", "fwd.counter__Counter.bin"),
        ("fwd.gauge", "fwd.gauge__Gauge.bin"),
        ("fwd.hist", "fwd.hist__Histogram.bin"),
        ("fwd.set.small", "fwd.set.small__Set.bin"),
    ] {
        let (ours, veneur) = (&ours[name], vector(file));
        assert_eq!(
            (&ours.name, &ours.tags, ours.r#type, ours.scope),
            (&veneur.name, &veneur.tags, veneur.r#type, veneur.scope),
            "{name}: name, tags, type and scope"
        );
        match (&ours.value, &veneur.value) {
            (Some(Value::Counter(a)), Some(Value::Counter(b))) => assert_eq!(a, b),
            (Some(Value::Gauge(a)), Some(Value::Gauge(b))) => assert_eq!(a, b),
            (Some(Value::Histogram(a)), Some(Value::Histogram(b))) => {
                let (a, b) = (a.t_digest.as_ref().unwrap(), b.t_digest.as_ref().unwrap());
                let weight = |d: &ssfd_wire::tdigest::MergingDigestData| {
                    d.main_centroids.iter().map(|c| c.weight).sum::<f64>()
                };
                let sum = |d: &ssfd_wire::tdigest::MergingDigestData| {
                    d.main_centroids
                        .iter()
                        .map(|c| c.mean * c.weight)
                        .sum::<f64>()
                };
                assert_eq!((weight(a), a.min, a.max), (weight(b), b.min, b.max));
                assert!((sum(a) - sum(b)).abs() < 1e-6 * sum(b));
                assert!((a.reciprocal_sum - b.reciprocal_sum).abs() < 1e-9);
                // our digest is finer (compression 500 vs Veneur's 100); the field
                // means the same, and a Veneur global merges it as any other
            }
            (Some(Value::Set(a)), Some(Value::Set(b))) => {
                let mut ours = HyperLogLog::from_bytes(&a.hyper_log_log).unwrap();
                let mut theirs = HyperLogLog::from_bytes(&b.hyper_log_log).unwrap();
                // the same registers; the bytes differ only in layout (Veneur keeps
                // new members in the library's temporary set, ssfd merges them into
                // the compressed sparse list), both read by the library's decoder
                assert_eq!(ours.sparse_entries(), theirs.sparse_entries());
                assert_eq!(
                    &a.hyper_log_log[..4],
                    &b.hyper_log_log[..4],
                    "version, p, sparse"
                );
            }
            (a, b) => panic!("{name}: {a:?} vs {b:?}"),
        }
    }
}
