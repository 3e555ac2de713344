//! The write-ahead log (issue 7 point 1, SPEC 7): a client streams spans (each with an
//! embedded counter sample) over `SendSpans` and DogStatsD counters over `SendPacket`,
//! one call at a time, and records what was acknowledged. ssfd is SIGKILLed at a
//! random moment and restarted on the same data_dir. Every acknowledged span is
//! queryable with its trace, and the counters the `jsonl` sink wrote across both
//! processes count every acknowledged item once: at least what was acknowledged, at
//! most that plus the one call in flight at the kill. Twenty random kill points.

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::dogstatsd::{DogstatsdPacket, dogstatsd_grpc_client::DogstatsdGrpcClient};
use ssfd_wire::ssf::{SsfSample, SsfSpan};
use ssfd_wire::ssfd::v1::ingest_client::IngestClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SPANS_PER_CALL: i64 = 50;
const LINES_PER_PACKET: u64 = 20;

/// xorshift, seeded and printed, so a failing kill point can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn span(trace: i64, index: i64) -> SsfSpan {
    SsfSpan {
        trace_id: trace,
        id: index + 1,
        parent_id: if index == 0 { 0 } else { 1 },
        start_timestamp: 1_700_000_000_000_000_000 + index * 1000,
        end_timestamp: 1_700_000_000_000_000_000 + index * 1000 + 500,
        service: "walsvc".into(),
        name: "op".into(),
        metrics: vec![SsfSample {
            metric: 0,
            name: "wal.spans".into(),
            value: 1.0,
            sample_rate: 1.0,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What the client saw acknowledged, and what it had in flight.
#[derive(Default)]
struct Acked {
    /// Traces whose `SendSpans` call was answered OK.
    traces: std::sync::Mutex<Vec<i64>>,
    packets: AtomicU64,
    /// Items of the call that was in flight when the server died.
    in_flight_spans: AtomicU64,
    in_flight_lines: AtomicU64,
}

async fn load(address: String, first_trace: i64, acked: Arc<Acked>, stop: Arc<AtomicBool>) {
    let Ok(channel) = tonic::transport::Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
    else {
        return;
    };
    let mut spans = IngestClient::new(channel.clone());
    let mut packets = DogstatsdGrpcClient::new(channel);
    let mut trace = first_trace;
    let packet: Vec<u8> = (0..LINES_PER_PACKET)
        .map(|_| "wal.packets:1|c\n")
        .collect::<String>()
        .into_bytes();
    while !stop.load(Ordering::Relaxed) {
        trace += 1;
        acked
            .in_flight_spans
            .store(SPANS_PER_CALL as u64, Ordering::Relaxed);
        let batch: Vec<SsfSpan> = (0..SPANS_PER_CALL).map(|i| span(trace, i)).collect();
        match spans.send_spans(tokio_stream::iter(batch)).await {
            Ok(summary) => {
                assert_eq!(summary.into_inner().accepted, SPANS_PER_CALL as u64);
                acked.traces.lock().unwrap().push(trace);
                acked.in_flight_spans.store(0, Ordering::Relaxed);
            }
            Err(_) => return,
        }
        acked
            .in_flight_lines
            .store(LINES_PER_PACKET, Ordering::Relaxed);
        match packets
            .send_packet(DogstatsdPacket {
                packet_bytes: packet.clone(),
            })
            .await
        {
            Ok(_) => {
                acked.packets.fetch_add(1, Ordering::Relaxed);
                acked.in_flight_lines.store(0, Ordering::Relaxed);
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                // refused (a full queue): nothing was taken
                acked.in_flight_lines.store(0, Ordering::Relaxed);
            }
            Err(_) => return,
        }
    }
}

/// Sums a counter over every line of the jsonl sink's file.
fn jsonl_total(path: &std::path::Path, name: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["name"] == name && m["type"] == "counter")
        .map(|m| m["value"].as_f64().unwrap())
        .sum()
}

fn kill(server: Server) {
    let pid = server.pid();
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
    drop(server);
}

#[test]
fn acknowledged_spans_and_metrics_survive_sigkill_at_twenty_random_points() {
    let seed = std::env::var("SSFD_WAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("SSFD_WAL_SEED={seed}");
    let mut random = Random(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("metrics.jsonl");
        let config = format!(
            "{}interval: 1s\nnum_workers: 1\nmetric_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n",
            ssfd_e2e::port_zero_config(dir.path()),
            jsonl.display()
        );
        let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
        let address = format!("http://{}", server.addr("grpc tcp"));
        let acked = Arc::new(Acked::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client = runtime.spawn(load(
            address,
            (round + 1) * 1_000_000,
            Arc::clone(&acked),
            Arc::clone(&stop),
        ));
        let kill_after = Duration::from_millis(300 + random.next() % 2700);
        std::thread::sleep(kill_after);
        let wal_bytes = server.metric("ssfd_store_bytes{store=\"wal\"}");
        kill(server);
        stop.store(true, Ordering::Relaxed);
        runtime.block_on(client).unwrap();
        let traces = acked.traces.lock().unwrap().clone();
        let packets = acked.packets.load(Ordering::Relaxed);
        assert!(
            !traces.is_empty(),
            "round {round}: nothing acknowledged in {kill_after:?}"
        );
        assert!(wal_bytes > 0.0, "round {round}: the log reports its bytes");

        let restarted = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
        for &trace in &traces {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = restarted.get(&format!("/api/v1/traces/{trace}"));
                if status == 200 {
                    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                    if answer["span_count"] == SPANS_PER_CALL {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round} (seed {seed}, kill after {kill_after:?}): acknowledged trace {trace} is not whole: {status} {body}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // the replayed interval is flushed by the restarted process; a graceful stop
        // flushes the rest
        assert!(restarted.terminate().success());
        let spans_counted = jsonl_total(&jsonl, "wal.spans");
        let lines_counted = jsonl_total(&jsonl, "wal.packets");
        let spans_acked = (traces.len() as i64 * SPANS_PER_CALL) as f64;
        let lines_acked = (packets * LINES_PER_PACKET) as f64;
        let spans_in_flight = acked.in_flight_spans.load(Ordering::Relaxed) as f64;
        let lines_in_flight = acked.in_flight_lines.load(Ordering::Relaxed) as f64;
        let context = format!(
            "round {round} (seed {seed}, kill after {kill_after:?}): spans counted {spans_counted}, acked {spans_acked} (+{spans_in_flight} in flight); lines counted {lines_counted}, acked {lines_acked} (+{lines_in_flight} in flight)"
        );
        eprintln!("{context}");
        assert!(
            spans_counted >= spans_acked && spans_counted <= spans_acked + spans_in_flight,
            "{context}"
        );
        assert!(
            lines_counted >= lines_acked && lines_counted <= lines_acked + lines_in_flight,
            "{context}"
        );
        // a clean stop leaves only the empty segment it was writing
        let left: u64 = std::fs::read_dir(dir.path().join("data/wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(left, 8, "{context}: after a clean stop the log is empty");
    }
}

#[test]
fn the_log_is_optional_and_replay_survives_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}interval: 1s\n", ssfd_e2e::port_zero_config(dir.path()));
    // a crash mid-write leaves a torn record after the whole ones
    let wal = dir.path().join("data/wal");
    std::fs::create_dir_all(&wal).unwrap();
    let mut segment = b"SSFDWAL1".to_vec();
    let mut payload = Vec::new();
    let encoded = span(77, 0).encode_to_vec();
    payload.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    payload.extend_from_slice(&encoded);
    let mut crc = flate2::Crc::new();
    crc.update(&[1]);
    crc.update(&payload);
    segment.extend_from_slice(&(payload.len() as u32 + 1).to_le_bytes());
    segment.extend_from_slice(&crc.sum().to_le_bytes());
    segment.push(1);
    segment.extend_from_slice(&payload);
    segment.extend_from_slice(&[9, 0, 0]);
    std::fs::write(wal.join("0000000000000005.wal"), &segment).unwrap();
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get("/api/v1/traces/77").0 != 200 {
        assert!(Instant::now() < deadline, "the whole record is replayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("replayed the write-ahead log") && l.contains("torn=1")),
        "the torn tail is reported"
    );
    assert!(server.terminate().success());
    // `wal: false` opens no log: nothing is written under data_dir/wal
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}interval: 1s\nwal: false\n",
        ssfd_e2e::port_zero_config(dir.path())
    );
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    assert!(!dir.path().join("data/wal").exists());
    assert_eq!(server.metric("ssfd_store_bytes{store=\"wal\"}"), 0.0);
    assert!(server.terminate().success());
}

#[test]
fn acknowledged_otlp_traces_and_logs_are_replayed_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // a long interval and a killed process: only the log can bring these back
    let config = format!(
        "{}interval: 1h\notlp_listen_addresses: [http://127.0.0.1:0]\n",
        ssfd_e2e::port_zero_config(dir.path())
    );
    let server = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let trace = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otelsvc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "94568bc249d556030000000000003039",
            "spanId": "0000000000000001",
            "name": "replayed op",
            "startTimeUnixNano": "1800000000000000000",
            "endTimeUnixNano": "1800000000005000000"
        }]}]
    }]});
    let logs = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otelsvc"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1800000000001000000",
            "severityNumber": 17,
            "body": {"stringValue": "replayed after a crash"},
            "traceId": "94568bc249d556030000000000003039",
            "spanId": "0000000000000001"
        }]}]
    }]});
    for (path, body) in [("/v1/traces", &trace), ("/v1/logs", &logs)] {
        let (status, answer) = ssfd_e2e::http_post(
            server.addr("otlp http"),
            path,
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{path}: {answer}");
    }
    // acknowledged: killed before any interval or store commit could matter
    kill(server);
    let restarted = Server::start_config(&config, tempfile::tempdir().unwrap(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // the whole 128-bit id comes back from the log, and the record under its span
        let (status, body) = restarted.get("/api/v1/traces/94568bc249d556030000000000003039");
        let (_, found) = restarted.get("/api/v1/logs?q=replayed&service=otelsvc");
        let trace: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status == 200
            && trace["root"]["name"] == "replayed op"
            && trace["root"]["logs"][0]["message"] == "replayed after a crash"
            && found.contains("replayed after a crash")
        {
            assert_eq!(trace["trace_id"], "94568bc249d556030000000000003039");
            assert_eq!(
                restarted.get("/api/v1/traces/0000000000003039").0,
                404,
                "the SSF trace of the same low half is another trace"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the OTLP span and log come back: {status} {body} / {found}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restarted.terminate().success());
}
