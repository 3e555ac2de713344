//! The tier on loopback with real binaries (issue 6): three locals, one proxy, three
//! globals. Counters are conserved exactly end to end, a global p99 and a set count
//! are within their accuracy bounds, a trace whose spans enter through all three
//! locals comes back whole from its global; a killed global's keys re-route and
//! nothing is lost; restarted on its port, it rejoins the ring.

use prost::Message;
use ssfd_e2e::{Server, fixed_grpc_config, free_port};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A global whose gRPC listener is on `port` (so a restart comes back on it).
fn global(port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = fixed_grpc_config(dir.path(), port);
    Server::start_config(
        &format!(
            "{config}interval: 1s\npercentiles: [0.99]\notlp_listen_addresses: [http://127.0.0.1:0]\n"
        ),
        dir,
        &[],
    )
}

fn send(server: &Server, lines: &[String]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in lines.chunks(25) {
        socket
            .send_to(chunk.join("\n").as_bytes(), server.addr("statsd udp"))
            .unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Σ over `globals` of a series' value (absent counts 0).
fn total(globals: &[&Server], series: &str) -> f64 {
    globals.iter().map(|g| g.metric(series)).sum()
}

fn wait_total(globals: &[&Server], series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let now = total(globals, series);
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series}: {now}, want {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_locals_one_proxy_three_globals() {
    let ports = [free_port(), free_port(), free_port()];
    let mut globals: Vec<Option<Server>> = ports.iter().map(|&p| Some(global(p))).collect();
    let destinations: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nproxy:\n  destinations: [{}]\n",
        destinations.join(", ")
    ));
    let locals: Vec<Server> = (0..3)
        .map(|_| {
            Server::start(&format!(
                "interval: 1s\nforward_address: {}\n",
                proxy.addr("grpc tcp")
            ))
        })
        .collect();

    // round 1: 100 global counters, 3 increments per local; a mixed timer and set
    for (i, local) in locals.iter().enumerate() {
        let mut lines: Vec<String> = (0..100)
            .flat_map(|k| std::iter::repeat_n(format!("tier.c{k}:1|c|#veneurglobalonly"), 3))
            .collect();
        lines.extend((1..=1000).map(|v| format!("tier.h:{}|ms", i * 1000 + v)));
        lines.extend((0..400).map(|m| format!("tier.s:m{}|s", i * 200 + m)));
        send(local, &lines);
    }
    // a trace whose spans enter through all three locals
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, local) in locals.iter().enumerate() {
        let id = 5001 + i as i64;
        let span = ssfd_wire::ssf::SsfSpan {
            trace_id: 5000,
            id,
            parent_id: if i == 0 { 0 } else { id - 1 },
            start_timestamp: 1_800_000_000_000_000_000 + id,
            end_timestamp: 1_800_000_000_002_000_000,
            service: format!("svc{i}"),
            name: "op".into(),
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), local.addr("ssf udp"))
            .unwrap();
    }
    // an OpenTelemetry trace whose id has the same low half (5000) and a high half: its
    // spans travel with ssfd's extension field, are routed by the whole id, and stay a
    // trace of their own
    let otel = ssfd_wire::ids::TraceId::from_parts(0xabc, 5000);
    for (i, local) in locals.iter().take(2).enumerate() {
        let id = 6001 + i as i64;
        let span = ssfd_wire::ssf::SsfSpan {
            trace_id: otel.low(),
            trace_id_high: otel.high(),
            id,
            parent_id: if i == 0 { 0 } else { id - 1 },
            start_timestamp: 1_800_000_000_000_000_000 + id,
            end_timestamp: 1_800_000_000_002_000_000,
            service: format!("otel{i}"),
            name: "op".into(),
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), local.addr("ssf udp"))
            .unwrap();
    }
    let all: Vec<&Server> = globals.iter().flatten().collect();
    for k in 0..100 {
        wait_total(&all, &format!("tier_c{k}_total"), 9.0);
    }
    let used = all
        .iter()
        .filter(|g| (0..100).any(|k| g.metric(&format!("tier_c{k}_total")) > 0.0))
        .count();
    assert_eq!(used, 3, "every global owns some keys");
    let deadline = Instant::now() + Duration::from_secs(40);
    let p99 = loop {
        let p99 = total(&all, "tier_h{quantile=\"0.99\"}");
        if (p99 - 2970.0).abs() <= 29.7 || Instant::now() > deadline {
            break p99;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!((p99 - 2970.0).abs() <= 29.7, "p99 {p99} of 1..3000");
    let deadline = Instant::now() + Duration::from_secs(40);
    let members = loop {
        let members = total(&all, "tier_s");
        if (members - 800.0).abs() <= 16.0 || Instant::now() > deadline {
            break members;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!((members - 800.0).abs() <= 16.0, "set {members} of 800");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let whole = all.iter().any(|g| {
            let (status, body) = g.get("/api/v1/traces/5000");
            status == 200
                && serde_json::from_str::<serde_json::Value>(&body).unwrap()["complete"] == true
                && body.contains("\"span_count\":3")
        });
        if whole {
            break;
        }
        assert!(Instant::now() < deadline, "the trace never came back whole");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, body) = proxy.get("/api/v1/traces/5000");
    assert!(
        status == 200 && body.contains("\"span_count\":3"),
        "at the proxy: {status} {body}"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = proxy.get(&format!("/api/v1/traces/{otel}"));
        if status == 200 {
            let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
            if trace["span_count"] == 2 {
                assert_eq!(trace["trace_id"], "0000000000000abc0000000000001388");
                assert_eq!(trace["services"], serde_json::json!(["otel0", "otel1"]));
                assert_eq!(trace["complete"], true);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the 128-bit trace never came back whole at the proxy: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // a log record of that trace, sent in its own OTLP request to the global that owns
    // the trace, is under its span in the proxy's answer and in its Jaeger API
    let owner = all
        .iter()
        .find(|g| g.get(&format!("/api/v1/traces/{otel}")).0 == 200)
        .expect("the owner");
    let record = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otel1"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1800000000001000000", "severityNumber": 13,
            "body": {"stringValue": "retrying the charge"},
            "traceId": otel.to_string(), "spanId": format!("{:016x}", 6002),
        }]}],
    }]});
    let (status, body) = ssfd_e2e::http_post(
        owner.addr("otlp http"),
        "/v1/logs",
        "application/json",
        record.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = proxy.get(&format!("/api/v1/traces/{otel}"));
        let trace: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let child = &trace["root"]["children"][0];
        if child["logs"][0]["message"] == "retrying the charge" {
            assert_eq!(child["id"], format!("{:016x}", 6002));
            break;
        }
        assert!(Instant::now() < deadline, "no record at the proxy: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = proxy.get(&format!("/api/traces/{otel}"));
    assert_eq!(status, 200, "the Jaeger API at a proxy: {body}");
    assert!(body.contains("retrying the charge"), "{body}");

    // kill one global and send at once, before the health check notices: the proxy
    // routes what the dead global fails around it, so nothing is lost and nothing
    // is dropped
    let dropped_series = format!(
        "ssfd_forward_dropped_total{{destination=\"{}\"}}",
        destinations[1]
    );
    drop(globals[1].take());
    for local in &locals {
        let lines: Vec<String> = (0..60)
            .map(|k| format!("tier.g{k}:1|c|#veneurglobalonly"))
            .collect();
        send(local, &lines);
    }
    let alive: Vec<&Server> = globals.iter().flatten().collect();
    for k in 0..60 {
        wait_total(&alive, &format!("tier_g{k}_total"), 3.0);
    }
    assert_eq!(proxy.metric(&dropped_series), 0.0);
    for local in &locals {
        assert_eq!(
            local.metric("ssfd_dropped_total{stage=\"forward\",reason=\"retry_exhausted\"}"),
            0.0
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    for local in &locals {
        let lines: Vec<String> = (0..60)
            .map(|k| format!("tier.e{k}:1|c|#veneurglobalonly"))
            .collect();
        send(local, &lines);
    }
    let alive: Vec<&Server> = globals.iter().flatten().collect();
    for k in 0..60 {
        wait_total(&alive, &format!("tier_e{k}_total"), 3.0);
    }

    // restarted on its port, it rejoins the ring and gets keys again
    globals[1] = Some(global(ports[1]));
    std::thread::sleep(Duration::from_secs(3));
    for local in &locals {
        let lines: Vec<String> = (0..60)
            .map(|k| format!("tier.f{k}:1|c|#veneurglobalonly"))
            .collect();
        send(local, &lines);
    }
    let all: Vec<&Server> = globals.iter().flatten().collect();
    for k in 0..60 {
        wait_total(&all, &format!("tier_f{k}_total"), 3.0);
    }
    let rejoined = globals[1].as_ref().unwrap();
    assert!(
        (0..60).any(|k| rejoined.metric(&format!("tier_f{k}_total")) > 0.0),
        "the restarted global owns keys again"
    );
}
