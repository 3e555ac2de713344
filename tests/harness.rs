//! Test harness: builds and starts the real `ssfd` binary with a config whose listeners
//! use port 0, learns the real addresses from its `listening ...` lines, and reads its
//! own telemetry from `/metrics` over real HTTP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Unix nanoseconds now.
/// Polls `path` until it answers 200 with JSON for which `ready` holds (stores and
/// the log index commit about once a second); panics after 40 s with the last answer.
pub fn wait_json(
    server: &Server,
    path: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = server.get(path);
        let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        if status == 200 && ready(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {value}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `message`s of a JSON list of log records, sorted.
pub fn messages(logs: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = logs
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["message"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `ssfd` binary of this build profile, built once per test process;
/// `SSFD_E2E_BINARY` names another one instead (a benchmark's previous build).
pub fn ssfd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SSFD_E2E_BINARY") {
        return PathBuf::from(path);
    }
    static BUILD: Once = Once::new();
    let exe = std::env::current_exe().expect("test exe");
    let mut profile_dir = exe.parent().expect("exe dir").to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(root())
            .args(["build", "--quiet", "-p", "ssfd", "--bin", "ssfd"]);
        if release {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p ssfd failed");
    });
    profile_dir.join("ssfd")
}

/// A running `ssfd serve`.
pub struct Server {
    child: Child,
    /// `kind scheme` → address, e.g. `"statsd udp"` → `127.0.0.1:40001`.
    pub listeners: HashMap<String, String>,
    pub http: String,
    pub stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// A config with every listener on port 0 and a UNIX socket in `dir`.
pub fn port_zero_config(dir: &Path) -> String {
    format!(
        "statsd_listen_addresses: [udp://127.0.0.1:0, tcp://127.0.0.1:0, unixgram://{dir}/statsd.sock]\n\
         ssf_listen_addresses: [udp://127.0.0.1:0, tcp://127.0.0.1:0, unix://{dir}/ssf.sock]\n\
         grpc_listen_addresses: [tcp://127.0.0.1:0]\n\
         grpc_address: 127.0.0.1:0\n\
         http_address: 127.0.0.1:0\n\
         data_dir: {dir}/data\n",
        dir = dir.display()
    )
}

/// A TCP port free at the time of asking (for a server that must come back on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local address")
        .port()
}

/// [`port_zero_config`] with the gRPC listener on `port`, so a restart comes back on it.
pub fn fixed_grpc_config(dir: &Path, port: u16) -> String {
    port_zero_config(dir).replace(
        "grpc_listen_addresses: [tcp://127.0.0.1:0]",
        &format!("grpc_listen_addresses: [tcp://127.0.0.1:{port}]"),
    )
}

impl Server {
    /// Starts ssfd on `port_zero_config` plus `extra` YAML lines.
    pub fn start(extra: &str) -> Server {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!("{}{extra}", port_zero_config(dir.path()));
        Self::start_config(&config, dir, env)
    }

    /// Starts ssfd on exactly `config`.
    pub fn start_config(config: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let path = dir.path().join("ssfd.yaml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(ssfd_binary());
        command.arg("serve").arg("-f").arg(&path);
        Self::spawn(command, dir, env)
    }

    /// Starts `ssfd serve` without `-f` (the embedded default, on its fixed ports) in
    /// `dir`, so its `./ssfd-data` lands there.
    pub fn start_embedded(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(ssfd_binary());
        command.arg("serve").current_dir(dir.path());
        Self::spawn(command, dir, env)
    }

    fn spawn(mut command: Command, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn ssfd");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel();
        let kept = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line.clone());
                let _ = sender.send(line);
            }
        });
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = loop {
            let line = receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "ssfd did not announce http; stderr: {:?}",
                        lines.lock().unwrap()
                    )
                });
            let Some(rest) = line.strip_prefix("listening ") else {
                continue;
            };
            let (kind, url) = rest.split_once(' ').expect("listening <kind> <url>");
            let (scheme, address) = url.split_once("://").expect("url");
            if kind == "http" {
                break address.to_string();
            }
            let key = format!("{kind} {scheme}");
            if listeners.contains_key(&key) {
                listeners.insert(format!("{key} 2"), address.to_string());
            } else {
                listeners.insert(key, address.to_string());
            }
        };
        Server {
            child,
            listeners,
            http,
            stderr: lines,
            _dir: dir,
        }
    }

    /// The address of a listener, e.g. `addr("statsd udp")`.
    pub fn addr(&self, key: &str) -> &str {
        self.listeners
            .get(key)
            .unwrap_or_else(|| panic!("no listener {key}: {:?}", self.listeners))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET a path over plain HTTP/1.1.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }

    /// The value of one series in `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        parse_metric(&body, series)
    }

    /// The sum of every series whose name and labels begin with `prefix` (e.g.
    /// `ssfd_refused_total{listener="grpc"` for every reason).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|line| !line.starts_with('#') && line.starts_with(prefix))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Polls until `series` reaches `want` (or panics after 15 s with the last value).
    pub fn wait_metric(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = self.metric(series);
            if value == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {value}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "ssfd did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds `series` (name with its exact label set) in a Prometheus text exposition.
pub fn parse_metric(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 GET.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    http_get_with(address, path, "")
}

/// A minimal HTTP/1.1 GET with extra header lines (each ending in `\r\n`).
pub fn http_get_with(address: &str, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect http");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read http");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if response
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Runs a Python script from `tests/python` with arguments; panics with its output on
/// failure. Python packages come from `scripts/install-test-deps.sh`.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = root().join("tests/python").join(script);
    let output = Command::new("python3")
        .arg(&path)
        .args(args)
        .env("SSFD_PROTO_DIR", root().join("proto"))
        .output()
        .expect("python3 runs (scripts/install-test-deps.sh installs what the tests need)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\n(missing modules? run scripts/install-test-deps.sh)",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// POSTs `body` over plain HTTP/1.1.
pub fn http_post(address: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    http_post_with(address, path, content_type, "", body)
}

/// POSTs `body` with extra header lines (each ending in `\r\n`).
pub fn http_post_with(
    address: &str,
    path: &str,
    content_type: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs `future` on a current-thread runtime (a test's gRPC calls).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// A plain-text gRPC channel to `address` (`host:port` or a URL).
pub async fn grpc_channel(address: &str) -> tonic::transport::Channel {
    let url = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    tonic::transport::Channel::from_shared(url)
        .expect("a gRPC address")
        .connect()
        .await
        .expect("connect gRPC")
}

/// An HTTP server that answers 500 to everything (a sink that always fails).
pub fn failing_http() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    address
}

/// Runs `ssfd query --addr http://ADDRESS ARGS...`: (success, stdout, stderr).
pub fn ssfd_query(address: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(ssfd_binary())
        .arg("query")
        .arg("--addr")
        .arg(format!("http://{address}"))
        .args(args)
        .output()
        .expect("run ssfd query");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
