//! The SSF spans captured by Veneur's own test suite (`testdata/veneur/*.pb`) decode to
//! what `testdata/README.md` states, normalisation included.

use ssfd_wire::normalize::{self, PacketClass, SsfError};
use ssfd_wire::ssf::SsfSpan;

fn vector(name: &str) -> SsfSpan {
    let path = format!(
        "{}/../../testdata/veneur/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    normalize::decode_span(&bytes).expect("vector decodes")
}

#[test]
fn trace_pb_takes_its_name_from_the_name_tag() {
    let mut span = vector("trace.pb");
    assert_eq!(span.trace_id, 2952322985753260966);
    assert_eq!(span.id, 6609809824038723702);
    assert_eq!(span.parent_id, 759030388714467718);
    assert_eq!(span.start_timestamp, 1496959028355075485);
    assert_eq!(span.end_timestamp, 1496959028355121050);
    assert_eq!(span.end_timestamp - span.start_timestamp, 45_565);
    assert_eq!(span.name, "");
    assert_eq!(span.service, "");
    assert_eq!(
        span.tags.get("name").map(String::as_str),
        Some("veneur.(*Server).flushEventsChecks")
    );
    normalize::normalize(&mut span);
    assert_eq!(span.name, "veneur.(*Server).flushEventsChecks");
    assert_eq!(span.tags.len(), 1);
    assert_eq!(span.tags.get("resource").map(String::as_str), Some("flush"));
    assert_eq!(normalize::classify(&span), Ok(PacketClass::TraceSpan));
}

#[test]
fn trace_critical_pb_is_an_error_root_with_hostile_tags_intact() {
    let mut span = vector("trace_critical.pb");
    assert_eq!(span.id, 8890541568593727407);
    assert_eq!(span.trace_id, span.id);
    assert_eq!(span.start_timestamp, 1497026085338874599);
    assert_eq!(span.end_timestamp - span.start_timestamp, 881);
    assert!(span.error);
    assert_eq!(span.service, "veneur-test");
    normalize::normalize(&mut span);
    assert_eq!(span.name, "veneur.trace.test");
    assert_eq!(
        span.tags.get("resource").map(String::as_str),
        Some("Robert'); DROP TABLE students;")
    );
    assert_eq!(
        span.tags.get("error.msg").map(String::as_str),
        Some("an error occurred!")
    );
    assert_eq!(
        span.tags.get("error.type").map(String::as_str),
        Some("type error interface")
    );
    assert!(
        span.tags
            .get("error.stack")
            .is_some_and(|s| s.contains('\n'))
    );
    assert!(!span.tags.contains_key("name"));
    assert_eq!(normalize::classify(&span), Ok(PacketClass::TraceSpan));
}

#[test]
fn span_with_operation_skips_field_9_and_is_not_a_trace_span() {
    let mut span = vector("span-with-operation-062017.pb");
    assert_eq!(span.version, 0);
    assert_eq!((span.trace_id, span.id, span.parent_id), (1, 1, 0));
    assert_eq!((span.start_timestamp, span.end_timestamp), (1, 10));
    assert_eq!(span.service, "testService");
    assert_eq!(span.tags.get("tag1").map(String::as_str), Some("value1"));
    normalize::normalize(&mut span);
    assert_eq!(span.name, "");
    assert!(!normalize::is_trace_span(&span));
    assert_eq!(normalize::classify(&span), Err(SsfError::InvalidSpan));
    assert_eq!(SsfError::InvalidSpan.reason(), "invalid_span");
}
