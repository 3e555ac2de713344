//! `memory_limit` (SPEC 7): a governor thread reads the process's anonymous memory
//! (`RssAnon` in `/proc/self/status`) every 20 ms. Past 85 % of the limit ssfd is under
//! pressure until it is back under 75 %: unary gRPC and OTLP calls are refused
//! (`UNAVAILABLE`, HTTP 503, counted in `ssfd_refused_total`), streams wait, UDP
//! datagrams are dropped and counted (`ssfd_dropped_total{stage="ingest",
//! reason="memory_limit"}`), and a sink's queue takes no new interval (counted at
//! `stage="sink"` or `"forward"`). The hot path reads one atomic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

static PRESSURE: AtomicBool = AtomicBool::new(false);
static LIMIT: AtomicU64 = AtomicU64::new(0);
static ANON: AtomicU64 = AtomicU64::new(0);

/// True while anonymous memory is near `memory_limit`: take nothing new that would
/// have to wait in memory.
pub fn under_pressure() -> bool {
    PRESSURE.load(Relaxed)
}

/// The anonymous memory last measured, bytes.
pub fn anonymous_bytes() -> u64 {
    ANON.load(Relaxed)
}

/// The configured limit, bytes (0 before [`govern`]).
pub fn limit_bytes() -> u64 {
    LIMIT.load(Relaxed)
}

/// `RssAnon` of this process, bytes.
pub fn read_anonymous() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line
        .trim_start_matches("RssAnon:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Whether to be under pressure at `anon` bytes, given the state now (hysteresis).
pub fn pressure_at(anon: u64, limit: u64, now: bool) -> bool {
    if limit == 0 {
        return false;
    }
    let high = limit / 100 * 85;
    let low = limit / 100 * 75;
    if now { anon > low } else { anon > high }
}

/// Starts the governor for `limit` bytes (0: no limit).
pub fn govern(limit: u64) {
    LIMIT.store(limit, Relaxed);
    if limit == 0 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("ssfd-memory".into())
        .spawn(move || {
            loop {
                if let Some(anon) = read_anonymous() {
                    ANON.store(anon, Relaxed);
                    ssfd_telemetry::set_memory(anon, limit);
                    let was = PRESSURE.load(Relaxed);
                    let now = pressure_at(anon, limit, was);
                    if now != was {
                        PRESSURE.store(now, Relaxed);
                        if now {
                            ssfd_telemetry::memory_pressure_entered();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_has_hysteresis() {
        let limit = 1000;
        assert!(!pressure_at(850, limit, false));
        assert!(pressure_at(851, limit, false));
        assert!(pressure_at(800, limit, true), "stays until back under 75 %");
        assert!(!pressure_at(750, limit, true));
        assert!(!pressure_at(u64::MAX, 0, false), "no limit");
        assert!(read_anonymous().is_some_and(|b| b > 0));
    }
}
