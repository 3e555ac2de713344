//! Network sinks end to end (issue 5): the `datadog` sink's series, check-run and event
//! bodies as Veneur sends them, checked against Datadog's documented API format by a
//! local HTTP receiver; and isolation: with one receiver that hangs and one that
//! answers errors, a good sink still gets every interval, ingest loses nothing, and
//! the per-sink telemetry (sent, retries, dropped, failures, flush duration) tells.

use serde_json::{Value, json};
use ssfd_e2e::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Request {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, inflated when it says `Content-Encoding: deflate`.
    fn json(&self) -> Value {
        let body = if self.header("content-encoding") == Some("deflate") {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("zlib body");
            out
        } else {
            self.body.clone()
        };
        serde_json::from_slice(&body).expect("JSON body")
    }
}

enum Mode {
    Status(u16),
    Hang,
}

/// A local HTTP server that records every request and answers by `mode`.
struct Receiver {
    address: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

fn receiver(mode: Mode) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&requests);
    let mode = Arc::new(mode);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let kept = Arc::clone(&kept);
            let mode = Arc::clone(&mode);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let target = line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':') {
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    kept.lock().unwrap().push(Request {
                        target,
                        headers,
                        body,
                    });
                    match *mode {
                        Mode::Hang => std::thread::sleep(Duration::from_secs(3600)),
                        Mode::Status(status) => {
                            let answer =
                                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}");
                            if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Receiver { address, requests }
}

impl Receiver {
    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until some request's path starts with `path` and `check` accepts it.
    fn wait_for(&self, path: &str, check: impl Fn(&Request) -> bool) -> Request {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self
                .requests()
                .into_iter()
                .find(|r| r.target.starts_with(path) && check(r))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no request to {path}: {:?}",
                self.requests()
                    .iter()
                    .map(|r| &r.target)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn datadog_sink(name: &str, address: &str, extra: &str) -> String {
    format!(
        "  - kind: datadog\n    name: {name}\n    config:\n      api_key: k3y\n      api_hostname: http://{address}\n{extra}"
    )
}

#[test]
fn datadog_sink_sends_series_checks_and_events_as_veneur() {
    let datadog = receiver(Mode::Status(202));
    let server = Server::start(&format!(
        "interval: 2s\nhostname: box-9\npercentiles: [0.5]\naggregates: [max]\nmetric_sinks:\n{}",
        datadog_sink("dd", &datadog.address, "")
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = server.addr("statsd udp");
    for line in [
        "dd.hits:10|c|#env:prod",
        "dd.temp:21.5|g|#host:sensor-1,device:sda",
        "dd.lat:4|ms",
        "_sc|dd.db.up|2|#db:main|m:connection refused",
        "_e{6,10}:deploy|v2 shipped|t:warning|k:rel-2|p:low|#env:prod",
    ] {
        socket.send_to(line.as_bytes(), statsd).unwrap();
    }
    let series = datadog.wait_for("/api/v1/series?api_key=k3y", |r| {
        r.json()["series"]
            .as_array()
            .is_some_and(|s| s.iter().any(|m| m["metric"] == "dd.hits"))
    });
    assert_eq!(series.header("content-encoding"), Some("deflate"));
    assert_eq!(series.header("content-type"), Some("application/json"));
    let body = series.json();
    let find = |name: &str| {
        body["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap_or_else(|| panic!("{name} in {body}"))
            .clone()
    };
    let hits = find("dd.hits");
    let timestamp = hits["points"][0][0].as_f64().unwrap();
    assert!(timestamp > 1.7e9, "unix seconds: {hits}");
    assert_eq!(
        hits,
        json!({"metric": "dd.hits", "points": [[timestamp, 5.0]], "tags": ["env:prod"],
               "type": "rate", "host": "box-9", "interval": 2}),
        "a counter is a rate per second of the interval"
    );
    assert_eq!(
        find("dd.temp"),
        json!({"metric": "dd.temp", "points": [[timestamp, 21.5]], "tags": [],
               "type": "gauge", "host": "sensor-1", "device_name": "sda", "interval": 2})
    );
    assert_eq!(find("dd.lat.max")["type"], "gauge");
    assert_eq!(find("dd.lat.50percentile")["points"][0][1], 4.0);

    let checks = datadog.wait_for("/api/v1/check_run?api_key=k3y", |_| true);
    assert_eq!(
        checks.header("content-encoding"),
        None,
        "check_run is not compressed"
    );
    assert_eq!(
        checks.json(),
        json!([{"check": "dd.db.up", "status": 2, "host_name": "box-9",
                "timestamp": timestamp as i64, "tags": ["db:main"], "message": "connection refused"}])
    );
    let events = datadog.wait_for("/intake?api_key=k3y", |_| true);
    assert_eq!(events.header("content-encoding"), Some("deflate"));
    let event = &events.json()["events"]["api"][0];
    assert_eq!(event["msg_title"], "deploy");
    assert_eq!(event["msg_text"], "v2 shipped");
    assert_eq!(event["alert_type"], "warning");
    assert_eq!(event["aggregation_key"], "rel-2");
    assert_eq!(event["priority"], "low");
    assert_eq!(event["host"], "box-9");
    assert_eq!(event["tags"], json!(["env:prod"]));
    assert!(event["timestamp"].as_i64().unwrap() > 1_700_000_000);
}

#[test]
fn a_hanging_and_a_failing_sink_slow_nothing_else() {
    let good = receiver(Mode::Status(202));
    let failing = receiver(Mode::Status(500));
    let hanging = receiver(Mode::Hang);
    let sinks = [
        datadog_sink("good", &good.address, ""),
        datadog_sink("failing", &failing.address, "      max_retries: 2\n"),
        datadog_sink("hanging", &hanging.address, "      queue: 1\n"),
    ]
    .concat();
    let server = Server::start(&format!("interval: 1s\nmetric_sinks:\n{sinks}"));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = server.addr("statsd udp");
    // six intervals, each with its own counter and 200 lines
    for round in 0..6 {
        for _ in 0..10 {
            let datagram: Vec<String> = (0..20).map(|_| format!("iso.round{round}:1|c")).collect();
            socket
                .send_to(datagram.join("\n").as_bytes(), statsd)
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    server.wait_metric("ssfd_worker_received_total{kind=\"counter\"}", 1200.0);
    // every line of every round reaches the good sink (a round may straddle two
    // intervals: the rates over 1 s add up to its 200 lines)
    let total = |name: &str| -> f64 {
        good.requests()
            .iter()
            .filter(|r| r.target.starts_with("/api/v1/series"))
            .flat_map(|r| r.json()["series"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["metric"] == name)
            .map(|m| m["points"][0][1].as_f64().unwrap())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in 0..6 {
        let name = format!("iso.round{round}");
        while total(&name) < 200.0 {
            assert!(Instant::now() < deadline, "{name}: {}", total(&name));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(total(&name), 200.0, "{name}: every line once");
    }
    let metric = |family: &str, sink: &str| {
        server.metric(&format!("{family}{{sink=\"{sink}\",kind=\"datadog\"}}"))
    };
    assert!(metric("ssfd_sink_sent_total", "good") >= 6.0);
    assert_eq!(metric("ssfd_sink_failures_total", "good"), 0.0);
    assert_eq!(metric("ssfd_sink_dropped_total", "good"), 0.0);
    // the failing sink retried (2 per payload) and then gave up, counting its items
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric("ssfd_sink_failures_total", "failing") < 1.0 {
        assert!(Instant::now() < deadline, "no failure counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric("ssfd_sink_retries_total", "failing") >= 2.0);
    assert!(metric("ssfd_sink_dropped_total", "failing") >= 1.0);
    assert_eq!(metric("ssfd_sink_sent_total", "failing"), 0.0);
    assert!(failing.requests().len() >= 3, "first try and two retries");
    // the hanging sink holds one interval in flight and one queued; the rest are dropped
    assert_eq!(metric("ssfd_sink_sent_total", "hanging"), 0.0);
    assert!(metric("ssfd_sink_dropped_total", "hanging") >= 1.0);
    assert!(
        server
            .get("/metrics")
            .1
            .contains("ssfd_sink_flush_duration_seconds_count{sink=\"good\",kind=\"datadog\"}")
    );
    assert!(metric("ssfd_sink_flush_duration_seconds_count", "good") >= 6.0);
    assert_eq!(
        server.metric("ssfd_dropped_total{stage=\"ingest\",reason=\"queue_full\"}"),
        0.0
    );
}

#[test]
fn jsonl_span_sink_writes_each_span_with_its_trace_id() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let server = Server::start(&format!(
        "storage: {{max_bytes: 0}}\nspan_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n",
        path.display()
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut span = ssfd_wire::ssf::SsfSpan {
        trace_id: -5,
        id: 6,
        parent_id: 0,
        start_timestamp: 1_000,
        end_timestamp: 3_500,
        service: "web".into(),
        name: "GET /".into(),
        error: true,
        ..Default::default()
    };
    span.tags.insert("route".into(), "/".into());
    span.metrics.push(ssfd_wire::ssf::SsfSample {
        name: "log".into(),
        message: "hi".into(),
        ..Default::default()
    });
    socket
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no span written");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut value: Value = serde_json::from_str(&line).unwrap();
    // the log sample had no timestamp: it carries its time of receipt (SPEC 3.1)
    let received = value["logs"][0]["timestamp_ns"].take().as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert!(
        received > now - 60_000_000_000 && received <= now,
        "{received}"
    );
    assert_eq!(
        value,
        json!({
            "trace_id": "0000000000000000fffffffffffffffb", "id": "0000000000000006",
            "parent_id": "0000000000000000", "name": "GET /", "service": "web",
            "start_ns": 1000, "end_ns": 3500, "duration_ns": 2500, "error": true,
            "indicator": false, "tags": {"route": "/"}, "resource": {},
            "logs": [{"timestamp_ns": null, "service": "web",
                      "trace_id": "0000000000000000fffffffffffffffb", "span_id": "0000000000000006",
                      "name": "log", "message": "hi", "severity": "info", "tags": []}],
            "metrics": [],
        })
    );
}

/// `tests/python/otlp_receiver.py`, killed when dropped.
struct OtlpReceiver {
    child: std::process::Child,
    address: String,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn otlp_receiver() -> OtlpReceiver {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let out = dir.path().join("received.jsonl");
    let child = std::process::Command::new("python3")
        .arg(ssfd_e2e::root().join("tests/python/otlp_receiver.py"))
        .arg(&port_file)
        .arg(&out)
        .spawn()
        .expect("python3 (scripts/install-test-deps.sh installs the OTLP packages)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(&port_file)
            && !port.is_empty()
        {
            break port;
        }
        assert!(Instant::now() < deadline, "the OTLP receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    OtlpReceiver {
        child,
        address: format!("127.0.0.1:{port}"),
        out,
        _dir: dir,
    }
}

impl OtlpReceiver {
    fn received(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == kind)
            .map(|v| v["request"].clone())
            .collect()
    }
}

#[test]
fn otlp_sink_sends_spans_and_metrics_to_a_grpcio_receiver() {
    use prost::Message;
    let receiver = otlp_receiver();
    let server = Server::start(&format!(
        "interval: 1s\nspan_sinks:\n  - kind: otlp\n    name: collector\n    config: {{endpoint: '{0}'}}\nmetric_sinks:\n  - kind: otlp\n    name: collector\n    config: {{endpoint: '{0}'}}\n",
        receiver.address
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut root = ssfd_wire::ssf::SsfSpan {
        trace_id: 4242,
        id: 4242,
        start_timestamp: 1_800_000_000_000_000_000,
        end_timestamp: 1_800_000_000_050_000_000,
        service: "web".into(),
        name: "GET /x".into(),
        ..Default::default()
    };
    root.tags.insert("route".into(), "/x".into());
    let mut child = ssfd_wire::ssf::SsfSpan {
        trace_id: 4242,
        id: -7,
        parent_id: 4242,
        start_timestamp: 1_800_000_000_010_000_000,
        end_timestamp: 1_800_000_000_020_000_000,
        service: "db".into(),
        name: "select".into(),
        error: true,
        ..Default::default()
    };
    child.metrics.push(ssfd_wire::ssf::SsfSample {
        name: "sql".into(),
        message: "db slow".into(),
        timestamp: 1_800_000_000_015_000_000,
        ..Default::default()
    });
    for span in [&child, &root] {
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    socket
        .send_to(
            b"otlp.sink.count:3|c|#env:prod\notlp.sink.temp:7.5|g",
            server.addr("statsd udp"),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Value> = receiver
            .received("traces")
            .iter()
            .flat_map(|r| r["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|rs| {
                let service = rs["resource"]["attributes"][0]["value"]["stringValue"].clone();
                rs["scopeSpans"][0]["spans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |mut s| {
                        s["service"] = service.clone();
                        s
                    })
            })
            .collect();
        if spans.len() >= 2 {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans: {spans:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let find = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap().clone();
    let web = find("GET /x");
    assert_eq!(web["traceId"], "00000000000000000000000000001092");
    assert_eq!(web["spanId"], "0000000000001092");
    assert_eq!(web["service"], "web");
    assert_eq!(web["parentSpanId"], Value::Null, "a root has no parent");
    assert_eq!(web["startTimeUnixNano"], "1800000000000000000");
    assert_eq!(
        web["attributes"],
        json!([{"key": "route", "value": {"stringValue": "/x"}}])
    );
    let db = find("select");
    assert_eq!(db["spanId"], "fffffffffffffff9", "-7 as a u64");
    assert_eq!(db["parentSpanId"], "0000000000001092");
    assert_eq!(db["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(db["events"][0]["name"], "sql");
    assert_eq!(db["events"][0]["timeUnixNano"], "1800000000015000000");
    assert_eq!(
        db["events"][0]["attributes"],
        json!([{"key": "message", "value": {"stringValue": "db slow"}}])
    );
    let metrics = loop {
        let metrics: Vec<Value> = receiver
            .received("metrics")
            .iter()
            .flat_map(|r| {
                r["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        if metrics.iter().any(|m| m["name"] == "otlp.sink.count")
            && metrics.iter().any(|m| m["name"] == "otlp.sink.temp")
        {
            break metrics;
        }
        assert!(Instant::now() < deadline, "metrics: {metrics:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = metrics
        .iter()
        .find(|m| m["name"] == "otlp.sink.count")
        .unwrap();
    assert_eq!(count["sum"]["isMonotonic"], true);
    assert_eq!(
        count["sum"]["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_DELTA"
    );
    assert_eq!(count["sum"]["dataPoints"][0]["asDouble"], 3.0);
    assert_eq!(
        count["sum"]["dataPoints"][0]["attributes"],
        json!([{"key": "env", "value": {"stringValue": "prod"}}])
    );
    let temp = metrics
        .iter()
        .find(|m| m["name"] == "otlp.sink.temp")
        .unwrap();
    assert_eq!(temp["gauge"]["dataPoints"][0]["asDouble"], 7.5);
    // counted once the receiver's answer is back, which may be after it shows the data
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("ssfd_sink_sent_total{sink=\"collector\",kind=\"otlp\"}") < 4.0 {
        assert!(Instant::now() < deadline, "sent never reached 4");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metric_sink_routing_decides_which_sink_gets_what() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.jsonl");
    let rest = dir.path().join("rest.jsonl");
    let server = Server::start(&format!(
        "interval: 1s\nfeatures: {{enable_metric_sink_routing: true}}\n\
         metric_sinks:\n  - kind: jsonl\n    name: app\n    config: {{path: {}}}\n  - kind: jsonl\n    name: rest\n    config: {{path: {}}}\n  - kind: blackhole\n    name: void\n\
         metric_sink_routing:\n  - name: apps\n    match:\n      - name: {{kind: prefix, value: app.}}\n        tags: [{{kind: exact, value: \"env:prod\"}}]\n    sinks: {{matched: [app], not_matched: [rest]}}\n  - name: all\n    match: [{{name: {{kind: any}}}}]\n    sinks: {{matched: [void]}}\n",
        app.display(),
        rest.display()
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(
            b"app.hits:1|c|#env:prod\napp.hits:1|c|#env:dev\nsys.load:2|g",
            server.addr("statsd udp"),
        )
        .unwrap();
    let names = |path: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                format!("{} {}", v["name"].as_str().unwrap(), v["tags"])
            })
            .collect();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while names(&rest).len() < 2 || names(&app).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?} {:?}",
            names(&app),
            names(&rest)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(names(&app), [r#"app.hits ["env:prod"]"#]);
    assert_eq!(names(&rest), [r#"app.hits ["env:dev"]"#, r#"sys.load []"#]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("ssfd_sink_sent_total{sink=\"void\",kind=\"blackhole\"}") < 3.0 {
        assert!(
            Instant::now() < deadline,
            "the blackhole counts what it swallows"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_honours_shutdown_timeout_with_a_hung_sink() {
    let hanging = receiver(Mode::Hang);
    let server = Server::start(&format!(
        "interval: 1s\nshutdown_timeout: 2s\nmetric_sinks:\n{}",
        datadog_sink("stuck", &hanging.address, "")
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"hung.c:1|c", server.addr("statsd udp"))
        .unwrap();
    // the sink is now stuck in a request that never gets an answer
    hanging.wait_for("/api/v1/series", |_| true);
    let started = Instant::now();
    let stderr = std::sync::Arc::clone(&server.stderr);
    // without the deadline the sink's retries (10 s each) would hold the exit past the
    // harness's 30 s
    assert!(server.terminate().success(), "exit 0");
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    // what was still undelivered is counted as dropped (reason shutdown) and said
    let said = stderr.lock().unwrap().join("\n");
    assert!(
        said.contains("sink still delivering at shutdown; its items are dropped")
            && said.contains("left=1"),
        "{said}"
    );
}

#[test]
fn several_hung_sinks_share_one_shutdown_timeout() {
    // three sinks stuck in requests: they wait out one shutdown_timeout together, not
    // one each in turn (9 s here)
    let hanging = receiver(Mode::Hang);
    let sinks: String = (1..=3)
        .map(|i| datadog_sink(&format!("stuck{i}"), &hanging.address, ""))
        .collect();
    let server = Server::start(&format!(
        "interval: 1s\nshutdown_timeout: 3s\nmetric_sinks:\n{sinks}"
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"hung.c:1|c", server.addr("statsd udp"))
        .unwrap();
    hanging.wait_for("/api/v1/series", |_| true);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let stderr = std::sync::Arc::clone(&server.stderr);
    assert!(server.terminate().success(), "exit 0");
    let took = started.elapsed();
    let said = stderr.lock().unwrap().join("\n");
    assert_eq!(
        said.matches("sink still delivering at shutdown").count(),
        3,
        "{said}"
    );
    assert!(took < Duration::from_secs(8), "exit took {took:?}: {said}");
}

/// SPEC 7: the exit comes within `shutdown_timeout` of the signal even when it is
/// shorter than the listeners' grace for connections a peer keeps open (2 s).
#[test]
fn a_short_shutdown_timeout_bounds_the_listeners_grace() {
    let server = Server::start("interval: 1s\nshutdown_timeout: 500ms\n");
    // peers that keep their connections open: a gRPC client that did not finish its
    // handshake, and a framed SSF stream
    let grpc = std::net::TcpStream::connect(server.addr("grpc tcp")).unwrap();
    let ssf = std::net::TcpStream::connect(server.addr("ssf tcp")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert!(server.terminate().success(), "exit 0");
    let took = started.elapsed();
    drop((grpc, ssf));
    assert!(
        took < Duration::from_millis(1500),
        "exit took {took:?} with shutdown_timeout 500ms"
    );
}
