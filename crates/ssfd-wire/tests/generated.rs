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
    "ssfd/v1/attribute.proto",
    "ssfd/v1/ingest.proto",
    "ssfd/v1/query.proto",
    "ssfd/v1/logs.proto",
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

/// Applies [`gate_services`] to every generated file of `out_dir`.
fn gate_dir(out_dir: &Path) {
    for entry in std::fs::read_dir(out_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, gate_services(&text)).unwrap();
    }
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
    gate_dir(out_dir);
}

/// The servers ingest reads in place: `SSFSpan` requests arrive as raw bytes.
fn generate_raw_servers(out_dir: &Path) {
    let proto_dir = repo_root().join("proto");
    let fds = protox::compile(["ssf/grpc.proto", "ssfd/v1/ingest.proto"], [&proto_dir])
        .expect("proto files compile");
    let mut config = prost_build::Config::new();
    config.extern_path(".ssf.SSFSpan", "crate::grpc_codec::RawSpan");
    config.extern_path(".ssf", "crate::ssf");
    config.extern_path(".ssfd.v1", "crate::ssfd::v1");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .build_transport(false)
        .codec_path("crate::grpc_codec::RawCodec")
        .out_dir(out_dir)
        .compile_fds_with_config(fds, config)
        .expect("code generation");
    gate_dir(out_dir);
}

#[test]
fn checked_in_raw_servers_match_proto() {
    compare(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen/raw"),
        generate_raw_servers,
    );
}

#[test]
fn checked_in_code_matches_proto() {
    compare(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen"),
        generate,
    );
}

fn compare(checked_in: PathBuf, generate: fn(&Path)) {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    if std::env::var_os("SSFD_REGENERATE").is_some() {
        std::fs::create_dir_all(&checked_in).unwrap();
        for entry in std::fs::read_dir(fresh.path()).unwrap() {
            let path = entry.unwrap().path();
            if !std::fs::read_to_string(&path).unwrap().trim().is_empty() {
                std::fs::copy(&path, checked_in.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| {
            !std::fs::read_to_string(fresh.path().join(name))
                .unwrap()
                .trim()
                .is_empty()
        })
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let want = std::fs::read_to_string(fresh.path().join(&name)).unwrap();
        let have = std::fs::read_to_string(checked_in.join(&name)).unwrap_or_default();
        assert!(
            want == have,
            "{}/{} is stale: run SSFD_REGENERATE=1 cargo test -p ssfd-wire --test generated",
            checked_in.display(),
            name.to_string_lossy()
        );
    }
}
