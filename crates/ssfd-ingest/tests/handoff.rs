//! What the hand-off gives the workers: canonical series keys (sorted, de-duplicated,
//! magic tags removed, container id and extend_tags added), scopes, values, rates, set
//! members, statuses, spans by trace id and log records; and that garbage never panics.

use crossbeam_channel::Receiver;
use prost::Message;
use ssfd_engine::{
    LogKind, MetricKind, Pipeline, PipelineConfig, SampleBatch, Scope, SpanWork, WhenFull,
};
use ssfd_ingest::handoff::{Handoff, HandoffConfig, SpanMetrics};
use ssfd_telemetry::{Listener, Protocol};
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample};

struct Rig {
    handoff: Handoff,
    metrics: Vec<Receiver<SampleBatch>>,
    spans: Vec<Receiver<SpanWork>>,
}

fn rig(extend_tags: &[&str]) -> Rig {
    rig_with(extend_tags, None)
}

fn rig_with(extend_tags: &[&str], span_metrics: Option<std::sync::Arc<SpanMetrics>>) -> Rig {
    let (pipeline, metrics, spans) = Pipeline::channels(PipelineConfig {
        metric_workers: 3,
        span_workers: 2,
        metric_queue_batches: 64,
        span_queue_batches: 64,
        ..PipelineConfig::default()
    });
    let config = HandoffConfig {
        extend_tags: extend_tags.iter().map(|t| t.to_string()).collect(),
        metric_max_length: 8192,
        span_metrics,
        events: None,
        forwarded: false,
    };
    Rig {
        handoff: Handoff::new(pipeline, config, Listener::Statsd, Protocol::Udp),
        metrics,
        spans,
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    name: String,
    kind: MetricKind,
    tags: String,
    scope: Scope,
    value: f64,
    rate: f32,
    extra: String,
}

impl Rig {
    fn samples(&mut self) -> Vec<Seen> {
        let mut seen = self.samples_in_order();
        seen.sort_by(|a, b| (&a.name, a.value.to_bits()).cmp(&(&b.name, b.value.to_bits())));
        seen
    }

    /// The samples in the order a worker folds them (a series keeps one shard).
    fn samples_in_order(&mut self) -> Vec<Seen> {
        self.handoff.flush(WhenFull::DropNewest).unwrap();
        let mut seen = Vec::new();
        for (shard, receiver) in self.metrics.iter().enumerate() {
            for batch in receiver.try_iter() {
                for sample in batch.samples() {
                    assert_eq!(
                        ssfd_engine::batch::shard_of(sample.hash, self.metrics.len()),
                        shard,
                        "a sample reaches the shard that owns its hash"
                    );
                    assert_eq!(
                        sample.hash,
                        ssfd_engine::batch::key_hash(batch.key(sample)),
                        "hashed once, of the shipped key"
                    );
                    seen.push(Seen {
                        name: String::from_utf8_lossy(batch.name(sample)).into(),
                        kind: sample.kind,
                        tags: String::from_utf8_lossy(batch.tags(sample)).into(),
                        scope: sample.scope,
                        value: sample.value,
                        rate: sample.rate,
                        extra: String::from_utf8_lossy(batch.extra(sample)).into(),
                    });
                }
            }
        }
        seen
    }

    fn span_work(&mut self) -> Vec<(usize, SpanWork)> {
        self.handoff.flush(WhenFull::DropNewest).unwrap();
        let mut out = Vec::new();
        for (shard, receiver) in self.spans.iter().enumerate() {
            out.extend(receiver.try_iter().map(|w| (shard, w)));
        }
        out
    }
}

fn seen(
    name: &str,
    kind: MetricKind,
    tags: &str,
    scope: Scope,
    value: f64,
    rate: f32,
    extra: &str,
) -> Seen {
    Seen {
        name: name.into(),
        kind,
        tags: tags.into(),
        scope,
        value,
        rate,
        extra: extra.into(),
    }
}

#[test]
fn statsd_lines_become_canonical_samples() {
    let mut rig = rig(&["dc:east", ""]);
    rig.handoff.statsd_packet(
        b"req:2|c|@0.5|#z:1,a:2,z:1,veneurglobalonly\n\
          temp:21.5|g|c:abc\n\
          lat:1:2|h|#veneurlocalonly\n\
          rt:3|ms\n\
          dist:4|d\n\
          users:alice|s|#a\n\
          _sc|db|2|#db:main|m:down\n\
          bad line\n",
    );
    let got = rig.samples();
    assert_eq!(
        got,
        vec![
            seen(
                "db",
                MetricKind::Status,
                "db:main,dc:east",
                Scope::Default,
                2.0,
                1.0,
                "down"
            ),
            seen(
                "dist",
                MetricKind::Histogram,
                "dc:east",
                Scope::Default,
                4.0,
                1.0,
                ""
            ),
            seen(
                "lat",
                MetricKind::Histogram,
                "dc:east",
                Scope::Local,
                1.0,
                1.0,
                ""
            ),
            seen(
                "lat",
                MetricKind::Histogram,
                "dc:east",
                Scope::Local,
                2.0,
                1.0,
                ""
            ),
            seen(
                "req",
                MetricKind::Counter,
                "a:2,dc:east,z:1",
                Scope::Global,
                4.0,
                1.0,
                ""
            ),
            seen(
                "rt",
                MetricKind::Timer,
                "dc:east",
                Scope::Default,
                3.0,
                1.0,
                ""
            ),
            seen(
                "temp",
                MetricKind::Gauge,
                "container_id:abc,dc:east",
                Scope::Default,
                21.5,
                1.0,
                ""
            ),
            seen(
                "users",
                MetricKind::Set,
                "a,dc:east",
                Scope::Default,
                0.0,
                1.0,
                "alice"
            ),
        ]
    );
    let work = rig.span_work();
    assert_eq!(work.len(), 1);
    let SpanWork::Records(records) = &work[0].1 else {
        panic!("records")
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, LogKind::ServiceCheck);
    assert_eq!(records[0].message, "down");
    assert_eq!(records[0].severity.label(), "error");
}

#[test]
fn extend_tags_replace_tags_of_the_same_key_as_veneur() {
    // Veneur's ExtendTags.Extend: a client tag whose key (before any `:`) is an
    // extend tag's key is dropped; other tags, bare ones included, stay
    for cached in [false, true] {
        let mut rig = rig(&["env:prod", "team"]);
        if cached {
            rig.handoff.cache_keys();
        }
        rig.handoff.statsd_packet(
            b"a:1|c|#env:dev,environment:x,team:web,envx\na:1|c|#env:dev,environment:x,team:web,envx\n\
              _sc|up|0|#env:qa\n",
        );
        let got: Vec<(String, String)> = rig
            .samples()
            .into_iter()
            .map(|s| (s.name, s.tags))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), "env:prod,environment:x,envx,team".into()),
                ("a".into(), "env:prod,environment:x,envx,team".into()),
                ("up".into(), "env:prod,team".into()),
            ],
            "cached: {cached}"
        );
    }
    let mut rig = rig(&["env:prod"]);
    let mut counter = sample(ssf_sample::Metric::Counter, "ssf.c", 1.0);
    counter.tags = [("env".to_string(), "dev".to_string())].into();
    let span = SsfSpan {
        metrics: vec![counter],
        ..SsfSpan::default()
    };
    rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    assert_eq!(rig.samples()[0].tags, "env:prod");
}

#[test]
fn a_comma_inside_an_ssf_tag_does_not_split_it() {
    let mut rig = rig(&[]);
    let mut counter = sample(ssf_sample::Metric::Counter, "ssf.c", 1.0);
    counter.tags = [
        ("path".to_string(), "/a,b".to_string()),
        ("x,y".to_string(), String::new()),
    ]
    .into();
    let span = SsfSpan {
        metrics: vec![counter],
        ..SsfSpan::default()
    };
    rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    assert_eq!(rig.samples()[0].tags, "path:/a_b,x_y");
}

/// Every metric series a rig's samples fold into, as (name, counter sum or histogram
/// weight and sum).
fn aggregated(rig: &mut Rig) -> Vec<(String, f64, f64)> {
    use ssfd_engine::aggregate::{SeriesTable, State};
    rig.handoff.flush(WhenFull::DropNewest).unwrap();
    let mut table = SeriesTable::with_limit(1000);
    for receiver in &rig.metrics {
        for batch in receiver.try_iter() {
            table.apply(&batch);
        }
    }
    let mut out: Vec<_> = table
        .into_series()
        .map(|series| {
            let name = String::from_utf8_lossy(series.name()).into_owned();
            match &series.state {
                State::Counter(sum) => (name, *sum, 0.0),
                State::Histogram(h) => (name, h.weight, h.sum),
                _ => (name, f64::NAN, f64::NAN),
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn sample_rates_weigh_exactly() {
    // statsd: a counter divides by its rate as written; a histogram weighs 1 / rate
    // (in f32 as Veneur does, so 0.1 weighs exactly 10), with and without the key cache
    for cached in [false, true] {
        let mut rig = rig(&[]);
        if cached {
            rig.handoff.cache_keys();
        }
        rig.handoff.statsd_packet(
            b"tenth:1|c|@0.1\ntenth:1|c|@0.1\nthird:1|c|@0.3\nhundredth:2:3|c|@0.01\n\
              lat:5|ms|@0.1\nlat:5|ms|@0.1\nsize:1|h|@0.05\n",
        );
        assert_eq!(
            aggregated(&mut rig),
            vec![
                ("hundredth".into(), 500.0, 0.0),
                ("lat".into(), 20.0, 100.0),
                ("size".into(), 20.0, 20.0),
                ("tenth".into(), 20.0, 0.0),
                ("third".into(), 1.0 / 0.3, 0.0),
            ],
            "cached: {cached}"
        );
    }
    // SSF: the rate is a float32 on the wire; 0.1 still weighs exactly 10
    let mut rig = rig(&[]);
    let mut counter = sample(ssf_sample::Metric::Counter, "ssf.count", 3.0);
    counter.sample_rate = 0.1;
    let mut histogram = sample(ssf_sample::Metric::Histogram, "ssf.lat", 4.0);
    histogram.sample_rate = 0.25;
    let span = SsfSpan {
        metrics: vec![counter, histogram],
        ..SsfSpan::default()
    };
    rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    assert_eq!(
        aggregated(&mut rig),
        vec![
            ("ssf.count".into(), 30.0, 0.0),
            ("ssf.lat".into(), 4.0, 16.0)
        ]
    );
}

#[test]
fn events_become_log_records() {
    let mut rig = rig(&[]);
    rig.handoff
        .statsd_packet(b"_e{6,10}:deploy|v2\\nrolled|t:warning|h:web1|#service:api,env:prod");
    assert!(rig.samples().is_empty());
    let work = rig.span_work();
    let SpanWork::Records(records) = &work[0].1 else {
        panic!("records")
    };
    let record = &records[0];
    assert_eq!(record.kind, LogKind::Event);
    assert_eq!(
        (record.name.as_str(), record.message.as_str()),
        ("deploy", "v2\nrolled")
    );
    assert_eq!(record.severity.label(), "warn");
    assert_eq!(record.service, "api");
    assert_eq!(
        record.tags,
        [
            "alert_type:warning",
            "env:prod",
            "hostname:web1",
            "service:api"
        ]
    );
}

fn sample(metric: ssf_sample::Metric, name: &str, value: f32) -> SsfSample {
    SsfSample {
        metric: metric as i32,
        name: name.into(),
        value,
        sample_rate: 1.0,
        ..Default::default()
    }
}

#[test]
fn ssf_spans_split_into_samples_and_span_work() {
    use ssf_sample::Metric;
    let mut rig = rig(&[]);
    let mut counter = sample(Metric::Counter, "c", 3.0);
    counter.tags.insert("k".into(), "v".into());
    counter.tags.insert("bare".into(), String::new());
    counter
        .tags
        .insert("veneurglobalonly".into(), String::new());
    counter.sample_rate = 0.0;
    let mut set = sample(Metric::Set, "s", 0.0);
    set.message = "member".into();
    let mut status = sample(Metric::Status, "st", 0.0);
    status.status = 1;
    status.message = "slow".into();
    let mut scoped = sample(Metric::Gauge, "g", 1.5);
    scoped.scope = ssf_sample::Scope::Local as i32;
    let log = SsfSample {
        message: "hello".into(),
        ..sample(Metric::Counter, "logger", 0.0)
    };
    let bad = sample(Metric::Gauge, "nan", f32::NAN);
    let span = SsfSpan {
        trace_id: 42,
        id: 7,
        start_timestamp: 1,
        end_timestamp: 2,
        tags: [("name".to_string(), "from-tag".to_string())].into(),
        metrics: vec![counter, set, status, scoped, log, bad],
        ..Default::default()
    };
    rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    assert_eq!(
        rig.samples(),
        vec![
            seen(
                "c",
                MetricKind::Counter,
                "bare,k:v",
                Scope::Global,
                3.0,
                1.0,
                ""
            ),
            seen("g", MetricKind::Gauge, "", Scope::Local, 1.5, 1.0, ""),
            seen("s", MetricKind::Set, "", Scope::Default, 0.0, 1.0, "member"),
            seen(
                "st",
                MetricKind::Status,
                "",
                Scope::Default,
                1.0,
                1.0,
                "slow"
            ),
        ]
    );
    let work = rig.span_work();
    assert_eq!(work.len(), 1, "the log stays inside its span");
    let (shard, SpanWork::Spans(spans)) = &work[0] else {
        panic!("spans")
    };
    let (entry, bytes) = spans.iter().next().unwrap();
    assert_eq!((entry.trace_id, entry.id), (ssfd_wire::ids::TraceId(42), 7));
    let stored = SsfSpan::decode(bytes).unwrap();
    assert_eq!(stored.name, "from-tag", "normalised before it travels on");
    assert!(!stored.tags.contains_key("name"));
    let (pipeline, _, _) = Pipeline::channels(PipelineConfig {
        span_workers: 2,
        ..PipelineConfig::default()
    });
    assert_eq!(*shard, pipeline.span_shard(ssfd_wire::ids::TraceId(42)));
}

#[test]
fn a_span_that_needs_no_normalisation_travels_as_its_own_bytes() {
    let mut rig = rig(&[]);
    let span = SsfSpan {
        trace_id: 1,
        id: 2,
        start_timestamp: 3,
        end_timestamp: 4,
        name: "op".into(),
        ..Default::default()
    };
    let bytes = span.encode_to_vec();
    rig.handoff.ssf_packet(&bytes).unwrap();
    let work = rig.span_work();
    let SpanWork::Spans(spans) = &work[0].1 else {
        panic!("spans")
    };
    assert_eq!(spans.iter().next().unwrap().1, &bytes[..]);
}

#[test]
fn log_samples_without_a_timestamp_are_stamped_at_receipt() {
    let mut rig = rig(&[]);
    let log = |timestamp| SsfSample {
        metric: ssf_sample::Metric::Counter as i32,
        name: "log".into(),
        message: "hello".into(),
        timestamp,
        ..Default::default()
    };
    let mut metric = sample(ssf_sample::Metric::Gauge, "g", 1.0);
    metric.timestamp = 0;
    let span = SsfSpan {
        trace_id: 1,
        id: 2,
        // a start far from now
        start_timestamp: 1_800_000_000_000_000_000,
        end_timestamp: 1_800_000_000_000_000_001,
        name: "op".into(),
        metrics: vec![log(0), log(7), metric],
        ..Default::default()
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    let work = rig.span_work();
    let SpanWork::Spans(spans) = &work[0].1 else {
        panic!("spans")
    };
    let stored = SsfSpan::decode(spans.iter().next().unwrap().1).unwrap();
    let stamps: Vec<i64> = stored.metrics.iter().map(|m| m.timestamp).collect();
    assert!(
        stamps[0] >= before && stamps[0] < before + 60_000_000_000,
        "{stamps:?}"
    );
    assert_eq!(
        stamps[1..],
        [7, 0],
        "a given time stays; a metric sample is not a log"
    );
}

#[test]
fn duplicate_sample_tag_keys_keep_the_last_value() {
    let mut rig = rig(&[]);
    let mut bytes = SsfSpan {
        metrics: vec![SsfSample {
            metric: ssf_sample::Metric::Counter as i32,
            name: "c".into(),
            value: 1.0,
            tags: [("k".to_string(), "first".to_string())].into(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    // append a second map entry for the same key inside the sample: rebuild the sample
    let sample = SsfSample {
        metric: ssf_sample::Metric::Counter as i32,
        name: "c".into(),
        value: 1.0,
        tags: [("k".to_string(), "first".to_string())].into(),
        ..Default::default()
    };
    let mut sample_bytes = sample.encode_to_vec();
    sample_bytes.extend(
        SsfSample {
            tags: [("k".to_string(), "last".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    bytes.clear();
    bytes.push(0x52); // field 10, length-delimited
    bytes.push(sample_bytes.len() as u8);
    bytes.extend(&sample_bytes);
    rig.handoff.ssf_packet(&bytes).unwrap();
    assert_eq!(
        rig.samples(),
        vec![seen(
            "c",
            MetricKind::Counter,
            "k:last",
            Scope::Default,
            1.0,
            1.0,
            ""
        )]
    );
}

#[test]
fn refused_flush_sends_nothing_and_discard_empties() {
    let (pipeline, metrics, _spans) = Pipeline::channels(PipelineConfig {
        metric_workers: 1,
        span_workers: 1,
        metric_queue_batches: 1,
        span_queue_batches: 1,
        ..PipelineConfig::default()
    });
    let mut handoff = Handoff::new(
        pipeline,
        HandoffConfig {
            metric_max_length: 100,
            ..Default::default()
        },
        Listener::Grpc,
        Protocol::Grpc,
    );
    handoff.statsd_packet(b"a:1|c");
    handoff.flush(WhenFull::Refuse).unwrap();
    handoff.statsd_packet(b"b:1|c");
    assert!(handoff.flush(WhenFull::Refuse).is_err());
    assert_eq!(handoff.discard(), 1);
    assert_eq!(handoff.pending(), 0);
    assert_eq!(metrics[0].len(), 1);
}

/// Every committed fuzz corpus entry and a stream of pseudo-random bytes go through the
/// hand-off without a panic.
#[test]
fn garbage_never_panics() {
    let mut rig = rig(&["x:y"]);
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut files = 0;
    for target in ["dogstatsd", "ssf", "framing"] {
        for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            rig.handoff.statsd_packet(&bytes);
            let _ = rig.handoff.ssf_packet(&bytes);
            files += 1;
        }
        let _ = rig.samples();
        let _ = rig.span_work();
    }
    assert!(files >= 10, "the committed corpora are there");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..20_000 {
        let len = round % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b"ab:|#@,.01c_seg{}\n"[(state % 18) as usize].max(state as u8 & 0x7f)
            })
            .collect();
        rig.handoff.statsd_packet(&bytes);
        let _ = rig.handoff.ssf_packet(&bytes);
        if round % 500 == 0 {
            let _ = rig.samples();
            let _ = rig.span_work();
        }
    }
}

#[test]
fn spans_derive_indicator_objective_and_red_metrics() {
    let metrics = std::sync::Arc::new(SpanMetrics::new(
        "indicator_span.duration_ns",
        "objective_span.duration_ns",
        2,
    ));
    let mut rig = rig_with(&[], Some(metrics));
    let span = |id: i64, name: &str, indicator: bool, error: bool| SsfSpan {
        trace_id: 9,
        id,
        start_timestamp: 1_000,
        end_timestamp: 3_501_000,
        service: "api".into(),
        name: name.into(),
        indicator,
        error,
        ..Default::default()
    };
    let mut objective = span(1, "checkout", true, false);
    objective.tags.insert("ssf_objective".into(), "pay".into());
    for span in [
        objective,
        span(2, "search", false, true),
        span(3, "third", false, false),
        span(4, "fourth", false, false),
    ] {
        rig.handoff.ssf_packet(&span.encode_to_vec()).unwrap();
    }
    let got = rig.samples();
    let want = vec![
        seen(
            "indicator_span.duration_ns",
            MetricKind::Histogram,
            "error:false,service:api",
            Scope::Default,
            3_500_000.0,
            1.0,
            "",
        ),
        seen(
            "objective_span.duration_ns",
            MetricKind::Histogram,
            "error:false,objective:pay,service:api",
            Scope::Global,
            3_500_000.0,
            1.0,
            "",
        ),
        seen(
            "ssf.span.calls",
            MetricKind::Counter,
            "error:false,name:checkout,service:api",
            Scope::Default,
            1.0,
            1.0,
            "",
        ),
        seen(
            "ssf.span.calls",
            MetricKind::Counter,
            "error:true,name:search,service:api",
            Scope::Default,
            1.0,
            1.0,
            "",
        ),
        seen(
            "ssf.span.calls",
            MetricKind::Counter,
            "error:false,name:ssfd_overflow,service:api",
            Scope::Default,
            1.0,
            1.0,
            "",
        ),
        seen(
            "ssf.span.calls",
            MetricKind::Counter,
            "error:false,name:ssfd_overflow,service:api",
            Scope::Default,
            1.0,
            1.0,
            "",
        ),
        seen(
            "ssf.span.duration_ms",
            MetricKind::Histogram,
            "error:false,name:checkout,service:api",
            Scope::Default,
            3.5,
            1.0,
            "",
        ),
        seen(
            "ssf.span.duration_ms",
            MetricKind::Histogram,
            "error:true,name:search,service:api",
            Scope::Default,
            3.5,
            1.0,
            "",
        ),
        seen(
            "ssf.span.duration_ms",
            MetricKind::Histogram,
            "error:false,name:ssfd_overflow,service:api",
            Scope::Default,
            3.5,
            1.0,
            "",
        ),
        seen(
            "ssf.span.duration_ms",
            MetricKind::Histogram,
            "error:false,name:ssfd_overflow,service:api",
            Scope::Default,
            3.5,
            1.0,
            "",
        ),
    ];
    let mut got_sorted: Vec<String> = got.iter().map(|s| format!("{s:?}")).collect();
    let mut want_sorted: Vec<String> = want.iter().map(|s| format!("{s:?}")).collect();
    got_sorted.sort();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
}

#[test]
fn events_also_go_to_the_sink_queue_at_flush() {
    let queue = std::sync::Arc::new(ssfd_engine::events::EventQueue::new(1));
    let (pipeline, _metrics, _spans) = Pipeline::channels(PipelineConfig::default());
    let config = HandoffConfig {
        metric_max_length: 8192,
        events: Some(queue.clone()),
        ..Default::default()
    };
    let mut handoff = Handoff::new(pipeline, config, Listener::Statsd, Protocol::Udp);
    handoff.statsd_packet(b"_e{1,1}:a|b\n_e{1,1}:c|d\nx:1|c");
    assert!(queue.drain().is_empty(), "nothing before the flush");
    handoff.flush(WhenFull::DropNewest).unwrap();
    let events = queue.drain();
    assert_eq!(
        events.len(),
        1,
        "the queue holds one; the second is dropped and counted"
    );
    assert_eq!(
        (events[0].name.as_str(), events[0].message.as_str()),
        ("a", "b")
    );
}

#[test]
fn the_key_cache_gives_the_samples_built_without_it() {
    // the same series in other tag orders, with magic tags, container ids, every type,
    // and names and tag lists that differ only in where one ends and the next begins
    let packet: &[u8] = b"req:2|c|@0.5|#z:1,a:2,z:1,veneurglobalonly\n\
          req:1|c|#a:2,z:1\n\
          req:1|g|#a:2,z:1\n\
          req:3|c|#a:2,z:1,veneurlocalonly\n\
          temp:21.5|g|c:abc\n\
          temp:22|g|c:abd\n\
          temp:23|g\n\
          lat:1:2|h|#veneurlocalonly\n\
          users:alice|s|#a\n\
          users:bob|s|#a,b\n\
          us:carol|s|#ersa\n\
          _sc|db|2|#db:main|m:down\n";
    let mut plain = rig(&["dc:east"]);
    let mut cached = rig(&["dc:east"]);
    cached.handoff.cache_keys();
    for round in 0..3 {
        plain.handoff.statsd_packet(packet);
        cached.handoff.statsd_packet(packet);
        let want = plain.samples();
        assert_eq!(want.len(), 13);
        assert_eq!(folded(cached.samples()), folded(want), "round {round}");
    }
    // a repeat within one batch: the cache folds a counter's or gauge's repeats into
    // one sample (Σ value / rate; the last write), which the worker then folds as it
    // would have folded every line
    for repeats in [2, 5] {
        for _ in 0..repeats {
            plain.handoff.statsd_packet(packet);
            cached.handoff.statsd_packet(packet);
        }
        let (want, got) = (plain.samples(), cached.samples());
        assert_eq!(want.len(), 13 * repeats);
        assert!(got.len() < want.len(), "repeats were folded: {got:?}");
        assert_eq!(folded(got), folded(want), "{repeats} repeats");
    }
}

#[test]
fn a_gauge_s_last_write_stays_last_with_the_key_cache() {
    // one series written plainly, as a multi-value line, and with its tags in another
    // order (so from another cache slot), between counters of the same tags
    let packet: &[u8] = b"g:5|g|#a,b\nc:1|c|#a,b\ng:1:2|g|#a,b\ng:7|g|#a,b\n\
          g:3|g|#b,a\nc:1|c|#a,b\ng:9|g|#a,b\ng:9.5|g|#a,b\ng:4|g|#b,a\n";
    let mut plain = rig(&[]);
    let mut cached = rig(&[]);
    cached.handoff.cache_keys();
    for round in 0..3 {
        // twice per batch, so the second pass hits a warm cache and open memos
        for _ in 0..2 {
            plain.handoff.statsd_packet(packet);
            cached.handoff.statsd_packet(packet);
        }
        let last_gauge = |samples: Vec<Seen>| {
            samples
                .iter()
                .filter(|s| s.kind == MetricKind::Gauge)
                .map(|s| s.value)
                .next_back()
        };
        let (want, got) = (plain.samples_in_order(), cached.samples_in_order());
        assert_eq!(last_gauge(want), Some(4.0));
        assert_eq!(last_gauge(got), Some(4.0), "round {round}");
    }
}

/// Samples as a worker folds them: per series (name, tags, type and scope), a
/// counter's Σ value / rate, a gauge's and a status's last value, and every histogram
/// sample and set member.
fn folded(samples: Vec<Seen>) -> Vec<((String, String, String), Vec<String>)> {
    let mut series: std::collections::BTreeMap<_, Vec<String>> = Default::default();
    for s in samples {
        let values = series
            .entry((s.name, s.tags, format!("{:?} {:?}", s.kind, s.scope)))
            .or_default();
        match s.kind {
            MetricKind::Counter => {
                let before: f64 = values.first().map_or(0.0, |v| v.parse().unwrap());
                *values = vec![(before + s.value / f64::from(s.rate)).to_string()];
            }
            MetricKind::Gauge | MetricKind::Status => {
                *values = vec![format!("{} {}", s.value, s.extra)];
            }
            _ => {
                values.push(format!("{} {} {}", s.value, s.rate, s.extra));
                values.sort();
            }
        }
    }
    series.into_iter().collect()
}
