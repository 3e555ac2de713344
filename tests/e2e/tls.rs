//! TLS (issue 7 point 6): gRPC ingest with mutual TLS from `tls` PEM files. A client
//! with a certificate from the configured CA is served; one whose certificate another
//! CA signed, one without a certificate and one in plain text are refused. A local
//! forwards to a global over mutual TLS (both with `tls`), and a proxy routes to a
//! global over it too. The HTTP API's bearer token is tested in `logs.rs`/`deploy.rs`;
//! here a request without it is refused as well.

use ssfd_e2e::Server;
use ssfd_wire::ssf::{SsfSpan, ssfgrpc_client::SsfgrpcClient};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a certificate it signed for 127.0.0.1/localhost (usable by servers and
/// clients): `<name>-ca.pem`, `<name>.pem`, `<name>.key`.
fn authority(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "2"]);
    args.extend(["-subj", "/CN=ssfd test CA"]);
    openssl(dir, &args);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ext = format!("{name}.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(ca), dir.join(cert), dir.join(key))
}

fn tls_config(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n",
        cert.display(),
        key.display(),
        ca.display()
    )
}

fn span(id: i64) -> SsfSpan {
    SsfSpan {
        trace_id: 900 + id,
        id,
        start_timestamp: 1_700_000_000_000_000_000,
        end_timestamp: 1_700_000_000_000_001_000,
        service: "tls".into(),
        name: "call".into(),
        ..Default::default()
    }
}

/// Sends one span over gRPC as `identity` (or none), trusting `ca`; `None` CA is plain
/// text. Returns whether the call was answered OK.
fn send(
    address: &str,
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    id: i64,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let endpoint = match ca {
            None => tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap(),
            Some(ca) => {
                let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
                    tonic::transport::Certificate::from_pem(std::fs::read(ca).unwrap()),
                );
                if let Some((cert, key)) = identity {
                    tls = tls.identity(tonic::transport::Identity::from_pem(
                        std::fs::read(cert).unwrap(),
                        std::fs::read(key).unwrap(),
                    ));
                }
                tonic::transport::Endpoint::from_shared(format!("https://{address}"))
                    .unwrap()
                    .tls_config(tls)
                    .unwrap()
            }
        }
        .timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
        SsfgrpcClient::new(channel)
            .send_span(span(id))
            .await
            .map(drop)
            .map_err(|status| format!("{status:?}"))
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mutual_tls_serves_the_right_client_and_refuses_the_rest() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = authority(certs.path(), "good");
    let (_, wrong_cert, wrong_key) = authority(certs.path(), "other");
    let token = certs.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let server = Server::start(&format!(
        "interval: 1s\n{}http_bearer_token_file: {}\n",
        tls_config(&ca, &cert, &key),
        token.display()
    ));
    let address = server.addr("grpc tcp").to_string();
    send(&address, Some(&ca), Some((&cert, &key)), 1).expect("the right certificate is served");
    let wrong = send(&address, Some(&ca), Some((&wrong_cert, &wrong_key)), 2);
    assert!(wrong.is_err(), "a certificate from another CA is refused");
    let anonymous = send(&address, Some(&ca), None, 3);
    assert!(
        anonymous.is_err(),
        "a client without a certificate is refused"
    );
    let plain = send(&address, None, None, 4);
    assert!(plain.is_err(), "plain text is refused");
    // the API wants its token
    assert_eq!(server.get("/api/v1/traces/901").0, 401);
    let (status, body) = ssfd_e2e::http_get_with(
        &server.http,
        "/api/v1/traces/901",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!(status, 200, "{body}");
    for refused in [902, 903, 904] {
        let (status, _) = ssfd_e2e::http_get_with(
            &server.http,
            &format!("/api/v1/traces/{refused}"),
            "Authorization: Bearer s3cret\r\n",
        );
        assert_eq!(status, 404, "span {refused} never got in");
    }
}

#[test]
fn forwarding_and_the_proxy_speak_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = authority(certs.path(), "tier");
    let tls = tls_config(&ca, &cert, &key);
    let global = Server::start(&format!("interval: 1s\n{tls}"));
    let upstream = global.addr("grpc tcp").to_string();
    let local = Server::start(&format!("interval: 1s\nforward_address: {upstream}\n{tls}"));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"tls.hits:3|c|#veneurglobalonly", local.addr("statsd udp"))
        .unwrap();
    wait_for("the global has the local's counter over mutual TLS", || {
        global.metric("tls_hits_total") == 3.0
    });
    // a proxy (TLS on its own listener too) routes forwarded metrics to the global
    let proxy = Server::start(&format!(
        "role: proxy\ninterval: 1s\nproxy:\n  destinations: [{upstream}]\n{tls}"
    ));
    let through = Server::start(&format!(
        "interval: 1s\nforward_address: {}\n{tls}",
        proxy.addr("grpc tcp")
    ));
    socket
        .send_to(
            b"tls.via.proxy:4|c|#veneurglobalonly",
            through.addr("statsd udp"),
        )
        .unwrap();
    wait_for("the global has the counter through the TLS proxy", || {
        global.metric("tls_via_proxy_total") == 4.0
    });
    // a global without TLS material cannot be reached by a TLS local: counted failures
    let plain_global = Server::start("interval: 1s\n");
    let plain_upstream = plain_global.addr("grpc tcp").to_string();
    let stranded = Server::start(&format!(
        "interval: 1s\nforward_address: {plain_upstream}\n{tls}"
    ));
    socket
        .send_to(
            b"tls.stranded:1|c|#veneurglobalonly",
            stranded.addr("statsd udp"),
        )
        .unwrap();
    let failures = format!("ssfd_forward_failures_total{{destination=\"{plain_upstream}\"}}");
    wait_for(
        "a handshake with a plain server fails and is counted",
        || stranded.metric(&failures) >= 1.0,
    );
    assert_eq!(plain_global.metric("tls_stranded_total"), 0.0);
}
