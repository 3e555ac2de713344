//! The OpenTelemetry service-graph metrics (issue 20 point 3): every parent → child
//! call between two services becomes an edge as the spans arrive, counted once
//! whatever order parent and child come in, and feeds
//! `traces_service_graph_request_total`, `..._failed_total` and the histogram
//! `traces_service_graph_request_server_seconds` (labels `client`, `server`), so
//! Grafana's service graph works from a Prometheus scrape.
//!
//! A trace's spans all reach one span worker (sharded by trace id), so each worker
//! pairs its own spans ([`EdgePairer`]): a child whose parent has not arrived waits,
//! bounded in time ([`PAIR_WINDOW`]) and count ([`MAX_WAITING`]); what leaves unpaired
//! is never counted.

use crate::span::SpanRecord;
use ssfd_wire::ids::TraceId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The OTel servicegraph connector's default buckets, in seconds.
pub const BUCKETS_S: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];

/// How long a span waits for its parent or children.
pub const PAIR_WINDOW: Duration = Duration::from_secs(60);
/// Spans a worker remembers for pairing at most (past it the oldest go first).
pub const MAX_WAITING: usize = 200_000;

/// One call: the client (parent) and server (child) services, the child's duration
/// and error flag.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub client: String,
    pub server: String,
    pub seconds: f64,
    pub failed: bool,
}

#[derive(Debug)]
struct Seen {
    service: String,
    at: Instant,
    /// Counted as a child already (a span id sent twice counts once).
    counted: bool,
}

#[derive(Debug)]
struct Waiting {
    id: i64,
    service: String,
    seconds: f64,
    failed: bool,
    at: Instant,
}

/// One span worker's pairing state.
#[derive(Debug, Default)]
pub struct EdgePairer {
    seen: HashMap<(TraceId, i64), Seen>,
    /// Children by (trace, parent id), waiting for their parent.
    waiting: HashMap<(TraceId, i64), Vec<Waiting>>,
    waiting_count: usize,
    last_sweep: Option<Instant>,
}

impl EdgePairer {
    /// Pairs `span` with what came before; returns the calls it completes.
    pub fn add(&mut self, span: &SpanRecord<'_>, now: Instant, out: &mut Vec<Edge>) {
        let entry = span.entry;
        let trace = entry.trace_id;
        let seconds = entry
            .end_timestamp
            .saturating_sub(entry.start_timestamp)
            .max(0) as f64
            / 1e9;
        let first = !self.seen.contains_key(&(trace, entry.id));
        if first {
            self.seen.insert(
                (trace, entry.id),
                Seen {
                    service: span.service.to_string(),
                    at: now,
                    counted: false,
                },
            );
        }
        // this span as a child
        if entry.parent_id != 0 && entry.parent_id != entry.id {
            let counted = self.seen.get(&(trace, entry.id)).is_some_and(|s| s.counted);
            match self.seen.get(&(trace, entry.parent_id)) {
                Some(parent) if !counted => {
                    if parent.service != span.service {
                        out.push(Edge {
                            client: parent.service.clone(),
                            server: span.service.to_string(),
                            seconds,
                            failed: entry.error,
                        });
                    }
                    if let Some(me) = self.seen.get_mut(&(trace, entry.id)) {
                        me.counted = true;
                    }
                }
                None if first => {
                    self.waiting
                        .entry((trace, entry.parent_id))
                        .or_default()
                        .push(Waiting {
                            id: entry.id,
                            service: span.service.to_string(),
                            seconds,
                            failed: entry.error,
                            at: now,
                        });
                    self.waiting_count += 1;
                }
                _ => {}
            }
        }
        // this span as the parent its children waited for
        if let Some(children) = self.waiting.remove(&(trace, entry.id)) {
            self.waiting_count -= children.len();
            for child in children {
                if child.service != span.service {
                    out.push(Edge {
                        client: span.service.to_string(),
                        server: child.service,
                        seconds: child.seconds,
                        failed: child.failed,
                    });
                }
                if let Some(seen) = self.seen.get_mut(&(trace, child.id)) {
                    seen.counted = true;
                }
            }
        }
        self.sweep(now);
    }

    /// Forgets what is older than the window, and the oldest past the count bound.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1));
        let over = self.seen.len() > MAX_WAITING || self.waiting_count > MAX_WAITING;
        if !due && !over {
            return;
        }
        self.last_sweep = Some(now);
        let window = if over { PAIR_WINDOW / 4 } else { PAIR_WINDOW };
        self.seen.retain(|_, s| now.duration_since(s.at) < window);
        self.waiting.retain(|_, children| {
            children.retain(|c| now.duration_since(c.at) < window);
            !children.is_empty()
        });
        self.waiting_count = self.waiting.values().map(Vec::len).sum();
    }
}

/// One (client, server) pair's cumulative counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeSeries {
    pub requests: u64,
    pub failed: u64,
    /// Count per bucket (not cumulative), plus the +Inf bucket last.
    pub buckets: [u64; BUCKETS_S.len() + 1],
    pub sum_seconds: f64,
}

/// The service graph's cumulative series, fed by the span workers, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ServiceGraph {
    series: Mutex<HashMap<(String, String), EdgeSeries>>,
}

impl ServiceGraph {
    pub fn observe(&self, edges: &[Edge]) {
        if edges.is_empty() {
            return;
        }
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        for edge in edges {
            let counts = series
                .entry((edge.client.clone(), edge.server.clone()))
                .or_default();
            counts.requests += 1;
            counts.failed += u64::from(edge.failed);
            let bucket = BUCKETS_S
                .iter()
                .position(|le| edge.seconds <= *le)
                .unwrap_or(BUCKETS_S.len());
            counts.buckets[bucket] += 1;
            counts.sum_seconds += edge.seconds;
        }
    }

    /// Every pair's counts, sorted by (client, server).
    pub fn snapshot(&self) -> Vec<((String, String), EdgeSeries)> {
        let mut out: Vec<_> = self
            .series
            .lock()
            .map(|series| series.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanBatch;
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    use ssfd_wire::ssf_view::SpanView;

    fn batch(spans: &[(i64, i64, &str, bool)]) -> SpanBatch {
        let mut batch = SpanBatch::default();
        for &(id, parent, service, error) in spans {
            let bytes = SsfSpan {
                trace_id: 7,
                id,
                parent_id: parent,
                start_timestamp: 1_000,
                end_timestamp: 1_000 + 3_000_000,
                service: service.into(),
                name: "op".into(),
                error,
                ..Default::default()
            }
            .encode_to_vec();
            batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
        }
        batch
    }

    #[test]
    fn each_call_once_in_any_order() {
        let now = Instant::now();
        let mut pairer = EdgePairer::default();
        let mut edges = Vec::new();
        // the db span before its api parent, which comes before its web parent; the
        // api span sent twice; an api → api child is no edge between services
        let spans = batch(&[
            (3, 2, "db", false),
            (2, 1, "api", true),
            (2, 1, "api", true),
            (4, 2, "api", false),
            (1, 0, "web", false),
        ]);
        for span in spans.records() {
            pairer.add(&span, now, &mut edges);
        }
        let mut pairs: Vec<(&str, &str, bool)> = edges
            .iter()
            .map(|e| (e.client.as_str(), e.server.as_str(), e.failed))
            .collect();
        pairs.sort();
        assert_eq!(pairs, [("api", "db", false), ("web", "api", true)]);
        let graph = ServiceGraph::default();
        graph.observe(&edges);
        let snapshot = graph.snapshot();
        assert_eq!(snapshot[1].0, ("web".to_string(), "api".to_string()));
        assert_eq!((snapshot[1].1.requests, snapshot[1].1.failed), (1, 1));
        assert_eq!(snapshot[1].1.buckets[1], 1, "3 ms is in the 4 ms bucket");
    }

    #[test]
    fn unpaired_children_are_forgotten_after_the_window() {
        let start = Instant::now();
        let mut pairer = EdgePairer::default();
        let mut edges = Vec::new();
        for span in batch(&[(3, 2, "db", false)]).records() {
            pairer.add(&span, start, &mut edges);
        }
        let later = start + PAIR_WINDOW + Duration::from_secs(2);
        for span in batch(&[(9, 0, "other", false)]).records() {
            pairer.add(&span, later, &mut edges);
        }
        assert_eq!(pairer.waiting_count, 0);
        for span in batch(&[(2, 0, "api", false)]).records() {
            pairer.add(&span, later, &mut edges);
        }
        assert!(edges.is_empty(), "the child left unpaired: not counted");
    }
}
