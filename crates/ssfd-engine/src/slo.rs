//! SLOs (SPEC 4.4): every valid span of an SLO's service (and span name, if given) is
//! an event, good when it is not an error and, with a latency threshold, no slower
//! than it. Span workers record events per minute; every flush emits
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

/// Burn-rate windows, longest last.
pub const WINDOWS: [(&str, u64); 3] = [("5m", 5 * 60), ("1h", 3600), ("6h", 6 * 3600)];

#[derive(Debug, Default)]
struct State {
    /// (unix minute, good, total), oldest first, at most 6 h.
    minutes: VecDeque<(u64, u64, u64)>,
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
        }
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
        let minute = now / 60;
        for (slo, state) in self.slos.iter().zip(states.iter_mut()) {
            if slo.service != service || slo.span_name.as_deref().is_some_and(|n| n != name) {
                continue;
            }
            let fast = slo
                .latency_threshold
                .is_none_or(|t| duration_ns.max(0) as u128 <= t.as_nanos());
            let good = !error && fast;
            match state.minutes.back_mut() {
                Some(last) if last.0 == minute => {
                    last.1 += u64::from(good);
                    last.2 += 1;
                }
                _ => state.minutes.push_back((minute, u64::from(good), 1)),
            }
            while state
                .minutes
                .front()
                .is_some_and(|m| m.0 + 6 * 60 <= minute)
            {
                state.minutes.pop_front();
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
        let first_minute = (now / 60 + 1).saturating_sub(seconds / 60);
        state
            .minutes
            .iter()
            .filter(|m| m.0 >= first_minute)
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
                        tags: vec![format!("good:{good}"), slo_tag.clone()].into(),
                        message: None,
                    });
                }
            }
            for (window, burn) in report.burn_rate {
                flush.metrics.push(FlushedMetric {
                    name: "ssf.slo.burn_rate".into(),
                    kind: FlushedType::Gauge,
                    value: burn,
                    tags: vec![slo_tag.clone(), format!("window:{window}")].into(),
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
