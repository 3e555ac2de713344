//! Every listener of SPEC 2, fed over real sockets; counters prove what arrived and how
//! it was classified.

use prost::Message;
use ssfd_e2e::{Server, root};
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample::Metric};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

fn received(listener: &str, protocol: &str) -> String {
    format!("ssfd_received_total{{listener=\"{listener}\",protocol=\"{protocol}\"}}")
}

fn rejected(listener: &str, protocol: &str, reason: &str) -> String {
    format!(
        "ssfd_rejected_by_protocol_total{{listener=\"{listener}\",protocol=\"{protocol}\",reason=\"{reason}\"}}"
    )
}

fn worker(kind: &str) -> String {
    format!("ssfd_worker_received_total{{kind=\"{kind}\"}}")
}

fn span(id: i64, name: &str) -> SsfSpan {
    SsfSpan {
        trace_id: 77,
        id,
        parent_id: if id == 77 { 0 } else { 77 },
        start_timestamp: 1_700_000_000_000_000_000,
        end_timestamp: 1_700_000_000_001_000_000,
        service: "svc".into(),
        name: name.into(),
        ..Default::default()
    }
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(root().join("testdata/veneur").join(name)).expect("vector")
}

#[test]
fn every_listener_is_announced_with_its_real_port() {
    let server = Server::start("");
    let lines = server.stderr.lock().unwrap().clone();
    let announced: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("listening "))
        .collect();
    for key in [
        "statsd udp",
        "statsd tcp",
        "statsd unixgram",
        "ssf udp",
        "ssf tcp",
        "ssf unix",
        "grpc tcp",
        "grpc tcp 2",
    ] {
        let address = server.addr(key);
        if !key.contains("unix") {
            let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
            assert_ne!(port, 0, "{key} announced port 0");
        }
    }
    assert_eq!(announced.len(), 9, "{announced:?}");
    assert_eq!(server.get("/healthcheck"), (200, "ok".to_string()));
    // the version and build (SPEC 6)
    let (status, version) = server.get("/version");
    assert_eq!(status, 200);
    let version = version.trim();
    assert!(
        version.starts_with(&format!("ssfd {} (", env!("CARGO_PKG_VERSION")))
            && version.contains(" build, ")
            && version.ends_with(&format!(
                "{}-{})",
                std::env::consts::ARCH,
                std::env::consts::OS
            )),
        "{version}"
    );
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("ssfd_build_info{version="), "{metrics}");
}

#[test]
fn statsd_over_udp_counts_lines_and_kinds() {
    let server = Server::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = server.addr("statsd udp");
    for datagram in [
        &b"a:1|c\nb:2|g\nbad\n"[..],
        b"c:1:2:3|h|@0.5",
        b"d:5|ms|#veneurglobalonly\nusers:alice|s\n",
        b"_e{5,4}:title|text|t:error\n_sc|db|2|m:down\n",
        b"x:1|c|@7\ny:nan|g\n",
    ] {
        socket.send_to(datagram, target).unwrap();
    }
    server.wait_metric(&received("statsd", "udp"), 10.0);
    server.wait_metric(&worker("counter"), 1.0);
    server.wait_metric(&worker("histogram"), 3.0);
    server.wait_metric(&worker("timer"), 1.0);
    server.wait_metric(&worker("set"), 1.0);
    server.wait_metric(&worker("gauge"), 1.0);
    server.wait_metric(&worker("status"), 1.0);
    server.wait_metric(&worker("event"), 1.0);
    server.wait_metric(&worker("log"), 1.0);
    assert_eq!(server.metric(&rejected("statsd", "udp", "parse")), 1.0);
    assert_eq!(server.metric(&rejected("statsd", "udp", "bad_rate")), 1.0);
    assert_eq!(server.metric(&rejected("statsd", "udp", "bad_value")), 1.0);
}

#[test]
fn oversized_datagram_is_rejected_alone() {
    let server = Server::start("metric_max_length: 100\n");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let long = format!("{}:1|c", "x".repeat(200));
    socket
        .send_to(long.as_bytes(), server.addr("statsd udp"))
        .unwrap();
    socket
        .send_to(b"ok:1|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric(&rejected("statsd", "udp", "too_long"), 1.0);
    server.wait_metric(&worker("counter"), 1.0);
    server.wait_metric(&received("statsd", "udp"), 2.0);
}

#[test]
fn statsd_over_tcp_keeps_the_connection_after_bad_lines() {
    let server = Server::start("metric_max_length: 64\n");
    let mut stream = TcpStream::connect(server.addr("statsd tcp")).unwrap();
    stream
        .write_all(b"a:1|c\nthis is not statsd\nb:1|c\r\n")
        .unwrap();
    server.wait_metric(&worker("counter"), 2.0);
    let long = format!("{}:1|c\n", "y".repeat(100));
    stream.write_all(long.as_bytes()).unwrap();
    stream.write_all(b"c:1|c\nd:2|c").unwrap();
    drop(stream);
    server.wait_metric(&worker("counter"), 4.0);
    server.wait_metric(&received("statsd", "tcp"), 6.0);
    assert_eq!(server.metric(&rejected("statsd", "tcp", "parse")), 1.0);
    assert_eq!(server.metric(&rejected("statsd", "tcp", "too_long")), 1.0);
}

#[test]
fn statsd_over_unixgram() {
    let server = Server::start("");
    let socket = UnixDatagram::unbound().unwrap();
    socket
        .send_to(b"a:1|c\nb:1|g", server.addr("statsd unixgram"))
        .unwrap();
    server.wait_metric(&received("statsd", "unixgram"), 2.0);
    server.wait_metric(&worker("counter"), 1.0);
    server.wait_metric(&worker("gauge"), 1.0);
}

#[test]
fn ssf_over_udp_classifies_every_packet() {
    let server = Server::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = server.addr("ssf udp");
    let samples_only = SsfSpan {
        metrics: vec![
            SsfSample {
                metric: Metric::Counter as i32,
                name: "c".into(),
                value: 2.0,
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Gauge as i32,
                name: "g".into(),
                value: 1.0,
                sample_rate: 1.0,
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Gauge as i32,
                name: "g".into(),
                value: 1.0,
                sample_rate: 3.0,
                ..Default::default()
            },
            SsfSample {
                metric: Metric::Counter as i32,
                name: "log".into(),
                message: "hello".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    for datagram in [
        vector("trace.pb"),
        vector("trace_critical.pb"),
        vector("span-with-operation-062017.pb"),
        vec![0xff, 0xff, 0x01],
        samples_only.encode_to_vec(),
        Vec::new(),
    ] {
        socket.send_to(&datagram, target).unwrap();
    }
    server.wait_metric(&received("ssf", "udp"), 6.0);
    server.wait_metric(&worker("span"), 2.0);
    // one sample counter plus ssf.span.calls of the two valid spans
    server.wait_metric(&worker("counter"), 3.0);
    server.wait_metric(&worker("histogram"), 2.0);
    server.wait_metric(&worker("gauge"), 1.0);
    server.wait_metric(&worker("log"), 1.0);
    assert_eq!(server.metric(&rejected("ssf", "udp", "decode")), 1.0);
    assert_eq!(server.metric(&rejected("ssf", "udp", "invalid_span")), 1.0);
    assert_eq!(server.metric(&rejected("ssf", "udp", "empty")), 1.0);
    assert_eq!(server.metric(&rejected("ssf", "udp", "bad_rate")), 1.0);
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ssfd_wire::framing::encode_frame(body, &mut out);
    out
}

#[test]
fn framed_ssf_over_tcp_skips_bad_bodies_and_closes_on_framing_errors() {
    let server = Server::start("");
    let mut stream = TcpStream::connect(server.addr("ssf tcp")).unwrap();
    let mut bytes = Vec::new();
    for id in [1, 2, 3] {
        bytes.extend(frame(&span(id, "op").encode_to_vec()));
    }
    bytes.extend(frame(&[0xff, 0xff, 0xff]));
    bytes.extend(frame(&span(4, "op").encode_to_vec()));
    stream.write_all(&bytes).unwrap();
    server.wait_metric(&worker("span"), 4.0);
    stream.write_all(&[7, 0, 0, 0, 1, 0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 8];
    assert_eq!(
        stream.read(&mut buffer).unwrap(),
        0,
        "a framing error closes the connection"
    );
    server.wait_metric(&rejected("ssf", "tcp", "framing"), 1.0);
    assert_eq!(server.metric(&rejected("ssf", "tcp", "decode")), 1.0);
    assert_eq!(server.metric(&received("ssf", "tcp")), 6.0);
}

#[test]
fn framed_ssf_over_a_unix_socket() {
    let server = Server::start("");
    let mut stream = UnixStream::connect(server.addr("ssf unix")).unwrap();
    let mut bytes = frame(&span(1, "a").encode_to_vec());
    bytes.extend(frame(&vector("trace.pb")));
    stream.write_all(&bytes).unwrap();
    server.wait_metric(&worker("span"), 2.0);
    assert_eq!(server.metric(&received("ssf", "unix")), 2.0);
}

#[test]
fn num_readers_share_one_port() {
    let server = Server::start("num_readers: 3\n");
    let port: u16 = server
        .addr("statsd udp")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let bound = table
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&format!(":{port:04X}")))
        })
        .count();
    assert_eq!(bound, 3, "three reader sockets on port {port}");
    for _ in 0..300 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .send_to(b"spread:1|c", server.addr("statsd udp"))
            .unwrap();
    }
    server.wait_metric(&worker("counter"), 300.0);
}

#[test]
fn sigterm_stops_cleanly() {
    let server = Server::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"a:1|c", server.addr("statsd udp")).unwrap();
    server.wait_metric(&worker("counter"), 1.0);
    let status = server.terminate();
    assert!(status.success(), "{status}");
}
