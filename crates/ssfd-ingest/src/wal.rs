//! The write-ahead log (SPEC 7): every durable request (gRPC `SendSpan`, `SendSpans`,
//! `SendPacket`, `SendMetrics*`, OTLP over gRPC and HTTP) is appended here and
//! acknowledged only once its record is on disk.
//!
//! Layout: `data_dir/wal/<segment>.wal`, each file the magic `SSFDWAL1` then records
//! `[length u32 LE][crc32 u32 LE][kind u8][payload]`, where `length` counts kind and
//! payload and the CRC covers both. One writer thread owns the files: it takes every
//! append that is waiting, writes them with one `writev`, `fdatasync`s once (group
//! commit), then wakes their callers.
//!
//! Segments follow intervals (`ssfd_engine::durable`): the flusher rotates the log with
//! intake paused and gets two tokens for the closed segment, one for its metrics (held
//! by every sink's copy of the interval) and one for its spans and logs (held by the
//! stores until committed). A dropped token writes a [`Kind::Delivered`] marker; a
//! segment with both parts delivered is deleted (oldest first: markers live in later
//! segments). At start the segments left by a crash are replayed ([`replay`]) into the
//! pipeline (stores and the open interval), without the parts their markers say were
//! delivered, and deleted with the first interval's segment.
//!
//! A full disk: a failed write is cut back to the last whole record and retried every
//! 250 ms, so callers already waiting wait longer (backpressure); while it fails, new
//! unary requests are refused (`UNAVAILABLE`, counted in `ssfd_refused_total`; the
//! failed writes in `ssfd_wal_write_errors_total`) and streams wait. Nothing already
//! acknowledged is touched.

use crossbeam_channel::{Receiver, Sender, unbounded};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const MAGIC: &[u8; 8] = b"SSFDWAL1";
/// A record longer than this is corrupt (requests are capped far below it).
const MAX_RECORD: usize = 256 << 20;
/// Appends written together at most (bytes) before one sync.
const GROUP_BYTES: usize = 16 << 20;

/// What a record holds; replay sends each through its listener's path again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// SSF spans (`SendSpan`, `SendSpans`): a sequence of `[len u32 LE][span]`.
    Spans = 1,
    /// Spans a local forwarded (their metrics were taken there).
    ForwardedSpans = 2,
    /// A DogStatsD packet (`SendPacket`).
    StatsdPacket = 3,
    /// A `forwardrpc.MetricList` (`SendMetrics`, `SendMetricsV2`).
    ForwardMetrics = 4,
    /// OTLP export requests, protobuf.
    OtlpTraces = 5,
    OtlpLogs = 6,
    OtlpMetrics = 7,
    /// A part of an earlier segment was delivered: `[segment u64 LE][part u8]`.
    Delivered = 8,
    /// Log records a local forwarded: a sequence of `[len u32 LE][ssfd.v1.LogRecord]`.
    ForwardedLogs = 9,
}

/// The parts of a segment a token covers ([`Kind::Delivered`]).
const METRICS: u8 = 1;
const SPANS: u8 = 2;
const BOTH: u8 = METRICS | SPANS;

impl Kind {
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Spans,
            2 => Kind::ForwardedSpans,
            3 => Kind::StatsdPacket,
            4 => Kind::ForwardMetrics,
            5 => Kind::OtlpTraces,
            6 => Kind::OtlpLogs,
            7 => Kind::OtlpMetrics,
            8 => Kind::Delivered,
            9 => Kind::ForwardedLogs,
            _ => return None,
        })
    }
}

/// Appends SSF spans to a [`Kind::Spans`] payload.
pub fn push_span(payload: &mut Vec<u8>, span: &[u8]) {
    payload.extend_from_slice(&(span.len() as u32).to_le_bytes());
    payload.extend_from_slice(span);
}

/// The spans of a [`Kind::Spans`] payload; stops at a truncated entry.
pub fn spans(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        let (length, tail) = rest.split_first_chunk::<4>()?;
        let length = u32::from_le_bytes(*length) as usize;
        if tail.len() < length {
            return None;
        }
        let (span, tail) = tail.split_at(length);
        rest = tail;
        Some(span)
    })
}

/// Bytes before a record's payload: length, CRC and kind.
pub const HEADER: usize = 9;

/// An empty record with room for its header: push spans, then [`Wal::append_record`]
/// frames it in place (no copy of the payload).
pub fn record_buffer() -> Vec<u8> {
    let mut record = Vec::with_capacity(96 << 10);
    record.resize(HEADER, 0);
    record
}

/// Writes the header of a record built in a [`record_buffer`].
fn frame(kind: Kind, record: &mut [u8]) {
    record[8] = kind as u8;
    let crc = crc32fast::hash(&record[8..]);
    let length = (record.len() - 8) as u32;
    record[..4].copy_from_slice(&length.to_le_bytes());
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_record(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + HEADER, 0);
    out.extend_from_slice(payload);
    frame(kind, &mut out[start..]);
}

/// What reading a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub records: u64,
    /// The segment ends in a torn or corrupt record (a crash mid-write); what follows
    /// it is not read.
    pub torn: bool,
}

/// Calls `each` with every whole record of the segment at `path`, in order.
pub fn read_segment(path: &Path, mut each: impl FnMut(Kind, &[u8])) -> std::io::Result<Scan> {
    let mut file = std::io::BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = [0u8; 8];
    let mut read = Scan::default();
    if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        read.torn = true;
        return Ok(read);
    }
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        match read_full(&mut file, &mut header)? {
            0 => return Ok(read),
            8 => {}
            _ => {
                read.torn = true;
                return Ok(read);
            }
        }
        let length = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if length == 0 || length > MAX_RECORD {
            read.torn = true;
            return Ok(read);
        }
        payload.resize(length, 0);
        if file.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            read.torn = true;
            return Ok(read);
        }
        match Kind::from_byte(payload[0]) {
            Some(kind) => each(kind, &payload[1..]),
            None => {
                read.torn = true;
                return Ok(read);
            }
        }
        read.records += 1;
    }
}

/// Reads until `buffer` is full or the end; returns how much was read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// An append on its way to disk.
pub struct Pending(Option<tokio::sync::oneshot::Receiver<()>>);

/// The log could not take the record (the writer stopped).
#[derive(Debug, thiserror::Error)]
#[error("the write-ahead log did not take the request")]
pub struct Failed;

impl Pending {
    /// Nothing to wait for (no log).
    pub fn none() -> Pending {
        Pending(None)
    }

    /// Waits until the record is on disk.
    pub async fn durable(self) -> Result<(), Failed> {
        match self.0 {
            None => Ok(()),
            Some(receiver) => receiver.await.map_err(|_| Failed),
        }
    }
}

enum Op {
    Append(Vec<u8>, tokio::sync::oneshot::Sender<()>),
    /// Close the active segment and open this one.
    Rotate(u64),
    /// A part of this (closed) segment's interval is delivered.
    Done(u64, u8),
    /// Write what is queued and stop.
    Stop,
}

/// The log; see the module comment.
pub struct Wal {
    ops: Sender<Op>,
    next_segment: AtomicU64,
    /// The segment appends go to now (the writer may lag behind by a rotate).
    active: AtomicU64,
    shared: Arc<Shared>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    /// Bytes in every segment file.
    bytes: AtomicU64,
    /// The last write failed (disk full): refuse new unary requests.
    failing: AtomicBool,
    stopping: AtomicBool,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.wal"))
}

fn open_segment(dir: &Path, segment: u64) -> std::io::Result<File> {
    let path = segment_path(dir, segment);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    if file.metadata()?.len() == 0 {
        file.write_all(MAGIC)?;
        file.sync_data()?;
        // the new name must survive a crash too
        if let Ok(parent) = File::open(dir) {
            let _ = parent.sync_all();
        }
    }
    Ok(file)
}

impl Wal {
    /// Opens the log in `dir` and starts its writer. Returns the segments a crash left
    /// behind, oldest first: [`replay`] them before intake opens; they are deleted with
    /// the first interval's segment.
    pub fn open(dir: &Path) -> std::io::Result<(Arc<Wal>, Vec<PathBuf>)> {
        std::fs::create_dir_all(dir)?;
        let mut left: Vec<(u64, PathBuf)> = Vec::new();
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(number) = number {
                bytes += entry.metadata().map_or(0, |m| m.len());
                left.push((number, path));
            }
        }
        left.sort();
        let first = left.last().map_or(0, |(n, _)| n + 1);
        let file = open_segment(dir, first)?;
        bytes += MAGIC.len() as u64;
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(bytes),
            failing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        ssfd_telemetry::set_store_bytes("wal", bytes);
        let (ops, receiver) = unbounded();
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            active: first,
            written: MAGIC.len() as u64,
            active_data: false,
            closed: std::collections::BTreeMap::new(),
            first,
            replayed: left.iter().map(|(_, p)| p.clone()).collect(),
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("ssfd-wal".into())
            .spawn(move || writer.run(&receiver))?;
        Ok((
            Arc::new(Wal {
                ops,
                next_segment: AtomicU64::new(first + 1),
                active: AtomicU64::new(first),
                shared,
                thread: std::sync::Mutex::new(Some(thread)),
            }),
            left.into_iter().map(|(_, p)| p).collect(),
        ))
    }

    /// Queues a record; it is on disk when the returned [`Pending`] resolves. Call with
    /// the pipeline's gate held, right after the request was handed off.
    pub fn append(&self, kind: Kind, payload: &[u8]) -> Pending {
        let mut record = Vec::with_capacity(payload.len() + HEADER);
        encode_record(kind, payload, &mut record);
        self.send(record)
    }

    /// [`Wal::append`] for a record built in a [`record_buffer`].
    pub fn append_record(&self, kind: Kind, mut record: Vec<u8>) -> Pending {
        frame(kind, &mut record);
        self.send(record)
    }

    fn send(&self, record: Vec<u8>) -> Pending {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        match self.ops.send(Op::Append(record, sender)) {
            Ok(()) => Pending(Some(receiver)),
            // the writer is gone: the receiver resolves as failed
            Err(_) => Pending(Some(receiver)),
        }
    }

    /// The last write failed for want of space; new unary requests are refused.
    pub fn failing(&self) -> bool {
        self.shared.failing.load(Relaxed)
    }

    /// Bytes in the log's files.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Relaxed)
    }

    /// Stops the writer after what was queued (at shutdown, after the last flush).
    pub fn close(&self) {
        self.shared.stopping.store(true, Relaxed);
        // dropping our sender is not enough: tokens hold clones
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = self.ops.send(Op::Stop);
            let _ = thread.join();
        }
    }
}

/// What [`replay`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub segments: usize,
    pub records: u64,
    /// Segments whose metrics were delivered before the crash: only their spans and
    /// logs went to the stores again.
    pub spans_only: usize,
    /// Segments that ended in a torn record (a crash mid-write of an unacknowledged
    /// request).
    pub torn: usize,
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".wal")?
        .parse()
        .ok()
}

/// Sends the records of `segments` through their listeners' paths again, waiting for
/// room, with the gate held so that all of it lands in the open interval (whose
/// segment takes the replayed files with it). What a segment's delivery markers say
/// was delivered is not sent again: a segment whose metrics reached every sink gives
/// only its spans and logs to the stores (spans as forwarded: no metrics taken again);
/// one delivered whole is skipped. Call before intake opens.
pub fn replay(
    segments: &[PathBuf],
    pipeline: &ssfd_engine::Pipeline,
    handoff: &crate::handoff::HandoffConfig,
) -> std::io::Result<Replayed> {
    use crate::handoff::Handoff;
    use prost::Message;
    use ssfd_engine::WhenFull;
    use ssfd_telemetry::{Listener, Protocol};
    let mut delivered: std::collections::HashMap<u64, u8> = std::collections::HashMap::new();
    for path in segments {
        read_segment(path, |kind, payload| {
            if kind == Kind::Delivered
                && let Some((segment, part)) = payload.split_first_chunk::<8>()
            {
                *delivered.entry(u64::from_le_bytes(*segment)).or_default() |=
                    part.first().copied().unwrap_or(0);
            }
        })?;
    }
    let _gate = pipeline.gate().enter();
    let stores_only = crate::handoff::HandoffConfig {
        forwarded: true,
        ..handoff.clone()
    };
    let mut replayed = Replayed::default();
    for path in segments {
        let parts = segment_number(path)
            .and_then(|n| delivered.get(&n).copied())
            .unwrap_or(0);
        if parts & METRICS != 0 && parts & SPANS != 0 {
            continue;
        }
        let metrics_delivered = parts & METRICS != 0;
        let config = if metrics_delivered {
            &stores_only
        } else {
            handoff
        };
        let otlp = crate::otlp::OtlpIngest::new(pipeline.clone(), config.clone());
        let plain =
            |listener| Handoff::new(pipeline.clone(), config.clone(), listener, Protocol::Grpc);
        let scan = read_segment(path, |kind, payload| match kind {
            Kind::Spans | Kind::ForwardedSpans => {
                let mut config = config.clone();
                config.forwarded |= kind == Kind::ForwardedSpans;
                let listener = if kind == Kind::ForwardedSpans {
                    Listener::Forward
                } else {
                    Listener::Grpc
                };
                let mut spans_handoff =
                    Handoff::new(pipeline.clone(), config, listener, Protocol::Grpc);
                for span in spans(payload) {
                    let _ = spans_handoff.ssf_packet(span);
                    if spans_handoff.pending() >= 256 {
                        let _ = spans_handoff.flush(WhenFull::Block);
                    }
                }
                let _ = spans_handoff.flush(WhenFull::Block);
            }
            Kind::StatsdPacket if !metrics_delivered => {
                let mut packet = plain(Listener::Grpc);
                packet.statsd_packet(payload);
                let _ = packet.flush(WhenFull::Block);
            }
            Kind::ForwardMetrics if !metrics_delivered => {
                if let Ok(list) = ssfd_wire::forwardrpc::MetricList::decode(payload) {
                    let mut forward = plain(Listener::Forward);
                    for metric in &list.metrics {
                        let _ = forward.forwarded_metric(metric);
                    }
                    let _ = forward.flush(WhenFull::Block);
                }
            }
            Kind::OtlpTraces => {
                if let Ok(request) = Message::decode(payload) {
                    let _ = otlp.hand_off_traces(&request, Protocol::Grpc, WhenFull::Block);
                }
            }
            Kind::OtlpLogs => {
                if let Ok(request) = Message::decode(payload) {
                    let _ = otlp.hand_off_logs(&request, Protocol::Grpc, WhenFull::Block);
                }
            }
            Kind::ForwardedLogs => {
                let mut config = config.clone();
                config.forwarded = true;
                let mut records =
                    Handoff::new(pipeline.clone(), config, Listener::Forward, Protocol::Grpc);
                for record in spans(payload) {
                    if let Ok(record) = ssfd_wire::ssfd::v1::LogRecord::decode(record) {
                        records.log_record(ssfd_engine::LogRecord::from_wire(record));
                    }
                }
                let _ = records.flush(WhenFull::Block);
            }
            Kind::OtlpMetrics if !metrics_delivered => {
                if let Ok(request) = Message::decode(payload) {
                    let _ = otlp.hand_off_metrics(&request, Protocol::Grpc, WhenFull::Block);
                }
            }
            _ => {}
        })?;
        replayed.segments += 1;
        replayed.records += scan.records;
        replayed.spans_only += usize::from(metrics_delivered);
        replayed.torn += usize::from(scan.torn);
    }
    Ok(replayed)
}

/// The durable paths' view of the log (none: acknowledged on hand-off).
#[derive(Clone, Default)]
pub struct Durability(pub Option<Arc<Wal>>);

impl Durability {
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// [`Durability::append`] for a record built in a [`record_buffer`].
    pub fn append_record(&self, kind: Kind, record: Vec<u8>) -> Pending {
        match &self.0 {
            Some(wal) => wal.append_record(kind, record),
            None => Pending::none(),
        }
    }

    /// A durable call's one step under the pipeline's gate: `hand_off` (which may
    /// refuse: then nothing is logged), then the append of `payload` (only built when
    /// there is a log). Await the [`Pending`] after the gate is released.
    pub fn hand_off<T, E>(
        &self,
        gate: &ssfd_engine::Gate,
        kind: Kind,
        hand_off: impl FnOnce() -> Result<T, E>,
        payload: impl FnOnce() -> Vec<u8>,
    ) -> Result<(T, Pending), E> {
        let _gate = gate.enter();
        let handed = hand_off()?;
        Ok((handed, self.append(kind, payload)))
    }

    /// Logs a request handed off under the pipeline's gate; `payload` is only built
    /// when there is a log.
    pub fn append(&self, kind: Kind, payload: impl FnOnce() -> Vec<u8>) -> Pending {
        match &self.0 {
            Some(wal) => wal.append(kind, &payload()),
            None => Pending::none(),
        }
    }

    /// A unary call while the log cannot write (a full disk): refused and counted.
    #[allow(clippy::result_large_err)]
    pub fn refuse_while_failing(
        &self,
        listener: ssfd_telemetry::Listener,
        items: u64,
    ) -> Result<(), tonic::Status> {
        match &self.0 {
            Some(wal) if wal.failing() || ssfd_engine::disk::low_space() => {
                ssfd_telemetry::refused(listener, ssfd_telemetry::RefuseReason::DiskFull, items);
                Err(tonic::Status::unavailable(
                    "ssfd cannot write its write-ahead log (is data_dir full?), retry later",
                ))
            }
            _ => Ok(()),
        }
    }

    /// A stream waits, before it takes the pipeline's gate, while the log cannot write
    /// or memory is near `memory_limit`.
    pub async fn wait_while_failing(&self) {
        while ssfd_engine::memory::under_pressure() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(wal) = &self.0 {
            while wal.failing() || ssfd_engine::disk::low_space() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl From<Failed> for tonic::Status {
    fn from(_: Failed) -> tonic::Status {
        tonic::Status::unavailable("ssfd's write-ahead log did not take the request, retry later")
    }
}

/// Covers a part of a closed segment: dropped when the interval's part is delivered.
struct SegmentToken {
    segment: u64,
    part: u8,
    ops: Sender<Op>,
}

impl Drop for SegmentToken {
    fn drop(&mut self) {
        let _ = self.ops.send(Op::Done(self.segment, self.part));
    }
}

impl ssfd_engine::Log for Wal {
    fn rotate(&self) -> (ssfd_engine::Token, ssfd_engine::Token) {
        let next = self.next_segment.fetch_add(1, Relaxed);
        let closed = self.active.swap(next, Relaxed);
        let _ = self.ops.send(Op::Rotate(next));
        let token = |part| -> ssfd_engine::Token {
            Arc::new(SegmentToken {
                segment: closed,
                part,
                ops: self.ops.clone(),
            })
        };
        (token(METRICS), token(SPANS))
    }
}

/// Records waiting for one write.
#[derive(Default)]
struct Batch {
    records: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, record: Vec<u8>) {
        self.bytes += record.len();
        self.records.push(record);
    }

    fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }

    /// Writes every record, many per `writev`, without gathering them first.
    fn write_to(&self, file: &mut File) -> std::io::Result<()> {
        for chunk in self.records.chunks(512) {
            let mut slices: Vec<std::io::IoSlice<'_>> =
                chunk.iter().map(|r| std::io::IoSlice::new(r)).collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                match file.write_vectored(slices) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    active: u64,
    /// Bytes of the active segment that are whole records.
    written: u64,
    /// The active segment holds requests (not only delivery markers).
    active_data: bool,
    /// Closed segments still on disk, with their sizes and the parts delivered.
    closed: std::collections::BTreeMap<u64, (u64, u8)>,
    /// The first segment of this process: what was replayed goes with it.
    first: u64,
    replayed: Vec<PathBuf>,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, ops: &Receiver<Op>) {
        let mut buffer = Batch::default();
        let mut acks = Vec::new();
        while let Ok(op) = ops.recv() {
            let mut next = Some(op);
            while let Some(op) = next.take() {
                match op {
                    Op::Append(record, ack) => {
                        buffer.push(record);
                        acks.push(ack);
                        self.active_data = true;
                    }
                    Op::Stop => {
                        self.commit(&mut buffer, &mut acks);
                        self.delete_delivered();
                        self.empty_if_delivered();
                        return;
                    }
                    Op::Rotate(segment) => {
                        self.commit(&mut buffer, &mut acks);
                        self.rotate(segment);
                    }
                    Op::Done(segment, part) => {
                        // recorded, so a crash replays only what is not delivered
                        let mut marker = segment.to_le_bytes().to_vec();
                        marker.push(part);
                        let mut record = Vec::with_capacity(HEADER + marker.len());
                        encode_record(Kind::Delivered, &marker, &mut record);
                        buffer.push(record);
                        if let Some((_, parts)) = self.closed.get_mut(&segment) {
                            *parts |= part;
                        }
                    }
                }
                if buffer.bytes < GROUP_BYTES {
                    next = ops.try_recv().ok();
                }
            }
            self.commit(&mut buffer, &mut acks);
            self.delete_delivered();
        }
        self.commit(&mut buffer, &mut acks);
    }

    /// Writes and syncs `buffer`, then wakes its callers. A failed write is cut back
    /// to the last whole record and retried (a full disk frees up).
    fn commit(&mut self, buffer: &mut Batch, acks: &mut Vec<tokio::sync::oneshot::Sender<()>>) {
        if buffer.records.is_empty() {
            return;
        }
        loop {
            let result = buffer
                .write_to(&mut self.file)
                .and_then(|()| self.file.sync_data());
            match result {
                Ok(()) => break,
                Err(error) => {
                    ssfd_telemetry::wal_write_error();
                    if !self.shared.failing.swap(true, Relaxed) {
                        tracing::error!(%error, dir = %self.dir.display(), "write-ahead log write failed; refusing new requests until it succeeds");
                    }
                    let _ = self.file.set_len(self.written);
                    if self.shared.stopping.load(Relaxed) {
                        // at shutdown nobody waits: the callers see the log fail
                        buffer.clear();
                        acks.clear();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        if self.shared.failing.swap(false, Relaxed) {
            tracing::info!("write-ahead log writes again");
        }
        let length = buffer.bytes as u64;
        self.written += length;
        let bytes = self.shared.bytes.fetch_add(length, Relaxed) + length;
        ssfd_telemetry::set_store_bytes("wal", bytes);
        buffer.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }

    fn rotate(&mut self, segment: u64) {
        loop {
            match open_segment(&self.dir, segment) {
                Ok(file) => {
                    self.closed.insert(self.active, (self.written, 0));
                    self.file = file;
                    self.active = segment;
                    self.written = MAGIC.len() as u64;
                    self.active_data = false;
                    self.shared.bytes.fetch_add(self.written, Relaxed);
                    return;
                }
                Err(error) => {
                    // appends keep going to the open segment meanwhile: nothing is lost,
                    // the older interval's segment is just deleted later
                    ssfd_telemetry::wal_write_error();
                    tracing::warn!(%error, "write-ahead log: cannot open a new segment");
                    if self.shared.stopping.load(Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// At a clean stop with everything delivered, the active segment's markers are
    /// moot: the log is left empty.
    fn empty_if_delivered(&mut self) {
        if self.closed.is_empty()
            && self.replayed.is_empty()
            && !self.active_data
            && self.written > MAGIC.len() as u64
            && self.file.set_len(MAGIC.len() as u64).is_ok()
        {
            let _ = self.file.sync_data();
            self.shared
                .bytes
                .fetch_sub(self.written - MAGIC.len() as u64, Relaxed);
            self.written = MAGIC.len() as u64;
            ssfd_telemetry::set_store_bytes("wal", self.shared.bytes.load(Relaxed));
        }
    }

    /// Deletes the oldest closed segments while both their parts are delivered (in
    /// order: a segment's delivery markers live in later segments).
    fn delete_delivered(&mut self) {
        while let Some((&segment, &(size, parts))) = self.closed.iter().next() {
            if parts != BOTH {
                break;
            }
            self.closed.remove(&segment);
            if std::fs::remove_file(segment_path(&self.dir, segment)).is_ok() {
                self.shared.bytes.fetch_sub(size, Relaxed);
            }
            if segment == self.first {
                for path in std::mem::take(&mut self.replayed) {
                    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                    if std::fs::remove_file(&path).is_ok() {
                        self.shared.bytes.fetch_sub(size, Relaxed);
                    }
                }
            }
        }
        ssfd_telemetry::set_store_bytes("wal", self.shared.bytes.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssfd_engine::Log;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn records(path: &Path) -> (Vec<(Kind, Vec<u8>)>, Scan) {
        let mut seen = Vec::new();
        let read = read_segment(path, |kind, payload| seen.push((kind, payload.to_vec())))
            .expect("readable");
        (seen, read)
    }

    #[test]
    fn appends_are_durable_rotate_and_go_when_delivered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, left) = Wal::open(dir.path()).expect("open");
        assert!(left.is_empty());
        let mut record = record_buffer();
        push_span(&mut record, b"one");
        push_span(&mut record, b"two");
        block_on(wal.append_record(Kind::Spans, record).durable()).expect("durable");
        block_on(wal.append(Kind::StatsdPacket, b"a:1|c").durable()).expect("durable");
        let tokens = wal.rotate();
        block_on(wal.append(Kind::OtlpLogs, b"next").durable()).expect("durable");
        wal.close();
        // a crash now: both segments are still there
        let (wal, left) = Wal::open(dir.path()).expect("reopen");
        assert_eq!(left.len(), 2);
        let (first, read) = records(&left[0]);
        assert_eq!(
            read,
            Scan {
                records: 2,
                torn: false
            }
        );
        assert_eq!(first[0].0, Kind::Spans);
        assert_eq!(
            spans(&first[0].1).collect::<Vec<_>>(),
            [&b"one"[..], b"two"]
        );
        assert_eq!(first[1], (Kind::StatsdPacket, b"a:1|c".to_vec()));
        assert_eq!(records(&left[1]).0, [(Kind::OtlpLogs, b"next".to_vec())]);
        // the old process's token means nothing now; this process's first interval
        // takes the replayed segments with it
        drop(tokens);
        let (first_metrics, first_spans) = wal.rotate();
        let second = wal.rotate();
        drop(second);
        drop(first_metrics);
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            left.iter().all(|p| p.exists()),
            "an older interval is still out"
        );
        drop(first_spans);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while left.iter().any(|p| p.exists()) {
            assert!(
                std::time::Instant::now() < deadline,
                "replayed segments deleted"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        wal.close();
        let files = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, 1, "only the active segment is left");
    }

    #[test]
    fn a_torn_tail_is_where_reading_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = Wal::open(dir.path()).expect("open");
        block_on(wal.append(Kind::StatsdPacket, b"a:1|c").durable()).expect("durable");
        block_on(wal.append(Kind::StatsdPacket, b"b:1|c").durable()).expect("durable");
        wal.close();
        let path = segment_path(dir.path(), 0);
        let whole = std::fs::read(&path).expect("read");
        for cut in MAGIC.len() + 1..whole.len() {
            std::fs::write(&path, &whole[..cut]).expect("write");
            let (seen, read) = records(&path);
            let expected = if cut < MAGIC.len() + 14 { 0 } else { 1 };
            assert_eq!(seen.len(), expected, "cut at {cut}");
            // a cut between the records is a clean end
            assert_eq!(read.torn, cut != MAGIC.len() + 14, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        let (seen, read) = records(&path);
        assert_eq!(
            (seen.len(), read.torn),
            (1, true),
            "a bad checksum stops reading"
        );
        std::fs::write(&path, &whole).expect("write");
        assert_eq!(
            records(&path).1,
            Scan {
                records: 2,
                torn: false
            }
        );
    }
}
