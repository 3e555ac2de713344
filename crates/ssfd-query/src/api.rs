//! SPEC 6's query parameters and JSON answers for searches and logs: parameters are
//! parsed strictly (an unknown or malformed one is a 400 naming it), times are unix
//! nanoseconds or RFC 3339, durations Go-style.

use serde_json::{Value, json};
use ssfd_engine::LogRecord;
use ssfd_store::{LogQuery, TraceQuery, TraceSummary};

/// The largest `limit` a search takes.
pub const MAX_LIMIT: usize = 1000;

/// `key=value` pairs of a query string, decoded, in order.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|raw| {
        form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// A time parameter: unix nanoseconds, an RFC 3339 string, or a relative time
/// (SPEC 6: `now`, `now-1h`, or `1h` meaning an hour ago).
pub fn parse_time(key: &str, text: &str) -> Result<i64, String> {
    parse_time_at(key, text, now_ns())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// [`parse_time`] with `now` given.
pub fn parse_time_at(key: &str, text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    if let Some(ns) = parse_datetime_ns(text) {
        return Ok(ns);
    }
    let ago = match text.strip_prefix("now") {
        Some("") => Some(""),
        Some(rest) => rest
            .trim_start()
            .strip_prefix('-')
            .map(str::trim)
            .filter(|r| !r.is_empty()),
        None => Some(text.strip_prefix('-').unwrap_or(text)).filter(|r| !r.is_empty()),
    };
    if let Some(ago) = ago {
        if ago.is_empty() {
            return Ok(now);
        }
        if let Ok(duration) = ssfd_config::parse_duration(ago) {
            let ns = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
            return Ok(now.saturating_sub(ns));
        }
    }
    Err(format!(
        "`{key}` must be unix nanoseconds, an RFC 3339 time or a relative time (`1h`, `now-30m`, `now`), not `{text}`"
    ))
}

/// A severity as a user types it: any case, `warning` for `warn`, `critical` for
/// `fatal`.
pub fn normal_severity(text: &str) -> Option<&'static str> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = match lower.as_str() {
        "warning" => "warn",
        "critical" | "crit" => "fatal",
        "err" => "error",
        other => other,
    };
    SEVERITIES.iter().find(|s| **s == lower).copied()
}

/// A date and time in unix nanoseconds: RFC 3339 (`2026-12-04T10:00:00Z`,
/// `...+01:00`), or the same with a space for the `T` and, without an offset, UTC.
pub fn parse_datetime_ns(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let parse = |text: &str| {
        time::OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
    };
    if let Some(ns) = parse(text) {
        return Some(ns);
    }
    let text = text.trim().replacen(' ', "T", 1);
    parse(&text).or_else(|| parse(&format!("{text}Z")))
}

/// A Go-style duration parameter, in nanoseconds.
pub fn parse_duration_ns(key: &str, text: &str) -> Result<i64, String> {
    ssfd_config::parse_duration(text)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .map_err(|error| format!("`{key}`: {error}"))
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(format!("`limit` must be 1 to {MAX_LIMIT}, not `{text}`")),
    }
}

/// A `tag` parameter: always `key:value` (SPEC 6); a bare tag is `key:`.
fn split_tag(tag: &str) -> Result<(String, String), String> {
    match tag.split_once(':') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "`tag` must be `key:value` (for example `tag=http.status_code:502`; `key:` for a bare tag), not `{tag}`"
        )),
    }
}

/// `GET /api/v1/traces` parameters (SPEC 6).
pub fn trace_query(raw: Option<&str>) -> Result<TraceQuery, String> {
    let mut query = TraceQuery {
        limit: 20,
        ..Default::default()
    };
    for (key, value) in pairs(raw) {
        match key.as_str() {
            "service" if !value.is_empty() => query.service = Some(value),
            "name" | "operation" if !value.is_empty() => query.name = Some(value),
            "service" | "name" | "operation" => {}
            "tag" => query.tags.push(split_tag(&value)?),
            "error" => {
                query.error = match value.as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    "" => None,
                    _ => return Err(format!("`error` must be true or false, not `{value}`")),
                }
            }
            "min_duration" => query.min_duration_ns = Some(parse_duration_ns(&key, &value)?),
            "max_duration" => query.max_duration_ns = Some(parse_duration_ns(&key, &value)?),
            "start" => query.start_ns = Some(parse_time(&key, &value)?),
            "end" => query.end_ns = Some(parse_time(&key, &value)?),
            "limit" => query.limit = parse_limit(&value)?,
            "edge" => {
                let Some((parent, child)) = value.rsplit_once("->") else {
                    return Err(format!(
                        "edge: `{value}` is not `parent->child` (two service names)"
                    ));
                };
                query.edge = Some((parent.to_string(), child.to_string()));
            }
            _ => return Err(format!("unknown parameter `{key}`")),
        }
    }
    Ok(query)
}

const SEVERITIES: [&str; 7] = [
    "trace", "debug", "info", "warn", "error", "fatal", "unknown",
];

/// `GET /api/v1/logs` (and `/logs/tail`) parameters (SPEC 6).
pub fn log_query(raw: Option<&str>) -> Result<LogQuery, String> {
    let mut query = LogQuery {
        limit: 100,
        ..Default::default()
    };
    for (key, value) in pairs(raw) {
        match key.as_str() {
            "q" => query.set_text(&value),
            "service" if !value.is_empty() => query.service = Some(value),
            "service" => {}
            "severity" if value.is_empty() => {}
            "severity" if normal_severity(&value).is_some() => {
                query.severity = normal_severity(&value).map(String::from)
            }
            "severity" => {
                return Err(format!(
                    "`severity` must be one of {}, not `{value}`",
                    SEVERITIES.join(", ")
                ));
            }
            "trace_id" if value.is_empty() => {}
            "trace_id" => {
                let ids = crate::trace_ids(&value).map_err(|bad| format!("`trace_id`: {bad}"))?;
                query.trace_id = ids.first().copied();
                query.trace_id_fallback = ids.get(1).copied();
            }
            "tag" => {
                // log records keep a bare tag as `key`
                let (key, tag_value) = split_tag(&value)?;
                query
                    .tags
                    .push(if tag_value.is_empty() { key } else { value });
            }
            "start" => query.start_ns = Some(parse_time(&key, &value)?),
            "end" => query.end_ns = Some(parse_time(&key, &value)?),
            "limit" => query.limit = parse_limit(&value)?,
            _ => return Err(format!("unknown parameter `{key}`")),
        }
    }
    Ok(query)
}

/// The window of `GET /api/v1/dependencies?start=&end=` (SPEC 6): the last hour when
/// `start` is not given.
pub fn dependency_window(raw: Option<&str>) -> Result<(i64, i64), String> {
    let (mut start, mut end) = (None, None);
    for (key, value) in pairs(raw) {
        match key.as_str() {
            "start" => start = Some(parse_time(&key, &value)?),
            "end" => end = Some(parse_time(&key, &value)?),
            _ => return Err(format!("unknown parameter `{key}`")),
        }
    }
    let end = end.unwrap_or_else(now_ns);
    Ok((start.unwrap_or(end.saturating_sub(3_600_000_000_000)), end))
}

/// A log view's volume histogram (`GET /api/v1/logs/volume`): the log search's
/// filters, the window (the last hour unless given), and `buckets` (default 60, at most
/// 1000); the step is the first of a fixed ladder (1 s … 1 d) that covers the window in
/// that many buckets, aligned to its multiples, so every node of a fleet buckets alike.
pub fn log_volume_query(raw: Option<&str>) -> Result<(LogQuery, i64, i64, usize), String> {
    const LADDER_S: [i64; 16] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 10_800, 21_600, 86_400,
    ];
    let mut buckets = 60usize;
    let mut rest = Vec::new();
    for (key, value) in pairs(raw) {
        if key == "buckets" {
            buckets = value
                .parse()
                .ok()
                .filter(|b| (1..=1000).contains(b))
                .ok_or_else(|| format!("buckets: `{value}` is not a number from 1 to 1000"))?;
        } else {
            rest.push(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair(&key, &value)
                    .finish(),
            );
        }
    }
    let mut query = log_query(Some(&rest.join("&")))?;
    let end = query.end_ns.unwrap_or_else(now_ns);
    let start = query
        .start_ns
        .unwrap_or(end.saturating_sub(3_600_000_000_000));
    let Some(span) = end.checked_sub(start).filter(|span| *span > 0) else {
        return Err("end: must be after start".into());
    };
    let step = LADDER_S
        .iter()
        .map(|s| s * 1_000_000_000)
        .find(|step| step.saturating_mul(buckets as i64) >= span)
        .unwrap_or(86_400_000_000_000);
    let first = start.div_euclid(step) * step;
    let count = ((end - 1).div_euclid(step) - start.div_euclid(step) + 1) as usize;
    if count > 1000 {
        return Err(format!(
            "start: a window of {} days is too long for a histogram (at most 1000 days)",
            span / 86_400_000_000_000
        ));
    }
    query.start_ns = Some(start);
    query.end_ns = Some(end);
    Ok((query, first, step, count))
}

/// The volume histogram's answer: per bucket, its start and its count per severity.
pub fn log_volume_json(
    first_ns: i64,
    step_ns: i64,
    counts: &[(&str, Vec<u64>)],
    buckets: usize,
) -> Value {
    let buckets: Vec<Value> = (0..buckets)
        .map(|i| {
            let by_severity: serde_json::Map<String, Value> = counts
                .iter()
                .filter(|(_, c)| c.get(i).is_some_and(|&n| n > 0))
                .map(|(severity, c)| (severity.to_string(), json!(c[i])))
                .collect();
            json!({ "t_ns": first_ns + i as i64 * step_ns, "counts": by_severity })
        })
        .collect();
    json!({ "step_ns": step_ns, "buckets": buckets })
}

/// A RED view's window and step (SPEC 6 `GET /api/v1/services/{service}/red`): the
/// last hour and one-minute steps unless given; a step is whole minutes, at least
/// one; at most 10,000 steps.
pub fn red_window(raw: Option<&str>) -> Result<(i64, i64, i64), String> {
    const MINUTE: i64 = 60_000_000_000;
    let mut step = MINUTE;
    let mut window = Vec::new();
    for (key, value) in pairs(raw) {
        if key == "step" {
            step = parse_duration_ns(&key, &value)?;
            if step < MINUTE || step % MINUTE != 0 {
                return Err(format!(
                    "step: `{value}` is not a whole number of minutes (1m, 5m, 1h)"
                ));
            }
        } else {
            window.push(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair(&key, &value)
                    .finish(),
            );
        }
    }
    let (start, end) = dependency_window(Some(&window.join("&")))?;
    let Some(span) = end.checked_sub(start).filter(|span| *span > 0) else {
        return Err("end: must be after start".into());
    };
    if span / step > 10_000 {
        return Err("step: more than 10000 steps in the window; take a longer step".into());
    }
    Ok((start, end, step))
}

#[cfg(test)]
mod window_tests {
    #[test]
    fn windows_that_would_overflow_are_refused() {
        let far = "start=-9223372036854775808&end=9223372036854775807";
        assert!(super::red_window(Some(far)).is_err());
        assert!(super::log_volume_query(Some(far)).is_err());
        let (start, _, _) = super::red_window(Some(
            "start=2026-12-08T10:00:00%2B02:00&end=2026-12-08T10:30:00Z",
        ))
        .unwrap();
        assert_eq!(
            start, 1_796_716_800_000_000_000,
            "an offset survives the re-encoding"
        );
    }
}

/// A RED view (SPEC 6).
pub fn red_json(
    service: &str,
    step_ns: i64,
    view: &[(String, Vec<ssfd_engine::red::Point>)],
) -> Value {
    let operations: Vec<Value> = view
        .iter()
        .map(|(name, points)| {
            let points: Vec<Value> = points
                .iter()
                .map(|p| {
                    json!({
                        "t_ns": p.t_ns, "rate": p.rate, "error_rate": p.error_rate,
                        "p50_ns": p.p50_ns, "p95_ns": p.p95_ns, "p99_ns": p.p99_ns,
                    })
                })
                .collect();
            json!({ "name": name, "points": points })
        })
        .collect();
    json!({ "service": service, "step_ns": step_ns, "operations": operations })
}

/// The service map (SPEC 6's `dependencies`).
pub fn dependencies_json(edges: &[ssfd_store::Dependency]) -> Value {
    let edges: Vec<Value> = edges
        .iter()
        .map(|e| {
            json!({
                "parent": e.parent, "child": e.child, "call_count": e.call_count,
                "error_count": e.error_count, "p50_ns": e.p50_ns, "p99_ns": e.p99_ns,
            })
        })
        .collect();
    json!({ "dependencies": edges })
}

/// One trace search hit (SPEC 6).
pub fn summary_json(summary: &TraceSummary) -> Value {
    json!({
        "trace_id": summary.trace_id.to_string(),
        "root_service": summary.root_service,
        "root_name": summary.root_name,
        "start_ns": summary.start_ns,
        "duration_ns": summary.duration_ns,
        "span_count": summary.span_count,
        "error_count": summary.error_count,
        "services": summary.services,
    })
}

/// One log record (SPEC 6's `LOG`).
pub fn log_json(record: &LogRecord) -> Value {
    json!({
        "timestamp_ns": record.timestamp_ns,
        "service": record.service,
        "trace_id": record.trace_id.map(|id| id.to_string()),
        "span_id": record.span_id.map(crate::span_hex),
        "name": record.name,
        "message": record.message,
        "severity": record.severity.label(),
        "tags": record.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_datetime_ns("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_datetime_ns("1970-01-01 00:00:01.5"),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_datetime_ns("1970-01-01 01:00:01+01:00"),
            Some(1_000_000_000)
        );
        assert_eq!(parse_datetime_ns("yesterday"), None);
        assert_eq!(parse_time("start", "42"), Ok(42));
        let now = 10_000_000_000_000;
        let hour = 3_600_000_000_000;
        assert_eq!(parse_time_at("start", "1h", now), Ok(now - hour));
        assert_eq!(parse_time_at("start", "now-1h", now), Ok(now - hour));
        assert_eq!(parse_time_at("start", "now - 30m", now), Ok(now - hour / 2));
        assert_eq!(parse_time_at("end", "now", now), Ok(now));
        assert_eq!(
            parse_time_at("start", "-90s", now),
            Ok(now - 90_000_000_000)
        );
        for bad in ["now+1h", "yesterday", "1x", "now-"] {
            let error = parse_time_at("start", bad, now).unwrap_err();
            assert!(error.contains("relative time"), "{bad}: {error}");
        }
        assert_eq!(normal_severity("ERROR"), Some("error"));
        assert_eq!(normal_severity("Warning"), Some("warn"));
        assert_eq!(normal_severity("loud"), None);
    }

    #[test]
    fn trace_parameters() {
        let query = trace_query(Some(
            "service=api&name=GET+%2F&tag=env:prod&tag=canary:&error=true&min_duration=250ms&max_duration=1.5s&start=2026-11-25T12:00:00Z&end=1795608000000000001&limit=5",
        ))
        .unwrap();
        assert_eq!(query.service.as_deref(), Some("api"));
        assert_eq!(query.name.as_deref(), Some("GET /"));
        assert_eq!(
            query.tags,
            [
                ("env".into(), "prod".into()),
                ("canary".into(), String::new())
            ]
        );
        assert_eq!(query.error, Some(true));
        assert_eq!(query.min_duration_ns, Some(250_000_000));
        assert_eq!(query.max_duration_ns, Some(1_500_000_000));
        assert_eq!(query.start_ns, Some(1_795_608_000_000_000_000));
        assert_eq!(query.end_ns, Some(1_795_608_000_000_000_001));
        assert_eq!(query.limit, 5);
        assert_eq!(trace_query(None).unwrap().limit, 20);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "error=maybe",
            "min_duration=fast",
            "start=yesterday",
            "bogus=1",
            "tag=env=prod",
            "tag=canary",
        ] {
            let error = trace_query(Some(bad)).unwrap_err();
            let key = bad.split('=').next().unwrap();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn log_parameters() {
        let query = log_query(Some(
            "q=%22connection+refused%22+db&service=api&severity=error&trace_id=00000000000004d2&tag=env:prod",
        ))
        .unwrap();
        assert_eq!(
            query.terms,
            vec![
                vec!["connection".to_string(), "refused".into()],
                vec!["db".into()]
            ]
        );
        assert_eq!(query.trace_id, Some(crate::TraceId(1234)));
        let both = log_query(Some("trace_id=1234")).unwrap();
        assert_eq!(
            (both.trace_id, both.trace_id_fallback),
            (Some(crate::TraceId(0x1234)), Some(crate::TraceId(1234)))
        );
        let error = log_query(Some("tag=k%3Dv")).unwrap_err();
        assert!(
            error.contains("key:value") && error.contains("k=v"),
            "{error}"
        );
        assert_eq!(query.severity.as_deref(), Some("error"));
        assert_eq!(query.limit, 100);
        for bad in ["severity=loud", "trace_id=xyz", "limit=5000", "nope=1"] {
            assert!(log_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
