//! Log records (SPEC 5) in a tantivy index under `data_dir/logs`: full text on message
//! and name (words and quoted phrases, case-insensitive), filters on service,
//! severity, trace id, tags and time. Records reach one indexer thread through a
//! bounded queue (full: dropped and counted as `stage="index", reason="queue_full"`);
//! it commits at most once a second, so a record is searchable within about a second.
//! Live subscribers (the SSE tail) get each record when it is pushed, before indexing.

use crate::Budget;
use crate::spans::{StoreError, db_error, now_ns};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use ssfd_engine::{LogKind, LogRecord, Severity};
use ssfd_wire::ids::TraceId;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

/// Batches of records waiting for the indexer.
const QUEUE_BATCHES: usize = 4096;
/// The indexer commits (and readers see new records) at most this often.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// The indexer checks retention and the byte budget this often.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// Tokens longer than this are not indexed (tantivy's default analyzer).
const LONGEST_TOKEN: usize = 40;

#[derive(Clone, Copy)]
struct Fields {
    timestamp: Field,
    received: Field,
    service: Field,
    trace_id: Field,
    trace_id_high: Field,
    span_id: Field,
    name: Field,
    message: Field,
    severity: Field,
    tags: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        timestamp: builder.add_i64_field("timestamp_ns", INDEXED | STORED | FAST),
        received: builder.add_i64_field("received_ns", INDEXED | FAST),
        service: builder.add_text_field("service", STRING | STORED),
        // a trace id's two halves (SPEC 5); a record of an SSF trace has high 0
        trace_id: builder.add_i64_field("trace_id", INDEXED | STORED),
        trace_id_high: builder.add_u64_field("trace_id_high", INDEXED | STORED),
        span_id: builder.add_i64_field("span_id", STORED),
        name: builder.add_text_field("name", TEXT | STORED),
        message: builder.add_text_field("message", TEXT | STORED),
        severity: builder.add_text_field("severity", STRING | STORED),
        tags: builder.add_text_field("tags", STRING | STORED),
    };
    (builder.build(), fields)
}

/// The severities of SPEC 5, in order.
const SEVERITY_LABELS: [&str; 7] = [
    "trace", "debug", "info", "warn", "error", "fatal", "unknown",
];

/// Marks a finished copy in the staging directory of [`migrate`].
const MIGRATED: &str = "ssfd-migrated";

/// Finishes a [`migrate`] that a crash cut between its two renames: with `dir` gone,
/// the finished copy takes its place, or else the old index goes back; the copy is
/// then redone by the next open if needed.
fn recover_migration(dir: &Path) -> Result<(), StoreError> {
    let staging = dir.with_extension("migrating");
    let retired = dir.with_extension("retired");
    if !dir.exists() && retired.exists() {
        if staging.join(MIGRATED).exists() {
            std::fs::rename(&staging, dir).map_err(db_error)?;
            let _ = std::fs::remove_file(dir.join(MIGRATED));
        } else {
            std::fs::rename(&retired, dir).map_err(db_error)?;
        }
    }
    if dir.exists() {
        // what is left of a swap that finished, or of a copy that did not
        let _ = std::fs::remove_dir_all(&retired);
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(())
}

/// Copies every record of the index in `dir`, written under an older schema, into a
/// new index of `schema` (stored fields by name, and the receipt time from its fast
/// column), then puts the new index in its place. Runs once, at the first start after
/// an upgrade; a crash midway leaves the old index in place and the copy is redone.
fn migrate(dir: &Path, schema: &Schema) -> Result<Index, StoreError> {
    use tantivy::schema::document::Document;
    let staging = dir.with_extension("migrating");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(db_error)?;
    let old = Index::open_in_dir(dir).map_err(db_error)?;
    let old_schema = old.schema();
    let new = Index::create_in_dir(&staging, schema.clone()).map_err(db_error)?;
    let received = schema.get_field("received_ns").map_err(db_error)?;
    let trace = schema.get_field("trace_id").map_err(db_error)?;
    let high = schema.get_field("trace_id_high").map_err(db_error)?;
    let mut copied = 0u64;
    {
        let mut writer: IndexWriter<TantivyDocument> =
            new.writer_with_num_threads(1, 32 << 20).map_err(db_error)?;
        let reader = old.reader().map_err(db_error)?;
        let searcher = reader.searcher();
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().i64("received_ns").ok();
            let store = segment.get_store_reader(64).map_err(db_error)?;
            for doc_id in segment.doc_ids_alive() {
                let doc: TantivyDocument = store.get(doc_id).map_err(db_error)?;
                let mut copy = TantivyDocument::parse_json(schema, &doc.to_json(&old_schema))
                    .map_err(db_error)?;
                let when = column
                    .as_ref()
                    .and_then(|c| c.first(doc_id))
                    .unwrap_or_else(now_ns);
                copy.add_i64(received, when);
                // an SSF trace id's high half is 0, and searches ask for both halves
                if copy.get_first(trace).is_some() && copy.get_first(high).is_none() {
                    copy.add_u64(high, 0);
                }
                writer.add_document(copy).map_err(db_error)?;
                copied += 1;
            }
        }
        writer.commit().map_err(db_error)?;
        writer.wait_merging_threads().map_err(db_error)?;
    }
    drop(new);
    drop(old);
    // the copy is whole: say so before the swap, so a crash between the two renames
    // is finished by the next start ([`recover_migration`])
    std::fs::write(staging.join(MIGRATED), b"").map_err(db_error)?;
    let retired = dir.with_extension("retired");
    let _ = std::fs::remove_dir_all(&retired);
    std::fs::rename(dir, &retired).map_err(db_error)?;
    std::fs::rename(&staging, dir).map_err(db_error)?;
    let _ = std::fs::remove_file(dir.join(MIGRATED));
    let _ = std::fs::remove_dir_all(&retired);
    tracing::info!(
        records = copied,
        "log index: copied into the 128-bit trace id schema"
    );
    Index::open_in_dir(dir).map_err(db_error)
}

/// Splits text as the index does: runs of alphanumeric characters, lower-cased,
/// without tokens longer than 40 bytes.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() <= LONGEST_TOKEN)
        .map(str::to_lowercase)
        .collect()
}

/// A log search (SPEC 6 `GET /api/v1/logs`).
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// The full-text part: each entry must match; one token is a word, several a
    /// phrase.
    pub terms: Vec<Vec<String>>,
    pub service: Option<String>,
    pub severity: Option<String>,
    pub trace_id: Option<TraceId>,
    /// A second reading of the id the user typed (SPEC 6: digits read as hex first,
    /// then as decimal): searched when `trace_id` finds nothing.
    pub trace_id_fallback: Option<TraceId>,
    /// `key:value` or bare tags, each required.
    pub tags: Vec<String>,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub limit: usize,
}

impl LogQuery {
    /// Reads `q`: words and "quoted phrases" (an unclosed quote runs to the end).
    pub fn set_text(&mut self, q: &str) {
        for (position, part) in q.split('"').enumerate() {
            if position % 2 == 1 {
                let phrase = tokens(part);
                if !phrase.is_empty() {
                    self.terms.push(phrase);
                }
            } else {
                for word in part.split_whitespace() {
                    // `user-42` is the phrase `user 42`, as it was indexed
                    let word = tokens(word);
                    if !word.is_empty() {
                        self.terms.push(word);
                    }
                }
            }
        }
    }

    /// True when `record` matches (the live tail's filter; the index applies the same
    /// rules).
    pub fn matches(&self, record: &LogRecord) -> bool {
        if self.service.as_ref().is_some_and(|s| *s != record.service)
            || self
                .severity
                .as_ref()
                .is_some_and(|s| s != record.severity.label())
            || self.trace_id.is_some_and(|t| {
                Some(t) != record.trace_id
                    && (self.trace_id_fallback.is_none()
                        || self.trace_id_fallback != record.trace_id)
            })
            || self.start_ns.is_some_and(|s| record.timestamp_ns < s)
            || self.end_ns.is_some_and(|e| record.timestamp_ns >= e)
            || !self.tags.iter().all(|t| record.tags.contains(t))
        {
            return false;
        }
        if self.terms.is_empty() {
            return true;
        }
        let message = tokens(&record.message);
        let name = tokens(&record.name);
        let contains = |haystack: &[String], needle: &[String]| {
            haystack
                .windows(needle.len())
                .any(|window| window == needle)
        };
        self.terms
            .iter()
            .all(|term| contains(&message, term) || contains(&name, term))
    }
}

enum Message {
    Records(Vec<LogRecord>, i64),
    Commit(Sender<Result<(), String>>),
    /// Commit, then drop the write-ahead log's token (kept until a commit succeeds).
    Barrier(ssfd_engine::Token),
}

/// The log index.
pub struct LogStore {
    fields: Fields,
    reader: IndexReader,
    queue: Sender<Message>,
    tail: tokio::sync::broadcast::Sender<Arc<LogRecord>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LogStore {
    /// Opens (or creates) the index in `dir` and starts its indexer thread.
    pub fn open(
        dir: &Path,
        budget: Arc<Budget>,
        retention: Duration,
    ) -> Result<LogStore, StoreError> {
        recover_migration(dir)?;
        std::fs::create_dir_all(dir).map_err(db_error)?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(db_error)?;
        let index = match Index::open_or_create(directory, schema.clone()) {
            Ok(index) => index,
            // an index written before trace ids had 128 bits: copied into this schema
            Err(tantivy::TantivyError::SchemaError(_)) => migrate(dir, &schema)?,
            Err(error) => return Err(db_error(error)),
        };
        let writer: IndexWriter<TantivyDocument> = index
            .writer_with_num_threads(1, 32 << 20)
            .map_err(db_error)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(db_error)?;
        let (queue, receiver) = bounded(QUEUE_BATCHES);
        let (tail, _) = tokio::sync::broadcast::channel(4096);
        let indexer = Indexer {
            fields,
            writer,
            reader: Clone::clone(&reader),
            dir: dir.to_path_buf(),
            budget,
            retention,
            uncommitted: 0,
            held: Vec::new(),
            lost: false,
            kept: Vec::new(),
        };
        indexer.measure();
        let thread = std::thread::Builder::new()
            .name("ssfd-log-index".into())
            .spawn(move || indexer.run(receiver))
            .map_err(db_error)?;
        Ok(LogStore {
            fields,
            reader,
            queue,
            tail,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Hands records to the indexer and to live subscribers; never blocks.
    pub fn push(&self, records: Vec<LogRecord>) {
        if records.is_empty() {
            return;
        }
        if self.tail.receiver_count() > 0 {
            for record in &records {
                let _ = self.tail.send(Arc::new(record.clone()));
            }
        }
        let count = records.len() as u64;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Records(records, now_ns()))
        {
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Index,
                ssfd_telemetry::DropReason::QueueFull,
                count,
            );
        }
    }

    /// New records as they are pushed (no backlog).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<LogRecord>> {
        self.tail.subscribe()
    }

    /// Indexes and commits everything queued so far; searches see it on return.
    /// Commits what came before, then drops `token` (see `ssfd_engine::durable`).
    pub fn barrier(&self, token: ssfd_engine::Token) {
        // never dropped for a full queue: the indexer drains it
        let _ = self.queue.send(Message::Barrier(token));
    }

    pub fn commit(&self) -> Result<(), StoreError> {
        let (done, wait) = bounded(1);
        self.queue
            .send(Message::Commit(done))
            .map_err(|_| db_error("the log indexer has stopped"))?;
        wait.recv()
            .map_err(|_| db_error("the log indexer has stopped"))?
            .map_err(db_error)
    }

    /// Newest-first records matching `query`, at most `query.limit`.
    pub fn search(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let found = self.search_once(query)?;
        match query.trace_id_fallback {
            Some(fallback) if found.is_empty() => self.search_once(&LogQuery {
                trace_id: Some(fallback),
                trace_id_fallback: None,
                ..query.clone()
            }),
            _ => Ok(found),
        }
    }

    fn search_once(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let f = self.fields;
        let query_box = self.query_of(query);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(
                &query_box,
                &TopDocs::with_limit(query.limit.max(1))
                    .order_by_fast_field::<i64>("timestamp_ns", Order::Desc),
            )
            .map_err(db_error)?;
        let mut out = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(db_error)?;
            out.push(record_of(&doc, f));
        }
        Ok(out)
    }

    /// How many records match `query` per severity in each of `buckets` buckets of
    /// `step_ns` from `start_ns` (a log view's volume histogram): one count per
    /// severity, from the timestamps' fast field, every match counted (no limit).
    pub fn volume(
        &self,
        query: &LogQuery,
        start_ns: i64,
        step_ns: i64,
        buckets: usize,
    ) -> Result<Vec<(&'static str, Vec<u64>)>, StoreError> {
        let mut out = Vec::new();
        for severity in SEVERITY_LABELS {
            if query.severity.as_deref().is_some_and(|s| s != severity) {
                continue;
            }
            let mut one = query.clone();
            one.severity = Some(severity.to_string());
            one.start_ns = Some(start_ns);
            one.end_ns = Some(start_ns.saturating_add(step_ns.saturating_mul(buckets as i64)));
            let counts = self
                .reader
                .searcher()
                .search(
                    &self.query_of(&one),
                    &tantivy::collector::HistogramCollector::new::<i64>(
                        "timestamp_ns".into(),
                        start_ns,
                        step_ns.max(1) as u64,
                        buckets,
                    ),
                )
                .map_err(db_error)?;
            if counts.iter().any(|&c| c > 0) {
                out.push((severity, counts));
            }
        }
        Ok(out)
    }

    /// The index query of a search's filters.
    fn query_of(&self, query: &LogQuery) -> Box<dyn Query> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let text = |field: Field, term: &[String]| -> Box<dyn Query> {
            if term.len() == 1 {
                Box::new(TermQuery::new(
                    Term::from_field_text(field, &term[0]),
                    IndexRecordOption::Basic,
                ))
            } else {
                Box::new(PhraseQuery::new(
                    term.iter()
                        .map(|t| Term::from_field_text(field, t))
                        .collect(),
                ))
            }
        };
        for term in &query.terms {
            clauses.push((
                Occur::Must,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, text(f.message, term)),
                    (Occur::Should, text(f.name, term)),
                ])),
            ));
        }
        let exact = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
            )
        };
        if let Some(service) = &query.service {
            clauses.push(exact(f.service, service));
        }
        if let Some(severity) = &query.severity {
            clauses.push(exact(f.severity, severity));
        }
        for tag in &query.tags {
            clauses.push(exact(f.tags, tag));
        }
        if let Some(trace_id) = query.trace_id {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_i64(f.trace_id, trace_id.low()),
                    IndexRecordOption::Basic,
                )),
            ));
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.trace_id_high, trace_id.high()),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if query.start_ns.is_some() || query.end_ns.is_some() {
            let lower = query.start_ns.map_or(Bound::Unbounded, |s| {
                Bound::Included(Term::from_field_i64(f.timestamp, s))
            });
            let upper = query.end_ns.map_or(Bound::Unbounded, |e| {
                Bound::Excluded(Term::from_field_i64(f.timestamp, e))
            });
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        }
    }

    /// Bytes of the index files.
    pub fn bytes(&self) -> u64 {
        self.reader
            .searcher()
            .segment_readers()
            .iter()
            .map(|s| s.space_usage().map_or(0, |u| u.total().get_bytes()))
            .sum()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        let _ = self.commit();
        // closing the queue stops the indexer
        let (closed, _) = bounded(1);
        self.queue = closed;
        if let Ok(mut thread) = self.thread.lock()
            && let Some(thread) = thread.take()
        {
            let _ = thread.join();
        }
    }
}

fn record_of(doc: &TantivyDocument, f: Fields) -> LogRecord {
    let text = |field: Field| {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    };
    let severity = Severity::from_label(&text(f.severity));
    LogRecord {
        kind: LogKind::Log,
        timestamp_ns: doc
            .get_first(f.timestamp)
            .and_then(|v| v.as_i64())
            .unwrap_or(0),
        service: text(f.service),
        trace_id: doc
            .get_first(f.trace_id)
            .and_then(|v| v.as_i64())
            .map(|low| {
                let high = doc
                    .get_first(f.trace_id_high)
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                TraceId::from_parts(high, low)
            }),
        span_id: doc.get_first(f.span_id).and_then(|v| v.as_i64()),
        name: text(f.name),
        message: text(f.message),
        severity,
        tags: doc
            .get_all(f.tags)
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
    }
}

struct Indexer {
    fields: Fields,
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    dir: std::path::PathBuf,
    budget: Arc<Budget>,
    retention: Duration,
    uncommitted: usize,
    /// Write-ahead-log tokens waiting for a successful commit.
    held: Vec<ssfd_engine::Token>,
    /// Records were dropped for a full disk since the last barrier: that barrier's
    /// token is kept for good (the log replays its interval at the next start).
    lost: bool,
    kept: Vec<ssfd_engine::Token>,
}

impl Indexer {
    fn run(mut self, receiver: Receiver<Message>) {
        let mut last_commit = Instant::now();
        let mut last_housekeeping = Instant::now();
        loop {
            match receiver.recv_timeout(Duration::from_millis(200)) {
                Ok(Message::Records(records, received)) => self.add(&records, received),
                Ok(Message::Commit(done)) => {
                    let _ = done.send(self.commit());
                    last_commit = Instant::now();
                }
                Ok(Message::Barrier(token)) => {
                    if std::mem::take(&mut self.lost) {
                        self.kept.push(token);
                    } else {
                        self.held.push(token);
                    }
                    if let Err(error) = self.commit() {
                        tracing::warn!(%error, "log index commit failed; retried at the next");
                    }
                    last_commit = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(error) = self.commit() {
                        tracing::warn!(%error, "log index commit at shutdown failed");
                    }
                    return;
                }
            }
            if self.uncommitted > 0 && last_commit.elapsed() >= COMMIT_EVERY {
                if let Err(error) = self.commit() {
                    tracing::warn!(%error, "log index commit failed");
                }
                last_commit = Instant::now();
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                self.housekeeping();
                last_housekeeping = Instant::now();
            }
        }
    }

    fn add(&mut self, records: &[LogRecord], received: i64) {
        if ssfd_engine::disk::low_space() {
            // a nearly full data_dir: tantivy must not meet ENOSPC; the write-ahead log
            // keeps the interval (its token waits in `lost`)
            self.lost = true;
            ssfd_telemetry::dropped(
                ssfd_telemetry::Stage::Index,
                ssfd_telemetry::DropReason::DiskFull,
                records.len() as u64,
            );
            return;
        }
        let f = self.fields;
        for record in records {
            let mut doc = TantivyDocument::default();
            doc.add_i64(f.timestamp, record.timestamp_ns);
            doc.add_i64(f.received, received);
            doc.add_text(f.service, &record.service);
            if let Some(trace_id) = record.trace_id {
                doc.add_i64(f.trace_id, trace_id.low());
                doc.add_u64(f.trace_id_high, trace_id.high());
            }
            if let Some(span_id) = record.span_id {
                doc.add_i64(f.span_id, span_id);
            }
            doc.add_text(f.name, &record.name);
            doc.add_text(f.message, &record.message);
            doc.add_text(f.severity, record.severity.label());
            for tag in &record.tags {
                doc.add_text(f.tags, tag);
            }
            match self.writer.add_document(doc) {
                Ok(_) => self.uncommitted += 1,
                Err(error) => {
                    tracing::warn!(%error, "log index write failed");
                    ssfd_telemetry::dropped(
                        ssfd_telemetry::Stage::Index,
                        ssfd_telemetry::DropReason::RetryExhausted,
                        1,
                    );
                }
            }
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        if ssfd_engine::disk::low_space() {
            return Err("data_dir is nearly full: the commit waits for space".into());
        }
        self.writer.commit().map_err(|e| e.to_string())?;
        self.held.clear();
        self.reader.reload().map_err(|e| e.to_string())?;
        self.uncommitted = 0;
        self.measure();
        Ok(())
    }

    /// The index's bytes on disk, published to the budget and telemetry.
    fn measure(&self) -> u64 {
        let bytes: u64 = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.budget.set_logs(bytes);
        ssfd_telemetry::set_store_bytes("logs", bytes);
        bytes
    }

    /// Deletes records received before `retention`, and past the byte budget the
    /// oldest received tenth of what is left.
    fn housekeeping(&mut self) {
        let f = self.fields;
        let now = now_ns();
        let mut cutoff = now.saturating_sub(self.retention.as_nanos() as i64);
        let bytes = self.measure();
        if self.budget.logs_over(bytes) {
            let searcher = self.reader.searcher();
            let oldest = searcher
                .search(
                    &AllQuery,
                    &TopDocs::with_limit(1).order_by_fast_field::<i64>("received_ns", Order::Asc),
                )
                .ok()
                .and_then(|top| top.first().map(|(received, _)| *received));
            if let Some(oldest) = oldest {
                let evict_to = oldest + (now - oldest) / 10 + 1;
                if evict_to > cutoff {
                    let count = searcher
                        .search(
                            &RangeQuery::new(
                                Bound::Unbounded,
                                Bound::Excluded(Term::from_field_i64(f.received, evict_to)),
                            ),
                            &tantivy::collector::Count,
                        )
                        .unwrap_or(0);
                    ssfd_telemetry::dropped(
                        ssfd_telemetry::Stage::Index,
                        ssfd_telemetry::DropReason::Overflow,
                        count as u64,
                    );
                    cutoff = evict_to;
                }
            }
        }
        let expired = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_i64(f.received, cutoff)),
        );
        if let Err(error) = self.writer.delete_query(Box::new(expired)) {
            tracing::warn!(%error, "log index eviction failed");
            return;
        }
        self.uncommitted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str, service: &str, severity: Severity, ts: i64) -> LogRecord {
        LogRecord {
            kind: LogKind::Log,
            timestamp_ns: ts,
            service: service.into(),
            trace_id: (service == "api").then_some(TraceId::from_parts(0, -7)),
            span_id: (service == "api").then_some(3),
            name: "logger".into(),
            message: message.into(),
            severity,
            tags: vec!["env:prod".into(), "canary".into()],
        }
    }

    fn search(store: &LogStore, q: &str, edit: impl Fn(&mut LogQuery)) -> Vec<String> {
        let mut query = LogQuery {
            limit: 100,
            ..Default::default()
        };
        query.set_text(q);
        edit(&mut query);
        let found = store.search(&query).unwrap();
        // the live filter agrees with the index
        for record in &found {
            assert!(query.matches(record), "{record:?} should match {query:?}");
        }
        found.into_iter().map(|r| r.message).collect()
    }

    #[test]
    fn words_phrases_filters_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            record(
                "Connection refused by upstream db-7",
                "api",
                Severity::Error,
                30,
            ),
            record("user 42 logged in", "web", Severity::Info, 10),
            record(
                "refused: quota exceeded for user 42",
                "web",
                Severity::Warn,
                20,
            ),
        ];
        {
            let store = LogStore::open(dir.path(), Budget::new(1 << 30), Duration::from_secs(3600))
                .unwrap();
            store.push(records.clone());
            store.commit().unwrap();
            assert_eq!(
                search(&store, "", |_| {}),
                [
                    records[0].message.clone(),
                    records[2].message.clone(),
                    records[1].message.clone()
                ],
                "newest first"
            );
            assert_eq!(
                search(&store, "REFUSED", |_| {}).len(),
                2,
                "case-insensitive"
            );
            assert_eq!(
                search(&store, "refused user", |_| {}),
                [records[2].message.clone()]
            );
            assert_eq!(search(&store, "\"user 42\"", |_| {}).len(), 2);
            assert_eq!(
                search(&store, "\"42 user\"", |_| {}).len(),
                0,
                "phrase order"
            );
            assert_eq!(search(&store, "db-7", |_| {}).len(), 1);
            assert_eq!(
                search(&store, "logger", |_| {}).len(),
                3,
                "the name is searched"
            );
            assert_eq!(
                search(&store, "", |q| q.service = Some("web".into())).len(),
                2
            );
            assert_eq!(
                search(&store, "", |q| q.severity = Some("warn".into())).len(),
                1
            );
            assert_eq!(
                search(&store, "", |q| q.trace_id =
                    Some(TraceId::from_parts(0, -7)))
                .len(),
                1
            );
            assert_eq!(
                search(&store, "", |q| q.tags =
                    vec!["env:prod".into(), "canary".into()])
                .len(),
                3
            );
            assert_eq!(
                search(&store, "", |q| q.tags = vec!["env:dev".into()]).len(),
                0
            );
            assert_eq!(
                search(&store, "", |q| {
                    q.start_ns = Some(10);
                    q.end_ns = Some(30);
                })
                .len(),
                2,
                "[start, end)"
            );
            let mut one = LogQuery {
                limit: 1,
                ..Default::default()
            };
            one.set_text("user");
            assert_eq!(store.search(&one).unwrap().len(), 1);
        }
        let store =
            LogStore::open(dir.path(), Budget::new(1 << 30), Duration::from_secs(3600)).unwrap();
        let found = store
            .search(&LogQuery {
                limit: 10,
                trace_id: Some(TraceId::from_parts(0, -7)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1, "records survive a reopen");
        assert_eq!(
            (found[0].span_id, found[0].severity),
            (Some(3), Severity::Error)
        );
        assert_eq!(found[0].tags, ["env:prod", "canary"]);
    }

    #[test]
    fn an_index_of_64_bit_trace_ids_is_copied_into_the_new_schema() {
        use tantivy::schema::{FAST, INDEXED, STORED, STRING, TEXT};
        let dir = tempfile::tempdir().unwrap();
        // the schema before trace ids had 128 bits
        let mut builder = Schema::builder();
        let timestamp = builder.add_i64_field("timestamp_ns", INDEXED | STORED | FAST);
        let received = builder.add_i64_field("received_ns", INDEXED | FAST);
        let service = builder.add_text_field("service", STRING | STORED);
        let trace = builder.add_i64_field("trace_id", INDEXED | STORED);
        let span = builder.add_i64_field("span_id", STORED);
        let name = builder.add_text_field("name", TEXT | STORED);
        let message = builder.add_text_field("message", TEXT | STORED);
        let severity = builder.add_text_field("severity", STRING | STORED);
        builder.add_text_field("tags", STRING | STORED);
        {
            let old = Index::create_in_dir(dir.path(), builder.build()).unwrap();
            let mut writer: IndexWriter<TantivyDocument> =
                old.writer_with_num_threads(1, 15 << 20).unwrap();
            let mut doc = TantivyDocument::default();
            doc.add_i64(timestamp, 5);
            doc.add_i64(received, now_ns());
            doc.add_text(service, "api");
            doc.add_i64(trace, -7);
            doc.add_i64(span, 3);
            doc.add_text(name, "logger");
            doc.add_text(message, "kept across the upgrade");
            doc.add_text(severity, "warn");
            writer.add_document(doc).unwrap();
            writer.commit().unwrap();
        }
        let store =
            LogStore::open(dir.path(), Budget::new(1 << 30), Duration::from_secs(3600)).unwrap();
        let found = store
            .search(&LogQuery {
                limit: 10,
                trace_id: Some(TraceId::from_parts(0, -7)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].message, "kept across the upgrade");
        assert_eq!(found[0].span_id, Some(3));
        assert_eq!(found[0].severity, Severity::Warn);
        // and new records with a high half are told apart from it
        store.push(vec![LogRecord {
            trace_id: Some(TraceId::from_parts(9, -7)),
            ..record("otel record", "api", Severity::Info, 6)
        }]);
        store.commit().unwrap();
        let by_trace = |high| {
            store
                .search(&LogQuery {
                    limit: 10,
                    trace_id: Some(TraceId::from_parts(high, -7)),
                    ..Default::default()
                })
                .unwrap()
                .into_iter()
                .map(|r| r.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(by_trace(9), ["otel record"]);
        assert_eq!(by_trace(0), ["kept across the upgrade"]);
    }

    #[test]
    fn a_migration_cut_between_its_renames_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        {
            let store =
                LogStore::open(&logs, Budget::new(1 << 30), Duration::from_secs(3600)).unwrap();
            store.push(vec![record(
                "kept through the crash",
                "api",
                Severity::Info,
                5,
            )]);
            store.commit().unwrap();
        }
        // the copy finished, the old index was moved aside, then the process died
        let staging = logs.with_extension("migrating");
        let retired = logs.with_extension("retired");
        std::fs::rename(&logs, &staging).unwrap();
        std::fs::write(staging.join(MIGRATED), b"").unwrap();
        std::fs::create_dir_all(&retired).unwrap();
        let store = LogStore::open(&logs, Budget::new(1 << 30), Duration::from_secs(3600)).unwrap();
        assert_eq!(search(&store, "crash", |_| {}), ["kept through the crash"]);
        assert!(!retired.exists() && !staging.exists());
        drop(store);
        // the copy did not finish: the old index comes back
        std::fs::rename(&logs, &retired).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let store = LogStore::open(&logs, Budget::new(1 << 30), Duration::from_secs(3600)).unwrap();
        assert_eq!(search(&store, "crash", |_| {}), ["kept through the crash"]);
        assert!(!retired.exists() && !staging.exists());
    }

    #[test]
    fn retention_deletes_what_was_received_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            LogStore::open(dir.path(), Budget::new(1 << 30), Duration::from_millis(1)).unwrap();
        store.push(vec![record("old news", "web", Severity::Info, 1)]);
        store.commit().unwrap();
        assert_eq!(search(&store, "news", |_| {}).len(), 1);
        std::thread::sleep(HOUSEKEEPING_EVERY + Duration::from_millis(500));
        store.commit().unwrap();
        assert_eq!(
            search(&store, "news", |_| {}).len(),
            0,
            "expired by retention"
        );
    }

    #[test]
    fn past_the_budget_the_oldest_received_go_first() {
        let dir = tempfile::tempdir().unwrap();
        // a budget the first commit already exceeds, with no spans stored
        let store = LogStore::open(dir.path(), Budget::new(1), Duration::from_secs(3600)).unwrap();
        store.push(vec![record("early bird", "web", Severity::Info, 1)]);
        store.commit().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        store.push(vec![record("late comer", "web", Severity::Info, 2)]);
        store.commit().unwrap();
        std::thread::sleep(HOUSEKEEPING_EVERY + Duration::from_millis(500));
        store.commit().unwrap();
        assert_eq!(
            search(&store, "", |_| {}),
            ["late comer"],
            "the oldest received went"
        );
    }

    #[test]
    fn the_live_filter_reads_queries_like_the_index() {
        let mut query = LogQuery::default();
        query.set_text("Refused \"user 42\" unclosed \"quote here");
        assert_eq!(
            query.terms,
            vec![
                vec!["refused".to_string()],
                vec!["user".into(), "42".into()],
                vec!["unclosed".into()],
                vec!["quote".into(), "here".into()]
            ]
        );
        assert!(!query.matches(&record("refused user 42", "web", Severity::Info, 1)));
        assert!(query.matches(&record(
            "refused user 42 unclosed quote here",
            "web",
            Severity::Info,
            1
        )));
    }
}
