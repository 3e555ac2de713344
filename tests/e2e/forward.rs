//! Forwarding (issue 6, first part): locals send their global and mixed state to a
//! global over Veneur's `forwardrpc.Forward/SendMetricsV2`; the global merges and
//! flushes it as SPEC 4.2 says. An ssfd global imports the metrics a real Veneur
//! local forwarded (`testdata/veneur/forward/`) with the values their README states.

use prost::Message;
use ssfd_e2e::{Server, root};
use ssfd_wire::metricpb::Metric;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn wait_near(server: &Server, series: &str, want: f64, tolerance: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = server.metric(series);
        if (value - want).abs() <= tolerance {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {value}, want {want} ± {tolerance}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_lines(server: &Server, lines: &[String]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in lines.chunks(20) {
        socket
            .send_to(chunk.join("\n").as_bytes(), server.addr("statsd udp"))
            .unwrap();
    }
}

/// Sends trace `trace_id` to `server` over SSF UDP: the first id is the root, the
/// others its children.
fn send_trace(server: &Server, trace_id: i64, ids: &[i64]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for &id in ids {
        let span = ssfd_wire::ssf::SsfSpan {
            trace_id,
            id,
            parent_id: if id == ids[0] { 0 } else { ids[0] },
            start_timestamp: 1_800_000_000_000_000_000 + id,
            end_timestamp: 1_800_000_000_001_000_000,
            service: "px".into(),
            name: format!("op{id}"),
            ..Default::default()
        };
        socket
            .send_to(&span.encode_to_vec(), server.addr("ssf udp"))
            .unwrap();
    }
}

#[test]
fn locals_forward_global_and_mixed_state_to_a_global() {
    let global = Server::start("interval: 1s\npercentiles: [0.5, 0.99]\n");
    let upstream = global.addr("grpc tcp").to_string();
    let local = |_: usize| {
        Server::start(&format!(
            "interval: 1s\nforward_address: {upstream}\npercentiles: [0.5, 0.99]\naggregates: [max, count]\n"
        ))
    };
    let (one, two) = (local(1), local(2));
    let mut first: Vec<String> = vec!["fwd.hits:5|c|#veneurglobalonly,env:test".into(); 3];
    first.extend((1..=500).map(|v| format!("fwd.lat:{v}|ms")));
    first.extend((0..100).map(|u| format!("fwd.users:u{u}|s")));
    first.push("fwd.local:1|c".into());
    let mut second: Vec<String> = vec!["fwd.hits:5|c|#veneurglobalonly,env:test".into(); 2];
    second.extend((501..=1000).map(|v| format!("fwd.lat:{v}|ms")));
    second.extend((50..150).map(|u| format!("fwd.users:u{u}|s")));
    send_lines(&one, &first);
    send_lines(&two, &second);

    wait_near(&global, "fwd_hits_total{env=\"test\"}", 25.0, 0.0);
    wait_near(&global, "fwd_lat{quantile=\"0.99\"}", 990.0, 10.0);
    wait_near(&global, "fwd_lat{quantile=\"0.5\"}", 500.0, 10.0);
    wait_near(&global, "fwd_users", 150.0, 0.0);
    // each local flushes its own aggregates of the mixed timer, and not what it forwarded
    wait_near(&one, "fwd_lat_max", 500.0, 0.0);
    wait_near(&two, "fwd_lat_max", 1000.0, 0.0);
    wait_near(&one, "fwd_local_total", 1.0, 0.0);
    // shown as a summary (SPEC 6) of the local's own samples: `_sum` and `_count`,
    // no quantiles, and no separate `.count` counter
    wait_near(&one, "fwd_lat_count", 500.0, 0.0);
    wait_near(&one, "fwd_lat_sum", 125_250.0, 0.0);
    wait_near(&two, "fwd_lat_count", 500.0, 0.0);
    let exposition = one.get("/metrics").1;
    assert!(
        exposition.contains("# TYPE fwd_lat summary\n"),
        "{exposition}"
    );
    assert!(!exposition.contains("fwd_lat{quantile"), "{exposition}");
    assert!(!exposition.contains("fwd_lat_count_total"), "{exposition}");
    assert!(
        !exposition.contains("fwd_users"),
        "a local does not flush mixed sets"
    );
    assert!(
        !exposition.contains("fwd_hits_total"),
        "nor global counters"
    );
    assert!(
        !global.get("/metrics").1.contains("fwd_local"),
        "local counters stay local"
    );
    let sent = format!("ssfd_forward_sent_total{{destination=\"{upstream}\"}}");
    assert!(one.metric(&sent) >= 3.0, "{sent}");
    assert_eq!(
        one.metric(&format!(
            "ssfd_forward_failures_total{{destination=\"{upstream}\"}}"
        )),
        0.0
    );
    assert!(global.metric("ssfd_received_total{listener=\"forward\",protocol=\"grpc\"}") >= 6.0);
}

#[test]
fn a_global_imports_what_a_real_veneur_forwarded() {
    let server = Server::start("interval: 2s\n");
    // ssfd's own samples of the same set members, in the same interval
    send_lines(
        &server,
        &[
            "fwd.set.small:a|s".into(),
            "fwd.set.small:b|s".into(),
            "fwd.set.small:c|s".into(),
        ],
    );
    let mut metrics = Vec::new();
    for entry in std::fs::read_dir(root().join("testdata/veneur/forward")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        metrics.push(Metric::decode(&bytes[..]).unwrap());
    }
    assert_eq!(metrics.len(), 8);
    let address = format!("http://{}", server.addr("grpc tcp"));
    ssfd_e2e::block_on(async move {
        let channel = ssfd_e2e::grpc_channel(&address).await;
        let mut client = ssfd_wire::forwardrpc::forward_client::ForwardClient::new(channel);
        client
            .send_metrics_v2(tokio_stream::iter(metrics))
            .await
            .unwrap();
    });
    wait_near(&server, "fwd_counter_total{env=\"test\"}", 15.0, 0.0);
    wait_near(&server, "fwd_gauge", 42.5, 0.0);
    wait_near(
        &server,
        "fwd_hist{env=\"test\",quantile=\"0.99\"}",
        990.0,
        10.0,
    );
    wait_near(
        &server,
        "fwd_hist{env=\"test\",quantile=\"0.5\"}",
        500.0,
        10.0,
    );
    // a global-only histogram takes every statistic from upstream
    wait_near(&server, "fwd_hist_global_count", 100.0, 0.0);
    wait_near(&server, "fwd_hist_global_sum", 5050.0, 1e-6);
    wait_near(&server, "fwd_hist_global_min", 1.0, 0.0);
    wait_near(&server, "fwd_hist_global_max", 100.0, 0.0);
    wait_near(&server, "fwd_timer{quantile=\"0.99\"}", 99.0, 1.0);
    wait_near(&server, "fwd_set_small", 3.0, 0.0);
    wait_near(&server, "fwd_set_medium", 1000.0, 20.0);
    wait_near(&server, "fwd_set_large", 100_000.0, 2000.0);
}

#[test]
fn locals_forward_spans_and_the_global_joins_them_without_deriving_metrics_again() {
    use serde_json::Value;
    let global = Server::start("interval: 1s\n");
    let upstream = global.addr("grpc tcp").to_string();
    let local = || Server::start(&format!("interval: 1s\nforward_address: {upstream}\n"));
    let (one, two) = (local(), local());
    let span = |id: i64, parent: i64, name: &str| {
        let mut span = ssfd_wire::ssf::SsfSpan {
            trace_id: 777,
            id,
            parent_id: parent,
            start_timestamp: 1_800_000_000_000_000_000 + id,
            end_timestamp: 1_800_000_000_010_000_000,
            service: "fwdsvc".into(),
            name: name.into(),
            ..Default::default()
        };
        span.metrics.push(ssfd_wire::ssf::SsfSample {
            name: "span.c".into(),
            value: 1.0,
            sample_rate: 1.0,
            ..Default::default()
        });
        span.metrics.push(ssfd_wire::ssf::SsfSample {
            name: "log".into(),
            message: format!("from {name}"),
            ..Default::default()
        });
        span
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // the trace's spans enter through different locals
    socket
        .send_to(
            &span(778, 777, "child").encode_to_vec(),
            one.addr("ssf udp"),
        )
        .unwrap();
    socket
        .send_to(&span(777, 0, "root").encode_to_vec(), two.addr("ssf udp"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace: Value = loop {
        let (status, body) = global.get("/api/v1/traces/777");
        if status == 200 {
            let trace: Value = serde_json::from_str(&body).unwrap();
            if trace["span_count"] == 2 {
                break trace;
            }
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(trace["complete"], true);
    assert_eq!(
        trace["root"]["children"][0]["logs"][0]["message"],
        "from child"
    );
    // metrics were extracted once, at the locals
    wait_near(&one, "span_c_total", 1.0, 0.0);
    wait_near(&two, "span_c_total", 1.0, 0.0);
    std::thread::sleep(Duration::from_millis(1500));
    let exposition = global.get("/metrics").1;
    assert!(
        !exposition.contains("span_c"),
        "the global derived no metric again"
    );
    assert!(
        !exposition.contains("service_name=\"fwdsvc\""),
        "nor span metrics"
    );
    assert!(global.metric("ssfd_received_total{listener=\"forward\",protocol=\"grpc\"}") >= 2.0);
}

#[test]
fn a_proxy_spreads_keys_and_traces_over_globals_and_routes_around_a_dead_one() {
    use serde_json::Value;
    let a = Server::start("interval: 1s\n");
    let b = Server::start("interval: 1s\n");
    let (ga, gb) = (
        a.addr("grpc tcp").to_string(),
        b.addr("grpc tcp").to_string(),
    );
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nproxy:\n  destinations: [{ga}, {gb}]\n  ignore_tags: [host]\n"
    ));
    let local = Server::start(&format!(
        "interval: 1s\nforward_address: {}\n",
        proxy.addr("grpc tcp")
    ));
    let lines: Vec<String> = (0..60)
        .map(|i| format!("px.c{i}:1|c|#veneurglobalonly,host:h{}", i % 3))
        .collect();
    send_lines(&local, &lines);
    send_trace(&local, 90, &[91, 92, 93]);
    // every counter lands on exactly one global, and both globals get some
    let deadline = Instant::now() + Duration::from_secs(30);
    let (on_a, on_b) = loop {
        let (text_a, text_b) = (a.get("/metrics").1, b.get("/metrics").1);
        let count = |text: &str| {
            (0..60)
                .filter(|i| text.contains(&format!("px_c{i}_total ")))
                .count()
        };
        let (on_a, on_b) = (count(&text_a), count(&text_b));
        if on_a + on_b >= 60 {
            break (on_a, on_b);
        }
        assert!(Instant::now() < deadline, "{on_a} + {on_b} of 60");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(on_a + on_b, 60, "no key on both");
    assert!(on_a > 10 && on_b > 10, "spread: {on_a} / {on_b}");
    let whole = |server: &Server| {
        let (status, body) = server.get("/api/v1/traces/90");
        status == 200 && serde_json::from_str::<Value>(&body).unwrap()["span_count"] == 3
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(whole(&a) || whole(&b)) {
        assert!(Instant::now() < deadline, "the trace never landed whole");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(whole(&a), whole(&b), "one global owns the trace");
    // the proxy answers for the trace by asking its owner
    assert!(
        whole(&proxy),
        "the proxy serves the trace: {}",
        proxy.get("/api/v1/traces/90").1
    );
    assert_eq!(proxy.get("/api/v1/traces/12345").0, 404);

    // a dead global leaves the ring: new keys all go to the other
    assert!(b.terminate().success());
    std::thread::sleep(Duration::from_millis(3000));
    let more: Vec<String> = (0..30)
        .map(|i| format!("px.d{i}:1|c|#veneurglobalonly"))
        .collect();
    send_lines(&local, &more);
    for i in 0..30 {
        wait_near(&a, &format!("px_d{i}_total"), 1.0, 0.0);
    }

    // no global answers: the proxy refuses what it cannot route (it keeps nothing it
    // acknowledged), and the local, whose forward fails, retries, then drops and
    // counts the spans
    assert!(a.terminate().success());
    std::thread::sleep(Duration::from_millis(3000));
    let refused = "ssfd_refused_total{listener=\"forward\",reason=\"upstream\"}";
    let dropped = "ssfd_dropped_total{stage=\"forward\",reason=\"retry_exhausted\"}";
    let (refused_before, dropped_before) = (proxy.metric(refused), local.metric(dropped));
    send_trace(&local, 94, &[95, 96]);
    // the local retries for about 16 s (±50 % jitter) before it drops
    let deadline = Instant::now() + Duration::from_secs(60);
    while local.metric(dropped) < dropped_before + 2.0
        || proxy.metric(refused) < refused_before + 2.0
    {
        assert!(
            Instant::now() < deadline,
            "unrouted spans: refused {} at the proxy, dropped {} at the local",
            proxy.metric(refused),
            local.metric(dropped)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        proxy.metric(dropped),
        0.0,
        "the proxy holds nothing, so it drops nothing"
    );
}

/// SPEC 7 at a proxy: OK only once a global has the items. With its only global down
/// the proxy answers UNAVAILABLE; with the global back, OK means the global has them,
/// so killing the proxy at once loses nothing.
#[test]
fn a_proxy_acknowledges_only_what_a_global_took() {
    use ssfd_wire::metricpb::{CounterValue, Metric, Scope, Type, metric::Value};
    let port = ssfd_e2e::free_port();
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nproxy:\n  destinations: [127.0.0.1:{port}]\n"
    ));
    let counter = |name: &str, value: i64| Metric {
        name: name.into(),
        tags: vec!["env:test".into()],
        r#type: Type::Counter as i32,
        scope: Scope::Global as i32,
        value: Some(Value::Counter(CounterValue { value })),
    };
    let batch: Vec<Metric> = (0..50)
        .map(|i| counter(&format!("pxack.c{i}"), i + 1))
        .collect();
    let address = format!("http://{}", proxy.addr("grpc tcp"));
    let send = move |metrics: Vec<Metric>| {
        let address = address.clone();
        ssfd_e2e::block_on(async move {
            let channel = ssfd_e2e::grpc_channel(&address).await;
            ssfd_wire::forwardrpc::forward_client::ForwardClient::new(channel)
                .send_metrics_v2(tokio_stream::iter(metrics))
                .await
                .map(drop)
        })
    };
    let status = send(batch.clone()).expect_err("no global is up: the proxy must not say OK");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert!(proxy.metric("ssfd_refused_total{listener=\"forward\",reason=\"upstream\"}") >= 50.0);

    let dir = tempfile::tempdir().unwrap();
    let global = Server::start_config(
        &format!(
            "{}interval: 1s\n",
            ssfd_e2e::fixed_grpc_config(dir.path(), port)
        ),
        dir,
        &[],
    );
    // the health check puts the global back in the ring within a second or two
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(status) = send(batch.clone()) {
        assert!(
            Instant::now() < deadline,
            "the global never rejoined: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // acknowledged: the proxy can die now and the global still has every value
    drop(proxy);
    for i in 0..50 {
        wait_near(
            &global,
            &format!("pxack_c{i}_total{{env=\"test\"}}"),
            (i + 1) as f64,
            0.0,
        );
    }
}

#[test]
fn a_proxy_finds_its_globals_by_dns_name() {
    let global = Server::start("interval: 1s\n");
    let port = global
        .addr("grpc tcp")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    // `localhost` may also resolve to ::1, where nothing listens: the health check
    // keeps that address out of the ring
    let proxy = Server::start(&format!(
        "interval: 1s\nrole: proxy\nproxy:\n  dns_names: [localhost:{port}]\n  resolve_interval: 1s\n"
    ));
    let local = Server::start(&format!(
        "interval: 1s\nforward_address: {}\n",
        proxy.addr("grpc tcp")
    ));
    std::thread::sleep(Duration::from_millis(2500));
    let lines: Vec<String> = (0..20)
        .map(|k| format!("dns.c{k}:1|c|#veneurglobalonly"))
        .collect();
    send_lines(&local, &lines);
    for k in 0..20 {
        wait_near(&global, &format!("dns_c{k}_total"), 1.0, 0.0);
    }
}

#[test]
fn forwarding_failures_are_retried_counted_and_a_restarted_global_gets_the_next_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let port = ssfd_e2e::free_port();
    let global_config =
        |dir: &std::path::Path| ssfd_e2e::fixed_grpc_config(dir, port) + "interval: 1s\n";
    let global = Server::start_config(
        &global_config(dir.path()),
        tempfile::tempdir().unwrap(),
        &[],
    );
    let destination = format!("127.0.0.1:{port}");
    let local = Server::start(&format!("interval: 1s\nforward_address: {destination}\n"));
    send_lines(&local, &["rs.c:1|c|#veneurglobalonly".to_string()]);
    wait_near(&global, "rs_c_total", 1.0, 0.0);
    // the global goes away: the local's next intervals fail, are retried, then counted
    drop(global);
    send_lines(&local, &["rs.c:1|c|#veneurglobalonly".to_string()]);
    let failures = format!("ssfd_forward_failures_total{{destination=\"{destination}\"}}");
    let retries = format!("ssfd_forward_retries_total{{destination=\"{destination}\"}}");
    // the local retries for about 16 s (±50 % jitter) before it gives up
    let deadline = Instant::now() + Duration::from_secs(60);
    while local.metric(&failures) < 1.0 {
        assert!(Instant::now() < deadline, "no forward failure counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(local.metric(&retries) >= 8.0, "retried before giving up");
    assert!(
        local.metric(&format!(
            "ssfd_forward_dropped_total{{destination=\"{destination}\"}}"
        )) >= 1.0
    );
    // back on its port, it gets what the local forwards next
    let dir2 = tempfile::tempdir().unwrap();
    let global = Server::start_config(
        &global_config(dir2.path()),
        tempfile::tempdir().unwrap(),
        &[],
    );
    std::thread::sleep(Duration::from_millis(500));
    send_lines(&local, &["rs.c:5|c|#veneurglobalonly".to_string()]);
    wait_near(&global, "rs_c_total", 5.0, 0.0);
}

#[test]
fn sigterm_flushes_the_open_interval_to_the_jsonl_sink_and_upstream() {
    let global = Server::start("interval: 1s\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.jsonl");
    // a long interval: only the shutdown flush can deliver these
    let local = Server::start(&format!(
        "interval: 60s\nshutdown_timeout: 10s\nforward_address: {}\nmetric_sinks:\n  - kind: jsonl\n    name: file\n    config: {{path: {}}}\n",
        global.addr("grpc tcp"),
        path.display()
    ));
    send_lines(
        &local,
        &[
            "last.local:3|c".to_string(),
            "last.global:4|c|#veneurglobalonly".to_string(),
        ],
    );
    local.wait_metric("ssfd_worker_received_total{kind=\"counter\"}", 2.0);
    assert!(local.terminate().success(), "exit 0");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("\"name\":\"last.local\""), "{written}");
    wait_near(&global, "last_global_total", 4.0, 0.0);
}

/// A global that restarts (down for a few seconds) loses a local nothing: the local's
/// forwarding keeps retrying its metrics and spans until the global answers again.
#[test]
fn a_local_rides_out_a_global_restart() {
    let port = ssfd_e2e::free_port();
    let start_global = || {
        let dir = tempfile::tempdir().unwrap();
        Server::start_config(
            &format!(
                "{}interval: 1s\n",
                ssfd_e2e::fixed_grpc_config(dir.path(), port)
            ),
            dir,
            &[],
        )
    };
    let global = start_global();
    let local = Server::start(&format!(
        "interval: 1s\nforward_address: 127.0.0.1:{port}\n"
    ));
    send_lines(
        &local,
        &["restart.before:1|c|#veneurglobalonly".to_string()],
    );
    wait_near(&global, "restart_before_total", 1.0, 0.0);
    drop(global);
    // the global is away for 5 s: several intervals go unanswered meanwhile
    let lines: Vec<String> = (0..20)
        .map(|i| format!("restart.c{i}:1|c|#veneurglobalonly"))
        .collect();
    send_lines(&local, &lines);
    send_trace(&local, 700, &[701, 702]);
    std::thread::sleep(Duration::from_secs(5));
    let global = start_global();
    for i in 0..20 {
        wait_near(&global, &format!("restart_c{i}_total"), 1.0, 0.0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while global.get("/api/v1/traces/700").0 != 200 {
        assert!(Instant::now() < deadline, "the trace never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        local.metric("ssfd_dropped_total{stage=\"forward\",reason=\"retry_exhausted\"}"),
        0.0
    );
}
