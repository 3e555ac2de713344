//! Criterion benchmarks of the aggregation engine: histogram inserts, set inserts, and
//! a worker folding a batch of statsd samples into its series table.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ssfd_benches::statsd_lines;
use ssfd_engine::aggregate::SeriesTable;
use ssfd_engine::sketch::hll::HyperLogLog;
use ssfd_engine::sketch::tdigest::TDigest;
use ssfd_engine::{Pipeline, PipelineConfig, SampleBatch, WhenFull};
use ssfd_ingest::handoff::{Handoff, HandoffConfig};
use ssfd_telemetry::{Listener, Protocol};
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn sketches(c: &mut Criterion) {
    let values: Vec<f64> = (0..100_000u64)
        .map(|i| ((i * 2_654_435_761) % 1_000_003) as f64 / 7.0 + 0.5)
        .collect();
    let mut group = c.benchmark_group("sketch");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("tdigest_add_weighted", |b| {
        b.iter(|| {
            let mut digest = TDigest::default();
            for (index, value) in values.iter().enumerate() {
                digest.add(*value, if index % 4 == 0 { 2.0 } else { 1.0 });
            }
            black_box(digest.count())
        })
    });
    let members: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
    group.bench_function("hll_insert", |b| {
        b.iter(|| {
            let mut set = HyperLogLog::default();
            for member in &members {
                set.insert(member.as_bytes());
            }
            black_box(set.is_sparse())
        })
    });
    // the sparse path: a set of a few thousand members, as one interval of a busy
    // `users.active` holds (Veneur's switch to dense comes at about 7,700)
    group.bench_function("hll_insert_sparse_7000", |b| {
        b.iter(|| {
            let mut set = HyperLogLog::default();
            for member in &members[..7000] {
                set.insert(member.as_bytes());
            }
            black_box(set.is_sparse())
        })
    });
    // a set seeing the same members again: 5,000 members (it stays sparse), each 4 times
    group.bench_function("hll_insert_sparse_5000_x4", |b| {
        b.iter(|| {
            let mut set = HyperLogLog::default();
            for _ in 0..4 {
                for member in &members[..5000] {
                    set.insert(member.as_bytes());
                }
            }
            black_box(set.is_sparse())
        })
    });
    group.finish();
}

/// The samples one handoff produces from 10,000 typical statsd lines.
fn sample_batch() -> SampleBatch {
    let (pipeline, mut receivers, _spans) = Pipeline::channels(PipelineConfig {
        metric_workers: 1,
        metric_queue_batches: 16,
        ..PipelineConfig::default()
    });
    let mut handoff = Handoff::new(
        pipeline,
        HandoffConfig {
            metric_max_length: 8192,
            ..Default::default()
        },
        Listener::Statsd,
        Protocol::Udp,
    );
    handoff.statsd_packet(statsd_lines(10_000).join("\n").as_bytes());
    handoff.flush(WhenFull::DropNewest).unwrap();
    receivers.remove(0).try_recv().unwrap()
}

fn worker(c: &mut Criterion) {
    let batch = sample_batch();
    let mut group = c.benchmark_group("worker");
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut table = SeriesTable::default();
    group.bench_function("apply_statsd_samples", |b| {
        b.iter(|| {
            table.apply(&batch);
            if table.len() > 100_000 {
                table.take();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, sketches, worker);

/// 100 k counter series through one flush: naming (`FlushConfig::flush_series`) and the
/// Prometheus exposition (`Exposition::apply`, then `render`).
fn flush(c: &mut Criterion) {
    use ssfd_engine::batch::{KeyScratch, ShardedSamples};
    use ssfd_engine::{Flush, FlushConfig, Scope};
    use ssfd_export::prometheus::Exposition;
    const SERIES: usize = 100_000;
    let mut samples = ShardedSamples::new(1);
    let mut scratch = KeyScratch::default();
    for i in 0..SERIES {
        scratch.begin(b"checkout.requests.total", ssfd_engine::MetricKind::Counter);
        scratch.tag(&[format!("service:checkout-{:04}", i % 1000).as_bytes()]);
        scratch.tag(&[b"env:production"]);
        scratch.tag(&[b"region:us-east-1"]);
        scratch.tag(&[format!("host:ip-10-0-{i:06}").as_bytes()]);
        scratch.finish();
        samples.push(&scratch, Scope::Default, 1.0, 1.0, b"");
    }
    let batch = samples
        .drain(&ssfd_engine::BatchPool::default())
        .next()
        .unwrap()
        .1;
    let config = FlushConfig::default();
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("name_series", |b| {
        b.iter_batched(
            || {
                let mut table = SeriesTable::default();
                table.apply(&batch);
                table
            },
            |table| {
                let mut flush = Flush::default();
                for series in table.into_series() {
                    config.flush_series(series, &mut flush);
                }
                flush
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut table = SeriesTable::default();
    table.apply(&batch);
    let mut flushed = Flush::default();
    for series in table.into_series() {
        config.flush_series(series, &mut flushed);
    }
    group.bench_function("exposition_apply_new_series", |b| {
        b.iter_batched(
            || Exposition::new(std::time::Duration::from_secs(300)),
            |mut exposition| {
                exposition.apply(&flushed);
                exposition
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut exposition = Exposition::new(std::time::Duration::from_secs(300));
    group.bench_function("exposition_apply", |b| {
        b.iter(|| exposition.apply(&flushed))
    });
    group.bench_function("exposition_render", |b| {
        b.iter(|| {
            let mut text = String::new();
            exposition.render(&mut text);
            text.len()
        })
    });
    group.finish();
}

/// A global's import of forwarded histograms (issue 6): a local's 1,000-sample digest
/// in Veneur's wire form, decoded and merged into the global's series, through the
/// same hand-off and series table as the service uses.
fn import(c: &mut Criterion) {
    let mut local = TDigest::default();
    for value in 1..=1000 {
        local.add(f64::from(value), 1.0);
    }
    let wire = local.to_wire();
    let metric = ssfd_wire::metricpb::Metric {
        name: "import.latency".into(),
        tags: vec!["env:prod".into()],
        r#type: ssfd_wire::metricpb::Type::Timer as i32,
        scope: ssfd_wire::metricpb::Scope::Mixed as i32,
        value: Some(ssfd_wire::metricpb::metric::Value::Histogram(
            ssfd_wire::metricpb::HistogramValue {
                t_digest: Some(wire),
            },
        )),
    };
    let (pipeline, receivers, _spans) = Pipeline::channels(PipelineConfig {
        metric_workers: 1,
        ..PipelineConfig::default()
    });
    let mut handoff = Handoff::new(
        pipeline,
        HandoffConfig::default(),
        Listener::Forward,
        Protocol::Grpc,
    );
    let mut table = SeriesTable::default();
    let mut group = c.benchmark_group("import");
    group.throughput(Throughput::Elements(100));
    group.bench_function("histogram_import_and_merge_x100", |b| {
        b.iter(|| {
            for _ in 0..100 {
                handoff.forwarded_metric(&metric).unwrap();
            }
            handoff.flush(WhenFull::Block).unwrap();
            for batch in receivers[0].try_iter() {
                table.apply(&batch);
            }
            black_box(table.len())
        })
    });
    group.finish();
}

/// The RED history (SPEC 6 RED view) with 100 services × 100 operations, each with
/// 6 hours of minutes (first of the groups, so its RSS growth is its own): one batch
/// of 1,024 spans observed, and one service's view over
/// 6 hours at 1-minute steps.
fn red(c: &mut Criterion) {
    use ssfd_engine::red::RedHistory;
    const MINUTE: i64 = 60_000_000_000;
    let t0: i64 = 1_800_000_000 * 1_000_000_000;
    let rss_kib = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = rss_kib();
    let history = RedHistory::default();
    let names: Vec<(String, String)> = (0..100)
        .flat_map(|s| (0..100).map(move |o| (format!("svc{s}"), format!("op{o}"))))
        .collect();
    for minute in 0..360 {
        history.observe(
            t0 + minute * MINUTE,
            names
                .iter()
                .map(|(s, o)| (s.as_str(), o.as_str(), minute % 7 == 0, 1_000_000 + minute)),
        );
    }
    let now = t0 + 359 * MINUTE;
    eprintln!(
        "red: 10,000 operations × 360 minutes hold {} MiB (RSS growth)",
        (rss_kib().saturating_sub(before)) / 1024
    );
    let mut group = c.benchmark_group("red");
    group.throughput(Throughput::Elements(1024));
    group.bench_function("observe_1024_spans_10k_operations", |b| {
        b.iter(|| {
            history.observe(
                now,
                names
                    .iter()
                    .step_by(9)
                    .take(1024)
                    .map(|(s, o)| (s.as_str(), o.as_str(), false, 2_000_000)),
            )
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("view_6h_1m_steps_100_operations", |b| {
        b.iter(|| black_box(history.view("svc42", t0, now + MINUTE, MINUTE).len()))
    });
    group.finish();
}

criterion_group!(flushing, flush);
criterion_group!(red_views, red);
criterion_group!(importing, import);
criterion_main!(red_views, benches, flushing, importing);
