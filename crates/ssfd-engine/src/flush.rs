//! What an interval flushes (SPEC 4.1): each series' aggregate turned into named
//! counters, gauges and statuses, plus a summary per histogram for the Prometheus
//! exposition. Pure: the flusher thread in `pipeline.rs` calls it.

use crate::aggregate::{Histogram, Series, State};
use crate::batch::MetricKind;

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

/// One flushed metric, as sinks receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushedMetric {
    pub name: String,
    pub kind: FlushedType,
    pub value: f64,
    /// Sorted, de-duplicated tags (`key:value` or bare `key`).
    pub tags: Vec<String>,
    /// A status's message.
    pub message: Option<String>,
}

/// A histogram or timer as the Prometheus exposition shows it: a summary of the
/// interval plus min and max.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSummary {
    pub name: String,
    pub tags: Vec<String>,
    /// (quantile as configured text, e.g. "0.99", value).
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
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            percentiles: [0.5, 0.75, 0.99].into_iter().map(Percentile::new).collect(),
            aggregates: vec![Aggregate::Min, Aggregate::Max, Aggregate::Count],
        }
    }
}

fn split_tags(tags: &[u8]) -> Vec<String> {
    if tags.is_empty() {
        return Vec::new();
    }
    tags.split(|&b| b == b',')
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

impl FlushConfig {
    /// Appends what `series` flushes on a standalone server.
    pub fn flush_series(&self, series: Series, out: &mut Flush) {
        let name = String::from_utf8_lossy(series.name()).into_owned();
        let tags = split_tags(series.tags());
        let metric = |name: String, kind, value, tags: Vec<String>| FlushedMetric {
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

    /// Veneur's local flush of a histogram: aggregates from the exact statistics, with
    /// its guards; median and percentiles from the digest.
    fn flush_histogram(
        &self,
        name: String,
        tags: Vec<String>,
        mut histogram: Histogram,
        out: &mut Flush,
    ) {
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
        for percentile in &self.percentiles {
            let value = histogram.digest.quantile(percentile.p);
            out.metrics.push(gauge(&percentile.suffix, value));
            quantiles.push((percentile.label.clone(), value));
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
