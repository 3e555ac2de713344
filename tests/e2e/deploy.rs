//! `deploy/` (issue 7, operations): every example config and every config inside the
//! Kubernetes manifests passes `ssfd check-config`; the manifests hold a local
//! DaemonSet, a proxy Deployment and a global StatefulSet behind a headless service
//! (the name the proxy's `dns_names` resolves); the systemd unit and the Dockerfile run
//! `ssfd serve -f`.

use ssfd_e2e::{root, ssfd_binary};
use std::process::Command;

fn check_config(path: &std::path::Path) {
    let printed = checked(path);
    // the effective configuration is printed as YAML a config file can hold: checking
    // it again gives it back unchanged
    let again = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(again.path(), &printed).unwrap();
    assert_eq!(checked(again.path()), printed, "{}", path.display());
    let value: serde_yaml::Value = serde_yaml::from_str(&printed).unwrap();
    assert!(value["interval"].is_string(), "{printed}");
}

/// `ssfd check-config PATH`'s output; panics when it fails.
fn checked(path: &std::path::Path) -> String {
    let output = Command::new(ssfd_binary())
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_deploy_config_checks() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("deploy/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            check_config(&path);
            checked += 1;
        }
    }
    assert!(checked >= 4, "default, local, proxy, global");
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(root().join("deploy/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document).unwrap();
            let kind = value["kind"].as_str().unwrap().to_string();
            if kind == "ConfigMap" {
                let config = dir.path().join(format!(
                    "{}.yaml",
                    value["metadata"]["name"].as_str().unwrap()
                ));
                std::fs::write(&config, value["data"]["ssfd.yaml"].as_str().unwrap()).unwrap();
                check_config(&config);
            }
            if kind == "Service" && value["spec"]["clusterIP"].as_str() == Some("None") {
                kinds.push(format!(
                    "headless {}",
                    value["metadata"]["name"].as_str().unwrap()
                ));
            }
            kinds.push(kind);
        }
    }
    for want in [
        "DaemonSet",
        "Deployment",
        "StatefulSet",
        "headless ssfd-global-headless",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} in {kinds:?}");
    }
    let proxy = std::fs::read_to_string(root().join("deploy/config/proxy.yaml")).unwrap();
    assert!(proxy.contains("ssfd-global-headless:8181"));
    for file in ["deploy/systemd/ssfd.service", "deploy/docker/Dockerfile"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(text.contains("serve") && text.contains("-f"), "{file}");
    }
}

#[test]
fn environment_variables_override_the_file() {
    let server = ssfd_e2e::Server::start_with_env(
        "interval: 60s\npercentiles: [0.5]\n",
        &[
            ("SSFD_INTERVAL", "1s"),
            ("SSFD_PERCENTILES", "0.5,0.9"),
            ("SSFD_NOT_A_KEY", "ignored"),
        ],
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines: Vec<String> = (1..=100).map(|v| format!("env.t:{v}|ms")).collect();
    socket
        .send_to(lines.join("\n").as_bytes(), server.addr("statsd udp"))
        .unwrap();
    // a 1 s interval (not the file's 60 s) flushes the 0.9 quantile (not only 0.5)
    server.wait_metric("env_t_count", 100.0);
    let quantile = server.metric("env_t{quantile=\"0.9\"}");
    assert!((quantile - 90.0).abs() <= 1.0, "{quantile}");
}

#[test]
fn veneurs_example_config_runs_unchanged_with_one_warning_per_unimplemented_key() {
    let text = std::fs::read_to_string(root().join("testdata/veneur/example.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // the file as Veneur ships it; the environment only moves ports and data out of
    // the way of other tests (SPEC 9's overrides)
    let server = ssfd_e2e::Server::start_config(
        &text,
        tempfile::tempdir().unwrap(),
        &[
            ("SSFD_STATSD_LISTEN_ADDRESSES", "udp://127.0.0.1:0"),
            ("SSFD_SSF_LISTEN_ADDRESSES", "udp://127.0.0.1:0"),
            ("SSFD_GRPC_LISTEN_ADDRESSES", "tcp://127.0.0.1:0"),
            ("SSFD_GRPC_ADDRESS", "127.0.0.1:0"),
            ("SSFD_HTTP_ADDRESS", "127.0.0.1:0"),
            ("SSFD_DATA_DIR", data),
            ("SSFD_INTERVAL", "1s"),
        ],
    );
    let warnings: Vec<String> = server
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("is not implemented by ssfd"))
        .cloned()
        .collect();
    let mut keys: Vec<&str> = warnings
        .iter()
        .filter_map(|w| w.split('`').nth(1))
        .collect();
    let before = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), before, "one warning per key: {warnings:?}");
    for key in ["sentry_dsn", "debug", "flush_on_shutdown"] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"veneur.example:2|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric("veneur_example_total", 2.0);
}

/// `check-config` prints what is wrong but not fatal in the routing table: `serve`
/// would log it, and `check-config` has no log.
#[test]
fn check_config_prints_routing_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routing.yaml");
    std::fs::write(&path, "metric_sink_routing:\n  - name: all\n").unwrap();
    let output = Command::new(ssfd_binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: metric_sink_routing is set but features.enable_metric_sink_routing is not true"),
        "{stderr}"
    );
}

/// SPEC 1: `check-config` rejects what `serve` would refuse to start with, naming the
/// key and its line, and `serve -f` refuses the same file.
#[test]
fn check_config_rejects_what_serve_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "interval: 1s\nmetric_sinks:\n  - {kind: jsonl, name: out}\n",
            "`metric_sinks` at line 2",
            "needs config.path",
        ),
        (
            "metric_sinks:\n  - {kind: statsd, config: {address: \"localhost:8125\"}}\n",
            "`metric_sinks` at line 1",
            "is not udp:// or tcp://",
        ),
        (
            "metric_sinks:\n  - {kind: blackhole, name: a}\n  - {kind: blackhole, name: a}\n",
            "`metric_sinks`",
            "two metric sinks are named `a`",
        ),
        (
            "metric_sinks:\n  - kind: prometheus_remote_write\n    config: {url: \"http://x/\", headers: {X-A: [1]}}\n",
            "`metric_sinks`",
            "config.headers must map text to text",
        ),
        (
            "span_sinks:\n  - {kind: otlp, name: traces}\n",
            "`span_sinks` at line 1",
            "sink `traces` (otlp) needs config.endpoint",
        ),
        (
            "interval: 1s\notlp_listen_addresses: [\"tcp://127.0.0.1:4317\"]\n",
            "`otlp_listen_addresses` at line 2",
            "is not grpc://host:port or http://host:port",
        ),
        (
            "http_address: \"no port here\"\n",
            "`http_address` at line 1",
            "",
        ),
        (
            "role: proxy\n",
            "`proxy`",
            "role proxy needs proxy.destinations",
        ),
        (
            "role: proxy\nproxy:\n  destinations: [\"g:8128\"]\n  destination: [\"h:8128\"]\n",
            "`proxy` at line 2",
            "unknown key proxy.destination",
        ),
        (
            "role: proxy\nproxy:\n  destinations: [\"g\"]\n",
            "`proxy` at line 2",
            "`g` is not host:port",
        ),
        (
            "tls:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n",
            "",
            "/nonexistent/cert.pem",
        ),
    ];
    for (i, (config, key, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, config).unwrap();
        let output = Command::new(ssfd_binary())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "check-config passed:\n{config}");
        assert!(
            stderr.contains(key) && stderr.contains(message),
            "{config}\nwanted `{key}` and `{message}` in: {stderr}"
        );
        // serve refuses the same file, and says the same
        let mut serve = Command::new(ssfd_binary())
            .args(["serve", "-f"])
            .arg(&path)
            .env("SSFD_DATA_DIR", dir.path().join(format!("data{i}")))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = serve.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("serve started with a config check-config rejects:\n{config}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut served = String::new();
        std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut served).unwrap();
        assert!(!status.success(), "{config}");
        assert!(served.contains(message), "{config}\nserve said: {served}");
    }
}
