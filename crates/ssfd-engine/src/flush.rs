//! What an interval flushes (SPEC 4.1): each series' aggregate turned into named
//! counters, gauges and statuses, plus a summary per histogram for the Prometheus
//! exposition. Pure: the flusher thread in `pipeline.rs` calls it.

use crate::aggregate::{Histogram, Series, State};
use crate::batch::{MetricKind, Scope};
use ssfd_wire::metricpb;

/// The type a flushed metric has downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushedType {
    Counter,
    Gauge,
    Status,
}

impl FlushedType {
    pub fn label(self) -> &'static str {
        match self {
            FlushedType::Counter => "counter",
            FlushedType::Gauge => "gauge",
            FlushedType::Status => "status",
        }
    }
}

/// The tags of a flushed metric (`key:value` or bare `key`), sorted and
/// de-duplicated, joined by `,` in one shared allocation: a series' tags are laid out
/// once, whatever number of metrics it flushes, and a million-series flush makes one
/// allocation per series for them instead of one per tag and a `Vec`. A tag is split
/// from its neighbours at `,` (statsd tags cannot hold one; series keys are joined so).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tags(std::sync::Arc<str>);

impl Default for Tags {
    fn default() -> Self {
        static EMPTY: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
        Tags(EMPTY.get_or_init(|| "".into()).clone())
    }
}

impl Tags {
    /// Tags already joined by `,` (a series key's tag part).
    pub fn from_joined(joined: &str) -> Tags {
        if joined.is_empty() {
            return Tags::default();
        }
        Tags(joined.into())
    }

    /// The tags in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.0.split(',').filter(|tag| !tag.is_empty())
    }

    /// The tags joined by `,` (empty when there are none).
    pub fn joined(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Tags {
    fn from_iter<I: IntoIterator<Item = S>>(tags: I) -> Tags {
        let mut joined = String::new();
        for tag in tags {
            let tag = tag.as_ref();
            if tag.is_empty() {
                continue;
            }
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(tag);
        }
        Tags::from_joined(&joined)
    }
}

impl From<Vec<String>> for Tags {
    fn from(tags: Vec<String>) -> Tags {
        tags.iter().collect()
    }
}

impl From<&[&str]> for Tags {
    fn from(tags: &[&str]) -> Tags {
        tags.iter().collect()
    }
}

/// One flushed metric, as sinks receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushedMetric {
    pub name: String,
    pub kind: FlushedType,
    pub value: f64,
    /// Sorted, de-duplicated tags.
    pub tags: Tags,
    /// A status's message.
    pub message: Option<String>,
}

/// A histogram or timer as the Prometheus exposition shows it: a summary of the
/// interval plus min and max.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSummary {
    pub name: String,
    pub tags: Tags,
    /// (quantile as configured text, e.g. "0.99", value); empty when the digest is
    /// (a global's mixed histogram has a digest from upstream and may have no sample
    /// of its own, so `count` can be 0 while these are not).
    pub quantiles: Vec<(String, f64)>,
    /// Σ 1 / rate of the interval.
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// Everything one interval flushes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flush {
    /// The flush time, unix seconds.
    pub timestamp: i64,
    pub metrics: Vec<FlushedMetric>,
    pub summaries: Vec<HistogramSummary>,
    /// On a local: the global and mixed state to forward upstream, in Veneur's
    /// forward format (sent by the cluster tier, issue 6).
    pub forward: Vec<ssfd_wire::metricpb::Metric>,
    /// DogStatsD events of the interval, passed on unaggregated.
    pub events: Vec<crate::record::LogRecord>,
    /// The interval's write-ahead-log token: a sink holds a clone until it has
    /// delivered (or dropped and counted) its part (`durable.rs`).
    pub durable: crate::durable::Durable,
}

/// Histogram aggregates (SPEC 4.1 and Veneur's `aggregates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Min,
    Max,
    Median,
    Avg,
    Count,
    Sum,
    Hmean,
}

impl Aggregate {
    pub fn parse(name: &str) -> Option<Aggregate> {
        Some(match name {
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "median" => Aggregate::Median,
            "avg" => Aggregate::Avg,
            "count" => Aggregate::Count,
            "sum" => Aggregate::Sum,
            "hmean" => Aggregate::Hmean,
            _ => return None,
        })
    }
}

/// One configured percentile.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentile {
    pub p: f64,
    /// `<name>.<suffix>`, e.g. `99_9percentile`.
    pub suffix: String,
    /// The quantile label of the exposition, e.g. `0.999`.
    pub label: String,
}

impl Percentile {
    pub fn new(p: f64) -> Percentile {
        Percentile {
            p,
            suffix: percentile_suffix(p),
            label: format!("{p}"),
        }
    }

    /// The configured `percentiles`, each name once (`[0.99, 0.99]` would flush two
    /// `.99percentile` metrics and two `quantile="0.99"` samples of one series).
    pub fn all(values: &[f64]) -> Vec<Percentile> {
        let mut out: Vec<Percentile> = Vec::with_capacity(values.len());
        for &p in values {
            let percentile = Percentile::new(p);
            if !out.iter().any(|known| known.suffix == percentile.suffix) {
                out.push(percentile);
            }
        }
        out
    }
}

/// SPEC 4.1: p × 100 written from the decimal text, `.` turned into `_`, then
/// `percentile`: 0.5 → `50percentile`, 0.999 → `99_9percentile`, 0.001 → `0_1percentile`.
pub fn percentile_suffix(p: f64) -> String {
    let text = format!("{p}");
    let digits = text.strip_prefix("0.").unwrap_or(&text);
    let (whole, fraction) = if digits.len() >= 2 {
        digits.split_at(2)
    } else {
        (digits, "")
    };
    let whole = format!("{whole:0<2}");
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    if fraction.is_empty() {
        format!("{whole}percentile")
    } else {
        format!("{whole}_{fraction}percentile")
    }
}

/// What the flusher needs from the configuration.
#[derive(Clone, Debug)]
pub struct FlushConfig {
    pub percentiles: Vec<Percentile>,
    pub aggregates: Vec<Aggregate>,
    /// A local (it has a `forward_address`): global and mixed state is marked for
    /// forwarding instead of flushed, as SPEC 4.2 and Veneur say.
    pub local: bool,
    /// A local's forwarded global counters travel as int64 (Veneur's wire): each
    /// series' fractional remainder waits here for the next interval (SPEC 3.3).
    pub remainders: CounterRemainders,
}

/// Fractional remainders of forwarded counters, by series key.
#[derive(Clone, Debug, Default)]
pub struct CounterRemainders(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Box<[u8]>, f64>>>,
);

impl CounterRemainders {
    /// The whole part of `sum` plus what was left over from earlier intervals of
    /// `key`; the new fraction is kept.
    pub fn whole(&self, key: &[u8], sum: f64) -> i64 {
        let Ok(mut remainders) = self.0.lock() else {
            return sum as i64;
        };
        let total = sum + remainders.remove(key).unwrap_or(0.0);
        let whole = total.trunc();
        let left = total - whole;
        if left != 0.0 {
            remainders.insert(key.into(), left);
        }
        whole as i64
    }
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            percentiles: [0.5, 0.75, 0.99].into_iter().map(Percentile::new).collect(),
            aggregates: vec![Aggregate::Min, Aggregate::Max, Aggregate::Count],
            local: false,
            remainders: CounterRemainders::default(),
        }
    }
}

fn split_tags(tags: &[u8]) -> Tags {
    match std::str::from_utf8(tags) {
        Ok(joined) => Tags::from_joined(joined),
        Err(_) => Tags::from_joined(&String::from_utf8_lossy(tags)),
    }
}

/// Bytes as text: valid UTF-8 (the usual case) is copied as is; the lossy path
/// replaces what is not (`from_utf8_lossy` alone is several times slower).
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A series as Veneur's forward protocol carries it.
fn forwarded(
    name: &str,
    tags: &Tags,
    kind: MetricKind,
    scope: Scope,
    value: metricpb::metric::Value,
) -> metricpb::Metric {
    metricpb::Metric {
        name: name.to_string(),
        tags: tags.to_vec(),
        r#type: match kind {
            MetricKind::Counter => metricpb::Type::Counter,
            MetricKind::Gauge | MetricKind::Status => metricpb::Type::Gauge,
            MetricKind::Histogram => metricpb::Type::Histogram,
            MetricKind::Set => metricpb::Type::Set,
            MetricKind::Timer => metricpb::Type::Timer,
        } as i32,
        value: Some(value),
        scope: match scope {
            Scope::Global => metricpb::Scope::Global,
            Scope::Local => metricpb::Scope::Local,
            Scope::Default => metricpb::Scope::Mixed,
        } as i32,
    }
}

impl FlushConfig {
    /// Appends what `series` flushes, and on a local what it forwards (SPEC 4.2):
    /// global counters and gauges are forwarded, not flushed; sets are flushed only
    /// when local-only, else forwarded; mixed histograms flush their aggregates and
    /// forward their digest; global-only histograms are only forwarded; local-only
    /// metrics are never forwarded. A standalone or global server flushes everything.
    pub fn flush_series(&self, series: Series, out: &mut Flush) {
        let name = text(series.name());
        let tags = split_tags(series.tags());
        if self.local {
            use metricpb::metric::Value;
            let forward = match (&series.state, series.scope) {
                (State::Counter(sum), Scope::Global) => {
                    Some(Value::Counter(metricpb::CounterValue {
                        value: self.remainders.whole(&series.key, *sum),
                    }))
                }
                (State::Gauge(value), Scope::Global) => {
                    Some(Value::Gauge(metricpb::GaugeValue { value: *value }))
                }
                (State::Set(set), Scope::Default | Scope::Global) => {
                    Some(Value::Set(metricpb::SetValue {
                        hyper_log_log: set.clone().to_bytes(),
                    }))
                }
                (State::Histogram(histogram), Scope::Default | Scope::Global) => {
                    Some(Value::Histogram(metricpb::HistogramValue {
                        t_digest: Some(histogram.digest.clone().to_wire()),
                    }))
                }
                _ => None,
            };
            if let Some(value) = forward {
                out.forward
                    .push(forwarded(&name, &tags, series.kind, series.scope, value));
                match (&series.state, series.scope) {
                    (State::Histogram(_), Scope::Default) => {}
                    _ => return,
                }
                if let State::Histogram(histogram) = series.state {
                    self.flush_local_aggregates(name, tags, *histogram, out);
                }
                return;
            }
        }
        let metric = |name: String, kind, value, tags: Tags| FlushedMetric {
            name,
            kind,
            value,
            tags,
            message: None,
        };
        match series.state {
            State::Counter(sum) => out
                .metrics
                .push(metric(name, FlushedType::Counter, sum, tags)),
            State::Gauge(value) => out
                .metrics
                .push(metric(name, FlushedType::Gauge, value, tags)),
            State::Status { value, message } => out.metrics.push(FlushedMetric {
                name,
                kind: FlushedType::Status,
                value,
                tags,
                message: Some(message.into()),
            }),
            State::Set(mut set) => out.metrics.push(metric(
                name,
                FlushedType::Gauge,
                set.estimate() as f64,
                tags,
            )),
            State::Histogram(histogram) => {
                debug_assert!(matches!(
                    series.kind,
                    MetricKind::Histogram | MetricKind::Timer
                ));
                self.flush_histogram(name, tags, *histogram, out);
            }
        }
    }

    /// A local's flush of a mixed histogram: only the aggregates of its own samples
    /// (Veneur: `percentiles = nil` on a local) and a summary without quantiles; the
    /// digest goes upstream.
    fn flush_local_aggregates(
        &self,
        name: String,
        tags: Tags,
        histogram: Histogram,
        out: &mut Flush,
    ) {
        let only_aggregates = FlushConfig {
            percentiles: Vec::new(),
            aggregates: self.aggregates.clone(),
            local: true,
            remainders: CounterRemainders::default(),
        };
        let mut flushed = Flush::default();
        only_aggregates.flush_histogram(name, tags, histogram, &mut flushed);
        out.metrics.extend(flushed.metrics);
        // the exposition's summary (SPEC 6): `_sum` and `_count` of this local's own
        // samples, no quantiles (those are the global's)
        out.summaries.extend(flushed.summaries);
    }

    /// Veneur's local flush of a histogram: aggregates from the exact statistics, with
    /// its guards; median and percentiles from the digest.
    fn flush_histogram(&self, name: String, tags: Tags, mut histogram: Histogram, out: &mut Flush) {
        let gauge = |suffix: &str, value: f64| FlushedMetric {
            name: format!("{name}.{suffix}"),
            kind: FlushedType::Gauge,
            value,
            tags: tags.clone(),
            message: None,
        };
        let h = &histogram;
        for aggregate in [
            Aggregate::Max,
            Aggregate::Min,
            Aggregate::Sum,
            Aggregate::Avg,
            Aggregate::Count,
            Aggregate::Median,
            Aggregate::Hmean,
        ] {
            if !self.aggregates.contains(&aggregate) {
                continue;
            }
            let flushed = match aggregate {
                Aggregate::Max if h.max.is_finite() => gauge("max", h.max),
                Aggregate::Min if h.min.is_finite() => gauge("min", h.min),
                Aggregate::Sum if h.sum != 0.0 => gauge("sum", h.sum),
                Aggregate::Avg if h.sum != 0.0 && h.weight != 0.0 => gauge("avg", h.sum / h.weight),
                Aggregate::Count if h.weight != 0.0 => FlushedMetric {
                    kind: FlushedType::Counter,
                    ..gauge("count", h.weight)
                },
                Aggregate::Median => gauge("median", histogram.digest.clone().quantile(0.5)),
                Aggregate::Hmean if h.reciprocal_sum != 0.0 && h.weight != 0.0 => {
                    gauge("hmean", h.weight / h.reciprocal_sum)
                }
                _ => continue,
            };
            out.metrics.push(flushed);
        }
        let mut quantiles = Vec::with_capacity(self.percentiles.len());
        let has_digest = !histogram.digest.is_empty();
        for percentile in &self.percentiles {
            let value = histogram.digest.quantile(percentile.p);
            out.metrics.push(gauge(&percentile.suffix, value));
            if has_digest {
                quantiles.push((percentile.label.clone(), value));
            }
        }
        out.summaries.push(HistogramSummary {
            name: name.clone(),
            tags: tags.clone(),
            quantiles,
            count: histogram.weight,
            sum: histogram.sum,
            min: histogram.min,
            max: histogram.max,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_percentile_is_named_once() {
        let names: Vec<String> = Percentile::all(&[0.5, 0.99, 0.99, 0.5, 0.999])
            .into_iter()
            .map(|p| p.suffix)
            .collect();
        assert_eq!(names, ["50percentile", "99percentile", "99_9percentile"]);
    }
    use crate::aggregate::SeriesTable;
    use crate::batch::{BatchPool, KeyScratch, ShardedSamples};

    fn flush_of(local: bool, samples: &[(&str, MetricKind, Scope, f64, &[u8])]) -> Flush {
        let mut sharded = ShardedSamples::new(1);
        let mut scratch = KeyScratch::default();
        for (name, kind, scope, value, extra) in samples {
            scratch.begin(name.as_bytes(), *kind);
            scratch.finish();
            sharded.push(&scratch, *scope, *value, 1.0, extra);
        }
        let mut table = SeriesTable::default();
        table.apply(&sharded.drain(&BatchPool::default()).next().unwrap().1);
        let config = FlushConfig {
            local,
            ..FlushConfig::default()
        };
        let mut flush = Flush::default();
        for series in table.into_series() {
            config.flush_series(series, &mut flush);
        }
        flush
    }

    #[test]
    fn forwarded_counter_fractions_carry_over() {
        let remainders = CounterRemainders::default();
        let sent: Vec<i64> = [2.5, 2.5, 0.25, 0.75]
            .iter()
            .map(|sum| remainders.whole(b"c", *sum))
            .collect();
        assert_eq!(sent, [2, 3, 0, 1], "6 in all, none lost");
        assert_eq!(remainders.whole(b"other", 1.5), 1, "by series");
    }

    fn names(flush: &Flush) -> Vec<String> {
        let mut names: Vec<String> = flush.metrics.iter().map(|m| m.name.clone()).collect();
        names.sort();
        names
    }

    fn forwarded(flush: &Flush) -> Vec<(String, i32, i32)> {
        let mut out: Vec<_> = flush
            .forward
            .iter()
            .map(|m| (m.name.clone(), m.r#type, m.scope))
            .collect();
        out.sort();
        out
    }

    const MIX: &[(&str, MetricKind, Scope, f64, &[u8])] = &[
        ("c.default", MetricKind::Counter, Scope::Default, 1.0, b""),
        ("c.global", MetricKind::Counter, Scope::Global, 2.0, b""),
        ("g.global", MetricKind::Gauge, Scope::Global, 3.0, b""),
        ("s.mixed", MetricKind::Set, Scope::Default, 0.0, b"m"),
        ("s.local", MetricKind::Set, Scope::Local, 0.0, b"m"),
        ("h.mixed", MetricKind::Histogram, Scope::Default, 4.0, b""),
        ("h.global", MetricKind::Histogram, Scope::Global, 5.0, b""),
        ("h.local", MetricKind::Timer, Scope::Local, 6.0, b""),
    ];

    #[test]
    fn a_local_flushes_its_share_and_marks_the_rest_for_forwarding() {
        let flush = flush_of(true, MIX);
        assert_eq!(
            names(&flush),
            [
                "c.default",
                "h.local.50percentile",
                "h.local.75percentile",
                "h.local.99percentile",
                "h.local.count",
                "h.local.max",
                "h.local.min",
                "h.mixed.count",
                "h.mixed.max",
                "h.mixed.min",
                "s.local",
            ]
        );
        let (counter, gauge, histogram, set) = (
            metricpb::Type::Counter as i32,
            metricpb::Type::Gauge as i32,
            metricpb::Type::Histogram as i32,
            metricpb::Type::Set as i32,
        );
        let (mixed, global) = (
            metricpb::Scope::Mixed as i32,
            metricpb::Scope::Global as i32,
        );
        assert_eq!(
            forwarded(&flush),
            [
                ("c.global".to_string(), counter, global),
                ("g.global".to_string(), gauge, global),
                ("h.global".to_string(), histogram, global),
                ("h.mixed".to_string(), histogram, mixed),
                ("s.mixed".to_string(), set, mixed),
            ]
        );
    }

    #[test]
    fn a_standalone_flushes_everything_and_forwards_nothing() {
        let flush = flush_of(false, MIX);
        assert!(flush.forward.is_empty());
        let names = names(&flush);
        for name in [
            "c.default",
            "c.global",
            "g.global",
            "s.mixed",
            "s.local",
            "h.global.99percentile",
            "h.mixed.99percentile",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }

    #[test]
    fn percentile_names_follow_the_decimal_text() {
        for (p, want) in [
            (0.5, "50percentile"),
            (0.75, "75percentile"),
            (0.99, "99percentile"),
            (0.29, "29percentile"),
            (0.999, "99_9percentile"),
            (0.001, "0_1percentile"),
            (0.9999, "99_99percentile"),
            (0.05, "5percentile"),
            (0.1, "10percentile"),
        ] {
            assert_eq!(percentile_suffix(p), want, "{p}");
        }
        assert_eq!(Percentile::new(0.999).label, "0.999");
    }
}
