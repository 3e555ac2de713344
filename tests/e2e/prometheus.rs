//! The exposition against real Prometheus tools (Debian's `prometheus` package):
//! `promtool check metrics` parses it, and a real Prometheus server scrapes ssfd and
//! answers PromQL for values sent through Datadog's Python client.

use ssfd_e2e::{Server, http_get, python};
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn promtool_parses_the_exposition() {
    let server = Server::start("interval: 1s\nnum_workers: 1\n");
    let tricky = "weird.name-x:1|c|#quantile:3,le:2,1bad:x,a.b:c\"q\n\
                  lat:1:2:3|ms|#route:/a\n9starts.with.digit:2|g\n_sc|svc.up|1|m:slow\nusers:a|s\n\
                  text.tag:1|c|#msg:line\\nbreak,back\\\\slash\n";
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(tricky.as_bytes(), server.addr("statsd udp"))
        .unwrap();
    server.wait_metric(
        "weird_name_x_total{_1bad=\"x\",a_b=\"c\\\"q\",exported_le=\"2\",exported_quantile=\"3\"}",
        1.0,
    );
    let (_, metrics) = server.get("/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-test-deps.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // exit 3 is promtool's "lint problems" status: names users chose, not parse errors
    assert!(
        output.status.code() == Some(0)
            || (output.status.code() == Some(3) && !report.contains("error")),
        "promtool: {:?}\n{report}\n{metrics}",
        output.status
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Prometheus {
    child: std::process::Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ssfd\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; scripts/install-test-deps.sh installs it)");
    Prometheus {
        child,
        address,
        _dir: dir,
    }
}

/// The first value of an instant PromQL query, once it equals `want` (within `tolerance`).
fn wait_query(prometheus: &Prometheus, query: &str, want: f64, tolerance: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let encoded: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut last = f64::NAN;
    loop {
        if let Ok(stream) = std::net::TcpStream::connect(&prometheus.address) {
            drop(stream);
            let (status, body) = http_get(
                &prometheus.address,
                &format!("/api/v1/query?query={encoded}"),
            );
            if status == 200 {
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                if let Some(value) = answer["data"]["result"][0]["value"][1].as_str() {
                    last = value.parse().unwrap();
                    if (last - want).abs() <= tolerance {
                        return last;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{query} = {last}, want {want} ± {tolerance}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn real_prometheus_scrapes_values_sent_by_the_datadog_client() {
    let server = Server::start("interval: 1s\n");
    let prometheus = start_prometheus(&server.http);
    let (host, port) = server.addr("statsd udp").rsplit_once(':').unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&python("dogstatsd_values.py", &[host, port])).unwrap();
    wait_query(
        &prometheus,
        "prom_requests_total{env=\"test\"}",
        expected["counter"].as_f64().unwrap(),
        0.0,
    );
    wait_query(
        &prometheus,
        "prom_temperature{room=\"lab\"}",
        expected["gauge"].as_f64().unwrap(),
        0.0,
    );
    wait_query(
        &prometheus,
        "prom_users",
        expected["set"].as_f64().unwrap(),
        0.0,
    );
    let p99 = expected["p99"].as_f64().unwrap();
    wait_query(
        &prometheus,
        "prom_latency{quantile=\"0.99\"}",
        p99,
        p99 * 0.01,
    );
    wait_query(&prometheus, "prom_latency_count", 1000.0, 0.0);
}
