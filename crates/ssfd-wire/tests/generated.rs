//! Regenerates the checked-in protobuf code from `proto/` (protox, no `protoc`) and
//! fails when it differs. `SSFD_REGENERATE=1 cargo test -p ssfd-wire --test generated`
//! rewrites `src/gen/` instead.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "ssf/sample.proto",
    "ssf/grpc.proto",
    "dogstatsd/grpc.proto",
    "tdigest/tdigest.proto",
    "metricpb/metric.proto",
    "forwardrpc/forward.proto",
    "ssfd/v1/ingest.proto",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The gRPC client and server modules sit behind the crate's `grpc` feature, so the
/// fuzz targets and pure crates build without tonic.
fn gate_services(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 256);
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub mod ")
            && (trimmed.ends_with("_client {") || trimmed.ends_with("_server {"))
        {
            out.push_str("#[cfg(feature = \"grpc\")]\n");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn generate(out_dir: &Path) {
    let proto_dir = repo_root().join("proto");
    let fds = protox::compile(PROTOS, [&proto_dir]).expect("proto files compile");
    let mut config = prost_build::Config::new();
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .codec_path("crate::grpc_codec::SsfdCodec")
        .out_dir(out_dir)
        .compile_fds_with_config(fds, config)
        .expect("code generation");
    for entry in std::fs::read_dir(out_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, gate_services(&text)).unwrap();
    }
}

#[test]
fn checked_in_code_matches_proto() {
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    if std::env::var_os("SSFD_REGENERATE").is_some() {
        for entry in std::fs::read_dir(fresh.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, checked_in.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let want = std::fs::read_to_string(fresh.path().join(&name)).unwrap();
        let have = std::fs::read_to_string(checked_in.join(&name)).unwrap_or_default();
        assert!(
            want == have,
            "src/gen/{} is stale: run SSFD_REGENERATE=1 cargo test -p ssfd-wire --test generated",
            name.to_string_lossy()
        );
    }
}
