//! The Prometheus exposition of flushed metrics (SPEC 6, `/metrics`): counters are
//! cumulative since the process started (`_total`), gauges and statuses the last
//! flushed value, a histogram or timer one summary (quantiles of the last interval
//! that had samples, cumulative `_sum` and `_count`) plus `<name>_min` and `<name>_max`.
//! Names and labels are sanitised; when two series sanitise to one family with
//! different types, the first keeps it and the others are dropped and counted. Series
//! idle for `prometheus_expiry` disappear.

use ssfd_engine::{Flush, FlushedType, MetricSink};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyType {
    Counter,
    Gauge,
    Summary,
}

impl FamilyType {
    fn label(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Summary => "summary",
        }
    }
}

/// One series' exposed state: 24 bytes, since an exposition can hold millions.
#[derive(Clone, Debug)]
struct Sample {
    value: f64,
    /// A summary's quantiles, sum and count; `None` for counters and gauges.
    summary: Option<Box<SummaryState>>,
    /// When last flushed, in milliseconds since the exposition started.
    seen: u64,
}

#[derive(Clone, Debug, Default)]
struct SummaryState {
    quantiles: Vec<(String, f64)>,
    sum: f64,
    count: f64,
}

impl Sample {
    fn summary(&self) -> &SummaryState {
        static NONE: SummaryState = SummaryState {
            quantiles: Vec::new(),
            sum: 0.0,
            count: 0.0,
        };
        self.summary.as_deref().unwrap_or(&NONE)
    }
}

#[derive(Clone, Debug)]
struct Family {
    kind: FamilyType,
    help: String,
    /// Rendered label set (`{a="b"}` or empty) → sample, sorted when rendered: the
    /// entries (40 bytes each) in a dense `Vec`, found through a table of (hash,
    /// position) (foldhash; SipHash was a quarter of a flush), so growing the table
    /// never reads a label string again (a table of whole entries was most of a
    /// 1 M-series flush, growing and faulting).
    series: Series,
}

#[derive(Clone, Debug, Default)]
struct Series {
    /// (hash, position in `entries`): growing it reads neither labels nor entries.
    index: hashbrown::HashTable<(u64, u32)>,
    entries: Vec<Entry>,
}

impl Series {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// The sample of `labels`, created by `new` when absent.
    fn get_or_insert(&mut self, labels: &str, new: impl FnOnce() -> Sample) -> &mut Sample {
        let hash = label_hash(labels);
        let entries = &self.entries;
        let found = self
            .index
            .find(hash, |&(h, i)| {
                h == hash && &*entries[i as usize].labels == labels
            })
            .copied();
        let at = match found {
            Some((_, at)) => at as usize,
            None => {
                let at = self.entries.len();
                self.entries.push(Entry {
                    labels: labels.into(),
                    sample: new(),
                });
                self.index
                    .insert_unique(hash, (hash, at as u32), |&(h, _)| h);
                at
            }
        };
        &mut self.entries[at].sample
    }

    /// Keeps the entries `keep` says to; the index is rebuilt when any went.
    fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) {
        let before = self.entries.len();
        self.entries.retain(keep);
        if self.entries.len() != before {
            self.index.clear();
            for (at, entry) in self.entries.iter().enumerate() {
                let hash = label_hash(&entry.labels);
                self.index
                    .insert_unique(hash, (hash, at as u32), |&(h, _)| h);
            }
        }
    }
}

impl<'a> IntoIterator for &'a Series {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

#[derive(Clone, Debug)]
struct Entry {
    labels: Box<str>,
    sample: Sample,
}

/// The hasher of label sets.
fn label_hash(labels: &str) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(labels)
}

/// One exposed sample: (name, labels sorted by name, value).
pub type ExposedSample = (String, Vec<(String, String)>, f64);

/// The exposition's state, shared between the flusher (writer) and `/metrics`.
#[derive(Debug)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
    /// What `Sample::seen` counts from.
    started: Instant,
    expiry: Duration,
    conflicts: u64,
    name_buffer: String,
    label_buffer: String,
}

/// Sanitises a metric name: `[a-zA-Z0-9_:]` kept, others become `_`, a leading digit
/// gets a `_` prefix.
pub fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    push_metric_name(name, &mut out);
    out
}

fn push_metric_name(name: &str, out: &mut String) {
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        out.push_str(name);
        return;
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
}

fn label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    match out.as_str() {
        "quantile" => "exported_quantile".into(),
        "le" => "exported_le".into(),
        _ if out.starts_with("__") => format!("x{out}"),
        _ => out,
    }
}

fn escape(value: &str, out: &mut String) {
    // the usual value needs no escaping: copied whole
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// [`labels`] into `out`, without allocating when the sanitised keys come sorted and
/// distinct (tags are sorted, so they usually do).
fn labels_into(tags: &[String], out: &mut String) {
    out.clear();
    let mut previous_key = 0..0;
    for tag in tags {
        let (key, value) = match tag.split_once(':') {
            Some((key, value)) => (key, value),
            None => (tag.as_str(), "true"),
        };
        out.push(if previous_key.end == 0 { '{' } else { ',' });
        let start = out.len();
        if key.chars().next().is_none_or(|c| c.is_ascii_digit()) {
            out.push('_');
        }
        if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push_str(key);
        } else {
            out.extend(key.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            }));
        }
        let sanitised = &out[start..];
        if matches!(sanitised, "quantile" | "le")
            || sanitised.starts_with("__")
            || (previous_key.end > 0 && out[previous_key.clone()] >= *sanitised)
        {
            *out = labels(tags);
            return;
        }
        previous_key = start..out.len();
        out.push_str("=\"");
        escape(value, out);
        out.push('"');
    }
    if previous_key.end > 0 {
        out.push('}');
    }
}

/// Tags to a rendered label set: `key:value` → `key="value"`, bare `key` →
/// `key="true"`, the same key twice keeps the last.
pub fn labels(tags: &[String]) -> String {
    let mut map: BTreeMap<String, &str> = BTreeMap::new();
    for tag in tags {
        let (key, value) = match tag.split_once(':') {
            Some((key, value)) => (key, value),
            None => (tag.as_str(), "true"),
        };
        map.insert(label_name(key), value);
    }
    let mut out = String::new();
    render_labels(map.iter().map(|(k, v)| (k.as_str(), *v)), &mut out);
    out
}

fn render_labels<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut String) {
    let mut first = true;
    for (key, value) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        escape(value, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

impl Exposition {
    pub fn new(expiry: Duration) -> Exposition {
        Exposition {
            families: BTreeMap::new(),
            started: Instant::now(),
            expiry,
            conflicts: 0,
            name_buffer: String::new(),
            label_buffer: String::new(),
        }
    }

    /// Series dropped because their family already had another type.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Updates the series `labels` of family `name` (created with `help()` when new).
    fn set(
        &mut self,
        name: &str,
        kind: FamilyType,
        help: impl FnOnce() -> String,
        labels: &str,
        now: u64,
        update: impl FnOnce(&mut Sample),
    ) {
        if !self.families.contains_key(name) {
            self.families.insert(
                name.to_string(),
                Family {
                    kind,
                    help: help(),
                    series: Series::default(),
                },
            );
        }
        let family = self.families.get_mut(name).expect("inserted above");
        if family.kind != kind {
            self.conflicts += 1;
            return;
        }
        let sample = family.series.get_or_insert(labels, || Sample {
            value: 0.0,
            summary: (kind == FamilyType::Summary).then(Box::default),
            seen: now,
        });
        sample.seen = now;
        update(sample);
    }

    /// Folds one interval in.
    pub fn apply(&mut self, flush: &Flush) {
        let now = self.millis();
        let mut name = std::mem::take(&mut self.name_buffer);
        let mut label_set = std::mem::take(&mut self.label_buffer);
        let summarised: std::collections::HashSet<(&str, &[String])> = flush
            .summaries
            .iter()
            .map(|s| (s.name.as_str(), s.tags.as_slice()))
            .collect();
        for metric in &flush.metrics {
            // a histogram's aggregates are shown by its summary, not as separate series
            if !summarised.is_empty()
                && let Some((base, _)) = metric.name.rsplit_once('.')
                && summarised.contains(&(base, metric.tags.as_slice()))
            {
                continue;
            }
            labels_into(&metric.tags, &mut label_set);
            name.clear();
            push_metric_name(&metric.name, &mut name);
            match metric.kind {
                FlushedType::Counter => {
                    name.push_str("_total");
                    let help = || format!("ssfd counter {}", metric.name);
                    self.set(&name, FamilyType::Counter, help, &label_set, now, |s| {
                        s.value += metric.value
                    });
                }
                FlushedType::Gauge | FlushedType::Status => {
                    let help = || format!("ssfd {} {}", metric.kind.label(), metric.name);
                    self.set(&name, FamilyType::Gauge, help, &label_set, now, |s| {
                        s.value = metric.value
                    });
                }
            }
        }
        for summary in &flush.summaries {
            let base = metric_name(&summary.name);
            labels_into(&summary.tags, &mut label_set);
            let help = || format!("ssfd histogram {}", summary.name);
            self.set(&base, FamilyType::Summary, help, &label_set, now, |s| {
                let state = s.summary.get_or_insert_with(Box::default);
                if !summary.quantiles.is_empty() {
                    state.quantiles = summary.quantiles.clone();
                }
                state.sum += summary.sum;
                state.count += summary.count;
            });
            for (suffix, value) in [("min", summary.min), ("max", summary.max)] {
                // none without samples of this server's own (a global's mixed histogram)
                if !value.is_finite() {
                    continue;
                }
                let help = || {
                    format!(
                        "ssfd histogram {} {suffix} of the last interval",
                        summary.name
                    )
                };
                self.set(
                    &format!("{base}_{suffix}"),
                    FamilyType::Gauge,
                    help,
                    &label_set,
                    now,
                    |s| s.value = value,
                );
            }
        }
        self.name_buffer = name;
        self.label_buffer = label_set;
    }

    /// Milliseconds since the exposition started.
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn expire(&mut self) {
        let now = self.millis();
        let expiry = self.expiry.as_millis() as u64;
        for family in self.families.values_mut() {
            family
                .series
                .retain(|e| now.saturating_sub(e.sample.seen) < expiry);
        }
        self.families.retain(|_, family| !family.series.is_empty());
    }

    /// Every sample the exposition shows, as (name, sorted labels, value): the same
    /// series, names and labels as [`Exposition::render`] (a summary's quantiles,
    /// `_sum` and `_count`), for remote-write.
    pub fn samples(&mut self) -> Vec<ExposedSample> {
        self.expire();
        let mut out = Vec::new();
        for (name, family) in &self.families {
            for Entry {
                labels: label_set,
                sample,
                ..
            } in &family.series
            {
                let labels = parse_labels(label_set);
                match family.kind {
                    FamilyType::Counter | FamilyType::Gauge => {
                        out.push((name.clone(), labels, sample.value));
                    }
                    FamilyType::Summary => {
                        let summary = sample.summary();
                        for (quantile, value) in &summary.quantiles {
                            let mut with = labels.clone();
                            with.push(("quantile".into(), quantile.clone()));
                            with.sort();
                            out.push((name.clone(), with, *value));
                        }
                        out.push((format!("{name}_sum"), labels.clone(), summary.sum));
                        out.push((format!("{name}_count"), labels, summary.count));
                    }
                }
            }
        }
        out
    }

    /// Appends the text exposition (format 0.0.4).
    pub fn render(&mut self, out: &mut String) {
        self.expire();
        for (name, family) in &self.families {
            let _ = writeln!(
                out,
                "# HELP {name} {}",
                family.help.replace('\\', "\\\\").replace('\n', "\\n")
            );
            // a statsd counter can go negative (decrements); Prometheus counters cannot
            let kind = if family.kind == FamilyType::Counter
                && family.series.iter().any(|e| e.sample.value < 0.0)
            {
                "gauge"
            } else {
                family.kind.label()
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let mut series: Vec<(&Box<str>, &Sample)> = family
                .series
                .iter()
                .map(|e| (&e.labels, &e.sample))
                .collect();
            series.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (label_set, sample) in series {
                match family.kind {
                    FamilyType::Counter | FamilyType::Gauge => {
                        let _ = writeln!(out, "{name}{label_set} {}", number(sample.value));
                    }
                    FamilyType::Summary => {
                        let summary = sample.summary();
                        for (quantile, value) in &summary.quantiles {
                            let mut with_quantile = String::new();
                            let inner = label_set.trim_start_matches('{').trim_end_matches('}');
                            with_quantile.push('{');
                            if !inner.is_empty() {
                                with_quantile.push_str(inner);
                                with_quantile.push(',');
                            }
                            let _ = write!(with_quantile, "quantile=\"{quantile}\"}}");
                            let _ = writeln!(out, "{name}{with_quantile} {}", number(*value));
                        }
                        let _ = writeln!(out, "{name}_sum{label_set} {}", number(summary.sum));
                        let _ = writeln!(out, "{name}_count{label_set} {}", number(summary.count));
                    }
                }
            }
        }
    }
}

/// Reads back a rendered label set (`{a="b",c="d\\"e"}`), sorted by name.
fn parse_labels(set: &str) -> Vec<(String, String)> {
    let inner = set.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
    let Some(inner) = inner else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                other => value.push(other),
            }
        }
        out.push((name, value));
        if chars.next() != Some(',') {
            break;
        }
    }
    out.sort();
    out
}

/// The sink the flusher calls; `/metrics` renders the same state.
#[derive(Clone, Debug)]
pub struct PrometheusSink {
    pub exposition: Arc<Mutex<Exposition>>,
}

impl PrometheusSink {
    pub fn new(expiry: Duration) -> PrometheusSink {
        PrometheusSink {
            exposition: Arc::new(Mutex::new(Exposition::new(expiry))),
        }
    }
}

impl MetricSink for PrometheusSink {
    fn name(&self) -> &str {
        "prometheus_exposition"
    }

    fn flush(&mut self, flush: &Flush) {
        if let Ok(mut exposition) = self.exposition.lock() {
            let before = exposition.conflicts();
            exposition.apply(flush);
            // series whose family already had another type: dropped, and counted
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Sink,
                ssfd_telemetry::DropReason::Overflow,
                exposition.conflicts() - before,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssfd_engine::{FlushedMetric, HistogramSummary};

    fn metric(name: &str, kind: FlushedType, value: f64, tags: &[&str]) -> FlushedMetric {
        FlushedMetric {
            name: name.into(),
            kind,
            value,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            message: None,
        }
    }

    #[test]
    fn names_and_labels_are_sanitised() {
        assert_eq!(metric_name("api.requests-total"), "api_requests_total");
        assert_eq!(metric_name("9lives"), "_9lives");
        assert_eq!(metric_name("a:b"), "a:b");
        assert_eq!(
            labels(&[
                "env:prod".into(),
                "bare".into(),
                "quantile:x".into(),
                "le:1".into(),
                "env:dev".into(),
                "a.b:q\"uote".into()
            ]),
            r#"{a_b="q\"uote",bare="true",env="dev",exported_le="1",exported_quantile="x"}"#
        );
    }

    #[test]
    fn the_fast_label_path_renders_what_the_general_one_does() {
        let cases: &[&[&str]] = &[
            &[],
            &["a:1"],
            &["a:1", "b:2", "c"],
            &["b:2", "a:1"],
            &["a:1", "a:2"],
            &["a.b:1", "a_b:2"],
            &["quantile:1"],
            &["le:1", "z:2"],
            &["__x:1"],
            &["1a:x", "b:\"q\\n"],
            &["env:prod", "host:ip-10", "region:us", "service:checkout"],
            &["k:v:w", "k2"],
        ];
        for tags in cases {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            let mut fast = String::new();
            labels_into(&tags, &mut fast);
            assert_eq!(fast, labels(&tags), "{tags:?}");
        }
    }

    #[test]
    fn counters_accumulate_gauges_replace_and_conflicts_count() {
        let mut exposition = Exposition::new(Duration::from_secs(300));
        for value in [2.0, 3.0] {
            exposition.apply(&Flush {
                timestamp: 1,
                metrics: vec![
                    metric("hits", FlushedType::Counter, value, &["a:1"]),
                    metric("temp", FlushedType::Gauge, value, &[]),
                    metric("temp", FlushedType::Counter, 1.0, &[]),
                    metric("temp_total", FlushedType::Gauge, 1.0, &[]),
                ],
                summaries: vec![],
                ..Flush::default()
            });
        }
        let mut text = String::new();
        exposition.render(&mut text);
        assert!(
            text.contains("# TYPE hits_total counter\nhits_total{a=\"1\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE temp gauge\ntemp 3\n"), "{text}");
        assert!(
            text.contains("temp_total 2\n"),
            "the counter keeps its family: {text}"
        );
        assert_eq!(
            exposition.conflicts(),
            2,
            "the gauge named temp_total was dropped twice"
        );
    }

    #[test]
    fn histograms_are_one_summary_plus_min_and_max() {
        let mut exposition = Exposition::new(Duration::from_secs(300));
        let summary = HistogramSummary {
            name: "lat".into(),
            tags: vec!["route:/a".into()],
            quantiles: vec![("0.5".into(), 2.0), ("0.99".into(), 9.0)],
            count: 4.0,
            sum: 20.0,
            min: 1.0,
            max: 10.0,
        };
        let flush = Flush {
            timestamp: 1,
            metrics: vec![
                metric("lat.max", FlushedType::Gauge, 10.0, &["route:/a"]),
                metric("lat.count", FlushedType::Counter, 4.0, &["route:/a"]),
            ],
            summaries: vec![summary],
            ..Flush::default()
        };
        exposition.apply(&flush);
        exposition.apply(&flush);
        let mut text = String::new();
        exposition.render(&mut text);
        assert_eq!(
            text,
            "# HELP lat ssfd histogram lat\n# TYPE lat summary\n\
             lat{route=\"/a\",quantile=\"0.5\"} 2\nlat{route=\"/a\",quantile=\"0.99\"} 9\n\
             lat_sum{route=\"/a\"} 40\nlat_count{route=\"/a\"} 8\n\
             # HELP lat_max ssfd histogram lat max of the last interval\n# TYPE lat_max gauge\nlat_max{route=\"/a\"} 10\n\
             # HELP lat_min ssfd histogram lat min of the last interval\n# TYPE lat_min gauge\nlat_min{route=\"/a\"} 1\n"
        );
    }

    #[test]
    fn a_counter_that_went_negative_is_shown_as_a_gauge() {
        let mut exposition = Exposition::new(Duration::from_secs(300));
        exposition.apply(&Flush {
            timestamp: 1,
            metrics: vec![metric("q", FlushedType::Counter, -2.0, &[])],
            ..Flush::default()
        });
        let mut text = String::new();
        exposition.render(&mut text);
        assert_eq!(
            text,
            "# HELP q_total ssfd counter q\n# TYPE q_total gauge\nq_total -2\n"
        );
    }

    #[test]
    fn rendered_label_sets_read_back() {
        let mut rendered = String::new();
        labels_into(
            &[
                "b:x\"y".to_string(),
                "a:line\nbreak".to_string(),
                "c".to_string(),
            ],
            &mut rendered,
        );
        assert_eq!(
            parse_labels(&rendered),
            [
                ("a".to_string(), "line\nbreak".to_string()),
                ("b".into(), "x\"y".into()),
                ("c".into(), "true".into())
            ]
        );
        assert!(parse_labels("").is_empty());
    }

    #[test]
    fn idle_series_expire() {
        let mut exposition = Exposition::new(Duration::from_millis(1));
        exposition.apply(&Flush {
            timestamp: 1,
            metrics: vec![metric("g", FlushedType::Gauge, 1.0, &[])],
            summaries: vec![],
            ..Flush::default()
        });
        std::thread::sleep(Duration::from_millis(5));
        let mut text = String::new();
        exposition.render(&mut text);
        assert_eq!(text, "");
    }
}
