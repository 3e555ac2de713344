//! Clients written by others (issue 2 point 6): Datadog's DogStatsD client and the
//! `statsd` package over UDP and TCP, and `grpcio` with stubs generated from our protos.
//! Counters prove every item arrived and was classified right.

use ssfd_e2e::{Server, python};

fn worker(kind: &str) -> String {
    format!("ssfd_worker_received_total{{kind=\"{kind}\"}}")
}

fn host_port(address: &str) -> (&str, &str) {
    address.rsplit_once(':').unwrap()
}

#[test]
fn datadog_dogstatsd_client() {
    let server = Server::start("");
    let (host, port) = host_port(server.addr("statsd udp"));
    let sent = python("dogstatsd_client.py", &[host, port]);
    assert_eq!(
        sent.trim(),
        r#"{"counter": 4, "gauge": 2, "histogram": 5, "timer": 2, "set": 3, "event": 2, "status": 2, "log": 1}"#
    );
    server.wait_metric(
        "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}",
        20.0,
    );
    for (kind, count) in [
        ("counter", 4.0),
        ("gauge", 2.0),
        ("histogram", 5.0),
        ("timer", 2.0),
        ("set", 3.0),
        ("event", 2.0),
        ("status", 2.0),
        ("log", 1.0),
    ] {
        server.wait_metric(&worker(kind), count);
    }
    let (_, metrics) = server.get("/metrics");
    assert!(
        !metrics.contains("ssfd_rejected_total{"),
        "nothing rejected:\n{metrics}"
    );
}

#[test]
fn statsd_package_client_over_udp_and_tcp() {
    let server = Server::start("");
    let (host, udp) = host_port(server.addr("statsd udp"));
    let (_, tcp) = host_port(server.addr("statsd tcp"));
    python("statsd_client.py", &[host, udp, tcp]);
    server.wait_metric(
        "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}",
        12.0,
    );
    server.wait_metric(
        "ssfd_received_total{listener=\"statsd\",protocol=\"tcp\"}",
        3.0,
    );
    server.wait_metric(&worker("counter"), 7.0);
    server.wait_metric(&worker("gauge"), 2.0);
    server.wait_metric(&worker("timer"), 4.0);
    server.wait_metric(&worker("set"), 2.0);
    let (_, metrics) = server.get("/metrics");
    assert!(
        !metrics.contains("ssfd_rejected_total{"),
        "nothing rejected:\n{metrics}"
    );
}

#[test]
fn grpcio_client_with_stubs_from_our_protos() {
    let server = Server::start("");
    let summary = python(
        "grpc_client.py",
        &[server.addr("grpc tcp"), server.addr("grpc tcp 2")],
    );
    assert_eq!(
        summary.trim(),
        r#"{"invalid": "INVALID_ARGUMENT", "garbage": "INVALID_ARGUMENT", "stream": [95, 5], "packet": "OK", "health": ["SERVING", "SERVING"], "health_second": "SERVING"}"#
    );
    let received = "ssfd_received_total{listener=\"grpc\",protocol=\"grpc\"}";
    server.wait_metric(received, 4.0 + 1.0 + 100.0 + 3.0 + 1.0);
    server.wait_metric(&worker("span"), 3.0 + 95.0 + 1.0);
    // one sample counter, one DogStatsD counter, and ssf.span.calls for each valid span
    server.wait_metric(&worker("counter"), 2.0 + 99.0);
    server.wait_metric(&worker("histogram"), 99.0);
    server.wait_metric(&worker("gauge"), 2.0);
    server.wait_metric(&worker("log"), 1.0);
    let rejected = |reason: &str| {
        server.metric(&format!(
            "ssfd_rejected_total{{listener=\"grpc\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(rejected("invalid_span"), 6.0);
    assert_eq!(rejected("decode"), 1.0);
    assert_eq!(rejected("parse"), 1.0);
}
