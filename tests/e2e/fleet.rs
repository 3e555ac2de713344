//! The fleet's one screen (issue 20, point 1): three globals behind a proxy, fed by a
//! local. Every read at the proxy asks every global: trace and log searches, services,
//! the Jaeger API, the log tail, `ssfd query`. With one global stopped (SIGSTOP: it
//! holds its connections and never answers), the answer comes within `query_timeout`,
//! `"partial": true`, naming it.

use prost::Message;
use serde_json::Value;
use ssfd_e2e::{Server, fixed_grpc_config, free_port, messages, ssfd_query, wait_json};
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const T0: i64 = 1_800_000_000_000_000_000;
const TRACES: i64 = 30;

fn global(port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = fixed_grpc_config(dir.path(), port);
    Server::start_config(&format!("{config}interval: 1s\n"), dir, &[])
}

fn json_get(server: &Server, path: &str) -> (u16, Value) {
    let (status, body) = server.get(path);
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {status} {body}"));
    (status, value)
}

/// A call between two services: a `GET /cart` span of `web` that `start`s the trace,
/// and its child `SELECT` span of `db`, which logs `message` (an error when `error`).
fn call(
    trace_id: i64,
    start: i64,
    (web, db): (&str, &str),
    error: bool,
    message: String,
) -> [SsfSpan; 2] {
    let root = SsfSpan {
        trace_id,
        id: 1,
        start_timestamp: start,
        end_timestamp: start + 50_000_000,
        service: web.into(),
        name: "GET /cart".into(),
        ..Default::default()
    };
    let mut child = SsfSpan {
        trace_id,
        id: 2,
        parent_id: 1,
        start_timestamp: start + 10_000_000,
        end_timestamp: start + 40_000_000,
        service: db.into(),
        name: "SELECT".into(),
        error,
        ..Default::default()
    };
    child.metrics.push(SsfSample {
        name: "sql".into(),
        message,
        timestamp: start + 20_000_000,
        status: if error { 2 } else { 0 },
        ..Default::default()
    });
    [root, child]
}

/// Trace `n` of the fleet test: `fleet-web` calls `fleet-db`, a second apart.
fn trace(n: i64) -> [SsfSpan; 2] {
    let start = T0 + n * 1_000_000_000;
    let services = ("fleet-web", "fleet-db");
    call(
        9_000 + n,
        start,
        services,
        false,
        format!("fleetword query number {n}"),
    )
}

fn send(local: &Server, spans: &[SsfSpan]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for span in spans {
        socket
            .send_to(&span.encode_to_vec(), local.addr("ssf udp"))
            .unwrap();
    }
}

fn trace_ids(answer: &Value) -> Vec<String> {
    answer["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect()
}

fn hex(n: i64) -> String {
    format!("{:032x}", 9_000 + n)
}

#[test]
fn a_proxy_searches_the_whole_fleet_and_says_when_a_global_is_silent() {
    let ports = [free_port(), free_port(), free_port()];
    let globals: Vec<Server> = ports.iter().map(|&p| global(p)).collect();
    let destinations: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nquery_timeout: 1s\nproxy:\n  destinations: [{}]\n",
        destinations.join(", ")
    ));
    let local = Server::start(&format!(
        "interval: 1s\nforward_address: {}\n",
        proxy.addr("grpc tcp")
    ));
    for n in 0..TRACES {
        send(&local, &trace(n));
    }
    // every trace reaches its global whole
    let search = "/api/v1/traces?service=fleet-db&limit=1000";
    let deadline = Instant::now() + Duration::from_secs(40);
    let owned: Vec<BTreeSet<String>> = loop {
        let owned: Vec<BTreeSet<String>> = globals
            .iter()
            .map(|g| trace_ids(&json_get(g, search).1).into_iter().collect())
            .collect();
        if owned.iter().map(BTreeSet::len).sum::<usize>() == TRACES as usize {
            break owned;
        }
        assert!(Instant::now() < deadline, "{owned:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        owned.iter().all(|o| !o.is_empty()),
        "each global owns some traces: {owned:?}"
    );
    let all: BTreeSet<String> = owned.iter().flatten().cloned().collect();

    // the proxy: every trace, newest first, the limit after the merge
    let (status, answer) = json_get(&proxy, search);
    assert_eq!(status, 200, "{answer}");
    let ids = trace_ids(&answer);
    let newest: Vec<String> = (0..TRACES).rev().map(hex).collect();
    assert_eq!(ids, newest, "{answer}");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), all);
    assert!(answer.get("partial").is_none(), "{answer}");
    let (_, answer) = json_get(&proxy, "/api/v1/traces?service=fleet-web&limit=5");
    assert_eq!(trace_ids(&answer), newest[..5], "{answer}");
    // log search: every global's records, newest first
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let (_, answer) = json_get(&proxy, "/api/v1/logs?q=fleetword&limit=1000");
        if answer["logs"].as_array().map(Vec::len) == Some(TRACES as usize) {
            break answer;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let times: Vec<i64> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["timestamp_ns"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    let (_, answer) = json_get(&proxy, "/api/v1/logs?q=fleetword&limit=3");
    assert_eq!(answer["logs"].as_array().unwrap().len(), 3);
    assert_eq!(answer["logs"][0]["message"], "fleetword query number 29");
    // services, operations, the map, and Jaeger's API
    let (_, answer) = json_get(&proxy, "/api/v1/services");
    let services = answer["services"].as_array().unwrap();
    assert!(services.contains(&"fleet-web".into()) && services.contains(&"fleet-db".into()));
    let (_, answer) = json_get(&proxy, "/api/v1/services/fleet-db/operations");
    assert_eq!(answer["operations"], serde_json::json!(["SELECT"]));
    let (status, _) = json_get(&proxy, "/api/v1/services/nobody/operations");
    assert_eq!(status, 404);
    let (_, answer) = json_get(
        &proxy,
        "/api/v1/dependencies?start=0&end=2000000000000000000",
    );
    let edge = answer["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["parent"] == "fleet-web" && e["child"] == "fleet-db")
        .cloned()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        edge["call_count"], TRACES,
        "summed over the globals: {answer}"
    );
    let (_, answer) = json_get(&proxy, "/api/traces?service=fleet-db&limit=1000");
    assert_eq!(answer["data"].as_array().unwrap().len(), TRACES as usize);
    assert_eq!(answer["errors"], Value::Null);
    let (_, answer) = json_get(&proxy, "/api/services");
    assert!(
        answer["data"]
            .as_array()
            .unwrap()
            .contains(&"fleet-db".into())
    );
    let (status, answer) = json_get(&proxy, "/api/v1/traces?limit=5000");
    assert_eq!(status, 400, "a bad parameter is the client's: {answer}");
    // the RED view at the proxy sums the globals': every call once
    let calls = |answer: &Value| -> f64 {
        answer["operations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|op| op["points"].as_array().unwrap().clone())
            .map(|p| p["rate"].as_f64().unwrap() * 60.0)
            .sum()
    };
    let red = "/api/v1/services/fleet-db/red?start=now-10m";
    let (status, answer) = json_get(&proxy, red);
    assert_eq!(status, 200, "{answer}");
    assert!((calls(&answer) - TRACES as f64).abs() < 1e-6, "{answer}");
    assert_eq!(answer["operations"][0]["name"], "SELECT");
    let per_global: f64 = globals.iter().map(|g| calls(&json_get(g, red).1)).sum();
    assert!((per_global - TRACES as f64).abs() < 1e-6);
    // Jaeger's lookup by id at the proxy asks each trace's owner
    let (_, answer) = json_get(
        &proxy,
        &format!("/api/traces?traceID={}&traceID={}", hex(3), hex(4)),
    );
    assert_eq!(answer["data"].as_array().unwrap().len(), 2, "{answer}");
    // `ssfd query` at the proxy: the same traces
    let address = proxy.http.clone();
    let (ok, stdout, stderr) = ssfd_query(
        &address,
        &[
            "traces",
            "--service",
            "fleet-db",
            "--limit",
            "1000",
            "--ids",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), newest);
    assert!(!stderr.contains("partial"), "{stderr}");

    // the log tail at the proxy streams records that reach any global
    let mut tail = TcpStream::connect(&proxy.http).unwrap();
    write!(
        tail,
        "GET /api/v1/logs/tail?q=tailword HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    tail.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reader = BufReader::new(tail.try_clone().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tailed = BTreeSet::new();
    let owner = |id: &String| {
        globals
            .iter()
            .position(|g| g.get(&format!("/api/v1/traces/{id}")).0 == 200)
    };
    let mut n = 1000;
    // records from two globals at least: the tail is every global's
    while tailed
        .iter()
        .filter_map(owner)
        .collect::<BTreeSet<_>>()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "tail at the proxy: {tailed:?}");
        let mut spans = trace(n);
        spans[1].metrics[0].message = format!("tailword {n}");
        send(&local, &spans);
        n += 1;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
            if let Some(data) = line.strip_prefix("data: ") {
                let record: Value = serde_json::from_str(data.trim()).unwrap();
                assert!(record["message"].as_str().unwrap().starts_with("tailword"));
                tailed.insert(record["trace_id"].as_str().unwrap().to_string());
            }
            line.clear();
        }
    }
    drop(reader);
    drop(tail);

    // one global stops answering: the proxy answers within query_timeout, partial
    let stopped = &globals[0];
    let stop = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &stopped.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let rest: BTreeSet<String> = globals[1..]
        .iter()
        .flat_map(|g| trace_ids(&json_get(g, search).1))
        .collect();
    stop("-STOP");
    let asked = Instant::now();
    let (status, answer) = json_get(&proxy, search);
    let took = asked.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(
        took < Duration::from_secs(3),
        "query_timeout 1s, took {took:?}"
    );
    assert_eq!(answer["partial"], true, "{answer}");
    assert_eq!(answer["errors"][0]["node"], destinations[0], "{answer}");
    assert!(
        answer["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("query_timeout"),
        "{answer}"
    );
    assert_eq!(
        trace_ids(&answer).into_iter().collect::<BTreeSet<_>>(),
        rest,
        "the other globals' traces"
    );
    let (_, answer) = json_get(&proxy, "/api/traces?service=fleet-db&limit=1000");
    let errors = answer["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        errors
            .iter()
            .any(|e| e["msg"].as_str().unwrap().contains(&destinations[0])),
        "{answer}"
    );
    // a lookup by id of the stopped global's trace ends within query_timeout too
    let stopped_trace = owned[0].iter().next().unwrap();
    let asked = Instant::now();
    let (status, answer) = json_get(&proxy, &format!("/api/traces?traceID={stopped_trace}"));
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert!(status == 200 || status == 504, "{status} {answer}");
    assert!(
        answer["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    let (ok, stdout, stderr) = ssfd_query(
        &address,
        &[
            "traces",
            "--service",
            "fleet-db",
            "--limit",
            "1000",
            "--ids",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), rest.len());
    assert!(
        stderr.contains("partial answer") && stderr.contains(&destinations[0]),
        "{stderr}"
    );
    stop("-CONT");
    let (_, answer) = json_get(&proxy, search);
    assert!(answer.get("partial").is_none(), "{answer}");
}

/// Issue 20 point 2: the OpenTelemetry SDK sends its spans to one local and its
/// `LoggingHandler` records to another; both forward upstream, the proxy sends each
/// record to its trace's owner, and the trace at the proxy has every record under its
/// span (or at trace level when its span is never stored), once.
#[test]
fn logs_sent_to_another_local_follow_their_trace() {
    let ports = [free_port(), free_port(), free_port()];
    let globals: Vec<Server> = ports.iter().map(|&p| global(p)).collect();
    let destinations: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nproxy:\n  destinations: [{}]\n",
        destinations.join(", ")
    ));
    let local = || {
        Server::start(&format!(
            "interval: 1s\nforward_address: {}\notlp_listen_addresses: [grpc://127.0.0.1:0]\n",
            proxy.addr("grpc tcp")
        ))
    };
    let (spans_local, logs_local) = (local(), local());
    let sent: Value = serde_json::from_str(&ssfd_e2e::python(
        "otel_joined.py",
        &[
            "grpc",
            spans_local.addr("otlp grpc"),
            logs_local.addr("otlp grpc"),
        ],
    ))
    .unwrap();
    let trace_hex = sent["trace_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/traces/{trace_hex}");
    let trace = wait_json(&proxy, &path, |t| {
        t["span_count"] == 2
            && !t["logs"].as_array().is_none_or(Vec::is_empty)
            && !t["root"]["logs"].as_array().is_none_or(Vec::is_empty)
            && !t["root"]["children"][0]["logs"]
                .as_array()
                .is_none_or(Vec::is_empty)
    });
    let root = &trace["root"];
    assert_eq!(root["id"], sent["root"]);
    assert_eq!(messages(&root["logs"]), ["checkout started"]);
    assert_eq!(
        messages(&root["children"][0]["logs"]),
        ["payment declined by issuer"]
    );
    assert_eq!(messages(&trace["logs"]), ["retry queue overflowed"]);
    assert_eq!(trace["logs"][0]["span_id"], sent["ghost"]);
    // the records are at the trace's owner only, and a log search at the proxy finds
    // each once
    let owners: Vec<usize> = (0..3).filter(|&i| globals[i].get(&path).0 == 200).collect();
    assert_eq!(owners.len(), 1, "one owner: {owners:?}");
    let holding: Vec<usize> = (0..3)
        .filter(|&i| {
            let (_, body) = globals[i].get(&format!("/api/v1/logs?trace_id={trace_hex}"));
            body.contains("payment declined")
        })
        .collect();
    assert_eq!(holding, owners, "the records went to the trace's owner");
    let found = wait_json(
        &proxy,
        &format!("/api/v1/logs?trace_id={trace_hex}&limit=1000"),
        |l| l["logs"].as_array().is_some_and(|l| l.len() >= 3),
    );
    assert_eq!(
        messages(&found["logs"]),
        [
            "checkout started",
            "payment declined by issuer",
            "retry queue overflowed"
        ],
        "each record once: {found}"
    );
    // counted as forwarding, per destination
    let forwarded = logs_local.metric_sum("ssfd_forward_sent_total{destination=");
    assert!(forwarded >= 3.0, "{forwarded}");
}

/// Issue 20 point 4 (the API): a service's RED view, per operation and minute, from
/// the spans this node took; a bad step is a 400, an unknown service a 404.
#[test]
fn red_views_count_calls_errors_and_durations() {
    let server = Server::start("");
    let now = ssfd_e2e::now_ns();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..60i64 {
        let (name, ms, error) = if i < 40 {
            ("GET /a", 10, i % 4 == 0)
        } else {
            ("GET /b", 100, false)
        };
        let span = SsfSpan {
            trace_id: 70_000 + i,
            id: 1,
            start_timestamp: now,
            end_timestamp: now + ms * 1_000_000,
            service: "red-svc".into(),
            name: name.into(),
            error,
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    let path = "/api/v1/services/red-svc/red?start=now-5m&step=1m";
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let (status, answer) = json_get(&server, path);
        let total: f64 = answer["operations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|op| op["points"].as_array().unwrap().clone())
            .map(|p| p["rate"].as_f64().unwrap() * 60.0)
            .sum();
        if status == 200 && (total - 60.0).abs() < 1e-6 {
            break answer;
        }
        assert!(Instant::now() < deadline, "{status} {answer}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(answer["service"], "red-svc");
    assert_eq!(answer["step_ns"], 60_000_000_000i64);
    let op = |name: &str| {
        answer["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{answer}"))
    };
    let busy = |op: &Value| {
        op["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["rate"].as_f64().unwrap() > 0.0)
            .cloned()
            .collect::<Vec<Value>>()
    };
    let a = busy(&op("GET /a"));
    let calls_a: f64 = a.iter().map(|p| p["rate"].as_f64().unwrap() * 60.0).sum();
    let errors_a: f64 = a
        .iter()
        .map(|p| p["rate"].as_f64().unwrap() * 60.0 * p["error_rate"].as_f64().unwrap())
        .sum();
    assert!(
        (calls_a - 40.0).abs() < 1e-6 && (errors_a - 10.0).abs() < 1e-6,
        "{a:?}"
    );
    let near = |got: &Value, want: f64| (got.as_f64().unwrap() - want).abs() / want < 0.1;
    for p in &a {
        assert!(near(&p["p50_ns"], 10e6) && near(&p["p99_ns"], 10e6), "{p}");
    }
    for p in busy(&op("GET /b")) {
        assert!(near(&p["p95_ns"], 100e6), "{p}");
        assert_eq!(p["error_rate"], 0.0);
    }
    // six steps of a minute: the window's
    assert_eq!(op("GET /b")["points"].as_array().unwrap().len(), 6);
    let (status, _) = json_get(&server, "/api/v1/services/red-svc/red?step=30s");
    assert_eq!(status, 400);
    let (status, _) = json_get(&server, "/api/v1/services/nobody/red");
    assert_eq!(status, 404);
}

/// Issue 20 points 3–6 in a real browser, pointed at a proxy: service page → error
/// chart → that minute's traces, errors first → trace → span → log; the service map and
/// an edge's traces; the log view's volume histogram, a record's moment, a bar's
/// narrowing; and the partial banner with a global stopped.
#[test]
fn the_web_ui_at_a_proxy_leads_from_a_chart_to_a_log() {
    let ports = [free_port(), free_port(), free_port()];
    let globals: Vec<Server> = ports.iter().map(|&p| global(p)).collect();
    let destinations: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nquery_timeout: 1s\nproxy:\n  destinations: [{}]\n",
        destinations.join(", ")
    ));
    let local = Server::start(&format!(
        "interval: 1s\nforward_address: {}\n",
        proxy.addr("grpc tcp")
    ));
    // all within one minute, so the chart's minute holds every trace
    while (ssfd_e2e::now_ns() / 1_000_000_000) % 60 > 45 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let now = ssfd_e2e::now_ns();
    const UI_TRACES: i64 = 6;
    for n in 0..UI_TRACES {
        let message = format!("uiword lookup for cart {n}");
        let spans = call(
            50_000 + n,
            now + n * 1_000_000,
            ("ui-web", "ui-db"),
            n == 0,
            message,
        );
        send(&local, &spans);
    }
    wait_json(&proxy, "/api/v1/traces?service=ui-db&limit=100", |a| {
        a["traces"]
            .as_array()
            .is_some_and(|t| t.len() == UI_TRACES as usize)
    });
    wait_json(&proxy, "/api/v1/logs?q=uiword", |a| {
        a["logs"]
            .as_array()
            .is_some_and(|l| l.len() == UI_TRACES as usize)
    });
    let expected = serde_json::json!({
        "parent": "ui-web", "child": "ui-db", "operation": "SELECT",
        "calls": UI_TRACES, "error_trace": format!("{:032x}", 50_000),
        "error_span": "0000000000000002", "message": "uiword lookup for cart 0",
        "word": "uiword", "records": UI_TRACES,
    });
    let base = format!("http://{}", proxy.http);
    let output = ssfd_e2e::python("ui_fleet.py", &[&base, &expected.to_string()]);
    eprintln!("{output}");
    assert!(output.contains("ui_fleet: OK"), "{output}");

    let stopped = globals[1].pid().to_string();
    let signal = |s: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([s, &stopped])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let output = ssfd_e2e::python("ui_fleet.py", &[&base, "partial", &destinations[1]]);
    signal("-CONT");
    eprintln!("{output}");
    assert!(output.contains("ui_fleet: OK"), "{output}");
}

/// The bearer token guards the globals' gRPC reads as it guards their HTTP API: a
/// proxy with the fleet's token reads them; a caller without it is refused.
#[test]
fn the_bearer_token_guards_the_globals_reads_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-fleet\n").unwrap();
    let token = format!("http_bearer_token_file: {}\n", token_file.display());
    let port = free_port();
    let _global = {
        let data = tempfile::tempdir().unwrap();
        let config = fixed_grpc_config(data.path(), port);
        Server::start_config(&format!("{config}interval: 1s\n{token}"), data, &[])
    };
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nquery_timeout: 2s\n{token}proxy:\n  destinations: [127.0.0.1:{port}]\n"
    ));
    let (status, body) = ssfd_e2e::http_get_with(
        &proxy.http,
        "/api/v1/services",
        "Authorization: Bearer s3cret-fleet\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("partial"),
        "the proxy's token opens the global: {body}"
    );
    let address = format!("http://127.0.0.1:{port}");
    let (without, with) = ssfd_e2e::block_on(async {
        let channel = ssfd_e2e::grpc_channel(&address).await;
        let mut client = ssfd_wire::ssfd::v1::query_client::QueryClient::new(channel);
        let read = || ssfd_wire::ssfd::v1::ReadRequest {
            path: "/api/v1/services".into(),
            query: String::new(),
        };
        let without = client.read(read()).await;
        let mut request = tonic::Request::new(read());
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret-fleet".parse().unwrap());
        let with = client.read(request).await;
        (without, with)
    });
    assert_eq!(
        without.unwrap_err().code(),
        tonic::Code::Unauthenticated,
        "no token, no read"
    );
    assert_eq!(with.unwrap().into_inner().status, 200);
}
