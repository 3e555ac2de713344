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

    /// The sample of `labels`, created by `new` when absent; `None` when absent and
    /// `new` gives none.
    fn get_or_insert(
        &mut self,
        labels: &str,
        new: impl FnOnce() -> Option<Sample>,
    ) -> Option<&mut Sample> {
        let hash = label_hash(labels);
        let entries = &self.entries;
        let found = self
            .index
            .find(hash, |&(h, i)| {
                h == hash
                    && ssfd_engine::batch::bytes_eq(
                        entries[i as usize].labels.as_bytes(),
                        labels.as_bytes(),
                    )
            })
            .copied();
        let at = match found {
            Some((_, at)) => at as usize,
            None => {
                let at = self.entries.len();
                self.entries.push(Entry {
                    labels: labels.into(),
                    sample: new()?,
                });
                self.index
                    .insert_unique(hash, (hash, at as u32), |&(h, _)| h);
                at
            }
        };
        Some(&mut self.entries[at].sample)
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
    /// Under memory pressure while a flush is applied: no new series or family.
    pressed: bool,
    /// Series the flush being applied brought and pressure kept out.
    refused: u64,
    /// Sample names other parts of `/metrics` write (ssfd's own telemetry, the OTel
    /// span metrics): a flushed family that would write one is dropped and counted.
    reserved: Arc<std::collections::HashSet<String>>,
    /// The names families write or go by besides their own ([`other_names`]), so two
    /// families never write one sample name, in the text format or in OpenMetrics.
    claimed: std::collections::HashSet<String>,
    name_buffer: String,
    label_buffer: String,
}

/// The sample names `/metrics` writes besides the exposition (ssfd's own telemetry and
/// the OTel span metrics), in both the text format and OpenMetrics: a flushed metric
/// sanitised to one of them (`ssfd.series`, `traces.span.metrics.calls`) would repeat
/// a family, which `promtool` and Prometheus reject.
pub fn reserved_names() -> std::collections::HashSet<String> {
    let mut own = String::new();
    ssfd_telemetry::render(&mut own, "");
    let families = own
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .chain([
            (
                "traces_span_metrics_calls_total".to_string(),
                "counter".to_string(),
            ),
            (
                "traces_span_metrics_duration_milliseconds".to_string(),
                "histogram".to_string(),
            ),
        ]);
    let mut names = std::collections::HashSet::new();
    for (name, kind) in families {
        match kind.as_str() {
            "summary" | "histogram" => {
                for suffix in ["_sum", "_count", "_bucket", "_created"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            "counter" => {
                // OpenMetrics names the family without `_total`
                if let Some(family) = name.strip_suffix("_total") {
                    names.insert(family.to_string());
                }
            }
            _ => {}
        }
        names.insert(name);
    }
    names
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
    if name.is_ascii() {
        // byte by byte: `extend` over chars was a tenth of a flush for dotted names
        for byte in name.bytes() {
            out.push(
                if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':' {
                    byte as char
                } else {
                    '_'
                },
            );
        }
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

/// [`labels`] of a joined tag list (`Tags::joined`) into `out`, in one pass over its
/// bytes and without allocating, when the keys need no sanitising and come in strictly
/// increasing order (the usual case: tags are sorted); else through [`labels`].
fn labels_into(joined: &str, out: &mut String) {
    out.clear();
    let bytes = joined.as_bytes();
    let mut previous_key: &[u8] = &[];
    let mut at = 0;
    while at < bytes.len() {
        // one tag: the key up to ':' or ',', then the value up to ','
        let start = at;
        while at < bytes.len() && bytes[at] != b':' && bytes[at] != b',' {
            at += 1;
        }
        let key = &bytes[start..at];
        let mut escaped = false;
        let value = if at < bytes.len() && bytes[at] == b':' {
            let value_start = at + 1;
            at = value_start;
            while at < bytes.len() && bytes[at] != b',' {
                escaped |= matches!(bytes[at], b'\\' | b'"' | b'\n');
                at += 1;
            }
            &joined[value_start..at]
        } else {
            "true"
        };
        at += 1; // the ','
        if at == start + 1 {
            continue; // an empty tag (nothing before its ',' or the end)
        }
        let plain = key
            .first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            && key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            && !key.starts_with(b"__")
            && key != b"quantile"
            && key != b"le";
        if !plain || !ascending(previous_key, key) {
            *out = labels(joined.split(',').filter(|tag| !tag.is_empty()));
            return;
        }
        out.push(if previous_key.is_empty() { '{' } else { ',' });
        // ASCII checked above
        out.push_str(&joined[start..start + key.len()]);
        out.push_str("=\"");
        if escaped {
            escape(value, out);
        } else {
            out.push_str(value);
        }
        out.push('"');
        previous_key = key;
    }
    if !previous_key.is_empty() {
        out.push('}');
    }
}

/// `a < b`, inline: keys usually differ in their first byte, where a slice compare
/// would call `memcmp`.
fn ascending(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

/// Tags to a rendered label set: `key:value` → `key="value"`, bare `key` →
/// `key="true"`, the same key twice keeps the last.
pub fn labels<'a>(tags: impl IntoIterator<Item = &'a str>) -> String {
    let mut map: BTreeMap<String, &str> = BTreeMap::new();
    for tag in tags {
        let (key, value) = match tag.split_once(':') {
            Some((key, value)) => (key, value),
            None => (tag, "true"),
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
            pressed: false,
            refused: 0,
            reserved: Arc::default(),
            claimed: Default::default(),
            name_buffer: String::new(),
            label_buffer: String::new(),
        }
    }

    /// Drops (and counts as conflicts) every family that would write one of `names`.
    pub fn reserving(mut self, names: std::collections::HashSet<String>) -> Exposition {
        self.reserved = Arc::new(names);
        self
    }

    /// True when a new family `name` of `kind` would write a sample name, or go by a
    /// family name, that is reserved or that another family writes or goes by (a
    /// counter `jobs_total` and a gauge `jobs` are both `jobs` in OpenMetrics; a summary
    /// `lat` writes `lat_sum`).
    fn is_taken(&self, name: &str, kind: FamilyType) -> bool {
        let taken = |n: &str| self.reserved.contains(n) || self.claimed.contains(n);
        taken(name)
            || other_names(name, kind)
                .iter()
                .any(|n| taken(n) || self.families.contains_key(n))
    }

    /// Series dropped because their family already had another type, or would have
    /// written a name that ssfd's own telemetry or the span metrics write.
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
        // one lookup for a known family
        let family = match self.families.get_mut(name) {
            Some(family) => family,
            None => {
                if self.pressed {
                    self.refused += 1;
                    return;
                }
                if self.is_taken(name, kind) {
                    self.conflicts += 1;
                    return;
                }
                self.claimed.extend(other_names(name, kind));
                self.families.insert(
                    name.to_string(),
                    Family {
                        kind,
                        help: help(),
                        series: Series::default(),
                    },
                );
                self.families.get_mut(name).expect("inserted above")
            }
        };
        if family.kind != kind {
            self.conflicts += 1;
            return;
        }
        let pressed = self.pressed;
        let Some(sample) = family.series.get_or_insert(labels, || {
            // under memory pressure the exposition takes no new series (SPEC 7)
            (!pressed).then(|| Sample {
                value: 0.0,
                summary: (kind == FamilyType::Summary).then(Box::default),
                seen: now,
            })
        }) else {
            self.refused += 1;
            return;
        };
        sample.seen = now;
        update(sample);
    }

    /// Folds one interval in.
    pub fn apply(&mut self, flush: &Flush) {
        let now = self.millis();
        self.pressed = ssfd_engine::memory::under_pressure();
        self.refused = 0;
        let mut name = std::mem::take(&mut self.name_buffer);
        let mut label_set = std::mem::take(&mut self.label_buffer);
        let summarised: std::collections::HashSet<(&str, &str)> = flush
            .summaries
            .iter()
            .map(|s| (s.name.as_str(), s.tags.joined()))
            .collect();
        // summaries first: where a flushed metric and a histogram would write one name,
        // the histogram keeps it
        for summary in &flush.summaries {
            let base = metric_name(&summary.name);
            labels_into(summary.tags.joined(), &mut label_set);
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
        let mut last_name: Option<(&str, bool)> = None;
        for metric in &flush.metrics {
            // a histogram's aggregates are shown by its summary, not as separate series
            if !summarised.is_empty()
                && let Some((base, suffix)) = metric.name.rsplit_once('.')
                && is_histogram_aggregate(suffix, metric.kind)
                && summarised.contains(&(base, metric.tags.joined()))
            {
                continue;
            }
            labels_into(metric.tags.joined(), &mut label_set);
            // metrics of one name usually come together: its family name is kept
            let counter = metric.kind == FlushedType::Counter;
            let same = last_name.is_some_and(|(last, was_counter)| {
                was_counter == counter
                    && ssfd_engine::batch::bytes_eq(last.as_bytes(), metric.name.as_bytes())
            });
            if !same {
                name.clear();
                push_metric_name(&metric.name, &mut name);
                if counter {
                    name.push_str("_total");
                }
                last_name = Some((metric.name.as_str(), counter));
            }
            match metric.kind {
                FlushedType::Counter => {
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
        self.name_buffer = name;
        self.label_buffer = label_set;
        if self.pressed {
            let shed = self.shed_idle(now) + self.refused;
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Sink,
                ssfd_telemetry::DropReason::MemoryLimit,
                shed,
            );
        }
    }

    /// Milliseconds since the exposition started.
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn expire(&mut self) {
        let now = self.millis();
        let expiry = self.expiry.as_millis() as u64;
        self.retain_series(|e| now.saturating_sub(e.sample.seen) < expiry);
    }

    /// Under memory pressure (SPEC 7: state that only grows is shed first): every series
    /// the flush applied at `now` did not update leaves at once instead of after
    /// `prometheus_expiry`. Returns how many left.
    fn shed_idle(&mut self, now: u64) -> u64 {
        self.retain_series(|e| e.sample.seen == now)
    }

    /// Keeps the series `keep` accepts, and the families left with any; returns how
    /// many series left.
    fn retain_series(&mut self, keep: impl Fn(&Entry) -> bool) -> u64 {
        let mut gone = 0;
        for family in self.families.values_mut() {
            let before = family.series.entries.len();
            family.series.retain(&keep);
            gone += (before - family.series.entries.len()) as u64;
        }
        let claimed = &mut self.claimed;
        self.families.retain(|name, family| {
            let keep = !family.series.is_empty();
            if !keep {
                for other in other_names(name, family.kind) {
                    claimed.remove(&other);
                }
            }
            keep
        });
        gone
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
            exposition: Arc::new(Mutex::new(
                Exposition::new(expiry).reserving(reserved_names()),
            )),
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

/// The names a family `name` of `kind` writes besides its own, or goes by: a summary's
/// `_sum` and `_count`, a counter's OpenMetrics family name (without `_total`).
fn other_names(name: &str, kind: FamilyType) -> Vec<String> {
    match kind {
        FamilyType::Summary => vec![format!("{name}_sum"), format!("{name}_count")],
        FamilyType::Counter => name
            .strip_suffix("_total")
            .map(|family| vec![family.to_string()])
            .unwrap_or_default(),
        FamilyType::Gauge => Vec::new(),
    }
}

/// True when `suffix` (after a histogram's name and a `.`) names one of the aggregates
/// a histogram or timer flushes (SPEC 4.1), of the type it flushes as: the summary and
/// its `_min`/`_max` gauges show those, while any other metric that shares the
/// histogram's name as a prefix (`db.query.errors` beside `db.query`) is its own series.
fn is_histogram_aggregate(suffix: &str, kind: FlushedType) -> bool {
    match suffix {
        "count" => kind == FlushedType::Counter,
        "min" | "max" | "sum" | "avg" | "median" | "hmean" => kind == FlushedType::Gauge,
        _ => {
            kind == FlushedType::Gauge
                && suffix.strip_suffix("percentile").is_some_and(|p| {
                    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'_')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssfd_engine::{FlushedMetric, HistogramSummary};

    /// A summary of one untagged sample `value` at quantile `quantile`.
    fn one_sample(name: &str, quantile: &str, value: f64) -> HistogramSummary {
        HistogramSummary {
            name: name.into(),
            tags: (&[] as &[&str]).iter().collect(),
            quantiles: vec![(quantile.into(), value)],
            count: 1.0,
            sum: value,
            min: value,
            max: value,
        }
    }

    fn metric(name: &str, kind: FlushedType, value: f64, tags: &[&str]) -> FlushedMetric {
        FlushedMetric {
            name: name.into(),
            kind,
            value,
            tags: tags.iter().collect(),
            message: None,
        }
    }

    #[test]
    fn names_and_labels_are_sanitised() {
        assert_eq!(metric_name("api.requests-total"), "api_requests_total");
        assert_eq!(metric_name("9lives"), "_9lives");
        assert_eq!(metric_name("a:b"), "a:b");
        assert_eq!(
            labels([
                "env:prod",
                "bare",
                "quantile:x",
                "le:1",
                "env:dev",
                "a.b:q\"uote"
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
            // sorted as text, not by key: `a1` sorts between `a` and `a:1`
            &["a", "a1:x", "a:1"],
            &["a1:x", "a:1"],
            &["b", "a"],
            &["a:", ":v", ""],
            &[":true", "env:prod"],
            &[":true"],
        ];
        let check = |tags: &[&str]| {
            let mut fast = String::new();
            labels_into(&tags.join(","), &mut fast);
            let general = labels(tags.iter().copied().filter(|t| !t.is_empty()));
            assert_eq!(fast, general, "{tags:?}");
        };
        for tags in cases {
            check(tags);
        }
        // random sorted tag lists over an alphabet that makes keys collide, sort
        // against their tags, and need sanitising
        let alphabet = b"ab1_.:";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let mut tags: Vec<String> = (0..1 + next(4))
                .map(|_| {
                    (0..1 + next(4))
                        .map(|_| alphabet[next(alphabet.len() as u64) as usize] as char)
                        .collect()
                })
                .collect();
            tags.sort();
            tags.dedup();
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            check(&tags);
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
        // a counter `temp` would be the family `temp` in OpenMetrics too: the gauge came
        // first and keeps the name; the gauge `temp_total` then has its name to itself
        assert!(
            text.contains("# TYPE temp_total gauge\ntemp_total 1\n"),
            "{text}"
        );
        assert_eq!(
            exposition.conflicts(),
            2,
            "the counter named temp was dropped twice"
        );
        // the other way round: a counter first keeps `jobs`, and a summary's samples
        // are its own
        let mut exposition = Exposition::new(Duration::from_secs(300));
        exposition.apply(&Flush {
            timestamp: 1,
            metrics: vec![
                metric("jobs", FlushedType::Counter, 1.0, &[]),
                metric("jobs", FlushedType::Gauge, 2.0, &[]),
                metric("lat.sum", FlushedType::Gauge, 2.0, &["other:1"]),
            ],
            summaries: vec![one_sample("lat", "0.5", 1.0)],
            ..Flush::default()
        });
        let mut text = String::new();
        exposition.render(&mut text);
        assert!(text.contains("jobs_total 1\n"), "{text}");
        assert!(!text.contains("\njobs 2"), "{text}");
        assert!(text.contains("lat_sum 1\n"), "{text}");
        assert!(!text.contains("lat_sum{other"), "{text}");
        assert_eq!(exposition.conflicts(), 2);
        let mut open = String::new();
        crate::openmetrics::to_openmetrics(&text, &mut open);
        let families: Vec<&str> = open.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut unique = families.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(families.len(), unique.len(), "{open}");
    }

    #[test]
    fn histograms_are_one_summary_plus_min_and_max() {
        let mut exposition = Exposition::new(Duration::from_secs(300));
        let summary = HistogramSummary {
            name: "lat".into(),
            tags: ["route:/a"].iter().collect(),
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
    fn metrics_named_under_a_histogram_are_kept() {
        let mut exposition = Exposition::new(Duration::from_secs(300));
        let summary = one_sample("db.query", "0.99", 5.0);
        exposition.apply(&Flush {
            timestamp: 1,
            metrics: vec![
                // the histogram's own aggregates: shown by the summary
                metric("db.query.count", FlushedType::Counter, 1.0, &[]),
                metric("db.query.99percentile", FlushedType::Gauge, 5.0, &[]),
                metric("db.query.99_9percentile", FlushedType::Gauge, 5.0, &[]),
                metric("db.query.hmean", FlushedType::Gauge, 5.0, &[]),
                // other metrics that share its name as a prefix: their own series
                metric("db.query.errors", FlushedType::Counter, 2.0, &[]),
                metric("db.query.pool", FlushedType::Gauge, 7.0, &[]),
                metric("db.query.count", FlushedType::Counter, 3.0, &["other:tag"]),
            ],
            summaries: vec![summary],
            ..Flush::default()
        });
        let mut text = String::new();
        exposition.render(&mut text);
        assert!(text.contains("\ndb_query_errors_total 2\n"), "{text}");
        assert!(text.contains("\ndb_query_pool 7\n"), "{text}");
        // a counter `db.query.count` of other tags would be the family `db_query_count`
        // in OpenMetrics, the summary's own `_count` sample: dropped and counted
        assert!(!text.contains("db_query_count_total"), "{text}");
        assert_eq!(exposition.conflicts(), 1);
        assert!(!text.contains("percentile"), "{text}");
        assert!(!text.contains("hmean"), "{text}");
        assert!(!text.contains("db_query_count_total 1"), "{text}");
    }

    #[test]
    fn flushed_names_that_own_telemetry_or_span_metrics_write_are_dropped_and_counted() {
        let mut exposition = Exposition::new(Duration::from_secs(300)).reserving(reserved_names());

        exposition.apply(&Flush {
            timestamp: 1,
            metrics: vec![
                metric("ssfd.series", FlushedType::Gauge, 1.0, &[]),
                metric("ssfd.received", FlushedType::Counter, 1.0, &[]),
                metric(
                    "ssfd.flush.duration.seconds.count",
                    FlushedType::Gauge,
                    1.0,
                    &[],
                ),
                metric("traces.span.metrics.calls", FlushedType::Counter, 1.0, &[]),
                metric("ssfd.build_info", FlushedType::Counter, 1.0, &[]),
                // not written elsewhere: kept
                metric("ssfd.overflow", FlushedType::Counter, 2.0, &[]),
                metric("app.series", FlushedType::Gauge, 3.0, &[]),
            ],
            summaries: vec![
                one_sample("ssfd.flush.duration.seconds", "0.5", 1.0),
                one_sample("app.lat", "0.5", 1.0),
            ],
            ..Flush::default()
        });
        assert_eq!(exposition.conflicts(), 6);
        let mut text = String::new();
        exposition.render(&mut text);
        assert!(!text.contains("ssfd_series"), "{text}");
        assert!(!text.contains("ssfd_received"), "{text}");
        // the summary and the gauge named as its count are dropped (its `_min` and
        // `_max` gauges write no reserved name and stay)
        assert!(!text.contains("ssfd_flush_duration_seconds{"), "{text}");
        assert!(
            !text.contains("ssfd_flush_duration_seconds_count"),
            "{text}"
        );
        assert!(!text.contains("ssfd_flush_duration_seconds_sum"), "{text}");
        assert!(!text.contains("ssfd_build_info"), "{text}");
        assert!(!text.contains("traces_"), "{text}");
        assert!(text.contains("\nssfd_overflow_total 2\n"), "{text}");
        assert!(text.contains("\napp_series 3\n"), "{text}");
        assert!(text.contains("\napp_lat_count 1\n"), "{text}");
        // the names the rest of /metrics writes, both formats
        let reserved = reserved_names();
        for name in [
            "ssfd_series",
            "ssfd_received_total",
            "ssfd_flush_duration_seconds_sum",
            "ssfd_build_info",
            "traces_span_metrics_calls",
            "traces_span_metrics_duration_milliseconds_bucket",
        ] {
            assert!(reserved.contains(name), "{name}");
        }
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
        labels_into("b:x\"y,a:line\nbreak,c", &mut rendered);
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
