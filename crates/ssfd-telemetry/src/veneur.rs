//! ssfd's own telemetry as Veneur sends its own to `stats_address` (SPEC 10): each
//! interval, the change of every counter since the last report as DogStatsD lines
//! under Veneur's names, types and tags, so a Veneur dashboard keeps its lines. Where
//! Veneur has no equivalent (drops and refusals by stage), the series is `ssfd.*`.

use crate::{
    DROPPED_TOTAL, DropReason, FLUSH_NANOS, FLUSHED, FLUSHED_TYPES, FLUSHES, Kind, Listener,
    Protocol, RECEIVED_TOTAL, REFUSED_TOTAL, REJECTED_TOTAL, Reason, RefuseReason, Stage,
    WORKER_CELLS, WORKER_PROCESSED, WORKER_RECEIVED_TOTAL,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

/// One series ssfd sends, for README's table and the tests: (name, DogStatsD type,
/// tag keys, the ssfd series that feeds it).
pub const SERIES: &[(&str, &str, &[&str], &str)] = &[
    (
        "veneur.packet.error_total",
        "c",
        &["packet_type", "reason"],
        "ssfd_rejected_total (packet_type: metric for statsd lines, else the listener; reason: toolong for too_long, else ssfd's reason)",
    ),
    (
        "veneur.worker.metrics_processed_total",
        "c",
        &["worker"],
        "samples each metric worker applied",
    ),
    (
        "veneur.worker.metrics_flushed_total",
        "c",
        &["metric_type"],
        "series flushed to the sinks: counter, gauge, status, histogram",
    ),
    (
        "veneur.worker.metrics_imported_total",
        "c",
        &[],
        "ssfd_received_total{listener=\"forward\"}",
    ),
    (
        "veneur.listen.received_per_protocol_total",
        "c",
        &["protocol"],
        "ssfd_received_total (protocol: dogstatsd-udp, dogstatsd-tcp, dogstatsd-unix, ssf-udp, ssf-tcp, ssf-unix, ssf-grpc, otlp-grpc, otlp-http, forward-grpc)",
    ),
    (
        "veneur.ssf.spans.received_total",
        "c",
        &[],
        "ssfd_worker_received_total{kind=\"span\"}",
    ),
    (
        "veneur.worker.ssf.empty_total",
        "c",
        &[],
        "ssfd_rejected_total{reason=\"empty\"} of SSF and gRPC",
    ),
    (
        "veneur.flush.total_duration_ns",
        "h",
        &[],
        "ssfd_flush_duration_seconds, one sample per flush (mean of the interval's)",
    ),
    (
        "veneur.sink.metric_flush_total_duration_ns",
        "h",
        &["sink"],
        "ssfd_sink_flush_duration_seconds of each metric sink",
    ),
    (
        "veneur.sink.span_flush_total_duration_ns",
        "h",
        &["sink"],
        "ssfd_sink_flush_duration_seconds of each span sink",
    ),
    (
        "veneur.sink.metrics_flushed_total",
        "c",
        &["sink"],
        "ssfd_sink_sent_total of each metric sink",
    ),
    (
        "veneur.sink.metrics_dropped_total",
        "c",
        &["sink"],
        "ssfd_sink_dropped_total of each metric sink",
    ),
    (
        "veneur.sink.spans_flushed_total",
        "c",
        &["sink"],
        "ssfd_sink_sent_total of each span sink",
    ),
    (
        "veneur.sink.spans_dropped_total",
        "c",
        &["sink"],
        "ssfd_sink_dropped_total of each span sink; sink:span_store and sink:log_index for ssfd_dropped_total{stage=\"store\" or \"index\"}",
    ),
    (
        "veneur.flush.error_total",
        "c",
        &["sink", "cause"],
        "ssfd_sink_failures_total (cause: send) and ssfd_sink_retries_total (cause: retried): each failed call, as Veneur, which does not retry, counts them",
    ),
    (
        "veneur.forward.post_metrics_total",
        "c",
        &[],
        "ssfd_forward_sent_total",
    ),
    (
        "veneur.forward.duration_ns",
        "ms",
        &["part"],
        "forwarding's delivery time (part: grpc), nanoseconds as Veneur sends it",
    ),
    (
        "veneur.forward.error_total",
        "c",
        &["cause"],
        "ssfd_forward_failures_total (cause: send), ssfd_forward_retries_total (cause: retried) and ssfd_forward_dropped_total (cause: dropped)",
    ),
    (
        "ssfd.dropped_total",
        "c",
        &["stage", "reason"],
        "ssfd_dropped_total: span and metric queue drops among them",
    ),
    (
        "ssfd.refused_total",
        "c",
        &["listener", "reason"],
        "ssfd_refused_total",
    ),
];

/// Every counter at one moment.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    received: Vec<u64>,
    rejected: Vec<u64>,
    dropped: Vec<u64>,
    refused: Vec<u64>,
    spans: u64,
    processed: Vec<u64>,
    flushed: Vec<u64>,
    flushes: u64,
    flush_nanos: u64,
    /// name → (kind, spans, sent, dropped, failures, flushes, flush nanos)
    sinks: HashMap<String, SinkSnapshot>,
}

#[derive(Clone, Copy, Debug, Default)]
struct SinkSnapshot {
    forward: bool,
    spans: bool,
    sent: u64,
    dropped: u64,
    failures: u64,
    retries: u64,
    flushes: u64,
    flush_nanos: u64,
}

fn load<const N: usize>(grid: &crate::Grid<N>) -> Vec<u64> {
    grid.cells.iter().map(|c| c.load(Relaxed)).collect()
}

impl Snapshot {
    fn now() -> Snapshot {
        let sinks = crate::sinks()
            .into_iter()
            .map(|(name, kind, counters)| {
                let (flushes, flush_nanos) = counters.flush_totals();
                (
                    format!("{kind}\u{0}{name}"),
                    SinkSnapshot {
                        forward: kind == "forward",
                        spans: counters.spans.load(Relaxed),
                        sent: counters.sent.load(Relaxed),
                        dropped: counters.dropped.load(Relaxed),
                        failures: counters.failures.load(Relaxed),
                        retries: counters.retries.load(Relaxed),
                        flushes,
                        flush_nanos,
                    },
                )
            })
            .collect();
        Snapshot {
            received: load(&RECEIVED_TOTAL),
            rejected: load(&REJECTED_TOTAL),
            dropped: load(&DROPPED_TOTAL),
            refused: load(&REFUSED_TOTAL),
            spans: WORKER_RECEIVED_TOTAL.cells[Kind::Span as usize].load(Relaxed),
            processed: load(&WORKER_PROCESSED),
            flushed: load(&FLUSHED),
            flushes: FLUSHES.load(Relaxed),
            flush_nanos: FLUSH_NANOS.load(Relaxed),
            sinks,
        }
    }
}

/// Veneur's `protocol` tag for what a listener took over a transport.
fn protocol_tag(listener: Listener, protocol: Protocol) -> String {
    let family = match listener {
        Listener::Statsd => "dogstatsd",
        Listener::Ssf | Listener::Grpc => "ssf",
        Listener::Otlp => "otlp",
        Listener::Forward => "forward",
    };
    let transport = match protocol {
        Protocol::Unixgram | Protocol::Unix => "unix",
        other => other.label(),
    };
    format!("{family}-{transport}")
}

/// A tag value that cannot break a DogStatsD line: a sink's name may hold `,`, `|`,
/// `#` or a newline, which would end the tag, field or line.
fn tag_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([',', '|', '#', '\n', '\r']) {
        value.replace([',', '|', '#', '\n', '\r'], "_").into()
    } else {
        value.into()
    }
}

/// Turns counter changes into DogStatsD lines, one report per interval.
#[derive(Debug, Default)]
pub struct Reporter {
    last: Snapshot,
    /// Tags added to every line (`veneur_metrics_additional_tags`'s place).
    tags: Vec<String>,
}

impl Reporter {
    /// A reporter whose first report counts from the process's start.
    pub fn new(tags: Vec<String>) -> Reporter {
        Reporter {
            last: Snapshot::default(),
            tags,
        }
    }

    /// The DogStatsD lines of what changed since the last report. Counters that did
    /// not move are left out, as Veneur leaves out what it has nothing to say about.
    pub fn report(&mut self) -> Vec<String> {
        let now = Snapshot::now();
        let last = std::mem::replace(&mut self.last, now);
        let now = &self.last;
        let delta = |a: &[u64], b: &[u64], i: usize| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(b.get(i).copied().unwrap_or(0))
        };
        let mut lines = Vec::new();
        let mut line = |name: &str, value: u64, kind: &str, tags: &[(&str, String)]| {
            let mut text = format!("{name}:{value}|{kind}");
            let all: Vec<String> = tags
                .iter()
                .map(|(k, v)| format!("{k}:{}", tag_value(v)))
                .chain(self.tags.iter().cloned())
                .collect();
            if !all.is_empty() {
                text.push_str("|#");
                text.push_str(&all.join(","));
            }
            lines.push(text);
        };
        // received, by Veneur's protocol names; imported (forwarded) metrics apart
        let mut by_protocol: Vec<(String, u64)> = Vec::new();
        for &listener in Listener::ALL {
            for &protocol in Protocol::ALL {
                let index = listener as usize * Protocol::COUNT + protocol as usize;
                let value = delta(&now.received, &last.received, index);
                if value == 0 {
                    continue;
                }
                let tag = protocol_tag(listener, protocol);
                match by_protocol.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, total)) => *total += value,
                    None => by_protocol.push((tag, value)),
                }
            }
        }
        for (tag, value) in by_protocol {
            line(
                "veneur.listen.received_per_protocol_total",
                value,
                "c",
                &[("protocol", tag)],
            );
        }
        let imported = delta(
            &now.received,
            &last.received,
            Listener::Forward as usize * Protocol::COUNT + Protocol::Grpc as usize,
        );
        if imported > 0 {
            line("veneur.worker.metrics_imported_total", imported, "c", &[]);
        }
        // rejected alone: Veneur's packet errors, and the empty spans apart
        let mut empty = 0;
        let mut errors: Vec<((String, String), u64)> = Vec::new();
        for &listener in Listener::ALL {
            for &protocol in Protocol::ALL {
                for &reason in Reason::ALL {
                    let index = (listener as usize * Protocol::COUNT + protocol as usize)
                        * Reason::COUNT
                        + reason as usize;
                    let value = delta(&now.rejected, &last.rejected, index);
                    if value == 0 {
                        continue;
                    }
                    if reason == Reason::Empty && listener != Listener::Statsd {
                        empty += value;
                    }
                    let packet_type = match listener {
                        Listener::Statsd => "metric",
                        other => other.label(),
                    };
                    let reason = match reason {
                        Reason::TooLong => "toolong",
                        other => other.label(),
                    };
                    let key = (packet_type.to_string(), reason.to_string());
                    match errors.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, total)) => *total += value,
                        None => errors.push((key, value)),
                    }
                }
            }
        }
        for ((packet_type, reason), value) in errors {
            line(
                "veneur.packet.error_total",
                value,
                "c",
                &[("packet_type", packet_type), ("reason", reason)],
            );
        }
        if empty > 0 {
            line("veneur.worker.ssf.empty_total", empty, "c", &[]);
        }
        let spans = now.spans.saturating_sub(last.spans);
        if spans > 0 {
            line("veneur.ssf.spans.received_total", spans, "c", &[]);
        }
        for worker in 0..WORKER_CELLS {
            let value = delta(&now.processed, &last.processed, worker);
            if value > 0 {
                line(
                    "veneur.worker.metrics_processed_total",
                    value,
                    "c",
                    &[("worker", worker.to_string())],
                );
            }
        }
        for (index, metric_type) in FLUSHED_TYPES.iter().enumerate() {
            let value = delta(&now.flushed, &last.flushed, index);
            if value > 0 {
                line(
                    "veneur.worker.metrics_flushed_total",
                    value,
                    "c",
                    &[("metric_type", (*metric_type).to_string())],
                );
            }
        }
        if let Some(nanos) = now
            .flush_nanos
            .saturating_sub(last.flush_nanos)
            .checked_div(now.flushes.saturating_sub(last.flushes))
        {
            line("veneur.flush.total_duration_ns", nanos, "h", &[]);
        }
        let mut names: Vec<&String> = now.sinks.keys().collect();
        names.sort();
        for key in names {
            let sink = now.sinks[key];
            let before = last.sinks.get(key).copied().unwrap_or_default();
            let name = key.split_once('\u{0}').map_or(key.as_str(), |(_, n)| n);
            let sent = sink.sent.saturating_sub(before.sent);
            let dropped = sink.dropped.saturating_sub(before.dropped);
            let failures = sink.failures.saturating_sub(before.failures);
            // each failed call is an error to Veneur, which does not retry
            let retried = sink.retries.saturating_sub(before.retries);
            let nanos = sink
                .flush_nanos
                .saturating_sub(before.flush_nanos)
                .checked_div(sink.flushes.saturating_sub(before.flushes));
            // the span forwarder is a span sink to Veneur's names (Veneur forwards
            // no spans), tagged `sink:forward`
            let name = if sink.forward && sink.spans {
                "forward"
            } else {
                name
            };
            if sink.forward && !sink.spans {
                if sent > 0 {
                    line("veneur.forward.post_metrics_total", sent, "c", &[]);
                }
                if let Some(nanos) = nanos {
                    line(
                        "veneur.forward.duration_ns",
                        nanos,
                        "ms",
                        &[("part", "grpc".into())],
                    );
                }
                if failures > 0 {
                    line(
                        "veneur.forward.error_total",
                        failures,
                        "c",
                        &[("cause", "send".into())],
                    );
                }
                if retried > 0 {
                    line(
                        "veneur.forward.error_total",
                        retried,
                        "c",
                        &[("cause", "retried".into())],
                    );
                }
                if dropped > 0 {
                    line(
                        "veneur.forward.error_total",
                        dropped,
                        "c",
                        &[("cause", "dropped".into())],
                    );
                }
                continue;
            }
            let sink_tag = [("sink", name.to_string())];
            let (duration, flushed, dropped_name) = if sink.spans {
                (
                    "veneur.sink.span_flush_total_duration_ns",
                    "veneur.sink.spans_flushed_total",
                    "veneur.sink.spans_dropped_total",
                )
            } else {
                (
                    "veneur.sink.metric_flush_total_duration_ns",
                    "veneur.sink.metrics_flushed_total",
                    "veneur.sink.metrics_dropped_total",
                )
            };
            if let Some(nanos) = nanos {
                line(duration, nanos, "h", &sink_tag);
            }
            if sent > 0 {
                line(flushed, sent, "c", &sink_tag);
            }
            if dropped > 0 {
                line(dropped_name, dropped, "c", &sink_tag);
            }
            if failures > 0 {
                line(
                    "veneur.flush.error_total",
                    failures,
                    "c",
                    &[("sink", name.to_string()), ("cause", "send".into())],
                );
            }
            if retried > 0 {
                line(
                    "veneur.flush.error_total",
                    retried,
                    "c",
                    &[("sink", name.to_string()), ("cause", "retried".into())],
                );
            }
        }
        for &stage in Stage::ALL {
            for &reason in DropReason::ALL {
                let index = stage as usize * DropReason::COUNT + reason as usize;
                let value = delta(&now.dropped, &last.dropped, index);
                if value == 0 {
                    continue;
                }
                match stage {
                    Stage::Store | Stage::Index => line(
                        "veneur.sink.spans_dropped_total",
                        value,
                        "c",
                        &[(
                            "sink",
                            if stage == Stage::Store {
                                "span_store"
                            } else {
                                "log_index"
                            }
                            .into(),
                        )],
                    ),
                    _ => {}
                }
                line(
                    "ssfd.dropped_total",
                    value,
                    "c",
                    &[
                        ("stage", stage.label().into()),
                        ("reason", reason.label().into()),
                    ],
                );
            }
        }
        for &listener in Listener::ALL {
            for &reason in RefuseReason::ALL {
                let index = listener as usize * RefuseReason::COUNT + reason as usize;
                let value = delta(&now.refused, &last.refused, index);
                if value > 0 {
                    line(
                        "ssfd.refused_total",
                        value,
                        "c",
                        &[
                            ("listener", listener.label().into()),
                            ("reason", reason.label().into()),
                        ],
                    );
                }
            }
        }
        lines
    }
}

/// Packs lines into datagrams of at most `max` bytes (a line longer than that goes
/// alone), as DogStatsD clients do.
pub fn datagrams(lines: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_changes_under_veneurs_names_once() {
        let mut reporter = Reporter::new(vec!["veneur_internal:true".into()]);
        let _ = reporter.report();
        crate::received(Listener::Statsd, Protocol::Udp, 7);
        crate::rejected(Listener::Statsd, Protocol::Udp, Reason::TooLong, 2);
        crate::rejected(Listener::Ssf, Protocol::Udp, Reason::Empty, 1);
        crate::worker_processed(1, 5);
        crate::flushed("gauge", 3);
        let lines = reporter.report();
        for want in [
            "veneur.listen.received_per_protocol_total:7|c|#protocol:dogstatsd-udp,veneur_internal:true",
            "veneur.packet.error_total:2|c|#packet_type:metric,reason:toolong,veneur_internal:true",
            "veneur.packet.error_total:1|c|#packet_type:ssf,reason:empty,veneur_internal:true",
            "veneur.worker.ssf.empty_total:1|c|#veneur_internal:true",
            "veneur.worker.metrics_processed_total:5|c|#worker:1,veneur_internal:true",
            "veneur.worker.metrics_flushed_total:3|c|#metric_type:gauge,veneur_internal:true",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} in {lines:#?}");
        }
        // each name is in the table README documents
        for line in &lines {
            let name = line.split(':').next().unwrap();
            assert!(SERIES.iter().any(|(n, ..)| *n == name), "{name}");
        }
        // nothing moved: nothing to say (other tests in this process may add some)
        let again = reporter.report();
        assert!(!again.iter().any(|l| l.contains("worker:1,")), "{again:#?}");
    }

    #[test]
    fn tag_values_cannot_break_a_line() {
        assert_eq!(tag_value("a,b|c#d\ne"), "a_b_c_d_e");
        assert_eq!(tag_value("plain-name"), "plain-name");
    }

    #[test]
    fn datagrams_stay_under_the_size() {
        let lines: Vec<String> = (0..100).map(|i| format!("veneur.x:{i}|c")).collect();
        let packed = datagrams(&lines, 100);
        assert!(packed.iter().all(|d| d.len() <= 100), "{packed:?}");
        assert_eq!(packed.join("\n").lines().count(), 100);
    }
}
