//! `/metrics` in both formats: the Prometheus text format (0.0.4) and OpenMetrics 1.0
//! when the scraper asks for it (`Accept: application/openmetrics-text`), which adds
//! the span-metrics exemplars; plus the OTel span-metrics families (SPEC 4.4).

use ssfd_engine::span_metrics::{BUCKETS_MS, Exemplar, SpanMetricKey, SpanSeries};
use std::fmt::Write as _;

/// The content type of each format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// True when an `Accept` header prefers OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites text-format output to OpenMetrics: a counter family's `# HELP`/`# TYPE`
/// name loses its `_total` suffix (its samples keep it).
pub fn to_openmetrics(text: &str, out: &mut String) {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    for line in text.lines() {
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let family = name
                .strip_suffix("_total")
                .filter(|_| counters.contains(name))?;
            Some(format!("{prefix}{family} {tail}"))
        });
        match rewritten {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn exemplar(
    exemplar: Option<&Exemplar>,
    openmetrics: bool,
    value: impl FnOnce(&Exemplar) -> f64,
) -> String {
    match exemplar {
        Some(e) if openmetrics => {
            format!(
                " # {{trace_id=\"{}\"}} {} {:.3}",
                e.trace_id,
                value(e),
                e.timestamp
            )
        }
        _ => String::new(),
    }
}

/// A histogram's cumulative `_bucket` lines: `counts` per bucket of `bounds`, then +Inf,
/// each followed by what `suffix` gives for its index (an exemplar, or nothing).
fn buckets(
    out: &mut String,
    name: &str,
    label_set: &str,
    bounds: &[f64],
    counts: &[u64],
    suffix: impl Fn(usize) -> String,
) {
    let mut cumulative = 0;
    for (index, count) in counts.iter().enumerate() {
        cumulative += count;
        let le = bounds
            .get(index)
            .map_or("+Inf".to_string(), |le| format!("{le}"));
        let _ = writeln!(
            out,
            "{name}_bucket{{{label_set},le=\"{le}\"}} {cumulative}{}",
            suffix(index)
        );
    }
}

/// Appends `traces_span_metrics_calls_total` and the histogram
/// `traces_span_metrics_duration_milliseconds`; exemplars only in OpenMetrics.
pub fn render_span_metrics(
    series: &[(SpanMetricKey, SpanSeries)],
    openmetrics: bool,
    out: &mut String,
) {
    if series.is_empty() {
        return;
    }
    let labels = |key: &SpanMetricKey| {
        format!(
            "service_name=\"{}\",span_name=\"{}\",span_kind=\"{}\",status_code=\"{}\"",
            escape(&key.0),
            escape(&key.1),
            key.2,
            key.3
        )
    };
    let calls = if openmetrics {
        "traces_span_metrics_calls"
    } else {
        "traces_span_metrics_calls_total"
    };
    let _ = writeln!(
        out,
        "# HELP {calls} spans per service, name, kind and status (OTel span metrics)"
    );
    let _ = writeln!(out, "# TYPE {calls} counter");
    for (key, counts) in series {
        let last = counts
            .exemplars
            .iter()
            .flatten()
            .max_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let _ = writeln!(
            out,
            "traces_span_metrics_calls_total{{{}}} {}{}",
            labels(key),
            counts.calls,
            exemplar(last, openmetrics, |_| 1.0)
        );
    }
    let name = "traces_span_metrics_duration_milliseconds";
    let _ = writeln!(out, "# HELP {name} span durations (OTel span metrics)");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (key, counts) in series {
        let label_set = labels(key);
        buckets(
            out,
            name,
            &label_set,
            &BUCKETS_MS,
            &counts.buckets,
            |index| exemplar(counts.exemplars[index].as_ref(), openmetrics, |e| e.value),
        );
        let _ = writeln!(out, "{name}_sum{{{label_set}}} {}", counts.sum_ms);
        let _ = writeln!(out, "{name}_count{{{label_set}}} {}", counts.calls);
    }
}

/// Appends the OTel service-graph families: `traces_service_graph_request_total`,
/// `traces_service_graph_request_failed_total` and the histogram
/// `traces_service_graph_request_server_seconds`, labelled `client` and `server`.
pub fn render_service_graph(
    series: &[((String, String), ssfd_engine::service_graph::EdgeSeries)],
    openmetrics: bool,
    out: &mut String,
) {
    use ssfd_engine::service_graph::BUCKETS_S;
    if series.is_empty() {
        return;
    }
    let labels = |(client, server): &(String, String)| {
        format!(
            "client=\"{}\",server=\"{}\"",
            escape(client),
            escape(server)
        )
    };
    for (family, help, value) in [
        (
            "traces_service_graph_request",
            "calls from a client service's span to a server service's child span (OTel service graph)",
            (|s: &ssfd_engine::service_graph::EdgeSeries| s.requests) as fn(&_) -> u64,
        ),
        (
            "traces_service_graph_request_failed",
            "such calls whose server span had an error (OTel service graph)",
            |s| s.failed,
        ),
    ] {
        let metadata = if openmetrics {
            family.to_string()
        } else {
            format!("{family}_total")
        };
        let _ = writeln!(out, "# HELP {metadata} {help}");
        let _ = writeln!(out, "# TYPE {metadata} counter");
        for (key, counts) in series {
            let _ = writeln!(out, "{family}_total{{{}}} {}", labels(key), value(counts));
        }
    }
    let name = "traces_service_graph_request_server_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} the server spans' durations (OTel service graph)"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (key, counts) in series {
        let label_set = labels(key);
        buckets(out, name, &label_set, &BUCKETS_S, &counts.buckets, |_| {
            String::new()
        });
        let _ = writeln!(out, "{name}_sum{{{label_set}}} {}", counts.sum_seconds);
        let _ = writeln!(out, "{name}_count{{{label_set}}} {}", counts.requests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_lose_total_in_metadata_only() {
        let mut out = String::new();
        to_openmetrics(
            "# HELP a_total x\n# TYPE a_total counter\na_total 1\n# HELP b_total y\n# TYPE b_total gauge\nb_total 2\n",
            &mut out,
        );
        assert_eq!(
            out,
            "# HELP a x\n# TYPE a counter\na_total 1\n# HELP b_total y\n# TYPE b_total gauge\nb_total 2\n"
        );
    }

    #[test]
    fn span_metrics_render_with_exemplars_in_openmetrics() {
        let registry = ssfd_engine::span_metrics::SpanMetricsRegistry::default();
        registry.observe([ssfd_engine::span_metrics::SpanObservation {
            service: "api",
            name: "GET /",
            kind: "SPAN_KIND_SERVER",
            error: false,
            duration_ms: 7.5,
            trace_id: ssfd_wire::ids::TraceId::from_parts(0x94568bc249d55603, 0x4d2),
        }]);
        let snapshot = registry.snapshot();
        let mut text = String::new();
        render_span_metrics(&snapshot, false, &mut text);
        assert!(text.contains("traces_span_metrics_calls_total{service_name=\"api\",span_name=\"GET /\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"} 1\n"), "{text}");
        assert!(text.contains("le=\"8\"} 1\n"), "{text}");
        assert!(!text.contains('#') || !text.contains("trace_id"));
        let mut open = String::new();
        render_span_metrics(&snapshot, true, &mut open);
        assert!(open.contains("# TYPE traces_span_metrics_calls counter\n"));
        assert!(
            open.contains("le=\"8\"} 1 # {trace_id=\"94568bc249d5560300000000000004d2\"} 7.5 "),
            "{open}"
        );
        assert!(open.contains("le=\"6\"} 0\n"), "{open}");
    }
}
