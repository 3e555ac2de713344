//! A full disk (issue 7 point 4, SPEC 7): `data_dir` on a 64 MiB tmpfs the test mounts
//! (CI runs as root). Another file takes the space; ssfd refuses durable calls with
//! `UNAVAILABLE` (counted), drops and counts what the best-effort path brings, keeps
//! answering, and takes calls again once the space is back. What it had stored is still
//! there, also after a restart: no store was harmed.

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSpan, ssfgrpc_client::SsfgrpcClient};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Unmounts when dropped (after the server that used it).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(path: &Path, size: &str) -> Mounted {
    std::fs::create_dir_all(path).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(path)
        .status()
        .expect("mount runs");
    assert!(
        status.success(),
        "mounting a tmpfs needs root (CI runs as root): {status}"
    );
    Mounted(path.to_path_buf())
}

fn available(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn span(trace: i64, id: i64) -> SsfSpan {
    SsfSpan {
        trace_id: trace,
        id,
        parent_id: if id == 1 { 0 } else { 1 },
        start_timestamp: 1_700_000_000_000_000_000 + id,
        end_timestamp: 1_700_000_000_000_001_000,
        service: "disk".into(),
        name: "write".into(),
        ..Default::default()
    }
}

/// Sends spans 1..=count of `trace` one unary call each; returns (ok, unavailable).
fn send(server: &Server, trace: i64, count: i64) -> (u64, u64) {
    let address = format!("http://{}", server.addr("grpc tcp"));
    ssfd_e2e::block_on(async move {
        let channel = ssfd_e2e::grpc_channel(&address).await;
        let mut client = SsfgrpcClient::new(channel);
        let (mut ok, mut unavailable) = (0, 0);
        for id in 1..=count {
            match client.send_span(span(trace, id)).await {
                Ok(_) => ok += 1,
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                    assert!(status.message().contains("data_dir"), "{status}");
                    unavailable += 1;
                }
            }
        }
        (ok, unavailable)
    })
}

fn wait_trace(server: &Server, trace: i64, spans: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get(&format!("/api/v1/traces/{trace}"));
        if status == 200
            && serde_json::from_str::<serde_json::Value>(&body).unwrap()["span_count"] == spans
        {
            return;
        }
        assert!(Instant::now() < deadline, "trace {trace}: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_metric_at_least(server: &Server, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric(series) < want {
        assert!(
            Instant::now() < deadline,
            "{series} = {}, want ≥ {want}",
            server.metric(series)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_data_dir_refuses_with_a_counted_error_and_resumes_with_its_stores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _mounted = mount_tmpfs(&data, "64m");
    let config = format!("{}interval: 1s\n", ssfd_e2e::port_zero_config(dir.path()));
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    assert_eq!(send(&server, 1, 20), (20, 0));
    wait_trace(&server, 1, 20);
    assert_eq!(server.metric("ssfd_disk_low"), 0.0);

    // another file takes all but 2 MiB (ssfd keeps a reserve of at least 8 MiB)
    let filler = data.join("filler");
    let take = available(&data).saturating_sub(2 << 20);
    std::fs::write(&filler, vec![7u8; take as usize]).unwrap();
    server.wait_metric("ssfd_disk_low", 1.0);
    let (ok, unavailable) = send(&server, 2, 10);
    assert_eq!((ok, unavailable), (0, 10), "durable calls are refused");
    assert_eq!(
        server.metric("ssfd_refused_total{listener=\"grpc\",reason=\"disk_full\"}"),
        10.0,
        "each refusal is counted"
    );
    // best effort (UDP) is taken: the span store keeps its block pending (and
    // readable) until there is room, and past one block drops and counts
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut big = span(3, 0);
    big.tags.insert("pad".into(), "p".repeat(1000));
    let udp_spans = 6_000;
    for id in 1..=udp_spans {
        big.id = id;
        socket
            .send_to(&big.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
        if id % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    wait_metric_at_least(
        &server,
        "ssfd_dropped_total{stage=\"store\",reason=\"disk_full\"}",
        1.0,
    );
    assert_eq!(server.get("/api/v1/traces/1").0, 200, "still answering");

    // the space comes back: calls are taken again
    std::fs::remove_file(&filler).unwrap();
    server.wait_metric("ssfd_disk_low", 0.0);
    assert_eq!(send(&server, 4, 10), (10, 0));
    wait_trace(&server, 4, 10);
    wait_trace(&server, 1, 20);
    assert!(server.terminate().success());

    // the stores open whole after all that
    let restarted = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    wait_trace(&restarted, 1, 20);
    wait_trace(&restarted, 4, 10);
    assert_eq!(
        restarted.get("/api/v1/traces/2").0,
        404,
        "refused calls left nothing"
    );
    assert!(restarted.terminate().success());
}
