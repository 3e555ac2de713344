//! The durable span store (issue 4, first part): batches of valid spans are gathered
//! into blocks (their SSF bytes, each with its trace id) of up to 4 MiB or 250 ms, and
//! each block is one row of a redb table under `data_dir`, one write transaction per
//! block — no row per span or per index entry. The trace index (trace id → block, offset) lives in
//! memory and is rebuilt from the blocks at start, so spans survive a restart.
//! Past `storage.max_bytes` the oldest blocks are evicted. Still to come with issue 4:
//! time-based `retention`, the log index, searches.

//! Spans on disk: batches of valid spans are gathered into blocks (their SSF bytes,
//! each with its trace id) of up to 4 MiB or 250 ms, and each block is one row of a
//! redb table, one write transaction per block: no row per span or per index entry.
//! The trace index (trace id → the spans' places and the few fields searches filter
//! on) lives in memory and is rebuilt from the blocks at start. Blocks older than
//! `retention` (counted from receipt) and, past the byte budget, the oldest blocks are
//! evicted.

use crate::Budget;
use hashbrown::HashMap;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ssfd_engine::SpanBatch;
use ssfd_wire::ids::TraceId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("span_blocks");

/// Every block starts with this, then its receipt time (unix ns, u64 LE).
const BLOCK_MAGIC: &[u8; 4] = b"SSB1";
const HEADER: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("span store: {0}")]
    Database(String),
    #[error("span store: data_dir is nearly full; the block waits for room")]
    DiskFull,
}

pub(crate) fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Where one span is, and what searches filter on.
#[derive(Clone, Copy, Debug)]
struct SpanRef {
    block: u64,
    offset: u32,
    len: u32,
    id: i64,
    parent: i64,
    start: i64,
    end: i64,
    service: u32,
    name: u32,
    error: bool,
    /// `parent_id` 0 or `id == trace_id` (SPEC 5's root candidates).
    root: bool,
    /// A 64-bit Bloom filter of the span's `key:value` tags (two bits per tag), so a
    /// tag search reads only the spans that may match.
    tag_bloom: u64,
}

use ssfd_engine::span::{SpanRecord, tag_bits};

/// What the index keeps of one span: from its ingest record, or, when the index is
/// rebuilt at start, from its bytes.
struct Facts<'a> {
    trace_id: TraceId,
    id: i64,
    parent_id: i64,
    start: i64,
    end: i64,
    error: bool,
    service: &'a str,
    name: &'a str,
    tag_bloom: u64,
}

impl<'a> Facts<'a> {
    fn of_record(record: &SpanRecord<'a>) -> Facts<'a> {
        let entry = record.entry;
        Facts {
            trace_id: entry.trace_id,
            id: entry.id,
            parent_id: entry.parent_id,
            start: entry.start_timestamp,
            end: entry.end_timestamp,
            error: entry.error,
            service: record.service,
            name: record.name,
            tag_bloom: entry.tag_bloom,
        }
    }

    fn of_view(view: &ssfd_wire::ssf_view::SpanView<'a>) -> Facts<'a> {
        Facts {
            trace_id: view.full_trace_id(),
            id: view.id,
            parent_id: view.parent_id,
            start: view.start_timestamp,
            end: view.end_timestamp,
            error: view.error,
            service: view.service,
            name: view.normalized_name(),
            tag_bloom: ssfd_engine::span::tag_bloom(view),
        }
    }
}

#[derive(Debug, Default)]
struct TraceEntry {
    /// The earliest span start: the key of [`Index::order`].
    start: i64,
    refs: Vec<SpanRef>,
}

/// What a trace search can rule out without reading a trace's spans: Bloom bits of
/// its services, span names and (service, name) pairs, its span durations' range,
/// whether it has error and non-error spans, and the union of its spans' tag blooms.
/// It sits beside the trace in [`Index::order`], so a scan reads it in order.
#[derive(Clone, Copy, Debug)]
struct TraceFilter {
    services: u64,
    names: u64,
    pairs: u64,
    tags: u64,
    min_duration: i64,
    max_duration: i64,
    errors: bool,
    ok: bool,
}

impl TraceFilter {
    const EMPTY: TraceFilter = TraceFilter {
        services: 0,
        names: 0,
        pairs: 0,
        tags: 0,
        min_duration: i64::MAX,
        max_duration: i64::MIN,
        errors: false,
        ok: false,
    };

    fn add(&mut self, span: &SpanRef) {
        self.services |= bit(span.service as u64);
        self.names |= bit(span.name as u64);
        self.pairs |= pair_bit(span.service, span.name);
        self.tags |= span.tag_bloom;
        let duration = span.end - span.start;
        self.min_duration = self.min_duration.min(duration);
        self.max_duration = self.max_duration.max(duration);
        self.errors |= span.error;
        self.ok |= !span.error;
    }

    fn of(refs: &[SpanRef]) -> TraceFilter {
        let mut filter = TraceFilter::EMPTY;
        for span in refs {
            filter.add(span);
        }
        filter
    }
}

/// One bit of 64 for an interned id.
fn bit(id: u64) -> u64 {
    1 << (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

fn pair_bit(service: u32, name: u32) -> u64 {
    bit((u64::from(service) << 32) | u64::from(name))
}

/// A block's bookkeeping.
#[derive(Debug)]
struct BlockInfo {
    bytes: u64,
    received_ns: i64,
    traces: Vec<TraceId>,
}

#[derive(Debug, Default)]
struct Index {
    traces: HashMap<TraceId, TraceEntry>,
    /// (trace start, trace id), for newest-first searches.
    order: BTreeMap<(i64, TraceId), TraceFilter>,
    /// The block being filled (id `next_block`), not yet written, and when it started.
    pending: Vec<u8>,
    pending_traces: Vec<TraceId>,
    pending_since: Option<std::time::Instant>,
    pending_received: i64,
    blocks: BTreeMap<u64, BlockInfo>,
    bytes: u64,
    next_block: u64,
    /// service → its span names (operations), for `/api/v1/services`.
    services: BTreeMap<String, BTreeSet<String>>,
    /// Interned service and span names.
    strings: Vec<String>,
    string_ids: HashMap<String, u32>,
    /// (service, name) pairs already in `services`.
    known_operations: hashbrown::HashSet<(u32, u32)>,
    /// Per [`MAP_BUCKET_NS`] of trace start, the number of the index's last change to
    /// its traces: the service map's kept sums of a bucket are good while it holds.
    /// Numbers come from one counter, so a bucket forgotten and made again never
    /// repeats a number its kept sums were made at.
    map_versions: BTreeMap<i64, u64>,
    map_changed: u64,
}

impl Index {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.string_ids.get(text) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(text.to_string());
        self.string_ids.insert(text.to_string(), id);
        id
    }

    /// Indexes one span found at (`block`, `offset`), `len` bytes long.
    fn add(&mut self, block: u64, offset: u32, len: u32, span: &Facts<'_>) -> TraceId {
        let trace_id = span.trace_id;
        let name = span.name;
        let service = self.intern(span.service);
        let name_id = self.intern(name);
        if self.known_operations.insert((service, name_id)) {
            self.services
                .entry(span.service.to_string())
                .or_default()
                .insert(name.to_string());
        }
        let span_ref = SpanRef {
            block,
            offset,
            len,
            id: span.id,
            parent: span.parent_id,
            start: span.start,
            end: span.end,
            service,
            name: name_id,
            error: span.error,
            root: span.parent_id == 0 || span.id == trace_id.low(),
            tag_bloom: span.tag_bloom,
        };
        let entry = self.traces.entry(trace_id).or_insert_with(|| TraceEntry {
            start: i64::MAX,
            refs: Vec::new(),
        });
        if entry.start != i64::MAX && span_ref.start < entry.start {
            // the trace leaves its old bucket of the service map
            self.map_changed += 1;
            self.map_versions
                .insert(map_bucket(entry.start), self.map_changed);
        }
        self.map_changed += 1;
        self.map_versions.insert(
            map_bucket(span_ref.start.min(entry.start)),
            self.map_changed,
        );
        let filter = if span_ref.start < entry.start {
            let filter = match entry.start {
                i64::MAX => TraceFilter::EMPTY,
                old => self
                    .order
                    .remove(&(old, trace_id))
                    .unwrap_or(TraceFilter::EMPTY),
            };
            entry.start = span_ref.start;
            self.order.entry((entry.start, trace_id)).or_insert(filter)
        } else {
            self.order
                .entry((entry.start, trace_id))
                .or_insert(TraceFilter::EMPTY)
        };
        filter.add(&span_ref);
        entry.refs.push(span_ref);
        trace_id
    }

    /// Forgets the spans of `block`.
    fn evict(&mut self, block: u64, traces: &[TraceId]) {
        for &trace in traces {
            let Some(entry) = self.traces.get_mut(&trace) else {
                continue;
            };
            entry.refs.retain(|r| r.block != block);
            self.map_changed += 1;
            self.map_versions
                .insert(map_bucket(entry.start), self.map_changed);
            self.order.remove(&(entry.start, trace));
            match entry.refs.iter().map(|r| r.start).min() {
                Some(start) => {
                    entry.start = start;
                    self.map_changed += 1;
                    self.map_versions
                        .insert(map_bucket(start), self.map_changed);
                    self.order
                        .insert((start, trace), TraceFilter::of(&entry.refs));
                }
                None => {
                    self.traces.remove(&trace);
                }
            }
        }
        // a bucket left without traces forgets its version (and so its kept sums)
        let emptied: Vec<i64> = self
            .map_versions
            .keys()
            .copied()
            .filter(|&bucket| {
                let range = (
                    std::ops::Bound::Included((bucket, TraceId(0))),
                    std::ops::Bound::Excluded((bucket + MAP_BUCKET_NS, TraceId(0))),
                );
                self.order.range(range).next().is_none()
            })
            .collect();
        for bucket in emptied {
            self.map_versions.remove(&bucket);
        }
    }
}

/// The service map is summed per this much of trace start (10 minutes).
const MAP_BUCKET_NS: i64 = 600_000_000_000;

fn map_bucket(start_ns: i64) -> i64 {
    start_ns.div_euclid(MAP_BUCKET_NS) * MAP_BUCKET_NS
}

/// One edge's calls: counts, and durations in a sparse histogram of 16 buckets per
/// power of two, each bucket with its count and smallest duration.
#[derive(Clone, Debug, Default)]
struct EdgeSum {
    calls: u64,
    errors: u64,
    durations: BTreeMap<u16, (u64, i64)>,
}

type EdgeSums = BTreeMap<(u32, u32), EdgeSum>;

impl EdgeSum {
    fn add(&mut self, error: bool, duration_ns: i64) {
        self.calls += 1;
        self.errors += u64::from(error);
        let bucket = ((duration_ns.max(1) as f64).log2() * 16.0) as u16;
        let slot = self.durations.entry(bucket).or_insert((0, i64::MAX));
        slot.0 += 1;
        slot.1 = slot.1.min(duration_ns);
    }

    fn merge(&mut self, other: &EdgeSum) {
        self.calls += other.calls;
        self.errors += other.errors;
        for (bucket, (count, least)) in &other.durations {
            let slot = self.durations.entry(*bucket).or_insert((0, i64::MAX));
            slot.0 += count;
            slot.1 = slot.1.min(*least);
        }
    }

    /// The smallest duration in the bucket that holds rank ⌈q·calls⌉.
    fn quantile(&self, q: f64) -> i64 {
        let rank = ((q * self.calls as f64).ceil() as u64).clamp(1, self.calls.max(1));
        let mut seen = 0;
        for (count, least) in self.durations.values() {
            seen += count;
            if seen >= rank {
                return *least;
            }
        }
        0
    }
}

/// Adds the calls of the traces that start in `[start_ns, end_ns)` to `sums`.
fn sum_edges(index: &Index, start_ns: i64, end_ns: i64, sums: &mut EdgeSums) {
    if start_ns >= end_ns {
        return;
    }
    let range = (
        std::ops::Bound::Included((start_ns, TraceId(0))),
        std::ops::Bound::Excluded((end_ns, TraceId(0))),
    );
    let mut last: HashMap<i64, &SpanRef> = HashMap::new();
    for &(_, trace_id) in index.order.range(range).map(|(key, _)| key) {
        let Some(entry) = index.traces.get(&trace_id) else {
            continue;
        };
        // a span id sent twice keeps its last arrival (SPEC 5)
        last.clear();
        for span in &entry.refs {
            last.insert(span.id, span);
        }
        for child in last.values() {
            let Some(parent) = (child.parent != 0 && child.parent != child.id)
                .then(|| last.get(&child.parent))
                .flatten()
            else {
                continue;
            };
            if parent.service == child.service {
                continue;
            }
            sums.entry((parent.service, child.service))
                .or_default()
                .add(child.error, child.end - child.start);
        }
    }
}

/// True when a span of service `parent` is the parent of a span of service `child` in
/// `refs` (each span id's last arrival), as [`SpanStore::dependencies`] counts edges.
fn makes_edge(refs: &[SpanRef], parent: u32, child: u32) -> bool {
    if parent == child {
        // calls within a service are no edge of the map
        return false;
    }
    let mut last: HashMap<i64, &SpanRef> = HashMap::with_capacity(refs.len());
    for span in refs {
        last.insert(span.id, span);
    }
    last.values().any(|span| {
        span.service == child
            && span.parent != 0
            && span.parent != span.id
            && last.get(&span.parent).is_some_and(|p| p.service == parent)
    })
}

/// A trace search (SPEC 6 `GET /api/v1/traces`): a trace matches when one of its
/// spans meets every span filter and the trace starts in `[start, end)`.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub name: Option<String>,
    /// `key:value` (or a bare key, whose value is empty).
    pub tags: Vec<(String, String)>,
    pub error: Option<bool>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub limit: usize,
    /// `(parent, child)`: only traces where a span of `parent` is the parent of a span
    /// of `child` (the traces that made a service-map edge).
    pub edge: Option<(String, String)>,
}

/// One edge of the service map (SPEC 6 `GET /api/v1/dependencies`): calls from spans
/// of `parent` to child spans of `child`, a different service.
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    pub call_count: u64,
    /// Child spans with `error`.
    pub error_count: u64,
    /// The child spans' duration quantiles (nearest rank).
    pub p50_ns: i64,
    pub p99_ns: i64,
}

/// One search hit.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub root_service: Option<String>,
    pub root_name: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub span_count: usize,
    pub error_count: usize,
    pub services: Vec<String>,
}

/// Spans on disk, found by trace id or searched by span fields.
pub struct SpanStore {
    db: Database,
    index: RwLock<Index>,
    budget: Arc<Budget>,
    retention: Duration,
    /// When the last fsync-ing commit happened.
    last_durable: std::sync::Mutex<std::time::Instant>,
    /// Spans were dropped for a full disk since the last [`SpanStore::take_lost`].
    lost: std::sync::atomic::AtomicBool,
    /// The service map's sums per whole bucket, with the bucket's version then.
    map_cache: std::sync::Mutex<HashMap<i64, (u64, EdgeSums)>>,
}

/// A block is written once it holds this many bytes or is this old: one redb
/// transaction per block, not per batch.
const BLOCK_BYTES: usize = (4 << 20) - 4096;
const BLOCK_AGE: Duration = Duration::from_millis(250);

/// Commits are made durable (fsync) at most this often; in between they are
/// `Durability::None`, so a batch costs no fsync. A clean shutdown syncs
/// ([`SpanStore::sync`]); crash safety for acknowledged data is the write-ahead log of
/// issue 7.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Appends per span `[trace_id: i64 LE][len: u32 LE][bytes]`: the trace id's low half
/// (the whole id is in the span's bytes, which the index reads at start).
fn encode_into(spans: &SpanBatch, block: &mut Vec<u8>) {
    for (entry, bytes) in spans.iter() {
        block.extend_from_slice(&entry.trace_id.low().to_le_bytes());
        block.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        block.extend_from_slice(bytes);
    }
}

fn block_header(received_ns: i64) -> Vec<u8> {
    let mut block = Vec::with_capacity(HEADER);
    block.extend_from_slice(BLOCK_MAGIC);
    block.extend_from_slice(&(received_ns as u64).to_le_bytes());
    block
}

/// (receipt time, then (trace id, offset of the span bytes, their length) of every
/// span) of a block; the records stop at the first malformed one.
fn decode(block: &[u8]) -> (i64, Vec<(i64, u32, u32)>) {
    let mut out = Vec::new();
    if block.len() < HEADER || &block[..4] != BLOCK_MAGIC {
        return (0, out);
    }
    let received = u64::from_le_bytes(block[4..12].try_into().expect("8 bytes")) as i64;
    let mut position = HEADER;
    while position + 12 <= block.len() {
        let trace_id =
            i64::from_le_bytes(block[position..position + 8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(
            block[position + 8..position + 12]
                .try_into()
                .expect("4 bytes"),
        );
        let start = position + 12;
        if start + len as usize > block.len() {
            break;
        }
        out.push((trace_id, start as u32, len));
        position = start + len as usize;
    }
    (received, out)
}

impl SpanStore {
    /// Opens (or creates) the store in `dir`, rebuilding the trace index from disk.
    pub fn open(
        dir: &Path,
        budget: Arc<Budget>,
        retention: Duration,
    ) -> Result<SpanStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(db_error)?;
        let db = Database::create(dir.join("spans.redb")).map_err(db_error)?;
        let mut index = Index::default();
        {
            let write = db.begin_write().map_err(db_error)?;
            write.open_table(BLOCKS).map_err(db_error)?;
            write.commit().map_err(db_error)?;
        }
        let read = db.begin_read().map_err(db_error)?;
        let table = read.open_table(BLOCKS).map_err(db_error)?;
        for row in table.iter().map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            let block = key.value();
            let bytes = value.value();
            let (received_ns, records) = decode(bytes);
            let mut traces = Vec::with_capacity(records.len());
            for (_, offset, len) in records {
                // at start the index is rebuilt from the spans' bytes
                let Ok(view) = ssfd_wire::ssf_view::SpanView::parse(
                    &bytes[offset as usize..(offset + len) as usize],
                ) else {
                    continue;
                };
                traces.push(index.add(block, offset, len, &Facts::of_view(&view)));
            }
            index.bytes += bytes.len() as u64;
            index.blocks.insert(
                block,
                BlockInfo {
                    bytes: bytes.len() as u64,
                    received_ns,
                    traces,
                },
            );
            index.next_block = index.next_block.max(block + 1);
        }
        drop(table);
        drop(read);
        budget.set_spans(index.bytes);
        ssfd_telemetry::set_store_bytes("spans", index.bytes);
        Ok(SpanStore {
            db,
            index: RwLock::new(index),
            budget,
            retention,
            last_durable: std::sync::Mutex::new(std::time::Instant::now()),
            lost: std::sync::atomic::AtomicBool::new(false),
            map_cache: std::sync::Mutex::default(),
        })
    }

    /// Adds a batch to the block being filled; writes the block when it is full or old.
    /// Spans are readable as soon as this returns. The index takes what it keeps from
    /// the batch's records (read at ingest), not from the spans' bytes.
    pub fn append(&self, spans: &SpanBatch) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut index = self.index.write().map_err(db_error)?;
        // a block stays within BLOCK_BYTES: redb rounds a value's pages up to a power
        // of two, so a block just over 4 MiB would take 8
        let incoming: usize = spans.iter().map(|(_, bytes)| bytes.len() + 12).sum();
        if !index.pending.is_empty() && index.pending.len() + incoming > BLOCK_BYTES {
            if ssfd_engine::disk::low_space() {
                // the pending block is full and cannot be written: the batch is dropped
                // and counted, and the write-ahead log keeps its interval
                self.lost.store(true, std::sync::atomic::Ordering::Relaxed);
                ssfd_telemetry::dropped(
                    ssfd_telemetry::Stage::Store,
                    ssfd_telemetry::DropReason::DiskFull,
                    spans.len() as u64,
                );
                return Ok(());
            }
            self.write_pending(&mut index)?;
        }
        let block = index.next_block;
        if index.pending.is_empty() {
            let received = now_ns();
            index.pending_received = received;
            index.pending.extend_from_slice(&block_header(received));
        }
        let base = index.pending.len();
        let mut pending = std::mem::take(&mut index.pending);
        encode_into(spans, &mut pending);
        let mut position = base;
        for record in spans.records() {
            let offset = (position + 12) as u32;
            let len = record.bytes.len() as u32;
            let trace_id = index.add(block, offset, len, &Facts::of_record(&record));
            index.pending_traces.push(trace_id);
            position += 12 + record.bytes.len();
        }
        index.pending = pending;
        let since = *index
            .pending_since
            .get_or_insert_with(std::time::Instant::now);
        if (index.pending.len() + 64 * 1024 >= BLOCK_BYTES || since.elapsed() >= BLOCK_AGE)
            && !ssfd_engine::disk::low_space()
        {
            self.write_pending(&mut index)?;
        }
        Ok(())
    }

    /// Writes the block being filled, then evicts blocks past `retention` and, while
    /// over the budget, the oldest.
    fn write_pending(&self, index: &mut Index) -> Result<(), StoreError> {
        self.write(index, true)
    }

    /// Writes the block being filled when `write_block`, then evicts.
    fn write(&self, index: &mut Index, write_block: bool) -> Result<(), StoreError> {
        if write_block && !index.pending.is_empty() && ssfd_engine::disk::low_space() {
            // a nearly full data_dir: the block stays pending (and readable) until there
            // is room; redb never meets ENOSPC
            return Err(StoreError::DiskFull);
        }
        let mut write = self.db.begin_write().map_err(db_error)?;
        let durable = self.last_durable.lock().map(|mut last| {
            let due = last.elapsed() >= SYNC_EVERY;
            if due {
                *last = std::time::Instant::now();
            }
            due
        });
        if !durable.unwrap_or(true) {
            write
                .set_durability(redb::Durability::None)
                .map_err(db_error)?;
        }
        let block = index.next_block;
        let block_bytes = if write_block {
            std::mem::take(&mut index.pending)
        } else {
            Vec::new()
        };
        let written = !block_bytes.is_empty();
        {
            let mut table = write.open_table(BLOCKS).map_err(db_error)?;
            if written {
                table
                    .insert(block, block_bytes.as_slice())
                    .map_err(db_error)?;
                index.bytes += block_bytes.len() as u64;
                let traces = std::mem::take(&mut index.pending_traces);
                index.blocks.insert(
                    block,
                    BlockInfo {
                        bytes: block_bytes.len() as u64,
                        received_ns: index.pending_received,
                        traces,
                    },
                );
                index.next_block = block + 1;
                index.pending_since = None;
            }
            let expired_before = now_ns().saturating_sub(self.retention.as_nanos() as i64);
            while let Some((&oldest, info)) = index.blocks.iter().next() {
                let expired = info.received_ns < expired_before;
                if !expired && !self.budget.spans_over(index.bytes) {
                    break;
                }
                let info = index.blocks.remove(&oldest).expect("present");
                table.remove(oldest).map_err(db_error)?;
                index.bytes -= info.bytes;
                index.evict(oldest, &info.traces);
                // past retention is what was promised; past the budget is a drop
                if !expired {
                    ssfd_telemetry::dropped(
                        ssfd_telemetry::Stage::Store,
                        ssfd_telemetry::DropReason::Overflow,
                        info.traces.len() as u64,
                    );
                }
            }
        }
        write.commit().map_err(db_error)?;
        self.budget.set_spans(index.bytes);
        ssfd_telemetry::set_store_bytes("spans", index.bytes);
        if written {
            // keep the buffer's capacity: a fresh 4 MiB buffer per block costs page faults
            let mut reused = block_bytes;
            reused.clear();
            index.pending = reused;
        }
        Ok(())
    }

    /// Writes the block being filled now (at shutdown, and in tests).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut index = self.index.write().map_err(db_error)?;
        self.write_pending(&mut index)
    }

    /// Writes the block being filled once it is old enough, so quiet spans reach disk,
    /// and applies `retention`.
    pub fn tick(&self) {
        let Ok(mut index) = self.index.write() else {
            return;
        };
        let due = index
            .pending_since
            .is_some_and(|since| since.elapsed() >= BLOCK_AGE);
        let expired_before = now_ns().saturating_sub(self.retention.as_nanos() as i64);
        let expired = index
            .blocks
            .values()
            .next()
            .is_some_and(|oldest| oldest.received_ns < expired_before);
        let due = due && !ssfd_engine::disk::low_space();
        if (due || expired)
            && let Err(error) = self.write(&mut index, due)
        {
            tracing::warn!(%error, "span store write failed");
        }
    }

    /// Services that sent spans, sorted.
    pub fn services(&self) -> Vec<String> {
        self.index
            .read()
            .map(|index| index.services.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A service's span names, sorted; `None` for an unknown service.
    pub fn operations(&self, service: &str) -> Option<Vec<String>> {
        let index = self.index.read().ok()?;
        index
            .services
            .get(service)
            .map(|names| names.iter().cloned().collect())
    }

    /// How many spans of `trace_id` are stored and their bytes, from the index.
    pub fn trace_size(&self, trace_id: TraceId) -> (usize, u64) {
        let Ok(index) = self.index.read() else {
            return (0, 0);
        };
        index.traces.get(&trace_id).map_or((0, 0), |entry| {
            (
                entry.refs.len(),
                entry.refs.iter().map(|r| u64::from(r.len)).sum(),
            )
        })
    }

    /// Every stored span of `trace_id`, as SSF bytes, in arrival order.
    pub fn trace(&self, trace_id: TraceId) -> Result<Vec<Vec<u8>>, StoreError> {
        let (refs, pending_block, pending) = {
            let index = self.index.read().map_err(db_error)?;
            match index.traces.get(&trace_id) {
                Some(entry) => {
                    // copy only this trace's spans out of the block being filled
                    let pending: HashMap<u32, Vec<u8>> = entry
                        .refs
                        .iter()
                        .filter(|r| r.block == index.next_block)
                        .filter_map(|r| {
                            let range = r.offset as usize..(r.offset + r.len) as usize;
                            index
                                .pending
                                .get(range)
                                .map(|bytes| (r.offset, bytes.to_vec()))
                        })
                        .collect();
                    let places: Vec<(u64, u32, u32)> = entry
                        .refs
                        .iter()
                        .map(|r| (r.block, r.offset, r.len))
                        .collect();
                    (places, index.next_block, pending)
                }
                None => return Ok(Vec::new()),
            }
        };
        let mut reader = BlockReader::new(&self.db)?;
        let mut out = Vec::with_capacity(refs.len());
        for (block, offset, len) in refs {
            if block == pending_block {
                if let Some(bytes) = pending.get(&offset) {
                    out.push(bytes.clone());
                }
                continue;
            }
            if let Some(bytes) = reader.span(block, offset, len)? {
                out.push(bytes.to_vec());
            }
        }
        Ok(out)
    }

    /// Newest-first traces matching `query` (SPEC 6), at most `query.limit`.
    pub fn search(&self, query: &TraceQuery) -> Result<Vec<TraceSummary>, StoreError> {
        let index = self.index.read().map_err(db_error)?;
        let lookup = |text: &Option<String>| match text {
            None => Ok(None),
            Some(text) => index.string_ids.get(text).copied().map(Some).ok_or(()),
        };
        let (Ok(service), Ok(name)) = (lookup(&query.service), lookup(&query.name)) else {
            return Ok(Vec::new());
        };
        let edge = match &query.edge {
            None => None,
            Some((parent, child)) => {
                match (index.string_ids.get(parent), index.string_ids.get(child)) {
                    (Some(&parent), Some(&child)) => Some((parent, child)),
                    _ => return Ok(Vec::new()),
                }
            }
        };
        let mut reader = BlockReader::new(&self.db)?;
        let upper = query.end_ns.map_or(std::ops::Bound::Unbounded, |end| {
            std::ops::Bound::Excluded((end, TraceId(0)))
        });
        let lower = query.start_ns.map_or(std::ops::Bound::Unbounded, |start| {
            std::ops::Bound::Included((start, TraceId(0)))
        });
        let tag_bloom = query
            .tags
            .iter()
            .fold(0, |bloom, (key, value)| bloom | tag_bits(key, value));
        let mut out = Vec::new();
        for (&(_, trace_id), filter) in index.order.range((lower, upper)).rev() {
            if out.len() >= query.limit {
                break;
            }
            // rule the trace out by its filter before reading its spans
            if service.is_some_and(|s| filter.services & bit(u64::from(s)) == 0)
                || name.is_some_and(|n| filter.names & bit(u64::from(n)) == 0)
                || matches!((service, name), (Some(s), Some(n)) if filter.pairs & pair_bit(s, n) == 0)
                || filter.tags & tag_bloom != tag_bloom
                || query.error == Some(true) && !filter.errors
                || query.error == Some(false) && !filter.ok
                || query
                    .min_duration_ns
                    .is_some_and(|d| filter.max_duration < d)
                || query
                    .max_duration_ns
                    .is_some_and(|d| filter.min_duration > d)
                || edge.is_some_and(|(p, c)| {
                    filter.services & bit(u64::from(p)) == 0
                        || filter.services & bit(u64::from(c)) == 0
                })
            {
                continue;
            }
            let entry = &index.traces[&trace_id];
            if let Some((parent, child)) = edge
                && !makes_edge(&entry.refs, parent, child)
            {
                continue;
            }
            // a span id sent twice keeps its last arrival (SPEC 5): an earlier version
            // must not match
            let last: Option<HashMap<i64, usize>> = (entry.refs.len() > 1).then(|| {
                entry
                    .refs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id, i))
                    .collect()
            });
            let mut hit = false;
            for (position, span) in entry.refs.iter().enumerate() {
                if last
                    .as_ref()
                    .is_some_and(|last| last.get(&span.id) != Some(&position))
                {
                    continue;
                }
                let duration = span.end - span.start;
                if service.is_some_and(|s| s != span.service)
                    || name.is_some_and(|n| n != span.name)
                    || query.error.is_some_and(|e| e != span.error)
                    || query.min_duration_ns.is_some_and(|d| duration < d)
                    || query.max_duration_ns.is_some_and(|d| duration > d)
                {
                    continue;
                }
                if span.tag_bloom & tag_bloom != tag_bloom {
                    continue;
                }
                if !query.tags.is_empty() {
                    let bytes = if span.block == index.next_block {
                        index
                            .pending
                            .get(span.offset as usize..(span.offset + span.len) as usize)
                    } else {
                        reader.span(span.block, span.offset, span.len)?
                    };
                    let Some(view) =
                        bytes.and_then(|b| ssfd_wire::ssf_view::SpanView::parse(b).ok())
                    else {
                        continue;
                    };
                    if !query
                        .tags
                        .iter()
                        .all(|(key, value)| has_tag(&view, key, value))
                    {
                        continue;
                    }
                }
                hit = true;
                break;
            }
            if hit {
                out.push(summary(&index, trace_id, entry));
            }
        }
        Ok(out)
    }

    /// The service map of the traces that start in `[start_ns, end_ns)`: each parent →
    /// child call between two services, counted once per stored child span (its last
    /// arrival), whatever order the spans arrived in. Sorted by parent, then child.
    /// Whole [`MAP_BUCKET_NS`] buckets of the window are summed once and kept until one
    /// of their traces changes, so a day's map costs its changed buckets and its two
    /// ends; quantiles come from [`EdgeSum`]'s histogram (within 1/16 of an octave, and
    /// exact when the quantile's bucket holds one duration).
    pub fn dependencies(&self, start_ns: i64, end_ns: i64) -> Result<Vec<Dependency>, StoreError> {
        let index = self.index.read().map_err(db_error)?;
        let mut total = EdgeSums::new();
        let first_full = start_ns.div_euclid(MAP_BUCKET_NS) * MAP_BUCKET_NS
            + if start_ns.rem_euclid(MAP_BUCKET_NS) == 0 {
                0
            } else {
                MAP_BUCKET_NS
            };
        let end_full = end_ns.div_euclid(MAP_BUCKET_NS) * MAP_BUCKET_NS;
        if first_full >= end_full {
            sum_edges(&index, start_ns, end_ns, &mut total);
        } else {
            sum_edges(&index, start_ns, first_full, &mut total);
            sum_edges(&index, end_full, end_ns, &mut total);
            // a writer needs the index's write lock, so no bucket changes while this
            // holds the read lock: what is summed here is what the version says
            let mut cache = self.map_cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|bucket, (version, _)| index.map_versions.get(bucket) == Some(version));
            for (&bucket, &version) in index.map_versions.range(first_full..end_full) {
                if cache
                    .get(&bucket)
                    .is_none_or(|(cached, _)| *cached != version)
                {
                    let mut sums = EdgeSums::new();
                    sum_edges(&index, bucket, bucket + MAP_BUCKET_NS, &mut sums);
                    cache.insert(bucket, (version, sums));
                }
                let Some((_, sums)) = cache.get(&bucket) else {
                    continue;
                };
                for (edge, sum) in sums {
                    total.entry(*edge).or_default().merge(sum);
                }
            }
        }
        let mut out: Vec<Dependency> = total
            .into_iter()
            .map(|((parent, child), sum)| Dependency {
                parent: index.strings[parent as usize].clone(),
                child: index.strings[child as usize].clone(),
                call_count: sum.calls,
                error_count: sum.errors,
                p50_ns: sum.quantile(0.5),
                p99_ns: sum.quantile(0.99),
            })
            .collect();
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        Ok(out)
    }

    /// Writes the block being filled and makes every commit durable (one fsync).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.flush()?;
        let write = self.db.begin_write().map_err(db_error)?;
        write.commit().map_err(db_error)?;
        if let Ok(mut last) = self.last_durable.lock() {
            *last = std::time::Instant::now();
        }
        Ok(())
    }

    /// True when spans were dropped for a full disk since the last call.
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of span blocks kept (written and being filled).
    pub fn bytes(&self) -> u64 {
        self.index
            .read()
            .map_or(0, |index| index.bytes + index.pending.len() as u64)
    }
}

/// A trace's search summary; duplicate span ids count once (the last arrival).
/// A span tag or a resource attribute `key` whose string form is `value` (SPEC 6).
fn has_tag(view: &ssfd_wire::ssf_view::SpanView<'_>, key: &str, value: &str) -> bool {
    view.tag(key) == Some(value)
        || view
            .resource()
            .filter(|(k, _)| *k == key)
            .last()
            .and_then(|(_, v)| v)
            .is_some_and(|v| v.to_tag_text() == value)
}

fn summary(index: &Index, trace_id: TraceId, entry: &TraceEntry) -> TraceSummary {
    let mut last: HashMap<i64, &SpanRef> = HashMap::with_capacity(entry.refs.len());
    for span in &entry.refs {
        last.insert(span.id, span);
    }
    let start = last.values().map(|s| s.start).min().unwrap_or(0);
    let end = last.values().map(|s| s.end).max().unwrap_or(0);
    let root = last
        .values()
        .filter(|s| s.root)
        .min_by_key(|s| (s.start, s.id));
    let services: BTreeSet<&str> = last
        .values()
        .map(|s| index.strings[s.service as usize].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    TraceSummary {
        trace_id,
        root_service: root.map(|s| index.strings[s.service as usize].clone()),
        root_name: root.map(|s| index.strings[s.name as usize].clone()),
        start_ns: start,
        duration_ns: end - start,
        span_count: last.len(),
        error_count: last.values().filter(|s| s.error).count(),
        services: services.into_iter().map(String::from).collect(),
    }
}

/// Reads spans out of written blocks within one read transaction, keeping the last
/// few blocks it opened (a trace's spans often sit in a handful of blocks).
struct BlockReader {
    table: redb::ReadOnlyTable<u64, &'static [u8]>,
    cached: Vec<(u64, redb::AccessGuard<'static, &'static [u8]>)>,
}

/// Blocks a [`BlockReader`] keeps open.
const CACHED_BLOCKS: usize = 16;

impl BlockReader {
    fn new(db: &Database) -> Result<BlockReader, StoreError> {
        let read = db.begin_read().map_err(db_error)?;
        let table = read.open_table(BLOCKS).map_err(db_error)?;
        Ok(BlockReader {
            table,
            cached: Vec::new(),
        })
    }

    fn span(&mut self, block: u64, offset: u32, len: u32) -> Result<Option<&[u8]>, StoreError> {
        let position = match self.cached.iter().position(|(b, _)| *b == block) {
            Some(position) => position,
            None => {
                let Some(guard) = self.table.get(block).map_err(db_error)? else {
                    return Ok(None);
                };
                if self.cached.len() >= CACHED_BLOCKS {
                    self.cached.remove(0);
                }
                self.cached.push((block, guard));
                self.cached.len() - 1
            }
        };
        Ok(self.cached[position]
            .1
            .value()
            .get(offset as usize..(offset + len) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    use ssfd_wire::ssf_view::SpanView;

    fn span(trace_id: i64, id: i64, parent_id: i64, start: i64) -> SsfSpan {
        let mut span = SsfSpan {
            trace_id,
            id,
            parent_id,
            start_timestamp: start,
            end_timestamp: start + 10 * id,
            name: format!("s{id}"),
            service: if id % 2 == 0 { "even" } else { "odd" }.into(),
            error: id % 3 == 0,
            ..Default::default()
        };
        span.tags.insert("mod".into(), (id % 4).to_string());
        span
    }

    fn batch(spans: &[(i64, i64)]) -> SpanBatch {
        let mut batch = SpanBatch::default();
        for &(trace_id, id) in spans {
            let bytes = span(trace_id, id, 0, 1).encode_to_vec();
            batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
        }
        batch
    }

    fn ids(store: &SpanStore, trace: i64) -> Vec<i64> {
        store
            .trace(TraceId::from_parts(0, trace))
            .unwrap()
            .iter()
            .map(|b| SsfSpan::decode(&b[..]).unwrap().id)
            .collect()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_service_map_counts_each_call_once_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        let spanned = |trace: i64, id: i64, parent: i64, service: &str, ms: i64, error: bool| {
            let mut one = span(trace, id, parent, 1_000 + id);
            one.service = service.into();
            one.end_timestamp = one.start_timestamp + ms * 1_000_000;
            one.error = error;
            one.encode_to_vec()
        };
        // trace 1: web → api → db, children first; trace 2: web → api (error), and the
        // api span sent twice (the last arrival counts once); api → api is no edge
        let spans = [
            spanned(1, 3, 2, "db", 5, false),
            spanned(1, 2, 1, "api", 20, false),
            spanned(1, 1, 0, "web", 30, false),
            spanned(2, 12, 11, "api", 40, false),
            spanned(2, 11, 0, "web", 50, false),
            spanned(2, 12, 11, "api", 40, true),
            spanned(2, 13, 12, "api", 1, false),
        ];
        let mut batch = SpanBatch::default();
        for bytes in &spans {
            batch.push(&SpanView::parse(bytes).unwrap(), bytes);
        }
        store.append(&batch).unwrap();
        let map = store.dependencies(0, i64::MAX).unwrap();
        assert_eq!(
            map,
            [
                Dependency {
                    parent: "api".into(),
                    child: "db".into(),
                    call_count: 1,
                    error_count: 0,
                    p50_ns: 5_000_000,
                    p99_ns: 5_000_000,
                },
                Dependency {
                    parent: "web".into(),
                    child: "api".into(),
                    call_count: 2,
                    error_count: 1,
                    p50_ns: 20_000_000,
                    p99_ns: 40_000_000,
                },
            ]
        );
        assert!(
            store.dependencies(0, 1_000).unwrap().is_empty(),
            "by trace start"
        );
        // the traces that made an edge
        let made = |parent: &str, child: &str| -> Vec<i64> {
            let query = TraceQuery {
                limit: 10,
                edge: Some((parent.into(), child.into())),
                ..Default::default()
            };
            let mut ids: Vec<i64> = store
                .search(&query)
                .unwrap()
                .iter()
                .map(|t| t.trace_id.low())
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(made("web", "api"), [1, 2]);
        assert_eq!(made("api", "db"), [1]);
        assert!(
            made("web", "db").is_empty(),
            "both services, no direct call"
        );
        assert!(made("api", "api").is_empty());
        assert!(made("nobody", "db").is_empty());
    }

    #[test]
    fn the_service_map_keeps_whole_buckets_until_their_traces_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        let minute = 60_000_000_000i64;
        let t0 = 1_800_000_000_000_000_000i64 / MAP_BUCKET_NS * MAP_BUCKET_NS;
        let call = |trace: i64, start: i64, child: Option<&str>| {
            let mut one = span(trace, if child.is_some() { 2 } else { 1 }, 0, start);
            if child.is_some() {
                one.parent_id = 1;
            }
            one.service = child.unwrap_or("web").into();
            one.end_timestamp = start + 1_000_000;
            one.encode_to_vec()
        };
        let append = |spans: &[Vec<u8>]| {
            let mut batch = SpanBatch::default();
            for bytes in spans {
                batch.push(&SpanView::parse(bytes).unwrap(), bytes);
            }
            store.append(&batch).unwrap();
        };
        // 30 traces, one every 2 minutes: web → db, across six buckets
        for n in 0..30 {
            let start = t0 + n * 2 * minute;
            append(&[
                call(n + 1, start, None),
                call(n + 1, start + 1_000, Some("db")),
            ]);
        }
        let calls = |start: i64, end: i64| -> u64 {
            store
                .dependencies(start, end)
                .unwrap()
                .iter()
                .map(|d| d.call_count)
                .sum()
        };
        assert_eq!(calls(0, i64::MAX), 30);
        assert_eq!(calls(0, i64::MAX), 30, "from the kept buckets");
        // partial buckets at both ends: traces starting in [t0 + 7m, t0 + 33m)
        assert_eq!(calls(t0 + 7 * minute, t0 + 33 * minute), 13);
        // a late child in an old bucket, and a trace whose earlier root moves it back
        // a bucket: both change what the kept buckets said
        let mut late = span(1, 3, 1, t0 + 5_000);
        late.service = "cache".into();
        append(&[late.encode_to_vec()]);
        assert_eq!(calls(0, i64::MAX), 31);
        append(&[call(30, t0 - minute, None)]);
        let map = store.dependencies(0, i64::MAX).unwrap();
        assert_eq!(map.len(), 2, "{map:?}");
        assert_eq!(calls(t0, i64::MAX), 30, "trace 30 now starts before t0");
        assert_eq!(calls(0, t0), 1);
        assert_eq!(map[1].p50_ns, 1_000_000, "one duration: exact");
    }

    #[test]
    fn traces_with_equal_low_halves_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        let mut batch = SpanBatch::default();
        for (high, id) in [(1u64, 10i64), (2, 20), (0, 30)] {
            let mut one = span(42, id, 0, 1);
            one.trace_id_high = high;
            one.service = format!("svc{high}");
            let bytes = one.encode_to_vec();
            batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
        }
        store.append(&batch).unwrap();
        let ids_of = |high: u64| -> Vec<i64> {
            store
                .trace(TraceId::from_parts(high, 42))
                .unwrap()
                .iter()
                .map(|b| SsfSpan::decode(&b[..]).unwrap().id)
                .collect()
        };
        assert_eq!(ids_of(1), [10]);
        assert_eq!(ids_of(2), [20]);
        assert_eq!(ids_of(0), [30], "the SSF trace of the same low half");
        let found = store
            .search(&TraceQuery {
                service: Some("svc2".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trace_id, TraceId::from_parts(2, 42));
        store.flush().unwrap();
        drop(store);
        let reopened = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        assert_eq!(reopened.trace(TraceId::from_parts(1, 42)).unwrap().len(), 1);
        assert_eq!(reopened.trace(TraceId::from_parts(2, 42)).unwrap().len(), 1);
    }

    #[test]
    fn spans_come_back_by_trace_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
            store.append(&batch(&[(1, 10), (2, 20), (1, 11)])).unwrap();
            store.flush().unwrap();
            store.append(&batch(&[(1, 12)])).unwrap();
            assert_eq!(
                ids(&store, 1),
                [10, 11, 12],
                "written and pending spans together"
            );
            assert_eq!(ids(&store, 2), [20]);
            assert!(ids(&store, 3).is_empty());
            store.sync().unwrap();
        }
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        assert_eq!(ids(&store, 1), [10, 11, 12]);
        assert_eq!(store.services(), ["even", "odd"]);
        assert_eq!(
            store.operations("even"),
            Some(vec!["s10".into(), "s12".into(), "s20".into()])
        );
        assert_eq!(store.operations("nope"), None);
        store.append(&batch(&[(2, 21)])).unwrap();
        assert_eq!(ids(&store, 2), [20, 21]);
    }

    #[test]
    fn oldest_blocks_go_first_past_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = block_header(0);
        encode_into(&batch(&[(1, 1)]), &mut one);
        // the spans differ by a byte or so in size (their service names)
        let budget = one.len() as u64 * 2 + 8;
        let store = SpanStore::open(dir.path(), Budget::new(budget), DAY).unwrap();
        for (trace, id) in [(1, 1), (2, 2), (3, 3)] {
            store.append(&batch(&[(trace, id)])).unwrap();
            store.flush().unwrap();
        }
        assert!(ids(&store, 1).is_empty(), "the oldest block was evicted");
        assert_eq!((ids(&store, 2), ids(&store, 3)), (vec![2], vec![3]));
        assert!(store.bytes() <= budget);
        assert_eq!(
            store
                .search(&TraceQuery {
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn retention_evicts_by_receipt_time() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SpanStore::open(dir.path(), Budget::new(1 << 30), Duration::from_millis(300)).unwrap();
        store.append(&batch(&[(1, 1)])).unwrap();
        store.flush().unwrap();
        store.append(&batch(&[(2, 2)])).unwrap();
        store.flush().unwrap();
        assert_eq!(ids(&store, 1), [1]);
        std::thread::sleep(Duration::from_millis(400));
        store.append(&batch(&[(3, 3)])).unwrap();
        store.tick();
        assert!(
            ids(&store, 1).is_empty() && ids(&store, 2).is_empty(),
            "received before retention"
        );
        assert_eq!(ids(&store, 3), [3], "pending, received later, kept");
    }

    #[test]
    fn the_kept_service_map_forgets_evicted_traces() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SpanStore::open(dir.path(), Budget::new(1 << 30), Duration::from_millis(300)).unwrap();
        let t0 = 1_800_000_000_000_000_000i64 / MAP_BUCKET_NS * MAP_BUCKET_NS;
        let call = |trace: i64| {
            let mut batch = SpanBatch::default();
            // span 1 (odd) calls span 2 (even): one edge per trace
            for one in [span(trace, 1, 0, t0 + trace), span(trace, 2, 1, t0 + trace)] {
                let bytes = one.encode_to_vec();
                batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
            }
            batch
        };
        let calls = || -> u64 {
            store
                .dependencies(0, i64::MAX)
                .unwrap()
                .iter()
                .map(|d| d.call_count)
                .sum()
        };
        store.append(&call(1)).unwrap();
        store.flush().unwrap();
        assert_eq!(calls(), 1, "and kept");
        std::thread::sleep(Duration::from_millis(400));
        store.append(&call(2)).unwrap();
        store.tick();
        assert_eq!(calls(), 1, "trace 1 evicted, trace 2 in the same bucket");
    }

    fn found(store: &SpanStore, edit: impl Fn(&mut TraceQuery)) -> Vec<i64> {
        let mut query = TraceQuery {
            limit: 100,
            ..Default::default()
        };
        edit(&mut query);
        store
            .search(&query)
            .unwrap()
            .iter()
            .map(|s| s.trace_id.low())
            .collect()
    }

    #[test]
    fn search_matches_the_last_arrival_of_a_span() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        // span 3 (an error) arrives again without the error
        let mut first = span(7, 3, 0, 1);
        first.error = true;
        let mut again = first.clone();
        again.error = false;
        let mut batch = SpanBatch::default();
        for version in [&first, &again] {
            let bytes = version.encode_to_vec();
            batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
        }
        store.append(&batch).unwrap();
        assert_eq!(found(&store, |q| q.error = Some(true)), Vec::<i64>::new());
        assert_eq!(found(&store, |q| q.error = Some(false)), [7]);
    }

    #[test]
    fn search_by_span_fields_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SpanStore::open(dir.path(), Budget::new(1 << 30), DAY).unwrap();
        // trace t has a root (id 1, starting at t*100) and children 2..=t+1
        let mut batch = SpanBatch::default();
        for trace in 1..=5i64 {
            for id in 1..=trace + 1 {
                let parent = if id == 1 { 0 } else { 1 };
                let bytes = span(trace, id, parent, trace * 100 + id).encode_to_vec();
                batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
            }
        }
        store.append(&batch).unwrap();
        assert_eq!(found(&store, |_| {}), [5, 4, 3, 2, 1]);
        assert_eq!(found(&store, |q| q.limit = 2), [5, 4]);
        assert_eq!(
            found(&store, |q| q.service = Some("even".into())),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(found(&store, |q| q.name = Some("s5".into())), [5, 4]);
        assert_eq!(
            found(&store, |q| q.name = Some("nothing".into())),
            Vec::<i64>::new()
        );
        assert_eq!(found(&store, |q| q.error = Some(true)), [5, 4, 3, 2]);
        assert_eq!(
            found(&store, |q| q.min_duration_ns = Some(60)),
            [5],
            "inclusive: s6 lasts 60"
        );
        assert_eq!(
            found(&store, |q| q.max_duration_ns = Some(10)),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            found(&store, |q| {
                q.start_ns = Some(200);
                q.end_ns = Some(402);
            }),
            [4, 3, 2],
            "trace start in [start, end)"
        );
        assert_eq!(
            found(&store, |q| q.tags = vec![("mod".into(), "3".into())]),
            [5, 4, 3, 2]
        );
        assert_eq!(
            found(&store, |q| {
                q.tags = vec![("mod".into(), "3".into())];
                q.service = Some("even".into());
            }),
            Vec::<i64>::new(),
            "one span must meet every filter"
        );
        let summary = &store
            .search(&TraceQuery {
                limit: 1,
                ..Default::default()
            })
            .unwrap()[0];
        assert_eq!(
            summary,
            &TraceSummary {
                trace_id: TraceId::from_parts(0, 5),
                root_service: Some("odd".into()),
                root_name: Some("s1".into()),
                start_ns: 501,
                duration_ns: 506 + 60 - 501,
                span_count: 6,
                error_count: 2,
                services: vec!["even".into(), "odd".into()],
            }
        );
    }
}
