//! Valid, normalised trace spans on their way to the span workers: each span stays in
//! its SSF protobuf encoding (the original bytes unless normalisation changed it),
//! packed into one arena per batch, with the fields routing and indexing need.

use ssfd_wire::ids::TraceId;
use ssfd_wire::ssf_view::SpanView;

/// What a span worker needs without decoding the span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanEntry {
    /// The whole 128-bit trace id (SPEC 5).
    pub trace_id: TraceId,
    pub id: i64,
    pub parent_id: i64,
    pub start_timestamp: i64,
    pub end_timestamp: i64,
    pub error: bool,
    offset: u32,
    len: u32,
}

/// An owned batch of encoded spans for one span worker.
#[derive(Debug, Default)]
pub struct SpanBatch {
    bytes: Vec<u8>,
    entries: Vec<SpanEntry>,
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

    /// Appends a span: `view` describes it, `encoded` is its normalised encoding.
    pub fn push(&mut self, view: &SpanView<'_>, encoded: &[u8]) {
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(encoded);
        self.entries.push(SpanEntry {
            trace_id: view.full_trace_id(),
            id: view.id,
            parent_id: view.parent_id,
            start_timestamp: view.start_timestamp,
            end_timestamp: view.end_timestamp,
            error: view.error,
            offset,
            len: encoded.len() as u32,
        });
    }

    /// Each span's entry and encoded bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&SpanEntry, &[u8])> {
        self.entries.iter().map(|entry| {
            (
                entry,
                &self.bytes[entry.offset as usize..(entry.offset + entry.len) as usize],
            )
        })
    }
}
