//! The aggregation engine end to end (issue 3): a scripted mix of every type, scope
//! and sample rate goes in over real sockets; the exact `/metrics` exposition and the
//! exact `jsonl` lines come out.

use ssfd_e2e::{Server, http_get, ssfd_binary};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIX: &str = "req:1|c|#b:2,a:1\n\
req:2|c|@0.5|#a:1,b:2\n\
req:3|c|#a:1\n\
temp:21.5|g|#room:x\n\
temp:19|g|#room:x\n\
lat:1:2:3:4|ms|#route:/a\n\
lat:10|ms|@0.5|#route:/b\n\
users:a|s\nusers:b|s\nusers:a|s\n\
scoped.c:5|c|#veneurglobalonly\n\
scoped.h:7|h|#veneurlocalonly\n\
_sc|db.up|2|#db:main|m:refused\n\
tenth:1|c|@0.1\ntenth:1|c|@0.1\n\
lat.errors:1|c|#route:/a\n";

fn flushed_part(metrics: &str) -> String {
    metrics
        .lines()
        .filter(|l| {
            !l.starts_with("ssfd_")
                && !l.starts_with("# HELP ssfd_")
                && !l.starts_with("# TYPE ssfd_")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

const EXPOSITION: &str = "\
# HELP db_up ssfd status db.up
# TYPE db_up gauge
db_up{db=\"main\"} 2
# HELP lat ssfd histogram lat
# TYPE lat summary
lat{route=\"/a\",quantile=\"0.5\"} 2
lat{route=\"/a\",quantile=\"0.75\"} 3
lat{route=\"/a\",quantile=\"0.99\"} 4
lat_sum{route=\"/a\"} 10
lat_count{route=\"/a\"} 4
lat{route=\"/b\",quantile=\"0.5\"} 10
lat{route=\"/b\",quantile=\"0.75\"} 10
lat{route=\"/b\",quantile=\"0.99\"} 10
lat_sum{route=\"/b\"} 20
lat_count{route=\"/b\"} 2
# HELP lat_errors_total ssfd counter lat.errors
# TYPE lat_errors_total counter
lat_errors_total{route=\"/a\"} 1
# HELP lat_max ssfd histogram lat max of the last interval
# TYPE lat_max gauge
lat_max{route=\"/a\"} 4
lat_max{route=\"/b\"} 10
# HELP lat_min ssfd histogram lat min of the last interval
# TYPE lat_min gauge
lat_min{route=\"/a\"} 1
lat_min{route=\"/b\"} 10
# HELP req_total ssfd counter req
# TYPE req_total counter
req_total{a=\"1\",b=\"2\"} 5
req_total{a=\"1\"} 3
# HELP scoped_c_total ssfd counter scoped.c
# TYPE scoped_c_total counter
scoped_c_total 5
# HELP scoped_h ssfd histogram scoped.h
# TYPE scoped_h summary
scoped_h{quantile=\"0.5\"} 7
scoped_h{quantile=\"0.75\"} 7
scoped_h{quantile=\"0.99\"} 7
scoped_h_sum 7
scoped_h_count 1
# HELP scoped_h_max ssfd histogram scoped.h max of the last interval
# TYPE scoped_h_max gauge
scoped_h_max 7
# HELP scoped_h_min ssfd histogram scoped.h min of the last interval
# TYPE scoped_h_min gauge
scoped_h_min 7
# HELP temp ssfd gauge temp
# TYPE temp gauge
temp{room=\"x\"} 19
# HELP tenth_total ssfd counter tenth
# TYPE tenth_total counter
tenth_total 20
# HELP users ssfd gauge users
# TYPE users gauge
users 2
";

/// (name, type, value, tags, message) of one jsonl line.
type Expected = (
    &'static str,
    &'static str,
    f64,
    &'static [&'static str],
    Option<&'static str>,
);
type Line = (String, String, f64, Vec<String>, Option<String>);

/// Every line the jsonl sink wrote.
const JSONL: &[Expected] = &[
    ("db.up", "status", 2.0, &["db:main"], Some("refused")),
    ("lat.50percentile", "gauge", 2.0, &["route:/a"], None),
    ("lat.50percentile", "gauge", 10.0, &["route:/b"], None),
    ("lat.75percentile", "gauge", 3.0, &["route:/a"], None),
    ("lat.75percentile", "gauge", 10.0, &["route:/b"], None),
    ("lat.99percentile", "gauge", 4.0, &["route:/a"], None),
    ("lat.99percentile", "gauge", 10.0, &["route:/b"], None),
    ("lat.count", "counter", 2.0, &["route:/b"], None),
    ("lat.count", "counter", 4.0, &["route:/a"], None),
    ("lat.errors", "counter", 1.0, &["route:/a"], None),
    ("lat.max", "gauge", 4.0, &["route:/a"], None),
    ("lat.max", "gauge", 10.0, &["route:/b"], None),
    ("lat.min", "gauge", 1.0, &["route:/a"], None),
    ("lat.min", "gauge", 10.0, &["route:/b"], None),
    ("req", "counter", 3.0, &["a:1"], None),
    ("req", "counter", 5.0, &["a:1", "b:2"], None),
    ("scoped.c", "counter", 5.0, &[], None),
    ("scoped.h.50percentile", "gauge", 7.0, &[], None),
    ("scoped.h.75percentile", "gauge", 7.0, &[], None),
    ("scoped.h.99percentile", "gauge", 7.0, &[], None),
    ("scoped.h.count", "counter", 1.0, &[], None),
    ("scoped.h.max", "gauge", 7.0, &[], None),
    ("scoped.h.min", "gauge", 7.0, &[], None),
    ("temp", "gauge", 19.0, &["room:x"], None),
    ("tenth", "counter", 20.0, &[], None),
    ("users", "gauge", 2.0, &[], None),
];

fn jsonl_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn scripted_mix_flushes_exactly() {
    let jsonl = tempfile::NamedTempFile::new().unwrap();
    let config = format!(
        "interval: 1s\nnum_workers: 1\nhostname: test-host\nmetric_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n",
        jsonl.path().display()
    );
    let server = Server::start(&config);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(MIX.as_bytes(), server.addr("statsd udp"))
        .unwrap();
    // one datagram, one worker: the whole mix lands in one interval
    let deadline = Instant::now() + Duration::from_secs(20);
    let exposition = loop {
        let (_, metrics) = server.get("/metrics");
        if metrics.contains("req_total") {
            break flushed_part(&metrics);
        }
        assert!(Instant::now() < deadline, "nothing flushed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exposition, EXPOSITION);
    let lines = jsonl_lines(jsonl.path());
    let mut got: Vec<Line> = lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["hostname"], "test-host");
            let timestamp = v["timestamp"].as_i64().unwrap();
            assert!(
                timestamp >= before && timestamp <= before + 30,
                "{timestamp}"
            );
            (
                v["name"].as_str().unwrap().to_string(),
                v["type"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
                v["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect(),
                v.get("message").map(|m| m.as_str().unwrap().to_string()),
            )
        })
        .collect();
    got.sort_by(|a, b| (&a.0, a.2.to_bits()).cmp(&(&b.0, b.2.to_bits())));
    let want: Vec<_> = JSONL
        .iter()
        .map(|(n, t, v, tags, m)| {
            (
                n.to_string(),
                t.to_string(),
                *v,
                tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                m.map(String::from),
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn counters_accumulate_across_intervals_and_jsonl_gets_every_interval() {
    let jsonl = tempfile::NamedTempFile::new().unwrap();
    let config = format!(
        "interval: 1s\nnum_workers: 1\nmetric_sinks:\n  - kind: jsonl\n    config: {{path: {}}}\n",
        jsonl.path().display()
    );
    let server = Server::start(&config);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for round in 1..=3 {
        socket
            .send_to(b"hits:2|c", server.addr("statsd udp"))
            .unwrap();
        server.wait_metric("hits_total", 2.0 * round as f64);
    }
    let hits = jsonl_lines(jsonl.path())
        .iter()
        .filter(|l| l.contains("\"name\":\"hits\""))
        .count();
    assert_eq!(hits, 3, "one line per interval that had samples");
}

#[test]
fn ssf_samples_are_aggregated_with_their_rates() {
    use prost::Message;
    use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample::Metric};
    let server = Server::start("interval: 1s\nnum_workers: 1\n");
    let span = SsfSpan {
        metrics: vec![
            SsfSample {
                metric: Metric::Counter as i32,
                name: "ssf.c".into(),
                value: 2.0,
                sample_rate: 0.5,
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Set as i32,
                name: "ssf.s".into(),
                message: "m1".into(),
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Set as i32,
                name: "ssf.s".into(),
                message: "m2".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    server.wait_metric("ssf_c_total", 4.0);
    server.wait_metric("ssf_s", 2.0);
}

/// `ssfd serve` without a file: the embedded default on its default ports.
#[test]
fn embedded_default_shows_a_counter_after_one_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(ssfd_binary())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let http = loop {
        let line = lines.next().expect("ssfd announces its listeners").unwrap();
        if let Some(address) = line.strip_prefix("listening http http://") {
            break address.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(http, "127.0.0.1:8127");
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"embedded.hits:7|c|#env:dev", "127.0.0.1:8126")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http_get(&http, "/metrics");
        if metrics.contains("embedded_hits_total{env=\"dev\"} 7\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no counter after one 10 s interval:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn spans_flush_red_and_indicator_metrics() {
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    let server = Server::start("interval: 1s\n");
    let span = SsfSpan {
        trace_id: 5,
        id: 5,
        start_timestamp: 1_000_000_000,
        end_timestamp: 1_250_000_000,
        service: "checkout".into(),
        name: "pay".into(),
        indicator: true,
        ..Default::default()
    };
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    server.wait_metric(
        "ssf_span_calls_total{error=\"false\",name=\"pay\",service=\"checkout\"}",
        1.0,
    );
    server.wait_metric(
        "ssf_span_duration_ms_sum{error=\"false\",name=\"pay\",service=\"checkout\"}",
        250.0,
    );
    server.wait_metric(
        "indicator_span_duration_ns_count{error=\"false\",service=\"checkout\"}",
        1.0,
    );
    server.wait_metric(
        "objective_span_duration_ns_max{error=\"false\",objective=\"pay\",service=\"checkout\"}",
        250_000_000.0,
    );
}

#[test]
fn max_series_folds_new_series_into_overflow_and_counts_them() {
    // series spread across workers by their whole key: the limit and "a name that has
    // series" hold for all of them, and each overflow series reaches /metrics once
    for workers in [1, 4] {
        let server = Server::start(&format!(
            "interval: 2s\nnum_workers: {workers}\nmax_series: 3\n"
        ));
        let lines: String = (0..10)
            .map(|i| format!("req:1|c|#id:{i}\n"))
            .collect::<String>()
            + "other:5|c\n";
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(lines.as_bytes(), server.addr("statsd udp"))
            .unwrap();
        // one /metrics body from after the flush that holds them all (the overflow count
        // is published before the sinks get the interval, the live series after)
        let deadline = Instant::now() + Duration::from_secs(15);
        let metrics = loop {
            let (_, body) = server.get("/metrics");
            let metric = |series| ssfd_e2e::parse_metric(&body, series);
            if metric("ssfd_series_overflow_total") == 8.0 && metric("ssfd_series") > 0.0 {
                break body;
            }
            assert!(Instant::now() < deadline, "{body}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let metric = |series| ssfd_e2e::parse_metric(&metrics, series);
        let live_req = metrics
            .lines()
            .filter(|l| l.starts_with("req_total{id="))
            .count();
        let other_live = metrics.lines().any(|l| l == "other_total 5");
        if workers == 1 {
            // one worker takes the lines in order: `other` comes past the limit
            assert_eq!((live_req, other_live), (3, false), "{metrics}");
        }
        // with several, their shares of the datagram are applied in parallel, so
        // `other` may take one of the three places before the last `req` series does
        assert_eq!(live_req + usize::from(other_live), 3, "{metrics}");
        assert_eq!(
            metric("req_total{ssfd_overflow=\"true\"}"),
            (10 - live_req) as f64,
            "{metrics}"
        );
        let expect_overflow = if other_live { 0.0 } else { 5.0 };
        assert_eq!(metric("ssfd_overflow_total"), expect_overflow, "{metrics}");
        let overflow_series = usize::from(!other_live) + 1;
        assert_eq!(
            metric("ssfd_series"),
            (3 + overflow_series) as f64,
            "three series plus one overflow series each ({workers} workers)"
        );
    }
}

#[test]
fn slos_flush_events_and_burn_rates_and_report_them() {
    use prost::Message;
    use ssfd_wire::ssf::SsfSpan;
    let server = Server::start(
        "interval: 1s\nslos:\n  - {name: pay, service: shop, span_name: checkout, objective: 0.9, latency_threshold: 100ms}\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // 8 good, 1 error, 1 slower than 100 ms, and one span of another name
    for (id, error, millis, name) in (1..=8).map(|i| (i, false, 20, "checkout")).chain([
        (9, true, 20, "checkout"),
        (10, false, 150, "checkout"),
        (11, true, 20, "browse"),
    ]) {
        let span = SsfSpan {
            trace_id: id,
            id,
            start_timestamp: 1_000_000_000,
            end_timestamp: 1_000_000_000 + millis * 1_000_000,
            error,
            service: "shop".into(),
            name: name.into(),
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    server.wait_metric("ssf_slo_events_total{good=\"true\",slo=\"pay\"}", 8.0);
    server.wait_metric("ssf_slo_events_total{good=\"false\",slo=\"pay\"}", 2.0);
    // (1 − 8/10) / (1 − 0.9) = 2
    server.wait_metric("ssf_slo_burn_rate{slo=\"pay\",window=\"5m\"}", 2.0);
    let (status, body) = server.get("/api/v1/slos");
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let slo = &report["slos"][0];
    assert_eq!(
        (
            slo["name"].as_str(),
            slo["good"].as_u64(),
            slo["total"].as_u64()
        ),
        (Some("pay"), Some(8), Some(10))
    );
    assert!((slo["ratio"].as_f64().unwrap() - 0.8).abs() < 1e-9);
    assert!(
        (slo["burn_rate"]["6h"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{body}"
    );
    // the same status from a terminal (SPEC 1: `ssfd query` prints SLO status)
    let output = Command::new(ssfd_binary())
        .args([
            "query",
            "--addr",
            &format!("http://{}", server.http),
            "slos",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("pay "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[..5], ["pay", "0.9000", "8", "10", "0.8000"], "{text}");
}

#[test]
fn statsd_sink_repeats_flushed_metrics() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = format!(
        "interval: 1s\nnum_workers: 1\nmetric_sinks:\n  - kind: statsd\n    name: repeat\n    config: {{address: \"udp://{}\"}}\n",
        receiver.local_addr().unwrap()
    );
    let server = Server::start(&config);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(
            b"rep.c:2|c|@0.5|#b:2,a:1\nrep.g:7|g\n_sc|rep.up|1|m:slow",
            server.addr("statsd udp"),
        )
        .unwrap();
    let mut buffer = [0u8; 2048];
    let n = receiver.recv(&mut buffer).unwrap();
    let mut lines: Vec<&str> = std::str::from_utf8(&buffer[..n]).unwrap().lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["_sc|rep.up|1|m:slow", "rep.c:4|c|#a:1,b:2", "rep.g:7|g"]
    );
}

#[test]
fn sigterm_flushes_the_open_interval_to_the_jsonl_sink() {
    let jsonl = tempfile::NamedTempFile::new().unwrap();
    let config = format!(
        "interval: 1h\nnum_workers: 1\nmetric_sinks:\n  - kind: jsonl\n    config: {{path: {}}}\n",
        jsonl.path().display()
    );
    let server = Server::start(&config);
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"last.words:3|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric("ssfd_worker_received_total{kind=\"counter\"}", 1.0);
    assert!(
        jsonl_lines(jsonl.path()).is_empty(),
        "no interval has ended yet"
    );
    assert!(server.terminate().success());
    let lines = jsonl_lines(jsonl.path());
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (line["name"].as_str(), line["value"].as_f64()),
        (Some("last.words"), Some(3.0))
    );
}
