//! The read side (issue 4): joins a trace's stored spans into one tree (SPEC 5) and
//! renders SPEC 6's JSON, each span with its own logs and metrics. It never writes.
//! [`api`] parses search parameters and renders search and log answers; [`jaeger`]
//! renders Jaeger's read API; [`text`] renders answers for `ssfd query`.

pub mod api;
pub mod fleet;
pub mod jaeger;
pub mod text;

use prost::Message;
use serde_json::{Value, json};
use ssfd_engine::LogRecord;
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample};
use ssfd_wire::ssfd::v1::attribute;
use std::collections::{BTreeSet, HashMap, HashSet};

pub use ssfd_wire::ids::{BadId, TraceId, span_hex};

/// The trace ids `text` may name, in SPEC 6's lookup order (hex first, then decimal),
/// or an error that says which forms are taken.
pub fn trace_ids(text: &str) -> Result<Vec<TraceId>, BadId> {
    TraceId::candidates(text)
}

/// A trace id on Jaeger's API: always hex, 1 to 32 digits (Jaeger's own rule), not 0.
pub fn parse_jaeger_id(text: &str) -> Result<TraceId, BadId> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 32 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadId(text.chars().take(64).collect()));
    }
    u128::from_str_radix(digits, 16)
        .ok()
        .map(TraceId)
        .filter(|id| !id.is_zero())
        .ok_or_else(|| BadId(text.chars().take(64).collect()))
}

/// A typed attribute value as JSON (SPEC 6): strings, numbers and booleans as they
/// were sent, arrays and maps as their JSON text.
pub fn attribute_json(value: &attribute::Value) -> Value {
    match value {
        attribute::Value::StringValue(s) | attribute::Value::JsonValue(s) => s.clone().into(),
        attribute::Value::IntValue(i) => (*i).into(),
        attribute::Value::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::from(d.to_string()), Value::Number),
        attribute::Value::BoolValue(b) => (*b).into(),
    }
}

/// A span's tags as a JSON object, each typed as it was sent (extension field 1003
/// holds the types of the non-string ones).
pub fn typed_tags(span: &SsfSpan) -> serde_json::Map<String, Value> {
    let mut tags: serde_json::Map<String, Value> = span
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    for attribute in &span.attributes {
        if let Some(value) = &attribute.value {
            tags.insert(attribute.key.clone(), attribute_json(value));
        }
    }
    tags
}

/// A span's resource attributes (extension field 1002) as a JSON object.
pub fn resource_json(span: &SsfSpan) -> serde_json::Map<String, Value> {
    span.resource
        .iter()
        .filter_map(|a| Some((a.key.clone(), attribute_json(a.value.as_ref()?))))
        .collect()
}

/// The log samples a span carries, as records with its context (SPEC 5).
pub fn embedded_logs(span: &SsfSpan) -> Vec<LogRecord> {
    span.metrics
        .iter()
        .filter(|s| is_log(s))
        .map(|s| {
            let mut tags = tag_list(&s.tags);
            tags.sort();
            LogRecord {
                kind: ssfd_engine::LogKind::Log,
                timestamp_ns: if s.timestamp == 0 {
                    span.start_timestamp
                } else {
                    s.timestamp
                },
                service: span.service.clone(),
                trace_id: Some(TraceId::from_parts(span.trace_id_high, span.trace_id)),
                span_id: Some(span.id),
                name: s.name.clone(),
                message: s.message.clone(),
                severity: ssfd_engine::Severity::from_status(s.status),
                tags,
            }
        })
        .collect()
}

/// A trace's log records placed as SPEC 5 says: under the span with their span id
/// (its embedded samples first), or at trace level when no stored span has it. A
/// record the log index holds that is also a span's embedded sample is shown once.
pub struct PlacedLogs {
    pub by_span: HashMap<i64, Vec<LogRecord>>,
    pub trace_level: Vec<LogRecord>,
}

pub fn place_logs(spans: &[SsfSpan], records: &[LogRecord]) -> PlacedLogs {
    let mut by_span: HashMap<i64, Vec<LogRecord>> = HashMap::new();
    // how many of each span's records are its embedded samples
    let mut embedded: HashMap<i64, usize> = HashMap::new();
    for span in spans {
        let logs = embedded_logs(span);
        if !logs.is_empty() {
            embedded.insert(span.id, logs.len());
            by_span.insert(span.id, logs);
        }
    }
    let ids: HashSet<i64> = spans.iter().map(|s| s.id).collect();
    let mut trace_level = Vec::new();
    for record in records {
        match record.span_id.filter(|id| ids.contains(id)) {
            Some(span_id) => {
                let logs = by_span.entry(span_id).or_default();
                // the index's copy of an embedded sample; two records the index holds are
                // never merged
                let samples = embedded.get(&span_id).copied().unwrap_or(0);
                let duplicate = logs[..samples].iter().any(|l| {
                    l.timestamp_ns == record.timestamp_ns
                        && l.message == record.message
                        && l.name == record.name
                        && l.severity == record.severity
                        && l.tags == record.tags
                });
                if !duplicate {
                    logs.push(record.clone());
                }
            }
            None => trace_level.push(record.clone()),
        }
    }
    for logs in by_span.values_mut() {
        logs.sort_by_key(|l| l.timestamp_ns);
    }
    trace_level.sort_by_key(|l| l.timestamp_ns);
    PlacedLogs {
        by_span,
        trace_level,
    }
}

fn is_log(sample: &SsfSample) -> bool {
    sample.metric == ssf_sample::Metric::Counter as i32
        && sample.value == 0.0
        && !sample.message.is_empty()
}

fn tag_list(tags: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    tags.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}:{v}")
            }
        })
        .collect()
}

/// One span as SPEC 6's `SPAN`, with `children` already rendered and `logs` its
/// placed log records.
pub fn span_json(span: &SsfSpan, children: Vec<Value>, logs: &[LogRecord]) -> Value {
    let logs: Vec<Value> = logs.iter().map(api::log_json).collect();
    let metrics: Vec<Value> = span
        .metrics
        .iter()
        .filter(|s| !is_log(s))
        .map(|s| {
            let kind = match ssf_sample::Metric::try_from(s.metric) {
                Ok(ssf_sample::Metric::Counter) => "counter",
                Ok(ssf_sample::Metric::Gauge) => "gauge",
                Ok(ssf_sample::Metric::Histogram) => "histogram",
                Ok(ssf_sample::Metric::Set) => "set",
                _ => "status",
            };
            let value: Value = match kind {
                "set" => s.message.clone().into(),
                "status" => s.status.into(),
                _ => f64::from(s.value).into(),
            };
            json!({ "name": s.name, "type": kind, "value": value, "tags": tag_list(&s.tags) })
        })
        .collect();
    json!({
        "id": span_hex(span.id),
        "parent_id": span_hex(span.parent_id),
        "name": span.name,
        "service": span.service,
        "start_ns": span.start_timestamp,
        "end_ns": span.end_timestamp,
        "duration_ns": span.end_timestamp - span.start_timestamp,
        "error": span.error,
        "indicator": span.indicator,
        "tags": typed_tags(span),
        "resource": resource_json(span),
        "logs": logs,
        "metrics": metrics,
        "children": children,
    })
}

/// A trace's stored spans decoded, one per span id: a duplicate id keeps its last
/// arrival, in the place of its first (SPEC 5). Undecodable bytes are skipped.
pub fn last_arrivals(encoded: &[Vec<u8>]) -> Vec<SsfSpan> {
    let mut place: HashMap<i64, usize> = HashMap::new();
    let mut spans: Vec<SsfSpan> = Vec::new();
    for bytes in encoded {
        let Ok(span) = SsfSpan::decode(&bytes[..]) else {
            continue;
        };
        match place.get(&span.id) {
            Some(&index) => spans[index] = span,
            None => {
                place.insert(span.id, spans.len());
                spans.push(span);
            }
        }
    }
    spans
}

/// The most spans one answer renders; a larger trace is truncated and says so
/// (`truncated: true`, `span_count` still counts every span).
pub const MAX_SPANS_PER_RESPONSE: usize = 10_000;

struct Tree<'a> {
    spans: Vec<&'a SsfSpan>,
    logs: &'a HashMap<i64, Vec<LogRecord>>,
    children: HashMap<i64, Vec<usize>>,
    rendered: usize,
    visited: HashSet<i64>,
}

impl Tree<'_> {
    fn render(&mut self, index: usize) -> Value {
        let span = self.spans[index];
        self.visited.insert(span.id);
        self.rendered += 1;
        let mut child_indices = self.children.get(&span.id).cloned().unwrap_or_default();
        child_indices.sort_by_key(|&i| (self.spans[i].start_timestamp, self.spans[i].id));
        let mut children = Vec::new();
        for child in child_indices {
            // a cycle (a span that is its own ancestor) and the response cap stop here
            if self.visited.contains(&self.spans[child].id)
                || self.rendered >= MAX_SPANS_PER_RESPONSE
            {
                continue;
            }
            children.push(self.render(child));
        }
        let logs = self.logs.get(&span.id).map_or(&[][..], Vec::as_slice);
        span_json(span, children, logs)
    }
}

/// Joins `encoded` (one trace's stored spans, in arrival order) and `records` (the log
/// records with its trace id) into SPEC 6's `/api/v1/traces/{id}` answer; `None` when
/// there is neither a span nor a record.
pub fn trace_json(trace_id: TraceId, encoded: &[Vec<u8>], records: &[LogRecord]) -> Option<Value> {
    let decoded = last_arrivals(encoded);
    if decoded.is_empty() && records.is_empty() {
        return None;
    }
    let placed = place_logs(&decoded, records);
    let spans: Vec<&SsfSpan> = decoded.iter().collect();
    let ids: HashSet<i64> = spans.iter().map(|s| s.id).collect();
    let root = spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parent_id == 0 || s.id == trace_id.low())
        .min_by_key(|(_, s)| (s.start_timestamp, s.id))
        .map(|(i, _)| i);
    let mut children: HashMap<i64, Vec<usize>> = HashMap::new();
    let mut orphans = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        if Some(index) == root {
            continue;
        }
        if span.parent_id != 0 && span.parent_id != span.id && ids.contains(&span.parent_id) {
            children.entry(span.parent_id).or_default().push(index);
        } else {
            orphans.push(index);
        }
    }
    orphans.sort_by_key(|&i| (spans[i].start_timestamp, spans[i].id));
    let start = spans.iter().map(|s| s.start_timestamp).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_timestamp).max().unwrap_or(0);
    let services: BTreeSet<&str> = spans
        .iter()
        .map(|s| s.service.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let span_count = spans.len();
    let mut tree = Tree {
        spans,
        logs: &placed.by_span,
        children,
        rendered: 0,
        visited: HashSet::new(),
    };
    // a root found by `id == trace_id` may name a parent ssfd never saw: as a root its
    // `parent_id` is zero (SPEC 6)
    let root_json = root.map(|index| {
        let mut json = tree.render(index);
        json["parent_id"] = span_hex(0).into();
        json
    });
    let mut orphan_json = Vec::new();
    for index in orphans.iter().copied() {
        if tree.rendered >= MAX_SPANS_PER_RESPONSE {
            break;
        }
        orphan_json.push(tree.render(index));
    }
    // spans only reachable through a cycle are orphans too
    let unreached: Vec<usize> = (0..tree.spans.len())
        .filter(|&i| !tree.visited.contains(&tree.spans[i].id))
        .collect();
    for index in unreached {
        if tree.rendered >= MAX_SPANS_PER_RESPONSE || tree.visited.contains(&tree.spans[index].id) {
            continue;
        }
        orphan_json.push(tree.render(index));
    }
    // the records of spans past the response cap are shown at trace level, not lost
    let mut trace_logs: Vec<&LogRecord> = placed.trace_level.iter().collect();
    for span in &tree.spans {
        if !tree.visited.contains(&span.id) {
            trace_logs.extend(placed.by_span.get(&span.id).into_iter().flatten());
        }
    }
    trace_logs.sort_by_key(|l| l.timestamp_ns);
    Some(json!({
        "trace_id": trace_id.to_string(),
        "complete": root_json.is_some() && orphan_json.is_empty(),
        "logs": trace_logs.into_iter().map(api::log_json).collect::<Vec<_>>(),
        "span_count": span_count,
        "orphan_count": orphan_json.len(),
        "duration_ns": end - start,
        "services": services.into_iter().collect::<Vec<_>>(),
        "root": root_json.unwrap_or(Value::Null),
        "orphans": orphan_json,
        "truncated": tree.rendered < span_count,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaeger_ids_are_hex() {
        assert_eq!(parse_jaeger_id("1092"), Ok(TraceId(0x1092)));
        assert_eq!(parse_jaeger_id("4d2"), Ok(TraceId(0x4d2)));
        assert_eq!(parse_jaeger_id("00000000000004d2"), Ok(TraceId(0x4d2)));
        assert_eq!(
            parse_jaeger_id("0123456789abcdef00000000000004d2"),
            Ok(TraceId::from_parts(0x0123456789abcdef, 0x4d2))
        );
        assert_eq!(
            parse_jaeger_id("ffffffffffffffff"),
            Ok(TraceId::from_parts(0, -1))
        );
        assert!(parse_jaeger_id("0").is_err());
        assert!(parse_jaeger_id("").is_err());
        assert!(parse_jaeger_id("xyz").is_err());
        assert!(parse_jaeger_id(&"1".repeat(33)).is_err());
    }

    fn span(id: i64, parent: i64, start: i64, service: &str) -> SsfSpan {
        SsfSpan {
            trace_id: 1,
            id,
            parent_id: parent,
            start_timestamp: start,
            end_timestamp: start + 10,
            service: service.into(),
            name: format!("op{id}"),
            ..Default::default()
        }
    }

    fn ids(value: &Value) -> Vec<String> {
        let mut out = vec![value["id"].as_str().unwrap().to_string()];
        for child in value["children"].as_array().unwrap() {
            out.extend(ids(child));
        }
        out
    }

    #[test]
    fn joins_out_of_order_spans_into_one_tree() {
        let encoded: Vec<Vec<u8>> = [
            span(4, 2, 40, "db"),
            span(3, 1, 30, "api"),
            span(2, 1, 20, "api"),
            span(1, 0, 10, "web"),
        ]
        .iter()
        .map(|s| s.encode_to_vec())
        .collect();
        let trace = trace_json(TraceId(1), &encoded, &[]).unwrap();
        assert_eq!(trace["complete"], true);
        assert_eq!(trace["span_count"], 4);
        assert_eq!(trace["orphan_count"], 0);
        assert_eq!(trace["duration_ns"], 40);
        assert_eq!(trace["services"], json!(["api", "db", "web"]));
        assert_eq!(
            ids(&trace["root"]),
            [1, 2, 4, 3].map(span_hex),
            "children ordered by start"
        );
        assert_eq!(trace["root"]["parent_id"], "0000000000000000");
        assert_eq!(trace["trace_id"], "00000000000000000000000000000001");
        // a root by `id == trace_id` whose parent is elsewhere: still zero
        let encoded = vec![span(1, 77, 10, "web").encode_to_vec()];
        let trace = trace_json(TraceId(1), &encoded, &[]).unwrap();
        assert_eq!(trace["root"]["id"], "0000000000000001");
        assert_eq!(trace["root"]["parent_id"], "0000000000000000");
    }

    #[test]
    fn orphans_duplicates_and_cycles() {
        let mut late = span(2, 1, 20, "api");
        late.name = "renamed".into();
        let encoded: Vec<Vec<u8>> = [
            span(2, 1, 20, "api"),
            span(5, 99, 50, "x"),
            late,
            span(7, 8, 70, "c"),
            span(8, 7, 80, "c"),
        ]
        .iter()
        .map(|s| s.encode_to_vec())
        .collect();
        let trace = trace_json(TraceId(1), &encoded, &[]).unwrap();
        assert_eq!(trace["root"], Value::Null, "no parent-less span");
        assert_eq!(trace["complete"], false);
        assert_eq!(trace["span_count"], 4, "the duplicate id keeps one span");
        let orphans = trace["orphans"].as_array().unwrap();
        let first: Vec<&str> = orphans.iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert!(
            first.contains(&span_hex(2).as_str()) && first.contains(&span_hex(5).as_str()),
            "{first:?}"
        );
        let renamed = orphans.iter().find(|o| o["id"] == span_hex(2)).unwrap();
        assert_eq!(renamed["name"], "renamed", "the last arrival wins");
        let rendered: usize = orphans.iter().map(|o| ids(o).len()).sum();
        assert_eq!(rendered, 4, "the 7↔8 cycle renders once");
    }

    #[test]
    fn logs_and_metrics_belong_to_their_span() {
        let mut root = span(1, 0, 10, "web");
        root.metrics = vec![
            SsfSample {
                metric: 0,
                name: "logger".into(),
                message: "hello".into(),
                status: 1,
                ..Default::default()
            },
            SsfSample {
                metric: 1,
                name: "g".into(),
                value: 2.5,
                ..Default::default()
            },
        ];
        let trace = trace_json(TraceId(1), &[root.encode_to_vec()], &[]).unwrap();
        let logs = trace["root"]["logs"].as_array().unwrap();
        assert_eq!(
            (logs[0]["message"].as_str(), logs[0]["severity"].as_str()),
            (Some("hello"), Some("warn"))
        );
        assert_eq!(logs[0]["span_id"], "0000000000000001");
        let metrics = trace["root"]["metrics"].as_array().unwrap();
        assert_eq!(
            metrics[0],
            json!({"name": "g", "type": "gauge", "value": 2.5, "tags": []})
        );
    }

    fn record(span_id: Option<i64>, timestamp_ns: i64, message: &str) -> LogRecord {
        LogRecord {
            kind: ssfd_engine::LogKind::Log,
            timestamp_ns,
            service: "web".into(),
            trace_id: Some(TraceId(1)),
            span_id,
            name: "app".into(),
            message: message.into(),
            severity: ssfd_engine::Severity::Info,
            tags: Vec::new(),
        }
    }

    #[test]
    fn log_records_join_their_span_or_the_trace() {
        let mut root = span(1, 0, 10, "web");
        root.metrics = vec![SsfSample {
            name: "app".into(),
            message: "embedded".into(),
            timestamp: 11,
            ..Default::default()
        }];
        root.attributes.push(ssfd_wire::ssfd::v1::Attribute {
            key: "http.status_code".into(),
            value: Some(attribute::Value::IntValue(502)),
        });
        root.tags.insert("http.status_code".into(), "502".into());
        root.tags.insert("http.route".into(), "/a".into());
        root.resource.push(ssfd_wire::ssfd::v1::Attribute {
            key: "k8s.pod.name".into(),
            value: Some(attribute::Value::StringValue("pod-1".into())),
        });
        let child = span(2, 1, 20, "db");
        let records = [
            record(Some(2), 25, "under the child"),
            // the embedded sample, also found in the log index: shown once
            record(Some(1), 11, "embedded"),
            record(Some(404), 30, "span not stored"),
            record(None, 5, "no span id"),
            // two equal records the index holds are both shown
            record(Some(2), 26, "twice"),
            record(Some(2), 26, "twice"),
        ];
        let trace = trace_json(
            TraceId(1),
            &[child.encode_to_vec(), root.encode_to_vec()],
            &records,
        )
        .unwrap();
        let messages = |logs: &Value| -> Vec<String> {
            logs.as_array()
                .unwrap()
                .iter()
                .map(|l| l["message"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(messages(&trace["root"]["logs"]), ["embedded"]);
        assert_eq!(
            messages(&trace["root"]["children"][0]["logs"]),
            ["under the child", "twice", "twice"]
        );
        assert_eq!(messages(&trace["logs"]), ["no span id", "span not stored"]);
        assert_eq!(trace["root"]["tags"]["http.status_code"], 502, "typed");
        assert_eq!(trace["root"]["tags"]["http.route"], "/a");
        assert_eq!(trace["root"]["resource"], json!({"k8s.pod.name": "pod-1"}));
        // records without any stored span still answer, at trace level
        let only_logs = trace_json(TraceId(1), &[], &records[..1]).unwrap();
        assert_eq!(only_logs["root"], Value::Null);
        assert_eq!(messages(&only_logs["logs"]), ["under the child"]);
        assert!(trace_json(TraceId(1), &[], &[]).is_none());
    }

    #[test]
    fn records_of_spans_past_the_cap_are_shown_at_trace_level() {
        // a root with MAX_SPANS_PER_RESPONSE children: the last child is not rendered
        let mut encoded = vec![span(1, 0, 0, "web").encode_to_vec()];
        for id in 2..=(MAX_SPANS_PER_RESPONSE as i64 + 1) {
            encoded.push(span(id, 1, id, "api").encode_to_vec());
        }
        let last = MAX_SPANS_PER_RESPONSE as i64 + 1;
        let trace = trace_json(TraceId(1), &encoded, &[record(Some(last), 9, "late")]).unwrap();
        assert_eq!(trace["truncated"], true);
        assert_eq!(
            trace["logs"][0]["message"], "late",
            "not lost with its span"
        );
    }
}
