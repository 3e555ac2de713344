//! A zero-copy reader of SSF protobuf bytes: [`SpanView`] and [`SampleView`] borrow
//! the packet, so ingest can validate a span, build its samples' series keys and hand
//! the span on as its original bytes without allocating.
//!
//! Why not prost alone: decoding the benchmark span (≈330 bytes, 5 tags, 2 samples)
//! with prost costs ≈20 allocations and ≈0.9 µs, most of it allocation; this reader
//! decodes the same span in a fraction of that (see BENCHMARKS.md). Its accept/reject
//! decisions and field values are held equal to prost's by a differential test and a
//! differential fuzz target (`fuzz/fuzz_targets/ssf.rs`).

use crate::normalize::SsfError;

/// Wire types of the protobuf encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

#[derive(Clone)]
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    fn done(&self) -> bool {
        self.position >= self.bytes.len()
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, SsfError> {
        // most keys, lengths and enums fit one byte
        if let Some(&byte) = self.bytes.get(self.position)
            && byte < 0x80
        {
            self.position += 1;
            return Ok(u64::from(byte));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, SsfError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = *self.bytes.get(self.position).ok_or(SsfError::Decode)?;
            self.position += 1;
            if index == 9 && byte > 1 {
                return Err(SsfError::Decode);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(SsfError::Decode)
    }

    /// A field key: (field number, wire type).
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), SsfError> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(SsfError::Decode);
        }
        let wire_type = (key & 7) as u8;
        let field = (key >> 3) as u32;
        if field == 0 || wire_type > FIXED32 {
            return Err(SsfError::Decode);
        }
        Ok((field, wire_type))
    }

    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<&'a [u8], SsfError> {
        let end = self.position.checked_add(len).ok_or(SsfError::Decode)?;
        let slice = self.bytes.get(self.position..end).ok_or(SsfError::Decode)?;
        self.position = end;
        Ok(slice)
    }

    #[inline(always)]
    fn length_delimited(&mut self) -> Result<&'a [u8], SsfError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| SsfError::Decode)?;
        self.take(len)
    }

    fn fixed64(&mut self) -> Result<u64, SsfError> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(
            bytes.try_into().map_err(|_| SsfError::Decode)?,
        ))
    }

    fn fixed32(&mut self) -> Result<u32, SsfError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    #[inline(always)]
    fn string(&mut self) -> Result<&'a str, SsfError> {
        let bytes = self.length_delimited()?;
        if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| SsfError::Decode)
    }

    /// The next of `left` length-delimited entries of repeated field `field` in bytes
    /// already validated by a parse (so nothing here fails on them).
    #[inline]
    fn next_entry(&mut self, field: u32, left: &mut u32) -> Option<&'a [u8]> {
        while *left > 0 && !self.done() {
            let (at, wire_type) = self.key().ok()?;
            if at == field && wire_type == LEN {
                *left -= 1;
                return self.length_delimited().ok();
            }
            self.skip(at, wire_type, RECURSION_LIMIT).ok()?;
        }
        None
    }

    /// Skips an unknown field, groups included (as prost does).
    fn skip(&mut self, field: u32, wire_type: u8, depth: u32) -> Result<(), SsfError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.length_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => {
                if depth == 0 {
                    return Err(SsfError::Decode);
                }
                loop {
                    let (inner_field, inner_type) = self.key()?;
                    if inner_type == END_GROUP {
                        return if inner_field == field {
                            Ok(())
                        } else {
                            Err(SsfError::Decode)
                        };
                    }
                    self.skip(inner_field, inner_type, depth - 1)?;
                }
            }
            _ => Err(SsfError::Decode),
        }
    }
}

fn expect(wire_type: u8, want: u8) -> Result<(), SsfError> {
    if wire_type == want {
        Ok(())
    } else {
        Err(SsfError::Decode)
    }
}

#[inline]
/// Reads one map entry (`key = 1`, `value = 2`, both strings; absent means "").
fn map_entry(bytes: &[u8], depth: u32) -> Result<(&str, &str), SsfError> {
    let mut reader = Reader::new(bytes);
    let (mut key, mut value) = ("", "");
    while !reader.done() {
        let (field, wire_type) = reader.key()?;
        match field {
            1 => {
                expect(wire_type, LEN)?;
                key = reader.string()?;
            }
            2 => {
                expect(wire_type, LEN)?;
                value = reader.string()?;
            }
            _ => reader.skip(field, wire_type, depth)?,
        }
    }
    Ok((key, value))
}

const RECURSION_LIMIT: u32 = 100;

/// A typed attribute value (`ssfd.v1.Attribute`, SPEC 3.1), borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// An array or a map, as JSON text.
    Json(&'a str),
}

impl AttrValue<'_> {
    /// The value in tag form (SPEC 3.4): ints and doubles in their shortest decimal
    /// form, bools `true`/`false`, strings and JSON as they are.
    pub fn to_tag_text(&self) -> String {
        match self {
            AttrValue::Str(s) | AttrValue::Json(s) => s.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        }
    }
}

/// Reads one `ssfd.v1.Attribute` as prost does: the last value field sent wins, and
/// an attribute with no value has `None`.
pub fn attribute_entry(
    bytes: &[u8],
    depth: u32,
) -> Result<(&str, Option<AttrValue<'_>>), SsfError> {
    let mut reader = Reader::new(bytes);
    let (mut key, mut value) = ("", None);
    while !reader.done() {
        let (field, wire_type) = reader.key()?;
        match field {
            1 => {
                expect(wire_type, LEN)?;
                key = reader.string()?;
            }
            2 | 6 => {
                expect(wire_type, LEN)?;
                let text = reader.string()?;
                value = Some(if field == 2 {
                    AttrValue::Str(text)
                } else {
                    AttrValue::Json(text)
                });
            }
            3 => {
                expect(wire_type, VARINT)?;
                value = Some(AttrValue::Int(reader.varint()? as i64));
            }
            4 => {
                expect(wire_type, FIXED64)?;
                value = Some(AttrValue::Double(f64::from_bits(reader.fixed64()?)));
            }
            5 => {
                expect(wire_type, VARINT)?;
                value = Some(AttrValue::Bool(reader.varint()? != 0));
            }
            _ => reader.skip(field, wire_type, depth)?,
        }
    }
    Ok((key, value))
}

/// The entries of one repeated `ssfd.v1.Attribute` field, in wire order.
#[derive(Clone)]
pub struct AttrIter<'a> {
    reader: Reader<'a>,
    field: u32,
    left: u32,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (&'a str, Option<AttrValue<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.reader.next_entry(self.field, &mut self.left)?;
        attribute_entry(entry, RECURSION_LIMIT).ok()
    }
}

/// An `SSFSample`, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleView<'a> {
    bytes: &'a [u8],
    pub metric: i32,
    pub name: &'a str,
    pub value: f32,
    pub timestamp: i64,
    pub message: &'a str,
    pub status: i32,
    pub sample_rate: f32,
    pub unit: &'a str,
    pub scope: i32,
    tag_count: u32,
}

impl<'a> SampleView<'a> {
    /// A log sample (SPEC 5): a counter of value 0 with a message.
    pub fn is_log(&self) -> bool {
        crate::normalize::is_log_sample(self.metric, self.value, self.message)
    }

    /// Parses and validates one `SSFSample`.
    pub fn parse(bytes: &'a [u8]) -> Result<SampleView<'a>, SsfError> {
        Self::parse_at(bytes, RECURSION_LIMIT)
    }

    /// `depth` is prost's remaining recursion budget at this message.
    fn parse_at(bytes: &'a [u8], depth: u32) -> Result<SampleView<'a>, SsfError> {
        let mut view = SampleView {
            bytes,
            metric: 0,
            name: "",
            value: 0.0,
            timestamp: 0,
            message: "",
            status: 0,
            sample_rate: 0.0,
            unit: "",
            scope: 0,
            tag_count: 0,
        };
        let mut reader = Reader::new(bytes);
        while !reader.done() {
            let (field, wire_type) = reader.key()?;
            match field {
                1 => {
                    expect(wire_type, VARINT)?;
                    view.metric = reader.varint()? as i32;
                }
                2 => {
                    expect(wire_type, LEN)?;
                    view.name = reader.string()?;
                }
                3 => {
                    expect(wire_type, FIXED32)?;
                    view.value = f32::from_bits(reader.fixed32()?);
                }
                4 => {
                    expect(wire_type, VARINT)?;
                    view.timestamp = reader.varint()? as i64;
                }
                5 => {
                    expect(wire_type, LEN)?;
                    view.message = reader.string()?;
                }
                6 => {
                    expect(wire_type, VARINT)?;
                    view.status = reader.varint()? as i32;
                }
                7 => {
                    expect(wire_type, FIXED32)?;
                    view.sample_rate = f32::from_bits(reader.fixed32()?);
                }
                8 => {
                    expect(wire_type, LEN)?;
                    if depth == 0 {
                        return Err(SsfError::Decode);
                    }
                    map_entry(reader.length_delimited()?, depth - 1)?;
                    view.tag_count += 1;
                }
                9 => {
                    expect(wire_type, LEN)?;
                    view.unit = reader.string()?;
                }
                10 => {
                    expect(wire_type, VARINT)?;
                    view.scope = reader.varint()? as i32;
                }
                _ => reader.skip(field, wire_type, depth)?,
            }
        }
        Ok(view)
    }

    /// Tag entries in wire order; a key sent twice appears twice (the last one wins,
    /// as in prost's map).
    pub fn raw_tags(&self) -> TagIter<'a> {
        TagIter {
            reader: Reader::new(self.bytes),
            field: 8,
            left: self.tag_count,
        }
    }
}

/// Map entries of one map field, in wire order.
#[derive(Clone)]
pub struct TagIter<'a> {
    reader: Reader<'a>,
    field: u32,
    left: u32,
}

impl<'a> Iterator for TagIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.reader.next_entry(self.field, &mut self.left)?;
        map_entry(entry, RECURSION_LIMIT).ok()
    }
}

/// Calls `each` with the map's entries after prost's rules: one per key, the last
/// value sent for it, in key order. `scratch` is reused across calls.
pub fn dedup_tags<'a>(
    tags: impl Iterator<Item = (&'a str, &'a str)>,
    scratch: &mut Vec<(&'a str, &'a str)>,
) {
    scratch.clear();
    scratch.extend(tags);
    if scratch.len() > 1 {
        // stable: equal keys stay in wire order, so the last of a run is the last sent
        scratch.sort_by(|a, b| a.0.cmp(b.0));
        let mut write = 0;
        for read in 0..scratch.len() {
            if read + 1 < scratch.len() && scratch[read + 1].0 == scratch[read].0 {
                continue;
            }
            scratch[write] = scratch[read];
            write += 1;
        }
        scratch.truncate(write);
    }
}

/// An `SSFSpan`, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpanView<'a> {
    bytes: &'a [u8],
    pub version: i32,
    pub trace_id: i64,
    pub id: i64,
    pub parent_id: i64,
    pub start_timestamp: i64,
    pub end_timestamp: i64,
    pub error: bool,
    pub service: &'a str,
    pub name: &'a str,
    pub indicator: bool,
    pub root_start_timestamp: i64,
    /// ssfd's extension (SPEC 3.1): the high 64 bits of a 128-bit trace id.
    pub trace_id_high: u64,
    sample_count: u32,
    tag_count: u32,
    resource_count: u32,
    attribute_count: u32,
    /// The last `name` tag, if any.
    name_tag: Option<&'a str>,
    /// The last `span.kind` tag, if any.
    span_kind_tag: Option<&'a str>,
    /// The last `otel.trace_id` tag, if any: how ssfd before 128-bit ids kept an OTLP
    /// span's whole id (spans stored or forwarded by such a build).
    otel_trace_id_tag: Option<&'a str>,
    /// Some sample has a rate of 0.
    zero_rate: bool,
    /// A log sample without a timestamp ("at receipt", SPEC 3.1): ingest stamps it.
    unstamped_log: bool,
}

impl<'a> SpanView<'a> {
    /// Parses and validates a whole `SSFSpan` (samples and tags included), accepting
    /// and rejecting exactly what prost does.
    pub fn parse(bytes: &'a [u8]) -> Result<SpanView<'a>, SsfError> {
        let mut view = SpanView {
            bytes,
            version: 0,
            trace_id: 0,
            id: 0,
            parent_id: 0,
            start_timestamp: 0,
            end_timestamp: 0,
            error: false,
            service: "",
            name: "",
            indicator: false,
            root_start_timestamp: 0,
            trace_id_high: 0,
            sample_count: 0,
            tag_count: 0,
            resource_count: 0,
            attribute_count: 0,
            name_tag: None,
            span_kind_tag: None,
            otel_trace_id_tag: None,
            zero_rate: false,
            unstamped_log: false,
        };
        let mut reader = Reader::new(bytes);
        while !reader.done() {
            let (field, wire_type) = reader.key()?;
            match field {
                1 => {
                    expect(wire_type, VARINT)?;
                    view.version = reader.varint()? as i32;
                }
                2..=6 | 14 => {
                    expect(wire_type, VARINT)?;
                    let value = reader.varint()? as i64;
                    match field {
                        2 => view.trace_id = value,
                        3 => view.id = value,
                        4 => view.parent_id = value,
                        5 => view.start_timestamp = value,
                        6 => view.end_timestamp = value,
                        _ => view.root_start_timestamp = value,
                    }
                }
                7 => {
                    expect(wire_type, VARINT)?;
                    view.error = reader.varint()? != 0;
                }
                8 => {
                    expect(wire_type, LEN)?;
                    view.service = reader.string()?;
                }
                10 => {
                    expect(wire_type, LEN)?;
                    let sample =
                        SampleView::parse_at(reader.length_delimited()?, RECURSION_LIMIT - 1)?;
                    view.zero_rate |= sample.sample_rate == 0.0;
                    view.unstamped_log |= sample.timestamp == 0 && sample.is_log();
                    view.sample_count += 1;
                }
                11 => {
                    expect(wire_type, LEN)?;
                    let (key, value) = map_entry(reader.length_delimited()?, RECURSION_LIMIT - 1)?;
                    match key {
                        "name" => view.name_tag = Some(value),
                        "span.kind" => view.span_kind_tag = Some(value),
                        "otel.trace_id" => view.otel_trace_id_tag = Some(value),
                        _ => {}
                    }
                    view.tag_count += 1;
                }
                12 => {
                    expect(wire_type, VARINT)?;
                    view.indicator = reader.varint()? != 0;
                }
                13 => {
                    expect(wire_type, LEN)?;
                    view.name = reader.string()?;
                }
                1001 => {
                    expect(wire_type, FIXED64)?;
                    view.trace_id_high = reader.fixed64()?;
                }
                1002 | 1003 => {
                    expect(wire_type, LEN)?;
                    attribute_entry(reader.length_delimited()?, RECURSION_LIMIT - 1)?;
                    if field == 1002 {
                        view.resource_count += 1;
                    } else {
                        view.attribute_count += 1;
                    }
                }
                _ => reader.skip(field, wire_type, RECURSION_LIMIT)?,
            }
        }
        Ok(view)
    }

    /// The bytes this view reads.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn sample_count(&self) -> usize {
        self.sample_count as usize
    }

    /// The embedded samples, in order.
    pub fn samples(&self) -> impl Iterator<Item = SampleView<'a>> + 'a {
        let mut reader = Reader::new(self.bytes);
        let mut left = self.sample_count;
        std::iter::from_fn(move || {
            while left > 0 && !reader.done() {
                let (field, wire_type) = reader.key().ok()?;
                if field == 10 && wire_type == LEN {
                    left -= 1;
                    return SampleView::parse_at(
                        reader.length_delimited().ok()?,
                        RECURSION_LIMIT - 1,
                    )
                    .ok();
                }
                reader.skip(field, wire_type, RECURSION_LIMIT).ok()?;
            }
            None
        })
    }

    /// Tag entries in wire order (duplicates possible; see [`dedup_tags`]).
    pub fn raw_tags(&self) -> TagIter<'a> {
        TagIter {
            reader: Reader::new(self.bytes),
            field: 11,
            left: self.tag_count,
        }
    }

    /// The span's resource attributes (extension field 1002), in wire order.
    pub fn resource(&self) -> AttrIter<'a> {
        AttrIter {
            reader: Reader::new(self.bytes),
            field: 1002,
            left: self.resource_count,
        }
    }

    /// The typed values of its non-string tags (extension field 1003), in wire order.
    pub fn attributes(&self) -> AttrIter<'a> {
        AttrIter {
            reader: Reader::new(self.bytes),
            field: 1003,
            left: self.attribute_count,
        }
    }

    /// The whole 128-bit trace id (SPEC 5): `trace_id_high`, then `trace_id`. A span
    /// from a build before 128-bit ids has no high half but may carry the whole OTel id
    /// in its `otel.trace_id` tag: when that tag's low half is `trace_id`, its high half
    /// counts, so such spans stay in their trace across an upgrade.
    pub fn full_trace_id(&self) -> crate::ids::TraceId {
        if self.trace_id_high == 0
            && let Some(tag) = self.otel_trace_id_tag
            && tag.len() == 32
            && let Ok(id) = crate::ids::TraceId::parse(tag)
            && id.low() == self.trace_id
        {
            return id;
        }
        crate::ids::TraceId::from_parts(self.trace_id_high, self.trace_id)
    }

    /// The value of tag `key` (the last sent, as prost's map keeps).
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.raw_tags()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    /// The `span.kind` tag (OpenTelemetry's span kind), recorded while parsing.
    pub fn span_kind_tag(&self) -> Option<&'a str> {
        self.span_kind_tag
    }

    /// The name after SPEC 3.1 normalisation: the `name` field, else the `name` tag.
    pub fn normalized_name(&self) -> &'a str {
        if self.name.is_empty() {
            self.tag("name").unwrap_or("")
        } else {
            self.name
        }
    }

    /// True when SPEC 3.1 normalisation would change this span (a name taken from its
    /// tag, a sample rate of 0, a log sample to stamp with its time of receipt), so its
    /// bytes cannot be kept as they came.
    pub fn needs_normalization(&self) -> bool {
        (self.name.is_empty() && self.name_tag.is_some()) || self.zero_rate || self.unstamped_log
    }

    /// A valid trace span after normalisation (SPEC 3.1).
    pub fn is_trace_span(&self) -> bool {
        self.id != 0
            && (self.trace_id != 0 || self.trace_id_high != 0)
            && self.start_timestamp != 0
            && self.end_timestamp != 0
            && !self.normalized_name().is_empty()
    }

    /// True when any field that marks a span as a span is set.
    pub fn looks_like_span(&self) -> bool {
        self.id != 0
            || self.trace_id != 0
            || self.trace_id_high != 0
            || self.start_timestamp != 0
            || self.end_timestamp != 0
    }
}
