//! `ssfd query` against a running server (issue 4): the waterfall of a joined trace,
//! the search tables, `--json` as the API answered, and API errors as exit failures.

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const T0: i64 = 1_800_000_000_000_000_000;

fn span(id: i64, parent: i64, service: &str, name: &str, ms: (i64, i64)) -> SsfSpan {
    SsfSpan {
        trace_id: 31,
        id,
        parent_id: parent,
        start_timestamp: T0 + ms.0 * 1_000_000,
        end_timestamp: T0 + ms.1 * 1_000_000,
        service: service.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn query(server: &Server, args: &[&str]) -> (bool, String, String) {
    ssfd_e2e::ssfd_query(&server.http, args)
}

#[test]
fn query_prints_waterfalls_tables_and_json() {
    let server = Server::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut db = span(3, 2, "db", "SELECT", (20, 60));
    db.error = true;
    db.metrics.push(SsfSample {
        name: "sql".into(),
        message: "lock wait timeout".into(),
        status: 2,
        timestamp: T0 + 55_000_000,
        ..Default::default()
    });
    for packet in [
        db,
        span(2, 1, "api", "lookup", (10, 70)),
        span(1, 0, "web", "GET /", (0, 100)),
    ] {
        socket
            .send_to(&packet.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, _) = query(&server, &["logs", "-q", "lock timeout"]);
        if ok && out.contains("lock wait timeout") {
            assert_eq!(
                out,
                "2027-01-15T08:00:00.055000Z error   db sql: lock wait timeout  trace=0000000000000000000000000000001f span=0000000000000003\n"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never indexed: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // "31" reads as hex (no such trace) and as decimal (SPEC 6: hex first)
    let (ok, out, err) = query(&server, &["trace", "31"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "trace 0000000000000000000000000000001f  complete  3 spans  0 orphans  100.0ms  services: api,db,web\n\
         SPAN               OFFSET  DURATION  TIMELINE\n\
         web GET /             0ns   100.0ms  |##############################|\n\
         \x20 api lookup       10.0ms    60.0ms  |   ##################         |\n\
         \x20   db SELECT !    20.0ms    40.0ms  |      ############            |\n\
         \x20       log 55.0ms [error] sql: lock wait timeout\n"
    );
    let (ok, json, _) = query(&server, &["--json", "trace", "000000000000001f"]);
    assert!(ok);
    assert_eq!(
        json.trim(),
        server.get("/api/v1/traces/31").1,
        "the API's answer as is"
    );
    let (ok, out, _) = query(
        &server,
        &[
            "traces",
            "--service",
            "db",
            "--error",
            "true",
            "--min-duration",
            "40ms",
        ],
    );
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("0000000000000000000000000000001f "),
        "{out}"
    );
    assert!(out.ends_with("web GET /\n"), "{out}");
    let (ok, out, _) = query(
        &server,
        &["traces", "--service", "db", "--min-duration", "41ms"],
    );
    assert!(ok);
    assert_eq!(out, "no traces match\n", "an empty answer says so");
    let (ok, _, err) = query(&server, &["trace", "777"]);
    assert!(!ok);
    assert!(err.contains("404") && err.contains("not stored"), "{err}");
    let (ok, _, err) = query(&server, &["logs", "--severity", "loud"]);
    assert!(!ok);
    assert!(err.contains("400") && err.contains("severity"), "{err}");
}

#[test]
fn with_a_bearer_token_file_the_api_refuses_requests_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let server = Server::start(&format!(
        "http_bearer_token_file: {}\n",
        token_file.display()
    ));
    let get = |path: &str, headers: &str| ssfd_e2e::http_get_with(&server.http, path, headers);
    for path in [
        "/api/v1/services",
        "/api/v1/logs",
        "/metrics",
        "/api/services",
    ] {
        let (status, body) = get(path, "");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("Bearer"), "{body}");
        assert_eq!(
            get(path, "Authorization: Bearer wrong\r\n").0,
            401,
            "{path}"
        );
        assert_eq!(
            get(path, "Authorization: Bearer s3cret-token\r\n").0,
            200,
            "{path}"
        );
    }
    assert_eq!(get("/healthcheck", "").0, 200, "probes need no token");
    let (ok, _, err) = query(&server, &["traces"]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, out, err) = query(&server, &["--token", "s3cret-token", "traces"]);
    // with the token the search runs (and, nothing stored, says so)
    assert!(ok && out == "no traces match\n", "{out} {err}");
}
