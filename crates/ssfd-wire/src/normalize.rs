//! SSF decoding, normalisation and validity (SPEC 3.1), the same on every ingest path.

use crate::ssf::{SsfSample, SsfSpan, ssf_sample};
use prost::Message;

/// Why an SSF packet or sample was refused; [`SsfError::reason`] is its counter label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SsfError {
    #[error("bytes do not decode as an SSF span")]
    Decode,
    #[error("packet has neither a valid trace span nor samples")]
    Empty,
    #[error("span fields are set but the span is not a valid trace span, and it has no samples")]
    InvalidSpan,
    #[error("sample has no name")]
    NoName,
    #[error("sample value is not finite")]
    BadValue,
    #[error("sample rate is not in (0, 1]")]
    BadRate,
    #[error("packet is larger than trace_max_length_bytes")]
    TooLong,
}

impl SsfError {
    /// The `reason` label of `ssfd_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            SsfError::Decode => "decode",
            SsfError::Empty => "empty",
            SsfError::InvalidSpan => "invalid_span",
            SsfError::NoName => "parse",
            SsfError::BadValue => "bad_value",
            SsfError::BadRate => "bad_rate",
            SsfError::TooLong => "too_long",
        }
    }
}

/// Decodes one `SSFSpan`, reusing `span`'s allocations where prost can.
pub fn decode_span_into(bytes: &[u8], span: &mut SsfSpan) -> Result<(), SsfError> {
    span.clear();
    span.merge(bytes).map_err(|_| SsfError::Decode)
}

/// Decodes one `SSFSpan`.
pub fn decode_span(bytes: &[u8]) -> Result<SsfSpan, SsfError> {
    SsfSpan::decode(bytes).map_err(|_| SsfError::Decode)
}

/// SPEC 3.1 normalisation: an unnamed span takes its `name` tag as name (and loses the
/// tag); a sample rate of 0 becomes 1.
pub fn normalize(span: &mut SsfSpan) {
    if span.name.is_empty()
        && let Some(name) = span.tags.remove("name")
    {
        span.name = name;
    }
    for sample in &mut span.metrics {
        if sample.sample_rate == 0.0 {
            sample.sample_rate = 1.0;
        }
    }
}

/// A trace span has ids (a trace id of 128 bits: either half may be set), both
/// timestamps and a name.
pub fn is_trace_span(span: &SsfSpan) -> bool {
    span.id != 0
        && (span.trace_id != 0 || span.trace_id_high != 0)
        && span.start_timestamp != 0
        && span.end_timestamp != 0
        && !span.name.is_empty()
}

/// True when any field that marks a span as a span is set.
fn looks_like_span(span: &SsfSpan) -> bool {
    span.id != 0
        || span.trace_id != 0
        || span.trace_id_high != 0
        || span.start_timestamp != 0
        || span.end_timestamp != 0
}

/// What a normalised packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    /// A valid trace span (with or without samples).
    TraceSpan,
    /// Not a trace span, but its samples are processed.
    SamplesOnly,
}

/// Classifies a normalised packet (SPEC 3.1 validity).
pub fn classify(span: &SsfSpan) -> Result<PacketClass, SsfError> {
    if is_trace_span(span) {
        return Ok(PacketClass::TraceSpan);
    }
    if !span.metrics.is_empty() {
        return Ok(PacketClass::SamplesOnly);
    }
    if looks_like_span(span) {
        Err(SsfError::InvalidSpan)
    } else {
        Err(SsfError::Empty)
    }
}

/// What a normalised sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleClass {
    Metric,
    /// A log record (SPEC 5): COUNTER, value 0, non-empty message. Not a metric.
    Log,
}

/// Classifies a normalised sample, or says why it is refused.
pub fn classify_sample(sample: &SsfSample) -> Result<SampleClass, SsfError> {
    classify_sample_fields(
        sample.metric,
        &sample.name,
        sample.value,
        &sample.message,
        sample.sample_rate,
    )
}

/// A log sample (SPEC 5): a counter of value 0 with a message.
pub fn is_log_sample(metric: i32, value: f32, message: &str) -> bool {
    metric == ssf_sample::Metric::Counter as i32 && value == 0.0 && !message.is_empty()
}

/// Gives every log sample without a timestamp the time it was received (SPEC 3.1: a
/// sample timestamp of 0 means "at receipt"), so a span's logs are found and ordered
/// by when they happened, not by when their span started.
pub fn stamp_log_samples(span: &mut SsfSpan, now_ns: i64) {
    for sample in &mut span.metrics {
        if sample.timestamp == 0 && is_log_sample(sample.metric, sample.value, &sample.message) {
            sample.timestamp = now_ns;
        }
    }
}

/// [`classify_sample`] on a sample's fields (a rate of 0 counts as 1, as normalised).
pub fn classify_sample_fields(
    metric: i32,
    name: &str,
    value: f32,
    message: &str,
    sample_rate: f32,
) -> Result<SampleClass, SsfError> {
    if is_log_sample(metric, value, message) {
        return Ok(SampleClass::Log);
    }
    if name.is_empty() {
        return Err(SsfError::NoName);
    }
    if !value.is_finite() {
        return Err(SsfError::BadValue);
    }
    let rate = if sample_rate == 0.0 { 1.0 } else { sample_rate };
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(SsfError::BadRate);
    }
    Ok(SampleClass::Metric)
}
