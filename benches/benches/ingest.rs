//! Criterion benchmarks of the ingest hot paths: DogStatsD parsing, SSF decode plus
//! normalisation, and the hand-off that builds, hashes and shards series keys.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ssfd_benches::{ssf_span_bytes, statsd_lines};
use ssfd_engine::{Pipeline, PipelineConfig, WhenFull};
use ssfd_ingest::handoff::{Handoff, HandoffConfig};
use ssfd_telemetry::{Listener, Protocol};
use ssfd_wire::dogstatsd_text::{Line, Value, parse_line};
use ssfd_wire::normalize;
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn dogstatsd_parse(c: &mut Criterion) {
    let lines = statsd_lines(1000);
    let mut group = c.benchmark_group("dogstatsd");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_line", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for line in &lines {
                if let Ok(Line::Metric(metric)) = parse_line(line.as_bytes()) {
                    for value in metric.values() {
                        if let Value::Number(n) = value {
                            sum += n;
                        }
                    }
                }
            }
            black_box(sum)
        })
    });
    group.finish();
}

fn ssf_decode(c: &mut Criterion) {
    let spans: Vec<Vec<u8>> = (1..=1000).map(ssf_span_bytes).collect();
    let mean = spans.iter().map(Vec::len).sum::<usize>() / spans.len();
    let mut group = c.benchmark_group(format!("ssf_{mean}B_5tags_2samples"));
    group.throughput(Throughput::Elements(spans.len() as u64));
    group.bench_function("ssf_view_parse_classify", |b| {
        b.iter(|| {
            let mut valid = 0;
            for bytes in &spans {
                let view = ssfd_wire::ssf_view::SpanView::parse(bytes).unwrap();
                if view.is_trace_span() && !view.needs_normalization() {
                    valid += view
                        .samples()
                        .filter(|s| {
                            normalize::classify_sample_fields(
                                s.metric,
                                s.name,
                                s.value,
                                s.message,
                                s.sample_rate,
                            )
                            .is_ok()
                        })
                        .count();
                }
                black_box(&view);
            }
            black_box(valid)
        })
    });
    group.bench_function("prost_decode_normalize_classify", |b| {
        b.iter(|| {
            let mut valid = 0;
            for bytes in &spans {
                let mut span = normalize::decode_span(bytes).unwrap();
                normalize::normalize(&mut span);
                if normalize::classify(&span).is_ok() {
                    valid += span
                        .metrics
                        .iter()
                        .filter(|s| normalize::classify_sample(s).is_ok())
                        .count();
                }
                black_box(&span);
            }
            black_box(valid)
        })
    });
    group.finish();
}

fn handoff(c: &mut Criterion) {
    let lines = statsd_lines(1000);
    let packet = lines.join("\n");
    let spans: Vec<Vec<u8>> = (1..=1000).map(ssf_span_bytes).collect();
    let (pipeline, _workers) = Pipeline::start(PipelineConfig {
        metric_workers: 2,
        span_workers: 1,
        metric_queue_batches: 1 << 16,
        span_queue_batches: 1 << 16,
        ..PipelineConfig::default()
    });
    let config = HandoffConfig {
        metric_max_length: 8192,
        ..HandoffConfig::default()
    };
    let mut group = c.benchmark_group("handoff");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let mut statsd = Handoff::new(
        pipeline.clone(),
        config.clone(),
        Listener::Statsd,
        Protocol::Udp,
    );
    group.bench_function("statsd_packet_parse_key_hash_shard", |b| {
        b.iter(|| {
            statsd.statsd_packet(packet.as_bytes());
            let _ = statsd.flush(WhenFull::DropNewest);
        })
    });
    let mut cached = Handoff::new(
        pipeline.clone(),
        config.clone(),
        Listener::Statsd,
        Protocol::Udp,
    );
    cached.cache_keys();
    group.bench_function("statsd_packet_key_cache_shard", |b| {
        b.iter(|| {
            cached.statsd_packet(packet.as_bytes());
            let _ = cached.flush(WhenFull::DropNewest);
        })
    });
    let mut ssf = Handoff::new(pipeline.clone(), config, Listener::Ssf, Protocol::Udp);
    group.bench_function("ssf_packet_decode_normalize_shard", |b| {
        b.iter(|| {
            for bytes in &spans {
                let _ = ssf.ssf_packet(bytes);
            }
            let _ = ssf.flush(WhenFull::DropNewest);
        })
    });
    group.finish();
}

criterion_group!(benches, dogstatsd_parse, ssf_decode, handoff);
criterion_main!(benches);
