//! A proxy's fleet-wide reads (SPEC 6): every global's answer to the same `GET`,
//! merged into one answer of the same shape: newest first, limits applied after the
//! merge, a trace once, edges and RED rates summed. Globals that gave no answer are
//! named in `errors` beside `"partial": true` (the Jaeger API: in its own `errors`).
//! Pure functions of the answers; the proxy does the asking.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// One global's answer: its address, and its HTTP status and JSON body, or why it
/// gave none (down, too slow).
pub type Answer = (String, Result<(u16, Vec<u8>), String>);

/// What a read path answers, so its merge is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    Traces,
    Logs,
    LogVolume,
    Services,
    Operations,
    Slos,
    Dependencies,
    Red,
    JaegerTraces,
    JaegerList,
    JaegerDependencies,
    Unknown,
}

impl Read {
    fn of(path: &str) -> Read {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["", "api", "v1", "traces"] => Read::Traces,
            ["", "api", "v1", "logs"] => Read::Logs,
            ["", "api", "v1", "logs", "volume"] => Read::LogVolume,
            ["", "api", "v1", "services"] => Read::Services,
            ["", "api", "v1", "services", _, "operations"] => Read::Operations,
            ["", "api", "v1", "services", _, "red"] => Read::Red,
            ["", "api", "v1", "slos"] => Read::Slos,
            ["", "api", "v1", "dependencies"] => Read::Dependencies,
            ["", "api", "traces"] => Read::JaegerTraces,
            ["", "api", "services"] | ["", "api", "services", _, "operations"] => Read::JaegerList,
            ["", "api", "dependencies"] => Read::JaegerDependencies,
            _ => Read::Unknown,
        }
    }

    fn jaeger(self) -> bool {
        matches!(
            self,
            Read::JaegerTraces | Read::JaegerList | Read::JaegerDependencies
        )
    }
}

/// `query` with its relative times (`now-1h`, `1h`, RFC 3339) made unix nanoseconds
/// at `now`, and a windowed read's `end` pinned to `now` when absent, so every global
/// reads the same window and buckets alike (each would take its own `now`). Values
/// that do not parse are left for the globals to refuse.
pub fn pin_times(path: &str, query: &str, now_ns: i64) -> String {
    if !path.starts_with("/api/v1/") {
        return query.to_string();
    }
    let windowed = matches!(
        Read::of(path),
        Read::Dependencies | Read::Red | Read::LogVolume
    );
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut has_end = false;
    for (key, value) in crate::api::pairs(Some(query)) {
        let value = match key.as_str() {
            "start" | "end" => {
                has_end |= key == "end";
                crate::api::parse_time_at(&key, &value, now_ns).map_or(value, |ns| ns.to_string())
            }
            _ => value,
        };
        out.append_pair(&key, &value);
    }
    if windowed && !has_end {
        out.append_pair("end", &now_ns.to_string());
    }
    out.finish()
}

/// The merged answer to `GET path?query` from every global's `answers`: its status
/// and body. A 400 from a global is the client's mistake and is answered as it is; a
/// 404 from every global that answered is a 404 (an unknown service); when no global
/// answered at all the answer is a 502 naming each.
pub fn merge(path: &str, query: &str, answers: Vec<Answer>) -> (u16, Value) {
    let read = Read::of(path);
    let mut bodies = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut not_found = None;
    for (node, answer) in answers {
        match answer {
            Err(error) => errors.push((node, error)),
            Ok((status, body)) => {
                let parsed = serde_json::from_slice::<Value>(&body);
                match (status, parsed) {
                    (200..=299, Ok(value)) => bodies.push(value),
                    (400, Ok(value)) => return (400, value),
                    (404, Ok(value)) => not_found = Some(value),
                    (200..=299 | 400 | 404, Err(_)) => {
                        errors.push((node, format!("status {status} without a JSON body")));
                    }
                    (status, parsed) => {
                        let why = parsed.ok().and_then(|v| message(&v)).unwrap_or_default();
                        errors.push((node, format!("status {status}: {why}")));
                    }
                }
            }
        }
    }
    if bodies.is_empty() {
        if let Some(value) = not_found.filter(|_| errors.is_empty()) {
            return (404, value);
        }
        if !errors.is_empty() {
            let why = "no global answered";
            let mut answer = if read.jaeger() {
                crate::jaeger::error(502, why)
            } else {
                json!({ "error": why })
            };
            mark_partial(&mut answer, read, &errors);
            return (502, answer);
        }
    }
    let mut merged = match read {
        Read::Traces => traces(&bodies, query),
        Read::Logs => logs(&bodies, query),
        Read::LogVolume => log_volume(&bodies),
        Read::Services => json!({ "services": union(&bodies, "services") }),
        Read::Operations => json!({ "operations": union(&bodies, "operations") }),
        Read::Slos => slos(&bodies),
        Read::Dependencies => dependencies(&bodies),
        Read::Red => red(&bodies),
        Read::JaegerTraces => jaeger_traces(&bodies, query),
        Read::JaegerList => crate::jaeger::envelope(Value::Array(
            union(&bodies, "data")
                .into_iter()
                .map(Value::String)
                .collect(),
        )),
        Read::JaegerDependencies => jaeger_dependencies(&bodies),
        Read::Unknown => bodies.into_iter().next().unwrap_or(Value::Null),
    };
    if !errors.is_empty() {
        mark_partial(&mut merged, read, &errors);
    }
    (200, merged)
}

/// A global's error message in either API's form.
fn message(body: &Value) -> Option<String> {
    body["error"]
        .as_str()
        .or_else(|| body["errors"][0]["msg"].as_str())
        .map(String::from)
}

/// `"partial": true` and `errors` naming each global that gave no answer (SPEC 6);
/// in the Jaeger API, entries of its own `errors` list.
fn mark_partial(answer: &mut Value, read: Read, errors: &[(String, String)]) {
    if read.jaeger() {
        let mut list: Vec<Value> = answer["errors"].as_array().cloned().unwrap_or_default();
        list.extend(
            errors.iter().map(
                |(node, error)| json!({ "code": 502, "msg": format!("global {node}: {error}") }),
            ),
        );
        answer["errors"] = Value::Array(list);
    } else {
        answer["partial"] = Value::Bool(true);
        answer["errors"] = errors
            .iter()
            .map(|(node, error)| json!({ "node": node, "error": error }))
            .collect();
    }
}

fn items<'a>(bodies: &'a [Value], key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bodies
        .iter()
        .filter_map(move |body| body[key].as_array())
        .flatten()
}

/// The sorted union of the string lists under `key`.
fn union(bodies: &[Value], key: &str) -> Vec<String> {
    items(bodies, key)
        .filter_map(Value::as_str)
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// Trace search hits: a trace once (the part with the most spans, should a ring change
/// have split it), newest first, then the search's limit.
fn traces(bodies: &[Value], query: &str) -> Value {
    let limit = crate::api::trace_query(Some(query)).map_or(20, |q| q.limit);
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for hit in items(bodies, "traces") {
        let id = hit["trace_id"].as_str().unwrap_or_default().to_string();
        match by_id.get(&id) {
            Some(kept) if int(&kept["span_count"]) >= int(&hit["span_count"]) => {}
            _ => {
                by_id.insert(id, hit.clone());
            }
        }
    }
    let mut hits: Vec<Value> = by_id.into_values().collect();
    hits.sort_by(|a, b| {
        int(&b["start_ns"])
            .cmp(&int(&a["start_ns"]))
            .then_with(|| a["trace_id"].as_str().cmp(&b["trace_id"].as_str()))
    });
    hits.truncate(limit);
    json!({ "traces": hits })
}

/// Log search hits: newest first, then the search's limit (a record is on one global).
fn logs(bodies: &[Value], query: &str) -> Value {
    let limit = crate::api::log_query(Some(query)).map_or(100, |q| q.limit);
    let mut records: Vec<Value> = items(bodies, "logs").cloned().collect();
    records.sort_by_key(|record| std::cmp::Reverse(int(&record["timestamp_ns"])));
    records.truncate(limit);
    json!({ "logs": records })
}

/// Volume histograms: counts summed per bucket and severity (every node buckets alike).
fn log_volume(bodies: &[Value]) -> Value {
    let mut step = Value::Null;
    let mut by_bucket: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for body in bodies {
        if step.is_null() {
            step = body["step_ns"].clone();
        }
        for bucket in body["buckets"].as_array().into_iter().flatten() {
            let counts = by_bucket.entry(int(&bucket["t_ns"])).or_default();
            for (severity, n) in bucket["counts"].as_object().into_iter().flatten() {
                *counts.entry(severity.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    let buckets: Vec<Value> = by_bucket
        .into_iter()
        .map(|(t, counts)| json!({ "t_ns": t, "counts": counts }))
        .collect();
    json!({ "step_ns": step, "buckets": buckets })
}

/// SLOs by name: good and total summed, the ratio of the sums, burn rates weighted
/// by each global's total.
fn slos(bodies: &[Value]) -> Value {
    struct Sum {
        objective: Value,
        good: f64,
        total: f64,
        burn: BTreeMap<String, (f64, f64)>,
    }
    let mut by_name: BTreeMap<String, Sum> = BTreeMap::new();
    for slo in items(bodies, "slos") {
        let name = slo["name"].as_str().unwrap_or_default().to_string();
        let total = slo["total"].as_f64().unwrap_or(0.0);
        let sum = by_name.entry(name).or_insert_with(|| Sum {
            objective: slo["objective"].clone(),
            good: 0.0,
            total: 0.0,
            burn: BTreeMap::new(),
        });
        sum.good += slo["good"].as_f64().unwrap_or(0.0);
        sum.total += total;
        if let Some(burn) = slo["burn_rate"].as_object() {
            for (window, rate) in burn {
                let entry = sum.burn.entry(window.clone()).or_default();
                entry.0 += rate.as_f64().unwrap_or(0.0) * total;
                entry.1 += total;
            }
        }
    }
    let slos: Vec<Value> = by_name
        .into_iter()
        .map(|(name, sum)| {
            let burn: Map<String, Value> = sum
                .burn
                .into_iter()
                .map(|(window, (weighted, weight))| {
                    let rate = if weight > 0.0 { weighted / weight } else { 0.0 };
                    (window, json!(rate))
                })
                .collect();
            let ratio = if sum.total > 0.0 {
                sum.good / sum.total
            } else {
                1.0
            };
            json!({
                "name": name, "objective": sum.objective, "good": sum.good as u64,
                "total": sum.total as u64, "ratio": ratio, "burn_rate": burn,
            })
        })
        .collect();
    json!({ "slos": slos })
}

/// Service-map edges by (parent, child): counts summed; p50 the call-weighted mean of
/// the globals' p50s and p99 the largest p99 (quantiles of separate sets do not add).
fn dependencies(bodies: &[Value]) -> Value {
    let mut by_edge: BTreeMap<(String, String), [f64; 4]> = BTreeMap::new();
    for edge in items(bodies, "dependencies") {
        let key = (
            edge["parent"].as_str().unwrap_or_default().to_string(),
            edge["child"].as_str().unwrap_or_default().to_string(),
        );
        let calls = edge["call_count"].as_f64().unwrap_or(0.0);
        let sum = by_edge.entry(key).or_default();
        sum[0] += calls;
        sum[1] += edge["error_count"].as_f64().unwrap_or(0.0);
        sum[2] += edge["p50_ns"].as_f64().unwrap_or(0.0) * calls;
        sum[3] = sum[3].max(edge["p99_ns"].as_f64().unwrap_or(0.0));
    }
    let edges: Vec<Value> = by_edge
        .into_iter()
        .map(|((parent, child), [calls, errors, p50, p99])| {
            let p50 = if calls > 0.0 { p50 / calls } else { 0.0 };
            json!({
                "parent": parent, "child": child, "call_count": calls as u64,
                "error_count": errors as u64, "p50_ns": p50 as i64, "p99_ns": p99 as i64,
            })
        })
        .collect();
    json!({ "dependencies": edges })
}

/// RED series by operation and step: rates summed, the error share weighted by rate,
/// p50 rate-weighted and p95/p99 the largest (a series lives on one global, so this
/// only matters while a ring change splits one).
fn red(bodies: &[Value]) -> Value {
    let mut service = Value::Null;
    let mut step = Value::Null;
    let mut by_op: BTreeMap<String, BTreeMap<i64, [f64; 5]>> = BTreeMap::new();
    for body in bodies {
        if service.is_null() {
            service = body["service"].clone();
            step = body["step_ns"].clone();
        }
        for op in body["operations"].as_array().into_iter().flatten() {
            let points = by_op
                .entry(op["name"].as_str().unwrap_or_default().to_string())
                .or_default();
            for point in op["points"].as_array().into_iter().flatten() {
                let rate = point["rate"].as_f64().unwrap_or(0.0);
                let sum = points.entry(int(&point["t_ns"])).or_default();
                sum[0] += rate;
                sum[1] += point["error_rate"].as_f64().unwrap_or(0.0) * rate;
                sum[2] += point["p50_ns"].as_f64().unwrap_or(0.0) * rate;
                sum[3] = sum[3].max(point["p95_ns"].as_f64().unwrap_or(0.0));
                sum[4] = sum[4].max(point["p99_ns"].as_f64().unwrap_or(0.0));
            }
        }
    }
    let operations: Vec<Value> = by_op
        .into_iter()
        .map(|(name, points)| {
            let points: Vec<Value> = points
                .into_iter()
                .map(|(t, [rate, errors, p50, p95, p99])| {
                    let share = |x: f64| if rate > 0.0 { x / rate } else { 0.0 };
                    json!({
                        "t_ns": t, "rate": rate, "error_rate": share(errors),
                        "p50_ns": share(p50) as i64, "p95_ns": p95 as i64, "p99_ns": p99 as i64,
                    })
                })
                .collect();
            json!({ "name": name, "points": points })
        })
        .collect();
    json!({ "service": service, "step_ns": step, "operations": operations })
}

/// The earliest span start of a Jaeger trace (microseconds).
fn jaeger_start(trace: &Value) -> i64 {
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| int(&span["startTime"]))
        .min()
        .unwrap_or(0)
}

/// Jaeger's search: a trace once (the part with the most spans), newest first, the
/// limit after the merge; each global's own `errors` kept.
fn jaeger_traces(bodies: &[Value], query: &str) -> Value {
    let limit = crate::jaeger::search_query(Some(query)).map_or(20, |q| q.limit);
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for trace in items(bodies, "data") {
        let id = trace["traceID"].as_str().unwrap_or_default().to_string();
        let spans = |t: &Value| t["spans"].as_array().map_or(0, Vec::len);
        match by_id.get(&id) {
            Some(kept) if spans(kept) >= spans(trace) => {}
            _ => {
                by_id.insert(id, trace.clone());
            }
        }
    }
    let mut traces: Vec<Value> = by_id.into_values().collect();
    traces.sort_by_key(|trace| std::cmp::Reverse(jaeger_start(trace)));
    traces.truncate(limit);
    let errors: Vec<Value> = items(bodies, "errors").cloned().collect();
    crate::jaeger::envelope_with_errors(Value::Array(traces), errors)
}

fn jaeger_dependencies(bodies: &[Value]) -> Value {
    let mut by_edge: BTreeMap<(String, String), u64> = BTreeMap::new();
    for edge in items(bodies, "data") {
        let key = (
            edge["parent"].as_str().unwrap_or_default().to_string(),
            edge["child"].as_str().unwrap_or_default().to_string(),
        );
        *by_edge.entry(key).or_default() += edge["callCount"].as_u64().unwrap_or(0);
    }
    let data: Vec<Value> = by_edge
        .into_iter()
        .map(|((parent, child), calls)| json!({ "parent": parent, "child": child, "callCount": calls }))
        .collect();
    crate::jaeger::envelope(Value::Array(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(node: &str, body: Value) -> Answer {
        (node.into(), Ok((200, body.to_string().into_bytes())))
    }

    fn hit(id: &str, start: i64, spans: u64) -> Value {
        json!({ "trace_id": id, "start_ns": start, "span_count": spans, "services": [] })
    }

    #[test]
    fn trace_hits_merge_newest_first_once_each_then_the_limit() {
        let (status, answer) = merge(
            "/api/v1/traces",
            "limit=3",
            vec![
                ok(
                    "g1",
                    json!({ "traces": [hit("a", 10, 1), hit("b", 40, 2)] }),
                ),
                ok(
                    "g2",
                    json!({ "traces": [hit("c", 30, 1), hit("b", 40, 5)] }),
                ),
                ok("g3", json!({ "traces": [hit("d", 20, 1), hit("e", 5, 1)] })),
            ],
        );
        assert_eq!(status, 200);
        let ids: Vec<&str> = answer["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b", "c", "d"]);
        assert_eq!(answer["traces"][0]["span_count"], 5, "the larger part of b");
        assert!(answer.get("partial").is_none());
    }

    #[test]
    fn a_silent_global_makes_the_answer_partial_and_is_named() {
        let (status, answer) = merge(
            "/api/v1/logs",
            "",
            vec![
                ok(
                    "g1",
                    json!({ "logs": [{ "timestamp_ns": 1 }, { "timestamp_ns": 9 }] }),
                ),
                ("g2".into(), Err("no answer within query_timeout 1s".into())),
                ok("g3", json!({ "logs": [{ "timestamp_ns": 5 }] })),
            ],
        );
        assert_eq!(status, 200);
        let times: Vec<i64> = answer["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["timestamp_ns"].as_i64().unwrap())
            .collect();
        assert_eq!(times, [9, 5, 1]);
        assert_eq!(answer["partial"], true);
        assert_eq!(answer["errors"][0]["node"], "g2");
        assert!(
            answer["errors"][0]["error"]
                .as_str()
                .unwrap()
                .contains("query_timeout")
        );
    }

    #[test]
    fn bad_parameters_unknown_services_and_a_silent_fleet() {
        let bad = json!({ "error": "limit: at most 1000" });
        let (status, answer) = merge(
            "/api/v1/traces",
            "limit=5000",
            vec![
                ok("g1", json!({ "traces": [] })),
                ("g2".into(), Ok((400, bad.to_string().into_bytes()))),
            ],
        );
        assert_eq!((status, answer), (400, bad));
        let unknown = json!({ "error": "service `x` has sent no span" });
        let answers = |second: Answer| {
            vec![
                ("g1".into(), Ok((404, unknown.to_string().into_bytes()))),
                second,
            ]
        };
        let nf: Answer = ("g2".into(), Ok((404, unknown.to_string().into_bytes())));
        assert_eq!(
            merge("/api/v1/services/x/operations", "", answers(nf)).0,
            404
        );
        let (status, answer) = merge(
            "/api/v1/services/x/operations",
            "",
            answers(ok("g2", json!({ "operations": ["b", "a"] }))),
        );
        assert_eq!((status, answer), (200, json!({ "operations": ["a", "b"] })));
        let (status, answer) = merge(
            "/api/services",
            "",
            vec![("g1".into(), Err("connection refused".into()))],
        );
        assert_eq!(status, 502);
        assert!(answer["errors"].as_array().unwrap().iter().any(|e| {
            e["msg"]
                .as_str()
                .unwrap()
                .contains("global g1: connection refused")
        }));
    }

    #[test]
    fn edges_sum_and_jaeger_lists_union() {
        let edge = |calls: u64, p50: i64, p99: i64| {
            json!({ "parent": "a", "child": "b", "call_count": calls, "error_count": 1,
                    "p50_ns": p50, "p99_ns": p99 })
        };
        let (_, answer) = merge(
            "/api/v1/dependencies",
            "",
            vec![
                ok("g1", json!({ "dependencies": [edge(1, 100, 100)] })),
                ok("g2", json!({ "dependencies": [edge(3, 200, 900)] })),
            ],
        );
        assert_eq!(
            answer["dependencies"],
            json!([{ "parent": "a", "child": "b", "call_count": 4, "error_count": 2,
                     "p50_ns": 175, "p99_ns": 900 }])
        );
        let (_, answer) = merge(
            "/api/dependencies",
            "",
            vec![
                ok(
                    "g1",
                    json!({ "data": [{ "parent": "a", "child": "b", "callCount": 2 }] }),
                ),
                ok(
                    "g2",
                    json!({ "data": [{ "parent": "a", "child": "b", "callCount": 3 }] }),
                ),
            ],
        );
        assert_eq!(answer["data"][0]["callCount"], 5);
        let (_, answer) = merge(
            "/api/services",
            "",
            vec![
                ok("g1", crate::jaeger::envelope(json!(["web", "db"]))),
                ok("g2", crate::jaeger::envelope(json!(["api", "web"]))),
                ("g3".into(), Err("down".into())),
            ],
        );
        assert_eq!(answer["data"], json!(["api", "db", "web"]));
        assert_eq!(answer["total"], 3);
        assert_eq!(answer["errors"][0]["code"], 502);
        assert!(answer.get("partial").is_none(), "Jaeger's own format");
    }

    #[test]
    fn jaeger_traces_newest_first_each_once() {
        let trace = |id: &str, start: i64, spans: usize| {
            let spans: Vec<Value> = (0..spans).map(|_| json!({ "startTime": start })).collect();
            json!({ "traceID": id, "spans": spans })
        };
        let (_, answer) = merge(
            "/api/traces",
            "service=web&limit=2",
            vec![
                ok(
                    "g1",
                    crate::jaeger::envelope(json!([trace("a", 1, 1), trace("b", 5, 1)])),
                ),
                ok(
                    "g2",
                    crate::jaeger::envelope(json!([trace("c", 3, 1), trace("b", 5, 2)])),
                ),
            ],
        );
        let ids: Vec<&str> = answer["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["traceID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(answer["data"][0]["spans"].as_array().unwrap().len(), 2);
        assert_eq!(answer["errors"], Value::Null);
    }

    #[test]
    fn relative_times_are_pinned_once_for_every_global() {
        let now = 1_800_000_000_000_000_000;
        let hour = 3_600_000_000_000i64;
        assert_eq!(
            pin_times("/api/v1/services/web/red", "start=now-1h&step=1m", now),
            format!("start={}&step=1m&end={now}", now - hour)
        );
        assert_eq!(
            pin_times("/api/v1/traces", "service=web&start=1h", now),
            format!("service=web&start={}", now - hour),
            "a search gets no end it did not ask for"
        );
        assert_eq!(
            pin_times("/api/v1/logs", "start=yesterday", now),
            "start=yesterday",
            "left for the globals to refuse"
        );
        assert_eq!(
            pin_times("/api/traces", "service=web&lookback=1h", now),
            "service=web&lookback=1h"
        );
    }

    #[test]
    fn log_volumes_add_up_per_bucket_and_severity() {
        let volume = |info: u64, error: u64| {
            json!({ "step_ns": 60, "buckets": [
                { "t_ns": 0, "counts": { "info": info } },
                { "t_ns": 60, "counts": { "info": 1, "error": error } },
            ] })
        };
        let (_, answer) = merge(
            "/api/v1/logs/volume",
            "",
            vec![ok("g1", volume(2, 1)), ok("g2", volume(3, 4))],
        );
        assert_eq!(answer["buckets"][0]["counts"], json!({ "info": 5 }));
        assert_eq!(
            answer["buckets"][1]["counts"],
            json!({ "info": 2, "error": 5 })
        );
        assert_eq!(answer["step_ns"], 60);
    }

    #[test]
    fn slos_sum_their_counts() {
        let slo = |good: u64, total: u64, burn: f64| {
            json!({ "name": "checkout", "objective": 0.99, "good": good, "total": total,
                    "ratio": 0.0, "burn_rate": { "1h": burn } })
        };
        let (_, answer) = merge(
            "/api/v1/slos",
            "",
            vec![
                ok("g1", json!({ "slos": [slo(90, 100, 10.0)] })),
                ok("g2", json!({ "slos": [slo(300, 300, 0.0)] })),
            ],
        );
        let merged = &answer["slos"][0];
        assert_eq!(merged["good"], 390);
        assert_eq!(merged["total"], 400);
        assert_eq!(merged["ratio"], 0.975);
        assert_eq!(merged["burn_rate"]["1h"], 2.5);
    }
}
