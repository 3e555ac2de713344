//! SLOs (SPEC 4.4): every valid span of an SLO's service (and span name, if given) is
//! an event, good when it is not an error and, with a latency threshold, no slower
//! than it. Span workers record events per 10 seconds; every flush emits
//! `ssf.slo.events{slo,good}` (counter) and `ssf.slo.burn_rate{slo,window}` (gauge) for
//! 5m, 1h and 6h, where burn rate = (1 − good/total) / (1 − objective), 0 without
//! traffic; `/api/v1/slos` reports the 6h window.

use crate::flush::{Flush, FlushedMetric, FlushedType};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// One configured SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub name: String,
    pub service: String,
    pub span_name: Option<String>,
    pub objective: f64,
    pub latency_threshold: Option<Duration>,
}

/// Seconds per bucket of events: a window holds the buckets that end inside it, so it
/// covers its length less at most this (a minute made a 5m window 4–5 minutes long).
const BUCKET: u64 = 10;

/// Burn-rate windows, longest last.
pub const WINDOWS: [(&str, u64); 3] = [("5m", 5 * 60), ("1h", 3600), ("6h", 6 * 3600)];

#[derive(Debug, Default)]
struct State {
    /// (unix time / BUCKET, good, total), oldest first, at most 6 h.
    buckets: VecDeque<(u64, u64, u64)>,
    unflushed_good: u64,
    unflushed_bad: u64,
}

/// One SLO's report for `/api/v1/slos`.
#[derive(Clone, Debug, PartialEq)]
pub struct SloReport {
    pub name: String,
    pub objective: f64,
    pub good: u64,
    pub total: u64,
    pub ratio: f64,
    /// (window, burn rate) for 5m, 1h, 6h.
    pub burn_rate: Vec<(&'static str, f64)>,
}

/// Every SLO's configuration and windows.
#[derive(Debug, Default)]
pub struct SloRegistry {
    slos: Vec<Slo>,
    states: Mutex<Vec<State>>,
    /// `extend_tags`, added to the flushed SLO metrics as to every other metric.
    extend_tags: Vec<String>,
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SloRegistry {
    pub fn new(slos: Vec<Slo>) -> Self {
        let states = slos.iter().map(|_| State::default()).collect();
        SloRegistry {
            slos,
            states: Mutex::new(states),
            extend_tags: Vec::new(),
        }
    }

    /// Adds `extend_tags` to the flushed metrics (a tag of the same key is replaced,
    /// as everywhere else).
    pub fn with_extend_tags(mut self, tags: &[String]) -> Self {
        self.extend_tags = tags.iter().filter(|t| !t.is_empty()).cloned().collect();
        self
    }

    /// `tags` with `extend_tags` added, Veneur's way, sorted.
    fn extended(&self, mut tags: Vec<String>) -> crate::flush::Tags {
        if !self.extend_tags.is_empty() {
            let key = |t: &str| t.split(':').next().unwrap_or_default().to_string();
            tags.retain(|t| !self.extend_tags.iter().any(|e| key(e) == key(t)));
            tags.extend(self.extend_tags.iter().cloned());
            tags.sort();
            tags.dedup();
        }
        tags.into()
    }

    pub fn is_empty(&self) -> bool {
        self.slos.is_empty()
    }

    /// Records one valid span at `now` (unix seconds).
    pub fn observe_at(&self, service: &str, name: &str, error: bool, duration_ns: i64, now: u64) {
        if self.slos.is_empty() {
            return;
        }
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        let bucket = now / BUCKET;
        for (slo, state) in self.slos.iter().zip(states.iter_mut()) {
            if slo.service != service || slo.span_name.as_deref().is_some_and(|n| n != name) {
                continue;
            }
            let fast = slo
                .latency_threshold
                .is_none_or(|t| duration_ns.max(0) as u128 <= t.as_nanos());
            let good = !error && fast;
            match state.buckets.back_mut() {
                Some(last) if last.0 == bucket => {
                    last.1 += u64::from(good);
                    last.2 += 1;
                }
                _ => state.buckets.push_back((bucket, u64::from(good), 1)),
            }
            let longest = WINDOWS[WINDOWS.len() - 1].1 / BUCKET;
            while state
                .buckets
                .front()
                .is_some_and(|b| b.0 + longest <= bucket)
            {
                state.buckets.pop_front();
            }
            if good {
                state.unflushed_good += 1;
            } else {
                state.unflushed_bad += 1;
            }
        }
    }

    pub fn observe(&self, service: &str, name: &str, error: bool, duration_ns: i64) {
        self.observe_at(service, name, error, duration_ns, now_seconds());
    }

    fn window(state: &State, seconds: u64, now: u64) -> (u64, u64) {
        let first = (now / BUCKET + 1).saturating_sub(seconds / BUCKET);
        state
            .buckets
            .iter()
            .filter(|b| b.0 >= first)
            .fold((0, 0), |(good, total), m| (good + m.1, total + m.2))
    }

    fn burn(objective: f64, good: u64, total: u64) -> f64 {
        if total == 0 {
            0.0
        } else {
            (1.0 - good as f64 / total as f64) / (1.0 - objective)
        }
    }

    /// Every SLO at `now` (unix seconds), over the 6 h window.
    pub fn report_at(&self, now: u64) -> Vec<SloReport> {
        let Ok(states) = self.states.lock() else {
            return Vec::new();
        };
        self.slos
            .iter()
            .zip(states.iter())
            .map(|(slo, state)| {
                let (good, total) = Self::window(state, WINDOWS[2].1, now);
                SloReport {
                    name: slo.name.clone(),
                    objective: slo.objective,
                    good,
                    total,
                    ratio: if total == 0 {
                        1.0
                    } else {
                        good as f64 / total as f64
                    },
                    burn_rate: WINDOWS
                        .iter()
                        .map(|&(label, seconds)| {
                            let (good, total) = Self::window(state, seconds, now);
                            (label, Self::burn(slo.objective, good, total))
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub fn report(&self) -> Vec<SloReport> {
        self.report_at(now_seconds())
    }

    /// Adds this interval's `ssf.slo.events` and the burn rates to `flush`.
    pub fn flush_into(&self, flush: &mut Flush) {
        if self.slos.is_empty() {
            return;
        }
        let reports = self.report();
        let Ok(mut states) = self.states.lock() else {
            return;
        };
        for ((slo, state), report) in self.slos.iter().zip(states.iter_mut()).zip(reports) {
            // a flushed metric's tags are joined by ',': one in a name would split the tag
            let slo_tag = format!("slo:{}", slo.name.replace(',', "_"));
            for (good, count) in [
                ("true", std::mem::take(&mut state.unflushed_good)),
                ("false", std::mem::take(&mut state.unflushed_bad)),
            ] {
                if count > 0 {
                    flush.metrics.push(FlushedMetric {
                        name: "ssf.slo.events".into(),
                        kind: FlushedType::Counter,
                        value: count as f64,
                        tags: self.extended(vec![format!("good:{good}"), slo_tag.clone()]),
                        message: None,
                    });
                }
            }
            for (window, burn) in report.burn_rate {
                flush.metrics.push(FlushedMetric {
                    name: "ssf.slo.burn_rate".into(),
                    kind: FlushedType::Gauge,
                    value: burn,
                    tags: self.extended(vec![slo_tag.clone(), format!("window:{window}")]),
                    message: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> SloRegistry {
        SloRegistry::new(vec![Slo {
            name: "pay".into(),
            service: "shop".into(),
            span_name: Some("checkout".into()),
            objective: 0.9,
            latency_threshold: Some(Duration::from_millis(100)),
        }])
    }

    #[test]
    fn good_and_bad_events_and_burn_rates_over_windows() {
        let slos = registry();
        let now = 1_000_000 * 60;
        // 2 h ago: 10 events, all good; now: 8 good, 1 error, 1 too slow
        for _ in 0..10 {
            slos.observe_at("shop", "checkout", false, 1_000_000, now - 2 * 3600);
        }
        for _ in 0..8 {
            slos.observe_at("shop", "checkout", false, 50_000_000, now);
        }
        slos.observe_at("shop", "checkout", true, 1_000_000, now);
        slos.observe_at("shop", "checkout", false, 150_000_000, now);
        slos.observe_at("shop", "other", true, 1, now);
        slos.observe_at("web", "checkout", true, 1, now);
        let report = &slos.report_at(now)[0];
        assert_eq!((report.good, report.total), (18, 20));
        let burn: Vec<f64> = report
            .burn_rate
            .iter()
            .map(|b| (b.1 * 1000.0).round() / 1000.0)
            .collect();
        // 5m and 1h: 8 of 10 good → (1 − 0.8) / 0.1 = 2; 6h: 18 of 20 → 1
        assert_eq!(burn, [2.0, 2.0, 1.0]);
        let later = &slos.report_at(now + 7 * 3600)[0];
        assert_eq!(
            (later.total, later.burn_rate[2].1),
            (0, 0.0),
            "no traffic, no burn"
        );
    }

    #[test]
    fn a_window_holds_what_happened_within_it() {
        let slos = registry();
        let start = 1_000_000 * 60;
        // a bad event 59 s into a minute, read 4 min 2 s later: inside the 5m window
        slos.observe_at("shop", "checkout", true, 1, start + 59);
        let burn = |now| (slos.report_at(now)[0].burn_rate[0].1 * 1000.0).round() / 1000.0;
        assert_eq!(burn(start + 59 + 242), 10.0);
        assert_eq!(burn(start + 59 + 290), 10.0);
        assert_eq!(burn(start + 59 + 311), 0.0, "5 min 11 s later it has left");
    }

    #[test]
    fn slo_metrics_carry_extend_tags() {
        let slos = registry().with_extend_tags(&["env:prod".into(), "slo:ignored".into()]);
        slos.observe("shop", "checkout", false, 1);
        let mut flush = Flush::default();
        slos.flush_into(&mut flush);
        assert!(!flush.metrics.is_empty());
        for metric in &flush.metrics {
            let tags = metric.tags.to_vec();
            assert!(tags.contains(&"env:prod".to_string()), "{tags:?}");
            // an extend tag replaces a tag of its key, as for every metric
            assert!(tags.contains(&"slo:ignored".to_string()), "{tags:?}");
            assert!(!tags.contains(&"slo:pay".to_string()), "{tags:?}");
        }
    }

    #[test]
    fn a_comma_in_an_slo_name_does_not_split_its_tag() {
        let slos = SloRegistry::new(vec![Slo {
            name: "pay,eu".into(),
            service: "shop".into(),
            span_name: None,
            objective: 0.9,
            latency_threshold: None,
        }]);
        slos.observe("shop", "checkout", false, 1);
        let mut flush = Flush::default();
        slos.flush_into(&mut flush);
        assert!(!flush.metrics.is_empty());
        for metric in &flush.metrics {
            assert!(metric.tags.iter().any(|t| t == "slo:pay_eu"), "{metric:?}");
            assert!(metric.tags.iter().all(|t| t.contains(':')), "{metric:?}");
        }
    }

    #[test]
    fn flush_emits_events_once_and_burn_rates_every_time() {
        let slos = registry();
        slos.observe("shop", "checkout", false, 1);
        slos.observe("shop", "checkout", true, 1);
        let mut flush = Flush::default();
        slos.flush_into(&mut flush);
        let events: Vec<_> = flush
            .metrics
            .iter()
            .filter(|m| m.name == "ssf.slo.events")
            .map(|m| (m.tags.to_vec(), m.value))
            .collect();
        assert_eq!(
            events,
            [
                (vec!["good:true".to_string(), "slo:pay".into()], 1.0),
                (vec!["good:false".to_string(), "slo:pay".into()], 1.0)
            ]
        );
        assert_eq!(
            flush
                .metrics
                .iter()
                .filter(|m| m.name == "ssf.slo.burn_rate")
                .count(),
            3
        );
        let mut again = Flush::default();
        slos.flush_into(&mut again);
        assert!(again.metrics.iter().all(|m| m.name == "ssf.slo.burn_rate"));
    }
}
