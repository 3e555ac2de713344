//! Plain-text renderings of the API's answers for `ssfd query`: the trace waterfall,
//! and the trace and log search tables.

use serde_json::Value;
use std::fmt::Write;

/// A duration in ns, human-sized: `750ns`, `12.5µs`, `3.2ms`, `1.25s`.
pub fn duration(ns: i64) -> String {
    let abs = ns.unsigned_abs();
    if abs < 1_000 {
        format!("{ns}ns")
    } else if abs < 1_000_000 {
        format!("{:.1}µs", ns as f64 / 1e3)
    } else if abs < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

/// Unix ns as RFC 3339 UTC with microseconds.
pub fn timestamp(ns: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => ns.to_string(),
    }
}

const BAR: usize = 30;

struct Row {
    label: String,
    offset: i64,
    duration: i64,
    error: bool,
    logs: Vec<String>,
}

/// Log records as waterfall lines: offset from the trace start, severity, name, message.
fn log_lines(logs: &Value, start: i64) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    logs.as_array()
        .map(|logs| {
            logs.iter()
                .map(|log| {
                    format!(
                        "{} [{}] {}: {}",
                        duration(log["timestamp_ns"].as_i64().unwrap_or(start) - start),
                        text(&log["severity"]),
                        text(&log["name"]),
                        text(&log["message"])
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rows(span: &Value, depth: usize, start: i64, out: &mut Vec<Row>) {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let logs = log_lines(&span["logs"], start);
    out.push(Row {
        label: format!(
            "{}{} {}",
            "  ".repeat(depth),
            text(&span["service"]),
            text(&span["name"])
        ),
        offset: span["start_ns"].as_i64().unwrap_or(start) - start,
        duration: span["duration_ns"].as_i64().unwrap_or(0),
        error: span["error"] == true,
        logs,
    });
    for child in span["children"].as_array().into_iter().flatten() {
        rows(child, depth + 1, start, out);
    }
}

/// `ssfd query trace`: the joined tree as an aligned waterfall, one line per span
/// (service and name indented by depth, offset from the trace start, duration, a bar,
/// `!` on errors), each span's logs under it, orphans after the tree.
pub fn waterfall(trace: &Value) -> String {
    let mut out = String::new();
    let span_starts = |v: &Value, acc: &mut Vec<i64>| {
        fn walk(v: &Value, acc: &mut Vec<i64>) {
            if let Some(start) = v["start_ns"].as_i64() {
                acc.push(start);
            }
            for child in v["children"].as_array().into_iter().flatten() {
                walk(child, acc);
            }
        }
        walk(v, acc)
    };
    let mut starts = Vec::new();
    span_starts(&trace["root"], &mut starts);
    for orphan in trace["orphans"].as_array().into_iter().flatten() {
        span_starts(orphan, &mut starts);
    }
    let start = starts.into_iter().min().unwrap_or(0);
    let total = trace["duration_ns"].as_i64().unwrap_or(0).max(1);
    let mut all = Vec::new();
    if !trace["root"].is_null() {
        rows(&trace["root"], 0, start, &mut all);
    }
    let tree_rows = all.len();
    for orphan in trace["orphans"].as_array().into_iter().flatten() {
        rows(orphan, 0, start, &mut all);
    }
    let _ = writeln!(
        out,
        "trace {}  {}  {} spans  {} orphans  {}  services: {}{}",
        trace["trace_id"].as_str().unwrap_or(""),
        if trace["complete"] == true {
            "complete"
        } else {
            "incomplete"
        },
        trace["span_count"],
        trace["orphan_count"],
        duration(total),
        trace["services"]
            .as_array()
            .map(|s| s
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        if trace["truncated"] == true {
            "  (truncated)"
        } else {
            ""
        }
    );
    let width = all
        .iter()
        .map(|r| r.label.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(14);
    let _ = writeln!(
        out,
        "{:<width$} {:>9} {:>9}  TIMELINE",
        "SPAN", "OFFSET", "DURATION"
    );
    for (index, row) in all.iter().enumerate() {
        if index == tree_rows {
            let _ = writeln!(out, "orphans:");
        }
        let from = ((row.offset.max(0) as f64 / total as f64) * BAR as f64) as usize;
        let len = (((row.duration.max(0) as f64) / total as f64) * BAR as f64).ceil() as usize;
        let from = from.min(BAR - 1);
        let len = len.clamp(1, BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "#".repeat(len),
            " ".repeat(BAR - from - len)
        );
        let label = if row.error {
            format!("{} !", row.label)
        } else {
            row.label.clone()
        };
        let _ = writeln!(
            out,
            "{label:<width$} {:>9} {:>9}  |{bar}|",
            duration(row.offset),
            duration(row.duration),
        );
        let indent = row.label.len() - row.label.trim_start().len() + 4;
        for log in &row.logs {
            let _ = writeln!(out, "{}log {log}", " ".repeat(indent));
        }
    }
    // records of the trace whose span is not stored (SPEC 5)
    let trace_logs = log_lines(&trace["logs"], start);
    if !trace_logs.is_empty() {
        let _ = writeln!(out, "logs without a stored span:");
        for log in trace_logs {
            let _ = writeln!(out, "    log {log}");
        }
    }
    out
}

/// `ssfd query traces`: one line per hit.
pub fn traces_table(answer: &Value) -> String {
    if answer["traces"].as_array().is_none_or(Vec::is_empty) {
        return "no traces match\n".into();
    }
    let mut out = format!(
        "{:<32} {:<27} {:>9} {:>6} {:>6}  {}\n",
        "TRACE_ID", "START", "DURATION", "SPANS", "ERRORS", "ROOT"
    );
    for trace in answer["traces"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<32} {:<27} {:>9} {:>6} {:>6}  {} {}",
            trace["trace_id"].as_str().unwrap_or(""),
            timestamp(trace["start_ns"].as_i64().unwrap_or(0)),
            duration(trace["duration_ns"].as_i64().unwrap_or(0)),
            trace["span_count"].as_u64().unwrap_or(0),
            trace["error_count"].as_u64().unwrap_or(0),
            trace["root_service"].as_str().unwrap_or("-"),
            trace["root_name"].as_str().unwrap_or("(no root)"),
        );
    }
    out
}

/// `ssfd query logs`: one line per record, newest first.
pub fn logs_table(answer: &Value) -> String {
    if answer["logs"].as_array().is_none_or(Vec::is_empty) {
        return "no logs match\n".into();
    }
    let mut out = String::new();
    for log in answer["logs"].as_array().into_iter().flatten() {
        let trace = match log["trace_id"].as_str() {
            Some(id) => format!(
                "  trace={id} span={}",
                log["span_id"].as_str().unwrap_or("")
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{} {:<7} {} {}: {}{trace}",
            timestamp(log["timestamp_ns"].as_i64().unwrap_or(0)),
            log["severity"].as_str().unwrap_or(""),
            log["service"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("-"),
            log["name"].as_str().unwrap_or(""),
            log["message"].as_str().unwrap_or(""),
        );
    }
    out
}

/// `/api/v1/slos` as a table: each SLO's objective, its good and total events and ratio
/// over 6 h, and its burn rates (1 spends the error budget exactly over the window).
pub fn slos_table(answer: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "SLO", "OBJECTIVE", "GOOD", "TOTAL", "RATIO", "BURN 5M", "BURN 1H", "BURN 6H"
    );
    let number = |v: &Value| v.as_f64().map_or("-".to_string(), |f| format!("{f:.4}"));
    for slo in answer["slos"].as_array().into_iter().flatten() {
        let burn = &slo["burn_rate"];
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
            slo["name"].as_str().unwrap_or(""),
            number(&slo["objective"]),
            slo["good"].as_u64().unwrap_or(0),
            slo["total"].as_u64().unwrap_or(0),
            number(&slo["ratio"]),
            number(&burn["5m"]),
            number(&burn["1h"]),
            number(&burn["6h"]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slos_print_as_a_table() {
        let text = slos_table(&json!({"slos": [{
            "name": "pay", "objective": 0.9, "good": 8, "total": 10, "ratio": 0.8,
            "burn_rate": {"5m": 2.0, "1h": 2.0, "6h": 1.0}
        }]}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("SLO"), "{text}");
        let fields: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "pay", "0.9000", "8", "10", "0.8000", "2.0000", "2.0000", "1.0000"
            ]
        );
    }

    #[test]
    fn waterfall_is_aligned_and_marks_errors_and_logs() {
        let trace = json!({
            "trace_id": "5", "complete": false, "span_count": 3, "orphan_count": 1,
            "duration_ns": 100_000_000, "services": ["api", "web"], "truncated": false,
            "root": {
                "service": "web", "name": "GET /", "start_ns": 1_000_000_000i64,
                "duration_ns": 100_000_000, "error": false, "logs": [],
                "children": [{
                    "service": "api", "name": "lookup", "start_ns": 1_050_000_000i64,
                    "duration_ns": 25_000_000, "error": true,
                    "logs": [{"timestamp_ns": 1_060_000_000i64, "severity": "error", "name": "db", "message": "timeout"}],
                    "children": [],
                }],
            },
            "orphans": [{"service": "api", "name": "late", "start_ns": 1_090_000_000i64,
                         "duration_ns": 1_500, "error": false, "logs": [], "children": []}],
            "logs": [{"timestamp_ns": 1_070_000_000i64, "severity": "warn", "name": "app", "message": "no span"}],
        });
        assert_eq!(
            waterfall(&trace),
            "trace 5  incomplete  3 spans  1 orphans  100.0ms  services: api,web\n\
             SPAN              OFFSET  DURATION  TIMELINE\n\
             web GET /            0ns   100.0ms  |##############################|\n\
             \x20 api lookup !    50.0ms    25.0ms  |               ########       |\n\
             \x20     log 60.0ms [error] db: timeout\n\
             orphans:\n\
             api late          90.0ms     1.5µs  |                           #  |\n\
             logs without a stored span:\n\
             \x20   log 70.0ms [warn] app: no span\n"
        );
    }

    #[test]
    fn tables() {
        let traces = json!({"traces": [{"trace_id": "94568bc249d55603975fbd3ef288210b", "start_ns": 1_800_000_000_000_000_000i64,
            "duration_ns": 2_500_000_000i64, "span_count": 4, "error_count": 1,
            "root_service": "web", "root_name": "GET /"}]});
        assert_eq!(
            traces_table(&traces).lines().nth(1).unwrap(),
            "94568bc249d55603975fbd3ef288210b 2027-01-15T08:00:00.000000Z     2.50s      4      1  web GET /"
        );
        let logs = json!({"logs": [{"timestamp_ns": 1_800_000_000_000_001_000i64, "severity": "warn",
            "service": "", "name": "cron", "message": "slow", "trace_id": null, "span_id": null}]});
        assert_eq!(
            logs_table(&logs),
            "2027-01-15T08:00:00.000001Z warn    - cron: slow\n"
        );
    }
}
