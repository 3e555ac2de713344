//! The service map (issue 20 point 3, the single-node part): parent → child calls
//! between services in the stored traces, whatever order the spans arrive in, at
//! `/api/v1/dependencies` and Jaeger's `/api/dependencies`.

use prost::Message;
use serde_json::{Value, json};
use ssfd_e2e::{Server, now_ns};
use std::time::{Duration, Instant};

#[test]
fn the_service_map_in_ssfds_and_jaegers_format() {
    let server = Server::start("");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = now_ns() - 60_000_000_000;
    let span = |trace: i64, id: i64, parent: i64, service: &str, ms: i64, error: bool| {
        ssfd_wire::ssf::SsfSpan {
            trace_id: trace,
            id,
            parent_id: parent,
            start_timestamp: base + id,
            end_timestamp: base + id + ms * 1_000_000,
            service: service.into(),
            name: "op".into(),
            error,
            ..Default::default()
        }
    };
    // children before their parents; one trace's api span fails
    for packet in [
        span(1, 3, 2, "db", 5, false),
        span(1, 2, 1, "api", 20, false),
        span(1, 1, 0, "web", 30, false),
        span(2, 12, 11, "api", 40, true),
        span(2, 11, 0, "web", 50, false),
    ] {
        socket
            .send_to(&packet.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let map = loop {
        let (status, body) = server.get("/api/v1/dependencies");
        let map: Value = serde_json::from_str(&body).unwrap_or_default();
        // both traces whole: the web → api edge has both calls
        if status == 200 && map["dependencies"][1]["call_count"] == 2 {
            break map;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        map["dependencies"],
        json!([
            {"parent": "api", "child": "db", "call_count": 1, "error_count": 0,
             "p50_ns": 5_000_000, "p99_ns": 5_000_000},
            {"parent": "web", "child": "api", "call_count": 2, "error_count": 1,
             "p50_ns": 20_000_000, "p99_ns": 40_000_000},
        ])
    );
    // a window that holds none of the traces
    let (_, empty) = server.get("/api/v1/dependencies?start=now-10s");
    assert_eq!(
        serde_json::from_str::<Value>(&empty).unwrap()["dependencies"],
        json!([])
    );
    let (status, _) = server.get("/api/v1/dependencies?start=yesterday");
    assert_eq!(status, 400);
    let (status, body) = server.get("/api/dependencies?lookback=3600000");
    assert_eq!(status, 200, "{body}");
    let jaeger: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        jaeger["data"],
        json!([
            {"parent": "api", "child": "db", "callCount": 1},
            {"parent": "web", "child": "api", "callCount": 2},
        ])
    );
    let (status, _) = server.get("/api/dependencies?endTs=soon");
    assert_eq!(status, 400);
    // the OTel service-graph metrics, for Grafana's service graph from a scrape
    server.wait_metric(
        "traces_service_graph_request_total{client=\"web\",server=\"api\"}",
        2.0,
    );
    assert_eq!(
        server.metric("traces_service_graph_request_failed_total{client=\"web\",server=\"api\"}"),
        1.0
    );
    assert_eq!(
        server.metric("traces_service_graph_request_total{client=\"api\",server=\"db\"}"),
        1.0
    );
    assert_eq!(
        server.metric(
            "traces_service_graph_request_server_seconds_bucket{client=\"web\",server=\"api\",le=\"0.05\"}"
        ),
        2.0,
        "20 ms and 40 ms"
    );
    assert_eq!(
        server.metric(
            "traces_service_graph_request_server_seconds_count{client=\"api\",server=\"db\"}"
        ),
        1.0
    );
}
