//! README.md's "Try it" block runs as written, against a fresh server on the embedded
//! default and its default ports, so it cannot rot; and the embedded default takes
//! statsd clients on their default port 8125 when it is free, and goes on without it
//! when it is not. (One test: the embedded default's ports are fixed.)

use ssfd_e2e::{Server, root, ssfd_binary};
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

/// The shell block after "Try it" in README.md.
fn try_it_block() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let after = readme
        .split_once("Try it")
        .expect("README.md has a \"Try it\" section")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("a sh block after \"Try it\"")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

#[test]
fn readme_try_it_runs_verbatim_on_the_embedded_default() {
    let block = try_it_block();
    assert!(block.contains("ssfd query trace"), "{block}");
    let server = Server::start_embedded(tempfile::tempdir().unwrap(), &[]);
    assert_eq!(server.http, "127.0.0.1:8127");
    let client_port_free = server.listeners.values().any(|a| a == "127.0.0.1:8125");
    // `ssfd` on the PATH, as README says
    let bin = ssfd_binary();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(work.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "README's block failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("demo_count"), "the metric sent: {stdout}");
    assert!(
        stdout.contains("web GET") || stdout.contains("web POST"),
        "{stdout}"
    );
    assert!(stdout.contains("no logs match"), "{stdout}");
    // a client left on its default port reaches the embedded default too
    if client_port_free {
        let series = "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}";
        let before = server.metric(series);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.send_to(b"default.port:1|c", "127.0.0.1:8125").unwrap();
        server.wait_metric(series, before + 1.0);
    }
    assert!(server.terminate().success());

    // with 8125 held by another process, it warns once and serves the rest
    let holder = UdpSocket::bind("127.0.0.1:8125");
    if holder.is_err() && !client_port_free {
        // someone else on this machine holds it: the case below is what happened
        return;
    }
    let server = Server::start_embedded(tempfile::tempdir().unwrap(), &[]);
    let lines = server.stderr.lock().unwrap().clone();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("8125") && l.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert!(!server.listeners.values().any(|a| a == "127.0.0.1:8125"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"still.here:1|c", server.addr("statsd udp"))
        .unwrap();
    server.wait_metric(
        "ssfd_received_total{listener=\"statsd\",protocol=\"udp\"}",
        1.0,
    );
    std::thread::sleep(Duration::from_millis(10));
    drop(holder);
}

/// README documents every series `stats_address` receives (SPEC 10 leaves which ssfd
/// series feeds each to README).
#[test]
fn readme_documents_every_stats_address_series() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let source =
        std::fs::read_to_string(root().join("crates/ssfd-telemetry/src/veneur.rs")).unwrap();
    let table = source
        .split_once("pub const SERIES")
        .unwrap()
        .1
        .split_once("\n];")
        .unwrap()
        .0;
    let names: Vec<&str> = table
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("\"veneur.") || l.starts_with("\"ssfd."))
        .map(|l| l.trim_matches(|c| c == '"' || c == ','))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "README lacks {name}"
        );
    }
}
