//! RED history (SPEC 6 `GET /api/v1/services/{service}/red`): per service and span
//! name, each minute's calls, errors and duration quantiles, kept for 6 hours, from
//! the spans this node's span workers take (a standalone's or local's from its
//! clients, a global's as its locals forward them: the same spans its RED metrics
//! `ssf.span.calls` and `ssf.span.duration_ms` count). Minutes are by arrival, as the
//! metrics' intervals are.
//!
//! Bounded: at most [`MAX_OPERATIONS`] (service, name) pairs (more go to
//! `ssfd_overflow`), each with one open minute (a histogram of [`BUCKETS`] counters)
//! and at most [`MINUTES`] closed minutes of 24 bytes: about 10,000 × (512 B +
//! 360 × 24 B + its names) ≈ 95 MB at the worst (the `red` benchmark measures 106 MiB
//! of RSS growth, the allocator keeping what the growing buffers left), a few KB per
//! operation that sends now and then.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Minutes kept (6 hours).
pub const MINUTES: usize = 360;
/// (service, span name) pairs kept; past it, spans count under `ssfd_overflow`.
pub const MAX_OPERATIONS: usize = 10_000;
/// Histogram buckets: 4 per power of two from 1 µs, so a quantile is within about
/// 9 % of the true value (durations under 1 µs share the first bucket, over ~1.2 h
/// the last).
pub const BUCKETS: usize = 128;
const MINUTE_NS: i64 = 60_000_000_000;
const OVERFLOW: &str = "ssfd_overflow";

/// One closed minute of one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Minute {
    /// Unix minute (ns / 60 s; u32 lasts past the year 10,000).
    pub minute: u32,
    pub calls: u32,
    pub errors: u32,
    pub p50_ns: f32,
    pub p95_ns: f32,
    pub p99_ns: f32,
}

/// One step of a RED view.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub t_ns: i64,
    /// Calls per second.
    pub rate: f64,
    /// The share of calls that were errors (0 without calls).
    pub error_rate: f64,
    pub p50_ns: i64,
    pub p95_ns: i64,
    pub p99_ns: i64,
}

struct Series {
    closed: VecDeque<Minute>,
    open_minute: i64,
    calls: u32,
    errors: u32,
    histogram: Box<[u32; BUCKETS]>,
}

fn bucket(duration_ns: i64) -> usize {
    let micros = (duration_ns.max(0) as f64 / 1e3).max(1.0);
    ((micros.log2() * 4.0) as usize).min(BUCKETS - 1)
}

/// The middle of a bucket, in ns.
fn bucket_value(index: usize) -> f64 {
    2f64.powf((index as f64 + 0.5) / 4.0) * 1e3
}

impl Series {
    fn new(minute: i64) -> Series {
        Series {
            closed: VecDeque::new(),
            open_minute: minute,
            calls: 0,
            errors: 0,
            histogram: Box::new([0; BUCKETS]),
        }
    }

    fn quantile(&self, q: f64) -> f32 {
        let rank = (q * f64::from(self.calls)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (index, count) in self.histogram.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return bucket_value(index) as f32;
            }
        }
        0.0
    }

    fn open(&self) -> Minute {
        Minute {
            minute: u32::try_from(self.open_minute).unwrap_or(0),
            calls: self.calls,
            errors: self.errors,
            p50_ns: self.quantile(0.5),
            p95_ns: self.quantile(0.95),
            p99_ns: self.quantile(0.99),
        }
    }

    /// Closes the open minute when `minute` is past it, and forgets minutes older
    /// than [`MINUTES`].
    fn turn(&mut self, minute: i64) {
        if minute <= self.open_minute {
            return;
        }
        if self.calls > 0 {
            // grow by doubling, but never past the minutes kept
            if self.closed.len() == self.closed.capacity() {
                let want = (self.closed.len() * 2).clamp(4, MINUTES);
                self.closed.reserve_exact(want - self.closed.len());
            }
            let closed = self.open();
            self.closed.push_back(closed);
        }
        self.open_minute = minute;
        self.calls = 0;
        self.errors = 0;
        self.histogram.fill(0);
        while self
            .closed
            .front()
            .is_some_and(|m| i64::from(m.minute) <= minute - MINUTES as i64)
        {
            self.closed.pop_front();
        }
    }

    fn add(&mut self, error: bool, duration_ns: i64) {
        self.calls = self.calls.saturating_add(1);
        self.errors = self.errors.saturating_add(u32::from(error));
        let count = &mut self.histogram[bucket(duration_ns)];
        *count = count.saturating_add(1);
    }
}

/// Every operation's minutes, shared by the span workers and the API.
#[derive(Default)]
pub struct RedHistory {
    services: Mutex<HashMap<String, HashMap<String, Series>>>,
    /// The minute operations with no span for [`MINUTES`] were last looked for.
    swept: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for RedHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let operations = self
            .services
            .lock()
            .map_or(0, |s| s.values().map(HashMap::len).sum());
        f.debug_struct("RedHistory")
            .field("operations", &operations)
            .finish()
    }
}

impl RedHistory {
    /// Counts spans `(service, name, error, duration_ns)` that arrived at `now_ns`.
    pub fn observe<'a>(
        &self,
        now_ns: i64,
        spans: impl IntoIterator<Item = (&'a str, &'a str, bool, i64)>,
    ) {
        let minute = now_ns.div_euclid(MINUTE_NS);
        let Ok(mut services) = self.services.lock() else {
            return;
        };
        let mut operations: usize = services.values().map(HashMap::len).sum();
        // at the bound, operations silent for the whole history make room (once a
        // minute at most)
        if operations >= MAX_OPERATIONS
            && self
                .swept
                .swap(minute, std::sync::atomic::Ordering::Relaxed)
                != minute
        {
            services.retain(|_, names| {
                names.retain(|_, series| series.open_minute > minute - MINUTES as i64);
                !names.is_empty()
            });
            operations = services.values().map(HashMap::len).sum();
        }
        for (service, name, error, duration_ns) in spans {
            let known = services
                .get(service)
                .is_some_and(|names| names.contains_key(name));
            let (service, name) = if known || operations < MAX_OPERATIONS {
                (service, name)
            } else {
                (OVERFLOW, OVERFLOW)
            };
            let names = match services.get_mut(service) {
                Some(names) => names,
                None => services.entry(service.to_string()).or_default(),
            };
            let series = match names.get_mut(name) {
                Some(series) => series,
                None => {
                    operations += 1;
                    names
                        .entry(name.to_string())
                        .or_insert_with(|| Series::new(minute))
                }
            };
            series.turn(minute);
            series.add(error, duration_ns);
        }
    }

    /// True when `service` has a span in the history.
    pub fn knows(&self, service: &str) -> bool {
        self.services
            .lock()
            .is_ok_and(|services| services.contains_key(service))
    }

    /// The RED view of `service` over [start, end) in steps of `step_ns` (a whole
    /// number of minutes, at least one), per operation sorted by name. A step sums
    /// its minutes' calls and errors; its quantiles are the call-weighted means of
    /// its minutes' (exact for one-minute steps up to the buckets' 9 %).
    pub fn view(
        &self,
        service: &str,
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
    ) -> Vec<(String, Vec<Point>)> {
        let step_minutes = (step_ns / MINUTE_NS).max(1);
        let step_ns = step_minutes * MINUTE_NS;
        let first = start_ns.div_euclid(step_ns);
        let last = (end_ns - 1).div_euclid(step_ns);
        if last < first {
            return Vec::new();
        }
        let Ok(services) = self.services.lock() else {
            return Vec::new();
        };
        let Some(names) = services.get(service) else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<Point>)> = names
            .iter()
            .map(|(name, series)| {
                // [calls, errors, Σ p50·calls, Σ p95·calls, Σ p99·calls] per step
                let mut sums = vec![[0f64; 5]; (last - first + 1) as usize];
                let open = (series.calls > 0).then(|| series.open());
                for minute in series.closed.iter().chain(open.iter()) {
                    let step = (i64::from(minute.minute) * MINUTE_NS).div_euclid(step_ns);
                    if step < first || step > last {
                        continue;
                    }
                    let calls = f64::from(minute.calls);
                    let sum = &mut sums[(step - first) as usize];
                    sum[0] += calls;
                    sum[1] += f64::from(minute.errors);
                    sum[2] += f64::from(minute.p50_ns) * calls;
                    sum[3] += f64::from(minute.p95_ns) * calls;
                    sum[4] += f64::from(minute.p99_ns) * calls;
                }
                let points = sums
                    .iter()
                    .enumerate()
                    .map(|(i, [calls, errors, p50, p95, p99])| {
                        let per_call = |x: f64| if *calls > 0.0 { (x / calls) as i64 } else { 0 };
                        Point {
                            t_ns: (first + i as i64) * step_ns,
                            rate: calls / (step_ns as f64 / 1e9),
                            error_rate: if *calls > 0.0 { errors / calls } else { 0.0 },
                            p50_ns: per_call(*p50),
                            p95_ns: per_call(*p95),
                            p99_ns: per_call(*p99),
                        }
                    })
                    .collect();
                (name.clone(), points)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000 * 1_000_000_000;

    #[test]
    fn minutes_count_calls_errors_and_quantiles() {
        let red = RedHistory::default();
        // minute 0: 100 calls of 1..=100 ms, 10 errors; minute 1: 30 calls of 5 ms
        let spans: Vec<(&str, &str, bool, i64)> = (1..=100)
            .map(|ms| ("web", "GET /", ms % 10 == 0, ms * 1_000_000))
            .collect();
        red.observe(T, spans);
        red.observe(
            T + MINUTE_NS,
            (0..30).map(|_| ("web", "GET /", false, 5_000_000)),
        );
        let start = T.div_euclid(MINUTE_NS) * MINUTE_NS;
        let view = red.view("web", start, start + 2 * MINUTE_NS, MINUTE_NS);
        assert_eq!(view.len(), 1);
        let (name, points) = &view[0];
        assert_eq!(name, "GET /");
        assert_eq!(points.len(), 2);
        assert!((points[0].rate - 100.0 / 60.0).abs() < 1e-9);
        assert!((points[0].error_rate - 0.1).abs() < 1e-9);
        let near = |got: i64, want: f64| (got as f64 - want).abs() / want < 0.1;
        assert!(near(points[0].p50_ns, 50e6), "{:?}", points[0]);
        assert!(near(points[0].p99_ns, 99e6), "{:?}", points[0]);
        assert!((points[1].rate - 0.5).abs() < 1e-9);
        assert!(near(points[1].p95_ns, 5e6), "{:?}", points[1]);
        // one 2-minute step sums both
        let view = red.view("web", start, start + 2 * MINUTE_NS, 2 * MINUTE_NS);
        assert_eq!(view[0].1.len(), 1);
        assert!((view[0].1[0].rate - 130.0 / 120.0).abs() < 1e-9);
        assert!(
            red.view("db", start, start + MINUTE_NS, MINUTE_NS)
                .is_empty()
        );
        assert!(red.knows("web") && !red.knows("db"));
    }

    #[test]
    fn six_hours_are_kept_and_operations_are_bounded() {
        let red = RedHistory::default();
        for minute in 0..(MINUTES as i64 + 60) {
            red.observe(T + minute * MINUTE_NS, [("web", "GET /", false, 1_000)]);
        }
        let services = red.services.lock().unwrap();
        let series = &services["web"]["GET /"];
        assert_eq!(
            series.closed.len(),
            MINUTES - 1,
            "the open minute is the 360th"
        );
        drop(services);
        let many: Vec<String> = (0..MAX_OPERATIONS + 50).map(|i| format!("op{i}")).collect();
        red.observe(
            T,
            many.iter().map(|name| ("svc", name.as_str(), false, 1_000)),
        );
        let services = red.services.lock().unwrap();
        let total: usize = services.values().map(HashMap::len).sum();
        assert_eq!(total, MAX_OPERATIONS + 1, "the rest under ssfd_overflow");
        assert_eq!(services[OVERFLOW][OVERFLOW].calls, 51);
        drop(services);
        // six hours later the silent ones make room for new ones
        let later = T + (MINUTES as i64 + 1) * MINUTE_NS;
        red.observe(later, [("svc", "fresh", false, 1_000)]);
        let services = red.services.lock().unwrap();
        assert_eq!(
            services["svc"]["fresh"].calls, 1,
            "counted under its own name"
        );
        assert!(!services["svc"].contains_key("op0"));
    }
}
