//! The bounded queues between ingest and the workers, and the worker threads.
//!
//! Queues carry owned batches. Each full-queue policy is named ([`WhenFull`]) and every
//! item it loses is counted in `ssfd_dropped_total{stage="ingest",reason="queue_full"}`.

use crate::batch::{SampleBatch, ShardedSamples};
use crate::record::LogRecord;
use crate::span::SpanBatch;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use ssfd_telemetry::{self as telemetry, DropReason, Kind, Stage};
use std::thread::JoinHandle;

/// What a sender does when its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// UDP: drop the newest batch and count its items.
    DropNewest,
    /// Streams: wait for room, which pushes back on the sender.
    Block,
    /// Unary gRPC: refuse before sending anything, so the client retries the whole call.
    Refuse,
}

/// The queue was full and the policy was [`WhenFull::Refuse`]; nothing was sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Work for a span worker.
#[derive(Debug)]
pub enum SpanWork {
    /// Valid, normalised trace spans (with their embedded samples and logs).
    Spans(SpanBatch),
    /// Log records that are not inside a span.
    Records(Vec<LogRecord>),
}

impl SpanWork {
    fn len(&self) -> usize {
        match self {
            SpanWork::Spans(spans) => spans.len(),
            SpanWork::Records(records) => records.len(),
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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            metric_workers: 2,
            span_workers: 1,
            metric_queue_batches: 1024,
            span_queue_batches: 1024,
            stall_per_batch: std::time::Duration::ZERO,
        }
    }
}

/// The sending side: cheap to clone, one per ingest thread or task.
#[derive(Clone, Debug)]
pub struct Pipeline {
    metric_senders: Vec<Sender<SampleBatch>>,
    span_senders: Vec<Sender<SpanWork>>,
}

/// The worker threads; dropping every [`Pipeline`] and joining stops them.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Waits until every worker has drained its queue and exited.
    pub fn join(self) {
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
            },
            metric_receivers,
            span_receivers,
        )
    }

    /// Starts the workers and returns the sending side.
    pub fn start(config: PipelineConfig) -> (Pipeline, Workers) {
        let (pipeline, metric_receivers, span_receivers) = Self::channels(config);
        let mut handles = Vec::new();
        for (index, receiver) in metric_receivers.into_iter().enumerate() {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("metric-worker-{index}"))
                    .spawn(move || metric_worker(receiver, config.stall_per_batch))
                    .expect("spawn metric worker"),
            );
        }
        for (index, receiver) in span_receivers.into_iter().enumerate() {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("span-worker-{index}"))
                    .spawn(move || span_worker(receiver, config.stall_per_batch))
                    .expect("spawn span worker"),
            );
        }
        (pipeline, Workers { handles })
    }

    pub fn metric_shards(&self) -> usize {
        self.metric_senders.len()
    }

    pub fn span_shards(&self) -> usize {
        self.span_senders.len()
    }

    /// The span worker that owns `trace_id`.
    pub fn span_shard(&self, trace_id: i64) -> usize {
        crate::batch::shard_of(
            (trace_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.span_senders.len(),
        )
    }

    /// True when some metric queue is full (a refused send would touch any of them).
    pub fn any_metric_queue_full(&self) -> bool {
        self.metric_senders.iter().any(Sender::is_full)
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
        for (shard, batch) in samples.drain() {
            send(&self.metric_senders[shard], batch, policy, SampleBatch::len);
        }
        Ok(())
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

/// Counts what arrives, by kind. The aggregation engine (issue 3) replaces the body
/// with per-shard series state; the loop and its queue stay.
fn metric_worker(receiver: Receiver<SampleBatch>, stall: std::time::Duration) {
    let mut counts = [0u64; Kind::COUNT];
    for batch in receiver {
        if !stall.is_zero() {
            std::thread::sleep(stall);
        }
        for sample in batch.samples() {
            counts[sample.kind.telemetry() as usize] += 1;
        }
        for (index, count) in counts.iter_mut().enumerate() {
            telemetry::worker_received(Kind::ALL[index], std::mem::take(count));
        }
    }
}

/// Counts spans and log records. The store and trace joiner (issue 4) take over here.
fn span_worker(receiver: Receiver<SpanWork>, stall: std::time::Duration) {
    for work in receiver {
        if !stall.is_zero() {
            std::thread::sleep(stall);
        }
        match work {
            SpanWork::Spans(spans) => {
                use ssfd_wire::normalize::{SampleClass, classify_sample_fields};
                telemetry::worker_received(Kind::Span, spans.len() as u64);
                let mut logs = 0;
                for (_, bytes) in spans.iter() {
                    let Ok(view) = ssfd_wire::ssf_view::SpanView::parse(bytes) else {
                        continue;
                    };
                    logs += view
                        .samples()
                        .filter(|s| {
                            classify_sample_fields(
                                s.metric,
                                s.name,
                                s.value,
                                s.message,
                                s.sample_rate,
                            ) == Ok(SampleClass::Log)
                        })
                        .count();
                }
                telemetry::worker_received(Kind::Log, logs as u64);
            }
            SpanWork::Records(records) => {
                for record in &records {
                    let kind = match record.kind {
                        crate::record::LogKind::Event => Kind::Event,
                        _ => Kind::Log,
                    };
                    telemetry::worker_received(kind, 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{KeyScratch, MetricKind, Scope};

    #[test]
    fn refuse_sends_nothing_when_a_queue_is_full() {
        let (sender, _receiver) = bounded(1);
        let pipeline = Pipeline {
            metric_senders: vec![sender],
            span_senders: vec![],
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
