//! The zero-copy SSF reader accepts and rejects exactly what prost does, and reads the
//! same values (after prost's map rules: one entry per key, the last sent).

use prost::Message;
use ssfd_wire::normalize;
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use ssfd_wire::ssf_view::{AttrValue, SampleView, SpanView, dedup_tags};
use ssfd_wire::ssfd::v1::{Attribute, attribute};
use std::collections::BTreeMap;

fn tags_of<'a>(raw: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    let mut scratch = Vec::new();
    dedup_tags(raw, &mut scratch);
    scratch
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample_of(view: &SampleView<'_>) -> SsfSample {
    SsfSample {
        metric: view.metric,
        name: view.name.into(),
        value: view.value,
        timestamp: view.timestamp,
        message: view.message.into(),
        status: view.status,
        sample_rate: view.sample_rate,
        tags: tags_of(view.raw_tags()),
        unit: view.unit.into(),
        scope: view.scope,
    }
}

fn attributes_of<'a>(
    raw: impl Iterator<Item = (&'a str, Option<AttrValue<'a>>)>,
) -> Vec<Attribute> {
    raw.map(|(key, value)| Attribute {
        key: key.into(),
        value: value.map(|value| match value {
            AttrValue::Str(s) => attribute::Value::StringValue(s.into()),
            AttrValue::Int(i) => attribute::Value::IntValue(i),
            AttrValue::Double(d) => attribute::Value::DoubleValue(d),
            AttrValue::Bool(b) => attribute::Value::BoolValue(b),
            AttrValue::Json(s) => attribute::Value::JsonValue(s.into()),
        }),
    })
    .collect()
}

/// The owned span a view describes.
fn span_of(view: &SpanView<'_>) -> SsfSpan {
    SsfSpan {
        version: view.version,
        trace_id: view.trace_id,
        id: view.id,
        parent_id: view.parent_id,
        start_timestamp: view.start_timestamp,
        end_timestamp: view.end_timestamp,
        error: view.error,
        service: view.service.into(),
        metrics: view.samples().map(|s| sample_of(&s)).collect(),
        tags: tags_of(view.raw_tags()),
        indicator: view.indicator,
        name: view.name.into(),
        root_start_timestamp: view.root_start_timestamp,
        trace_id_high: view.trace_id_high,
        resource: attributes_of(view.resource()),
        attributes: attributes_of(view.attributes()),
    }
}

/// Checks one input against prost; panics with the input on a difference.
pub fn check(bytes: &[u8]) {
    let by_prost = SsfSpan::decode(bytes);
    let by_view = SpanView::parse(bytes);
    match (&by_prost, &by_view) {
        (Ok(want), Ok(view)) => {
            // compare through the encoding so NaN payloads compare bitwise
            assert_eq!(
                span_of(view).encode_to_vec(),
                want.encode_to_vec(),
                "{bytes:?}"
            );
            let mut normalized = want.clone();
            normalize::normalize(&mut normalized);
            assert_eq!(view.normalized_name(), normalized.name, "{bytes:?}");
            assert_eq!(
                view.span_kind_tag(),
                want.tags.get("span.kind").map(String::as_str),
                "{bytes:?}"
            );
            assert_eq!(
                view.is_trace_span(),
                normalize::is_trace_span(&normalized),
                "{bytes:?}"
            );
            // normalisation as ingest applies it: a log sample without a timestamp is
            // stamped with its time of receipt too (the oracle missed that until the
            // fuzz target found it)
            let mut stamped = normalized.clone();
            normalize::stamp_log_samples(&mut stamped, 1);
            assert_eq!(
                view.needs_normalization(),
                stamped.encode_to_vec() != want.encode_to_vec(),
                "{bytes:?}"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "prost {:?} but view {:?} for {bytes:?}",
            by_prost.is_ok(),
            by_view.is_ok()
        ),
    }
}

#[test]
fn veneur_vectors_and_corpus_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut count = 0;
    for dir in [
        "testdata/veneur",
        "fuzz/corpus/ssf",
        "fuzz/corpus/framing",
        "fuzz/corpus/dogstatsd",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                check(&std::fs::read(path).unwrap());
                count += 1;
            }
        }
    }
    assert!(count > 100, "{count} inputs");
}

#[test]
fn extension_fields_agree() {
    let span = SsfSpan {
        trace_id: 7,
        trace_id_high: u64::MAX,
        id: 1,
        start_timestamp: 1,
        end_timestamp: 2,
        name: "n".into(),
        resource: vec![
            Attribute {
                key: "k8s.pod.name".into(),
                value: Some(attribute::Value::StringValue("pod-1".into())),
            },
            Attribute {
                key: "no.value".into(),
                value: None,
            },
        ],
        attributes: vec![
            Attribute {
                key: "list".into(),
                value: Some(attribute::Value::JsonValue("[1,2]".into())),
            },
            Attribute {
                key: "ok".into(),
                value: Some(attribute::Value::BoolValue(true)),
            },
            Attribute {
                key: "nan".into(),
                value: Some(attribute::Value::DoubleValue(f64::NAN)),
            },
        ],
        ..Default::default()
    }
    .encode_to_vec();
    check(&span);
    let view = SpanView::parse(&span).unwrap();
    assert_eq!(view.trace_id_high, u64::MAX);
    assert_eq!(view.resource().count(), 2);
    assert_eq!(
        view.attributes().next(),
        Some(("list", Some(AttrValue::Json("[1,2]"))))
    );
    // a high half alone makes a valid trace id (SPEC 5)
    let high_only = SsfSpan {
        trace_id_high: 9,
        id: 1,
        start_timestamp: 1,
        end_timestamp: 2,
        name: "n".into(),
        ..Default::default()
    }
    .encode_to_vec();
    check(&high_only);
    assert!(SpanView::parse(&high_only).unwrap().is_trace_span());
    // an attribute whose value field has the wrong wire type, or two values (the last
    // wins), or a trace_id_high that is not fixed64
    let mut two_values = span.clone();
    // field 1003, an Attribute {key "a", int 1, bool true}
    two_values.extend([0xda, 0x3e, 7, 0x0a, 1, b'a', 0x18, 1, 0x28, 1]);
    check(&two_values);
    let mut wrong_type = span.clone();
    wrong_type.extend([0xda, 0x3e, 5, 0x0a, 1, b'a', 0x20, 1]);
    check(&wrong_type);
    assert!(SpanView::parse(&wrong_type).is_err());
    // a span from a build before 128-bit ids: its whole OTel id in `otel.trace_id`
    let legacy = SsfSpan {
        trace_id: 0x975fbd3ef288210bu64 as i64,
        id: 1,
        start_timestamp: 1,
        end_timestamp: 2,
        name: "n".into(),
        tags: [(
            "otel.trace_id".to_string(),
            "94568bc249d55603975fbd3ef288210b".to_string(),
        )]
        .into(),
        ..Default::default()
    }
    .encode_to_vec();
    check(&legacy);
    assert_eq!(
        SpanView::parse(&legacy)
            .unwrap()
            .full_trace_id()
            .to_string(),
        "94568bc249d55603975fbd3ef288210b"
    );
    let mut varint_high = span.clone();
    varint_high.extend([0xc8, 0x3e, 1]);
    check(&varint_high);
}

/// Inputs the `ssf` fuzz target found.
#[test]
fn fuzz_findings_agree() {
    // a log sample without a timestamp: ingest stamps it, so the span needs
    // normalisation although `normalize` alone changes nothing
    check(&[
        32, 68, 82, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 61, 42, 42, 2, 42, 42, 42, 28,
        42, 2, 42, 42, 42, 28, 0, 0, 0, 0, 0, 0, 0, 42, 42, 96, 96, 96, 96, 42, 96, 42, 28, 0, 0,
        0, 0, 0, 0, 33, 42, 42, 96, 96, 96, 96, 96, 96, 96, 96, 96, 96,
    ]);
}

#[test]
fn edge_cases_agree() {
    let span = SsfSpan {
        trace_id: -5,
        id: i64::MIN,
        parent_id: i64::MAX,
        start_timestamp: 1,
        end_timestamp: 2,
        name: String::new(),
        tags: [("name".into(), "n".into()), ("a".into(), String::new())].into(),
        metrics: vec![SsfSample {
            name: "s".into(),
            sample_rate: 0.0,
            value: f32::NAN,
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    check(&span);
    // a repeated map key: the last value wins
    let mut duplicated = span.clone();
    duplicated.extend(
        SsfSpan {
            tags: [("name".into(), "m".into())].into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    check(&duplicated);
    let view = SpanView::parse(&duplicated).unwrap();
    assert_eq!(view.tag("name"), Some("m"));
    // a name sent twice: the last wins
    let mut renamed = SsfSpan {
        name: "first".into(),
        ..Default::default()
    }
    .encode_to_vec();
    renamed.extend(
        SsfSpan {
            name: "second".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    check(&renamed);
    for bytes in [
        &[][..],
        &[0x08],                         // truncated varint
        &[0x00, 0x01],                   // field 0
        &[0x0f],                         // wire type 7
        &[0x12, 0x05, 0x01],             // length past the end
        &[0x42, 0x02, 0xc3, 0x28],       // invalid UTF-8 service
        &[0x0d, 0x00, 0x00, 0x00, 0x00], // version sent as fixed32
        &[0x4a, 0x00],                   // removed field 9, skipped
        &[0x9b, 0x01, 0x9c, 0x01],       // an empty group (field 19), skipped
        &[0x9b, 0x01, 0xa4, 0x01],       // a group closed by the wrong field
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ],
        &[0x52, 0x03, 0x1d, 0x00, 0x00], // a sample whose float is cut short
        &[0x5a, 0x02, 0x0a, 0x00],       // a tag with a key and no value
    ] {
        check(bytes);
    }
}

#[test]
fn random_mutations_agree() {
    let base = SsfSpan {
        trace_id: 1,
        trace_id_high: 0x94568bc249d55603,
        resource: vec![Attribute {
            key: "host.name".into(),
            value: Some(attribute::Value::StringValue("h".into())),
        }],
        attributes: vec![
            Attribute {
                key: "http.status_code".into(),
                value: Some(attribute::Value::IntValue(502)),
            },
            Attribute {
                key: "ratio".into(),
                value: Some(attribute::Value::DoubleValue(0.5)),
            },
        ],
        id: 2,
        start_timestamp: 3,
        end_timestamp: 4,
        service: "svc".into(),
        name: "op".into(),
        tags: [("k".into(), "v".into())].into(),
        metrics: vec![SsfSample {
            name: "m".into(),
            value: 1.0,
            sample_rate: 0.5,
            tags: [("t".into(), "u".into())].into(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let mut bytes = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let position = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[position] = next() as u8,
                1 => {
                    bytes.remove(position);
                }
                _ => bytes.insert(position, next() as u8),
            }
            if bytes.is_empty() {
                break;
            }
        }
        check(&bytes);
    }
}
