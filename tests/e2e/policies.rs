//! Full-queue policies (SPEC 7): UDP drops newest and counts it, unary gRPC waits for
//! room up to `grpc_wait` (SPEC 3.3) and only then answers UNAVAILABLE, streams push
//! back and lose nothing. The workers are slowed
//! with the `SSFD_TEST_WORKER_STALL_MS` hook so queues fill deterministically.

use prost::Message;
use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSpan, ssfgrpc_client::SsfgrpcClient};
use ssfd_wire::ssfd::v1::ingest_client::IngestClient;
use std::net::UdpSocket;

fn span(id: i64) -> SsfSpan {
    SsfSpan {
        trace_id: 5,
        id,
        start_timestamp: 1,
        end_timestamp: 2,
        service: "s".into(),
        name: "n".into(),
        ..Default::default()
    }
}

const SPANS_WORKER: &str = "ssfd_worker_received_total{kind=\"span\"}";
const DROPPED: &str = "ssfd_dropped_total{stage=\"ingest\",reason=\"queue_full\"}";

#[test]
fn udp_drops_newest_when_the_queue_is_full_and_counts_every_drop() {
    let server = Server::start_with_env(
        "span_channel_capacity: 1\n",
        &[("SSFD_TEST_WORKER_STALL_MS", "300")],
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let total = 400;
    for id in 1..=total {
        socket
            .send_to(&span(id).encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
        // each burst of 50 is handed off (its count published) before the next is sent,
        // so the bursts reach the stalled queue as separate batches however busy the
        // machine is (fixed 20 ms gaps let a starved reader merge them, and the queue
        // then never overflowed)
        if id % 50 == 0 {
            server.wait_metric(
                "ssfd_received_total{listener=\"ssf\",protocol=\"udp\"}",
                id as f64,
            );
        }
    }
    server.wait_metric(
        "ssfd_received_total{listener=\"ssf\",protocol=\"udp\"}",
        total as f64,
    );
    let dropped = server.metric(DROPPED);
    assert!(dropped > 0.0, "the stalled queue must overflow");
    // every span is either delivered to the worker or counted as dropped
    server.wait_metric(SPANS_WORKER, total as f64 - dropped);
}

#[test]
fn unary_grpc_answers_unavailable_when_full() {
    let server = Server::start_with_env(
        "span_channel_capacity: 1\n",
        &[("SSFD_TEST_WORKER_STALL_MS", "2000")],
    );
    let address = format!("http://{}", server.addr("grpc tcp"));
    let (ok, unavailable) = ssfd_e2e::block_on(async move {
        let mut client = SsfgrpcClient::new(ssfd_e2e::grpc_channel(&address).await);
        let (mut ok, mut unavailable) = (0, 0);
        for id in 1..=6 {
            match client.send_span(span(id)).await {
                Ok(_) => ok += 1,
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                    unavailable += 1;
                }
            }
        }
        (ok, unavailable)
    });
    assert!(unavailable >= 1, "ok {ok}, unavailable {unavailable}");
    assert_eq!(
        server.metric("ssfd_refused_total{listener=\"grpc\",reason=\"queue_full\"}"),
        unavailable as f64
    );
    assert_eq!(server.metric(DROPPED), 0.0, "a refusal is not a drop");
    server.wait_metric(SPANS_WORKER, ok as f64);
}

#[test]
fn send_spans_stream_pushes_back_and_loses_nothing() {
    let server = Server::start_with_env(
        "span_channel_capacity: 1\n",
        &[("SSFD_TEST_WORKER_STALL_MS", "30")],
    );
    let address = format!("http://{}", server.addr("grpc tcp"));
    let total = 5_000u64;
    let summary = ssfd_e2e::block_on(async move {
        let mut client = IngestClient::new(ssfd_e2e::grpc_channel(&address).await);
        let spans = tokio_stream::iter((1..=total as i64).map(span));
        client.send_spans(spans).await.unwrap().into_inner()
    });
    assert_eq!((summary.accepted, summary.rejected), (total, 0));
    server.wait_metric(SPANS_WORKER, total as f64);
    assert_eq!(server.metric(DROPPED), 0.0);
}

/// Veneur's own clients' load (4 connections x 32 unary `SendSpan` calls in flight)
/// against the default configuration, with the workers slowed so the span queue is
/// full most of the time: every call waits for room instead of being refused, and
/// every span is in the store. (The build before `grpc_wait` refused a share of them.)
#[test]
fn unary_calls_wait_for_room_and_every_span_is_stored() {
    let server = Server::start_with_env("", &[("SSFD_TEST_WORKER_STALL_MS", "4")]);
    let address = format!("http://{}", server.addr("grpc tcp"));
    const CALLS: i64 = 2048;
    const TRACES: i64 = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ok, refused) = runtime.block_on(async move {
        let mut tasks = Vec::new();
        for connection in 0..4i64 {
            let channel = ssfd_e2e::grpc_channel(&address).await;
            for slot in 0..32i64 {
                let mut client = SsfgrpcClient::new(channel.clone());
                tasks.push(tokio::spawn(async move {
                    let (mut ok, mut refused) = (0u64, Vec::new());
                    let mut call = connection * 32 + slot;
                    while call < CALLS {
                        let mut one = span(call + 1);
                        one.trace_id = call % TRACES + 1;
                        // now, so the store's retention keeps them
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_nanos() as i64;
                        (one.start_timestamp, one.end_timestamp) = (now - 1_000, now);
                        match client.send_span(one).await {
                            Ok(_) => ok += 1,
                            Err(status) => refused.push(status.to_string()),
                        }
                        call += 128;
                    }
                    (ok, refused)
                }));
            }
        }
        let (mut ok, mut refused) = (0, Vec::new());
        for task in tasks {
            let (o, r) = task.await.unwrap();
            ok += o;
            refused.extend(r);
        }
        (ok, refused)
    });
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    assert_eq!(ok, CALLS as u64);
    assert_eq!(
        server.metric_sum("ssfd_refused_total{listener=\"grpc\","),
        0.0
    );
    server.wait_metric(SPANS_WORKER, CALLS as f64);
    // every span is in the store: the traces' span counts add up
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stored: u64 = (1..=TRACES)
            .map(|trace| {
                let (status, body) = server.get(&format!("/api/v1/traces/{trace:016x}"));
                if status != 200 {
                    return 0;
                }
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                json["span_count"].as_u64().unwrap_or(0)
            })
            .sum();
        if stored == CALLS as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{stored} of {CALLS} stored; trace 1: {}",
            server
                .get("/api/v1/traces/1")
                .1
                .chars()
                .take(400)
                .collect::<String>()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A call whose own deadline is shorter than `grpc_wait` is answered UNAVAILABLE
/// before that deadline (not DEADLINE_EXCEEDED after it), and `grpc_wait: 0` refuses a
/// full queue at once.
#[test]
fn the_wait_ends_before_the_calls_deadline() {
    let server = Server::start_with_env(
        "span_channel_capacity: 1\ngrpc_wait: 5s\n",
        &[("SSFD_TEST_WORKER_STALL_MS", "3000")],
    );
    let address = format!("http://{}", server.addr("grpc tcp"));
    let outcomes = ssfd_e2e::block_on(async move {
        let mut client = SsfgrpcClient::new(ssfd_e2e::grpc_channel(&address).await);
        let mut outcomes = Vec::new();
        for id in 1..=4 {
            let mut request = tonic::Request::new(span(id));
            request.set_timeout(std::time::Duration::from_millis(800));
            let started = std::time::Instant::now();
            let result = client.send_span(request).await;
            outcomes.push((result.map(drop).map_err(|s| s.code()), started.elapsed()));
        }
        outcomes
    });
    let refused: Vec<_> = outcomes.iter().filter(|(r, _)| r.is_err()).collect();
    assert!(!refused.is_empty(), "{outcomes:?}");
    for (result, took) in &refused {
        assert_eq!(*result, Err(tonic::Code::Unavailable), "{outcomes:?}");
        assert!(
            *took < std::time::Duration::from_millis(800),
            "{outcomes:?}"
        );
    }
    assert!(
        server.metric("ssfd_refused_total{listener=\"grpc\",reason=\"queue_full\"}")
            >= refused.len() as f64
    );
}
