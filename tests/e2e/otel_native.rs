//! OpenTelemetry-native traces (issue 19) end to end: the OpenTelemetry Python SDK
//! sends spans and, inside them, `LoggingHandler` records, exported separately (the
//! records first) over OTLP/gRPC and over OTLP/HTTP. The trace keeps its 128-bit id
//! everywhere, every record is shown under its span (or at trace level when its span is
//! never stored), resource attributes and typed attribute values survive, and two
//! traces whose ids share their low 64 bits stay two traces in the API, the Jaeger API,
//! the CLI and the UI. Every id form SPEC 6 lists finds a trace; bad ids are a 400.

use serde_json::{Value, json};
use ssfd_e2e::{Server, messages, python, ssfd_query, wait_json};

fn otlp_server() -> Server {
    Server::start("otlp_listen_addresses: [grpc://127.0.0.1:0, http://127.0.0.1:0]\n")
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let (status, body) = server.get(path);
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn sdk_trace_joins_its_logs(mode: &str) {
    let server = otlp_server();
    let address = server.addr(&format!("otlp {mode}")).to_string();
    let sent: Value = serde_json::from_str(&python("otel_joined.py", &[mode, &address])).unwrap();
    let trace_hex = sent["trace_id"].as_str().unwrap().to_string();
    let twin_hex = sent["twin_trace_id"].as_str().unwrap().to_string();
    assert_eq!(trace_hex, "94568bc249d55603975fbd3ef288210b");
    assert_eq!(trace_hex[16..], twin_hex[16..], "equal low halves");
    let service = format!("checkout-{mode}");

    // the app's own id, as its log line prints it, finds the trace; the records, sent
    // before the spans in their own requests, are under their spans
    let trace = wait_json(&server, &format!("/api/v1/traces/{trace_hex}"), |t| {
        t["span_count"] == 2
            && t["logs"].as_array().is_some_and(|l| !l.is_empty())
            && t["root"]["children"][0]["logs"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
    });
    assert_eq!(
        trace["trace_id"],
        trace_hex.as_str(),
        "32 hex digits, whole"
    );
    let root = &trace["root"];
    assert_eq!(root["id"], sent["root"]);
    assert_eq!(root["parent_id"], "0000000000000000");
    assert_eq!(messages(&root["logs"]), ["checkout started"]);
    let child = &root["children"][0];
    assert_eq!(child["id"], sent["child"]);
    assert_eq!(child["parent_id"], sent["root"]);
    assert_eq!(messages(&child["logs"]), ["payment declined by issuer"]);
    let record = &child["logs"][0];
    assert_eq!(record["trace_id"], trace_hex.as_str());
    assert_eq!(record["span_id"], sent["child"]);
    assert_eq!(record["severity"], "warn");
    assert_eq!(record["service"], service.as_str());
    // a record whose span is never stored is shown at trace level
    assert_eq!(messages(&trace["logs"]), ["retry queue overflowed"]);
    assert_eq!(trace["logs"][0]["span_id"], sent["ghost"]);
    // resource attributes per span, typed attribute values
    for (key, value) in [
        ("host.name", "ip-10-0-0-7"),
        ("deployment.environment", "prod"),
        ("k8s.pod.name", "checkout-7f9c-x2"),
        ("telemetry.sdk.language", "python"),
    ] {
        assert_eq!(root["resource"][key], value, "{}", root["resource"]);
    }
    assert!(
        root["resource"].get("service.name").is_none(),
        "it is the service"
    );
    assert_eq!(root["tags"]["http.status_code"], 502, "an int stays an int");
    assert_eq!(root["tags"]["retry.ratio"], 0.25);
    assert_eq!(root["tags"]["cache.hit"], false);
    assert_eq!(
        root["tags"]["items"], "[\"sku-1\",\"sku-2\"]",
        "arrays as JSON"
    );

    // the twin trace (equal low half) is another trace
    let twin = wait_json(&server, &format!("/api/v1/traces/{twin_hex}"), |t| {
        t["span_count"] == 1
    });
    assert_eq!(twin["trace_id"], twin_hex.as_str());
    assert_eq!(twin["root"]["name"], "GET /twin");
    assert_eq!(twin["logs"], json!([]));
    let found = get_json(&server, &format!("/api/v1/traces?service={service}")).1;
    let mut ids: Vec<&str> = found["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![trace_hex.as_str(), twin_hex.as_str()];
    want.sort();
    assert_eq!(ids, want, "two traces in the search");
    // the log search filters by the whole id
    let by_twin = get_json(&server, &format!("/api/v1/logs?trace_id={twin_hex}")).1;
    assert_eq!(by_twin["logs"], json!([]), "the twin has no records");
    let by_trace = get_json(&server, &format!("/api/v1/logs?trace_id={trace_hex}")).1;
    assert_eq!(by_trace["logs"].as_array().unwrap().len(), 3);

    // the Jaeger API: whole ids, typed tags, resource as process tags, logs on spans
    let jaeger = get_json(&server, &format!("/api/traces/{trace_hex}")).1;
    let data = &jaeger["data"][0];
    assert_eq!(data["traceID"], trace_hex.as_str());
    let spans = data["spans"].as_array().unwrap();
    let jaeger_root = spans.iter().find(|s| s["spanID"] == sent["root"]).unwrap();
    assert!(
        jaeger_root["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "http.status_code", "type": "int64", "value": 502}))
    );
    let process = &data["processes"][jaeger_root["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], service.as_str());
    assert!(
        process["tags"].as_array().unwrap().contains(
            &json!({"key": "k8s.pod.name", "type": "string", "value": "checkout-7f9c-x2"})
        )
    );
    let jaeger_child = spans.iter().find(|s| s["spanID"] == sent["child"]).unwrap();
    let log_messages: Vec<&Value> = jaeger_child["logs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["fields"].as_array().unwrap())
        .filter(|f| f["key"] == "message")
        .map(|f| &f["value"])
        .collect();
    assert_eq!(log_messages, [&json!("payment declined by issuer")]);
    let jaeger_twin = get_json(&server, &format!("/api/traces/{twin_hex}")).1;
    assert_eq!(
        jaeger_twin["data"][0]["spans"][0]["operationName"],
        "GET /twin"
    );
    assert_eq!(jaeger_twin["data"][0]["spans"].as_array().unwrap().len(), 1);

    // tag search: a typed span attribute and a resource attribute, by string form
    for (tag, want) in [
        ("http.status_code:502", vec![trace_hex.as_str()]),
        ("k8s.pod.name:checkout-7f9c-x2", {
            let mut both = vec![trace_hex.as_str(), twin_hex.as_str()];
            both.sort();
            both
        }),
        ("http.status_code:500", vec![]),
    ] {
        let found = get_json(&server, &format!("/api/v1/traces?tag={tag}")).1;
        let mut ids: Vec<&str> = found["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, want, "tag={tag}");
    }
    let jaeger_search = get_json(
        &server,
        &format!("/api/traces?service={service}&tags=%7B%22http.status_code%22%3A%22502%22%7D"),
    )
    .1;
    assert_eq!(jaeger_search["data"].as_array().unwrap().len(), 1);
    assert_eq!(jaeger_search["data"][0]["traceID"], trace_hex.as_str());
    let (status, bad) = get_json(&server, "/api/v1/traces?tag=http.status_code%3D502");
    assert_eq!(status, 400, "{bad}");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("key:value") && error.contains("http.status_code=502"),
        "{error}"
    );

    // the CLI: each trace by its own id, with its own spans and logs
    let (ok, out, err) = ssfd_query(&server.http, &["trace", &trace_hex]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("trace {trace_hex} ")), "{out}");
    assert!(
        out.contains("charge card") && out.contains("payment declined by issuer"),
        "{out}"
    );
    assert!(
        out.contains("logs without a stored span:") && out.contains("retry queue overflowed"),
        "{out}"
    );
    assert!(!out.contains("GET /twin"), "{out}");
    let (ok, out, err) = ssfd_query(&server.http, &["trace", &twin_hex]);
    assert!(ok, "{err}");
    assert!(
        out.contains("GET /twin") && !out.contains("charge card"),
        "{out}"
    );
    let (ok, out, _) = ssfd_query(&server.http, &["traces", "--service", &service, "--ids"]);
    assert!(ok);
    let mut listed: Vec<&str> = out.lines().collect();
    listed.sort();
    let mut want = vec![trace_hex.as_str(), twin_hex.as_str()];
    want.sort();
    assert_eq!(listed, want);

    if mode == "grpc" {
        // the UI: both traces, each with its own spans; the record under its span, the
        // resource in the span detail, the span-less record at trace level
        let dir = tempfile::tempdir().unwrap();
        let shot = dir.path().join("trace.png");
        let base = format!("http://{}", server.http);
        let expected = json!({
            "spans": [[service, "POST /checkout"], [service, "charge card"]],
            "expand": sent["child"],
            "logs": ["payment declined by issuer"],
            "resource": {"k8s.pod.name": "checkout-7f9c-x2", "host.name": "ip-10-0-0-7"},
            "trace_logs": ["retry queue overflowed"],
        });
        let out = python(
            "ui_check.py",
            &[
                &base,
                &trace_hex,
                &expected.to_string(),
                shot.to_str().unwrap(),
            ],
        );
        assert!(out.contains("ui_check: OK"), "{out}");
        let expected = json!({
            "spans": [[service, "GET /twin"]],
            "expand": twin["root"]["id"],
            "logs": [],
            "trace_logs": [],
        });
        let out = python(
            "ui_check.py",
            &[
                &base,
                &twin_hex,
                &expected.to_string(),
                shot.to_str().unwrap(),
            ],
        );
        assert!(out.contains("ui_check: OK"), "{out}");
    }
}

#[test]
fn the_opentelemetry_sdk_over_otlp_grpc_one_identity_and_every_log_under_its_span() {
    sdk_trace_joins_its_logs("grpc");
}

#[test]
fn the_opentelemetry_sdk_over_otlp_http_one_identity_and_every_log_under_its_span() {
    sdk_trace_joins_its_logs("http");
}

/// Every input form of SPEC 6 finds the trace it names; bad ids are a 400 naming them.
#[test]
fn every_id_form_finds_its_trace_and_bad_ids_are_refused() {
    use prost::Message;
    let server = otlp_server();
    // an SSF trace with a negative id, as Veneur's apps log it
    let ssf_id: i64 = -7539099173140291317;
    let span = ssfd_wire::ssf::SsfSpan {
        trace_id: ssf_id,
        id: 77,
        start_timestamp: 1_800_000_000_000_000_000,
        end_timestamp: 1_800_000_000_001_000_000,
        service: "veneur-app".into(),
        name: "job".into(),
        ..Default::default()
    };
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    let printed = "0000000000000000975fbd3ef288210b";
    wait_json(&server, &format!("/api/v1/traces/{printed}"), |t| {
        t["span_count"] == 1
    });
    for form in [
        printed,
        "-7539099173140291317",
        "10907644900569260299",
        "975fbd3ef288210b",
        "0x975fbd3ef288210b",
        "0X975FBD3EF288210B",
        "0x0000000000000000975fbd3ef288210b",
    ] {
        let (status, trace) = get_json(&server, &format!("/api/v1/traces/{form}"));
        assert_eq!(
            (status, &trace["trace_id"]),
            (200, &json!(printed)),
            "{form}"
        );
        let (status, logs) = get_json(&server, &format!("/api/v1/logs?trace_id={form}"));
        assert_eq!(status, 200, "{form}: {logs}");
    }
    // the CLI takes the signed decimal id as it is
    let (ok, out, err) = ssfd_query(&server.http, &["trace", "-7539099173140291317"]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("trace {printed} ")), "{out}");
    // Jaeger's hex forms
    for form in ["975fbd3ef288210b", printed] {
        let (status, trace) = get_json(&server, &format!("/api/traces/{form}"));
        assert_eq!(
            (status, &trace["data"][0]["traceID"]),
            (200, &json!(printed)),
            "{form}"
        );
    }
    // digits that read both ways: hex first, then decimal
    let decimal_only = ssfd_wire::ssf::SsfSpan {
        trace_id: 1234,
        id: 1,
        ..span.clone()
    };
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&decimal_only.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    let trace = wait_json(&server, "/api/v1/traces/1234", |t| t["span_count"] == 1);
    assert_eq!(
        trace["trace_id"], "000000000000000000000000000004d2",
        "as decimal"
    );
    // bad ids: wrong length, not hex, zero: a 400 that names the id
    for bad in [
        "94568bc249d55603975fbd3ef288210b0",
        "94568bc249d55603975fbd3ef2882",
        "xyz",
        "00000000000000000000000000000000",
        "0",
    ] {
        let (status, answer) = get_json(&server, &format!("/api/v1/traces/{bad}"));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(bad), "{answer}");
        let (status, answer) = get_json(&server, &format!("/api/v1/logs?trace_id={bad}"));
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    let (status, _) = get_json(&server, "/api/traces/00000000000000000000000000000000");
    assert_eq!(status, 400);
    assert_eq!(
        server.metric("ssfd_api_bad_requests_total"),
        11.0,
        "each refused request counted"
    );
}

/// OTLP spans and records with bad ids are refused alone and counted; the rest of the
/// request is kept.
#[test]
fn bad_otlp_ids_are_refused_alone() {
    let server = otlp_server();
    let http = server.addr("otlp http").to_string();
    let span = |trace: &str, id: &str, name: &str| {
        json!({"traceId": trace, "spanId": id, "name": name,
               "startTimeUnixNano": "1800000000000000000", "endTimeUnixNano": "1800000000005000000",
               "attributes": [{"key": "empty"},
                              {"key": "n", "value": {"intValue": "7"}}]})
    };
    let request = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "idsvc"}}]},
        "scopeSpans": [{"spans": [
            span("00000000000000000000000000000000", "eee19b7ec3c1b174", "zero trace"),
            span("5b8efff798038103d269b633813fc60c", "0000000000000000", "zero span"),
            span("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "kept"),
        ]}],
    }]});
    let (status, body) = ssfd_e2e::http_post(
        &http,
        "/v1/traces",
        "application/json",
        request.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 2, "{answer}");
    let trace = wait_json(
        &server,
        "/api/v1/traces/5b8efff798038103d269b633813fc60c",
        |t| t["span_count"] == 1,
    );
    assert_eq!(trace["root"]["name"], "kept");
    assert_eq!(trace["root"]["tags"]["n"], 7);
    assert!(trace["root"]["tags"].get("empty").is_none(), "{trace}");
    assert_eq!(
        server.metric("ssfd_rejected_total{listener=\"otlp\",reason=\"invalid_span\"}"),
        2.0
    );
    assert_eq!(
        server.metric("ssfd_rejected_total{listener=\"otlp\",reason=\"bad_value\"}"),
        1.0,
        "the attribute without a value on the kept span, left out and counted"
    );
}
