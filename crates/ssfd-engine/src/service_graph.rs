//! The OpenTelemetry service-graph metrics (issue 20 point 3): every parent → child
//! call between two services becomes an edge as the spans arrive, counted once
//! whatever order parent and child come in, and feeds
//! `traces_service_graph_request_total`, `..._failed_total` and the histogram
//! `traces_service_graph_request_server_seconds` (labels `client`, `server`), so
//! Grafana's service graph works from a Prometheus scrape.
//!
//! A trace's spans all reach one span worker (sharded by trace id), so each worker
//! pairs its own spans ([`EdgePairer`]): a child whose parent has not arrived waits,
//! bounded in time ([`PAIR_WINDOW`]) and count ([`MAX_WAITING`], two generations that
//! turn over, so forgetting costs nothing per span); what leaves unpaired is never
//! counted.

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

/// Spans seen and children waiting, of one generation.
#[derive(Debug, Default)]
struct Generation {
    seen: HashMap<(TraceId, i64), Seen>,
    /// Children by (trace, parent id), waiting for their parent.
    waiting: HashMap<(TraceId, i64), Vec<Waiting>>,
    entries: usize,
}

/// One span worker's pairing state: two generations, the current one and the one
/// before, so memory is bounded and forgetting costs nothing per span. A generation
/// turns over every half [`PAIR_WINDOW`], or when it holds half of [`MAX_WAITING`];
/// so a span is remembered for at least half the window (unless the bound is hit) and
/// at most the whole window.
#[derive(Debug, Default)]
pub struct EdgePairer {
    current: Generation,
    previous: Generation,
    turned: Option<Instant>,
}

impl EdgePairer {
    fn seen(&self, key: &(TraceId, i64)) -> Option<&Seen> {
        self.current
            .seen
            .get(key)
            .or_else(|| self.previous.seen.get(key))
    }

    fn mark_counted(&mut self, key: &(TraceId, i64)) {
        if let Some(seen) = self.current.seen.get_mut(key) {
            seen.counted = true;
        } else if let Some(seen) = self.previous.seen.get_mut(key) {
            seen.counted = true;
        }
    }

    /// Pairs `span` with what came before; returns the calls it completes.
    pub fn add(&mut self, span: &SpanRecord<'_>, now: Instant, out: &mut Vec<Edge>) {
        self.turn(now);
        let entry = span.entry;
        let trace = entry.trace_id;
        let key = (trace, entry.id);
        let seconds = entry
            .end_timestamp
            .saturating_sub(entry.start_timestamp)
            .max(0) as f64
            / 1e9;
        let first = self.seen(&key).is_none();
        if first {
            self.current.seen.insert(
                key,
                Seen {
                    service: span.service.to_string(),
                    counted: false,
                },
            );
            self.current.entries += 1;
        }
        // this span as a child
        if entry.parent_id != 0 && entry.parent_id != entry.id {
            let counted = self.seen(&key).is_some_and(|s| s.counted);
            match self.seen(&(trace, entry.parent_id)) {
                Some(parent) if !counted => {
                    if parent.service != span.service {
                        out.push(Edge {
                            client: parent.service.clone(),
                            server: span.service.to_string(),
                            seconds,
                            failed: entry.error,
                        });
                    }
                    self.mark_counted(&key);
                }
                None if first => {
                    self.current
                        .waiting
                        .entry((trace, entry.parent_id))
                        .or_default()
                        .push(Waiting {
                            id: entry.id,
                            service: span.service.to_string(),
                            seconds,
                            failed: entry.error,
                            at: now,
                        });
                    self.current.entries += 1;
                }
                _ => {}
            }
        }
        // this span as the parent its children waited for
        let mut children = self.current.waiting.remove(&key).unwrap_or_default();
        children.extend(self.previous.waiting.remove(&key).unwrap_or_default());
        for child in children {
            if now.duration_since(child.at) > PAIR_WINDOW {
                continue;
            }
            if child.service != span.service {
                out.push(Edge {
                    client: span.service.to_string(),
                    server: child.service,
                    seconds: child.seconds,
                    failed: child.failed,
                });
            }
            self.mark_counted(&(trace, child.id));
        }
    }

    /// Starts a new generation when the current one is half a window old or full;
    /// the one before it is forgotten.
    fn turn(&mut self, now: Instant) {
        let turned = *self.turned.get_or_insert(now);
        if now.duration_since(turned) >= PAIR_WINDOW / 2 || self.current.entries >= MAX_WAITING / 2
        {
            self.previous = std::mem::take(&mut self.current);
            self.turned = Some(now);
        }
    }

    /// Children still waiting for their parent.
    pub fn waiting(&self) -> usize {
        self.current.waiting.values().map(Vec::len).sum::<usize>()
            + self.previous.waiting.values().map(Vec::len).sum::<usize>()
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
        assert!(pairer.waiting() <= 1, "kept one generation at most");
        for span in batch(&[(2, 0, "api", false)]).records() {
            pairer.add(&span, later, &mut edges);
        }
        assert!(edges.is_empty(), "the child left unpaired: not counted");
    }
}
