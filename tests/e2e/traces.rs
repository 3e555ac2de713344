//! Traces end to end (issue 4, first part): spans sent out of order, children before
//! parents, come back as one joined tree with their logs and metrics, also after a
//! restart of the binary on the same data_dir; bad and unknown ids get 400 and 404.

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn span(id: i64, parent: i64, start_ms: i64, service: &str, name: &str) -> SsfSpan {
    SsfSpan {
        trace_id: 4242,
        id,
        parent_id: parent,
        start_timestamp: 1_700_000_000_000_000_000 + start_ms * 1_000_000,
        end_timestamp: 1_700_000_000_000_000_000 + (start_ms + 10) * 1_000_000,
        service: service.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn tree(node: &serde_json::Value, depth: usize, out: &mut Vec<String>) {
    out.push(format!(
        "{}{} {}",
        "  ".repeat(depth),
        node["service"].as_str().unwrap(),
        node["name"].as_str().unwrap()
    ));
    for child in node["children"].as_array().unwrap() {
        tree(child, depth + 1, out);
    }
}

fn wait_trace(server: &Server, id: &str, spans: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get(&format!("/api/v1/traces/{id}"));
        if status == 200 {
            let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
            if trace["span_count"].as_u64() == Some(spans) {
                return trace;
            }
        }
        assert!(Instant::now() < deadline, "trace {id}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const WANT: [&str; 4] = [
    "web GET /checkout",
    "  api authorize",
    "    db SELECT",
    "  api charge",
];

#[test]
fn out_of_order_spans_join_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}interval: 1s\n", ssfd_e2e::port_zero_config(dir.path()));
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let mut db = span(4, 2, 3, "db", "SELECT");
    db.metrics.push(SsfSample {
        name: "sql".into(),
        message: "slow query".into(),
        status: 1,
        ..Default::default()
    });
    db.metrics.push(SsfSample {
        metric: 1,
        name: "rows".into(),
        value: 12.0,
        ..Default::default()
    });
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for span in [
        db,
        span(3, 1, 20, "api", "charge"),
        span(2, 1, 1, "api", "authorize"),
    ] {
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    let partial = wait_trace(&server, "4242", 3);
    assert_eq!(
        partial["complete"], false,
        "children before their parent: orphans until it comes"
    );
    socket
        .send_to(
            &span(1, 0, 0, "web", "GET /checkout").encode_to_vec(),
            server.addr("ssf udp"),
        )
        .unwrap();
    let trace = wait_trace(&server, "4242", 4);
    assert_eq!(trace["complete"], true);
    assert_eq!(trace["orphan_count"], 0);
    assert_eq!(trace["services"], serde_json::json!(["api", "db", "web"]));
    assert_eq!(trace["duration_ns"], 30_000_000);
    let mut lines = Vec::new();
    tree(&trace["root"], 0, &mut lines);
    assert_eq!(lines, WANT);
    let db_span = &trace["root"]["children"][0]["children"][0];
    assert_eq!(db_span["logs"][0]["message"], "slow query");
    assert_eq!(db_span["logs"][0]["severity"], "warn");
    assert_eq!(db_span["metrics"][0]["name"], "rows");
    let (status, body) = server.get("/api/v1/traces/0000000000001092");
    assert_eq!(status, 200, "16 hex digits name the same trace: {body}");
    let (status, body) = server.get("/api/v1/traces/not-an-id");
    assert_eq!(status, 400);
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(server.get("/api/v1/traces/999").0, 404);
    let (_, services) = server.get("/api/v1/services");
    assert_eq!(services, r#"{"services":["api","db","web"]}"#);
    let (_, operations) = server.get("/api/v1/services/api/operations");
    assert_eq!(operations, r#"{"operations":["authorize","charge"]}"#);
    assert_eq!(server.get("/api/v1/services/nope/operations").0, 404);
    // a quiet store still writes its block within a quarter second or so
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("ssfd_store_bytes{store=\"spans\"}") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the pending block was never written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.terminate().success());

    let restarted = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let again = wait_trace(&restarted, "4242", 4);
    let mut lines = Vec::new();
    tree(&again["root"], 0, &mut lines);
    assert_eq!(lines, WANT, "spans survive a restart");
}
