//! OTLP ingest end to end (issue 5): the OpenTelemetry Python SDK's real OTLP/gRPC
//! exporters send a two-service trace with span events, a log and a cumulative
//! counter; ssfd's API returns the joined trace and its logs, and `/metrics` the
//! counter's increase. OTLP/HTTP takes JSON, refuses a bad body with 400.

use serde_json::{Value, json};
use ssfd_e2e::{Server, http_post as post, http_post_with as post_with, python};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn otlp_server() -> Server {
    Server::start("interval: 1s\notlp_listen_addresses: [grpc://127.0.0.1:0, http://127.0.0.1:0]\n")
}

fn wait_json(server: &Server, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(path);
        if status == 200 {
            let value: Value = serde_json::from_str(&body).unwrap();
            if ready(&value) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "{path}: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_opentelemetry_sdk_sends_a_trace_logs_and_a_counter() {
    let server = otlp_server();
    let sent: Value = serde_json::from_str(&python(
        "otel_client.py",
        &[server.addr("otlp grpc"), server.addr("otlp http")],
    ))
    .unwrap();
    let trace_hex = sent["trace_id"].as_str().unwrap();
    let frontend = sent["frontend"].as_str().unwrap();
    let backend = sent["backend"].as_str().unwrap();
    let trace = wait_json(&server, &format!("/api/v1/traces/{trace_hex}"), |t| {
        t["span_count"] == 2
    });
    assert_eq!(trace["trace_id"], trace_hex, "all 128 bits");
    assert_eq!(trace["complete"], true);
    assert_eq!(trace["services"], json!(["backend", "frontend"]));
    let root = &trace["root"];
    assert_eq!(
        (&root["id"], &root["service"], &root["name"]),
        (
            &json!(frontend),
            &json!("frontend"),
            &json!("POST /checkout")
        )
    );
    assert_eq!(root["tags"]["http.method"], "POST");
    assert_eq!(root["tags"]["span.kind"], "server");
    let child = &root["children"][0];
    assert_eq!(child["id"], backend);
    assert_eq!(child["parent_id"], frontend);
    assert_eq!(child["error"], true, "status ERROR");
    assert_eq!(
        child["logs"][0]["message"], "card validated",
        "the event, as a log sample"
    );
    assert_eq!(child["logs"][0]["tags"], json!(["card.brand:visa"]));

    let logs = wait_json(
        &server,
        &format!("/api/v1/logs?trace_id={trace_hex}"),
        |l| {
            l["logs"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["message"] == "charge declined by issuer")
            })
        },
    );
    let record = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["message"] == "charge declined by issuer")
        .unwrap();
    assert_eq!(record["severity"], "warn");
    assert_eq!(record["service"], "backend");
    assert_eq!(record["span_id"], backend);
    assert_eq!(record["trace_id"], trace_hex);

    // the OTLP/HTTP protobuf exporter's span
    let http_trace = sent["http_trace_id"].as_str().unwrap();
    let probe = wait_json(&server, &format!("/api/v1/traces/{http_trace}"), |t| {
        t["span_count"] == 1
    });
    assert_eq!(probe["root"]["service"], "edge");
    assert_eq!(probe["root"]["name"], "health check");
    assert!(server.metric("ssfd_received_total{listener=\"otlp\",protocol=\"http\"}") >= 1.0);

    // cumulative 5, then 7: the counter shows the increase, 7
    server.wait_metric(
        "checkout_items_total{service=\"frontend\",tier=\"gold\"}",
        7.0,
    );
    assert!(server.metric("ssfd_received_total{listener=\"otlp\",protocol=\"grpc\"}") >= 4.0);
}

#[test]
fn otlp_http_takes_json_and_refuses_garbage() {
    let server = otlp_server();
    let http = server.addr("otlp http").to_string();
    let request = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "jsonsvc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "json op",
            "kind": 2,
            "startTimeUnixNano": "1800000000000000000",
            "endTimeUnixNano": "1800000000005000000",
            "attributes": [{"key": "n", "value": {"intValue": "3"}}],
            "status": {"code": 2}
        }, {
            "traceId": "5b8e",
            "spanId": "eee19b7ec3c1b174",
            "name": "bad ids"
        }]}]
    }]});
    let (status, body) = post(
        &http,
        "/v1/traces",
        "application/json",
        request.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1, "{answer}");
    let trace = wait_json(
        &server,
        "/api/v1/traces/5b8efff798038103d269b633813fc60c",
        |t| t["span_count"] == 1,
    );
    assert_eq!(trace["root"]["name"], "json op");
    assert_eq!(trace["root"]["service"], "jsonsvc");
    assert_eq!(trace["root"]["error"], true);
    assert_eq!(trace["root"]["duration_ns"], 5_000_000);
    assert_eq!(
        trace["root"]["tags"]["n"], 3,
        "an int attribute stays an int"
    );
    // its exemplar names the whole trace id in 32 hex digits (SPEC 4.4)
    let (_, open) = ssfd_e2e::http_get_with(
        &server.http,
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    );
    assert!(
        open.contains("service_name=\"jsonsvc\"")
            && open.contains("# {trace_id=\"5b8efff798038103d269b633813fc60c\"} 5 "),
        "{open}"
    );
    let (status, _) = post(
        &http,
        "/v1/traces",
        "application/x-protobuf",
        b"\xff\xff\xff",
    );
    assert_eq!(status, 400);
    // a gzip body that would inflate past the request limit is refused, not inflated
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 40 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    let (status, body) = post_with(
        &http,
        "/v1/traces",
        "application/x-protobuf",
        "Content-Encoding: gzip\r\n",
        &bomb,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("inflates past"), "{body}");
    assert!(server.metric("ssfd_rejected_total{listener=\"otlp\",reason=\"decode\"}") >= 1.0);
}

#[test]
fn otlp_http_answers_503_with_retry_after_when_full() {
    let server = Server::start_with_env(
        "span_channel_capacity: 1\notlp_listen_addresses: [http://127.0.0.1:0]\n",
        &[("SSFD_TEST_WORKER_STALL_MS", "2000")],
    );
    let http = server.addr("otlp http").to_string();
    let mut statuses = Vec::new();
    for n in 1..=6 {
        let request = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": format!("{n:032x}"), "spanId": format!("{n:016x}"), "name": "op",
            "startTimeUnixNano": "1", "endTimeUnixNano": "2"
        }]}]}]});
        let mut stream = std::net::TcpStream::connect(&http).unwrap();
        let body = request.to_string();
        write!(
            stream,
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status: u16 = response.split(' ').nth(1).unwrap().parse().unwrap();
        if status == 503 {
            assert!(
                response.to_ascii_lowercase().contains("retry-after: 1"),
                "{response}"
            );
        }
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(refused >= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(
        server.metric("ssfd_refused_total{listener=\"otlp\",reason=\"queue_full\"}"),
        refused as f64
    );
}

/// SPEC 3.3: an OTLP/gRPC export that does not decode answers INVALID_ARGUMENT (tonic's
/// codec gave INTERNAL), is counted as rejected, and the server takes the next one.
#[test]
fn undecodable_otlp_grpc_exports_answer_invalid_argument() {
    let server = Server::start("otlp_listen_addresses: [grpc://127.0.0.1:0]\n");
    let codes = ssfd_e2e::python("otlp_garbage.py", &[server.addr("otlp grpc")]);
    assert_eq!(
        codes.trim(),
        r#"{"logs.v1.LogsService": "INVALID_ARGUMENT", "metrics.v1.MetricsService": "INVALID_ARGUMENT", "trace.v1.TraceService": "INVALID_ARGUMENT"}"#
    );
    assert_eq!(
        server.metric("ssfd_rejected_total{listener=\"otlp\",reason=\"decode\"}"),
        3.0
    );
}
