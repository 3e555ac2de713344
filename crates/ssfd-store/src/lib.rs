//! The durable span store (issue 4, first part): batches of valid spans are gathered
//! into blocks (their SSF bytes, each with its trace id) of up to 4 MiB or 250 ms, and
//! each block is one row of a redb table under `data_dir`, one write transaction per
//! block — no row per span or per index entry. The trace index (trace id → block, offset) lives in
//! memory and is rebuilt from the blocks at start, so spans survive a restart.
//! Past `storage.max_bytes` the oldest blocks are evicted. Still to come with issue 4:
//! time-based `retention`, the log index, searches.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ssfd_engine::{SpanBatch, SpanSink};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::RwLock;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("span_blocks");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("span store: {0}")]
    Database(String),
}

fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

#[derive(Clone, Copy, Debug)]
struct SpanRef {
    block: u64,
    offset: u32,
    len: u32,
}

#[derive(Debug, Default)]
struct Index {
    traces: HashMap<i64, Vec<SpanRef>>,
    /// The block being filled (id `next_block`), not yet written, and when it started.
    pending: Vec<u8>,
    pending_traces: Vec<i64>,
    pending_since: Option<std::time::Instant>,
    /// block → (bytes, its trace ids), oldest first.
    blocks: BTreeMap<u64, (u64, Vec<i64>)>,
    bytes: u64,
    next_block: u64,
    /// service → its span names (operations), for `/api/v1/services`.
    services: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Index {
    fn note_service(&mut self, span: &[u8]) {
        let Ok(view) = ssfd_wire::ssf_view::SpanView::parse(span) else {
            return;
        };
        let name = view.normalized_name();
        match self.services.get_mut(view.service) {
            Some(names) => {
                if !names.contains(name) {
                    names.insert(name.to_string());
                }
            }
            None => {
                self.services
                    .insert(view.service.to_string(), [name.to_string()].into());
            }
        }
    }
}

/// Spans on disk, found by trace id.
pub struct SpanStore {
    db: Database,
    index: RwLock<Index>,
    max_bytes: u64,
    /// When the last fsync-ing commit happened.
    last_durable: std::sync::Mutex<std::time::Instant>,
}

/// A block is written once it holds this many bytes or is this old: one redb
/// transaction per block, not per batch.
const BLOCK_BYTES: usize = 4 << 20;
const BLOCK_AGE: std::time::Duration = std::time::Duration::from_millis(250);

/// Commits are made durable (fsync) at most this often; in between they are
/// `Durability::None`, so a batch costs no fsync. A clean shutdown syncs
/// ([`SpanStore::sync`]); crash safety for acknowledged data is the write-ahead log of
/// issue 7.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A block: per span `[trace_id: i64 LE][len: u32 LE][bytes]`.
fn encode(spans: &SpanBatch) -> Vec<u8> {
    let mut block = Vec::new();
    for (entry, bytes) in spans.iter() {
        block.extend_from_slice(&entry.trace_id.to_le_bytes());
        block.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        block.extend_from_slice(bytes);
    }
    block
}

/// (trace id, offset of the span bytes, their length) of every span of a block; stops
/// at the first malformed record.
fn decode(block: &[u8]) -> Vec<(i64, u32, u32)> {
    let mut out = Vec::new();
    let mut position = 0usize;
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
    out
}

impl SpanStore {
    /// Opens (or creates) the store in `dir`, rebuilding the trace index from disk.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<SpanStore, StoreError> {
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
            let mut traces = Vec::new();
            for (trace_id, offset, len) in decode(bytes) {
                index
                    .traces
                    .entry(trace_id)
                    .or_default()
                    .push(SpanRef { block, offset, len });
                traces.push(trace_id);
                index.note_service(&bytes[offset as usize..(offset + len) as usize]);
            }
            index.bytes += bytes.len() as u64;
            index.blocks.insert(block, (bytes.len() as u64, traces));
            index.next_block = index.next_block.max(block + 1);
        }
        drop(table);
        drop(read);
        ssfd_telemetry::set_store_bytes("spans", index.bytes);
        Ok(SpanStore {
            db,
            index: RwLock::new(index),
            max_bytes,
            last_durable: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Adds a batch to the block being filled; writes the block when it is full or old.
    /// Spans are readable as soon as this returns.
    pub fn append(&self, spans: &SpanBatch) -> Result<(), StoreError> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut index = self.index.write().map_err(db_error)?;
        let block = index.next_block;
        let encoded = encode(spans);
        let base = index.pending.len() as u32;
        for (trace_id, offset, len) in decode(&encoded) {
            index.traces.entry(trace_id).or_default().push(SpanRef {
                block,
                offset: base + offset,
                len,
            });
            index.pending_traces.push(trace_id);
            index.note_service(&encoded[offset as usize..(offset + len) as usize]);
        }
        index.pending.extend_from_slice(&encoded);
        let since = *index
            .pending_since
            .get_or_insert_with(std::time::Instant::now);
        if index.pending.len() >= BLOCK_BYTES || since.elapsed() >= BLOCK_AGE {
            self.write_pending(&mut index)?;
        }
        Ok(())
    }

    /// Writes the block being filled, evicting the oldest blocks past `max_bytes`.
    fn write_pending(&self, index: &mut Index) -> Result<(), StoreError> {
        if index.pending.is_empty() {
            return Ok(());
        }
        let block = index.next_block;
        let block_bytes = std::mem::take(&mut index.pending);
        let traces = std::mem::take(&mut index.pending_traces);
        index.pending_since = None;
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
        {
            let mut table = write.open_table(BLOCKS).map_err(db_error)?;
            table
                .insert(block, block_bytes.as_slice())
                .map_err(db_error)?;
            while index.bytes + block_bytes.len() as u64 > self.max_bytes {
                let Some((&oldest, _)) = index.blocks.iter().next() else {
                    break;
                };
                let (size, evicted) = index.blocks.remove(&oldest).expect("present");
                table.remove(oldest).map_err(db_error)?;
                index.bytes -= size;
                for trace in evicted {
                    if let Some(refs) = index.traces.get_mut(&trace) {
                        refs.retain(|r| r.block != oldest);
                        if refs.is_empty() {
                            index.traces.remove(&trace);
                        }
                    }
                }
                ssfd_telemetry::dropped(
                    ssfd_telemetry::Stage::Store,
                    ssfd_telemetry::DropReason::Overflow,
                    1,
                );
            }
        }
        write.commit().map_err(db_error)?;
        index.bytes += block_bytes.len() as u64;
        index
            .blocks
            .insert(block, (block_bytes.len() as u64, traces));
        index.next_block = block + 1;
        ssfd_telemetry::set_store_bytes("spans", index.bytes);
        // keep the buffer's capacity: a fresh 4 MiB buffer per block costs page faults
        let mut reused = block_bytes;
        reused.clear();
        index.pending = reused;
        Ok(())
    }

    /// Writes the block being filled now (at shutdown, and in tests).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut index = self.index.write().map_err(db_error)?;
        self.write_pending(&mut index)
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

    /// Every stored span of `trace_id`, as SSF bytes, in arrival order.
    pub fn trace(&self, trace_id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let (refs, pending_block, pending) = {
            let index = self.index.read().map_err(db_error)?;
            match index.traces.get(&trace_id) {
                Some(refs) => {
                    // copy only this trace's spans out of the block being filled
                    let pending: HashMap<u32, Vec<u8>> = refs
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
                    (refs.clone(), index.next_block, pending)
                }
                None => return Ok(Vec::new()),
            }
        };
        let read = self.db.begin_read().map_err(db_error)?;
        let table = read.open_table(BLOCKS).map_err(db_error)?;
        let mut out = Vec::with_capacity(refs.len());
        let mut cached: Option<(u64, Vec<u8>)> = None;
        for span in refs {
            if span.block == pending_block {
                if let Some(bytes) = pending.get(&span.offset) {
                    out.push(bytes.clone());
                }
                continue;
            }
            if cached
                .as_ref()
                .is_none_or(|(block, _)| *block != span.block)
            {
                let Some(value) = table.get(span.block).map_err(db_error)? else {
                    continue;
                };
                cached = Some((span.block, value.value().to_vec()));
            }
            let (_, bytes) = cached.as_ref().expect("cached above");
            if let Some(slice) = bytes.get(span.offset as usize..(span.offset + span.len) as usize)
            {
                out.push(slice.to_vec());
            }
        }
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

    /// Bytes of span blocks kept (written and being filled).
    pub fn bytes(&self) -> u64 {
        self.index
            .read()
            .map_or(0, |index| index.bytes + index.pending.len() as u64)
    }
}

impl SpanSink for SpanStore {
    /// Writes the block being filled once it is old enough, so quiet spans reach disk.
    fn tick(&self) {
        let Ok(mut index) = self.index.write() else {
            return;
        };
        if index
            .pending_since
            .is_some_and(|since| since.elapsed() >= BLOCK_AGE)
            && let Err(error) = self.write_pending(&mut index)
        {
            tracing::warn!(%error, "span store write failed");
        }
    }

    fn append(&self, spans: &SpanBatch) {
        if let Err(error) = SpanStore::append(self, spans) {
            tracing::warn!(%error, "span store write failed");
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Store,
                ssfd_telemetry::DropReason::RetryExhausted,
                spans.len() as u64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    use ssfd_wire::ssf_view::SpanView;

    fn batch(spans: &[(i64, i64)]) -> SpanBatch {
        let mut batch = SpanBatch::default();
        for &(trace_id, id) in spans {
            let bytes = SsfSpan {
                trace_id,
                id,
                start_timestamp: 1,
                end_timestamp: 2,
                name: format!("s{id}"),
                ..Default::default()
            }
            .encode_to_vec();
            batch.push(&SpanView::parse(&bytes).unwrap(), &bytes);
        }
        batch
    }

    fn ids(store: &SpanStore, trace: i64) -> Vec<i64> {
        store
            .trace(trace)
            .unwrap()
            .iter()
            .map(|b| SsfSpan::decode(&b[..]).unwrap().id)
            .collect()
    }

    #[test]
    fn spans_come_back_by_trace_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SpanStore::open(dir.path(), 1 << 30).unwrap();
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
        let store = SpanStore::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(ids(&store, 1), [10, 11, 12]);
        assert_eq!(store.services(), [""], "these test spans have no service");
        assert_eq!(
            store.operations(""),
            Some(vec!["s10".into(), "s11".into(), "s12".into(), "s20".into()])
        );
        assert_eq!(store.operations("nope"), None);
        store.append(&batch(&[(2, 21)])).unwrap();
        assert_eq!(ids(&store, 2), [20, 21]);
    }

    #[test]
    fn oldest_blocks_go_first_past_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(&batch(&[(1, 1)])).len() as u64;
        let store = SpanStore::open(dir.path(), one * 2).unwrap();
        for (trace, id) in [(1, 1), (2, 2), (3, 3)] {
            store.append(&batch(&[(trace, id)])).unwrap();
            store.flush().unwrap();
        }
        assert!(ids(&store, 1).is_empty(), "the oldest block was evicted");
        assert_eq!((ids(&store, 2), ids(&store, 3)), (vec![2], vec![3]));
        assert!(store.bytes() <= one * 2);
    }
}
