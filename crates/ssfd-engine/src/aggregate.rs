//! One metric worker's series state: a hash table keyed by the series hash computed at
//! ingest (never re-hashed), holding each series' aggregate for the current interval.
//! `take` swaps the whole table out at flush time, so ingest waits at most for a swap.

use crate::batch::{Imported, MetricKind, Sample, SampleBatch, Scope};
use crate::sketch::hll::HyperLogLog;
use crate::sketch::tdigest::TDigest;
use hashbrown::HashTable;

/// A histogram or timer: the digest plus exact statistics of the samples received
/// directly (Veneur's "local" values).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    pub digest: TDigest,
    /// Σ 1 / rate.
    pub weight: f64,
    pub min: f64,
    pub max: f64,
    /// Σ value / rate.
    pub sum: f64,
    /// Σ (1 / value) / rate.
    pub reciprocal_sum: f64,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        }
    }

    fn add(&mut self, value: f64, weight: f64) {
        self.digest.add(value, weight);
        self.weight += weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value * weight;
        self.reciprocal_sum += weight / value;
    }
}

/// The aggregate of one series in one interval.
#[derive(Clone, Debug)]
pub enum State {
    /// Σ value / rate, as a float (SPEC 4.1).
    Counter(f64),
    /// The last value.
    Gauge(f64),
    /// The last status (0-3) and its message.
    Status {
        value: f64,
        message: Box<str>,
    },
    Set(Box<HyperLogLog>),
    Histogram(Box<Histogram>),
}

/// One series and its state.
#[derive(Clone, Debug)]
pub struct Series {
    pub hash: u64,
    /// The canonical key: name, 0, type byte, 0, sorted tags joined by `,`.
    pub key: Box<[u8]>,
    pub name_len: u32,
    pub kind: MetricKind,
    pub scope: Scope,
    pub state: State,
}

impl Series {
    pub fn name(&self) -> &[u8] {
        &self.key[..self.name_len as usize]
    }

    /// The sorted tags joined by `,` (empty when there are none).
    pub fn tags(&self) -> &[u8] {
        &self.key[self.name_len as usize + 3..]
    }
}

/// A worker's series for the current interval. Past `limit` live series, a sample
/// for a new series folds into its name's `ssfd_overflow:true` series, or into
/// `ssfd.overflow` when its name has none (SPEC 4.3).
#[derive(Debug)]
pub struct SeriesTable {
    table: HashTable<Series>,
    limit: usize,
    /// Hashes of the names that have a series in this table.
    names: hashbrown::HashSet<u64>,
    /// Samples folded into overflow series since the last `take`.
    overflowed: u64,
}

impl Default for SeriesTable {
    fn default() -> Self {
        SeriesTable::with_limit(usize::MAX)
    }
}

/// The tag of a name's overflow series.
pub const OVERFLOW_TAG: &[u8] = b"ssfd_overflow:true";
/// The series of samples whose name has no series when the limit is reached.
pub const OVERFLOW_NAME: &[u8] = b"ssfd.overflow";

impl SeriesTable {
    pub fn with_limit(limit: usize) -> SeriesTable {
        SeriesTable {
            table: HashTable::new(),
            limit: limit.max(1),
            names: Default::default(),
            overflowed: 0,
        }
    }

    /// Samples folded into overflow series since the last `take`.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Folds every sample and import of `batch` into its series.
    pub fn apply(&mut self, batch: &SampleBatch) {
        for sample in batch.samples() {
            let weight = crate::batch::weight(sample.rate);
            match &mut self.series(batch, sample).state {
                State::Counter(sum) => *sum += sample.value * weight,
                State::Gauge(last) => *last = sample.value,
                State::Status { value, message } => {
                    *value = sample.value;
                    *message = String::from_utf8_lossy(batch.extra(sample)).into();
                }
                State::Set(set) => set.insert(batch.extra(sample)),
                State::Histogram(histogram) => histogram.add(sample.value, weight),
            }
        }
        for (sample, imported) in batch.imports() {
            let scope = sample.scope;
            match (&mut self.series(batch, sample).state, imported) {
                (State::Counter(sum), Imported::Counter(value)) => *sum += value,
                (State::Gauge(last), Imported::Gauge(value)) => *last = *value,
                (State::Set(set), Imported::Set(other)) => set.merge(other),
                (State::Histogram(histogram), Imported::Histogram(other)) => {
                    histogram.digest.merge(&other.digest);
                    // a mixed histogram's aggregates count only samples received here
                    // (Veneur), so `.count` is never counted twice; a global one takes
                    // every statistic from upstream
                    if scope == Scope::Global {
                        histogram.weight += other.weight;
                        histogram.min = histogram.min.min(other.min);
                        histogram.max = histogram.max.max(other.max);
                        histogram.sum += other.sum;
                        histogram.reciprocal_sum += other.reciprocal_sum;
                    }
                }
                // a key names its type, so a mismatch cannot happen; ignore it if it does
                _ => {}
            }
        }
    }

    /// The series of `sample`, created if new; past the limit, its overflow series.
    fn series(&mut self, batch: &SampleBatch, sample: &Sample) -> &mut Series {
        let key = batch.key(sample);
        let scope = sample.scope;
        let hash = sample.hash;
        let vacant_over_limit = self.table.len() >= self.limit
            && self
                .table
                .find(hash, |series| {
                    series.scope == scope && crate::batch::bytes_eq(&series.key, key)
                })
                .is_none();
        let (hash, key, name_len): (u64, std::borrow::Cow<'_, [u8]>, u32) = if vacant_over_limit {
            self.overflowed += u64::from(sample.count());
            let name = batch.name(sample);
            let type_byte = key[name.len() + 1];
            let overflow: Vec<u8> = if self.names.contains(&crate::batch::key_hash(name)) {
                [name, &[0, type_byte, 0], OVERFLOW_TAG].concat()
            } else {
                [OVERFLOW_NAME, &[0, type_byte, 0]].concat()
            };
            let name_len = overflow.iter().position(|&b| b == 0).unwrap_or(0) as u32;
            (crate::batch::key_hash(&overflow), overflow.into(), name_len)
        } else {
            (hash, key.into(), batch.name(sample).len() as u32)
        };
        let names = &mut self.names;
        let entry = self.table.entry(
            hash,
            |series| series.scope == scope && crate::batch::bytes_eq(&series.key, &key),
            |series| series.hash,
        );
        entry
            .or_insert_with(|| {
                names.insert(crate::batch::key_hash(&key[..name_len as usize]));
                Series {
                    hash,
                    key: key.as_ref().into(),
                    name_len,
                    kind: sample.kind,
                    scope,
                    state: match sample.kind {
                        MetricKind::Counter => State::Counter(0.0),
                        MetricKind::Gauge => State::Gauge(0.0),
                        MetricKind::Status => State::Status {
                            value: 0.0,
                            message: "".into(),
                        },
                        MetricKind::Set => State::Set(Box::default()),
                        MetricKind::Histogram | MetricKind::Timer => {
                            State::Histogram(Box::new(Histogram::new()))
                        }
                    },
                }
            })
            .into_mut()
    }

    /// Takes the interval's series, leaving an empty table. It grows again as series
    /// arrive rather than being reserved at the last interval's size: a reserved table
    /// of a million series holds ~70 MB per worker while the flusher still holds the old
    /// one, and growing costs less than the samples that fill it.
    pub fn take(&mut self) -> SeriesTable {
        std::mem::replace(self, SeriesTable::with_limit(self.limit))
    }

    pub fn into_series(self) -> impl Iterator<Item = Series> {
        self.table.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchPool, KeyScratch, ShardedSamples};

    fn batch(lines: &[(&str, MetricKind, &[&str], f64)]) -> SampleBatch {
        let mut samples = ShardedSamples::new(1);
        let mut scratch = KeyScratch::default();
        for (name, kind, tags, value) in lines {
            scratch.begin(name.as_bytes(), *kind);
            for tag in *tags {
                scratch.tag(&[tag.as_bytes()]);
            }
            scratch.finish();
            samples.push(&scratch, Scope::Default, *value, 1.0, b"");
        }
        samples.drain(&BatchPool::default()).next().unwrap().1
    }

    fn flushed(table: SeriesTable) -> Vec<(String, String, f64)> {
        let mut out: Vec<_> = table
            .into_series()
            .map(|s| {
                let value = match s.state {
                    State::Counter(v) | State::Gauge(v) => v,
                    _ => f64::NAN,
                };
                (
                    String::from_utf8_lossy(s.name()).into(),
                    String::from_utf8_lossy(s.tags()).into(),
                    value,
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    #[test]
    fn past_the_limit_samples_fold_into_overflow_series_and_are_counted() {
        let mut table = SeriesTable::with_limit(2);
        table.apply(&batch(&[
            ("req", MetricKind::Counter, &["a:1"], 1.0),
            ("req", MetricKind::Counter, &["a:2"], 1.0),
            ("req", MetricKind::Counter, &["a:3"], 5.0),
            ("req", MetricKind::Counter, &["a:4"], 7.0),
            ("new.name", MetricKind::Counter, &["b:1"], 2.0),
            ("req", MetricKind::Counter, &["a:1"], 1.0),
        ]));
        assert_eq!(table.overflowed(), 3);
        assert_eq!(
            flushed(table.take()),
            vec![
                ("req".into(), "a:1".into(), 2.0),
                ("req".into(), "a:2".into(), 1.0),
                ("req".into(), "ssfd_overflow:true".into(), 12.0),
                ("ssfd.overflow".into(), "".into(), 2.0),
            ]
        );
        assert_eq!(table.overflowed(), 0, "a new interval starts from zero");
    }
}
