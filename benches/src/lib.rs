//! Shared inputs of the benchmarks: realistic DogStatsD lines and SSF spans.

use prost::Message;
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample::Metric};

/// A mix of typical DogStatsD lines (counters, gauges, timers, histograms, sets; most
/// with two or three tags, some with sample rates).
pub fn statsd_lines(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i % 6 {
            0 => format!("api.requests:1|c|#service:web,env:prod,route:/v{}", i % 50),
            1 => format!(
                "api.latency:{}.{}|ms|@0.5|#service:web,env:prod",
                i % 997,
                i % 10
            ),
            2 => format!("queue.depth:{}|g|#queue:q{}", i % 1000, i % 20),
            3 => format!(
                "payload.bytes:{}|h|#service:ingest,env:prod,region:us-east-1",
                i % 65536
            ),
            4 => format!("users.active:user-{}|s|#env:prod", i % 10_000),
            _ => format!("cache.hits:{}|c|@0.1", i % 7),
        })
        .collect()
}

/// An SSF span of about 300 bytes: 5 tags and 2 samples.
pub fn ssf_span(id: i64) -> SsfSpan {
    let tags = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    SsfSpan {
        version: 0,
        trace_id: 0x1234_5678_9abc + id / 10,
        id,
        parent_id: id - 1,
        start_timestamp: 1_700_000_000_000_000_000 + id,
        end_timestamp: 1_700_000_000_000_250_000 + id,
        error: id % 17 == 0,
        service: "checkout-service".into(),
        name: "POST /api/v1/orders/{id}/items".into(),
        tags: tags(&[
            ("http.method", "POST"),
            ("http.status_code", "201"),
            ("region", "us-east-1"),
            ("host", "ip-10-0-12-34.ec2.internal"),
            ("version", "2026.11.3"),
        ]),
        metrics: vec![
            SsfSample {
                metric: Metric::Counter as i32,
                name: "orders.items.added".into(),
                value: 1.0,
                sample_rate: 1.0,
                tags: tags(&[("tier", "gold")]),
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Histogram as i32,
                name: "orders.db.latency_ms".into(),
                value: 3.25,
                sample_rate: 0.5,
                unit: "ms".into(),
                tags: tags(&[("db", "orders")]),
                ..Default::default()
            },
        ],
        indicator: false,
        root_start_timestamp: 0,
        ..Default::default()
    }
}

/// The encoded form of [`ssf_span`].
pub fn ssf_span_bytes(id: i64) -> Vec<u8> {
    ssf_span(id).encode_to_vec()
}

/// Words log messages are made of in the store benchmark.
pub const WORDS: [&str; 40] = [
    "user",
    "order",
    "payment",
    "cart",
    "checkout",
    "inventory",
    "shipping",
    "refund",
    "timeout",
    "retry",
    "connection",
    "refused",
    "accepted",
    "declined",
    "cache",
    "miss",
    "hit",
    "database",
    "query",
    "slow",
    "fast",
    "token",
    "expired",
    "renewed",
    "upstream",
    "downstream",
    "queue",
    "full",
    "drained",
    "warehouse",
    "carrier",
    "label",
    "printed",
    "invoice",
    "sent",
    "failed",
    "succeeded",
    "session",
    "started",
    "ended",
];

/// Span `i` of the store benchmark: 10 spans per trace (trace `1 + i / 10`, whose first
/// span is the root), 20 services, 50 span names, 1 in 17 an error, 6 tags (one of
/// them `customer`, 1,000 values), a counter and a histogram sample, and with `log` a
/// log sample whose message is 6 of [`WORDS`] and a number.
pub fn store_span(i: u64, log: bool) -> SsfSpan {
    let mut span = ssf_span(i as i64 + 1);
    let trace = 1 + i / 10;
    let first = i - i % 10 + 1;
    span.trace_id = trace as i64;
    span.id = i as i64 + 1;
    span.parent_id = if i.is_multiple_of(10) {
        0
    } else {
        first as i64
    };
    span.service = format!("svc-{:02}", (trace + i % 10) % 20);
    span.name = format!("op-{:02}", (i * 7) % 50);
    let start = 1_800_000_000_000_000_000 + trace as i64 * 1_000_000 + (i % 10) as i64 * 1_000;
    span.start_timestamp = start;
    span.end_timestamp = start + ((i.wrapping_mul(2_654_435_761) % 1_000) * 1_000) as i64;
    span.error = i.is_multiple_of(17);
    span.tags
        .insert("customer".into(), format!("c{}", i % 1000));
    if log {
        let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let word = |n: u32| WORDS[((mixed >> (n * 6)) % WORDS.len() as u64) as usize];
        span.metrics.push(SsfSample {
            metric: Metric::Counter as i32,
            name: "app.log".into(),
            message: format!(
                "{} {} {} {} after {} ms {} {}",
                word(0),
                word(1),
                word(2),
                word(3),
                i % 997,
                word(4),
                word(5)
            ),
            status: (i % 4) as i32,
            timestamp: start + 500,
            ..Default::default()
        });
    }
    span
}
