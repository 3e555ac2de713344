//! Logs end to end (issue 4): log samples inside spans and alone, DogStatsD events and
//! service checks become log records with their span context; `/api/v1/logs` finds them
//! by words, phrases and filters, newest first; the SSE tail streams new ones; they
//! survive a restart. Also trace search and the Jaeger read API over the same data.

use prost::Message;
use serde_json::{Value, json};
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const T0: i64 = 1_800_000_000_000_000_000;

fn log(name: &str, message: &str, status: i32, offset_ms: i64) -> SsfSample {
    SsfSample {
        name: name.into(),
        message: message.into(),
        status,
        timestamp: T0 + offset_ms * 1_000_000,
        ..Default::default()
    }
}

fn span(trace: i64, id: i64, parent: i64, service: &str, name: &str, ms: (i64, i64)) -> SsfSpan {
    SsfSpan {
        trace_id: trace,
        id,
        parent_id: parent,
        start_timestamp: T0 + ms.0 * 1_000_000,
        end_timestamp: T0 + ms.1 * 1_000_000,
        service: service.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn json_get(server: &Server, path: &str) -> (u16, Value) {
    let (status, body) = server.get(path);
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
    (status, value)
}

/// Polls `path` until its `key` array has `count` entries.
fn wait_for(server: &Server, path: &str, key: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, value) = json_get(server, path);
        if status == 200 && value[key].as_array().map(Vec::len) == Some(count) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn messages(value: &Value) -> Vec<&str> {
    value["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect()
}

fn send_all(server: &Server) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ssf = server.addr("ssf udp");
    let mut root = span(77, 77, 0, "web", "GET /cart", (0, 50));
    root.metrics
        .push(log("http", "request started for user 42", 0, 1));
    root.tags.insert("region".into(), "eu".into());
    let mut db = span(77, 78, 77, "db", "SELECT cart", (10, 40));
    db.error = true;
    let mut failure = log("sql", "Connection refused by upstream", 2, 30);
    failure.tags.insert("env".into(), "prod".into());
    db.metrics.push(failure);
    let mut alone = SsfSpan::default();
    let mut lonely = log("cron", "nightly job finished", 1, 5);
    lonely.tags.insert("service".into(), "batch".into());
    alone.metrics.push(lonely);
    for packet in [db, root, alone] {
        socket.send_to(&packet.encode_to_vec(), ssf).unwrap();
    }
    let statsd = server.addr("statsd udp");
    let seconds = T0 / 1_000_000_000;
    let event = format!(
        "_e{{13,19}}:deploy failed|rollback of cart v2|d:{}|t:error|#service:web,env:prod",
        seconds + 1
    );
    let check = format!(
        "_sc|cart.health|1|d:{}|#service:web|m:disk nearly full",
        seconds + 2
    );
    socket.send_to(event.as_bytes(), statsd).unwrap();
    socket.send_to(check.as_bytes(), statsd).unwrap();
    // a service check without a message is a metric, not a log
    socket.send_to(b"_sc|cart.quiet|0", statsd).unwrap();
}

#[test]
fn logs_are_indexed_with_their_span_context_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}interval: 1s\n", ssfd_e2e::port_zero_config(dir.path()));
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    send_all(&server);
    let all = wait_for(&server, "/api/v1/logs", "logs", 5);
    assert_eq!(
        messages(&all),
        [
            "disk nearly full",
            "rollback of cart v2",
            "Connection refused by upstream",
            "nightly job finished",
            "request started for user 42",
        ],
        "newest first"
    );
    let refused = &all["logs"][2];
    assert_eq!(
        refused,
        &json!({
            "timestamp_ns": T0 + 30_000_000,
            "service": "db",
            "trace_id": "0000000000000000000000000000004d",
            "span_id": "000000000000004e",
            "name": "sql",
            "message": "Connection refused by upstream",
            "severity": "error",
            "tags": ["env:prod"],
        })
    );
    let event = &all["logs"][1];
    assert_eq!(
        (
            &event["name"],
            &event["severity"],
            &event["service"],
            &event["trace_id"]
        ),
        (
            &json!("deploy failed"),
            &json!("error"),
            &json!("web"),
            &Value::Null
        )
    );
    assert_eq!(all["logs"][0]["severity"], "warn", "service check WARNING");
    assert_eq!(
        all["logs"][3]["service"], "batch",
        "a lone sample's service tag"
    );
    assert_eq!(all["logs"][3]["severity"], "warn");

    let find = |query: &str| {
        messages(&json_get(&server, &format!("/api/v1/logs?{query}")).1)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("q=REFUSED+upstream"),
        ["Connection refused by upstream"]
    );
    assert_eq!(find("q=%22user+42%22"), ["request started for user 42"]);
    assert!(
        find("q=%2242+user%22").is_empty(),
        "a phrase keeps its order"
    );
    assert_eq!(
        find("q=deploy"),
        ["rollback of cart v2"],
        "the name is searched"
    );
    assert_eq!(find("service=web").len(), 3);
    assert_eq!(find("severity=error").len(), 2);
    assert_eq!(find("trace_id=77").len(), 2);
    assert_eq!(find("trace_id=000000000000004d").len(), 2, "hex trace id");
    assert_eq!(find("tag=env:prod").len(), 2);
    assert_eq!(find("service=web&tag=env:prod"), ["rollback of cart v2"]);
    assert_eq!(find("limit=2").len(), 2);
    let start = T0 + 2_000_000_000;
    assert_eq!(
        find(&format!("start={}&end={}", T0 + 5_000_000, start + 1)),
        [
            "disk nearly full",
            "rollback of cart v2",
            "Connection refused by upstream",
            "nightly job finished"
        ]
    );
    assert_eq!(
        find("start=2027-01-15T08:00:00.005Z&end=2027-01-15T08:00:01.000000001Z"),
        [
            "rollback of cart v2",
            "Connection refused by upstream",
            "nightly job finished"
        ],
        "RFC 3339 bounds (T0 is 2027-01-15T08:00:00Z)"
    );
    for bad in [
        "severity=loud",
        "limit=0",
        "limit=1001",
        "start=soon",
        "trace_id=zz",
        "bogus=1",
    ] {
        let (status, body) = json_get(&server, &format!("/api/v1/logs?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }

    // the joined trace shows each span's own logs
    let (_, trace) = json_get(&server, "/api/v1/traces/77");
    assert_eq!(
        trace["root"]["logs"][0]["message"],
        "request started for user 42"
    );
    assert_eq!(
        trace["root"]["children"][0]["logs"][0]["message"],
        "Connection refused by upstream"
    );

    assert!(server.terminate().success());
    let restarted = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let again = wait_for(&restarted, "/api/v1/logs?q=refused", "logs", 1);
    assert_eq!(again["logs"][0], *refused, "logs survive a restart");
}

#[test]
fn the_tail_streams_new_matching_records_only() {
    let server = Server::start("");
    // one record before the tail opens: no backlog
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = server.addr("statsd udp");
    socket
        .send_to(b"_e{3,6}:old|before|#service:web", statsd)
        .unwrap();
    wait_for(&server, "/api/v1/logs", "logs", 1);
    let mut stream = TcpStream::connect(&server.http).unwrap();
    write!(
        stream,
        "GET /api/v1/logs/tail?service=web&q=wanted HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut content_type = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.to_ascii_lowercase().starts_with("content-type") {
            content_type = line.clone();
        }
        if line == "\r\n" {
            break;
        }
    }
    assert!(content_type.contains("text/event-stream"), "{content_type}");
    // the subscription exists once the headers are out
    for text in [
        "_e{5,10}:other|not wanted|#service:api",
        "_e{5,7}:noise|ignored|#service:web",
        "_e{4,12}:live|wanted thing|#service:web",
    ] {
        socket.send_to(text.as_bytes(), statsd).unwrap();
    }
    let mut data = None;
    while data.is_none() {
        line.clear();
        reader.read_line(&mut line).unwrap();
        // chunked framing lines and keep-alive comments pass by
        if let Some(at) = line.find("data: ") {
            data = Some(line[at + 6..].trim().to_string());
        }
    }
    let record: Value = serde_json::from_str(&data.unwrap()).unwrap();
    assert_eq!(record["message"], "wanted thing");
    assert_eq!(record["service"], "web");
    assert_eq!(record["trace_id"], Value::Null);
    let (status, _) = server.get("/api/v1/logs/tail?severity=loud");
    assert_eq!(status, 400);
}

fn tree(node: &Value) -> Vec<String> {
    let mut out = vec![format!("{}", node["id"].as_str().unwrap())];
    for child in node["children"].as_array().unwrap() {
        out.extend(tree(child));
    }
    out
}

#[test]
fn trace_search_and_the_jaeger_api() {
    let server = Server::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ssf = server.addr("ssf udp");
    // trace t (1..=3) starts at t seconds: root `web GET /t`, child `db query` lasting t*10 ms
    for t in 1..=3i64 {
        let mut root = span(
            t,
            t * 10,
            0,
            "web",
            &format!("GET /{t}"),
            (t * 1000, t * 1000 + 100),
        );
        root.tags
            .insert("tier".into(), if t == 2 { "gold" } else { "free" }.into());
        let mut child = span(
            t,
            t * 10 + 1,
            t * 10,
            "db",
            "query",
            (t * 1000 + 1, t * 1000 + 1 + t * 10),
        );
        child.error = t == 3;
        for packet in [child, root] {
            socket.send_to(&packet.encode_to_vec(), ssf).unwrap();
        }
    }
    // three traces, each with both its spans searchable (a trace can show up with its
    // first span before the second is indexed)
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = wait_for(&server, "/api/v1/traces", "traces", 3);
        let whole = all["traces"]
            .as_array()
            .is_some_and(|traces| traces.iter().all(|t| t["span_count"] == 2));
        if whole {
            break all;
        }
        assert!(Instant::now() < deadline, "{all}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ids = |value: &Value| -> Vec<String> {
        value["traces"]
            .as_array()
            .unwrap()
            .iter()
            // 32 hex digits, shown here as the number they print
            .map(|t| {
                let hex = t["trace_id"].as_str().unwrap();
                assert_eq!(hex.len(), 32, "{hex}");
                u128::from_str_radix(hex, 16).unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(ids(&all), ["3", "2", "1"], "newest first");
    assert_eq!(
        all["traces"][0],
        json!({
            "trace_id": "00000000000000000000000000000003", "root_service": "web", "root_name": "GET /3",
            "start_ns": T0 + 3_000_000_000i64, "duration_ns": 100_000_000,
            "span_count": 2, "error_count": 1, "services": ["db", "web"],
        })
    );
    let search = |query: &str| ids(&json_get(&server, &format!("/api/v1/traces?{query}")).1);
    assert_eq!(
        search("service=db&min_duration=20ms"),
        ["3", "2"],
        "inclusive"
    );
    assert_eq!(search("service=db&max_duration=20ms"), ["2", "1"]);
    assert_eq!(search("error=true"), ["3"]);
    assert_eq!(search("service=db&error=false"), ["2", "1"]);
    assert_eq!(search("tag=tier:gold"), ["2"]);
    assert_eq!(
        search("service=db&tag=tier:gold"),
        Vec::<String>::new(),
        "one span meets every filter"
    );
    assert_eq!(search("name=GET+%2F1"), ["1"]);
    assert_eq!(search("limit=1"), ["3"]);
    assert_eq!(
        search(&format!(
            "start={}&end={}",
            T0 + 2_000_000_000,
            T0 + 3_000_000_000
        )),
        ["2"],
        "[start, end)"
    );
    for bad in [
        "limit=1001",
        "limit=0",
        "min_duration=soon",
        "error=maybe",
        "start=x",
        "what=1",
    ] {
        let (status, body) = json_get(&server, &format!("/api/v1/traces?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Jaeger's read API: hex ids, microseconds, references, processes
    let (status, jaeger) = json_get(&server, "/api/traces/0000000000000002");
    assert_eq!(status, 200, "{jaeger}");
    assert_eq!(
        (jaeger["total"].clone(), jaeger["errors"].clone()),
        (json!(1), Value::Null)
    );
    let trace = &jaeger["data"][0];
    assert_eq!(trace["traceID"], "00000000000000000000000000000002");
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["operationName"], "GET /2");
    assert_eq!(spans[0]["startTime"], (T0 + 2_000_000_000) / 1000);
    assert_eq!(spans[0]["duration"], 100_000);
    assert_eq!(
        spans[1]["references"],
        json!([{"refType": "CHILD_OF", "traceID": "00000000000000000000000000000002", "spanID": "0000000000000014"}])
    );
    let process = spans[1]["processID"].as_str().unwrap();
    assert_eq!(trace["processes"][process]["serviceName"], "db");
    assert!(
        spans[0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "tier", "type": "string", "value": "gold"}))
    );
    let (_, services) = json_get(&server, "/api/services");
    assert_eq!(services["data"], json!(["db", "web"]));
    let (_, operations) = json_get(&server, "/api/services/web/operations");
    assert_eq!(operations["data"], json!(["GET /1", "GET /2", "GET /3"]));
    let (_, found) = json_get(
        &server,
        "/api/traces?service=db&tags=%7B%22error%22%3A%22true%22%7D&lookback=custom&limit=20",
    );
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        found["data"][0]["traceID"],
        "00000000000000000000000000000003"
    );
    let (_, found) = json_get(
        &server,
        &format!(
            "/api/traces?service=web&start={}&end={}",
            (T0 + 1_000_000_000) / 1000,
            (T0 + 2_000_000_001) / 1000
        ),
    );
    assert_eq!(found["data"].as_array().unwrap().len(), 2);
    assert_eq!(json_get(&server, "/api/traces/00000000000000ff").0, 404);
    // the Jaeger UI's lookup by id: those traces, whatever the other parameters say,
    // and one not found named in `errors`
    let (status, by_id) = json_get(
        &server,
        "/api/traces?traceID=0000000000000003&traceID=ff&traceID=2&service=nosuch\
         &traceID=0123456789ABCDEF00000000000000ee",
    );
    assert_eq!(status, 200, "{by_id}");
    let ids: Vec<&str> = by_id["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "00000000000000000000000000000003",
            "00000000000000000000000000000002"
        ]
    );
    assert_eq!(
        by_id["errors"],
        json!([
            {"code": 404, "msg": "trace not found", "traceID": "00000000000000ff"},
            {"code": 404, "msg": "trace not found", "traceID": "0123456789abcdef00000000000000ee"}
        ])
    );
    assert_eq!(json_get(&server, "/api/traces?traceID=zz").0, 400);
    let (status, bad) = json_get(&server, "/api/traces?tags=notjson");
    assert_eq!(
        (status, bad["errors"][0]["code"].clone()),
        (400, json!(400))
    );
    // the v1 tree agrees
    let (_, tree_json) = json_get(&server, "/api/v1/traces/2");
    assert_eq!(
        tree(&tree_json["root"]),
        ["0000000000000014", "0000000000000015"]
    );
}
