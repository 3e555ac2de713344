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

    /// Adds `other`'s exact statistics (not its digest).
    fn add_statistics(&mut self, other: &Histogram) {
        self.weight += other.weight;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.reciprocal_sum += other.reciprocal_sum;
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

impl State {
    fn new(kind: MetricKind) -> State {
        match kind {
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
        }
    }

    /// Folds in the state of the same series from another worker of this server (its
    /// samples were received here too, so every statistic adds up).
    fn merge(&mut self, other: State) {
        match (self, other) {
            (State::Counter(sum), State::Counter(more)) => *sum += more,
            (State::Gauge(last), State::Gauge(value)) => *last = value,
            (
                State::Status { value, message },
                State::Status {
                    value: v,
                    message: m,
                },
            ) => {
                *value = v;
                *message = m;
            }
            (State::Set(set), State::Set(other)) => set.merge(&other),
            (State::Histogram(histogram), State::Histogram(other)) => {
                histogram.digest.merge(&other.digest);
                histogram.add_statistics(&other);
            }
            // one key, one type
            _ => {}
        }
    }
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
    fn new(hash: u64, key: &[u8], name_len: u32, scope: Scope, kind: MetricKind) -> Series {
        Series {
            hash,
            key: key.into(),
            name_len,
            kind,
            scope,
            state: State::new(kind),
        }
    }

    pub fn name(&self) -> &[u8] {
        &self.key[..self.name_len as usize]
    }

    /// The sorted tags joined by `,` (empty when there are none).
    pub fn tags(&self) -> &[u8] {
        &self.key[self.name_len as usize + 3..]
    }
}

/// A worker's series for the current interval. Past `limit` live series (counted
/// across every worker's table through [`SharedSeries`]), a sample for a new series
/// folds into its name's `ssfd_overflow:true` series, or into `ssfd.overflow` when its
/// name has no series on any worker (SPEC 4.3).
#[derive(Debug)]
pub struct SeriesTable {
    table: HashTable<Series>,
    limit: usize,
    /// Hashes of the names that have a series in this table.
    names: hashbrown::HashSet<u64>,
    /// Samples folded into overflow series since the last `take`.
    overflowed: u64,
    /// What the workers' tables share: their live series and their names.
    shared: std::sync::Arc<SharedSeries>,
    /// The interval this table fills (0, 1, 2, ... as it is taken).
    epoch: u64,
    /// Names that went to `ssfd.overflow` this interval: past the limit no new series
    /// start in it, so the answer holds, and the shared names are asked once per name.
    unnamed: hashbrown::HashSet<u64>,
    /// The overflow series this table created, (hash, key, scope), so the flusher
    /// finds them without a walk over the table.
    overflow_keys: Vec<(u64, Box<[u8]>, Scope)>,
    /// A table alone (not one of a pipeline's workers): `take` ends its interval in the
    /// shared state itself.
    alone: bool,
}

/// Shared by the tables of every worker: series are spread across workers by the hash
/// of their whole key, so `max_series` and "a name that already has series" are
/// questions about all of them. Touched only when a table creates a series (the live
/// count; a name once per worker and interval) or overflows (a name once per worker and
/// interval), never per sample of a known series.
#[derive(Debug, Default)]
pub struct SharedSeries {
    /// Live series of an interval in all tables (overflow series not counted), by the
    /// interval's parity: the flusher takes the workers' tables one after the other, so
    /// one may fill interval E + 1 while another still fills E, and each interval keeps
    /// its own count until every table of it is taken ([`SharedSeries::interval_done`]).
    live: [std::sync::atomic::AtomicUsize; 2],
    /// Name hash → the intervals (epochs) in which it had a series, in shards.
    names: [std::sync::Mutex<hashbrown::HashMap<u64, Epochs>>; NAME_SHARDS],
}

/// The recent intervals a name had a series in: the latest, and a bit per interval
/// before it (bit i: `latest - i`). Workers swap one after the other, so one may note a
/// name for the next interval while another still asks about the last.
#[derive(Clone, Copy, Debug, Default)]
struct Epochs {
    latest: u64,
    bits: u64,
}

impl Epochs {
    fn note(&mut self, epoch: u64) {
        if self.bits == 0 || epoch > self.latest {
            let shift = epoch.saturating_sub(self.latest);
            self.bits = if self.bits == 0 || shift >= 64 {
                0
            } else {
                self.bits << shift
            };
            self.latest = epoch;
        }
        if let Some(back) = self.latest.checked_sub(epoch).filter(|&b| b < 64) {
            self.bits |= 1 << back;
        }
    }

    fn has(&self, epoch: u64) -> bool {
        self.latest
            .checked_sub(epoch)
            .is_some_and(|back| back < 64 && self.bits & (1 << back) != 0)
    }
}

const NAME_SHARDS: usize = 16;

impl SharedSeries {
    fn names_of(
        &self,
        name_hash: u64,
    ) -> std::sync::MutexGuard<'_, hashbrown::HashMap<u64, Epochs>> {
        let shard = (name_hash >> 56) as usize % NAME_SHARDS;
        self.names[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Live series of interval `epoch` in every table.
    pub fn live(&self, epoch: u64) -> usize {
        self.live[(epoch & 1) as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every table of interval `epoch` has been taken: its count starts again for
    /// interval `epoch + 2`, and names that had no series since are forgotten. Called by
    /// the flusher once per interval.
    pub fn interval_done(&self, epoch: u64) {
        self.live[(epoch & 1) as usize].store(0, std::sync::atomic::Ordering::Relaxed);
        for shard in &self.names {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|_, epochs| epochs.latest > epoch);
        }
    }
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
    /// A table alone (its own limit).
    pub fn with_limit(limit: usize) -> SeriesTable {
        SeriesTable {
            alone: true,
            ..SeriesTable::sharing(limit, Default::default())
        }
    }

    /// One of several workers' tables: `limit` bounds the live series of every table
    /// made with the same `shared`.
    pub fn sharing(limit: usize, shared: std::sync::Arc<SharedSeries>) -> SeriesTable {
        SeriesTable {
            table: HashTable::new(),
            limit: limit.max(1),
            names: Default::default(),
            overflowed: 0,
            shared,
            epoch: 0,
            unnamed: Default::default(),
            overflow_keys: Vec::new(),
            alone: false,
        }
    }

    /// The interval this table fills.
    pub fn epoch(&self) -> u64 {
        self.epoch
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
                        histogram.add_statistics(other);
                    }
                }
                // a key names its type, so a mismatch cannot happen; ignore it if it does
                _ => {}
            }
        }
    }

    /// The series of `sample`, created if new; past the limit, its overflow series.
    /// One lookup for a known series.
    fn series(&mut self, batch: &SampleBatch, sample: &Sample) -> &mut Series {
        use hashbrown::hash_table::Entry;
        use std::sync::atomic::Ordering::Relaxed;
        let key = batch.key(sample);
        let (scope, kind) = (sample.scope, sample.kind);
        let name = batch.name(sample);
        let SeriesTable {
            table,
            limit,
            names,
            overflowed,
            shared,
            epoch,
            unnamed,
            overflow_keys,
            ..
        } = self;
        let vacant = match table.entry(
            sample.hash,
            |series| series.scope == scope && crate::batch::bytes_eq(&series.key, key),
            |series| series.hash,
        ) {
            Entry::Occupied(entry) => return entry.into_mut(),
            Entry::Vacant(vacant) => vacant,
        };
        // a new series takes one of the `limit` live series of its interval on all
        // workers, or overflows. A name this table has not seen is looked up and noted
        // under its shard's lock, taken before the count, so a worker that finds the
        // limit reached sees every name whose series took a place before it.
        let name_hash = crate::batch::key_hash(name);
        let live = &shared.live[(*epoch & 1) as usize];
        let named = if live.load(Relaxed) >= *limit {
            // past the limit (a failed reservation only ever adds to a full count)
            if names.contains(&name_hash) {
                true
            } else if unnamed.contains(&name_hash) {
                false
            } else {
                let named = shared
                    .names_of(name_hash)
                    .get(&name_hash)
                    .is_some_and(|e| e.has(*epoch));
                if !named {
                    unnamed.insert(name_hash);
                }
                named
            }
        } else {
            let mut shard = (!names.contains(&name_hash)).then(|| shared.names_of(name_hash));
            if live.fetch_add(1, Relaxed) < *limit {
                if let Some(shard) = &mut shard {
                    names.insert(name_hash);
                    shard.entry(name_hash).or_default().note(*epoch);
                }
                drop(shard);
                let series = Series::new(sample.hash, key, name.len() as u32, scope, kind);
                return vacant.insert(series).into_mut();
            }
            live.fetch_sub(1, Relaxed);
            match &shard {
                None => true,
                Some(shard) => shard.get(&name_hash).is_some_and(|e| e.has(*epoch)),
            }
        };
        *overflowed += u64::from(sample.count());
        let type_byte = key[name.len() + 1];
        let overflow: Vec<u8> = if named {
            [name, &[0, type_byte, 0], OVERFLOW_TAG].concat()
        } else {
            [OVERFLOW_NAME, &[0, type_byte, 0]].concat()
        };
        let name_len = overflow.iter().position(|&b| b == 0).unwrap_or(0) as u32;
        let table = vacant.into_table();
        let target = OverflowTarget {
            names,
            shared,
            epoch: *epoch,
            keys: overflow_keys,
        };
        target.series(table, &overflow, name_len, scope, kind)
    }

    /// Folds `other`'s overflow series into this table's (each worker folds its own
    /// overflow, so several may hold the same overflow series; the flusher joins them so
    /// every sink gets one).
    pub fn absorb_overflow(&mut self, other: &mut SeriesTable) {
        self.overflowed += std::mem::take(&mut other.overflowed);
        for (hash, key, scope) in std::mem::take(&mut other.overflow_keys) {
            let Ok(entry) = other.table.find_entry(hash, |s| {
                s.scope == scope && crate::batch::bytes_eq(&s.key, &key)
            }) else {
                continue;
            };
            let (series, _) = entry.remove();
            let target = OverflowTarget {
                names: &mut self.names,
                shared: &self.shared,
                epoch: self.epoch,
                keys: &mut self.overflow_keys,
            };
            target
                .series(
                    &mut self.table,
                    &series.key,
                    series.name_len,
                    series.scope,
                    series.kind,
                )
                .state
                .merge(series.state);
        }
    }

    /// Takes the interval's series, leaving an empty table. It grows again as series
    /// arrive rather than being reserved at the last interval's size: a reserved table
    /// of a million series holds ~70 MB per worker while the flusher still holds the old
    /// one, and growing costs less than the samples that fill it.
    pub fn take(&mut self) -> SeriesTable {
        let mut next = SeriesTable::sharing(self.limit, std::sync::Arc::clone(&self.shared));
        next.epoch = self.epoch + 1;
        next.alone = self.alone;
        let taken = std::mem::replace(self, next);
        if taken.alone {
            taken.shared.interval_done(taken.epoch);
        }
        taken
    }

    pub fn into_series(self) -> impl Iterator<Item = Series> {
        self.table.into_iter()
    }
}

/// Records that `name` has a series in this table's interval: here, and for the other
/// workers the first time this table sees it.
fn note_name(names: &mut hashbrown::HashSet<u64>, shared: &SharedSeries, epoch: u64, name: &[u8]) {
    let name_hash = crate::batch::key_hash(name);
    if names.insert(name_hash) {
        shared
            .names_of(name_hash)
            .entry(name_hash)
            .or_default()
            .note(epoch);
    }
}

/// Where a table's overflow series go: created outside the live count, their name
/// noted, their key kept for the flusher.
struct OverflowTarget<'a> {
    names: &'a mut hashbrown::HashSet<u64>,
    shared: &'a SharedSeries,
    epoch: u64,
    keys: &'a mut Vec<(u64, Box<[u8]>, Scope)>,
}

impl OverflowTarget<'_> {
    /// The overflow series `key` of `table`, created if new.
    fn series<'t>(
        self,
        table: &'t mut HashTable<Series>,
        key: &[u8],
        name_len: u32,
        scope: Scope,
        kind: MetricKind,
    ) -> &'t mut Series {
        let hash = crate::batch::key_hash(key);
        let OverflowTarget {
            names,
            shared,
            epoch,
            keys,
        } = self;
        table
            .entry(
                hash,
                |series| series.scope == scope && crate::batch::bytes_eq(&series.key, key),
                |series| series.hash,
            )
            .or_insert_with(|| {
                note_name(names, shared, epoch, &key[..name_len as usize]);
                keys.push((hash, key.into(), scope));
                Series::new(hash, key, name_len, scope, kind)
            })
            .into_mut()
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
    fn the_limit_and_the_names_hold_across_workers() {
        let shared = std::sync::Arc::new(SharedSeries::default());
        let mut a = SeriesTable::sharing(3, std::sync::Arc::clone(&shared));
        let mut b = SeriesTable::sharing(3, std::sync::Arc::clone(&shared));
        a.apply(&batch(&[("x", MetricKind::Counter, &["id:0"], 1.0)]));
        b.apply(&batch(&[
            ("y", MetricKind::Counter, &["id:0"], 1.0),
            ("y", MetricKind::Counter, &["id:1"], 1.0),
        ]));
        assert_eq!(shared.live(0), 3, "three series on two workers");
        // `a` has no `y` series, `b` does: still the name's overflow series
        a.apply(&batch(&[
            ("y", MetricKind::Counter, &["id:2"], 4.0),
            ("new", MetricKind::Counter, &[], 2.0),
            ("x", MetricKind::Counter, &["id:0"], 1.0),
        ]));
        b.apply(&batch(&[("y", MetricKind::Counter, &["id:3"], 5.0)]));
        assert_eq!((a.overflowed(), b.overflowed()), (2, 1));
        // the flusher takes `a` first: `a` fills the next interval while `b` still fills
        // this one, whose places stay taken; the next interval has its own count
        let mut taken_a = a.take();
        b.apply(&batch(&[("z", MetricKind::Counter, &[], 1.0)]));
        assert_eq!(b.overflowed(), 2, "no fourth series in the interval");
        a.apply(&batch(&[("w", MetricKind::Counter, &[], 1.0)]));
        assert_eq!((shared.live(0), shared.live(1)), (3, 1));
        let mut taken_b = b.take();
        shared.interval_done(0);
        assert_eq!((shared.live(0), shared.live(1)), (0, 1));
        // the flusher joins the workers' overflow series
        taken_a.absorb_overflow(&mut taken_b);
        assert_eq!((taken_a.overflowed(), taken_b.overflowed()), (4, 0));
        let mut joined = flushed(taken_a);
        joined.extend(flushed(taken_b));
        joined.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        assert_eq!(
            joined,
            vec![
                ("ssfd.overflow".into(), "".into(), 3.0),
                ("x".into(), "id:0".into(), 2.0),
                ("y".into(), "id:0".into(), 1.0),
                ("y".into(), "id:1".into(), 1.0),
                ("y".into(), "ssfd_overflow:true".into(), 9.0),
            ]
        );
        // the next interval: `y` has no series in it, so past the limit it is a new name
        a.apply(&batch(&[("p", MetricKind::Counter, &[], 1.0)]));
        b.apply(&batch(&[
            ("r", MetricKind::Counter, &[], 1.0),
            ("y", MetricKind::Counter, &["id:0"], 1.0),
        ]));
        assert_eq!(
            flushed(b.take()),
            vec![
                ("r".into(), "".into(), 1.0),
                ("ssfd.overflow".into(), "".into(), 1.0)
            ]
        );
    }

    #[test]
    fn epochs_remember_recent_intervals() {
        let mut epochs = Epochs::default();
        epochs.note(5);
        assert!(epochs.has(5) && !epochs.has(4) && !epochs.has(6));
        epochs.note(7);
        epochs.note(6);
        assert!(epochs.has(5) && epochs.has(6) && epochs.has(7) && !epochs.has(8));
        epochs.note(200);
        assert!(epochs.has(200) && !epochs.has(7));
        let mut zero = Epochs::default();
        assert!(!zero.has(0));
        zero.note(0);
        assert!(zero.has(0));
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
