//! The web UI and real clients end to end (issue 4): a three-service trace with logs
//! sent through the Python `grpcio` SSF client and `ssfd emit`, children before
//! parents, comes back as the exact expected tree; headless Chromium renders it at `/`,
//! expands a span to its logs, finds a log and links it to its trace; a screenshot is
//! kept under `docs/`. Also a trace of 100,000 spans is stored and served.

use serde_json::{Value, json};
use ssfd_e2e::{Server, now_ns, python, root, ssfd_binary};
use std::time::{Duration, Instant};

fn tree(node: &Value, depth: usize, out: &mut Vec<String>) {
    let mark = if node["error"] == true { " !" } else { "" };
    let logs: Vec<&str> = node["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    out.push(format!(
        "{}{} {}{mark} {logs:?}",
        "  ".repeat(depth),
        node["service"].as_str().unwrap(),
        node["name"].as_str().unwrap()
    ));
    for child in node["children"].as_array().unwrap() {
        tree(child, depth + 1, out);
    }
}

fn wait_trace(server: &Server, id: i64, spans: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get(&format!("/api/v1/traces/{id}"));
        if status == 200 {
            let trace: Value = serde_json::from_str(&body).unwrap();
            if trace["span_count"].as_u64() == Some(spans) {
                return trace;
            }
        }
        assert!(Instant::now() < deadline, "trace {id}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn real_clients_out_of_order_then_the_web_ui_in_chromium() {
    let server = Server::start("");
    let grpc = server.addr("grpc tcp").to_string();
    let trace_id: i64 = 7_000_000_000_000_000_001;
    // the Python spans sit 300 ms back; emit's span ends now, so it starts last
    let base = now_ns() - 300_000_000;
    let ids = python(
        "trace_client.py",
        &[&grpc, &trace_id.to_string(), &base.to_string(), "children"],
    );
    assert_eq!(ids.split_whitespace().count(), 2, "{ids}");
    let emit = std::process::Command::new(ssfd_binary())
        .args([
            "emit",
            "--grpc",
            "--hostport",
            &format!("tcp://{grpc}"),
            "--span-service",
            "mailer",
            "--span-name",
            "send receipt",
            "--trace-id",
            &trace_id.to_string(),
            "--parent-span-id",
            &trace_id.to_string(),
            "--timing",
            "5ms",
        ])
        .output()
        .unwrap();
    assert!(emit.status.success(), "{emit:?}");
    let partial = wait_trace(&server, trace_id, 3);
    assert_eq!(partial["complete"], false, "no root yet: {partial}");
    python(
        "trace_client.py",
        &[&grpc, &trace_id.to_string(), &base.to_string(), "root"],
    );
    let trace = wait_trace(&server, trace_id, 4);
    assert_eq!(trace["complete"], true);
    assert_eq!(trace["orphans"], json!([]));
    assert_eq!(trace["services"], json!(["api", "db", "mailer", "web"]));
    let mut lines = Vec::new();
    tree(&trace["root"], 0, &mut lines);
    assert_eq!(
        lines,
        [
            r#"web POST /checkout ["checkout requested"]"#,
            r#"  api charge card ["charging card ending 4242"]"#,
            r#"    db SELECT orders ! ["deadlock detected, retrying"]"#,
            "  mailer send receipt []",
        ]
    );
    let db = &trace["root"]["children"][0]["children"][0];
    assert_eq!(
        db["logs"][0],
        json!({
            "timestamp_ns": base + 35_000_000, "service": "db",
            "trace_id": format!("{:032x}", trace_id), "span_id": format!("{:016x}", trace_id + 3),
            "name": "sql", "message": "deadlock detected, retrying", "severity": "error",
            "tags": ["logger:sql"],
        })
    );
    assert_eq!(
        db["metrics"],
        json!([{"name": "db.rows", "type": "gauge", "value": 3.0, "tags": []}])
    );
    // the log index has them too, once committed
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.get("/api/v1/logs?q=deadlock").1.contains("retrying") {
        assert!(Instant::now() < deadline, "log not indexed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html")
            || page.contains("<!doctype html")
            || page.contains("<!DOCTYPE html")
    );
    let expected = json!({
        "spans": [["web", "POST /checkout"], ["api", "charge card"], ["db", "SELECT orders"], ["mailer", "send receipt"]],
        "expand": format!("{:016x}", trace_id + 3),
        "logs": ["deadlock detected, retrying"],
    });
    let screenshot = root().join("docs/ui-trace.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let output = python(
        "ui_check.py",
        &[
            &format!("http://{}", server.http),
            &trace_id.to_string(),
            &expected.to_string(),
            screenshot.to_str().unwrap(),
        ],
    );
    assert!(output.contains("ui_check: OK"), "{output}");
    assert!(
        std::fs::metadata(&screenshot).unwrap().len() > 10_000,
        "a real screenshot"
    );
}

#[test]
fn a_trace_of_100k_spans_is_stored_and_served_with_a_cap() {
    use prost::Message;
    use std::io::Write;
    let server = Server::start("");
    let mut stream = std::net::TcpStream::connect(server.addr("ssf tcp")).unwrap();
    let trace_id = 99_i64;
    let mut frames = Vec::new();
    // a root with 100 children, each with 999 children: 100,000 spans in all
    for id in (1..=100_000_i64).rev() {
        let parent = match id {
            1 => 0,
            2..=101 => 1,
            _ => 2 + (id - 102) / 999,
        };
        let span = ssfd_wire::ssf::SsfSpan {
            trace_id,
            id,
            parent_id: parent,
            start_timestamp: 1_000 + id,
            end_timestamp: 2_000_000 + id,
            service: format!("svc{}", id % 7),
            name: "op".into(),
            ..Default::default()
        };
        let bytes = span.encode_to_vec();
        // the framed SSF stream: version 0, big-endian length, the span
        frames.push(0u8);
        frames.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        frames.extend_from_slice(&bytes);
    }
    stream.write_all(&frames).unwrap();
    drop(stream);
    let trace = wait_trace(&server, trace_id, 100_000);
    assert_eq!(trace["complete"], true);
    assert_eq!(trace["truncated"], true);
    let mut rendered = 0;
    let mut stack = vec![&trace["root"]];
    while let Some(node) = stack.pop() {
        rendered += 1;
        stack.extend(node["children"].as_array().unwrap());
    }
    assert_eq!(rendered, 10_000, "MAX_SPANS_PER_RESPONSE");
    let (status, jaeger) = server.get("/api/traces/0000000000000063");
    assert_eq!(status, 200);
    let jaeger: Value = serde_json::from_str(&jaeger).unwrap();
    assert_eq!(jaeger["data"][0]["spans"].as_array().unwrap().len(), 10_000);
    assert_eq!(
        jaeger["data"][0]["warnings"],
        json!(["truncated: the first 10000 of 100000 spans by start time"])
    );
}
