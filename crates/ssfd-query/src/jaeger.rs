//! The Jaeger-compatible read API (SPEC 6; the one Grafana's Jaeger data source
//! calls), in Jaeger's JSON: ids as 16 hex digits, times in microseconds, tags and log
//! fields as `{key, type, value}`, one process per service.

use serde_json::{Value, json};
use ssfd_store::TraceQuery;
use ssfd_wire::ssf::SsfSpan;
use std::collections::BTreeMap;

/// A span id as Jaeger shows it: the two's-complement u64 in 16 hex digits.
pub fn hex_id(id: i64) -> String {
    crate::span_hex(id)
}

/// Jaeger's envelope around `data`.
pub fn envelope(data: Value) -> Value {
    let total = data.as_array().map_or(0, Vec::len);
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null })
}

/// Jaeger's envelope around `data` with per-trace errors (`null` when there are none).
pub fn envelope_with_errors(data: Value, errors: Vec<Value>) -> Value {
    let mut answer = envelope(data);
    if !errors.is_empty() {
        answer["errors"] = Value::Array(errors);
    }
    answer
}

/// Jaeger's error entry for a trace id that was asked for and not found, named as the
/// client asked for it (see [`trace_ids`]).
pub fn trace_not_found(asked: &str) -> Value {
    json!({ "code": 404, "msg": "trace not found", "traceID": asked })
}

/// At most this many `traceID` parameters in one lookup.
pub const MAX_TRACE_IDS: usize = 1000;

/// The `traceID` parameters of `GET /api/traces` (repeated, as the Jaeger UI sends
/// them to look traces up by id), in order, each trace once, with each id as Jaeger
/// prints it (16 hex digits, or 32 when the high half is not zero). With any, Jaeger
/// answers those traces and ignores every other parameter.
pub fn trace_ids(raw: Option<&str>) -> Result<Vec<(crate::TraceId, String)>, String> {
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in crate::api::pairs(raw) {
        if key != "traceID" || value.is_empty() {
            continue;
        }
        let id = crate::parse_jaeger_id(&value).map_err(|_| {
            format!("`traceID` must be 1 to 32 hex digits, not zero, not `{value}`")
        })?;
        if seen.insert(id) {
            if ids.len() == MAX_TRACE_IDS {
                return Err(format!("at most {MAX_TRACE_IDS} `traceID` parameters"));
            }
            // the id parsed, so its trimmed text is ASCII hex
            ids.push((id, jaeger_display(value.trim())));
        }
    }
    Ok(ids)
}

/// A valid hex trace id as Jaeger prints it: lower case, 16 digits, or 32 when its
/// high half is not zero.
fn jaeger_display(hex: &str) -> String {
    let hex = hex.to_ascii_lowercase();
    let padded = format!("{hex:0>32}");
    if padded[..16].bytes().all(|b| b == b'0') {
        padded[16..].to_string()
    } else {
        padded
    }
}

/// Jaeger's error answer.
pub fn error(code: u16, message: &str) -> Value {
    json!({
        "data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{ "code": code, "msg": message }],
    })
}

fn kv(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

/// A tag or log field in Jaeger's typed form, from a JSON value of SPEC 6's trace
/// answer (strings, numbers and booleans as sent).
fn typed_kv(key: &str, value: &Value) -> Value {
    match value {
        Value::Bool(b) => json!({ "key": key, "type": "bool", "value": b }),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            json!({ "key": key, "type": "int64", "value": n })
        }
        Value::Number(n) => json!({ "key": key, "type": "float64", "value": n }),
        Value::String(s) => kv(key, s),
        other => kv(key, &other.to_string()),
    }
}

/// A log record as a Jaeger span log.
fn log_of(record: &ssfd_engine::LogRecord) -> Value {
    let mut fields = vec![
        kv("event", &record.name),
        kv("message", &record.message),
        kv("level", record.severity.label()),
    ];
    fields.extend(record.tags.iter().map(|tag| match tag.split_once(':') {
        Some((k, v)) => kv(k, v),
        None => kv(tag, ""),
    }));
    json!({ "timestamp": record.timestamp_ns / 1000, "fields": fields })
}

/// One trace in Jaeger's format, its spans with their logs (the log records with the
/// trace id placed as SPEC 5 says; one without a stored span goes to the root, else to
/// the earliest span); `None` when no span decodes. Duplicate span ids keep the last
/// arrival.
pub fn trace(
    trace_id: crate::TraceId,
    encoded: &[Vec<u8>],
    records: &[ssfd_engine::LogRecord],
) -> Option<Value> {
    let decoded = crate::last_arrivals(encoded);
    if decoded.is_empty() {
        return None;
    }
    let placed = crate::place_logs(&decoded, records);
    let mut spans: Vec<&SsfSpan> = decoded.iter().collect();
    spans.sort_by_key(|s| (s.start_timestamp, s.id));
    let total = spans.len();
    // the same cap as the tree answer: the earliest-starting spans, and a warning
    spans.truncate(crate::MAX_SPANS_PER_RESPONSE);
    let warnings = (total > spans.len()).then(|| {
        vec![format!(
            "truncated: the first {} of {total} spans by start time",
            spans.len()
        )]
    });
    // one process per service and resource (two pods of a service are two processes)
    let resources: Vec<serde_json::Map<String, Value>> =
        spans.iter().map(|s| crate::resource_json(s)).collect();
    let process_keys: Vec<(String, String)> = spans
        .iter()
        .zip(&resources)
        .map(|(s, r)| (s.service.clone(), Value::Object(r.clone()).to_string()))
        .collect();
    let mut processes: BTreeMap<(String, String), (String, Value)> = BTreeMap::new();
    for ((key, resource), span) in process_keys.iter().zip(&resources).zip(&spans) {
        processes.entry(key.clone()).or_insert_with(|| {
            let tags: Vec<Value> = resource.iter().map(|(k, v)| typed_kv(k, v)).collect();
            (
                String::new(),
                json!({ "serviceName": span.service, "tags": tags }),
            )
        });
    }
    // named in service order, as before resources were kept
    for (index, (name, _)) in processes.values_mut().enumerate() {
        *name = format!("p{}", index + 1);
    }
    let trace_hex = trace_id.to_string();
    let root = spans
        .iter()
        .filter(|s| s.parent_id == 0 || s.id == trace_id.low())
        .min_by_key(|s| (s.start_timestamp, s.id))
        .or(spans.first())
        .map(|s| s.id);
    let spans_json: Vec<Value> = spans
        .iter()
        .zip(&process_keys)
        .map(|(span, key)| {
            let mut tags: Vec<Value> = crate::typed_tags(span)
                .iter()
                .map(|(k, v)| typed_kv(k, v))
                .collect();
            if span.error {
                tags.push(json!({ "key": "error", "type": "bool", "value": true }));
            }
            if span.indicator {
                tags.push(json!({ "key": "indicator", "type": "bool", "value": true }));
            }
            let mut logs: Vec<Value> = placed
                .by_span
                .get(&span.id)
                .into_iter()
                .flatten()
                .map(log_of)
                .collect();
            if Some(span.id) == root {
                logs.extend(placed.trace_level.iter().map(log_of));
            }
            let references: Vec<Value> = if span.parent_id != 0 && span.id != trace_id.low() {
                vec![json!({
                    "refType": "CHILD_OF",
                    "traceID": trace_hex,
                    "spanID": hex_id(span.parent_id),
                })]
            } else {
                Vec::new()
            };
            json!({
                "traceID": trace_hex,
                "spanID": hex_id(span.id),
                "flags": 1,
                "operationName": span.name,
                "references": references,
                "startTime": span.start_timestamp / 1000,
                "duration": (span.end_timestamp - span.start_timestamp) / 1000,
                "tags": tags,
                "logs": logs,
                "processID": processes[key].0,
                "warnings": null,
            })
        })
        .collect();
    let processes: serde_json::Map<String, Value> = processes.into_values().collect();
    Some(json!({
        "traceID": trace_hex,
        "spans": spans_json,
        "processes": processes,
        "warnings": warnings,
    }))
}

/// The window of Jaeger's `GET /api/dependencies?endTs=&lookback=` (both in
/// milliseconds; `endTs` defaults to now and `lookback` to an hour), in nanoseconds.
pub fn dependency_window(raw: Option<&str>) -> Result<(i64, i64), String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (mut end_ms, mut lookback_ms) = (now_ms, 3_600_000i64);
    for (key, value) in crate::api::pairs(raw) {
        let millis = || {
            value
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| format!("`{key}` must be milliseconds, not `{value}`"))
        };
        match key.as_str() {
            "endTs" => end_ms = millis()?,
            "lookback" => lookback_ms = millis()?,
            // as Jaeger, other parameters are ignored
            _ => {}
        }
    }
    let end = end_ms.saturating_mul(1_000_000);
    Ok((
        end.saturating_sub(lookback_ms.saturating_mul(1_000_000)),
        end,
    ))
}

/// The service map in Jaeger's format.
pub fn dependencies(edges: &[ssfd_store::Dependency]) -> Value {
    let data: Vec<Value> = edges
        .iter()
        .map(|e| json!({ "parent": e.parent, "child": e.child, "callCount": e.call_count }))
        .collect();
    envelope(Value::Array(data))
}

/// A `lookback` of the Jaeger UI: a Go duration, or days (`2d`) or weeks (`2w`).
fn lookback_ns(text: &str) -> Option<i64> {
    let day = 86_400_000_000_000i64;
    let count = |unit: char| {
        text.strip_suffix(unit)
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0)
    };
    if let Some(days) = count('d') {
        return Some(days.saturating_mul(day));
    }
    if let Some(weeks) = count('w') {
        return Some(weeks.saturating_mul(7 * day));
    }
    crate::api::parse_duration_ns("lookback", text).ok()
}

/// `GET /api/traces` parameters in Jaeger's units: `start`/`end` in unix
/// microseconds (both inclusive, as Jaeger), `lookback` a Go duration (or `custom`), `tags` a JSON object (as the
/// Jaeger UI sends it) or `key:value`/`key=value` pairs, durations Go-style, `limit`
/// (default 20). Unknown parameters are ignored, as Jaeger does.
pub fn search_query(raw: Option<&str>) -> Result<TraceQuery, String> {
    let mut query = TraceQuery {
        limit: 20,
        ..Default::default()
    };
    let mut lookback = None;
    let micros = |key: &str, text: &str| {
        text.parse::<i64>()
            .map(|us| us.saturating_mul(1000))
            .map_err(|_| format!("`{key}` must be unix microseconds, not `{text}`"))
    };
    let mut tags: Vec<(String, String)> = Vec::new();
    for (key, value) in crate::api::pairs(raw) {
        if value.is_empty() {
            continue;
        }
        match key.as_str() {
            "service" => query.service = Some(value),
            "operation" => query.name = Some(value),
            "tags" => {
                let object: serde_json::Map<String, Value> = serde_json::from_str(&value)
                    .map_err(|_| format!("`tags` must be a JSON object, not `{value}`"))?;
                for (k, v) in object {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    tags.push((k, v));
                }
            }
            "tag" => {
                let (k, v) = value.split_once([':', '=']).unwrap_or((value.as_str(), ""));
                tags.push((k.to_string(), v.to_string()));
            }
            "start" => query.start_ns = Some(micros(&key, &value)?),
            // Jaeger's `end` is inclusive: its whole microsecond counts
            "end" => query.end_ns = Some(micros(&key, &value)?.saturating_add(1000)),
            // the Jaeger UI's `2d`, `7d`, `2w` too; one that does not read is ignored, as
            // Jaeger's own API ignores `lookback` (its UI sends `start` and `end`)
            "lookback" => lookback = lookback_ns(&value),
            "minDuration" => {
                query.min_duration_ns = Some(crate::api::parse_duration_ns(&key, &value)?)
            }
            "maxDuration" => {
                query.max_duration_ns = Some(crate::api::parse_duration_ns(&key, &value)?)
            }
            "limit" => {
                query.limit = match value.parse::<usize>() {
                    Ok(0) => 20,
                    Ok(limit) => limit.min(crate::api::MAX_LIMIT),
                    Err(_) => return Err(format!("`limit` must be a number, not `{value}`")),
                }
            }
            _ => {}
        }
    }
    for (key, value) in tags {
        if key == "error" {
            query.error = Some(value == "true");
        } else {
            query.tags.push((key, value));
        }
    }
    if let (Some(lookback), None) = (lookback, query.start_ns) {
        let end = query.end_ns.unwrap_or_else(ssfd_engine::record::now_ns);
        query.start_ns = Some(end.saturating_sub(lookback));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookbacks_of_the_jaeger_ui() {
        let day = 86_400_000_000_000i64;
        assert_eq!(lookback_ns("2d"), Some(2 * day));
        assert_eq!(lookback_ns("2w"), Some(14 * day));
        assert_eq!(lookback_ns("1h"), Some(3_600_000_000_000));
        assert_eq!(lookback_ns("custom"), None);
        let query = search_query(Some("service=a&lookback=7d&end=1000000")).unwrap();
        assert_eq!(query.start_ns, Some(1_000_001_000 - 7 * day));
        assert!(search_query(Some("service=a&lookback=whenever")).is_ok());
    }
    use prost::Message;
    use ssfd_wire::ssf::SsfSample;

    #[test]
    fn jaeger_shape() {
        let mut root = SsfSpan {
            trace_id: -2,
            id: -2,
            start_timestamp: 5_000_000,
            end_timestamp: 9_000_000,
            service: "web".into(),
            name: "GET /".into(),
            error: true,
            ..Default::default()
        };
        root.tags.insert("http.method".into(), "GET".into());
        root.metrics.push(SsfSample {
            name: "log".into(),
            message: "hello".into(),
            timestamp: 6_000_000,
            ..Default::default()
        });
        let child = SsfSpan {
            trace_id: -2,
            id: 7,
            parent_id: -2,
            start_timestamp: 6_000_000,
            end_timestamp: 7_000_000,
            service: "db".into(),
            name: "select".into(),
            ..Default::default()
        };
        root.attributes.push(ssfd_wire::ssfd::v1::Attribute {
            key: "http.status_code".into(),
            value: Some(ssfd_wire::ssfd::v1::attribute::Value::IntValue(502)),
        });
        root.tags.insert("http.status_code".into(), "502".into());
        root.resource.push(ssfd_wire::ssfd::v1::Attribute {
            key: "host.name".into(),
            value: Some(ssfd_wire::ssfd::v1::attribute::Value::StringValue(
                "h1".into(),
            )),
        });
        let unplaced = ssfd_engine::LogRecord {
            kind: ssfd_engine::LogKind::Log,
            timestamp_ns: 8_000_000,
            service: "web".into(),
            trace_id: Some(crate::TraceId::from_parts(0, -2)),
            span_id: Some(99),
            name: "app".into(),
            message: "no span of its own".into(),
            severity: ssfd_engine::Severity::Warn,
            tags: vec!["k:v".into()],
        };
        let trace = trace(
            crate::TraceId::from_parts(0, -2),
            &[child.encode_to_vec(), root.encode_to_vec()],
            &[unplaced],
        )
        .unwrap();
        assert_eq!(trace["traceID"], "0000000000000000fffffffffffffffe");
        assert!(
            spans_tags(&trace, 0)
                .contains(&json!({"key": "http.status_code", "type": "int64", "value": 502})),
            "typed tags"
        );
        assert_eq!(
            trace["processes"][trace["spans"][0]["processID"].as_str().unwrap()]["tags"],
            json!([{"key": "host.name", "type": "string", "value": "h1"}])
        );
        assert_eq!(
            trace["spans"][0]["logs"][1]["fields"][1]["value"], "no span of its own",
            "a record without a stored span goes to the root"
        );
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans[0]["spanID"], "fffffffffffffffe", "ordered by start");
        assert_eq!(spans[0]["startTime"], 5000, "microseconds");
        assert_eq!(spans[0]["duration"], 4000);
        assert_eq!(spans[0]["references"], json!([]));
        assert_eq!(spans[0]["processID"], "p2");
        assert!(
            spans[0]["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "error", "type": "bool", "value": true}))
        );
        assert_eq!(spans[0]["logs"][0]["timestamp"], 6000);
        assert_eq!(
            spans[0]["logs"][0]["fields"][1],
            json!({"key": "message", "type": "string", "value": "hello"})
        );
        assert_eq!(
            spans[1]["references"],
            json!([{"refType": "CHILD_OF", "traceID": "0000000000000000fffffffffffffffe", "spanID": "fffffffffffffffe"}])
        );
        assert_eq!(
            trace["processes"]["p1"],
            json!({"serviceName": "db", "tags": []})
        );
    }

    fn spans_tags(trace: &Value, index: usize) -> Vec<Value> {
        trace["spans"][index]["tags"].as_array().unwrap().clone()
    }

    #[test]
    fn jaeger_search_parameters() {
        let query = search_query(Some(
            "service=web&operation=GET+%2F&tags=%7B%22error%22%3A%22true%22%2C%22env%22%3A%22prod%22%7D&start=1000&end=3000&minDuration=1ms&limit=0&spanKind=server",
        ))
        .unwrap();
        assert_eq!(query.service.as_deref(), Some("web"));
        assert_eq!(query.name.as_deref(), Some("GET /"));
        assert_eq!(query.error, Some(true));
        assert_eq!(query.tags, [("env".into(), "prod".into())]);
        assert_eq!(
            (query.start_ns, query.end_ns),
            (Some(1_000_000), Some(3_001_000))
        );
        assert_eq!(query.min_duration_ns, Some(1_000_000));
        assert_eq!(query.limit, 20);
        let query = search_query(Some("end=10000000&lookback=1ms")).unwrap();
        assert_eq!(query.start_ns, Some(10_000_001_000 - 1_000_000));
        assert!(search_query(Some("tags=notjson")).is_err());
        assert!(search_query(Some("start=soon")).is_err());
    }

    #[test]
    fn trace_ids_of_a_lookup_by_id() {
        assert_eq!(
            trace_ids(Some(
                "traceID=2&traceID=fffffffffffffffe&service=x&traceID=0002"
            ))
            .unwrap(),
            [
                (crate::TraceId(2), "0000000000000002".into()),
                (crate::TraceId::from_parts(0, -2), "fffffffffffffffe".into())
            ]
        );
        assert!(trace_ids(Some("service=x")).unwrap().is_empty());
        assert_eq!(
            trace_ids(Some("traceID=10000000000000003&traceID=3")).unwrap(),
            [
                (
                    crate::TraceId::from_parts(1, 3),
                    "00000000000000010000000000000003".into()
                ),
                (crate::TraceId(3), "0000000000000003".into())
            ],
            "128-bit ids: equal low halves are two traces"
        );
        assert_eq!(
            trace_ids(Some("traceID=00000000000000000000000000000003")).unwrap(),
            [(crate::TraceId(3), "0000000000000003".into())]
        );
        assert!(trace_ids(Some("traceID=xyz")).is_err());
        assert!(trace_ids(Some("traceID=0")).is_err());
        // Unicode spaces around an id are trimmed, never sliced into (found by review:
        // a 32-byte string with wide spaces panicked)
        let wide = format!("traceID={}{}", "\u{3000}".repeat(11), "1".repeat(21));
        assert_eq!(
            trace_ids(Some(&wide)).unwrap()[0].1,
            format!("{:0>32}", "1".repeat(21))
        );
        assert_eq!(
            trace_ids(Some("traceID=%20ab%20")).unwrap(),
            [(crate::TraceId(0xab), "00000000000000ab".into())]
        );
        let many: Vec<String> = (1..=MAX_TRACE_IDS + 1)
            .map(|i| format!("traceID={i:x}"))
            .collect();
        let error = trace_ids(Some(&many.join("&"))).unwrap_err();
        assert!(error.contains("at most 1000"), "{error}");
        let repeated: Vec<String> = (0..5000).map(|_| "traceID=ab".to_string()).collect();
        assert_eq!(trace_ids(Some(&repeated.join("&"))).unwrap().len(), 1);
        assert_eq!(
            envelope_with_errors(json!([]), vec![trace_not_found("fffffffffffffffe")])["errors"],
            json!([{"code": 404, "msg": "trace not found", "traceID": "fffffffffffffffe"}])
        );
        assert_eq!(
            envelope_with_errors(json!([]), vec![])["errors"],
            Value::Null
        );
    }
}
