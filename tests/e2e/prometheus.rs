//! The exposition against real Prometheus tools (Debian's `prometheus` package):
//! `promtool check metrics` parses it, and a real Prometheus server scrapes ssfd and
//! answers PromQL for values sent through Datadog's Python client.

use ssfd_e2e::{Server, free_port, http_get, python};
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
    // `clash` is a counter family first; the gauge that sanitises to `clash_total` is
    // dropped from the exposition and counted
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"clash:1|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric("clash_total", 1.0);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"clash.total:5|g", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric(
        "ssfd_dropped_total{stage=\"sink\",reason=\"overflow\"}",
        1.0,
    );
    assert_eq!(
        server.metric("clash_total"),
        1.0,
        "the counter keeps its family"
    );
    // names ssfd's own telemetry and the span metrics write: dropped and counted too,
    // so no family is written twice
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(
            b"ssfd.series:7|g\nssfd.received:1|c\ntraces.span.metrics.calls:1|c",
            server.addr("statsd udp"),
        )
        .unwrap();
    server.wait_metric(
        "ssfd_dropped_total{stage=\"sink\",reason=\"overflow\"}",
        4.0,
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
    start_prometheus_with(
        &format!(
            "scrape_configs:\n  - job_name: ssfd\n    static_configs:\n      - targets: ['{target}']\n"
        ),
        &[],
    )
}

/// A Prometheus server with `scrape` configuration lines and extra flags.
fn start_prometheus_with(scrape: &str, flags: &[&str]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{scrape}");
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
        .args(flags)
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
    // span metrics with exemplars travel in the OpenMetrics Prometheus negotiates
    use prost::Message;
    let span = ssfd_wire::ssf::SsfSpan {
        trace_id: 77,
        id: 77,
        start_timestamp: 1_000_000_000,
        end_timestamp: 1_003_000_000,
        service: "shop".into(),
        name: "checkout".into(),
        ..Default::default()
    };
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    wait_query(
        &prometheus,
        "traces_span_metrics_calls_total{service_name=\"shop\",span_name=\"checkout\"}",
        1.0,
        0.0,
    );
    wait_query(
        &prometheus,
        "traces_span_metrics_duration_milliseconds_bucket{service_name=\"shop\",le=\"4\"}",
        1.0,
        0.0,
    );
}

#[test]
fn openmetrics_when_asked_with_span_metrics_and_exemplars() {
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    let server = Server::start("interval: 1s\n");
    let span = SsfSpan {
        trace_id: 0x1234,
        id: 0x1234,
        start_timestamp: 1_000_000_000,
        end_timestamp: 1_007_500_000,
        service: "api".into(),
        name: "GET /users".into(),
        tags: [("span.kind".to_string(), "server".to_string())].into(),
        ..Default::default()
    };
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"om.hits:3|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric("om_hits_total", 3.0);
    let labels = "service_name=\"api\",span_name=\"GET /users\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"";
    server.wait_metric(&format!("traces_span_metrics_calls_total{{{labels}}}"), 1.0);
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE traces_span_metrics_duration_milliseconds histogram\n"),
        "{text}"
    );
    assert!(
        !text.contains("trace_id="),
        "no exemplars in the text format"
    );
    let (status, open) = ssfd_e2e::http_get_with(
        &server.http,
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    );
    assert_eq!(status, 200);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE om_hits counter\nom_hits_total 3\n"),
        "{open}"
    );
    assert!(open.contains("# TYPE ssfd_received counter\n"), "{open}");
    assert!(
        open.contains(&format!("traces_span_metrics_duration_milliseconds_bucket{{{labels},le=\"8\"}} 1 # {{trace_id=\"00000000000000000000000000001234\"}} 7.5 ")),
        "{open}"
    );
    assert!(
        open.contains(&format!(
            "traces_span_metrics_calls_total{{{labels}}} 1 # {{trace_id=\"00000000000000000000000000001234\"}} 1 "
        )),
        "{open}"
    );
}

#[test]
fn remote_write_reaches_a_real_prometheus_with_labels() {
    let prometheus = start_prometheus_with("", &["--web.enable-remote-write-receiver"]);
    let server = Server::start(&format!(
        "interval: 1s\nhostname: box-7\nmetric_sinks:\n  - kind: prometheus_remote_write\n    name: rw\n    config:\n      url: http://{}/api/v1/write\n      external_labels: {{cluster: c1}}\n",
        prometheus.address
    ));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = server.addr("statsd udp");
    let mut lines = vec![
        "rw.hits:3|c|#env:prod".to_string(),
        "rw.temp:21.5|g|#room:lab".to_string(),
        "rw.users:ann|s".to_string(),
        "rw.users:bob|s".to_string(),
        "rw.users:cy|s".to_string(),
    ];
    lines.extend((1..=1000).map(|v| format!("rw.latency:{v}|ms|#route:home")));
    for chunk in lines.chunks(20) {
        socket.send_to(chunk.join("\n").as_bytes(), statsd).unwrap();
    }
    wait_query(
        &prometheus,
        "rw_hits_total{env=\"prod\",host=\"box-7\",cluster=\"c1\"}",
        3.0,
        0.0,
    );
    wait_query(&prometheus, "rw_temp{room=\"lab\"}", 21.5, 0.0);
    wait_query(&prometheus, "rw_users", 3.0, 0.0);
    wait_query(
        &prometheus,
        "rw_latency{quantile=\"0.99\",route=\"home\"}",
        990.0,
        10.0,
    );
    wait_query(&prometheus, "rw_latency_count", 1000.0, 0.0);
    // later intervals add to the cumulative counter
    socket.send_to(b"rw.hits:4|c|#env:prod", statsd).unwrap();
    wait_query(&prometheus, "rw_hits_total{env=\"prod\"}", 7.0, 0.0);
    assert!(
        server.metric("ssfd_sink_sent_total{sink=\"rw\",kind=\"prometheus_remote_write\"}") > 0.0
    );
    assert_eq!(
        server.metric("ssfd_sink_failures_total{sink=\"rw\",kind=\"prometheus_remote_write\"}"),
        0.0
    );
}

/// SPEC 4.4's span-name cap is one cap for the RED metrics and the OTel span metrics:
/// both overflow the same names, and a name idle for `prometheus_expiry` frees its
/// place in both (the RED metrics' cap used to keep every name for good).
#[test]
fn one_span_name_cap_for_red_and_otel_span_metrics() {
    use prost::Message;
    let server = Server::start("interval: 1s\nprometheus_expiry: 2s\n");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |id: i64, name: &str| {
        let span = ssfd_wire::ssf::SsfSpan {
            trace_id: id,
            id,
            start_timestamp: 1_800_000_000_000_000_000,
            end_timestamp: 1_800_000_000_001_000_000,
            service: "capsvc".into(),
            name: name.into(),
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    };
    // more names than the cap of 1,000: both views overflow
    for i in 0..1100 {
        send(i + 1, &format!("op{i}"));
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let red_overflow =
        "ssf_span_calls_total{error=\"false\",name=\"ssfd_overflow\",service=\"capsvc\"}";
    let otel_overflow = "traces_span_metrics_calls_total{service_name=\"capsvc\",span_name=\"ssfd_overflow\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric(red_overflow) < 1.0 || server.metric(otel_overflow) < 1.0 {
        assert!(Instant::now() < deadline, "no overflow series");
        std::thread::sleep(Duration::from_millis(100));
    }
    // every name idles past the expiry; a new one then takes a place in both views
    std::thread::sleep(Duration::from_secs(4));
    send(5000, "fresh");
    let red = "ssf_span_calls_total{error=\"false\",name=\"fresh\",service=\"capsvc\"}";
    let otel = "traces_span_metrics_calls_total{service_name=\"capsvc\",span_name=\"fresh\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric(red) < 1.0 || server.metric(otel) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "fresh: RED {}, OTel {}",
            server.metric(red),
            server.metric(otel)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
