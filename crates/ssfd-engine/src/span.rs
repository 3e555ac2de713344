//! Valid, normalised trace spans on their way to the span workers: each span stays in
//! its SSF protobuf encoding (the original bytes unless normalisation changed it),
//! packed into one arena per batch, with everything the later stages need read once,
//! at ingest (ARCHITECTURE.md, "read each span once"): the ids, times, error and
//! indicator flags, span kind, where its service and name sit in its bytes, the Bloom
//! bits of its tags and resource attributes, and the log records it carries. Span
//! workers, span metrics, SLOs and the stores use this record and do not parse the
//! span's bytes again.

use crate::record::LogRecord;
use ssfd_wire::ids::TraceId;
use ssfd_wire::ssf_view::SpanView;

/// What the stages after ingest need of one span, without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanEntry {
    /// The whole 128-bit trace id (SPEC 5).
    pub trace_id: TraceId,
    pub id: i64,
    pub parent_id: i64,
    pub start_timestamp: i64,
    pub end_timestamp: i64,
    pub error: bool,
    pub indicator: bool,
    /// SPEC 4.4's span kind label, from the `span.kind` tag, else indicator or root.
    pub kind: &'static str,
    /// Two bits per `key:value` tag and resource attribute ([`tag_bits`]).
    pub tag_bloom: u64,
    /// Log samples inside the span (their records are in [`SpanBatch::logs`]).
    pub logs: u32,
    offset: u32,
    len: u32,
    /// The service and the normalised name, as (offset, length) in the span's bytes.
    service: (u32, u32),
    name: (u32, u32),
}

/// The two bits of `key:value` in a span's tag Bloom filter.
pub fn tag_bits(key: &str, value: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(key.as_bytes());
    hasher.update(&[0]);
    hasher.update(value.as_bytes());
    let hash = hasher.digest();
    (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63))
}

/// A span's tag Bloom filter: [`tag_bits`] of each tag and resource attribute (its
/// string form), so a tag search (SPEC 6) reads only the spans that may match.
pub fn tag_bloom(view: &SpanView<'_>) -> u64 {
    view.raw_tags()
        .fold(0, |bloom, (key, value)| bloom | tag_bits(key, value))
        | view.resource().fold(0, |bloom, (key, value)| {
            bloom | value.map_or(0, |v| tag_bits(key, &v.to_tag_text()))
        })
}

/// SPEC 4.4's span kind: the `span.kind` tag (any case, with or without OTel's
/// `SPAN_KIND_` prefix), else `SERVER` for an indicator or root span, else `INTERNAL`.
pub fn span_kind(tag: Option<&str>, indicator: bool, parent_id: i64) -> &'static str {
    // untrusted text: cut only where `get` finds a character boundary
    let kind = tag.map(|t| {
        let prefix = "span_kind_";
        match (t.get(..prefix.len()), t.get(prefix.len()..)) {
            (Some(head), Some(rest)) if head.eq_ignore_ascii_case(prefix) && !rest.is_empty() => {
                rest
            }
            _ => t,
        }
    });
    let is = |name: &str| kind.is_some_and(|k| k.eq_ignore_ascii_case(name));
    if is("server") {
        "SPAN_KIND_SERVER"
    } else if is("client") {
        "SPAN_KIND_CLIENT"
    } else if is("producer") {
        "SPAN_KIND_PRODUCER"
    } else if is("consumer") {
        "SPAN_KIND_CONSUMER"
    } else if is("internal") || !(indicator || parent_id == 0) {
        "SPAN_KIND_INTERNAL"
    } else {
        "SPAN_KIND_SERVER"
    }
}

/// Where `part` (borrowed from `whole`) sits in it.
fn place(whole: &[u8], part: &str) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if part.is_empty() || start > whole.len() {
        return (0, 0);
    }
    (start as u32, part.len() as u32)
}

/// One span as the later stages see it.
#[derive(Clone, Copy, Debug)]
pub struct SpanRecord<'a> {
    pub entry: &'a SpanEntry,
    /// Its SSF encoding, for the stores and sinks that keep or send it whole.
    pub bytes: &'a [u8],
    pub service: &'a str,
    /// The name after SPEC 3.1 normalisation.
    pub name: &'a str,
}

/// An owned batch of encoded spans for one span worker.
#[derive(Debug, Default)]
pub struct SpanBatch {
    bytes: Vec<u8>,
    entries: Vec<SpanEntry>,
    /// The log records inside the batch's spans, each with its span's context.
    pub logs: Vec<LogRecord>,
    /// Forwarded by a local, which already derived the spans' metrics (SPEC 1): they
    /// are only stored and indexed here.
    pub forwarded: bool,
}

impl SpanBatch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a span: `view` describes it, `encoded` is its normalised encoding (the
    /// bytes `view` reads, or their re-encoding, which is read once more here).
    pub fn push(&mut self, view: &SpanView<'_>, encoded: &[u8]) {
        self.push_with(view, encoded, true);
    }

    /// [`SpanBatch::push`]; with `index` false (no store will index the span) the tag
    /// Bloom bits and the log records are left out and only the logs are counted.
    pub fn push_with(&mut self, view: &SpanView<'_>, encoded: &[u8], index: bool) {
        if !std::ptr::eq(view.bytes(), encoded)
            && let Ok(reread) = SpanView::parse(encoded)
        {
            return self.push_with(&reread, encoded, index);
        }
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(encoded);
        let mut logs = 0;
        for sample in view.samples() {
            if LogRecord::is_log_sample(&sample) {
                if index {
                    self.logs.push(LogRecord::from_sample(&sample, Some(view)));
                }
                logs += 1;
            }
        }
        let tag_bloom = if index { tag_bloom(view) } else { 0 };
        self.entries.push(SpanEntry {
            trace_id: view.full_trace_id(),
            id: view.id,
            parent_id: view.parent_id,
            start_timestamp: view.start_timestamp,
            end_timestamp: view.end_timestamp,
            error: view.error,
            indicator: view.indicator,
            kind: span_kind(view.span_kind_tag(), view.indicator, view.parent_id),
            tag_bloom,
            logs,
            offset,
            len: encoded.len() as u32,
            service: place(encoded, view.service),
            name: place(encoded, view.normalized_name()),
        });
    }

    /// Each span's record, in order.
    pub fn records(&self) -> impl Iterator<Item = SpanRecord<'_>> {
        self.entries.iter().map(|entry| {
            let bytes = &self.bytes[entry.offset as usize..(entry.offset + entry.len) as usize];
            let text = |(at, len): (u32, u32)| {
                bytes
                    .get(at as usize..(at + len) as usize)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("")
            };
            SpanRecord {
                entry,
                bytes,
                service: text(entry.service),
                name: text(entry.name),
            }
        })
    }

    /// Each span's entry and encoded bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&SpanEntry, &[u8])> {
        self.records().map(|record| (record.entry, record.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ssfd_wire::ssf::{SsfSample, SsfSpan};

    #[test]
    fn a_span_is_described_once_with_its_logs() {
        let span = SsfSpan {
            trace_id: 5,
            trace_id_high: 9,
            id: 6,
            parent_id: 2,
            start_timestamp: 10,
            end_timestamp: 30,
            error: true,
            service: "api".into(),
            tags: [
                ("name".to_string(), "from-tag".to_string()),
                ("span.kind".to_string(), "CLIENT".to_string()),
            ]
            .into(),
            metrics: vec![
                SsfSample {
                    name: "app".into(),
                    message: "hello".into(),
                    timestamp: 12,
                    ..Default::default()
                },
                SsfSample {
                    metric: 1,
                    name: "g".into(),
                    value: 1.0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let bytes = span.encode_to_vec();
        let view = SpanView::parse(&bytes).unwrap();
        let mut batch = SpanBatch::default();
        batch.push(&view, &bytes);
        // a re-encoding (as normalisation makes) is described from its own bytes
        let mut renamed = span.clone();
        renamed.name = "own name".into();
        renamed.service = "web".into();
        batch.push(&view, &renamed.encode_to_vec());
        let records: Vec<SpanRecord<'_>> = batch.records().collect();
        assert_eq!(records[0].service, "api");
        assert_eq!(records[0].name, "from-tag");
        assert_eq!(records[1].service, "web");
        assert_eq!(records[1].name, "own name");
        let entry = records[0].entry;
        assert_eq!(entry.trace_id, TraceId::from_parts(9, 5));
        assert_eq!((entry.id, entry.parent_id, entry.error), (6, 2, true));
        assert_eq!(entry.kind, "SPAN_KIND_CLIENT");
        assert_eq!(entry.logs, 1);
        assert_ne!(entry.tag_bloom & tag_bits("span.kind", "CLIENT"), 0);
        assert_eq!(batch.logs.len(), 2, "one log sample per span");
        assert_eq!(batch.logs[0].message, "hello");
        assert_eq!(batch.logs[0].trace_id, Some(TraceId::from_parts(9, 5)));
        assert_eq!(batch.logs[0].span_id, Some(6));
    }

    #[test]
    fn span_kinds() {
        assert_eq!(
            span_kind(Some("SPAN_KIND_PRODUCER"), false, 5),
            "SPAN_KIND_PRODUCER"
        );
        assert_eq!(span_kind(Some("Server"), false, 5), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(Some("weird"), false, 5), "SPAN_KIND_INTERNAL");
        assert_eq!(span_kind(Some("weird"), false, 0), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(None, true, 5), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(None, false, 5), "SPAN_KIND_INTERNAL");
        // a multi-byte character across the prefix's end (found by review: it panicked)
        assert_eq!(
            span_kind(Some("abcdefghié"), false, 5),
            "SPAN_KIND_INTERNAL"
        );
        assert_eq!(span_kind(Some("span_kind_é"), false, 0), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(Some("ééééé"), false, 5), "SPAN_KIND_INTERNAL");
    }
}
