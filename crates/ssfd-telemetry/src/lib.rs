//! ssfd's own telemetry (SPEC 10): one place names every counter and its labels, and
//! renders them as Prometheus text. Counters are process-global atomics indexed by
//! closed enums, so a hot path adds a batch's count with one `fetch_add`.

pub mod veneur;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const COUNT: usize = [$($label),+].len();
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
            pub fn from_label(label: &str) -> Option<$name> {
                match label { $($label => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

label_enum!(
    /// The server that received an item.
    Listener { Statsd = "statsd", Ssf = "ssf", Grpc = "grpc", Otlp = "otlp", Forward = "forward" }
);
label_enum!(
    /// The transport it came over.
    Protocol { Udp = "udp", Tcp = "tcp", Unixgram = "unixgram", Unix = "unix", Grpc = "grpc", Http = "http" }
);
label_enum!(
    /// Why an item was rejected.
    Reason {
        Parse = "parse",
        TooLong = "too_long",
        BadValue = "bad_value",
        BadRate = "bad_rate",
        UnknownSection = "unknown_section",
        Framing = "framing",
        Decode = "decode",
        Empty = "empty",
        InvalidSpan = "invalid_span",
    }
);
label_enum!(
    /// Where an item was dropped.
    Stage { Ingest = "ingest", Worker = "worker", Store = "store", Index = "index", Sink = "sink", Forward = "forward" }
);
label_enum!(
    /// Why it was dropped.
    DropReason {
        QueueFull = "queue_full",
        Overflow = "overflow",
        MemoryLimit = "memory_limit",
        RetryExhausted = "retry_exhausted",
        Shutdown = "shutdown",
        DiskFull = "disk_full",
    }
);
label_enum!(
    /// Why a call was refused with a retryable answer (SPEC 10); `upstream`: a proxy's
    /// globals did not take what it routed to them.
    RefuseReason {
        QueueFull = "queue_full",
        MemoryLimit = "memory_limit",
        DiskFull = "disk_full",
        Shutdown = "shutdown",
        Upstream = "upstream",
    }
);
label_enum!(
    /// What a pipeline worker received.
    Kind {
        Counter = "counter",
        Gauge = "gauge",
        Histogram = "histogram",
        Timer = "timer",
        Set = "set",
        Status = "status",
        Event = "event",
        Log = "log",
        Span = "span",
    }
);

struct Grid<const N: usize> {
    cells: [AtomicU64; N],
}

impl<const N: usize> Grid<N> {
    const fn new() -> Self {
        Grid {
            cells: [const { AtomicU64::new(0) }; N],
        }
    }
}

const RECEIVED: usize = Listener::COUNT * Protocol::COUNT;
const REJECTED: usize = Listener::COUNT * Protocol::COUNT * Reason::COUNT;
const DROPPED: usize = Stage::COUNT * DropReason::COUNT;

static RECEIVED_TOTAL: Grid<RECEIVED> = Grid::new();
static REJECTED_TOTAL: Grid<REJECTED> = Grid::new();
static DROPPED_TOTAL: Grid<DROPPED> = Grid::new();
static WORKER_RECEIVED_TOTAL: Grid<{ Kind::COUNT }> = Grid::new();
static UDP_KERNEL_DROPS: Grid<{ Listener::COUNT }> = Grid::new();
const REFUSED: usize = Listener::COUNT * RefuseReason::COUNT;
static REFUSED_TOTAL: Grid<REFUSED> = Grid::new();
static SERIES: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);
static WAL_WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
static API_BAD_REQUESTS: AtomicU64 = AtomicU64::new(0);
static API_BUSY: AtomicU64 = AtomicU64::new(0);
static MEMORY_PRESSURE: AtomicU64 = AtomicU64::new(0);
static DISK_LOW: AtomicU64 = AtomicU64::new(0);
static MEMORY_ANON: AtomicU64 = AtomicU64::new(0);
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);
static FLUSH_NANOS: AtomicU64 = AtomicU64::new(0);

static SERIES_OVERFLOW: AtomicU64 = AtomicU64::new(0);
/// Samples each metric worker applied (Veneur's `worker.metrics_processed_total`);
/// workers past the last share its cell.
const WORKER_CELLS: usize = 64;
static WORKER_PROCESSED: Grid<WORKER_CELLS> = Grid::new();
/// Series flushed, by type (`counter`, `gauge`, `status`, `histogram`).
const FLUSHED_TYPES: [&str; 4] = ["counter", "gauge", "status", "histogram"];
static FLUSHED: Grid<4> = Grid::new();
static STORE_BYTES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
const STORES: [&str; 3] = ["spans", "logs", "wal"];

/// Bytes a store keeps on disk (`spans`, `logs`, `wal`).
/// `data_dir`'s file system is nearly full (1) or not (0).
pub fn set_disk_low(low: bool) {
    DISK_LOW.store(u64::from(low), Relaxed);
}

/// Anonymous memory crossed `memory_limit`'s high-water mark.
pub fn memory_pressure_entered() {
    MEMORY_PRESSURE.fetch_add(1, Relaxed);
}

/// The process's anonymous memory and its limit, bytes.
pub fn set_memory(anonymous: u64, limit: u64) {
    MEMORY_ANON.store(anonymous, Relaxed);
    MEMORY_LIMIT.store(limit, Relaxed);
}

/// A read-API request refused with 400 (a bad id or parameter), alone.
pub fn api_bad_request() {
    API_BAD_REQUESTS.fetch_add(1, Relaxed);
}

/// A read-API request answered 503: its memory did not fit the queries' budget in
/// time, or the process was under memory pressure.
pub fn api_busy() {
    API_BUSY.fetch_add(1, Relaxed);
}

/// A write-ahead-log write or segment open that failed (and is retried).
pub fn wal_write_error() {
    WAL_WRITE_ERRORS.fetch_add(1, Relaxed);
}

pub fn set_store_bytes(store: &str, bytes: u64) {
    if let Some(index) = STORES.iter().position(|s| *s == store) {
        STORE_BYTES[index].store(bytes, Relaxed);
    }
}

/// One sink's counters (SPEC 10): items sent, retries, items dropped, failed
/// deliveries, and its flush durations.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// A span sink (Veneur's `sink.span_*` names), not a metric sink.
    pub spans: std::sync::atomic::AtomicBool,
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
    flushes: AtomicU64,
    flush_nanos: AtomicU64,
}

impl SinkCounters {
    /// One delivery of an interval took `seconds` (retries included).
    pub fn observe_flush(&self, seconds: f64) {
        self.flushes.fetch_add(1, Relaxed);
        self.flush_nanos.fetch_add((seconds * 1e9) as u64, Relaxed);
    }
}

type SinkEntry = (String, String, std::sync::Arc<SinkCounters>);
static SINKS: std::sync::Mutex<Vec<SinkEntry>> = std::sync::Mutex::new(Vec::new());

/// The counters of sink `name` of `kind`, registered on first use.
pub fn sink(name: &str, kind: &str) -> std::sync::Arc<SinkCounters> {
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, counters)) = sinks.iter().find(|(n, k, _)| n == name && k == kind) {
        return std::sync::Arc::clone(counters);
    }
    let counters = std::sync::Arc::new(SinkCounters::default());
    sinks.push((
        name.to_string(),
        kind.to_string(),
        std::sync::Arc::clone(&counters),
    ));
    counters
}

/// [`sink`] for a span sink. A metric sink of the same name and kind registered
/// first keeps the counters as a metric sink's (`/metrics` shows the two as one).
pub fn span_sink(name: &str, kind: &str) -> std::sync::Arc<SinkCounters> {
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, counters)) = sinks.iter().find(|(n, k, _)| n == name && k == kind) {
        return std::sync::Arc::clone(counters);
    }
    let counters = std::sync::Arc::new(SinkCounters::default());
    counters.spans.store(true, Relaxed);
    sinks.push((
        name.to_string(),
        kind.to_string(),
        std::sync::Arc::clone(&counters),
    ));
    counters
}

/// Every sink's name, kind and counters, in registration order.
pub fn sinks() -> Vec<(String, String, std::sync::Arc<SinkCounters>)> {
    SINKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

impl SinkCounters {
    /// Deliveries of an interval so far and their total time, nanoseconds.
    pub fn flush_totals(&self) -> (u64, u64) {
        (self.flushes.load(Relaxed), self.flush_nanos.load(Relaxed))
    }
}

/// Reads one counter of a sink.
type SinkRead = fn(&SinkCounters) -> u64;

fn render_sinks(out: &mut String) {
    let sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let families: [(&str, &str, SinkRead); 4] = [
        ("ssfd_sink_sent_total", "items a sink delivered", |c| {
            c.sent.load(Relaxed)
        }),
        (
            "ssfd_sink_retries_total",
            "delivery attempts a sink repeated",
            |c| c.retries.load(Relaxed),
        ),
        (
            "ssfd_sink_dropped_total",
            "items a sink dropped (queue full or retries exhausted)",
            |c| c.dropped.load(Relaxed),
        ),
        (
            "ssfd_sink_failures_total",
            "deliveries that failed for good after their retries",
            |c| c.failures.load(Relaxed),
        ),
    ];
    // the forwarding client is SPEC 10's `ssfd_forward_*{destination}`
    let (forward, sinks): (Vec<SinkEntry>, Vec<SinkEntry>) = sinks
        .into_iter()
        .partition(|(_, kind, _)| kind == "forward");
    let forward_families: [(&str, &str, SinkRead); 4] = [
        (
            "ssfd_forward_sent_total",
            "metrics forwarded upstream",
            |c| c.sent.load(Relaxed),
        ),
        (
            "ssfd_forward_failures_total",
            "forward calls that failed for good after their retries",
            |c| c.failures.load(Relaxed),
        ),
        (
            "ssfd_forward_retries_total",
            "forward calls repeated",
            |c| c.retries.load(Relaxed),
        ),
        (
            "ssfd_forward_dropped_total",
            "metrics not forwarded (queue full or retries exhausted)",
            |c| c.dropped.load(Relaxed),
        ),
    ];
    for (name, help, value) in forward_families {
        header(out, name, "counter", help);
        for (destination, _, counters) in &forward {
            let _ = writeln!(
                out,
                "{name}{{destination=\"{destination}\"}} {}",
                value(counters)
            );
        }
    }
    for (name, help, value) in families {
        header(out, name, "counter", help);
        for (sink, kind, counters) in &sinks {
            let _ = writeln!(
                out,
                "{name}{{sink=\"{sink}\",kind=\"{kind}\"}} {}",
                value(counters)
            );
        }
    }
    header(
        out,
        "ssfd_sink_flush_duration_seconds",
        "summary",
        "time a sink took to deliver one interval, retries included",
    );
    for (sink, kind, counters) in &sinks {
        let _ = writeln!(
            out,
            "ssfd_sink_flush_duration_seconds_sum{{sink=\"{sink}\",kind=\"{kind}\"}} {}",
            counters.flush_nanos.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "ssfd_sink_flush_duration_seconds_count{{sink=\"{sink}\",kind=\"{kind}\"}} {}",
            counters.flushes.load(Relaxed)
        );
    }
}

/// Samples folded into overflow series because `max_series` was reached (kept, not
/// dropped: SPEC 4.3).
pub fn series_overflow(count: u64) {
    SERIES_OVERFLOW.fetch_add(count, Relaxed);
}

/// Live series of the last flushed interval.
pub fn set_series(count: u64) {
    SERIES.store(count, Relaxed);
}

/// One flush took `seconds`.
pub fn observe_flush(seconds: f64) {
    let nanos = (seconds * 1e9) as u64;
    FLUSHES.fetch_add(1, Relaxed);
    FLUSH_NANOS.fetch_add(nanos, Relaxed);
}

/// Items refused with a retryable answer (gRPC `UNAVAILABLE`, HTTP 503): not lost, the
/// client is told to retry.
pub fn refused(listener: Listener, reason: RefuseReason, count: u64) {
    if count > 0 {
        REFUSED_TOTAL.cells[listener as usize * RefuseReason::COUNT + reason as usize]
            .fetch_add(count, Relaxed);
    }
}

/// Items (statsd lines, SSF spans, frames) that reached a listener.
pub fn received(listener: Listener, protocol: Protocol, count: u64) {
    if count > 0 {
        RECEIVED_TOTAL.cells[listener as usize * Protocol::COUNT + protocol as usize]
            .fetch_add(count, Relaxed);
    }
}

/// Items rejected alone for `reason`.
pub fn rejected(listener: Listener, protocol: Protocol, reason: Reason, count: u64) {
    if count > 0 {
        let index = (listener as usize * Protocol::COUNT + protocol as usize) * Reason::COUNT
            + reason as usize;
        REJECTED_TOTAL.cells[index].fetch_add(count, Relaxed);
    }
}

/// Items dropped at `stage`.
pub fn dropped(stage: Stage, reason: DropReason, count: u64) {
    if count > 0 {
        DROPPED_TOTAL.cells[stage as usize * DropReason::COUNT + reason as usize]
            .fetch_add(count, Relaxed);
    }
}

/// Items a pipeline worker took off its queue.
pub fn worker_received(kind: Kind, count: u64) {
    if count > 0 {
        WORKER_RECEIVED_TOTAL.cells[kind as usize].fetch_add(count, Relaxed);
    }
}

/// Sets the kernel's receive-queue drop count of a UDP listener (a running total).
pub fn set_udp_kernel_drops(listener: Listener, total: u64) {
    UDP_KERNEL_DROPS.cells[listener as usize].store(total, Relaxed);
}

/// Metric worker `worker` applied `count` samples.
pub fn worker_processed(worker: usize, count: u64) {
    if count > 0 {
        WORKER_PROCESSED.cells[worker.min(WORKER_CELLS - 1)].fetch_add(count, Relaxed);
    }
}

/// A flush handed `count` series of `metric_type` to the sinks.
pub fn flushed(metric_type: &str, count: u64) {
    if let Some(index) = FLUSHED_TYPES.iter().position(|t| *t == metric_type)
        && count > 0
    {
        FLUSHED.cells[index].fetch_add(count, Relaxed);
    }
}

/// Flushes done so far.
pub fn flushes() -> u64 {
    FLUSHES.load(Relaxed)
}

/// Live series of the last flushed interval.
pub fn series() -> u64 {
    SERIES.load(Relaxed)
}

/// Items dropped for `reason`, summed over stages.
pub fn dropped_for(reason: DropReason) -> u64 {
    Stage::ALL
        .iter()
        .map(|&stage| {
            DROPPED_TOTAL.cells[stage as usize * DropReason::COUNT + reason as usize].load(Relaxed)
        })
        .sum()
}

/// Reads one received counter (for tests and the load generator).
pub fn received_value(listener: Listener, protocol: Protocol) -> u64 {
    RECEIVED_TOTAL.cells[listener as usize * Protocol::COUNT + protocol as usize].load(Relaxed)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A series without labels, with its header.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Appends the Prometheus text exposition of every own-telemetry series.
pub fn render(out: &mut String, version: &str) {
    header(out, "ssfd_build_info", "gauge", "ssfd's version");
    let _ = writeln!(out, "ssfd_build_info{{version=\"{version}\"}} 1");

    header(
        out,
        "ssfd_received_total",
        "counter",
        "items that reached a listener",
    );
    for &listener in Listener::ALL {
        for &protocol in Protocol::ALL {
            let value = received_value(listener, protocol);
            if value > 0 {
                let _ = writeln!(
                    out,
                    "ssfd_received_total{{listener=\"{}\",protocol=\"{}\"}} {value}",
                    listener.label(),
                    protocol.label()
                );
            }
        }
    }
    // SPEC 10's labels (listener, reason), then the same counts by protocol as well
    header(
        out,
        "ssfd_rejected_total",
        "counter",
        "items rejected alone, by reason",
    );
    let rejected = |listener: Listener, protocol: Protocol, reason: Reason| {
        let index = (listener as usize * Protocol::COUNT + protocol as usize) * Reason::COUNT
            + reason as usize;
        REJECTED_TOTAL.cells[index].load(Relaxed)
    };
    for &listener in Listener::ALL {
        for &reason in Reason::ALL {
            let value: u64 = Protocol::ALL
                .iter()
                .map(|&protocol| rejected(listener, protocol, reason))
                .sum();
            if value > 0 {
                let _ = writeln!(
                    out,
                    "ssfd_rejected_total{{listener=\"{}\",reason=\"{}\"}} {value}",
                    listener.label(),
                    reason.label()
                );
            }
        }
    }
    header(
        out,
        "ssfd_rejected_by_protocol_total",
        "counter",
        "items rejected alone, by protocol and reason",
    );
    for &listener in Listener::ALL {
        for &protocol in Protocol::ALL {
            for &reason in Reason::ALL {
                let value = rejected(listener, protocol, reason);
                if value > 0 {
                    let _ = writeln!(
                        out,
                        "ssfd_rejected_by_protocol_total{{listener=\"{}\",protocol=\"{}\",reason=\"{}\"}} {value}",
                        listener.label(),
                        protocol.label(),
                        reason.label()
                    );
                }
            }
        }
    }
    header(
        out,
        "ssfd_dropped_total",
        "counter",
        "items dropped, by stage and reason",
    );
    for &stage in Stage::ALL {
        for &reason in DropReason::ALL {
            let value = DROPPED_TOTAL.cells[stage as usize * DropReason::COUNT + reason as usize]
                .load(Relaxed);
            let _ = writeln!(
                out,
                "ssfd_dropped_total{{stage=\"{}\",reason=\"{}\"}} {value}",
                stage.label(),
                reason.label()
            );
        }
    }
    header(
        out,
        "ssfd_worker_received_total",
        "counter",
        "items pipeline workers took off their queues, by kind",
    );
    for &kind in Kind::ALL {
        let value = WORKER_RECEIVED_TOTAL.cells[kind as usize].load(Relaxed);
        let _ = writeln!(
            out,
            "ssfd_worker_received_total{{kind=\"{}\"}} {value}",
            kind.label()
        );
    }
    single(
        out,
        "ssfd_series",
        "gauge",
        "live series in the last flushed interval",
        SERIES.load(Relaxed),
    );
    header(
        out,
        "ssfd_store_bytes",
        "gauge",
        "bytes a store keeps on disk",
    );
    for (index, store) in STORES.iter().enumerate() {
        let _ = writeln!(
            out,
            "ssfd_store_bytes{{store=\"{store}\"}} {}",
            STORE_BYTES[index].load(Relaxed)
        );
    }
    render_sinks(out);
    single(
        out,
        "ssfd_series_overflow_total",
        "counter",
        "samples folded into ssfd_overflow series because max_series was reached",
        SERIES_OVERFLOW.load(Relaxed),
    );
    header(
        out,
        "ssfd_flush_duration_seconds",
        "summary",
        "time to collect, name and hand off one interval",
    );
    let _ = writeln!(
        out,
        "ssfd_flush_duration_seconds_sum {}",
        FLUSH_NANOS.load(Relaxed) as f64 / 1e9
    );
    let _ = writeln!(
        out,
        "ssfd_flush_duration_seconds_count {}",
        FLUSHES.load(Relaxed)
    );
    header(
        out,
        "ssfd_refused_total",
        "counter",
        "items refused with a retryable answer (gRPC UNAVAILABLE, HTTP 503)",
    );
    for &listener in &[Listener::Grpc, Listener::Otlp, Listener::Forward] {
        for &reason in RefuseReason::ALL {
            let value = REFUSED_TOTAL.cells
                [listener as usize * RefuseReason::COUNT + reason as usize]
                .load(Relaxed);
            let _ = writeln!(
                out,
                "ssfd_refused_total{{listener=\"{}\",reason=\"{}\"}} {value}",
                listener.label(),
                reason.label()
            );
        }
    }
    for (name, kind, help, value) in [
        (
            "ssfd_memory_anonymous_bytes",
            "gauge",
            "the process's anonymous memory (RssAnon), as memory_limit's governor last read it",
            &MEMORY_ANON,
        ),
        (
            "ssfd_memory_limit_bytes",
            "gauge",
            "memory_limit",
            &MEMORY_LIMIT,
        ),
        (
            "ssfd_memory_pressure_total",
            "counter",
            "times anonymous memory crossed 85 % of memory_limit (intake then sheds load)",
            &MEMORY_PRESSURE,
        ),
        (
            "ssfd_disk_low",
            "gauge",
            "1 while data_dir's file system is below its free-space reserve (durable intake refused, stores write nothing)",
            &DISK_LOW,
        ),
        (
            "ssfd_wal_write_errors_total",
            "counter",
            "write-ahead-log writes that failed (a full disk) and were retried",
            &WAL_WRITE_ERRORS,
        ),
        (
            "ssfd_api_bad_requests_total",
            "counter",
            "read-API requests refused with 400: a bad id, parameter or tag filter",
            &API_BAD_REQUESTS,
        ),
        (
            "ssfd_api_busy_total",
            "counter",
            "read-API requests answered 503 with Retry-After: no room in the queries' memory budget, or memory pressure",
            &API_BUSY,
        ),
    ] {
        single(out, name, kind, help, value.load(Relaxed));
    }
    header(
        out,
        "ssfd_udp_kernel_drops_total",
        "counter",
        "datagrams the kernel dropped from a full socket receive queue",
    );
    for &listener in &[Listener::Statsd, Listener::Ssf] {
        let value = UDP_KERNEL_DROPS.cells[listener as usize].load(Relaxed);
        let _ = writeln!(
            out,
            "ssfd_udp_kernel_drops_total{{listener=\"{}\"}} {value}",
            listener.label()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for &reason in Reason::ALL {
            assert_eq!(Reason::from_label(reason.label()), Some(reason));
        }
        assert_eq!(Reason::from_label("nope"), None);
    }

    #[test]
    fn render_shows_counts_with_labels() {
        rejected(Listener::Statsd, Protocol::Tcp, Reason::BadRate, 3);
        rejected(Listener::Statsd, Protocol::Udp, Reason::BadRate, 2);
        let mut text = String::new();
        render(&mut text, "t");
        // SPEC 10's labels, summed over protocols; by protocol in its own family
        assert!(
            text.contains("ssfd_rejected_total{listener=\"statsd\",reason=\"bad_rate\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ssfd_rejected_by_protocol_total{listener=\"statsd\",protocol=\"tcp\",reason=\"bad_rate\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE ssfd_received_total counter"));
    }
}
