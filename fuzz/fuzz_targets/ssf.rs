//! Fuzzes SSF decoding differentially: the zero-copy reader must accept and reject
//! exactly what prost does, read the same fields, and agree on normalisation and
//! validity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use ssfd_wire::normalize;
use ssfd_wire::ssf::SsfSpan;
use ssfd_wire::ssf_view::SpanView;

fuzz_target!(|bytes: &[u8]| {
    let by_prost = SsfSpan::decode(bytes);
    let by_view = SpanView::parse(bytes);
    assert_eq!(by_prost.is_ok(), by_view.is_ok(), "prost and the view disagree on acceptance");
    let (Ok(span), Ok(view)) = (by_prost, by_view) else { return };
    assert_eq!(
        (view.trace_id, view.id, view.parent_id, view.start_timestamp, view.end_timestamp),
        (span.trace_id, span.id, span.parent_id, span.start_timestamp, span.end_timestamp)
    );
    assert_eq!((view.service, view.name, view.error, view.indicator), (&span.service[..], &span.name[..], span.error, span.indicator));
    assert_eq!(view.sample_count(), span.metrics.len());
    for (sample_view, sample) in view.samples().zip(&span.metrics) {
        assert_eq!((sample_view.name, sample_view.message, sample_view.metric), (&sample.name[..], &sample.message[..], sample.metric));
        assert_eq!(sample_view.value.to_bits(), sample.value.to_bits());
        for (key, value) in &sample.tags {
            assert_eq!(sample_view.raw_tags().filter(|(k, _)| k == key).last().map(|(_, v)| v), Some(&value[..]));
        }
    }
    for (key, value) in &span.tags {
        assert_eq!(view.tag(key), Some(&value[..]));
    }
    // ssfd's extension fields (SPEC 3.1)
    assert_eq!(view.trace_id_high, span.trace_id_high);
    for (viewed, decoded) in [(view.resource(), &span.resource), (view.attributes(), &span.attributes)] {
        let viewed: Vec<_> = viewed.collect();
        assert_eq!(viewed.len(), decoded.len());
        for ((key, value), attribute) in viewed.iter().zip(decoded) {
            use ssfd_wire::ssf_view::AttrValue;
            use ssfd_wire::ssfd::v1::attribute::Value;
            assert_eq!(*key, attribute.key);
            let same = match (value, &attribute.value) {
                (None, None) => true,
                (Some(AttrValue::Str(a)), Some(Value::StringValue(b))) => a == b,
                (Some(AttrValue::Json(a)), Some(Value::JsonValue(b))) => a == b,
                (Some(AttrValue::Int(a)), Some(Value::IntValue(b))) => a == b,
                (Some(AttrValue::Bool(a)), Some(Value::BoolValue(b))) => a == b,
                (Some(AttrValue::Double(a)), Some(Value::DoubleValue(b))) => a.to_bits() == b.to_bits(),
                _ => false,
            };
            assert!(same, "attribute {key:?} read differently");
        }
    }
    // the description every later stage takes from ingest (SpanBatch::push) never
    // panics and reads back what the view read
    if view.is_trace_span() {
        let mut batch = ssfd_engine::SpanBatch::default();
        batch.push(&view, bytes);
        let record = batch.records().next().expect("one span");
        assert_eq!(record.entry.trace_id, view.full_trace_id());
        assert_eq!(record.service, view.service);
        assert_eq!(record.name, view.normalized_name());
    }
    let mut normalized = span.clone();
    normalize::normalize(&mut normalized);
    assert_eq!(view.normalized_name(), normalized.name);
    assert_eq!(view.is_trace_span(), normalize::is_trace_span(&normalized));
    // as ingest normalises: log samples without a timestamp are stamped too
    let mut stamped = normalized.clone();
    normalize::stamp_log_samples(&mut stamped, 1);
    assert_eq!(view.needs_normalization(), stamped.encode_to_vec() != span.encode_to_vec());
    for sample in &normalized.metrics {
        assert!(sample.sample_rate != 0.0, "normalised rates are never 0");
    }
});
