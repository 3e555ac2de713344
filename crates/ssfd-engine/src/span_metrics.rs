//! The OpenTelemetry span-metrics of SPEC 4.4: `traces_span_metrics_calls_total` and
//! the histogram `traces_span_metrics_duration_milliseconds` with OTel's default
//! buckets, labelled `service_name`, `span_name`, `span_kind`, `status_code`, each
//! keeping the last trace id per bucket as its exemplar. Span workers update it once
//! per batch; `/metrics` renders it.

use std::collections::HashMap;
use std::sync::Mutex;

/// OTel's spanmetrics connector default buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10000.0, 15000.0,
];

/// (service_name, span_name, span_kind, status_code).
pub type SpanMetricKey = (String, String, &'static str, &'static str);

/// An exemplar: the trace id, the observed value, and when (unix seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    pub trace_id: ssfd_wire::ids::TraceId,
    pub value: f64,
    pub timestamp: f64,
}

/// One label set's cumulative counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanSeries {
    pub calls: u64,
    /// Count per bucket (not cumulative), plus the +Inf bucket last.
    pub buckets: [u64; BUCKETS_MS.len() + 1],
    pub sum_ms: f64,
    /// Last exemplar per bucket (+Inf last).
    pub exemplars: [Option<Exemplar>; BUCKETS_MS.len() + 1],
}

/// What a span contributes (borrowed from the span's bytes: no allocation per span).
#[derive(Clone, Copy, Debug)]
pub struct SpanObservation<'a> {
    pub service: &'a str,
    pub name: &'a str,
    pub kind: &'static str,
    pub error: bool,
    pub duration_ms: f64,
    pub trace_id: ssfd_wire::ids::TraceId,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct OwnedKey {
    service: String,
    name: String,
    kind: &'static str,
    status: &'static str,
}

/// The same key, borrowed: hashes like [`OwnedKey`] so lookups need no allocation.
#[derive(Hash)]
struct BorrowedKey<'a> {
    service: &'a str,
    name: &'a str,
    kind: &'static str,
    status: &'static str,
}

impl hashbrown::Equivalent<OwnedKey> for BorrowedKey<'_> {
    fn equivalent(&self, key: &OwnedKey) -> bool {
        self.service == key.service
            && self.name == key.name
            && self.kind == key.kind
            && self.status == key.status
    }
}

/// SPEC 4.4's cap on distinct span names per service. One cap serves the RED metrics
/// derived at ingest and the OTel span metrics, so both count the same names and
/// overflow the same ones. A name not seen for `expiry` (`prometheus_expiry`) frees
/// its place, and a service none of whose names was seen for `expiry` is forgotten
/// (looked for once a minute), so a stream of ever-new service names cannot grow the
/// cap without bound.
#[derive(Debug)]
pub struct SpanNameCap {
    per_service: usize,
    expiry: f64,
    names: Mutex<CapState>,
}

#[derive(Debug)]
struct CapState {
    services: HashMap<String, ServiceNames>,
    /// When idle names of every service were last looked for (unix seconds).
    swept: f64,
}

/// One service's counted span names with when each was last seen, and when its idle
/// names were last looked for (unix seconds).
type ServiceNames = (HashMap<String, f64>, f64);

/// How often (seconds) the cap looks through every service for idle names.
const SWEEP_EVERY: f64 = 60.0;

impl Default for SpanNameCap {
    /// SPEC 4.4's default: 1,000 names per service, idle ones leaving after 5 minutes.
    fn default() -> Self {
        SpanNameCap::new(1000, std::time::Duration::from_secs(300))
    }
}

impl SpanNameCap {
    pub fn new(per_service: usize, expiry: std::time::Duration) -> Self {
        SpanNameCap {
            per_service,
            expiry: expiry.as_secs_f64(),
            names: Mutex::new(CapState {
                services: HashMap::new(),
                swept: f64::NEG_INFINITY,
            }),
        }
    }

    /// Services that have a counted name.
    pub fn services(&self) -> usize {
        self.names.lock().map_or(0, |state| state.services.len())
    }

    /// True when `name` is (or now becomes) one of `service`'s counted names.
    pub fn admit(&self, service: &str, name: &str) -> bool {
        self.admit_at(service, name, unix_now())
    }

    /// [`SpanNameCap::admit`] at `now` (unix seconds): a counted name is marked seen; at
    /// the cap, names idle for the expiry leave first (looked for at most once a
    /// second per service, so a flood of excess names stays cheap).
    pub fn admit_at(&self, service: &str, name: &str, now: f64) -> bool {
        let Ok(mut state) = self.names.lock() else {
            return false;
        };
        let expiry = self.expiry;
        if now - state.swept >= SWEEP_EVERY {
            state.swept = now;
            state.services.retain(|_, (known, _)| {
                known.retain(|_, seen| now - *seen < expiry);
                !known.is_empty()
            });
        }
        if !state.services.contains_key(service) {
            let fresh = (HashMap::new(), f64::NEG_INFINITY);
            state.services.insert(service.to_string(), fresh);
        }
        let (known, pruned) = state.services.get_mut(service).expect("inserted above");
        if let Some(seen) = known.get_mut(name) {
            *seen = seen.max(now);
            return true;
        }
        if known.len() >= self.per_service && now - *pruned >= 1.0 {
            *pruned = now;
            known.retain(|_, seen| now - *seen < expiry);
        }
        if known.len() >= self.per_service {
            return false;
        }
        known.insert(name.to_string(), now);
        true
    }
}

/// One thread's memory of the names [`SpanNameCap`] admitted within the last second, so
/// the cap's mutex is taken at most once a second per name per thread, and the cap
/// still hears once a second that a name is in use (it never leaves while spans carry
/// it). Confirmations older than a second are useless, and a sweep at most once a
/// second drops them, so a thread holds only the names it saw in the last two seconds.
#[derive(Debug, Default)]
pub struct AdmittedNames {
    /// service → name → when the cap last admitted it (unix seconds).
    services: HashMap<Box<str>, HashMap<Box<str>, f64>>,
    /// When stale confirmations were last dropped (unix seconds).
    swept: f64,
}

impl AdmittedNames {
    /// True when `name` counts under its own name for `service` at `now` (unix
    /// seconds); false when it is over `cap` (counted as `ssfd_overflow`).
    pub fn admit_at(&mut self, cap: &SpanNameCap, service: &str, name: &str, now: f64) -> bool {
        if now - self.swept >= 1.0 {
            self.swept = now;
            self.services.retain(|_, names| {
                names.retain(|_, confirmed| now - *confirmed < 1.0);
                !names.is_empty()
            });
        }
        if let Some(confirmed) = self.services.get(service).and_then(|n| n.get(name))
            && now - *confirmed < 1.0
        {
            return true;
        }
        if cap.admit_at(service, name, now) {
            match self.services.get_mut(service) {
                Some(names) => {
                    names.insert(name.into(), now);
                }
                None => {
                    let names = HashMap::from([(name.into(), now)]);
                    self.services.insert(service.into(), names);
                }
            }
            true
        } else {
            if let Some(names) = self.services.get_mut(service) {
                names.remove(name);
            }
            false
        }
    }

    /// Names held, over all services.
    pub fn len(&self) -> usize {
        self.services.values().map(HashMap::len).sum()
    }

    /// True when no name is held.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// The cumulative span metrics, shared by span workers (writers) and `/metrics`.
#[derive(Debug)]
pub struct SpanMetricsRegistry {
    /// Each series with when it was last observed (unix seconds).
    series: Mutex<hashbrown::HashMap<OwnedKey, (SpanSeries, f64)>>,
    /// `prometheus_expiry`: a series idle this long leaves the exposition.
    expiry: std::time::Duration,
    /// Distinct span names per service before names become `ssfd_overflow`.
    names: std::sync::Arc<SpanNameCap>,
    /// The service-graph metrics, fed by the same span workers.
    graph: crate::service_graph::ServiceGraph,
    /// Each operation's RED minutes (SPEC 6's RED view), fed by the same workers.
    red: crate::red::RedHistory,
}

impl Default for SpanMetricsRegistry {
    fn default() -> Self {
        SpanMetricsRegistry::new(1000)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub use crate::span::span_kind;

impl SpanMetricsRegistry {
    /// A registry with its own cap of `names_per_service` names per service.
    pub fn new(names_per_service: usize) -> Self {
        let expiry = std::time::Duration::from_secs(300);
        SpanMetricsRegistry {
            series: Mutex::default(),
            expiry,
            names: std::sync::Arc::new(SpanNameCap::new(names_per_service, expiry)),
            graph: crate::service_graph::ServiceGraph::default(),
            red: crate::red::RedHistory::default(),
        }
    }

    /// Each operation's RED minutes.
    pub fn red(&self) -> &crate::red::RedHistory {
        &self.red
    }

    /// The service-graph metrics (`traces_service_graph_*`).
    pub fn graph(&self) -> &crate::service_graph::ServiceGraph {
        &self.graph
    }

    /// Series idle for `expiry` disappear (SPEC 6's `prometheus_expiry`; 5m unless
    /// set), and so do the cap's idle names.
    pub fn with_expiry(mut self, expiry: std::time::Duration) -> Self {
        self.expiry = expiry;
        self.names = std::sync::Arc::new(SpanNameCap::new(self.names.per_service, expiry));
        self
    }

    /// Counts span names under `cap` (the one ingest's RED metrics use too).
    pub fn with_name_cap(mut self, cap: std::sync::Arc<SpanNameCap>) -> Self {
        self.names = cap;
        self
    }

    /// Adds a batch of observations under one lock.
    pub fn observe<'a>(&self, observations: impl IntoIterator<Item = SpanObservation<'a>>) {
        self.observe_at(unix_now(), observations);
    }

    /// [`SpanMetricsRegistry::observe`] at `now` (unix seconds).
    pub fn observe_at<'a>(
        &self,
        now: f64,
        observations: impl IntoIterator<Item = SpanObservation<'a>>,
    ) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        for observation in observations {
            let name = if self
                .names
                .admit_at(observation.service, observation.name, now)
            {
                observation.name
            } else {
                "ssfd_overflow"
            };
            let status = if observation.error {
                "STATUS_CODE_ERROR"
            } else {
                "STATUS_CODE_UNSET"
            };
            let borrowed = BorrowedKey {
                service: observation.service,
                name,
                kind: observation.kind,
                status,
            };
            let (entry, seen) = match series.get_mut(&borrowed) {
                Some(entry) => entry,
                None => series
                    .entry(OwnedKey {
                        service: observation.service.to_string(),
                        name: name.to_string(),
                        kind: observation.kind,
                        status,
                    })
                    .or_default(),
            };
            *seen = now;
            entry.calls += 1;
            entry.sum_ms += observation.duration_ms;
            let bucket = BUCKETS_MS
                .iter()
                .position(|&le| observation.duration_ms <= le)
                .unwrap_or(BUCKETS_MS.len());
            entry.buckets[bucket] += 1;
            entry.exemplars[bucket] = Some(Exemplar {
                trace_id: observation.trace_id,
                value: observation.duration_ms,
                timestamp: now,
            });
        }
    }

    /// A sorted copy of every series.
    pub fn snapshot(&self) -> Vec<(SpanMetricKey, SpanSeries)> {
        self.snapshot_at(unix_now())
    }

    /// [`SpanMetricsRegistry::snapshot`] at `now` (unix seconds): series idle for the
    /// expiry are dropped first.
    pub fn snapshot_at(&self, now: f64) -> Vec<(SpanMetricKey, SpanSeries)> {
        let Ok(mut series) = self.series.lock() else {
            return Vec::new();
        };
        let expiry = self.expiry.as_secs_f64();
        series.retain(|_, (_, seen)| now - *seen < expiry);
        let mut out: Vec<_> = series
            .iter()
            .map(|(k, (v, _))| {
                (
                    (k.service.clone(), k.name.clone(), k.kind, k.status),
                    v.clone(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_counts_and_exemplars() {
        let registry = SpanMetricsRegistry::default();
        let observation = |ms: f64, trace_id: i64, error: bool| SpanObservation {
            service: "api",
            name: "GET",
            kind: "SPAN_KIND_SERVER",
            error,
            duration_ms: ms,
            trace_id: ssfd_wire::ids::TraceId::from_parts(0, trace_id),
        };
        registry.observe([
            observation(1.0, 1, false),
            observation(3.0, 2, false),
            observation(20_000.0, 3, false),
            observation(5.0, 4, true),
        ]);
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.len(), 2);
        let (key, ok) = &snapshot[1];
        assert_eq!(key.3, "STATUS_CODE_UNSET");
        assert_eq!(ok.calls, 3);
        assert_eq!((ok.buckets[0], ok.buckets[1], ok.buckets[16]), (1, 1, 1));
        assert_eq!(
            ok.exemplars[16].unwrap().trace_id,
            ssfd_wire::ids::TraceId(3)
        );
        assert_eq!(snapshot[0].0.3, "STATUS_CODE_ERROR");
        assert_eq!(span_kind(Some("client"), false, 5), "SPAN_KIND_CLIENT");
        assert_eq!(span_kind(None, false, 0), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(None, true, 5), "SPAN_KIND_SERVER");
        assert_eq!(span_kind(None, false, 5), "SPAN_KIND_INTERNAL");
        assert_eq!(
            span_kind(Some("SPAN_KIND_CLIENT"), false, 0),
            "SPAN_KIND_CLIENT"
        );
        assert_eq!(span_kind(Some("Producer"), false, 0), "SPAN_KIND_PRODUCER");
    }

    #[test]
    fn the_name_cap_frees_idle_names_at_most_once_a_second() {
        // (within the first minute, so the sweep of every service stays out of it)
        let cap = SpanNameCap::new(2, std::time::Duration::from_secs(30));
        assert!(cap.admit_at("api", "a", 0.0));
        assert!(cap.admit_at("api", "b", 0.0));
        assert!(!cap.admit_at("api", "c", 10.0), "at the cap");
        assert!(cap.admit_at("other", "c", 10.0), "the cap is per service");
        assert!(cap.admit_at("api", "a", 20.0), "a is seen again");
        assert!(!cap.admit_at("api", "c", 29.8), "b idle for 29.8 s: stays");
        // b is idle for 30.5 s now, but idle names were looked for 0.7 s ago
        assert!(!cap.admit_at("api", "c", 30.5));
        assert!(cap.admit_at("api", "c", 30.9), "b left; c takes its place");
        assert!(cap.admit_at("api", "a", 31.0), "a stays: seen at 20");
        assert!(!cap.admit_at("api", "b", 31.0), "the cap is full again");
    }

    #[test]
    fn services_whose_names_all_went_idle_are_forgotten() {
        let cap = SpanNameCap::new(10, std::time::Duration::from_secs(300));
        for service in 0..1000 {
            assert!(cap.admit_at(&format!("svc-{service}"), "GET /", 1000.0));
        }
        assert!(cap.admit_at("steady", "GET /", 1000.0));
        assert_eq!(cap.services(), 1001);
        // the next sweep (a minute on) finds nothing idle for 300 s yet
        assert!(cap.admit_at("steady", "GET /", 1200.0));
        assert_eq!(cap.services(), 1001);
        // at 1301 every svc-N name is idle for 301 s; "steady" was seen at 1200
        assert!(cap.admit_at("fresh", "GET /", 1301.0));
        assert_eq!(cap.services(), 2, "steady and fresh");
        assert!(
            cap.admit_at("svc-7", "GET /x", 1302.0),
            "a forgotten service starts anew"
        );
    }

    #[test]
    fn a_thread_keeps_only_names_confirmed_in_the_last_second() {
        let cap = SpanNameCap::new(10, std::time::Duration::from_secs(300));
        let mut admitted = AdmittedNames::default();
        for service in 0..1000 {
            let at = 10.0 + f64::from(service) / 1000.0;
            assert!(admitted.admit_at(&cap, &format!("svc-{service}"), "GET /", at));
        }
        assert_eq!(admitted.len(), 1000);
        // two seconds on, the sweep drops every stale confirmation
        assert!(admitted.admit_at(&cap, "steady", "GET /", 12.0));
        assert_eq!(admitted.len(), 1, "{admitted:?}");
    }

    #[test]
    fn a_thread_tells_the_cap_once_a_second_that_a_name_is_in_use() {
        let cap = SpanNameCap::new(1, std::time::Duration::from_secs(300));
        let mut admitted = AdmittedNames::default();
        assert!(admitted.admit_at(&cap, "api", "GET /a", 0.0));
        assert!(admitted.admit_at(&cap, "api", "GET /a", 200.0));
        // "GET /a" was last heard at 200, so at 400 it holds the one place
        assert!(!admitted.admit_at(&cap, "api", "GET /b", 400.0));
        assert!(admitted.admit_at(&cap, "api", "GET /a", 400.5));
        // idle since 400.5: at 701 it has left and "GET /b" takes the place
        assert!(admitted.admit_at(&cap, "api", "GET /b", 701.0));
        assert!(!admitted.admit_at(&cap, "api", "GET /a", 702.5));
    }

    #[test]
    fn idle_series_expire_and_free_their_names() {
        let registry = SpanMetricsRegistry::new(1).with_expiry(std::time::Duration::from_secs(60));
        let observation = |name| SpanObservation {
            service: "api",
            name,
            kind: "SPAN_KIND_SERVER",
            error: false,
            duration_ms: 1.0,
            trace_id: ssfd_wire::ids::TraceId(1),
        };
        registry.observe_at(1000.0, [observation("GET /a")]);
        // the cap of one name: a second name is the overflow name
        registry.observe_at(1030.0, [observation("GET /b")]);
        let names = |at| -> Vec<String> {
            registry
                .snapshot_at(at)
                .into_iter()
                .map(|(key, _)| key.1)
                .collect()
        };
        assert_eq!(names(1059.0), ["GET /a", "ssfd_overflow"]);
        assert_eq!(names(1061.0), ["ssfd_overflow"], "GET /a idle for 61 s");
        // its place under the cap is free again
        registry.observe_at(1062.0, [observation("GET /c")]);
        assert_eq!(names(1063.0), ["GET /c", "ssfd_overflow"]);
        assert!(names(2000.0).is_empty());
    }
}
