//! Metric samples as they cross from ingest to the workers: owned batches whose keys
//! live in one byte arena, each sample carrying its series hash.

use ssfd_telemetry::Kind;

/// The aggregation type of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Timer,
    Set,
    Status,
}

impl MetricKind {
    fn key_byte(self) -> u8 {
        match self {
            MetricKind::Counter => b'c',
            MetricKind::Gauge => b'g',
            MetricKind::Histogram => b'h',
            MetricKind::Timer => b't',
            MetricKind::Set => b's',
            MetricKind::Status => b'k',
        }
    }

    /// The telemetry kind a worker counts this under.
    pub fn telemetry(self) -> Kind {
        match self {
            MetricKind::Counter => Kind::Counter,
            MetricKind::Gauge => Kind::Gauge,
            MetricKind::Histogram => Kind::Histogram,
            MetricKind::Timer => Kind::Timer,
            MetricKind::Set => Kind::Set,
            MetricKind::Status => Kind::Status,
        }
    }
}

/// Where a sample is aggregated (SPEC 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Veneur's default: counters and gauges local, sets and histograms mixed.
    #[default]
    Default,
    Local,
    Global,
}

/// One metric sample. Byte ranges point into its batch's arena.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// xxh3 of the canonical series key.
    pub hash: u64,
    key_start: u32,
    key_len: u32,
    name_len: u32,
    /// Set member or status message.
    extra_start: u32,
    extra_len: u32,
    pub kind: MetricKind,
    pub scope: Scope,
    /// The value (counter increment before rate, gauge, histogram sample, status 0-3).
    pub value: f64,
    /// Sample rate in (0, 1].
    pub rate: f32,
    /// The lines this sample stands for: more than 1 when a reader combined repeats of
    /// a counter or gauge within one batch ([`ShardedSamples::push_combining`]).
    count: u32,
}

impl Sample {
    /// The lines this sample stands for (its value already folds them in).
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// What one sample at `rate` stands for: `1 / rate`, divided in f32 as Veneur divides
/// its float32 sample rate, so the rates clients write (0.1, 0.01, 0.05, 0.25) weigh
/// exactly 10, 100, 20, 4. (`1.0 / f64::from(0.1f32)` is 9.99999985.) A statsd counter
/// is divided by its rate as written, in f64, before it becomes a sample.
/// A rate so small that its f32 reciprocal is infinite (a subnormal) is divided in f64.
#[inline]
pub fn weight(rate: f32) -> f64 {
    let weight = 1.0 / rate;
    if weight.is_finite() {
        f64::from(weight)
    } else {
        1.0 / f64::from(rate)
    }
}

/// Aggregated state forwarded by a local (Veneur's forward protocol), merged whole
/// into the series of the same key.
#[derive(Clone, Debug)]
pub enum Imported {
    Counter(f64),
    Gauge(f64),
    /// A digest and, for its exact statistics, Σ weight, min, max, Σ value·weight and
    /// Σ weight / value as the local computed them.
    Histogram(Box<crate::aggregate::Histogram>),
    Set(Box<crate::sketch::hll::HyperLogLog>),
}

/// An owned batch of samples for one worker.
#[derive(Debug, Default)]
pub struct SampleBatch {
    arena: Vec<u8>,
    samples: Vec<Sample>,
    /// Forwarded state; each `Sample` carries only its key, kind and scope.
    imports: Vec<(Sample, Imported)>,
    /// Lines carried: every sample's count plus the imports.
    lines: usize,
    /// The interval it was sent in (`durable.rs`), stamped by the pipeline.
    pub(crate) epoch: u64,
}

impl SampleBatch {
    pub fn with_capacity(samples: usize) -> Self {
        SampleBatch {
            arena: Vec::with_capacity(samples * 64),
            samples: Vec::with_capacity(samples),
            imports: Vec::new(),
            lines: 0,
            epoch: 0,
        }
    }

    /// The lines (and imports) it carries; a combined sample counts every line in it.
    pub fn len(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.imports.is_empty()
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn imports(&self) -> &[(Sample, Imported)] {
        &self.imports
    }

    /// Appends forwarded state whose key `scratch` has built.
    pub fn push_import(&mut self, key: &KeyScratch, scope: Scope, imported: Imported) {
        let key_start = self.arena.len() as u32;
        self.arena.extend_from_slice(&key.buffer);
        self.imports.push((
            Sample {
                hash: key.hash,
                key_start,
                key_len: key.buffer.len() as u32,
                name_len: key.name_len,
                extra_start: 0,
                extra_len: 0,
                kind: key.kind,
                scope,
                value: 0.0,
                rate: 1.0,
                count: 1,
            },
            imported,
        ));
        self.lines += 1;
    }

    /// The canonical series key: name, 0, type byte, 0, sorted tags joined by `,`.
    pub fn key(&self, sample: &Sample) -> &[u8] {
        &self.arena[sample.key_start as usize..(sample.key_start + sample.key_len) as usize]
    }

    pub fn name(&self, sample: &Sample) -> &[u8] {
        &self.arena[sample.key_start as usize..(sample.key_start + sample.name_len) as usize]
    }

    /// The sorted tags, joined by `,`.
    pub fn tags(&self, sample: &Sample) -> &[u8] {
        let start = (sample.key_start + sample.name_len + 3) as usize;
        &self.arena[start..(sample.key_start + sample.key_len) as usize]
    }

    /// A set's member or a status's message.
    pub fn extra(&self, sample: &Sample) -> &[u8] {
        &self.arena[sample.extra_start as usize..(sample.extra_start + sample.extra_len) as usize]
    }

    /// Appends a sample whose key `scratch` has built.
    pub fn push(&mut self, key: &KeyScratch, scope: Scope, value: f64, rate: f32, extra: &[u8]) {
        self.push_key(key.as_key(), scope, value, rate, extra);
    }

    /// Appends a sample of a key built earlier (ingest's key cache).
    pub fn push_key(&mut self, key: KeyRef<'_>, scope: Scope, value: f64, rate: f32, extra: &[u8]) {
        let key_start = self.arena.len() as u32;
        self.arena.extend_from_slice(key.key);
        let extra_start = self.arena.len() as u32;
        self.arena.extend_from_slice(extra);
        self.samples.push(Sample {
            hash: key.hash,
            key_start,
            key_len: key.key.len() as u32,
            name_len: key.name_len,
            extra_start,
            extra_len: extra.len() as u32,
            kind: key.kind,
            scope,
            value,
            rate,
            count: 1,
        });
        self.lines += 1;
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.samples.clear();
        self.imports.clear();
        self.lines = 0;
        self.epoch = 0;
    }

    /// Gives back most of the room of a batch handed off mostly empty (a quiet
    /// round's), so the batches a queue holds stay about as big as what they carry;
    /// it keeps room for [`SampleBatch::FLOOR`] samples, so a pooled batch does not
    /// have to grow again from nothing.
    fn fit(&mut self) {
        if self.samples.len() * 4 < self.samples.capacity() {
            self.samples.shrink_to(self.samples.len().max(Self::FLOOR));
        }
        if self.arena.len() * 4 < self.arena.capacity() {
            self.arena.shrink_to(self.arena.len().max(Self::FLOOR * 64));
        }
    }

    /// The room [`SampleBatch::fit`] always leaves: 256 samples (12 KiB) and 16 KiB of keys.
    const FLOOR: usize = 256;
}

/// Emptied batches on their way back from the workers to ingest. A reader refills a
/// batch it had before instead of allocating a new one for every hand-off: no
/// allocation, no cross-thread free, and no fresh pages to fault in while traffic is
/// steady. Bounded: a full pool drops what it is given, and a batch with room for more
/// than 8,192 samples, 512 KiB of keys or any forwarded state is freed instead, so a
/// pool of 32 holds at most 28 MiB (a datagram reader hands off about every 4,096
/// lines, split over the metric workers, so its batches are usually far smaller).
#[derive(Clone, Debug)]
pub struct BatchPool {
    sender: crossbeam_channel::Sender<SampleBatch>,
    receiver: crossbeam_channel::Receiver<SampleBatch>,
}

/// The pipeline's pool: 32 batches, enough for every reader (one batch per metric
/// worker each) to find one at each hand-off while the workers keep up.
impl Default for BatchPool {
    fn default() -> Self {
        BatchPool::new(32)
    }
}

impl BatchPool {
    /// The most samples, and arena bytes, of a batch the pool keeps.
    const MAX_SAMPLES: usize = 8192;
    const MAX_ARENA: usize = 512 << 10;

    /// A pool of at most `batches` empty batches.
    pub fn new(batches: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::bounded(batches.max(1));
        BatchPool { sender, receiver }
    }

    /// An empty batch with room for `samples` (at most 8,192): one given back
    /// earlier, grown once if it is smaller, or a new one.
    pub fn take(&self, samples: usize) -> SampleBatch {
        let samples = samples.min(Self::MAX_SAMPLES);
        match self.receiver.try_recv() {
            Ok(mut batch) => {
                batch.samples.reserve(samples);
                batch.arena.reserve(samples * 64);
                batch
            }
            Err(_) => SampleBatch::with_capacity(samples),
        }
    }

    /// Empties `batch` and keeps it for a later [`BatchPool::take`], unless the pool is
    /// full or the batch is oversized or carried forwarded state.
    pub fn give(&self, mut batch: SampleBatch) {
        if batch.samples.capacity() > Self::MAX_SAMPLES
            || batch.arena.capacity() > Self::MAX_ARENA
            || batch.imports.capacity() > 0
        {
            return;
        }
        batch.clear();
        let _ = self.sender.try_send(batch);
    }

    /// Empty batches waiting to be taken.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

/// A canonical series key with its name length, type and hash, borrowed from a
/// [`KeyScratch`] or from a cache of keys built earlier.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    /// Name, 0, type byte, 0, sorted tags joined by `,`.
    pub key: &'a [u8],
    pub name_len: u32,
    pub kind: MetricKind,
    /// [`key_hash`] of `key`.
    pub hash: u64,
}

/// Builds a canonical series key and its hash, reusing its buffers across samples.
#[derive(Debug)]
pub struct KeyScratch {
    buffer: Vec<u8>,
    tags: Vec<u8>,
    ranges: Vec<(u32, u32)>,
    name_len: u32,
    kind: MetricKind,
    hash: u64,
}

impl Default for KeyScratch {
    fn default() -> Self {
        KeyScratch {
            buffer: Vec::with_capacity(256),
            tags: Vec::with_capacity(256),
            ranges: Vec::with_capacity(16),
            name_len: 0,
            kind: MetricKind::Counter,
            hash: 0,
        }
    }
}

impl KeyScratch {
    /// Starts a key.
    pub fn begin(&mut self, name: &[u8], kind: MetricKind) {
        self.buffer.clear();
        self.tags.clear();
        self.ranges.clear();
        self.buffer.extend_from_slice(name);
        self.name_len = name.len() as u32;
        self.kind = kind;
    }

    /// Adds a tag made of the concatenation of `parts` (empty tags are skipped). A
    /// comma becomes `_`: a key joins its tags with `,`, so an SSF or forwarded tag such
    /// as `path:/a,b` would otherwise come out as two tags (statsd tags never hold one).
    pub fn tag(&mut self, parts: &[&[u8]]) {
        let start = self.tags.len();
        for part in parts {
            self.tags.extend_from_slice(part);
        }
        let added = &mut self.tags[start..];
        if added.contains(&b',') {
            for byte in added.iter_mut().filter(|b| **b == b',') {
                *byte = b'_';
            }
        }
        if self.tags.len() > start {
            self.ranges
                .push((start as u32, (self.tags.len() - start) as u32));
        }
    }

    /// Adds `extend_tags` as Veneur's `ExtendTags.Extend` does: a tag already added
    /// whose key (the text before any `:`) is the key of one of `extra` is dropped
    /// first, so `extend_tags: [env:prod]` turns a client's `env:dev` into `env:prod`.
    pub fn extend<T: AsRef<[u8]>>(&mut self, extra: &[T]) {
        if extra.is_empty() {
            return;
        }
        let key_of =
            |tag: &[u8]| -> usize { tag.iter().position(|&b| b == b':').unwrap_or(tag.len()) };
        let tags = &self.tags;
        self.ranges.retain(|&(start, len)| {
            let tag = &tags[start as usize..(start + len) as usize];
            let key = &tag[..key_of(tag)];
            !extra.iter().any(|e| {
                let e = e.as_ref();
                &e[..key_of(e)] == key
            })
        });
        for tag in extra {
            self.tag(&[tag.as_ref()]);
        }
    }

    /// Sorts and de-duplicates the tags, lays out the key and hashes it once.
    pub fn finish(&mut self) -> u64 {
        self.buffer.push(0);
        self.buffer.push(self.kind.key_byte());
        self.buffer.push(0);
        let tags = &self.tags;
        let slice = |&(start, len): &(u32, u32)| &tags[start as usize..(start + len) as usize];
        if self.ranges.len() > 1 {
            self.ranges.sort_unstable_by(|a, b| slice(a).cmp(slice(b)));
            self.ranges.dedup_by(|a, b| slice(a) == slice(b));
        }
        for (index, range) in self.ranges.iter().enumerate() {
            if index > 0 {
                self.buffer.push(b',');
            }
            self.buffer.extend_from_slice(slice(range));
        }
        self.hash = key_hash(&self.buffer);
        self.hash
    }

    /// The key built by the last [`KeyScratch::finish`].
    pub fn key(&self) -> &[u8] {
        &self.buffer
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The key built by the last [`KeyScratch::finish`], with its parts.
    pub fn as_key(&self) -> KeyRef<'_> {
        KeyRef {
            key: &self.buffer,
            name_len: self.name_len,
            kind: self.kind,
            hash: self.hash,
        }
    }
}

/// Canonical keys built earlier, found again by the raw parts they were built from
/// (a statsd line's name, type, tag list as sent, container id). Most lines repeat a
/// series a reader has seen moments ago; a hit skips splitting, sorting and hashing
/// the tags. Direct-mapped: a slot holds the last key whose raw parts hashed to it, and
/// a hit compares those parts whole, so a collision only costs a miss.
#[derive(Debug)]
pub struct KeyCache {
    slots: Box<[CachedKey]>,
}

/// One slot, laid out (`repr(C)`, cache-line aligned) so a hit reads the slot's
/// header and the start of its bytes from the same line, and a key that fits the slot
/// (as nearly all do) needs no second, dependent load from the heap: that load was the
/// costliest instruction of a lookup.
#[derive(Debug)]
#[repr(C, align(64))]
struct CachedKey {
    /// The hash of the raw parts; with `kind`, a quick check before comparing them.
    raw_hash: u64,
    hash: u64,
    combine: Combine,
    /// Where the name, the tags and the raw parts end in the slot's bytes.
    ends: [u32; 3],
    name_len: u32,
    /// Bytes in use: the raw parts then the key, laid end to end.
    len: u32,
    /// `None` for an empty slot.
    kind: Option<MetricKind>,
    scope: Scope,
    /// The bytes when they fit, else `heap`.
    inline: [u8; CachedKey::INLINE],
    heap: Vec<u8>,
}

impl Default for CachedKey {
    fn default() -> Self {
        CachedKey {
            raw_hash: 0,
            hash: 0,
            combine: Combine::default(),
            ends: [0; 3],
            name_len: 0,
            len: 0,
            kind: None,
            scope: Scope::Default,
            inline: [0; CachedKey::INLINE],
            heap: Vec::new(),
        }
    }
}

impl CachedKey {
    /// Bytes kept in the slot itself (a slot is then 256 bytes).
    const INLINE: usize = 168;

    fn store(&mut self, parts: [&[u8]; 4]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.len = len as u32;
        let target: &mut [u8] = if len <= Self::INLINE {
            &mut self.inline[..len]
        } else {
            self.heap.resize(len, 0);
            &mut self.heap[..len]
        };
        let mut at = 0;
        for part in parts {
            target[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
}

/// Where a reader's open batch holds the last sample of a key, so a repeat of a counter
/// or gauge folds into it ([`ShardedSamples::push_combining`]). Valid while the
/// batches' serial is the one it was taken at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Combine {
    /// The [`ShardedSamples`] serial plus one (0: none).
    serial: u64,
    index: u32,
}

/// A key found in a [`KeyCache`], with the slot's [`Combine`].
#[derive(Debug)]
pub struct CachedRef<'a> {
    pub key: KeyRef<'a>,
    pub scope: Scope,
    pub combine: &'a mut Combine,
}

/// The raw parts a key was built from: the name, the tag list as sent, and anything
/// else that enters the key (a container id), with the metric type.
#[derive(Clone, Copy, Debug)]
pub struct RawKey<'a> {
    pub parts: [&'a [u8]; 3],
    pub kind: MetricKind,
}

impl RawKey<'_> {
    /// The hash a [`KeyCache`] files these parts under.
    pub fn hash(&self) -> u64 {
        // independent hashes of the parts, combined (the CPU overlaps them; a chain of
        // seeds made each wait for the last): a slot compares the parts whole anyway
        let [name, tags, extra] = self.parts;
        let name = xxhash_rust::xxh3::xxh3_64_with_seed(name, u64::from(self.kind.key_byte()));
        let hash = name ^ xxhash_rust::xxh3::xxh3_64(tags).rotate_left(23);
        if extra.is_empty() {
            hash
        } else {
            hash ^ xxhash_rust::xxh3::xxh3_64(extra).rotate_left(41)
        }
    }
}

impl KeyCache {
    /// The longest key (and raw form) a slot keeps.
    pub const MAX_KEY: usize = 256;

    /// A cache of `slots` keys (rounded up to a power of two).
    pub fn new(slots: usize) -> KeyCache {
        let slots = slots.max(1).next_power_of_two();
        KeyCache {
            slots: (0..slots).map(|_| CachedKey::default()).collect(),
        }
    }

    fn slot(&self, raw_hash: u64) -> usize {
        (raw_hash as usize) & (self.slots.len() - 1)
    }

    /// The key and scope cached for `raw`, whose [`RawKey::hash`] is `raw_hash`.
    pub fn get(&mut self, raw: &RawKey<'_>, raw_hash: u64) -> Option<CachedRef<'_>> {
        let index = self.slot(raw_hash);
        let slot = &mut self.slots[index];
        if slot.raw_hash != raw_hash || slot.kind != Some(raw.kind) {
            return None;
        }
        let [name, tags, extra] = raw.parts;
        let [a, b, c] = slot.ends.map(|end| end as usize);
        let bytes = if slot.len as usize <= CachedKey::INLINE {
            &slot.inline[..slot.len as usize]
        } else {
            &slot.heap[..slot.len as usize]
        };
        let same = a == name.len()
            && b - a == tags.len()
            && c - b == extra.len()
            && bytes_eq(&bytes[..a], name)
            && bytes_eq(&bytes[a..b], tags)
            && bytes_eq(&bytes[b..c], extra);
        same.then(|| CachedRef {
            key: KeyRef {
                key: &bytes[c..],
                name_len: slot.name_len,
                kind: raw.kind,
                hash: slot.hash,
            },
            scope: slot.scope,
            combine: &mut slot.combine,
        })
    }

    /// Files `key` (built from `raw`) with its scope; the slot's buffers are reused.
    /// Keys longer than [`KeyCache::MAX_KEY`] are not kept, so a sender of long,
    /// never-repeated lines cannot make the cache hold more than a few MiB.
    pub fn insert(&mut self, raw: &RawKey<'_>, raw_hash: u64, key: KeyRef<'_>, scope: Scope) {
        let [name, tags, extra] = raw.parts;
        if key.key.len() > Self::MAX_KEY || name.len() + tags.len() + extra.len() > Self::MAX_KEY {
            return;
        }
        let index = self.slot(raw_hash);
        let slot = &mut self.slots[index];
        slot.store([name, tags, extra, key.key]);
        let (a, b) = (name.len(), name.len() + tags.len());
        slot.ends = [a as u32, b as u32, (b + extra.len()) as u32];
        slot.raw_hash = raw_hash;
        slot.kind = Some(raw.kind);
        slot.name_len = key.name_len;
        slot.hash = key.hash;
        slot.scope = scope;
        slot.combine = Combine::default();
    }
}

/// Byte-slice equality for the short slices of series keys, inlined: eight bytes at a
/// time, where `==` on slices calls `memcmp` (a call that costs more than the compare
/// for keys of a few dozen bytes).
#[inline]
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        if word(x) != word(y) {
            return false;
        }
    }
    a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .all(|(x, y)| x == y)
}

/// The hash of a canonical series key (xxh3, 64 bits).
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Which of `shards` owns `hash` (multiply-shift, so every bit of the hash counts).
pub fn shard_of(hash: u64, shards: usize) -> usize {
    ((hash as u128 * shards as u128) >> 64) as usize
}

/// One open batch per metric worker, filled by one ingest thread.
#[derive(Debug)]
pub struct ShardedSamples {
    batches: Vec<SampleBatch>,
    pending: usize,
    /// Bumped whenever a batch is taken or emptied, which ends every [`Combine`].
    serial: u64,
}

impl ShardedSamples {
    pub fn new(shards: usize) -> Self {
        ShardedSamples {
            batches: (0..shards.max(1)).map(|_| SampleBatch::default()).collect(),
            pending: 0,
            serial: 0,
        }
    }

    /// Appends a sample to the batch of the shard that owns its key.
    pub fn push(&mut self, key: &KeyScratch, scope: Scope, value: f64, rate: f32, extra: &[u8]) {
        self.push_key(key.as_key(), scope, value, rate, extra);
    }

    /// Appends a sample of a key built earlier to the batch of the shard that owns it.
    pub fn push_key(&mut self, key: KeyRef<'_>, scope: Scope, value: f64, rate: f32, extra: &[u8]) {
        let shard = shard_of(key.hash, self.batches.len());
        self.batches[shard].push_key(key, scope, value, rate, extra);
        self.pending += 1;
    }

    /// Appends a counter or gauge sample of a cached key, or folds it into the sample of
    /// the same key that this batch already holds (`combine` says where): a counter
    /// adds `value × weight(rate)` (a sum, so where the sample sits does not matter); a gauge
    /// overwrites, but only the batch's last sample: a gauge's last write must stay
    /// last, and a sample of the same series may have come after the one `combine`
    /// points at (a multi-value line, or the same series written with its tags in
    /// another order, which has another cache slot). A repeated series then costs its
    /// worker one fold per hand-off, not one per line. Other kinds are appended as by
    /// [`ShardedSamples::push_key`].
    pub fn push_combining(
        &mut self,
        key: KeyRef<'_>,
        scope: Scope,
        value: f64,
        rate: f32,
        combine: &mut Combine,
    ) {
        let (value, rate) = match key.kind {
            MetricKind::Counter => (value * weight(rate), 1.0),
            MetricKind::Gauge => (value, rate),
            _ => return self.push_key(key, scope, value, rate, b""),
        };
        let shard = shard_of(key.hash, self.batches.len());
        let batch = &mut self.batches[shard];
        self.pending += 1;
        let last = batch.samples.len().wrapping_sub(1);
        if combine.serial == self.serial + 1
            && (key.kind == MetricKind::Counter || combine.index as usize == last)
            && let Some(sample) = batch.samples.get_mut(combine.index as usize)
            && sample.hash == key.hash
            && sample.kind == key.kind
        {
            match key.kind {
                MetricKind::Counter => sample.value += value,
                _ => sample.value = value,
            }
            sample.count += 1;
            batch.lines += 1;
            return;
        }
        *combine = Combine {
            serial: self.serial + 1,
            index: batch.samples.len() as u32,
        };
        batch.push_key(key, scope, value, rate, b"");
    }

    /// Appends forwarded state to the batch of the shard that owns its key.
    pub fn push_import(&mut self, key: &KeyScratch, scope: Scope, imported: Imported) {
        let shard = shard_of(key.hash, self.batches.len());
        self.batches[shard].push_import(key, scope, imported);
        self.pending += 1;
    }

    /// Samples waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Takes every non-empty batch, with its shard index, leaving an empty one from
    /// `pool` behind.
    pub fn drain<'a>(
        &'a mut self,
        pool: &'a BatchPool,
    ) -> impl Iterator<Item = (usize, SampleBatch)> + 'a {
        self.pending = 0;
        self.serial += 1;
        self.batches
            .iter_mut()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(move |(shard, batch)| {
                let mut taken = std::mem::replace(batch, pool.take(batch.samples.capacity()));
                taken.fit();
                (shard, taken)
            })
    }

    /// Offers every non-empty batch to `send`, leaving an empty one from `pool`
    /// behind; a batch it hands back stays pending. Returns true when nothing is left
    /// pending.
    pub fn send_each(
        &mut self,
        pool: &BatchPool,
        mut send: impl FnMut(usize, SampleBatch) -> Result<(), SampleBatch>,
    ) -> bool {
        let mut left = 0;
        self.serial += 1;
        for (shard, slot) in self.batches.iter_mut().enumerate() {
            if slot.is_empty() {
                continue;
            }
            let mut taken = std::mem::replace(slot, pool.take(slot.samples.capacity()));
            taken.fit();
            if let Err(back) = send(shard, taken) {
                left += back.len();
                pool.give(std::mem::replace(slot, back));
            }
        }
        self.pending = left;
        left == 0
    }

    /// Drops every pending sample, returning how many there were.
    pub fn discard(&mut self) -> usize {
        let count = self.pending;
        self.serial += 1;
        self.batches.iter_mut().for_each(SampleBatch::clear);
        self.pending = 0;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_exact_for_written_rates_and_finite_for_any() {
        assert_eq!(weight(1.0), 1.0);
        assert_eq!(weight(0.1), 10.0);
        assert_eq!(weight(0.01), 100.0);
        assert_eq!(weight(0.05), 20.0);
        // a subnormal rate (it passes the (0, 1] check): finite, as f64 divides it
        let tiny = 1e-39_f32;
        assert!(weight(tiny).is_finite() && weight(tiny) > 1e38);
        assert!(weight(f32::from_bits(1)).is_finite());
    }

    fn key(name: &str, kind: MetricKind, tags: &[&str]) -> (Vec<u8>, u64) {
        let mut scratch = KeyScratch::default();
        scratch.begin(name.as_bytes(), kind);
        for tag in tags {
            scratch.tag(&[tag.as_bytes()]);
        }
        let hash = scratch.finish();
        (scratch.key().to_vec(), hash)
    }

    #[test]
    fn tag_order_and_duplicates_do_not_change_the_key() {
        let a = key("req", MetricKind::Counter, &["b:2", "a:1", "b:2"]);
        let b = key("req", MetricKind::Counter, &["a:1", "b:2"]);
        assert_eq!(a, b);
        assert_eq!(a.0, b"req\0c\0a:1,b:2");
    }

    #[test]
    fn type_is_part_of_the_key() {
        assert_ne!(
            key("x", MetricKind::Counter, &[]).1,
            key("x", MetricKind::Gauge, &[]).1
        );
    }

    #[test]
    fn batches_keep_name_tags_and_extra() {
        let mut scratch = KeyScratch::default();
        scratch.begin(b"users", MetricKind::Set);
        scratch.tag(&[b"container_id:", b"abc"]);
        scratch.tag(&[b"env:prod"]);
        scratch.finish();
        let mut sharded = ShardedSamples::new(3);
        sharded.push(&scratch, Scope::Global, 0.0, 1.0, b"alice");
        assert_eq!(sharded.pending(), 1);
        let pool = BatchPool::new(4);
        let batches: Vec<_> = sharded.drain(&pool).collect();
        assert_eq!(batches.len(), 1);
        let (shard, batch) = &batches[0];
        assert_eq!(*shard, shard_of(scratch.hash(), 3));
        let sample = batch.samples()[0];
        assert_eq!(batch.name(&sample), b"users");
        assert_eq!(batch.tags(&sample), b"container_id:abc,env:prod");
        assert_eq!(batch.extra(&sample), b"alice");
        assert_eq!(sample.scope, Scope::Global);
        assert_eq!(sharded.pending(), 0);
    }

    #[test]
    fn repeats_of_a_counter_or_gauge_fold_into_the_open_batch() {
        let key_of = |name: &[u8], kind| {
            let mut scratch = KeyScratch::default();
            scratch.begin(name, kind);
            scratch.tag(&[b"env:prod"]);
            scratch.finish();
            scratch
        };
        let (counter, gauge, timer) = (
            key_of(b"hits", MetricKind::Counter),
            key_of(b"depth", MetricKind::Gauge),
            key_of(b"lat", MetricKind::Timer),
        );
        // one shard, so every sample shares one batch and its order
        let mut sharded = ShardedSamples::new(1);
        let pool = BatchPool::new(4);
        type Seen = (Vec<u8>, f64, f32, u32);
        let drained = |sharded: &mut ShardedSamples| -> (usize, Vec<Seen>) {
            let (_, batch) = sharded.drain(&pool).next().expect("a batch");
            let samples = batch
                .samples()
                .iter()
                .map(|s| (batch.name(s).to_vec(), s.value, s.rate, s.count()))
                .collect();
            (batch.len(), samples)
        };
        let of = |samples: &[Seen], name: &[u8]| -> Vec<(f64, f32, u32)> {
            samples
                .iter()
                .filter(|s| s.0 == name)
                .map(|s| (s.1, s.2, s.3))
                .collect()
        };
        let mut memos = [Combine::default(); 3];
        // interleaved: the counter folds (Σ value / rate); a gauge folds only into the
        // batch's last sample, so here each write stays, in order; the timer keeps
        // every sample with its own rate
        for (value, rate) in [(1.0, 1.0), (2.0, 0.5), (3.0, 0.25)] {
            sharded.push_combining(counter.as_key(), Scope::Default, value, rate, &mut memos[0]);
            sharded.push_combining(gauge.as_key(), Scope::Local, value, 1.0, &mut memos[1]);
            sharded.push_combining(timer.as_key(), Scope::Default, value, rate, &mut memos[2]);
        }
        assert_eq!(sharded.pending(), 9, "every line is pending");
        let (lines, samples) = drained(&mut sharded);
        assert_eq!(lines, 9, "a batch counts the lines a sample stands for");
        assert_eq!(of(&samples, b"hits"), vec![(1.0 + 4.0 + 12.0, 1.0, 3)]);
        assert_eq!(
            of(&samples, b"depth"),
            vec![(1.0, 1.0, 1), (2.0, 1.0, 1), (3.0, 1.0, 1)]
        );
        assert_eq!(
            of(&samples, b"lat"),
            vec![(1.0, 1.0, 1), (2.0, 0.5, 1), (3.0, 0.25, 1)]
        );
        // back to back, a gauge's writes fold into its last value
        for value in [4.0, 5.0, 6.0] {
            sharded.push_combining(gauge.as_key(), Scope::Local, value, 1.0, &mut memos[1]);
        }
        let (_, samples) = drained(&mut sharded);
        assert_eq!(of(&samples, b"depth"), vec![(6.0, 1.0, 3)]);
        // a write of the same series the memo does not know of (a multi-value line)
        // comes between: the next write is appended, so the worker still ends on it
        sharded.push_combining(gauge.as_key(), Scope::Local, 7.0, 1.0, &mut memos[1]);
        sharded.push_key(gauge.as_key(), Scope::Local, 8.0, 1.0, b"");
        sharded.push_combining(gauge.as_key(), Scope::Local, 9.0, 1.0, &mut memos[1]);
        let (_, samples) = drained(&mut sharded);
        assert_eq!(
            of(&samples, b"depth"),
            vec![(7.0, 1.0, 1), (8.0, 1.0, 1), (9.0, 1.0, 1)]
        );
        // memos outlive drains and discards without folding into the wrong sample
        sharded.push_combining(timer.as_key(), Scope::Default, 1.0, 1.0, &mut memos[2]);
        sharded.push_combining(counter.as_key(), Scope::Default, 5.0, 1.0, &mut memos[0]);
        sharded.push_combining(counter.as_key(), Scope::Default, 5.0, 1.0, &mut memos[0]);
        let (_, samples) = drained(&mut sharded);
        assert_eq!(of(&samples, b"hits"), vec![(10.0, 1.0, 2)]);
        assert_eq!(of(&samples, b"lat"), vec![(1.0, 1.0, 1)]);
        sharded.push_combining(counter.as_key(), Scope::Default, 1.0, 1.0, &mut memos[0]);
        assert_eq!(sharded.discard(), 1);
        sharded.push_combining(gauge.as_key(), Scope::Default, 7.0, 1.0, &mut memos[1]);
        sharded.push_combining(counter.as_key(), Scope::Default, 2.0, 1.0, &mut memos[0]);
        let mut foreign = memos[1];
        sharded.push_combining(counter.as_key(), Scope::Default, 3.0, 1.0, &mut foreign);
        let (lines, samples) = drained(&mut sharded);
        assert_eq!(lines, 3);
        assert_eq!(of(&samples, b"depth"), vec![(7.0, 1.0, 1)]);
        assert_eq!(
            of(&samples, b"hits").iter().map(|s| s.0).sum::<f64>(),
            5.0,
            "another key's memo never folds into its sample"
        );
    }

    #[test]
    fn the_key_cache_answers_only_for_the_same_raw_parts() {
        let mut cache = KeyCache::new(4);
        let raw = RawKey {
            parts: [b"req", b"b:2,a:1", b""],
            kind: MetricKind::Counter,
        };
        let hash = raw.hash();
        assert!(cache.get(&raw, hash).is_none());
        let mut scratch = KeyScratch::default();
        scratch.begin(b"req", MetricKind::Counter);
        scratch.tag(&[b"b:2"]);
        scratch.tag(&[b"a:1"]);
        scratch.finish();
        cache.insert(&raw, hash, scratch.as_key(), Scope::Global);
        let hit = cache.get(&raw, hash).expect("a hit");
        assert_eq!(hit.key.key, b"req\0c\0a:1,b:2");
        assert_eq!(
            (hit.key.hash, hit.key.name_len, hit.scope),
            (scratch.hash(), 3, Scope::Global)
        );
        // a key too long for the slot itself is kept on the heap, and found again
        let tags = [b"t:".as_slice(), &[b'y'; 100]].concat();
        let longer = RawKey {
            parts: [b"req", &tags, b""],
            kind: MetricKind::Counter,
        };
        let mut long_scratch = KeyScratch::default();
        long_scratch.begin(b"req", MetricKind::Counter);
        long_scratch.tag(&[&tags]);
        long_scratch.finish();
        cache.insert(&longer, longer.hash(), long_scratch.as_key(), Scope::Local);
        let hit = cache
            .get(&longer, longer.hash())
            .expect("a hit on the heap");
        assert_eq!((hit.key.key, hit.scope), (long_scratch.key(), Scope::Local));
        assert!(long_scratch.key().len() + 3 + tags.len() > CachedKey::INLINE);
        // a key past MAX_KEY is built every time, never kept
        let long_tags = vec![b'x'; KeyCache::MAX_KEY];
        let long = RawKey {
            parts: [b"req", &long_tags, b""],
            kind: MetricKind::Counter,
        };
        cache.insert(&long, long.hash(), scratch.as_key(), Scope::Default);
        assert!(cache.get(&long, long.hash()).is_none());
        // another type, other tags, a container id, or the same bytes split
        // differently between the parts: each is a miss, even under the same hash
        for other in [
            RawKey {
                kind: MetricKind::Gauge,
                ..raw
            },
            RawKey {
                parts: [b"req", b"b:2,a:2", b""],
                ..raw
            },
            RawKey {
                parts: [b"req", b"b:2,a:1", b"c1"],
                ..raw
            },
            RawKey {
                parts: [b"reqb", b":2,a:1", b""],
                ..raw
            },
        ] {
            assert!(cache.get(&other, hash).is_none());
            assert!(cache.get(&other, other.hash()).is_none());
        }
    }

    #[test]
    fn the_pool_gives_back_emptied_batches_and_keeps_no_oversized_one() {
        let pool = BatchPool::new(2);
        let mut scratch = KeyScratch::default();
        scratch.begin(b"req", MetricKind::Counter);
        scratch.finish();
        let mut sharded = ShardedSamples::new(1);
        for _ in 0..100 {
            sharded.push(&scratch, Scope::Local, 1.0, 1.0, b"member");
        }
        let (_, mut batch) = sharded.drain(&pool).next().expect("a batch");
        batch.epoch = 7;
        let (arena, samples) = (batch.arena.as_ptr(), batch.samples.as_ptr());
        pool.give(batch);
        assert_eq!(pool.len(), 1);
        // the same memory comes back, empty, with its epoch reset
        let again = pool.take(16);
        assert_eq!(
            (again.arena.as_ptr(), again.samples.as_ptr()),
            (arena, samples)
        );
        assert!(again.is_empty() && again.arena.is_empty() && again.epoch == 0);
        assert!(again.samples.capacity() >= 100);
        // an empty pool makes a new batch; a full pool drops what it is given
        assert!(pool.is_empty());
        let fresh = pool.take(16);
        assert!(fresh.samples.capacity() >= 16);
        for _ in 0..3 {
            pool.give(SampleBatch::with_capacity(8));
        }
        assert_eq!(pool.len(), 2);
        // an oversized batch, or one that carried forwarded state, is never kept
        let pool = BatchPool::new(4);
        pool.give(SampleBatch::with_capacity(BatchPool::MAX_SAMPLES + 1));
        let mut imports = ShardedSamples::new(1);
        imports.push_import(&scratch, Scope::Global, Imported::Counter(1.0));
        pool.give(imports.drain(&BatchPool::new(1)).next().expect("a batch").1);
        assert!(pool.is_empty());
        // a small batch given back grows once to the room asked for
        pool.give(SampleBatch::with_capacity(8));
        assert!(pool.take(1000).samples.capacity() >= 1000);
        // a batch sent back by a full queue stays pending; the spare goes to the pool
        let mut sharded = ShardedSamples::new(1);
        sharded.push(&scratch, Scope::Local, 1.0, 1.0, b"");
        assert!(!sharded.send_each(&pool, |_, batch| Err(batch)));
        assert_eq!((sharded.pending(), pool.len()), (1, 1));
        assert!(sharded.send_each(&pool, |_, _| Ok(())));
        assert_eq!(sharded.pending(), 0);
    }

    #[test]
    fn bytes_eq_is_slice_equality() {
        let data = b"checkout.requests.total\0c\0env:production,host:ip-10-0-1";
        for i in 0..data.len() {
            for j in i..data.len() {
                let a = &data[i..j];
                let mut b = a.to_vec();
                assert!(bytes_eq(a, &b));
                for k in 0..b.len() {
                    b[k] ^= 1;
                    assert!(!bytes_eq(a, &b), "{i} {j} {k}");
                    b[k] ^= 1;
                }
                if j < data.len() {
                    assert!(!bytes_eq(a, &data[i..j + 1]));
                }
            }
        }
    }

    #[test]
    fn shards_spread_evenly() {
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            let (_, hash) = key(&format!("m{i}"), MetricKind::Counter, &[]);
            counts[shard_of(hash, 4)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }
}
