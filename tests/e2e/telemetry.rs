//! Own telemetry (issue 7 point 8, SPEC 10): every series SPEC 10 promises is read from
//! `/metrics` after the test provoked it: items received over each listener and
//! protocol, rejections for each reason a client can cause, drops (a sink that always
//! fails, a forward destination that is down, a full queue), the kernel's UDP
//! receive-buffer drops, live series, flush durations, the bytes of each store
//! (spans, logs, write-ahead log), every sink and forward counter, and the build info.
//! Every drop stage and reason SPEC 10 lists is rendered, provoked or zero. Drops for a full
//! queue are provoked in `policies.rs`, for `memory_limit` in `overload.rs`, for a full
//! disk in `disk.rs`, and for `shutdown` in `sinks.rs` (the hung sink at SIGTERM).

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssfgrpc_client::SsfgrpcClient};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn wait_at_least(server: &Server, series: &str, want: f64) -> f64 {
    // a local's forwarding retries for about 16 s (±50 % jitter) before it drops
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = server.metric(series);
        if value >= want {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {value}, want ≥ {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn span_with_log(trace: i64) -> SsfSpan {
    SsfSpan {
        trace_id: trace,
        id: 1,
        start_timestamp: 1_700_000_000_000_000_000,
        end_timestamp: 1_700_000_000_000_001_000,
        service: "telemetry".into(),
        name: "provoke".into(),
        metrics: vec![SsfSample {
            name: "log".into(),
            message: "a log line to index".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn every_promised_series_is_read_after_provoking_it() {
    let global = Server::start("interval: 1s\n");
    let failing = ssfd_e2e::failing_http();
    let dead = ssfd_e2e::free_port();
    let jsonl = tempfile::tempdir().unwrap();
    let server = Server::start(&format!(
        "interval: 1s\nmetric_max_length: 200\nread_buffer_size_bytes: 4096\n\
         otlp_listen_addresses: [grpc://127.0.0.1:0, http://127.0.0.1:0]\n\
         forward_address: {}\n\
         metric_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n\
         \x20 - kind: datadog\n    name: broken\n    config: {{api_key: k, api_hostname: http://{failing}}}\n",
        global.addr("grpc tcp"),
        jsonl.path().join("m.jsonl").display()
    ));
    let stranded = Server::start(&format!(
        "interval: 1s\nforward_address: 127.0.0.1:{dead}\n"
    ));

    // received, by listener and protocol
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"t.udp:1|c|#veneurglobalonly", server.addr("statsd udp"))
        .unwrap();
    TcpStream::connect(server.addr("statsd tcp"))
        .unwrap()
        .write_all(b"t.tcp:1|c\n")
        .unwrap();
    let unixgram = std::os::unix::net::UnixDatagram::unbound().unwrap();
    unixgram
        .send_to(b"t.unixgram:1|g", server.addr("statsd unixgram"))
        .unwrap();
    udp.send_to(&span_with_log(1).encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    let grpc = format!("http://{}", server.addr("grpc tcp"));
    ssfd_e2e::block_on(async {
        let channel = ssfd_e2e::grpc_channel(&grpc).await;
        SsfgrpcClient::new(channel)
            .send_span(span_with_log(2))
            .await
            .unwrap();
    });
    let otlp = ssfd_e2e::http_post(
        server.addr("otlp http"),
        "/v1/logs",
        "application/json",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"otlp log"}}]}]}]}"#,
    );
    assert_eq!(otlp.0, 200, "{}", otlp.1);
    for (listener, protocol) in [
        ("statsd", "udp"),
        ("statsd", "tcp"),
        ("statsd", "unixgram"),
        ("ssf", "udp"),
        ("grpc", "grpc"),
        ("otlp", "http"),
    ] {
        wait_at_least(
            &server,
            &format!("ssfd_received_total{{listener=\"{listener}\",protocol=\"{protocol}\"}}"),
            1.0,
        );
    }
    wait_at_least(
        &global,
        "ssfd_received_total{listener=\"forward\",protocol=\"grpc\"}",
        1.0,
    );

    // rejected, one per reason a client can cause
    let long = format!("t.long:1|c|#{}", "x".repeat(300));
    for (line, reason) in [
        (&b"garbage"[..], "parse"),
        (b"t.bad:abc|c", "bad_value"),
        (b"t.rate:1|c|@7", "bad_rate"),
        (b"t.section:1|c|q:what", "unknown_section"),
        (long.as_bytes(), "too_long"),
    ] {
        udp.send_to(line, server.addr("statsd udp")).unwrap();
        wait_at_least(
            &server,
            &format!("ssfd_rejected_total{{listener=\"statsd\",reason=\"{reason}\"}}"),
            1.0,
        );
    }
    udp.send_to(b"\xff\xff not protobuf", server.addr("ssf udp"))
        .unwrap();
    wait_at_least(
        &server,
        "ssfd_rejected_total{listener=\"ssf\",reason=\"decode\"}",
        1.0,
    );
    let mut empty = SsfSpan::default();
    empty.tags.insert("only".into(), "tags".into());
    udp.send_to(&empty.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    wait_at_least(
        &server,
        "ssfd_rejected_total{listener=\"ssf\",reason=\"empty\"}",
        1.0,
    );
    let invalid = SsfSpan {
        trace_id: 0,
        id: 5,
        name: "no trace".into(),
        start_timestamp: 1,
        end_timestamp: 2,
        ..Default::default()
    };
    udp.send_to(&invalid.encode_to_vec(), server.addr("ssf udp"))
        .unwrap();
    wait_at_least(
        &server,
        "ssfd_rejected_total{listener=\"ssf\",reason=\"invalid_span\"}",
        1.0,
    );
    let mut framed = TcpStream::connect(server.addr("ssf tcp")).unwrap();
    framed.write_all(&[9, 0, 0, 0, 0, 0]).unwrap();
    wait_at_least(
        &server,
        "ssfd_rejected_total{listener=\"ssf\",reason=\"framing\"}",
        1.0,
    );

    // drops: a sink that always fails, a forward destination that is down
    wait_at_least(
        &server,
        "ssfd_sink_failures_total{sink=\"broken\",kind=\"datadog\"}",
        1.0,
    );
    wait_at_least(
        &server,
        "ssfd_sink_retries_total{sink=\"broken\",kind=\"datadog\"}",
        1.0,
    );
    wait_at_least(
        &server,
        "ssfd_sink_dropped_total{sink=\"broken\",kind=\"datadog\"}",
        1.0,
    );
    wait_at_least(
        &server,
        "ssfd_dropped_total{stage=\"sink\",reason=\"retry_exhausted\"}",
        1.0,
    );
    wait_at_least(
        &server,
        "ssfd_sink_sent_total{sink=\"file\",kind=\"jsonl\"}",
        1.0,
    );
    let destination = global.addr("grpc tcp");
    wait_at_least(
        &server,
        &format!("ssfd_forward_sent_total{{destination=\"{destination}\"}}"),
        1.0,
    );
    udp.send_to(
        b"t.stranded:1|c|#veneurglobalonly",
        stranded.addr("statsd udp"),
    )
    .unwrap();
    let dead_destination = format!("127.0.0.1:{dead}");
    wait_at_least(
        &stranded,
        &format!("ssfd_forward_retries_total{{destination=\"{dead_destination}\"}}"),
        1.0,
    );
    wait_at_least(
        &stranded,
        &format!("ssfd_forward_failures_total{{destination=\"{dead_destination}\"}}"),
        1.0,
    );
    wait_at_least(
        &stranded,
        &format!("ssfd_forward_dropped_total{{destination=\"{dead_destination}\"}}"),
        1.0,
    );
    wait_at_least(
        &stranded,
        "ssfd_dropped_total{stage=\"forward\",reason=\"retry_exhausted\"}",
        1.0,
    );

    // the kernel's drops: a 4 KiB receive buffer and a burst from four senders
    let target = server.addr("statsd udp").to_string();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let target = target.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                let packet = vec![b'k'; 1000];
                for _ in 0..50_000 {
                    let _ = socket.send_to(&packet, &target);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    // the kernel reports its count with the next datagram read
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("ssfd_udp_kernel_drops_total{listener=\"statsd\"}") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "the kernel's drops were not reported"
        );
        udp.send_to(b"t.after:1|c", server.addr("statsd udp"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }

    // live series (of the last interval), flushes, the stores
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("ssfd_series") < 1.0 {
        assert!(Instant::now() < deadline, "ssfd_series stays 0");
        udp.send_to(b"t.live:1|c", server.addr("statsd udp"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_at_least(&server, "ssfd_flush_duration_seconds_count", 1.0);
    for store in ["spans", "logs", "wal"] {
        wait_at_least(
            &server,
            &format!("ssfd_store_bytes{{store=\"{store}\"}}"),
            1.0,
        );
    }
    let exposition = server.get("/metrics").1;
    assert!(
        exposition.contains(&format!(
            "ssfd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{exposition}"
    );
    // every drop stage and reason SPEC 10 names is rendered (received and rejected
    // show the combinations that happened, read above)
    for stage in ["ingest", "worker", "store", "index", "sink", "forward"] {
        for reason in [
            "queue_full",
            "overflow",
            "memory_limit",
            "retry_exhausted",
            "shutdown",
        ] {
            let series = format!("ssfd_dropped_total{{stage=\"{stage}\",reason=\"{reason}\"}}");
            assert!(exposition.contains(&series), "{series} is rendered");
        }
    }
}

/// Size limits (issue 7 point 5): a gRPC message past 4 MiB, an SSF frame announcing
/// more than 16 MiB and an OTLP/HTTP body past 32 MiB are refused alone; the server
/// goes on serving the next request.
#[test]
fn oversized_requests_and_frames_are_refused_alone() {
    let server = Server::start("otlp_listen_addresses: [http://127.0.0.1:0]\n");
    let grpc = format!("http://{}", server.addr("grpc tcp"));
    ssfd_e2e::block_on(async {
        let channel = ssfd_e2e::grpc_channel(&grpc).await;
        let mut client = SsfgrpcClient::new(channel);
        let mut huge = span_with_log(70);
        huge.tags.insert("blob".into(), "b".repeat(5 << 20));
        let status = client.send_span(huge).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
        client
            .send_span(span_with_log(71))
            .await
            .expect("the next call is served");
    });
    // a frame header announcing 17 MiB: a framing error, the connection closes
    let mut framed = TcpStream::connect(server.addr("ssf tcp")).unwrap();
    let mut header = vec![0u8];
    header.extend_from_slice(&(17u32 << 20).to_be_bytes());
    framed.write_all(&header).unwrap();
    framed
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(framed.read_to_end(&mut rest).unwrap_or(0), 0, "closed");
    wait_at_least(
        &server,
        "ssfd_rejected_total{listener=\"ssf\",reason=\"framing\"}",
        1.0,
    );
    // the server may answer before the body is all sent: write errors are expected
    let mut big = TcpStream::connect(server.addr("otlp http")).unwrap();
    let length = (32 << 20) + 1;
    let _ = write!(
        big,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let _ = big.write_all(&vec![0u8; length]);
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "an OTLP body past 32 MiB: {answer}"
    );
    let (status, body) = ssfd_e2e::http_post(
        server.addr("otlp http"),
        "/v1/logs",
        "application/json",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"after"}}]}]}]}"#,
    );
    assert_eq!(status, 200, "the next request is served: {body}");
    wait_at_least(
        &server,
        "ssfd_received_total{listener=\"grpc\",protocol=\"grpc\"}",
        1.0,
    );
}
