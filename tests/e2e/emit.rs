//! `ssfd emit` against a running server: a counter, a gauge, a timer and a span over
//! UDP, and the same over gRPC.

use ssfd_e2e::{Server, ssfd_binary};
use std::process::Command;

fn emit(args: &[&str]) {
    let output = Command::new(ssfd_binary())
        .arg("emit")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "emit {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn worker(kind: &str) -> String {
    format!("ssfd_worker_received_total{{kind=\"{kind}\"}}")
}

#[test]
fn emit_over_udp() {
    let server = Server::start("");
    let statsd = format!("udp://{}", server.addr("statsd udp"));
    let ssf = format!("udp://{}", server.addr("ssf udp"));
    emit(&[
        "--hostport",
        &statsd,
        "--name",
        "e.count",
        "--count",
        "3",
        "--tag",
        "a:b",
    ]);
    // a negative value, as Go's flag package reads it
    emit(&["-hostport", &statsd, "-name", "e.gauge", "-gauge", "-2.5"]);
    emit(&[
        "--hostport",
        &statsd,
        "--name",
        "e.timer",
        "--timing",
        "250ms",
    ]);
    emit(&[
        "--hostport",
        &ssf,
        "--ssf",
        "--span-service",
        "svc",
        "--span-name",
        "op",
        "--name",
        "e.t",
        "--timing",
        "5ms",
    ]);
    // the span adds its RED metrics: ssf.span.calls and ssf.span.duration_ms
    server.wait_metric(&worker("counter"), 2.0);
    server.wait_metric(&worker("gauge"), 1.0);
    server.wait_metric(&worker("timer"), 1.0);
    server.wait_metric(&worker("histogram"), 2.0);
    server.wait_metric(&worker("span"), 1.0);
    assert_eq!(
        server.metric("ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}"),
        3.0
    );
    assert_eq!(
        server.metric("ssfd_received_total{listener=\"ssf\",protocol=\"udp\"}"),
        1.0
    );
}

#[test]
fn emit_over_grpc() {
    let server = Server::start("");
    let grpc = format!("tcp://{}", server.addr("grpc tcp 2"));
    emit(&[
        "--grpc",
        "--hostport",
        &grpc,
        "--name",
        "g.count",
        "--count",
        "1",
    ]);
    emit(&[
        "--grpc",
        "--hostport",
        &grpc,
        "--name",
        "g.gauge",
        "--gauge",
        "1",
    ]);
    emit(&[
        "--grpc",
        "--hostport",
        &grpc,
        "--name",
        "g.timer",
        "--timing",
        "1s",
    ]);
    emit(&[
        "--grpc",
        "--ssf",
        "--hostport",
        &grpc,
        "--span-service",
        "s",
        "--span-name",
        "n",
        "--trace-id",
        "9",
    ]);
    server.wait_metric(&worker("counter"), 2.0);
    server.wait_metric(&worker("gauge"), 1.0);
    server.wait_metric(&worker("timer"), 1.0);
    server.wait_metric(&worker("histogram"), 1.0);
    server.wait_metric(&worker("span"), 1.0);
    assert_eq!(
        server.metric("ssfd_received_total{listener=\"grpc\",protocol=\"grpc\"}"),
        4.0
    );
}

#[test]
fn nested_commands_form_one_trace() {
    let server = Server::start("");
    let ssf = format!("udp://{}", server.addr("ssf udp"));
    let binary = ssfd_binary();
    let binary = binary.to_str().unwrap();
    // outer times `ssfd emit ... --command -- sh -c 'exit 3'`, which inherits the
    // trace: two spans, the inner one the outer's child, failed
    let output = Command::new(binary)
        .args([
            "emit",
            "--ssf",
            "-hostport",
            &ssf,
            "--span-service",
            "deploy",
            "--span-name",
            "outer",
            "--trace-id",
            "4711",
            "--command",
            "--",
            binary,
            "emit",
            "--ssf",
            "--hostport",
            &ssf,
            "-span_service",
            "deploy",
            "--name",
            "inner.duration",
            "--command",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "emit exits with its command's status, as veneur-emit"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let trace: serde_json::Value = loop {
        let (status, body) = server.get("/api/v1/traces/4711");
        if status == 200 {
            let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
            if trace["span_count"] == 2 {
                break trace;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(trace["complete"], true);
    let outer = &trace["root"];
    assert_eq!(outer["name"], "outer");
    let inner = &outer["children"][0];
    assert_eq!(inner["name"], "sh", "the command's name");
    assert_eq!(inner["error"], true, "exit 3");
    assert_eq!(
        outer["error"], true,
        "its command (the inner emit) failed too"
    );
    assert!(inner["duration_ns"].as_i64().unwrap() > 0);
    assert!(outer["duration_ns"].as_i64() >= inner["duration_ns"].as_i64());
    assert_eq!(
        inner["metrics"][0]["name"], "inner.duration",
        "the timer rides along"
    );
}

/// The server turns transparent huge pages off for itself only: `emit --command` runs
/// the user's program with the huge-page setting it was given.
#[test]
fn emit_command_keeps_the_callers_huge_page_setting() {
    let mine = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(expected) = mine.lines().find(|l| l.starts_with("THP_enabled:")) else {
        eprintln!("this kernel does not report THP_enabled: nothing to check");
        return;
    };
    let server = Server::start("");
    let ssf = format!("udp://{}", server.addr("ssf udp"));
    // the command fails (and so does emit) unless it sees the caller's setting
    let script = format!("grep -qx '{expected}' /proc/self/status");
    emit(&[
        "--ssf",
        "--hostport",
        &ssf,
        "--span-service",
        "thp",
        "--span-name",
        "check",
        "--command",
        "--",
        "sh",
        "-c",
        &script,
    ]);
}

/// What one `ssfd emit` sends to a UDP socket of the test's own.
fn captured(args: &[&str]) -> (Vec<u8>, String) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let hostport = format!("udp://{}", socket.local_addr().unwrap());
    let output = Command::new(ssfd_binary())
        .args(["emit", "-hostport", &hostport])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "emit {args:?}: {stderr}");
    let mut buffer = vec![0; 65536];
    let n = socket.recv(&mut buffer).unwrap();
    buffer.truncate(n);
    (buffer, stderr)
}

/// veneur-emit's event and service-check flags, span times and `-debug`, in its
/// single-dash spelling, byte for byte on the wire; then a real server takes them.
#[test]
fn emit_has_veneur_emits_event_check_and_span_time_flags() {
    let (event, debug) = captured(&[
        "-mode",
        "event",
        "-e_title",
        "T",
        "-e_text",
        "a\nb",
        "-e_time",
        "1700000000",
        "-e_hostname",
        "h1",
        "-e_aggr_key",
        "k1",
        "-e_priority",
        "low",
        "-e_alert_type",
        "warning",
        "-e_source_type",
        "src",
        "-e_event_tags",
        "x:1,y:2",
        "-debug",
    ]);
    let line = "_e{1,4}:T|a\\nb|d:1700000000|h:h1|p:low|t:warning|k:k1|s:src|#x:1,y:2";
    assert_eq!(String::from_utf8(event).unwrap(), line);
    assert!(debug.contains(line), "-debug prints what it sends: {debug}");
    let (check, _) = captured(&[
        "-mode",
        "sc",
        "-sc_name",
        "chk",
        "-sc_status",
        "2",
        "-sc_time",
        "2023-11-14T22:13:20Z",
        "-sc_hostname",
        "h2",
        "-sc_tags",
        "t:1",
        "-sc_msg",
        "down",
    ]);
    assert_eq!(
        String::from_utf8(check).unwrap(),
        "_sc|chk|2|d:1700000000|h:h2|#t:1|m:down"
    );
    // -tag stands in for the event's own tags
    let (event, _) = captured(&["-mode", "event", "-e_title", "u", "-tag", "env:prod"]);
    assert_eq!(String::from_utf8(event).unwrap(), "_e{1,0}:u||#env:prod");
    // span times: milliseconds by their digits, and a date and time in UTC
    let (span, _) = captured(&[
        "-ssf",
        "-span_service",
        "s",
        "-span_name",
        "n",
        "-trace_id",
        "77",
        "-span_starttime",
        "1700000000000",
        "-span_endtime",
        "2023-11-14 22:13:21.5",
    ]);
    let span = <ssfd_wire::ssf::SsfSpan as prost::Message>::decode(&span[..]).unwrap();
    assert_eq!(
        (span.trace_id, span.start_timestamp, span.end_timestamp),
        (77, 1_700_000_000_000_000_000, 1_700_000_001_500_000_000)
    );
    for bad in [
        &["-mode", "event", "-e_title", "t", "-e_priority", "high"][..],
        &["-ssf", "-span_service", "s", "-span_starttime", "tomorrow"],
        &[
            "-ssf",
            "-span_service",
            "s",
            "-span_starttime",
            "20",
            "-span_endtime",
            "10",
        ],
    ] {
        let output = Command::new(ssfd_binary())
            .args(["emit", "-hostport", "udp://127.0.0.1:9"])
            .args(bad)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad:?} was accepted");
    }
    // a span ending so early that its start would be before i64 nanoseconds: an error,
    // not an overflow
    let output = Command::new(ssfd_binary())
        .args([
            "emit",
            "-hostport",
            "udp://127.0.0.1:9",
            "-ssf",
            "-span_service",
            "s",
        ])
        .args(["-span_endtime=-9.1e9", "-timing", "300000000s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("before the year 1678"), "{stderr}");

    // -f: the config's statsd listener is where it sends
    let server = Server::start("interval: 1s\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("emit.yaml");
    std::fs::write(
        &config,
        format!(
            "statsd_listen_addresses: [\"udp://{}\"]\n",
            server.addr("statsd udp")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    emit(&["-f", config, "-name", "fromconfig", "-count", "2"]);
    server.wait_metric("fromconfig_total", 2.0);
    // Go's flag package takes `-f=FILE` as well
    emit(&[
        &format!("-f={config}"),
        "-name",
        "fromconfigeq",
        "-count",
        "3",
    ]);
    server.wait_metric("fromconfigeq_total", 3.0);
    // the event and the check reach the server's log index with their fields
    emit(&[
        "-f",
        config,
        "-mode",
        "event",
        "-e_title",
        "deploy",
        "-e_text",
        "rolled out",
        "-e_alert_type",
        "warning",
        "-e_hostname",
        "h1",
        "-e_event_tags",
        "svc:web",
    ]);
    emit(&[
        "-f",
        config,
        "-mode",
        "sc",
        "-sc_name",
        "db.up",
        "-sc_status",
        "CRITICAL",
        "-sc_msg",
        "no answer",
        "-sc_tags",
        "svc:db",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, body) = server.get("/api/v1/logs?q=rolled");
        let (_, check) = server.get("/api/v1/logs?q=answer");
        if body.contains("\"severity\":\"warn\"") && check.contains("\"severity\":\"error\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "event {body} / check {check}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
