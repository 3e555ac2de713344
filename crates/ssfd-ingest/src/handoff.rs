//! Turns decoded statsd lines and SSF spans into pipeline work: series keys are built
//! and hashed once here, samples are sharded, and every rejection is counted by reason.
//! One `Handoff` belongs to one reader thread or connection; it has no socket.

use prost::Message;
use ssfd_engine::{
    KeyCache, KeyScratch, LogKind, LogRecord, MetricKind, Pipeline, Scope, Severity,
    ShardedSamples, SpanBatch, SpanWork, WhenFull,
};
use ssfd_telemetry::{self as telemetry, Listener, Protocol, Reason};
use ssfd_wire::dogstatsd_text::{self as text, Line, MagicScope, MetricType, ParseError, Value};
use ssfd_wire::normalize::{self, SampleClass, SsfError, classify_sample_fields};
use ssfd_wire::ssf::{SsfSpan, ssf_sample};
use ssfd_wire::ssf_view::{SampleView, SpanView, dedup_tags};
use std::sync::Arc;

/// Why a forwarded metric was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("unknown metric type {0}")]
    Type(i32),
    #[error("unknown scope {0}")]
    Scope(i32),
    #[error("the value does not match the metric type")]
    Value,
    #[error("the set is not a HyperLogLog in Veneur's format")]
    Set,
}

/// Settings shared by every hand-off.
#[derive(Clone, Debug, Default)]
pub struct HandoffConfig {
    /// `extend_tags`, added to every metric; each replaces a tag of the same key.
    pub extend_tags: Arc<[String]>,
    /// `metric_max_length`: longest statsd line or datagram.
    pub metric_max_length: usize,
    /// Metrics derived from spans (SPEC 4.4); `None` derives none.
    pub span_metrics: Option<Arc<SpanMetrics>>,
    /// Where DogStatsD events go for the sinks; `None` keeps them as log records only.
    pub events: Option<Arc<ssfd_engine::events::EventQueue>>,
    /// Spans forwarded by a local (SPEC 1): their metrics were extracted there, so
    /// here they are only stored and indexed.
    pub forwarded: bool,
}

/// What ingest derives from every valid trace span (SPEC 4.4).
#[derive(Debug, Default)]
pub struct SpanMetrics {
    /// `indicator_span_timer_name` (empty: off).
    pub indicator_timer: String,
    /// `objective_span_timer_name` (empty: off).
    pub objective_timer: String,
    /// Distinct span names per service before RED metrics use `name:ssfd_overflow`
    /// (shared with the OTel span metrics when `serve` wires them together).
    names: Arc<ssfd_engine::span_metrics::SpanNameCap>,
}

impl SpanMetrics {
    /// With its own cap of `names_per_service` names per service (idle names leave
    /// after 5 minutes).
    pub fn new(indicator_timer: &str, objective_timer: &str, names_per_service: usize) -> Self {
        SpanMetrics {
            indicator_timer: indicator_timer.to_string(),
            objective_timer: objective_timer.to_string(),
            names: Arc::new(ssfd_engine::span_metrics::SpanNameCap::new(
                names_per_service,
                std::time::Duration::from_secs(300),
            )),
        }
    }

    /// The same timers, counting span names under `cap`.
    pub fn with_name_cap(&self, cap: Arc<ssfd_engine::span_metrics::SpanNameCap>) -> Self {
        SpanMetrics {
            indicator_timer: self.indicator_timer.clone(),
            objective_timer: self.objective_timer.clone(),
            names: cap,
        }
    }
}

/// Per-thread hand-off from a listener into the pipeline.
pub struct Handoff {
    pipeline: Pipeline,
    config: HandoffConfig,
    listener: Listener,
    protocol: Protocol,
    samples: ShardedSamples,
    scratch: KeyScratch,
    /// Keys of statsd lines seen lately (long-lived readers only: `cache_keys`).
    key_cache: Option<KeyCache>,
    spans: Vec<SpanBatch>,
    records: Vec<LogRecord>,
    received: u64,
    rejected: [u64; Reason::COUNT],
    /// Span names this thread knows are under the cap (confirmed within the last
    /// second), so the cap's mutex is taken once a second per name.
    admitted: ssfd_engine::span_metrics::AdmittedNames,
    /// Events for the sinks, handed over at the next flush.
    events: Vec<LogRecord>,
}

/// What one SSF packet contributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanOutcome {
    /// A valid trace span went to the span workers (its samples too, to the metric workers).
    TraceSpan,
    /// Not a trace span; its samples were processed.
    SamplesOnly,
}

impl Handoff {
    pub fn new(
        pipeline: Pipeline,
        config: HandoffConfig,
        listener: Listener,
        protocol: Protocol,
    ) -> Self {
        let shards = pipeline.metric_shards();
        let span_shards = pipeline.span_shards();
        Handoff {
            pipeline,
            config,
            listener,
            protocol,
            samples: ShardedSamples::new(shards),
            scratch: KeyScratch::default(),
            key_cache: None,
            spans: (0..span_shards).map(|_| SpanBatch::default()).collect(),
            records: Vec::new(),
            received: 0,
            rejected: [0; Reason::COUNT],
            admitted: Default::default(),
            events: Vec::new(),
        }
    }

    /// Keeps the canonical keys of the statsd series this hand-off has seen lately, so
    /// a line of a known series skips building its key. For readers that live long and
    /// see many lines (the datagram readers): the cache holds at most 4,096 keys, in
    /// 256-byte slots (1 MiB), with up to 512 more bytes each on the heap for the rare
    /// key that does not fit its slot (about 3 MiB at most).
    pub fn cache_keys(&mut self) {
        self.key_cache = Some(KeyCache::new(KEY_CACHE_SLOTS));
    }

    /// Hands off one metric forwarded by a local in Veneur's format (a global's
    /// import, SPEC 3.3 and 4.2); errors name what is wrong.
    pub fn forwarded_metric(
        &mut self,
        metric: &ssfd_wire::metricpb::Metric,
    ) -> Result<(), ForwardError> {
        use ssfd_engine::Imported;
        use ssfd_wire::metricpb::{self, metric::Value};
        self.received += 1;
        let kind = match metricpb::Type::try_from(metric.r#type) {
            Ok(metricpb::Type::Counter) => MetricKind::Counter,
            Ok(metricpb::Type::Gauge) => MetricKind::Gauge,
            Ok(metricpb::Type::Histogram) => MetricKind::Histogram,
            Ok(metricpb::Type::Timer) => MetricKind::Timer,
            Ok(metricpb::Type::Set) => MetricKind::Set,
            Err(_) => return self.forward_error(ForwardError::Type(metric.r#type)),
        };
        let scope = match metricpb::Scope::try_from(metric.scope) {
            Ok(metricpb::Scope::Mixed) => Scope::Default,
            Ok(metricpb::Scope::Local) => Scope::Local,
            Ok(metricpb::Scope::Global) => Scope::Global,
            Err(_) => return self.forward_error(ForwardError::Scope(metric.scope)),
        };
        let imported = match (&metric.value, kind) {
            (Some(Value::Counter(counter)), MetricKind::Counter) => {
                Imported::Counter(counter.value as f64)
            }
            (Some(Value::Gauge(gauge)), MetricKind::Gauge) if gauge.value.is_finite() => {
                Imported::Gauge(gauge.value)
            }
            (Some(Value::Set(set)), MetricKind::Set) => {
                match ssfd_engine::sketch::hll::HyperLogLog::from_bytes(&set.hyper_log_log) {
                    Ok(hll) => Imported::Set(Box::new(hll)),
                    Err(_) => return self.forward_error(ForwardError::Set),
                }
            }
            (Some(Value::Histogram(histogram)), MetricKind::Histogram | MetricKind::Timer) => {
                let Some(data) = &histogram.t_digest else {
                    return self.forward_error(ForwardError::Value);
                };
                let digest = ssfd_engine::sketch::tdigest::TDigest::from_wire(data);
                let mut imported = ssfd_engine::aggregate::Histogram::new();
                imported.weight = digest.count();
                if !digest.is_empty() {
                    imported.min = data.min;
                    imported.max = data.max;
                }
                imported.sum = digest.sum();
                imported.reciprocal_sum = data.reciprocal_sum;
                imported.digest = digest;
                Imported::Histogram(Box::new(imported))
            }
            _ => return self.forward_error(ForwardError::Value),
        };
        self.scratch.begin(metric.name.as_bytes(), kind);
        for tag in &metric.tags {
            self.scratch.tag(&[tag.as_bytes()]);
        }
        self.scratch.finish();
        self.samples.push_import(&self.scratch, scope, imported);
        Ok(())
    }

    fn forward_error(&mut self, error: ForwardError) -> Result<(), ForwardError> {
        self.reject_reason(Reason::Decode);
        Err(error)
    }

    /// Hands off one log record that is not inside a span (OTLP logs).
    pub fn log_record(&mut self, record: LogRecord) {
        self.received += 1;
        self.records.push(record);
    }

    /// The pending log records as span-worker work: forwarded ones as such.
    fn records_work(&mut self) -> SpanWork {
        let records = std::mem::take(&mut self.records);
        if self.config.forwarded {
            SpanWork::ForwardedRecords(records)
        } else {
            SpanWork::Records(records)
        }
    }

    /// Items waiting to be sent.
    pub fn pending(&self) -> usize {
        self.samples.pending()
            + self.spans.iter().map(SpanBatch::len).sum::<usize>()
            + self.records.len()
    }

    fn reject(&mut self, reason: &'static str) {
        let reason = Reason::from_label(reason).unwrap_or(Reason::Parse);
        self.rejected[reason as usize] += 1;
    }

    /// Counts a rejection the listener found itself (framing, truncation).
    pub fn reject_reason(&mut self, reason: Reason) {
        self.rejected[reason as usize] += 1;
    }

    /// Counts one received item that never reached a parser (a truncated datagram).
    pub fn count_received(&mut self, count: u64) {
        self.received += count;
    }

    /// Handles every line of a statsd packet; bad lines are counted and skipped.
    pub fn statsd_packet(&mut self, packet: &[u8]) {
        for line in text::lines(packet) {
            let _ = self.statsd_line(line);
        }
    }

    /// Handles one statsd line.
    pub fn statsd_line(&mut self, line: &[u8]) -> Result<(), ParseError> {
        self.received += 1;
        if line.len() > self.config.metric_max_length {
            self.reject(ParseError::TooLong.reason());
            return Err(ParseError::TooLong);
        }
        let parsed = match text::parse_line(line) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.reject(error.reason());
                return Err(error);
            }
        };
        match parsed {
            Line::Metric(metric) => {
                let unknown = metric.unknown_sections as u64;
                self.rejected[Reason::UnknownSection as usize] += unknown;
                self.metric_line(&metric);
            }
            Line::Event(event) => {
                self.rejected[Reason::UnknownSection as usize] += event.unknown_sections as u64;
                let mut tags: Vec<String> = event.tags.iter().map(lossy).collect();
                for (key, value) in [
                    ("hostname", event.hostname),
                    ("aggregation_key", event.aggregation_key),
                    ("priority", event.priority),
                    ("source_type_name", event.source_type),
                    ("alert_type", event.alert_type),
                ] {
                    if let Some(value) = value {
                        tags.push(format!("{key}:{}", lossy(value)));
                    }
                }
                tags.sort();
                tags.dedup();
                let service = service_of_tags(&tags);
                let record = LogRecord {
                    kind: LogKind::Event,
                    timestamp_ns: event
                        .timestamp
                        .map_or_else(now_ns, |s| s.saturating_mul(1_000_000_000)),
                    service,
                    trace_id: None,
                    span_id: None,
                    name: lossy(event.title),
                    message: lossy(&text::unescape_event_text(event.text)),
                    severity: Severity::from_alert_type(event.alert_type),
                    tags,
                };
                if self.config.events.is_some() {
                    self.events.push(record.clone());
                }
                self.records.push(record);
            }
            Line::ServiceCheck(check) => {
                self.rejected[Reason::UnknownSection as usize] += check.unknown_sections as u64;
                self.scratch.begin(check.name, MetricKind::Status);
                let mut tags: Vec<String> = Vec::new();
                for tag in check.tags.without_magic() {
                    self.scratch.tag(&[tag]);
                    tags.push(lossy(tag));
                }
                if let Some(host) = check.hostname {
                    self.scratch.tag(&[b"hostname:", host]);
                    tags.push(format!("hostname:{}", lossy(host)));
                }
                self.extend_tags();
                self.scratch.finish();
                let message = check.message.unwrap_or_default();
                self.samples.push(
                    &self.scratch,
                    scope(magic_of(check.tags)),
                    check.status as f64,
                    1.0,
                    message,
                );
                if !message.is_empty() {
                    tags.sort();
                    tags.dedup();
                    let service = service_of_tags(&tags);
                    self.records.push(LogRecord {
                        kind: LogKind::ServiceCheck,
                        timestamp_ns: check
                            .timestamp
                            .map_or_else(now_ns, |s| s.saturating_mul(1_000_000_000)),
                        service,
                        trace_id: None,
                        span_id: None,
                        name: lossy(check.name),
                        message: lossy(message),
                        severity: Severity::from_status(check.status as i32),
                        tags,
                    });
                }
            }
        }
        Ok(())
    }

    /// Adds `extend_tags`, replacing a tag of the same key (as Veneur).
    fn extend_tags(&mut self) {
        self.scratch.extend(&self.config.extend_tags);
    }

    fn metric_line(&mut self, metric: &text::MetricLine<'_>) {
        let kind = match metric.kind {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram | MetricType::Distribution => MetricKind::Histogram,
            MetricType::Timer => MetricKind::Timer,
            MetricType::Set => MetricKind::Set,
        };
        let raw = ssfd_engine::RawKey {
            parts: [
                metric.name,
                metric.tags.0,
                metric.container_id.unwrap_or_default(),
            ],
            kind,
        };
        // a counter's increment is divided by its rate here, in f64 from the rate as
        // written: with the f32 rate a sample carries, `1|c|@0.3` would count 3.3333332
        let (rate, divisor) = match kind {
            MetricKind::Counter => (1.0, metric.sample_rate),
            _ => (metric.sample_rate as f32, 1.0),
        };
        // a series this reader saw lately takes its key from the cache, and a repeat of
        // a counter or gauge folds into the sample its open batch already holds
        let raw_hash = self.key_cache.as_ref().map(|_| raw.hash());
        if let (Some(cache), Some(raw_hash)) = (&mut self.key_cache, raw_hash)
            && let Some(hit) = cache.get(&raw, raw_hash)
        {
            match metric.single_number() {
                Some(number) => self.samples.push_combining(
                    hit.key,
                    hit.scope,
                    number / divisor,
                    rate,
                    hit.combine,
                ),
                None => push_values(&mut self.samples, hit.key, hit.scope, metric, rate, divisor),
            }
            return;
        }
        let scope = self.build_key(metric, kind);
        if let (Some(cache), Some(raw_hash)) = (&mut self.key_cache, raw_hash) {
            cache.insert(&raw, raw_hash, self.scratch.as_key(), scope);
        }
        push_values(
            &mut self.samples,
            self.scratch.as_key(),
            scope,
            metric,
            rate,
            divisor,
        );
    }

    /// Builds a statsd line's canonical key in `scratch`, returning the scope its magic
    /// tags set (found on the same walk over the tags).
    fn build_key(&mut self, metric: &text::MetricLine<'_>, kind: MetricKind) -> Scope {
        self.scratch.begin(metric.name, kind);
        let mut magic = MagicScope::Default;
        for tag in metric.tags.iter() {
            match text::magic_scope(tag) {
                Some(found) => magic = found,
                None => self.scratch.tag(&[tag]),
            }
        }
        if let Some(container) = metric.container_id {
            self.scratch.tag(&[b"container_id:", container]);
        }
        self.extend_tags();
        self.scratch.finish();
        scope(magic)
    }

    /// Reads, normalises and hands off one SSF packet (SPEC 3.1). The packet is read
    /// in place; a valid trace span travels on as its own bytes (re-encoded only when
    /// normalisation changed it).
    pub fn ssf_packet(&mut self, bytes: &[u8]) -> Result<SpanOutcome, SsfError> {
        self.received += 1;
        let view = match SpanView::parse(bytes) {
            Ok(view) => view,
            Err(error) => {
                self.reject(error.reason());
                return Err(error);
            }
        };
        let trace_span = view.is_trace_span();
        if !trace_span && view.sample_count() == 0 {
            let error = if view.looks_like_span() {
                SsfError::InvalidSpan
            } else {
                SsfError::Empty
            };
            self.reject(error.reason());
            return Err(error);
        }
        let forwarded = self.config.forwarded;
        for sample in view.samples().filter(|_| !forwarded) {
            match classify_sample_fields(
                sample.metric,
                sample.name,
                sample.value,
                sample.message,
                sample.sample_rate,
            ) {
                Ok(SampleClass::Metric) => self.ssf_sample(&sample),
                Ok(SampleClass::Log) if !trace_span => {
                    self.records.push(LogRecord::from_sample(&sample, None))
                }
                Ok(SampleClass::Log) => {}
                Err(error) => self.reject(error.reason()),
            }
        }
        if !trace_span {
            return Ok(SpanOutcome::SamplesOnly);
        }
        if let Some(span_metrics) = self.config.span_metrics.clone()
            && !self.config.forwarded
        {
            self.span_metrics(&view, &span_metrics);
        }
        let shard = self.pipeline.span_shard(view.full_trace_id());
        // described for a store only when one will index it
        let index = self.pipeline.indexes_spans();
        if view.needs_normalization() {
            // the reader accepts exactly what prost accepts, so this decode succeeds
            let mut span = SsfSpan::decode(bytes).map_err(|_| SsfError::Decode)?;
            normalize::normalize(&mut span);
            normalize::stamp_log_samples(&mut span, now_ns());
            self.spans[shard].push_with(&view, &span.encode_to_vec(), index);
        } else {
            self.spans[shard].push_with(&view, bytes, index);
        }
        Ok(SpanOutcome::TraceSpan)
    }

    /// Hands off one SSF span decoded elsewhere (tonic's `SendSpan`).
    pub fn ssf_span(&mut self, span: &SsfSpan) -> Result<SpanOutcome, SsfError> {
        self.ssf_packet(&span.encode_to_vec())
    }

    /// SPEC 4.4: the indicator and objective timers and the RED metrics of a span.
    fn span_metrics(&mut self, view: &SpanView<'_>, config: &SpanMetrics) {
        let duration_ns = view
            .end_timestamp
            .saturating_sub(view.start_timestamp)
            .max(0) as f64;
        let error: &[u8] = if view.error { b"true" } else { b"false" };
        let service = view.service.as_bytes();
        let name = view.normalized_name();
        if view.indicator && !config.indicator_timer.is_empty() {
            self.scratch
                .begin(config.indicator_timer.as_bytes(), MetricKind::Histogram);
            self.scratch.tag(&[b"service:", service]);
            self.scratch.tag(&[b"error:", error]);
            self.extend_tags();
            self.scratch.finish();
            self.samples
                .push(&self.scratch, Scope::Default, duration_ns, 1.0, b"");
        }
        if view.indicator && !config.objective_timer.is_empty() {
            let objective = view.tag("ssf_objective").unwrap_or(name);
            self.scratch
                .begin(config.objective_timer.as_bytes(), MetricKind::Histogram);
            self.scratch.tag(&[b"service:", service]);
            self.scratch.tag(&[b"objective:", objective.as_bytes()]);
            self.scratch.tag(&[b"error:", error]);
            self.extend_tags();
            self.scratch.finish();
            self.samples
                .push(&self.scratch, Scope::Global, duration_ns, 1.0, b"");
        }
        let now = ssfd_engine::record::now_ns() as f64 / 1e9;
        let counted_name = if self
            .admitted
            .admit_at(&config.names, view.service, name, now)
        {
            name
        } else {
            "ssfd_overflow"
        };
        for (metric, kind, value) in [
            (&b"ssf.span.calls"[..], MetricKind::Counter, 1.0),
            (
                &b"ssf.span.duration_ms"[..],
                MetricKind::Histogram,
                duration_ns / 1e6,
            ),
        ] {
            self.scratch.begin(metric, kind);
            self.scratch.tag(&[b"service:", service]);
            self.scratch.tag(&[b"name:", counted_name.as_bytes()]);
            self.scratch.tag(&[b"error:", error]);
            self.extend_tags();
            self.scratch.finish();
            self.samples
                .push(&self.scratch, Scope::Default, value, 1.0, b"");
        }
    }

    fn ssf_sample(&mut self, sample: &SampleView<'_>) {
        use ssf_sample::Metric;
        let kind = match Metric::try_from(sample.metric) {
            Ok(Metric::Counter) => MetricKind::Counter,
            Ok(Metric::Gauge) => MetricKind::Gauge,
            Ok(Metric::Histogram) => MetricKind::Histogram,
            Ok(Metric::Set) => MetricKind::Set,
            Ok(Metric::Status) => MetricKind::Status,
            Err(_) => {
                self.reject("parse");
                return;
            }
        };
        self.scratch.begin(sample.name.as_bytes(), kind);
        let mut scope = match ssf_sample::Scope::try_from(sample.scope) {
            Ok(ssf_sample::Scope::Local) => Scope::Local,
            Ok(ssf_sample::Scope::Global) => Scope::Global,
            _ => Scope::Default,
        };
        let mut add = |scratch: &mut KeyScratch, key: &str, value: &str| {
            if let Some(magic) = text::magic_scope(key.as_bytes()) {
                scope = self::scope(magic);
            } else if value.is_empty() {
                scratch.tag(&[key.as_bytes()]);
            } else {
                scratch.tag(&[key.as_bytes(), b":", value.as_bytes()]);
            }
        };
        // one pass over the tags; prost's map rule (one entry per key, the last value
        // sent) needs a de-duplication only when a key repeats
        let mut inline = [("", ""); INLINE_TAGS];
        let mut count = 0;
        let mut overflow = false;
        for pair in sample.raw_tags() {
            if count == INLINE_TAGS {
                overflow = true;
                break;
            }
            inline[count] = pair;
            count += 1;
        }
        let inline = &inline[..count];
        let repeated =
            (1..inline.len()).any(|i| inline[..i].iter().any(|(k, _)| *k == inline[i].0));
        if overflow || repeated {
            let mut tags = Vec::new();
            dedup_tags(sample.raw_tags(), &mut tags);
            for (key, value) in tags {
                add(&mut self.scratch, key, value);
            }
        } else {
            for &(key, value) in inline {
                add(&mut self.scratch, key, value);
            }
        }
        self.extend_tags();
        self.scratch.finish();
        let rate = if sample.sample_rate == 0.0 {
            1.0
        } else {
            sample.sample_rate
        };
        let (value, extra) = match kind {
            MetricKind::Set => (0.0, sample.message.as_bytes()),
            MetricKind::Status => (sample.status as f64, sample.message.as_bytes()),
            _ => (sample.value as f64, &b""[..]),
        };
        self.samples.push(&self.scratch, scope, value, rate, extra);
    }

    /// Sends everything pending under `policy` and publishes the counters. With
    /// [`WhenFull::Refuse`] nothing is sent when any queue is full, and the work stays
    /// pending for [`Handoff::discard`] or a retry.
    pub fn flush(&mut self, policy: WhenFull) -> Result<(), ssfd_engine::Full> {
        self.publish_counters();
        if policy == WhenFull::Refuse {
            // memory_limit (SPEC 7): near it, nothing new may wait in memory
            if ssfd_engine::memory::under_pressure() {
                return Err(ssfd_engine::Full);
            }
            let spans_full =
                self.spans.iter().enumerate().any(|(shard, spans)| {
                    !spans.is_empty() && self.pipeline.span_queue_full(shard)
                }) || (!self.records.is_empty() && self.pipeline.span_queue_full(0));
            if spans_full || (self.samples.pending() > 0 && self.pipeline.any_metric_queue_full()) {
                return Err(ssfd_engine::Full);
            }
        }
        // after the refusal checks: a refused call's events stay with it (its retry
        // must not deliver them twice)
        if !self.events.is_empty()
            && let Some(queue) = &self.config.events
        {
            queue.push_all(self.events.drain(..));
        }
        // memory_limit (SPEC 7): near it, nothing new may wait in memory
        if ssfd_engine::memory::under_pressure() {
            match policy {
                WhenFull::Refuse => return Err(ssfd_engine::Full),
                WhenFull::DropNewest => {
                    let dropped = self.discard() as u64;
                    telemetry::dropped(
                        telemetry::Stage::Ingest,
                        telemetry::DropReason::MemoryLimit,
                        dropped,
                    );
                    return Ok(());
                }
                WhenFull::Block => {
                    // bounded: a durable stream holds the pipeline's gate here, and the
                    // flush that frees memory needs it (streams wait unbounded before
                    // taking the gate, in `grpc.rs`)
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                    while ssfd_engine::memory::under_pressure()
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            }
        }
        // after a passed check, a queue another sender filled meanwhile is waited for:
        // an accepted call must not lose what it accepted
        let send_policy = if policy == WhenFull::Refuse {
            WhenFull::Block
        } else {
            policy
        };
        let _ = self.pipeline.send_samples(&mut self.samples, send_policy);
        for shard in 0..self.spans.len() {
            if !self.spans[shard].is_empty() {
                let mut spans = std::mem::take(&mut self.spans[shard]);
                spans.forwarded = self.config.forwarded;
                let _ = self
                    .pipeline
                    .send_spans(shard, SpanWork::Spans(spans), send_policy);
            }
        }
        if !self.records.is_empty() {
            let records = self.records_work();
            let _ = self.pipeline.send_spans(0, records, send_policy);
        }
        Ok(())
    }

    /// Sends what fits without waiting and keeps the rest pending; `Err(Full)` when
    /// something is left (a stream then waits with [`WhenFull::Block`]).
    pub fn try_flush(&mut self) -> Result<(), ssfd_engine::Full> {
        self.publish_counters();
        if !self.events.is_empty()
            && let Some(queue) = &self.config.events
        {
            queue.push_all(self.events.drain(..));
        }
        if ssfd_engine::memory::under_pressure() {
            // a stream then waits in `flush(Block)` until memory is back
            return Err(ssfd_engine::Full);
        }
        let mut complete = self.pipeline.try_send_samples(&mut self.samples);
        for shard in 0..self.spans.len() {
            if !self.spans[shard].is_empty() {
                let mut spans = std::mem::take(&mut self.spans[shard]);
                spans.forwarded = self.config.forwarded;
                if let Err(SpanWork::Spans(back)) =
                    self.pipeline.try_send_spans(shard, SpanWork::Spans(spans))
                {
                    self.spans[shard] = back;
                    complete = false;
                }
            }
        }
        if !self.records.is_empty() {
            let records = self.records_work();
            if let Err(SpanWork::Records(back) | SpanWork::ForwardedRecords(back)) =
                self.pipeline.try_send_spans(0, records)
            {
                self.records = back;
                complete = false;
            }
        }
        if complete {
            Ok(())
        } else {
            Err(ssfd_engine::Full)
        }
    }

    /// Drops everything pending (after a refused flush), returning how many items.
    pub fn discard(&mut self) -> usize {
        let spans: usize = self.spans.iter_mut().map(|s| std::mem::take(s).len()).sum();
        let records = std::mem::take(&mut self.records).len();
        self.events.clear();
        self.samples.discard() + spans + records
    }

    fn publish_counters(&mut self) {
        telemetry::received(
            self.listener,
            self.protocol,
            std::mem::take(&mut self.received),
        );
        for (index, count) in self.rejected.iter_mut().enumerate() {
            telemetry::rejected(
                self.listener,
                self.protocol,
                Reason::ALL[index],
                std::mem::take(count),
            );
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.publish_counters();
    }
}

/// Slots of a reader's key cache: the series a reader sees again within a few
/// thousand distinct others hit.
const KEY_CACHE_SLOTS: usize = 4096;

/// Appends one sample per value of a statsd line (numbers divided by `divisor`).
fn push_values(
    samples: &mut ShardedSamples,
    key: ssfd_engine::KeyRef<'_>,
    scope: Scope,
    metric: &text::MetricLine<'_>,
    rate: f32,
    divisor: f64,
) {
    for value in metric.values() {
        match value {
            Value::Number(number) => samples.push_key(key, scope, number / divisor, rate, b""),
            Value::Member(member) => samples.push_key(key, scope, 0.0, rate, member),
        }
    }
}

fn scope(magic: MagicScope) -> Scope {
    match magic {
        MagicScope::Default => Scope::Default,
        MagicScope::Local => Scope::Local,
        MagicScope::Global => Scope::Global,
    }
}

fn magic_of(tags: text::Tags<'_>) -> MagicScope {
    tags.iter()
        .filter_map(text::magic_scope)
        .last()
        .unwrap_or_default()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn service_of_tags(tags: &[String]) -> String {
    tags.iter()
        .find_map(|t| t.strip_prefix("service:"))
        .unwrap_or_default()
        .to_string()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Sample tags handled without allocating.
const INLINE_TAGS: usize = 16;
