//! The bounded queues between ingest and the workers, the worker threads, and the
//! flusher that collects the workers' series every interval.
//!
//! Queues carry owned batches. Each full-queue policy is named ([`WhenFull`]) and every
//! item it loses is counted in `ssfd_dropped_total{stage="ingest",reason="queue_full"}`.

use crate::aggregate::SeriesTable;
use crate::batch::{BatchPool, SampleBatch, ShardedSamples};
use crate::durable::{Durable, Gate};
use crate::events::EventQueue;
use crate::flush::{Flush, FlushConfig, FlushedType};
use crate::record::LogRecord;
use crate::slo::SloRegistry;
use crate::span::SpanBatch;
use crate::span_metrics::{SpanMetricsRegistry, SpanObservation};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use ssfd_telemetry::{self as telemetry, DropReason, Kind, Stage};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a sender does when its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// UDP: drop the newest batch and count its items.
    DropNewest,
    /// Streams: wait for room, which pushes back on the sender.
    Block,
    /// Unary gRPC: refuse before sending anything, so the client retries the whole call
    /// (a queue that fills between the check and the send is waited for, not dropped).
    Refuse,
}

/// Wakes whoever waits for room in a queue (a unary gRPC call, SPEC 3.3's
/// `grpc_wait`); ingest installs one that wakes its async waiters.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// Room in the pipeline's queues, as the workers make it: each time a worker takes an
/// item off its queue it wakes the waiters, if there are any (one atomic load
/// otherwise), so a caller waits without polling and without holding a thread.
#[derive(Default)]
pub struct Room {
    waiters: std::sync::atomic::AtomicUsize,
    waker: std::sync::OnceLock<Arc<dyn Wake>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("waiters", &self.waiters)
            .finish_non_exhaustive()
    }
}

impl Room {
    /// Installs the waker (the first one installed stays); returns the one in place.
    pub fn install(&self, waker: Arc<dyn Wake>) -> Arc<dyn Wake> {
        Arc::clone(self.waker.get_or_init(|| waker))
    }

    /// A caller starts waiting; [`Room::leave`] when it stops.
    pub fn enter(&self) {
        self.waiters
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn leave(&self) {
        self.waiters
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Callers registered as waiting now.
    pub fn waiting(&self) -> usize {
        self.waiters.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A worker took an item: wake the waiters, if any.
    pub fn taken(&self) {
        if self.waiters.load(std::sync::atomic::Ordering::SeqCst) > 0
            && let Some(waker) = self.waker.get()
        {
            waker.wake();
        }
    }
}

/// The queue was full and the policy was [`WhenFull::Refuse`]; nothing was sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Work for a span worker.
pub enum SpanWork {
    /// Valid, normalised trace spans (with their embedded samples and logs).
    Spans(SpanBatch),
    /// Log records that are not inside a span, from clients.
    Records(Vec<LogRecord>),
    /// Log records a local forwarded (it counted them, and forwards nothing twice).
    ForwardedRecords(Vec<LogRecord>),
    /// Every span and record of the interval before it has been queued ahead of it:
    /// the sink holds the token until they are durable (`durable.rs`).
    Barrier(crate::durable::Token),
}

impl std::fmt::Debug for SpanWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpanWork::Spans(spans) => f.debug_tuple("Spans").field(spans).finish(),
            SpanWork::Records(records) => f.debug_tuple("Records").field(records).finish(),
            SpanWork::ForwardedRecords(records) => {
                f.debug_tuple("ForwardedRecords").field(records).finish()
            }
            SpanWork::Barrier(_) => f.write_str("Barrier"),
        }
    }
}

impl SpanWork {
    fn len(&self) -> usize {
        match self {
            SpanWork::Spans(spans) => spans.len(),
            SpanWork::Records(records) | SpanWork::ForwardedRecords(records) => records.len(),
            SpanWork::Barrier(_) => 0,
        }
    }
}

/// Sizes of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    pub metric_workers: usize,
    pub span_workers: usize,
    /// Batches each metric queue holds.
    pub metric_queue_batches: usize,
    /// Batches each span queue holds.
    pub span_queue_batches: usize,
    /// Test hook: every worker sleeps this long per batch, so tests can fill queues
    /// deterministically (`SSFD_TEST_WORKER_STALL_MS`). Zero in production.
    pub stall_per_batch: std::time::Duration,
    /// The flush interval.
    pub interval: std::time::Duration,
    /// `max_series`: live series across all metric workers (each holds its share).
    pub max_series: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            metric_workers: 2,
            span_workers: 1,
            metric_queue_batches: 1024,
            span_queue_batches: 1024,
            stall_per_batch: std::time::Duration::ZERO,
            interval: std::time::Duration::from_secs(10),
            max_series: 1_000_000,
        }
    }
}

/// The sending side: cheap to clone, one per ingest thread or task.
#[derive(Clone, Debug)]
pub struct Pipeline {
    metric_senders: Vec<Sender<SampleBatch>>,
    span_senders: Vec<Sender<SpanWork>>,
    gate: Arc<Gate>,
    /// Woken as the workers take items (unary calls wait on it for room).
    room: Arc<Room>,
    /// Batches the metric workers emptied, for ingest to fill again.
    pool: BatchPool,
    /// A span sink indexes spans and their logs: ingest describes each span for it
    /// (tag Bloom bits, log records); without one it skips that work.
    index_spans: bool,
}

/// Where each interval's flush goes (the Prometheus exposition, the `jsonl` sink...).
/// Called on the flusher thread; a sink that must not block it queues internally.
pub trait MetricSink: Send {
    fn name(&self) -> &str;
    fn flush(&mut self, flush: &Flush);
    /// Why the last [`MetricSink::flush`] did not deliver everything, for a sink that
    /// writes somewhere that can fail (a file): its delivery then counts the interval as
    /// failed and dropped instead of sent.
    fn take_error(&mut self) -> Option<String> {
        None
    }
}

/// Where span workers put every batch of valid spans (the span store, issue 4).
pub trait SpanSink: Send + Sync {
    fn append(&self, spans: &SpanBatch);
    /// Log records: those sent alone, and after each [`SpanSink::append`], the records
    /// of the log samples inside its spans ([`SpanBatch::logs`]).
    fn append_logs(&self, _records: Vec<LogRecord>) {}
    /// Log records a client sent alone (not inside a span, not forwarded to this
    /// server), before [`SpanSink::append_logs`] gets them: a local's forwarding sends
    /// them upstream (SPEC 1).
    fn append_alone(&self, _records: &[LogRecord]) {}
    /// True for a sink that keeps log records (the default drops them unseen).
    fn takes_logs(&self) -> bool {
        false
    }
    /// Called when the span worker has been idle a while (a store writes what waits).
    fn tick(&self) {}
    /// Everything appended before this call belongs to an earlier interval: hold
    /// `token` until it is durable (a store), or drop it (the default: nothing kept).
    fn barrier(&self, token: crate::durable::Token) {
        drop(token);
    }
}

/// State shared by ingest, the span workers and the flusher.
#[derive(Clone, Default)]
pub struct Derived {
    /// The span store; `None` keeps no spans.
    pub span_sink: Option<Arc<dyn SpanSink>>,
    /// OTel span metrics, fed by the span workers, rendered by `/metrics`.
    pub span_metrics: Arc<SpanMetricsRegistry>,
    /// SLO windows, fed by the span workers, flushed every interval.
    pub slos: Arc<SloRegistry>,
    /// DogStatsD events, appended by ingest, passed to the sinks every interval.
    pub events: Arc<EventQueue>,
}

/// A message from the flusher to a metric worker.
enum Control {
    /// Swap out the interval's series and send them; batches of this epoch and later
    /// belong to the next interval.
    Flush(Sender<SeriesTable>, u64),
    /// Take what is queued, send the series, and stop.
    Final(Sender<SeriesTable>),
}

/// The worker and flusher threads; dropping every [`Pipeline`] and joining stops them.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    flusher: Option<(Sender<()>, JoinHandle<()>)>,
    /// Set by `join`: span workers take what is queued and stop, even while some
    /// connection still holds a `Pipeline` (a peer's open channel).
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.handles.len())
            .finish()
    }
}

impl Workers {
    /// Flushes one last time what the workers hold and waits for every thread. Call
    /// after intake has stopped.
    pub fn join(mut self) {
        // the last flush sends its barrier to the span workers, which are still running
        if let Some((stop, flusher)) = self.flusher.take() {
            let _ = stop.send(());
            let _ = flusher.join();
        }
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

impl Pipeline {
    /// The queues without workers: the receiving ends are for whoever consumes them
    /// (the workers, or a test that inspects what ingest produced).
    pub fn channels(
        config: PipelineConfig,
    ) -> (
        Pipeline,
        Vec<Receiver<SampleBatch>>,
        Vec<Receiver<SpanWork>>,
    ) {
        let (metric_senders, metric_receivers) = (0..config.metric_workers.max(1))
            .map(|_| bounded(config.metric_queue_batches.max(1)))
            .unzip();
        let (span_senders, span_receivers) = (0..config.span_workers.max(1))
            .map(|_| bounded(config.span_queue_batches.max(1)))
            .unzip();
        (
            Pipeline {
                metric_senders,
                span_senders,
                gate: Arc::default(),
                room: Arc::default(),
                pool: BatchPool::default(),
                index_spans: true,
            },
            metric_receivers,
            span_receivers,
        )
    }

    /// Starts the workers without sinks (tests, benches).
    pub fn start(config: PipelineConfig) -> (Pipeline, Workers) {
        Self::start_with(
            config,
            FlushConfig::default(),
            Vec::new(),
            Derived::default(),
        )
    }

    /// Starts the workers and the flusher, which hands every interval to `sinks`.
    pub fn start_with(
        config: PipelineConfig,
        flush_config: FlushConfig,
        sinks: Vec<Box<dyn MetricSink>>,
        derived: Derived,
    ) -> (Pipeline, Workers) {
        let Derived {
            span_metrics,
            slos,
            events,
            span_sink,
        } = derived;
        let (mut pipeline, metric_receivers, span_receivers) = Self::channels(config);
        pipeline.index_spans = span_sink.as_ref().is_some_and(|sink| sink.takes_logs());
        let mut handles = Vec::new();
        let mut controls = Vec::new();
        // max_series bounds the live series of all workers together
        let shared = Arc::new(crate::aggregate::SharedSeries::default());
        for (index, receiver) in metric_receivers.into_iter().enumerate() {
            let (control, control_receiver) = bounded(1);
            controls.push(control);
            let pool = pipeline.pool.clone();
            let room = Arc::clone(&pipeline.room);
            let table = SeriesTable::sharing(config.max_series, Arc::clone(&shared));
            handles.push(
                std::thread::Builder::new()
                    .name(format!("metric-worker-{index}"))
                    .spawn(move || {
                        metric_worker(
                            index,
                            receiver,
                            &room,
                            pool,
                            control_receiver,
                            config.stall_per_batch,
                            table,
                        )
                    })
                    .expect("spawn metric worker"),
            );
        }
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (index, receiver) in span_receivers.into_iter().enumerate() {
            let stopping = Arc::clone(&stopping);
            let room = Arc::clone(&pipeline.room);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("span-worker-{index}"))
                    .spawn({
                        let span_metrics = Arc::clone(&span_metrics);
                        let slos = Arc::clone(&slos);
                        let span_sink = span_sink.clone();
                        move || {
                            span_worker(
                                receiver,
                                &room,
                                config.stall_per_batch,
                                &span_metrics,
                                &slos,
                                span_sink.as_deref(),
                                &stopping,
                            )
                        }
                    })
                    .expect("spawn span worker"),
            );
        }
        let (stop, stopped) = bounded(1);
        let gate = Arc::clone(&pipeline.gate);
        let span_senders = pipeline.span_senders.clone();
        let flusher = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || {
                flusher(
                    &gate,
                    &shared,
                    controls,
                    span_senders,
                    stopped,
                    config.interval,
                    flush_config,
                    sinks,
                    &slos,
                    &events,
                )
            })
            .expect("spawn flusher");
        (
            pipeline,
            Workers {
                handles,
                flusher: Some((stop, flusher)),
                stopping,
            },
        )
    }

    /// True when a span sink indexes spans and their log records (a store).
    pub fn indexes_spans(&self) -> bool {
        self.index_spans
    }

    /// Orders durable requests against interval boundaries (`durable.rs`).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn metric_shards(&self) -> usize {
        self.metric_senders.len()
    }

    pub fn span_shards(&self) -> usize {
        self.span_senders.len()
    }

    /// The span worker that owns `trace_id`.
    pub fn span_shard(&self, trace_id: ssfd_wire::ids::TraceId) -> usize {
        // an SSF id (high half 0) keeps the worker it always had
        let mixed = trace_id.low() as u64 ^ trace_id.high().rotate_left(32);
        crate::batch::shard_of(
            mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.span_senders.len(),
        )
    }

    /// True when some metric queue is full (a refused send would touch any of them).
    pub fn any_metric_queue_full(&self) -> bool {
        self.metric_senders.iter().any(Sender::is_full)
    }

    /// Room in the queues, as the workers make it.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// True when span shard `shard`'s queue is full.
    pub fn span_queue_full(&self, shard: usize) -> bool {
        self.span_senders[shard].is_full()
    }

    /// Sends every pending sample batch under `policy`.
    pub fn send_samples(&self, samples: &mut ShardedSamples, policy: WhenFull) -> Result<(), Full> {
        if samples.pending() == 0 {
            return Ok(());
        }
        if policy == WhenFull::Refuse && self.metric_senders.iter().any(Sender::is_full) {
            return Err(Full);
        }
        let epoch = self.gate.epoch();
        for (shard, mut batch) in samples.drain(&self.pool) {
            batch.epoch = epoch;
            send(&self.metric_senders[shard], batch, policy, SampleBatch::len);
        }
        Ok(())
    }

    /// Sends what fits without waiting; batches whose queue is full stay pending.
    /// Returns true when everything was sent.
    pub fn try_send_samples(&self, samples: &mut ShardedSamples) -> bool {
        let epoch = self.gate.epoch();
        samples.send_each(&self.pool, |shard, mut batch| {
            match self.metric_senders[shard].try_send({
                batch.epoch = epoch;
                batch
            }) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(batch)) => Err(batch),
                Err(TrySendError::Disconnected(batch)) => {
                    telemetry::dropped(Stage::Ingest, DropReason::Shutdown, batch.len() as u64);
                    Ok(())
                }
            }
        })
    }

    /// Sends span work without waiting; hands it back when the queue is full.
    pub fn try_send_spans(&self, shard: usize, work: SpanWork) -> Result<(), SpanWork> {
        match self.span_senders[shard].try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(work)) => Err(work),
            Err(TrySendError::Disconnected(work)) => {
                telemetry::dropped(Stage::Ingest, DropReason::Shutdown, work.len() as u64);
                Ok(())
            }
        }
    }

    /// Sends span work to its shard under `policy`.
    pub fn send_spans(&self, shard: usize, work: SpanWork, policy: WhenFull) -> Result<(), Full> {
        let sender = &self.span_senders[shard];
        if policy == WhenFull::Refuse && sender.is_full() {
            return Err(Full);
        }
        send(sender, work, policy, SpanWork::len);
        Ok(())
    }
}

fn send<T>(sender: &Sender<T>, item: T, policy: WhenFull, len: fn(&T) -> usize) {
    let result = match policy {
        WhenFull::Block => sender
            .send(item)
            .map_err(|e| TrySendError::Disconnected(e.0)),
        WhenFull::DropNewest | WhenFull::Refuse => sender.try_send(item),
    };
    match result {
        Ok(()) => {}
        Err(TrySendError::Full(item)) => {
            telemetry::dropped(Stage::Ingest, DropReason::QueueFull, len(&item) as u64)
        }
        Err(TrySendError::Disconnected(item)) => {
            telemetry::dropped(Stage::Ingest, DropReason::Shutdown, len(&item) as u64)
        }
    }
}

/// Owns one shard of series: folds batches in, and swaps the table out when the
/// flusher asks. Also counts what it receives, by kind.
fn metric_worker(
    index: usize,
    receiver: Receiver<SampleBatch>,
    room: &Room,
    pool: BatchPool,
    control: Receiver<Control>,
    stall: std::time::Duration,
    table: SeriesTable,
) {
    let mut worker = MetricWorker {
        index,
        table,
        counts: [0; Kind::COUNT],
        stall,
        epoch: 0,
        pool,
    };
    let mut batches = receiver;
    let never = crossbeam_channel::never();
    let mut open = true;
    loop {
        select! {
            recv(if open { &batches } else { &never }) -> message => match message {
                Ok(batch) => {
                    room.taken();
                    // a batch of a later epoch: the flusher has moved on and its Flush
                    // is on the way; this batch belongs after it
                    while batch.epoch > worker.epoch {
                        match control.recv() {
                            Ok(Control::Flush(reply, next)) => worker.swap(&batches, reply, next),
                            Ok(Control::Final(reply)) => {
                                worker.apply(batch);
                                worker.finish(&batches, reply);
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    worker.apply(batch);
                }
                Err(_) => {
                    open = false;
                    batches = crossbeam_channel::never();
                }
            },
            recv(control) -> message => match message {
                Ok(Control::Flush(reply, next)) => worker.swap(&batches, reply, next),
                Ok(Control::Final(reply)) => {
                    worker.finish(&batches, reply);
                    return;
                }
                Err(_) => return,
            },
        }
    }
}

/// A metric worker's state.
struct MetricWorker {
    /// Its place among the metric workers (Veneur's `worker` tag).
    index: usize,
    table: SeriesTable,
    counts: [u64; Kind::COUNT],
    stall: std::time::Duration,
    /// Batches of an earlier epoch belong to the interval being filled.
    epoch: u64,
    /// Where applied batches go back to ingest.
    pool: BatchPool,
}

impl MetricWorker {
    fn apply(&mut self, batch: SampleBatch) {
        if !self.stall.is_zero() {
            std::thread::sleep(self.stall);
        }
        self.table.apply(&batch);
        for sample in batch
            .samples()
            .iter()
            .chain(batch.imports().iter().map(|(s, _)| s))
        {
            self.counts[sample.kind.telemetry() as usize] += u64::from(sample.count());
        }
        let mut processed = 0;
        for (index, count) in self.counts.iter_mut().enumerate() {
            processed += *count;
            telemetry::worker_received(Kind::ALL[index], std::mem::take(count));
        }
        telemetry::worker_processed(self.index, processed);
        self.pool.give(batch);
    }

    /// Folds in what is queued from before epoch `next`, swaps the interval out, and
    /// keeps the first batch of `next` for the new interval.
    fn swap(&mut self, batches: &Receiver<SampleBatch>, reply: Sender<SeriesTable>, next: u64) {
        let mut held = None;
        for batch in batches.try_iter() {
            if batch.epoch >= next {
                held = Some(batch);
                break;
            }
            self.apply(batch);
        }
        let _ = reply.send(self.table.take());
        self.epoch = next;
        if let Some(batch) = held {
            self.apply(batch);
        }
    }

    /// Takes everything queued and sends the last series.
    fn finish(&mut self, batches: &Receiver<SampleBatch>, reply: Sender<SeriesTable>) {
        for batch in batches.try_iter() {
            self.apply(batch);
        }
        let _ = reply.send(self.table.take());
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Every interval: collects each worker's series, turns them into a [`Flush`] and hands
/// it to every sink. On stop, does the same one last time.
#[allow(clippy::too_many_arguments)]
fn flusher(
    gate: &Gate,
    shared: &crate::aggregate::SharedSeries,
    controls: Vec<Sender<Control>>,
    span_senders: Vec<Sender<SpanWork>>,
    stop: Receiver<()>,
    interval: std::time::Duration,
    config: FlushConfig,
    mut sinks: Vec<Box<dyn MetricSink>>,
    slos: &SloRegistry,
    events: &EventQueue,
) {
    let ticker = crossbeam_channel::tick(interval.max(std::time::Duration::from_millis(10)));
    loop {
        let last = select! {
            recv(ticker) -> _ => false,
            recv(stop) -> _ => true,
        };
        let started = std::time::Instant::now();
        // requests in flight finish first; the log's segment closes with the interval
        let (next, token) = gate.advance();
        let mut tables = Vec::with_capacity(controls.len());
        for control in &controls {
            let (reply, replied) = bounded(1);
            let message = if last {
                Control::Final(reply)
            } else {
                Control::Flush(reply, next)
            };
            if control.send(message).is_ok()
                && let Ok(table) = replied.recv()
            {
                tables.push(table);
            }
        }
        // each worker folds its own overflow: one series per overflow key for the sinks
        if let Some((first, rest)) = tables.split_first_mut()
            && rest.iter().any(|t| t.overflowed() > 0)
        {
            for table in rest {
                first.absorb_overflow(table);
            }
        }
        // every table of the interval is in: its live count starts over
        if let Some(table) = tables.first() {
            shared.interval_done(table.epoch());
        }
        let series: usize = tables.iter().map(SeriesTable::len).sum();
        telemetry::series_overflow(tables.iter().map(SeriesTable::overflowed).sum());
        let swapped = started.elapsed();
        let mut flush = name_in_parallel(tables, &config);
        let named = started.elapsed();
        flush.timestamp = unix_seconds();
        slos.flush_into(&mut flush);
        flush.events = events.drain();
        let metrics_token = token.map(|(metrics, spans)| {
            // behind every span of the interval: the store holds it until they are durable
            for sender in &span_senders {
                let _ = sender.send(SpanWork::Barrier(Arc::clone(&spans)));
            }
            metrics
        });
        flush.durable = Durable(metrics_token);
        let mut by_type = [0u64; 3];
        for metric in &flush.metrics {
            by_type[metric.kind as usize] += 1;
        }
        for (kind, count) in [
            FlushedType::Counter,
            FlushedType::Gauge,
            FlushedType::Status,
        ]
        .into_iter()
        .zip(by_type)
        {
            telemetry::flushed(kind.label(), count);
        }
        telemetry::flushed("histogram", flush.summaries.len() as u64);
        for sink in &mut sinks {
            sink.flush(&flush);
        }
        let handed = started.elapsed();
        drop(flush);
        telemetry::set_series(series as u64);
        telemetry::observe_flush(started.elapsed().as_secs_f64());
        tracing::debug!(
            series,
            swap_ms = swapped.as_millis() as u64,
            name_ms = (named - swapped).as_millis() as u64,
            sinks_ms = (handed - named).as_millis() as u64,
            drop_ms = (started.elapsed() - handed).as_millis() as u64,
            "flushed"
        );
        if last {
            return;
        }
    }
}

/// Series from which naming is shared out: below it, spawning costs more than it saves.
const NAME_IN_PARALLEL_FROM: usize = 50_000;

/// Names the workers' tables. A large interval is named in parallel, each table past
/// the first on a scoped helper thread while the flusher names the first; the parts
/// are joined in worker order (a helper that cannot be spawned leaves its table to the
/// flusher, which names it before the helpers' parts are joined).
fn name_in_parallel(tables: Vec<SeriesTable>, config: &FlushConfig) -> Flush {
    let name = |table: SeriesTable, part: &mut Flush| {
        part.metrics.reserve(table.len());
        for series in table.into_series() {
            config.flush_series(series, part);
        }
    };
    let mut flush = Flush::default();
    let total: usize = tables.iter().map(SeriesTable::len).sum();
    if total < NAME_IN_PARALLEL_FROM || tables.len() < 2 {
        for table in tables {
            name(table, &mut flush);
        }
        return flush;
    }
    let mut tables = tables.into_iter();
    let first = tables.next().expect("two tables or more");
    std::thread::scope(|scope| {
        let mut inline = Vec::new();
        let mut helpers = Vec::new();
        for table in tables {
            // the table moves into the helper only if it starts; else it stays here
            let (sender, receiver) = crossbeam_channel::bounded::<SeriesTable>(1);
            let name = &name;
            let spawned = std::thread::Builder::new()
                .name("flush-namer".into())
                .spawn_scoped(scope, move || {
                    let mut part = Flush::default();
                    if let Ok(table) = receiver.recv() {
                        name(table, &mut part);
                    }
                    part
                });
            match spawned {
                Ok(helper) => {
                    let _ = sender.send(table);
                    helpers.push(helper);
                }
                Err(_) => inline.push(table),
            }
        }
        name(first, &mut flush);
        for table in inline {
            name(table, &mut flush);
        }
        for helper in helpers {
            if let Ok(part) = helper.join() {
                flush.metrics.extend(part.metrics);
                flush.summaries.extend(part.summaries);
                flush.forward.extend(part.forward);
            }
        }
    });
    flush
}

/// Counts spans and log records, and feeds the OTel span metrics and the SLOs. The
/// store and trace joiner (issue 4) take over here.
fn span_worker(
    receiver: Receiver<SpanWork>,
    room: &Room,
    stall: std::time::Duration,
    span_metrics: &SpanMetricsRegistry,
    slos: &SloRegistry,
    span_sink: Option<&dyn SpanSink>,
    stopping: &std::sync::atomic::AtomicBool,
) {
    // this worker's spans paired into service-graph calls (a trace's spans all come here)
    let mut pairer = crate::service_graph::EdgePairer::default();
    let mut edges = Vec::new();
    loop {
        let work = match receiver.recv_timeout(std::time::Duration::from_millis(250)) {
            Ok(work) => work,
            // asked to stop and nothing left queued
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
                if stopping.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                return;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Some(sink) = span_sink {
                    sink.tick();
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        room.taken();
        if !stall.is_zero() {
            std::thread::sleep(stall);
        }
        match work {
            SpanWork::Spans(mut spans) => {
                telemetry::worker_received(Kind::Span, spans.len() as u64);
                // every field below was read once, at ingest (`SpanBatch::push`)
                let mut observations = Vec::with_capacity(spans.len());
                if !spans.forwarded {
                    let now = std::time::Instant::now();
                    for span in spans.records() {
                        pairer.add(&span, now, &mut edges);
                        let entry = span.entry;
                        let duration_ns = entry.end_timestamp.saturating_sub(entry.start_timestamp);
                        slos.observe(span.service, span.name, entry.error, duration_ns);
                        observations.push(SpanObservation {
                            service: span.service,
                            name: span.name,
                            kind: entry.kind,
                            error: entry.error,
                            duration_ms: duration_ns.max(0) as f64 / 1e6,
                            trace_id: entry.trace_id,
                        });
                    }
                }
                // a forwarded span's records were counted by the local that took it
                let logs = if spans.forwarded {
                    0
                } else {
                    spans.iter().map(|(entry, _)| entry.logs as usize).sum()
                };
                telemetry::worker_received(Kind::Log, logs as u64);
                span_metrics.observe(observations);
                // a global's RED view counts the spans its locals forward (SPEC 6)
                span_metrics.red().observe(
                    crate::record::now_ns(),
                    spans.records().map(|span| {
                        let entry = span.entry;
                        let duration = entry.end_timestamp.saturating_sub(entry.start_timestamp);
                        (span.service, span.name, entry.error, duration)
                    }),
                );
                span_metrics.graph().observe(&edges);
                edges.clear();
                if let Some(sink) = span_sink {
                    sink.append(&spans);
                    // the records of the log samples inside them, made at ingest
                    let logs = std::mem::take(&mut spans.logs);
                    if !logs.is_empty() {
                        sink.append_logs(logs);
                    }
                }
            }
            SpanWork::Barrier(token) => match span_sink {
                Some(sink) => sink.barrier(token),
                None => drop(token),
            },
            SpanWork::Records(records) => {
                for record in &records {
                    let kind = match record.kind {
                        crate::record::LogKind::Event => Kind::Event,
                        _ => Kind::Log,
                    };
                    telemetry::worker_received(kind, 1);
                }
                if let Some(sink) = span_sink {
                    sink.append_alone(&records);
                    sink.append_logs(records);
                }
            }
            SpanWork::ForwardedRecords(records) => {
                if let Some(sink) = span_sink {
                    sink.append_logs(records);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Captured(Sender<Flush>);

    impl MetricSink for Captured {
        fn name(&self) -> &str {
            "captured"
        }

        fn flush(&mut self, flush: &Flush) {
            let _ = self.0.send(flush.clone());
        }
    }

    #[test]
    fn events_reach_every_sink_once() {
        let (sent, flushes) = crossbeam_channel::unbounded();
        let derived = Derived::default();
        let config = PipelineConfig {
            interval: std::time::Duration::from_millis(20),
            ..PipelineConfig::default()
        };
        let (pipeline, workers) = Pipeline::start_with(
            config,
            FlushConfig::default(),
            vec![Box::new(Captured(sent))],
            derived.clone(),
        );
        let event = crate::record::LogRecord {
            kind: crate::record::LogKind::Event,
            timestamp_ns: 1,
            service: String::new(),
            trace_id: None,
            span_id: None,
            name: "deploy".into(),
            message: "v2".into(),
            severity: crate::record::Severity::Info,
            tags: vec![],
        };
        derived.events.push_all([event.clone()]);
        let mut seen = Vec::new();
        while seen.is_empty() {
            seen = flushes
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("a flush")
                .events;
        }
        assert_eq!(seen, [event]);
        drop(pipeline);
        workers.join();
        assert!(
            flushes.try_iter().all(|flush| flush.events.is_empty()),
            "each event goes out once"
        );
    }
    use crate::batch::{KeyScratch, MetricKind, Scope};

    #[test]
    fn a_large_interval_is_named_in_parallel_as_it_would_be_in_turn() {
        let tables = || {
            (0..3)
                .map(|worker| {
                    let mut table = SeriesTable::default();
                    let mut samples = ShardedSamples::new(1);
                    let mut scratch = KeyScratch::default();
                    for i in 0..20_000 {
                        scratch.begin(format!("w{worker}.m{i}").as_bytes(), MetricKind::Counter);
                        scratch.finish();
                        samples.push(&scratch, Scope::Default, i as f64, 1.0, b"");
                    }
                    for (_, batch) in samples.drain(&BatchPool::default()) {
                        table.apply(&batch);
                    }
                    table
                })
                .collect::<Vec<_>>()
        };
        let config = FlushConfig::default();
        let mut parallel = name_in_parallel(tables(), &config);
        const {
            assert!(
                60_000 >= NAME_IN_PARALLEL_FROM,
                "the parallel path is the one tested"
            )
        };
        let mut in_turn = Flush::default();
        for table in tables() {
            for series in table.into_series() {
                config.flush_series(series, &mut in_turn);
            }
        }
        assert_eq!(parallel.metrics.len(), 60_000);
        parallel.metrics.sort_by(|a, b| a.name.cmp(&b.name));
        in_turn.metrics.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(parallel, in_turn);
    }

    #[test]
    fn refuse_sends_nothing_when_a_queue_is_full() {
        let (sender, _receiver) = bounded(1);
        let pipeline = Pipeline {
            pool: BatchPool::default(),
            metric_senders: vec![sender],
            span_senders: vec![],
            gate: Arc::default(),
            room: Arc::default(),
            index_spans: true,
        };
        let mut scratch = KeyScratch::default();
        scratch.begin(b"x", MetricKind::Counter);
        scratch.finish();
        let mut samples = ShardedSamples::new(1);
        samples.push(&scratch, Scope::Default, 1.0, 1.0, b"");
        assert_eq!(
            pipeline.send_samples(&mut samples, WhenFull::Refuse),
            Ok(())
        );
        samples.push(&scratch, Scope::Default, 1.0, 1.0, b"");
        assert_eq!(
            pipeline.send_samples(&mut samples, WhenFull::Refuse),
            Err(Full)
        );
        assert_eq!(samples.pending(), 1, "a refused send keeps its samples");
    }
}
