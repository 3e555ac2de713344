//! Log records that are not inside a span (SPEC 5): DogStatsD events, service checks
//! with a message, and SSF log samples sent alone.

/// SPEC 5 severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    Unknown,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
            Severity::Unknown => "unknown",
        }
    }

    /// From its label; anything else is `Unknown`.
    pub fn from_label(label: &str) -> Severity {
        match label {
            "trace" => Severity::Trace,
            "debug" => Severity::Debug,
            "info" => Severity::Info,
            "warn" => Severity::Warn,
            "error" => Severity::Error,
            "fatal" => Severity::Fatal,
            _ => Severity::Unknown,
        }
    }

    /// From an SSF or service-check status: OK, WARNING, CRITICAL, UNKNOWN.
    pub fn from_status(status: i32) -> Severity {
        match status {
            0 => Severity::Info,
            1 => Severity::Warn,
            2 => Severity::Error,
            _ => Severity::Unknown,
        }
    }

    /// From a DogStatsD event alert type.
    pub fn from_alert_type(alert: Option<&[u8]>) -> Severity {
        match alert {
            Some(b"error") => Severity::Error,
            Some(b"warning") => Severity::Warn,
            _ => Severity::Info,
        }
    }
}

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogKind {
    Event,
    ServiceCheck,
    Log,
}

/// One log record, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub kind: LogKind,
    pub timestamp_ns: i64,
    pub service: String,
    /// The whole 128-bit trace id (SPEC 5).
    pub trace_id: Option<ssfd_wire::ids::TraceId>,
    pub span_id: Option<i64>,
    pub name: String,
    pub message: String,
    pub severity: Severity,
    /// Sorted `key:value` or bare tags.
    pub tags: Vec<String>,
}

impl LogRecord {
    /// True for an SSF log sample (SPEC 5): COUNTER, value 0, a message.
    pub fn is_log_sample(sample: &ssfd_wire::ssf_view::SampleView<'_>) -> bool {
        matches!(
            ssfd_wire::normalize::classify_sample_fields(
                sample.metric,
                sample.name,
                sample.value,
                sample.message,
                sample.sample_rate,
            ),
            Ok(ssfd_wire::normalize::SampleClass::Log)
        )
    }

    /// An SSF log sample as a record; inside a span it carries the span's trace id,
    /// span id and service (SPEC 5), and a sample without a timestamp takes the span's
    /// start (alone: the receipt time).
    pub fn from_sample(
        sample: &ssfd_wire::ssf_view::SampleView<'_>,
        span: Option<&ssfd_wire::ssf_view::SpanView<'_>>,
    ) -> LogRecord {
        let mut pairs = Vec::new();
        ssfd_wire::ssf_view::dedup_tags(sample.raw_tags(), &mut pairs);
        let mut tags: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.to_string()
                } else {
                    format!("{k}:{v}")
                }
            })
            .collect();
        tags.sort();
        let tag_service = pairs
            .iter()
            .find(|(k, _)| *k == "service")
            .map(|(_, v)| v.to_string());
        let service = match span {
            Some(span) if !span.service.is_empty() => span.service.to_string(),
            _ => tag_service.unwrap_or_default(),
        };
        let timestamp_ns = match (sample.timestamp, span) {
            (0, Some(span)) => span.start_timestamp,
            (0, None) => now_ns(),
            (timestamp, _) => timestamp,
        };
        LogRecord {
            kind: LogKind::Log,
            timestamp_ns,
            service,
            trace_id: span.map(|s| s.full_trace_id()),
            span_id: span.map(|s| s.id),
            name: sample.name.to_string(),
            message: sample.message.to_string(),
            severity: Severity::from_status(sample.status),
            tags,
        }
    }
}

impl LogRecord {
    /// As `ssfd.v1.LogRecord`, for a proxy's `GetTrace`.
    pub fn to_wire(&self) -> ssfd_wire::ssfd::v1::LogRecord {
        let trace = self.trace_id.unwrap_or_default();
        ssfd_wire::ssfd::v1::LogRecord {
            timestamp_ns: self.timestamp_ns,
            service: self.service.clone(),
            trace_id_high: trace.high(),
            trace_id: trace.low(),
            span_id: self.span_id.unwrap_or(0),
            name: self.name.clone(),
            message: self.message.clone(),
            severity: self.severity.label().to_string(),
            tags: self.tags.clone(),
        }
    }

    /// From `ssfd.v1.LogRecord`.
    pub fn from_wire(wire: ssfd_wire::ssfd::v1::LogRecord) -> LogRecord {
        let trace = ssfd_wire::ids::TraceId::from_parts(wire.trace_id_high, wire.trace_id);
        LogRecord {
            kind: LogKind::Log,
            timestamp_ns: wire.timestamp_ns,
            service: wire.service,
            trace_id: (!trace.is_zero()).then_some(trace),
            span_id: (wire.span_id != 0).then_some(wire.span_id),
            name: wire.name,
            message: wire.message,
            severity: Severity::from_label(&wire.severity),
            tags: wire.tags,
        }
    }
}

/// Unix nanoseconds now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
