//! DogStatsD events on their way to the sinks (SPEC 4.1: not aggregated, passed to
//! sinks). Ingest appends them; the flusher takes them with each interval. The queue
//! is bounded: past its capacity an event is dropped and counted
//! (`ssfd_dropped_total{stage="sink",reason="queue_full"}`).

use crate::record::LogRecord;
use ssfd_telemetry::{self as telemetry, DropReason, Stage};
use std::sync::Mutex;

/// Events waiting for the next flush.
#[derive(Debug)]
pub struct EventQueue {
    events: Mutex<Vec<LogRecord>>,
    capacity: usize,
}

impl Default for EventQueue {
    fn default() -> Self {
        EventQueue::new(100_000)
    }
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            events: Mutex::new(Vec::new()),
            capacity,
        }
    }

    /// Appends events; those past the capacity are dropped and counted.
    pub fn push_all(&self, events: impl IntoIterator<Item = LogRecord>) {
        let Ok(mut queue) = self.events.lock() else {
            return;
        };
        let mut dropped = 0;
        for event in events {
            if queue.len() < self.capacity {
                queue.push(event);
            } else {
                dropped += 1;
            }
        }
        telemetry::dropped(Stage::Sink, DropReason::QueueFull, dropped);
    }

    /// Takes everything queued.
    pub fn drain(&self) -> Vec<LogRecord> {
        self.events
            .lock()
            .map(|mut queue| std::mem::take(&mut *queue))
            .unwrap_or_default()
    }
}
