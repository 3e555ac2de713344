//! The read side (issue 4): joins a trace's stored spans into one tree (SPEC 5) and
//! renders SPEC 6's JSON, each span with its own logs and metrics. It never writes.
//! [`api`] parses search parameters and renders search and log answers; [`jaeger`]
//! renders Jaeger's read API; [`text`] renders answers for `ssfd query`.

pub mod api;
pub mod jaeger;
pub mod text;

use prost::Message;
use serde_json::{Value, json};
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Why a trace id in a path was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct BadId;

/// Parses a trace or span id: signed decimal, 16 hex digits (the two's-complement u64,
/// as Jaeger shows it) or 32 hex digits (an OTel id; its low 64 bits). SPEC 6.
/// A 16- or 32-character string of decimal digits only is read as hex when it starts
/// with `0` (decimal ids have no leading zeros), else as decimal.
pub fn parse_id(text: &str) -> Result<i64, BadId> {
    let is_hex = |t: &str| {
        t.bytes().all(|b| b.is_ascii_hexdigit())
            && (t.starts_with('0') || t.bytes().any(|b| b.is_ascii_alphabetic()))
    };
    match text.len() {
        16 if is_hex(text) => u64::from_str_radix(text, 16)
            .map(|v| v as i64)
            .map_err(|_| BadId),
        32 if is_hex(text) => u64::from_str_radix(&text[16..], 16)
            .map(|v| v as i64)
            .map_err(|_| BadId),
        _ => text.parse::<i64>().map_err(|_| BadId),
    }
}

/// A trace id on Jaeger's API: always hex, 1 to 32 digits (Jaeger's own rule; a longer
/// id keeps its low 64 bits, as OTel ids do here).
pub fn parse_jaeger_id(text: &str) -> Result<i64, BadId> {
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadId);
    }
    let low = &text[text.len().saturating_sub(16)..];
    u64::from_str_radix(low, 16)
        .map(|v| v as i64)
        .map_err(|_| BadId)
}

fn severity(status: i32) -> &'static str {
    match status {
        0 => "info",
        1 => "warn",
        2 => "error",
        _ => "unknown",
    }
}

fn is_log(sample: &SsfSample) -> bool {
    sample.metric == ssf_sample::Metric::Counter as i32
        && sample.value == 0.0
        && !sample.message.is_empty()
}

fn tags_object(tags: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
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

/// One span as SPEC 6's `SPAN`, with `children` already rendered.
pub fn span_json(span: &SsfSpan, children: Vec<Value>) -> Value {
    let logs: Vec<Value> = span
        .metrics
        .iter()
        .filter(|s| is_log(s))
        .map(|s| {
            json!({
                "timestamp_ns": if s.timestamp == 0 { span.start_timestamp } else { s.timestamp },
                "service": span.service,
                "trace_id": span.trace_id.to_string(),
                "span_id": span.id.to_string(),
                "name": s.name,
                "message": s.message,
                "severity": severity(s.status),
                "tags": tag_list(&s.tags),
            })
        })
        .collect();
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
        "id": span.id.to_string(),
        "parent_id": span.parent_id.to_string(),
        "name": span.name,
        "service": span.service,
        "start_ns": span.start_timestamp,
        "end_ns": span.end_timestamp,
        "duration_ns": span.end_timestamp - span.start_timestamp,
        "error": span.error,
        "indicator": span.indicator,
        "tags": tags_object(&span.tags),
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
        span_json(span, children)
    }
}

/// Joins `encoded` (one trace's stored spans, in arrival order) into SPEC 6's
/// `/api/v1/traces/{id}` answer; `None` when there is no span.
pub fn trace_json(trace_id: i64, encoded: &[Vec<u8>]) -> Option<Value> {
    let decoded = last_arrivals(encoded);
    if decoded.is_empty() {
        return None;
    }
    let spans: Vec<&SsfSpan> = decoded.iter().collect();
    let ids: HashSet<i64> = spans.iter().map(|s| s.id).collect();
    let root = spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.parent_id == 0 || s.id == s.trace_id)
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
        children,
        rendered: 0,
        visited: HashSet::new(),
    };
    // a root found by `id == trace_id` may name a parent ssfd never saw: as a root its
    // `parent_id` is "0" (SPEC 6)
    let root_json = root.map(|index| {
        let mut json = tree.render(index);
        json["parent_id"] = "0".into();
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
    Some(json!({
        "trace_id": trace_id.to_string(),
        "complete": root_json.is_some() && orphan_json.is_empty(),
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
        assert_eq!(parse_jaeger_id("1092"), Ok(0x1092));
        assert_eq!(parse_jaeger_id("4d2"), Ok(0x4d2));
        assert_eq!(parse_jaeger_id("00000000000004d2"), Ok(0x4d2));
        assert_eq!(
            parse_jaeger_id("0123456789abcdef00000000000004d2"),
            Ok(0x4d2)
        );
        assert_eq!(parse_jaeger_id("ffffffffffffffff"), Ok(-1));
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
        let trace = trace_json(1, &encoded).unwrap();
        assert_eq!(trace["complete"], true);
        assert_eq!(trace["span_count"], 4);
        assert_eq!(trace["orphan_count"], 0);
        assert_eq!(trace["duration_ns"], 40);
        assert_eq!(trace["services"], json!(["api", "db", "web"]));
        assert_eq!(
            ids(&trace["root"]),
            ["1", "2", "4", "3"],
            "children ordered by start"
        );
        assert_eq!(trace["root"]["parent_id"], "0");
        // a root by `id == trace_id` whose parent is elsewhere: still "0"
        let encoded = vec![span(1, 77, 10, "web").encode_to_vec()];
        let trace = trace_json(1, &encoded).unwrap();
        assert_eq!(trace["root"]["id"], "1");
        assert_eq!(trace["root"]["parent_id"], "0");
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
        let trace = trace_json(1, &encoded).unwrap();
        assert_eq!(trace["root"], Value::Null, "no parent-less span");
        assert_eq!(trace["complete"], false);
        assert_eq!(trace["span_count"], 4, "the duplicate id keeps one span");
        let orphans = trace["orphans"].as_array().unwrap();
        let first: Vec<&str> = orphans.iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert!(first.contains(&"2") && first.contains(&"5"), "{first:?}");
        let renamed = orphans.iter().find(|o| o["id"] == "2").unwrap();
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
        let trace = trace_json(1, &[root.encode_to_vec()]).unwrap();
        let logs = trace["root"]["logs"].as_array().unwrap();
        assert_eq!(
            (logs[0]["message"].as_str(), logs[0]["severity"].as_str()),
            (Some("hello"), Some("warn"))
        );
        assert_eq!(logs[0]["span_id"], "1");
        let metrics = trace["root"]["metrics"].as_array().unwrap();
        assert_eq!(
            metrics[0],
            json!({"name": "g", "type": "gauge", "value": 2.5, "tags": []})
        );
    }

    #[test]
    fn ids_in_paths() {
        assert_eq!(parse_id("-5"), Ok(-5));
        assert_eq!(parse_id("ffffffffffffffff"), Ok(-1));
        assert_eq!(parse_id("000000000000000000000000000004d2"), Ok(1234));
        assert_eq!(parse_id("00000000000004d2"), Ok(1234));
        assert_eq!(
            parse_id("1234567890123456"),
            Ok(1_234_567_890_123_456),
            "16 decimal digits, no leading zero"
        );
        assert_eq!(parse_id("0000000000001234"), Ok(0x1234));
        assert_eq!(parse_id("12x"), Err(BadId));
        assert_eq!(parse_id(""), Err(BadId));
    }
}
