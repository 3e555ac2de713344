//! A full `data_dir` (SPEC 7, issue 7): a watcher thread reads the free space of the
//! file system under `data_dir` (`statvfs`) every 100 ms. Below a reserve (a tenth of
//! the file system, between 8 MiB and 1 GiB) space is low until free space is back
//! above the reserve plus half of it: the write-ahead log refuses new unary requests
//! (`UNAVAILABLE`, counted in `ssfd_refused_total`) and streams wait; the span store
//! and log index write nothing and count what they drop
//! (`ssfd_dropped_total{stage="store"|"index",reason="disk_full"}`), keeping their files
//! whole. The reserve leaves room for writes already under way, so redb and tantivy
//! never meet `ENOSPC` themselves.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

static LOW: AtomicBool = AtomicBool::new(false);

/// True while `data_dir` is nearly full: write nothing new.
pub fn low_space() -> bool {
    LOW.load(Relaxed)
}

/// (available to us, total) bytes of the file system holding `path`.
pub fn space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

/// The free space kept in reserve on a file system of `total` bytes.
pub fn reserve(total: u64) -> u64 {
    (total / 10).clamp(8 << 20, 1 << 30)
}

/// Whether space is low at `available` bytes, given the state now (hysteresis).
pub fn low_at(available: u64, total: u64, now: bool) -> bool {
    let reserve = reserve(total);
    if now {
        available < reserve + reserve / 2
    } else {
        available < reserve
    }
}

/// Watches the file system of `dir` (created if missing).
pub fn watch(dir: &std::path::Path) {
    let _ = std::fs::create_dir_all(dir);
    let dir = dir.to_path_buf();
    let _ = std::thread::Builder::new()
        .name("ssfd-disk".into())
        .spawn(move || {
            loop {
                if let Some((available, total)) = space(&dir) {
                    let was = LOW.load(Relaxed);
                    let now = low_at(available, total, was);
                    if now != was {
                        LOW.store(now, Relaxed);
                        ssfd_telemetry::set_disk_low(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_space_has_a_reserve_and_hysteresis() {
        let total = 1 << 30;
        let reserve = reserve(total);
        assert_eq!(reserve, total / 10);
        assert!(low_at(reserve - 1, total, false));
        assert!(!low_at(reserve, total, false));
        assert!(low_at(reserve + reserve / 4, total, true), "stays low");
        assert!(!low_at(reserve + reserve / 2, total, true));
        assert_eq!(super::reserve(10 << 20), 8 << 20, "at least 8 MiB");
        let (available, total) = space(std::path::Path::new("/")).expect("statvfs /");
        assert!(total > 0 && available <= total);
    }
}
