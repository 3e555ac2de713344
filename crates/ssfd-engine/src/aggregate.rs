//! One metric worker's series state: a hash table keyed by the series hash computed at
//! ingest (never re-hashed), holding each series' aggregate for the current interval.
//! `take` swaps the whole table out at flush time, so ingest waits at most for a swap.

use crate::batch::{MetricKind, SampleBatch, Scope};
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
    fn new() -> Self {
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

/// A worker's series for the current interval.
#[derive(Debug, Default)]
pub struct SeriesTable {
    table: HashTable<Series>,
}

impl SeriesTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Folds every sample of `batch` into its series.
    pub fn apply(&mut self, batch: &SampleBatch) {
        for sample in batch.samples() {
            let key = batch.key(sample);
            let scope = sample.scope;
            let entry = self.table.entry(
                sample.hash,
                |series| series.scope == scope && *series.key == *key,
                |series| series.hash,
            );
            let series = entry
                .or_insert_with(|| Series {
                    hash: sample.hash,
                    key: key.into(),
                    name_len: batch.name(sample).len() as u32,
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
                })
                .into_mut();
            let rate = f64::from(sample.rate);
            match &mut series.state {
                State::Counter(sum) => *sum += sample.value / rate,
                State::Gauge(last) => *last = sample.value,
                State::Status { value, message } => {
                    *value = sample.value;
                    *message = String::from_utf8_lossy(batch.extra(sample)).into();
                }
                State::Set(set) => set.insert(batch.extra(sample)),
                State::Histogram(histogram) => histogram.add(sample.value, 1.0 / rate),
            }
        }
    }

    /// Takes the interval's series, leaving an empty table of similar capacity.
    pub fn take(&mut self) -> SeriesTable {
        let capacity = self.table.len();
        std::mem::replace(
            self,
            SeriesTable {
                table: HashTable::with_capacity(capacity),
            },
        )
    }

    pub fn into_series(self) -> impl Iterator<Item = Series> {
        self.table.into_iter()
    }
}
