//! `stats_address` (SPEC 10): ssfd's own telemetry sent as DogStatsD every interval,
//! under Veneur's names (`ssfd_telemetry::veneur`), so Veneur dashboards keep working.

use ssfd_telemetry::veneur::{Reporter, datagrams};
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Datagrams stay within one Ethernet frame, as DogStatsD clients keep them.
const DATAGRAM_BYTES: usize = 1432;

/// The sender: a UDP socket aimed at `stats_address` and the last report.
pub struct SelfStats {
    socket: UdpSocket,
    target: String,
    reporter: Mutex<Reporter>,
}

impl SelfStats {
    /// Reports every `interval` on its own thread, from now until the process exits.
    pub fn start(target: String, interval: Duration) -> std::io::Result<Arc<SelfStats>> {
        // resolved once, the socket of the same family (a name may resolve to IPv6)
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(&target)?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("stats_address {target} resolves to no address"),
                )
            })?;
        let socket = UdpSocket::bind(if resolved.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })?;
        let target = resolved.to_string();
        let stats = Arc::new(SelfStats {
            socket,
            target,
            reporter: Mutex::new(Reporter::new(Vec::new())),
        });
        let ticking = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("stats-address".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    ticking.send();
                }
            })?;
        Ok(stats)
    }

    /// Sends what changed since the last report (at shutdown too, so the last
    /// interval's counts are not lost).
    pub fn send(&self) {
        let lines = self
            .reporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report();
        for datagram in datagrams(&lines, DATAGRAM_BYTES) {
            // best effort, as Veneur's: a stats daemon that is away loses these only
            if let Err(error) = self.socket.send_to(datagram.as_bytes(), &self.target) {
                tracing::debug!(%error, target = %self.target, "stats_address send failed");
            }
        }
    }
}
