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
    emit(&["-hostport", &statsd, "-name", "e.gauge", "-gauge", "2.5"]);
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
