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
    pub trace_id: Option<i64>,
    pub span_id: Option<i64>,
    pub name: String,
    pub message: String,
    pub severity: Severity,
    /// Sorted `key:value` or bare tags.
    pub tags: Vec<String>,
}
