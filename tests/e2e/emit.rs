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
