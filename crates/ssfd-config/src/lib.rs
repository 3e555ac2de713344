//! ssfd's configuration (SPEC 9): Veneur's keys with Veneur's meaning, ssfd's own keys,
//! the embedded default, and the parsing of listen addresses and Go-style durations.
//!
//! A Veneur key that ssfd does not implement is accepted with a warning; any other
//! unknown key is an error that names the key and its line.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The embedded default configuration, used when `ssfd serve` has no `-f`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../deploy/config/default.yaml");

/// Veneur keys that ssfd accepts but does not implement (one warning each).
pub const VENEUR_UNIMPLEMENTED: &[&str] = &[
    "flush_watchdog_missed_flushes",
    "flush_on_shutdown",
    "synchronize_with_interval",
    "http_quit",
    "omit_empty_hostname",
    "tags_exclude",
    "veneur_metrics_scopes",
    "veneur_metrics_additional_tags",
    "count_unique_timeseries",
    "debug",
    "mutex_profile_fraction",
    "block_profile_rate",
    "sentry_dsn",
    "enable_profiling",
    "flush_max_per_body",
    "datadog_api_key",
    "datadog_api_hostname",
    "ssf_buffer_size",
    "statsd_address",
    "tcp_address",
    "udp_address",
    "ssf_address",
    "trace_address",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_region",
    "aws_s3_bucket",
    "sources",
    "source_config",
    "debug_flushed_metrics",
    "debug_ingested_spans",
    "http",
    "signalfx_api_key",
];

/// Keys whose absence from a file means "open nothing" (Veneur's rule).
const LISTENER_KEYS: &[&str] = &[
    "statsd_listen_addresses",
    "ssf_listen_addresses",
    "grpc_listen_addresses",
    "grpc_address",
    "otlp_listen_addresses",
];

/// A configuration error, naming the key and, where known, its line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config is not YAML: {0}")]
    Yaml(String),
    #[error("unknown config key `{key}` at line {line}{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        key: String,
        line: usize,
        /// The known key nearest to it, when one is near enough to be a typo.
        suggestion: Option<String>,
    },
    /// A bad value that came from an `SSFD_<KEY>` environment variable, not the file.
    #[error("bad value in environment variable `{variable}`: {message}")]
    BadEnv { variable: String, message: String },
    #[error("bad value for `{key}`{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    BadValue {
        key: String,
        line: Option<usize>,
        message: String,
    },
}

/// Options Veneur allows on a sink entry beside `kind`, `name` and `config` (its
/// `SinkConfig`): accepted with a warning, not implemented.
const VENEUR_SINK_OPTIONS: &[&str] = &[
    "max_name_length",
    "max_tag_length",
    "max_tags",
    "dropped_metrics_add_tags",
    "strip_tags",
    "add_tags",
];

/// One sink entry of `metric_sinks` / `span_sinks`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub config: serde_yaml::Value,
}

impl SinkConfig {
    /// The name the sink goes by: its `name`, else its kind.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.kind
        } else {
            &self.name
        }
    }

    /// A text setting of its `config`.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(serde_yaml::Value::as_str)
    }

    /// The text setting `key`, which a sink of this kind cannot do without.
    pub fn required(&self, key: &str) -> Result<&str, String> {
        let hint = match key {
            "address" => " (udp://host:port or tcp://host:port)",
            "endpoint" => " (host:port)",
            _ => "",
        };
        self.text(key)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                format!(
                    "sink `{}` ({}) needs config.{key}{hint}",
                    self.label(),
                    self.kind
                )
            })
    }

    /// What `validate` checks of a sink: the settings its kind needs, in the form the
    /// sink reads them. A kind ssfd does not implement passes (serve warns).
    fn check(&self, span_sink: bool) -> Result<(), String> {
        let required: &[&str] = match (span_sink, self.kind.as_str()) {
            (_, "jsonl") => &["path"],
            (_, "otlp") => &["endpoint"],
            (false, "statsd") => &["address"],
            (false, "prometheus") => &["repeater_address"],
            (false, "datadog") => &["api_key"],
            (false, "prometheus_remote_write" | "cortex") => &["url"],
            _ => &[],
        };
        for key in required {
            self.required(key)?;
        }
        if !span_sink && self.kind == "statsd" {
            let address = self.required("address")?;
            if !matches!(address.split_once("://"), Some(("udp" | "tcp", _))) {
                return Err(format!(
                    "sink `{}` (statsd): config.address `{address}` is not udp:// or tcp://",
                    self.label()
                ));
            }
        }
        self.pairs("headers")?;
        self.pairs("external_labels")?;
        if self
            .config
            .get("basic_auth")
            .is_some_and(|v| !v.is_mapping())
        {
            return Err(format!(
                "sink `{}`: config.basic_auth must be a map",
                self.label()
            ));
        }
        Ok(())
    }

    /// A map setting of text keys and values (numbers and booleans written as text),
    /// such as `headers`; empty when absent.
    pub fn pairs(&self, key: &str) -> Result<Vec<(String, String)>, String> {
        let Some(map) = self.config.get(key) else {
            return Ok(Vec::new());
        };
        let map = map
            .as_mapping()
            .ok_or_else(|| format!("sink `{}`: config.{key} must be a map", self.label()))?;
        let text = |v: &serde_yaml::Value| match v {
            serde_yaml::Value::String(s) => Some(s.clone()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            serde_yaml::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        map.iter()
            .map(|(k, v)| match (text(k), text(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!(
                    "sink `{}`: config.{key} must map text to text",
                    self.label()
                )),
            })
            .collect()
    }
}

/// An entry of `otlp_listen_addresses`: OTLP over gRPC or over HTTP, on `host:port`.
#[derive(Clone, Debug, PartialEq)]
pub enum OtlpListen {
    Grpc(String),
    Http(String),
}

impl OtlpListen {
    /// Parses `grpc://host:port` or `http://host:port`.
    pub fn parse(url: &str) -> Result<OtlpListen, String> {
        let invalid = || format!("`{url}` is not grpc://host:port or http://host:port");
        let (scheme, host_port) = url.split_once("://").ok_or_else(invalid)?;
        let address = ListenAddr::parse_host_port(host_port)?;
        match scheme {
            "grpc" => Ok(OtlpListen::Grpc(address)),
            "http" => Ok(OtlpListen::Http(address)),
            _ => Err(invalid()),
        }
    }
}

/// The `proxy` section, read (SPEC 9).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySettings {
    /// Static `host:port` destinations.
    pub destinations: Vec<String>,
    /// `host:port` names resolved again every `resolve_interval`.
    pub dns_names: Vec<String>,
    pub resolve_interval: Duration,
    /// Tag names left out of a metric's routing key.
    pub ignore_tags: Vec<String>,
}

/// One entry of `slos` (SPEC 4.4).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub name: String,
    pub service: String,
    #[serde(default)]
    pub span_name: Option<String>,
    /// The target ratio of good events, in (0, 1).
    pub objective: f64,
    /// A Go-style duration; slower spans are bad events.
    #[serde(default)]
    pub latency_threshold: Option<String>,
}

/// `tls`: PEM files for gRPC ingest, forwarding and the proxy (SPEC 9). With
/// `ca_file` the server asks clients for a certificate signed by it (mutual TLS) and
/// clients check the server's against it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub ca_file: String,
}

/// TLS material, read: `tls` files or Veneur's inline PEM keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsPem {
    /// Certificate chain and key: serve TLS, and present them as a client.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The authority: require client certificates it signed, and check servers.
    pub ca: Option<Vec<u8>>,
}

/// `storage`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_max_bytes", deserialize_with = "size::u64")]
    pub max_bytes: u64,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_bytes: default_max_bytes(),
        }
    }
}

/// The whole configuration, after defaults.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_role")]
    pub role: String,
    #[serde(default)]
    pub statsd_listen_addresses: Vec<String>,
    #[serde(default)]
    pub ssf_listen_addresses: Vec<String>,
    #[serde(default)]
    pub grpc_listen_addresses: Vec<String>,
    #[serde(default)]
    pub grpc_address: String,
    #[serde(default)]
    pub otlp_listen_addresses: Vec<String>,
    #[serde(default = "default_http_address")]
    pub http_address: String,
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_percentiles")]
    pub percentiles: Vec<f64>,
    #[serde(default = "default_aggregates")]
    pub aggregates: Vec<String>,
    #[serde(default)]
    pub forward_address: String,
    #[serde(default)]
    pub num_workers: usize,
    #[serde(default = "one")]
    pub num_readers: usize,
    #[serde(default)]
    pub num_span_workers: usize,
    #[serde(default = "default_span_channel_capacity")]
    pub span_channel_capacity: usize,
    #[serde(
        default = "default_metric_max_length",
        deserialize_with = "size::usize"
    )]
    pub metric_max_length: usize,
    #[serde(default = "default_trace_max_length", deserialize_with = "size::usize")]
    pub trace_max_length_bytes: usize,
    #[serde(default = "default_read_buffer", deserialize_with = "size::usize")]
    pub read_buffer_size_bytes: usize,
    #[serde(default = "default_indicator_name")]
    pub indicator_span_timer_name: String,
    #[serde(default = "default_objective_name")]
    pub objective_span_timer_name: String,
    #[serde(default)]
    pub extend_tags: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub metric_sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub span_sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub metric_sink_routing: serde_yaml::Value,
    #[serde(default)]
    pub features: serde_yaml::Value,
    #[serde(default)]
    pub tls_key: String,
    #[serde(default)]
    pub tls_certificate: String,
    #[serde(default)]
    pub tls_authority_certificate: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    #[serde(default = "default_retention")]
    pub retention: String,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default = "default_max_series")]
    pub max_series: u64,
    #[serde(default = "default_memory_limit", deserialize_with = "size::u64")]
    pub memory_limit: u64,
    #[serde(default)]
    pub shutdown_timeout: String,
    #[serde(default)]
    pub slos: Vec<SloConfig>,
    #[serde(default)]
    pub proxy: serde_yaml::Value,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub http_bearer_token_file: String,
    /// The write-ahead log under `data_dir/wal` (SPEC 7); `false` acknowledges
    /// durable requests on hand-off (benchmarks compare the two).
    #[serde(default = "default_wal")]
    pub wal: bool,
    #[serde(default = "default_prometheus_expiry")]
    pub prometheus_expiry: String,
    /// How long a unary gRPC call or OTLP export waits for room in a full queue
    /// before it answers `UNAVAILABLE` (SPEC 3.3; never past the call's deadline).
    #[serde(default = "default_grpc_wait")]
    pub grpc_wait: String,
    /// Veneur's `stats_address`: where ssfd sends its own telemetry as DogStatsD
    /// every interval, under Veneur's names (SPEC 10); empty sends nothing.
    #[serde(default)]
    pub stats_address: String,
    /// How long a proxy waits for the globals' answers to a read before it answers
    /// with what it has, `"partial": true` (SPEC 6).
    #[serde(default = "default_query_timeout")]
    pub query_timeout: String,
    /// Open connections the HTTP listener keeps at most (SPEC 7); at the bound the
    /// longest-idle one is closed for a new one. 0: three quarters of the descriptor
    /// limit, less a reserve.
    #[serde(default)]
    pub http_max_connections: usize,
}

fn default_grpc_wait() -> String {
    "1s".into()
}
fn default_query_timeout() -> String {
    "5s".into()
}
fn default_wal() -> bool {
    true
}
fn default_role() -> String {
    "standalone".into()
}
fn default_http_address() -> String {
    "127.0.0.1:8127".into()
}
fn default_interval() -> String {
    "10s".into()
}
fn default_percentiles() -> Vec<f64> {
    vec![0.5, 0.75, 0.99]
}
fn default_aggregates() -> Vec<String> {
    vec!["min".into(), "max".into(), "count".into()]
}
fn one() -> usize {
    1
}
fn default_span_channel_capacity() -> usize {
    100
}
fn default_metric_max_length() -> usize {
    8192
}
fn default_trace_max_length() -> usize {
    16384
}
fn default_read_buffer() -> usize {
    2 * 1024 * 1024
}
fn default_indicator_name() -> String {
    "indicator_span.duration_ns".into()
}
fn default_objective_name() -> String {
    "objective_span.duration_ns".into()
}
fn default_data_dir() -> String {
    "./ssfd-data".into()
}
fn default_retention() -> String {
    "24h".into()
}
fn default_max_series() -> u64 {
    1_000_000
}
fn default_memory_limit() -> u64 {
    2 << 30
}
fn default_prometheus_expiry() -> String {
    "5m".into()
}

/// A parsed configuration and the warnings it produced.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(0, |index| index + 1)
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        Config::parse(EMBEDDED_DEFAULT)
            .expect("embedded default parses")
            .config
    }

    /// Parses a YAML file's text. Absent listener keys open nothing; every other absent
    /// key takes the embedded default.
    pub fn parse(text: &str) -> Result<Loaded, ConfigError> {
        Config::parse_with_env(text, std::env::vars())
    }

    /// [`Config::parse`] with `env` as the environment: `SSFD_<KEY>` (a top-level key,
    /// upper case) overrides the file; lists are comma-separated (or a YAML flow
    /// list), other values are read as YAML scalars or flow mappings; `SSFD_`
    /// variables that name no key are ignored (SPEC 9).
    pub fn parse_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        let mut mapping = match value {
            serde_yaml::Value::Mapping(mapping) => mapping,
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => return Err(ConfigError::Yaml("top level is not a mapping".into())),
        };
        let known: Vec<&str> = KNOWN_KEYS.to_vec();
        let mut warnings = Vec::new();
        let keys: Vec<serde_yaml::Value> = mapping.keys().cloned().collect();
        for key in keys {
            let name = key.as_str().unwrap_or_default().to_string();
            if known.contains(&name.as_str()) {
                continue;
            }
            if VENEUR_UNIMPLEMENTED.contains(&name.as_str()) {
                warnings.push(format!(
                    "veneur key `{name}` (line {}) is not implemented by ssfd and is ignored",
                    line_of(text, &name)
                ));
                mapping.remove(&key);
                continue;
            }
            return Err(ConfigError::UnknownKey {
                line: line_of(text, &name),
                suggestion: nearest_key(&name),
                key: name,
            });
        }
        // Veneur's per-sink options beside kind/name/config: accepted and ignored with a
        // warning, so a Veneur config with them still runs
        for list in ["metric_sinks", "span_sinks"] {
            let Some(serde_yaml::Value::Sequence(sinks)) = mapping.get_mut(list) else {
                continue;
            };
            for sink in sinks.iter_mut() {
                let serde_yaml::Value::Mapping(sink) = sink else {
                    continue;
                };
                for option in VENEUR_SINK_OPTIONS {
                    if sink.remove(*option).is_some() {
                        warnings.push(format!(
                            "veneur sink option `{option}` in `{list}` (line {}) is not implemented by ssfd and is ignored",
                            line_of(text, option)
                        ));
                    }
                }
            }
        }
        // keys an SSFD_ variable set: an error in one names the variable, not the file
        let mut from_env: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("SSFD_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if !known.contains(&key.as_str()) {
                continue;
            }
            from_env.push((key.clone(), name.clone()));
            let scalar = |text: &str| {
                serde_yaml::from_str::<serde_yaml::Value>(text)
                    .unwrap_or_else(|_| serde_yaml::Value::String(text.to_string()))
            };
            let parsed =
                if ENV_LIST_KEYS.contains(&key.as_str()) && !value.trim_start().starts_with('[') {
                    serde_yaml::Value::Sequence(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .map(scalar)
                            .collect(),
                    )
                } else if value.contains('\n') {
                    // a PEM key or certificate: its lines as they are
                    serde_yaml::Value::String(value.clone())
                } else {
                    scalar(&value)
                };
            // a number or `true` given to a text key (`SSFD_HOSTNAME=12345`) is text
            let key = serde_yaml::Value::String(key);
            let parsed = match parsed {
                serde_yaml::Value::Number(_) | serde_yaml::Value::Bool(_) => {
                    let mut single = serde_yaml::Mapping::new();
                    single.insert(key.clone(), parsed.clone());
                    match serde_yaml::from_value::<Config>(serde_yaml::Value::Mapping(single)) {
                        Ok(_) => parsed,
                        Err(_) => serde_yaml::Value::String(value.clone()),
                    }
                }
                other => other,
            };
            mapping.insert(key, parsed);
        }
        let config: Config =
            match serde_yaml::from_value(serde_yaml::Value::Mapping(mapping.clone())) {
                Ok(config) => config,
                Err(error) => {
                    // find the key at fault by deserialising each key alone
                    for (key, value) in &mapping {
                        let mut single = serde_yaml::Mapping::new();
                        single.insert(key.clone(), value.clone());
                        if let Err(e) =
                            serde_yaml::from_value::<Config>(serde_yaml::Value::Mapping(single))
                        {
                            let key = key.as_str().unwrap_or_default().to_string();
                            return Err(blame_env(
                                ConfigError::BadValue {
                                    line: Some(line_of(text, &key)),
                                    key,
                                    message: e.to_string(),
                                },
                                &from_env,
                            ));
                        }
                    }
                    return Err(ConfigError::Yaml(error.to_string()));
                }
            };
        config
            .validate(text)
            .map_err(|error| blame_env(error, &from_env))?;
        Ok(Loaded { config, warnings })
    }

    /// The TLS material, read from `tls` files or Veneur's inline keys; `None` serves
    /// and connects in plain text.
    pub fn tls_pem(&self) -> Result<Option<TlsPem>, String> {
        let read = |file: &str, inline: &str, key: &str| -> Result<Option<Vec<u8>>, String> {
            if !file.is_empty() {
                return std::fs::read(file)
                    .map(Some)
                    .map_err(|e| format!("tls.{key}: cannot read {file}: {e}"));
            }
            Ok((!inline.trim().is_empty()).then(|| inline.as_bytes().to_vec()))
        };
        let cert = read(&self.tls.cert_file, &self.tls_certificate, "cert_file")?;
        let key = read(&self.tls.key_file, &self.tls_key, "key_file")?;
        let ca = read(
            &self.tls.ca_file,
            &self.tls_authority_certificate,
            "ca_file",
        )?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("tls: a certificate needs its key and a key its certificate".into()),
        };
        if identity.is_none() && ca.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsPem { identity, ca }))
    }

    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.into(),
            line: Some(line_of(text, key)),
            message,
        };
        let tls_files = [&self.tls.cert_file, &self.tls.key_file];
        let tls_inline = [&self.tls_certificate, &self.tls_key];
        if tls_files.iter().filter(|f| f.is_empty()).count() == 1
            || tls_inline.iter().filter(|f| f.trim().is_empty()).count() == 1
        {
            return Err(bad(
                if tls_files.iter().any(|f| !f.is_empty()) {
                    "tls"
                } else {
                    "tls_certificate"
                },
                "a certificate needs its key and a key its certificate".into(),
            ));
        }
        for (key, list) in [
            ("statsd_listen_addresses", &self.statsd_listen_addresses),
            ("ssf_listen_addresses", &self.ssf_listen_addresses),
            ("grpc_listen_addresses", &self.grpc_listen_addresses),
        ] {
            for address in list {
                ListenAddr::parse(address).map_err(|m| bad(key, m))?;
            }
        }
        if !self.grpc_address.is_empty() {
            ListenAddr::parse_host_port(&self.grpc_address).map_err(|m| bad("grpc_address", m))?;
        }
        for key in ["interval", "retention", "prometheus_expiry"] {
            let value = match key {
                "interval" => &self.interval,
                "retention" => &self.retention,
                _ => &self.prometheus_expiry,
            };
            let duration = parse_duration(value).map_err(|m| bad(key, m))?;
            if duration.is_zero() {
                return Err(bad(key, "must be above zero".into()));
            }
        }
        parse_duration(&self.grpc_wait).map_err(|m| bad("grpc_wait", m))?;
        if parse_duration(&self.query_timeout)
            .map_err(|m| bad("query_timeout", m))?
            .is_zero()
        {
            return Err(bad("query_timeout", "must be above zero".into()));
        }
        if !self.shutdown_timeout.is_empty() {
            parse_duration(&self.shutdown_timeout).map_err(|m| bad("shutdown_timeout", m))?;
        }
        for &p in &self.percentiles {
            if !(p > 0.0 && p < 1.0) {
                return Err(bad(
                    "percentiles",
                    format!("percentile {p} is not in (0, 1)"),
                ));
            }
        }
        for aggregate in &self.aggregates {
            if !["min", "max", "median", "avg", "count", "sum", "hmean"]
                .contains(&aggregate.as_str())
            {
                return Err(bad(
                    "aggregates",
                    format!("unknown aggregate `{aggregate}`"),
                ));
            }
        }
        if !["standalone", "local", "global", "proxy"].contains(&self.role.as_str()) {
            return Err(bad("role", format!("unknown role `{}`", self.role)));
        }
        for slo in &self.slos {
            if !(slo.objective > 0.0 && slo.objective < 1.0) {
                return Err(bad(
                    "slos",
                    format!(
                        "slo `{}`: objective {} is not in (0, 1)",
                        slo.name, slo.objective
                    ),
                ));
            }
            if let Some(threshold) = &slo.latency_threshold {
                parse_duration(threshold).map_err(|m| {
                    bad(
                        "slos",
                        format!("slo `{}`: latency_threshold: {m}", slo.name),
                    )
                })?;
            }
            if slo.name.is_empty() || slo.service.is_empty() {
                return Err(bad("slos", "every slo needs a name and a service".into()));
            }
        }
        for url in &self.otlp_listen_addresses {
            OtlpListen::parse(url).map_err(|m| bad("otlp_listen_addresses", m))?;
        }
        if !self.http_address.is_empty() {
            ListenAddr::parse_host_port(&self.http_address).map_err(|m| bad("http_address", m))?;
        }
        if !self.stats_address.is_empty() {
            self.stats_target().map_err(|m| bad("stats_address", m))?;
        }
        let mut names: Vec<&str> = Vec::new();
        for sink in &self.metric_sinks {
            sink.check(false).map_err(|m| bad("metric_sinks", m))?;
            if names.contains(&sink.label()) {
                return Err(bad(
                    "metric_sinks",
                    format!(
                        "two metric sinks are named `{}`; give each its own name",
                        sink.label()
                    ),
                ));
            }
            names.push(sink.label());
        }
        for sink in &self.span_sinks {
            sink.check(true).map_err(|m| bad("span_sinks", m))?;
        }
        if self.role == "proxy" || !self.proxy.is_null() {
            self.proxy_settings().map_err(|m| bad("proxy", m))?;
        }
        if self.metric_max_length == 0 || self.metric_max_length > 1 << 20 {
            return Err(bad("metric_max_length", "must be in 1..=1048576".into()));
        }
        if self.trace_max_length_bytes == 0 || self.trace_max_length_bytes > 16 << 20 {
            return Err(bad(
                "trace_max_length_bytes",
                "must be in 1..=16777216".into(),
            ));
        }
        Ok(())
    }

    /// The configuration as YAML a config file could hold, every secret setting shown
    /// as [`REDACTED`] (what `check-config` prints).
    pub fn redacted_yaml(&self) -> Result<String, String> {
        let mut value = serde_yaml::to_value(self).map_err(|e| e.to_string())?;
        walk_secrets(&mut value, &mut |_| {}, true);
        serde_yaml::to_string(&value).map_err(|e| e.to_string())
    }

    /// Every secret this configuration holds or names: secret settings' values and
    /// the contents of the secret files it names (`http_bearer_token_file`, a sink's
    /// `bearer_token_file`, `tls.key_file`), for a [`Redactor`].
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Ok(mut value) = serde_yaml::to_value(self) {
            walk_secrets(&mut value, &mut |s| secrets.push(s.to_string()), false);
        }
        let mut files = vec![
            self.http_bearer_token_file.clone(),
            self.tls.key_file.clone(),
        ];
        for sink in self.metric_sinks.iter().chain(&self.span_sinks) {
            if let serde_yaml::Value::Mapping(map) = &sink.config {
                for (key, value) in map {
                    if let (Some(key), Some(path)) = (key.as_str(), value.as_str())
                        && key.ends_with("_file")
                        && is_secret_key(key.trim_end_matches("_file"))
                    {
                        files.push(path.to_string());
                    }
                }
            }
        }
        // basic auth travels as base64(user:password) in a header
        for sink in self.metric_sinks.iter().chain(&self.span_sinks) {
            if let Some(auth) = sink.config.get("basic_auth") {
                let field = |key: &str| auth.get(key).and_then(|v| v.as_str()).unwrap_or_default();
                if !field("password").is_empty() {
                    secrets.push(base64(
                        format!("{}:{}", field("username"), field("password")).as_bytes(),
                    ));
                }
            }
        }
        for file in files.iter().filter(|f| !f.is_empty()) {
            if let Ok(text) = std::fs::read_to_string(file) {
                secrets.push(text.trim().to_string());
                // a PEM key: each of its lines too, as a log may wrap it
                secrets.extend(
                    text.lines()
                        .filter(|line| line.len() >= 16 && !line.starts_with("-----"))
                        .map(String::from),
                );
            }
        }
        if !self.tls_key.trim().is_empty() {
            secrets.extend(
                self.tls_key
                    .lines()
                    .filter(|line| line.len() >= 16 && !line.starts_with("-----"))
                    .map(String::from),
            );
        }
        secrets
    }

    /// `stats_address` as a UDP `host:port` (Veneur takes `host:port` or `udp://`).
    pub fn stats_target(&self) -> Result<String, String> {
        let text = self.stats_address.trim();
        let rest = match text.split_once("://") {
            Some(("udp" | "udp4" | "udp6", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "`{text}`: ssfd sends its telemetry over udp only, not `{scheme}`"
                ));
            }
            None => text,
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not host:port"))?;
        port.parse::<u16>()
            .map_err(|_| format!("`{text}` has a bad port"))?;
        let host = match host {
            "" | "localhost" => "127.0.0.1",
            other => other,
        };
        Ok(format!("{host}:{port}"))
    }

    /// `grpc_wait` (`validate` has checked it; `0` refuses at once).
    pub fn grpc_wait(&self) -> Duration {
        parse_duration(&self.grpc_wait).unwrap_or(Duration::from_secs(1))
    }

    /// `query_timeout` (`validate` has checked it).
    pub fn query_timeout(&self) -> Duration {
        parse_duration(&self.query_timeout).unwrap_or(Duration::from_secs(5))
    }

    /// The flush interval.
    pub fn interval(&self) -> Duration {
        parse_duration(&self.interval).unwrap_or(Duration::from_secs(10))
    }

    /// `shutdown_timeout`: how long sinks and forwarding may deliver at shutdown
    /// (default: one interval; `validate` has checked it).
    pub fn shutdown_timeout(&self) -> Duration {
        if self.shutdown_timeout.is_empty() {
            self.interval()
        } else {
            parse_duration(&self.shutdown_timeout).unwrap_or_else(|_| self.interval())
        }
    }

    /// The `proxy` section: `destinations` and `dns_names` (lists of `host:port`; a
    /// proxy needs one of them), `resolve_interval` (default 30s, at least 100ms),
    /// `ignore_tags`. Any other key is an error.
    pub fn proxy_settings(&self) -> Result<ProxySettings, String> {
        let mut settings = ProxySettings {
            destinations: Vec::new(),
            dns_names: Vec::new(),
            resolve_interval: Duration::from_secs(30),
            ignore_tags: Vec::new(),
        };
        let map = match &self.proxy {
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            serde_yaml::Value::Mapping(map) => map.clone(),
            _ => {
                return Err(
                    "must be a map (destinations, dns_names, resolve_interval, ignore_tags)".into(),
                );
            }
        };
        for (key, value) in &map {
            let key = key.as_str().unwrap_or_default();
            let list = || -> Result<Vec<String>, String> {
                value
                    .as_sequence()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|v| v.as_str().map(String::from))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| format!("proxy.{key} must be a list of strings"))
            };
            match key {
                "destinations" => settings.destinations = list()?,
                "dns_names" => settings.dns_names = list()?,
                "ignore_tags" => settings.ignore_tags = list()?,
                "resolve_interval" => {
                    let text = value
                        .as_str()
                        .ok_or("proxy.resolve_interval must be a duration such as 30s")?;
                    settings.resolve_interval = parse_duration(text)
                        .map_err(|m| format!("proxy.resolve_interval: {m}"))?
                        .max(Duration::from_millis(100));
                }
                other => {
                    return Err(format!(
                        "unknown key proxy.{other} (destinations, dns_names, resolve_interval, ignore_tags)"
                    ));
                }
            }
        }
        for destination in settings.destinations.iter().chain(&settings.dns_names) {
            if destination
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(format!("proxy: `{destination}` is not host:port"));
            }
        }
        if self.role == "proxy" && settings.destinations.is_empty() && settings.dns_names.is_empty()
        {
            return Err(
                "role proxy needs proxy.destinations or proxy.dns_names (host:port of the globals' gRPC)"
                    .into(),
            );
        }
        Ok(settings)
    }

    /// Listener keys that a file without them leaves closed.
    pub fn listener_keys() -> &'static [&'static str] {
        LISTENER_KEYS
    }
}

/// Sizes in the config (SPEC 7): a byte count, or a number with a unit: `KiB`, `MiB`,
/// `GiB`, `TiB` (1024-based) or `KB`, `MB`, `GB`, `TB` (1000-based); `B` for bytes;
/// fractions allowed (`1.5GiB`); case and a space before the unit do not matter.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a size (bytes, or a number with KiB, MiB, GiB, KB, MB, GB)")
    })?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}` (KiB, MiB, GiB, TiB, KB, MB, GB, TB or B)"
            ));
        }
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// serde readers of sizes: an integer, or a string [`parse_size`] takes.
mod size {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }

    pub fn u64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match Size::deserialize(deserializer)? {
            Size::Bytes(bytes) => Ok(bytes),
            Size::Text(text) => super::parse_size(&text).map_err(serde::de::Error::custom),
        }
    }

    pub fn usize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        let bytes = u64(deserializer)?;
        usize::try_from(bytes).map_err(|_| serde::de::Error::custom("size out of range"))
    }
}

/// The text shown in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a setting named `key` holds a secret: API keys, tokens, passwords, private
/// keys (`*_key`, `*token*`, `*password*`, `*secret*`, an `Authorization` header).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "key"
        || key.ends_with("_key")
        || key.ends_with("-key")
        || key.contains("token")
        || key.contains("password")
        || key.contains("secret")
        || key.contains("authorization")
}

/// `url` with a password in its user part replaced (`https://u:<redacted>@host`).
fn redact_userinfo(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{REDACTED}@{host}{path}"))
}

/// Walks a YAML value: secret settings are replaced with [`REDACTED`] (or handed to
/// `found` first), and a URL's password too.
fn walk_secrets(value: &mut serde_yaml::Value, found: &mut dyn FnMut(&str), redact: bool) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                let secret = key.as_str().is_some_and(is_secret_key);
                if secret && let serde_yaml::Value::Sequence(items) = value {
                    // a list of secrets: each item is one
                    for item in items.iter_mut() {
                        let mut single = serde_yaml::Mapping::new();
                        single.insert(key.clone(), item.clone());
                        let mut wrapped = serde_yaml::Value::Mapping(single);
                        walk_secrets(&mut wrapped, found, redact);
                        if let serde_yaml::Value::Mapping(single) = wrapped
                            && let Some(clean) = single.get(key.clone())
                        {
                            *item = clean.clone();
                        }
                    }
                    continue;
                }
                match value {
                    serde_yaml::Value::String(text) if secret && !text.is_empty() => {
                        found(text);
                        if redact {
                            *text = REDACTED.into();
                        }
                    }
                    serde_yaml::Value::Number(number) if secret => {
                        found(&number.to_string());
                        if redact {
                            *value = serde_yaml::Value::String(REDACTED.into());
                        }
                    }
                    other => walk_secrets(other, found, redact),
                }
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                walk_secrets(item, found, redact);
            }
        }
        serde_yaml::Value::String(text) => {
            if let Some(clean) = redact_userinfo(text) {
                if let Some((_, password)) = text
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .and_then(|authority| authority.rsplit_once('@'))
                    .and_then(|(userinfo, _)| userinfo.split_once(':'))
                {
                    found(password);
                }
                if redact {
                    *text = clean;
                }
            }
        }
        _ => {}
    }
}

/// Replaces every known secret in text that is about to be shown (a log line, an
/// error): the values of the config's secret settings and the contents of the files
/// its `*token*_file` and `*key_file` settings name.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    /// Never the secrets themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor that knows these secrets (shorter than 4 characters are ignored:
    /// replacing them would garble ordinary text and hide nothing).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .flat_map(|secret| {
                let encoded: String = form_encode(&secret);
                let trimmed = secret.trim().to_string();
                // as a JSON log line or a `{:?}` field shows it (quotes, backslashes
                // and control characters escaped)
                let escaped = format!("{secret:?}").trim_matches('"').to_string();
                [secret, encoded, trimmed, escaped]
            })
            .filter(|s| s.len() >= 4)
            .collect();
        // the longest first, so a secret containing another is replaced whole
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Whether it knows no secret.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = std::borrow::Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

/// RFC 4648 base64 (padded), as an `Authorization: Basic` header carries credentials.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` form of a secret, as it appears in a URL.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// An error about a key that an `SSFD_` variable set names that variable: the file's
/// line of the same key (if any) is not where the bad value came from.
fn blame_env(error: ConfigError, from_env: &[(String, String)]) -> ConfigError {
    match error {
        ConfigError::BadValue { key, line, message } => {
            match from_env.iter().find(|(k, _)| *k == key) {
                Some((_, variable)) => ConfigError::BadEnv {
                    variable: variable.clone(),
                    message: format!("`{key}`: {message}"),
                },
                None => ConfigError::BadValue { key, line, message },
            }
        }
        other => other,
    }
}

/// Edit distance (Levenshtein) between two short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The known key nearest to `key`, when it is close enough to be a typo: at most a
/// third of its length away (at least 2 edits), or one that merely differs in case,
/// `-` for `_`, or a missing or extra `s`.
pub fn nearest_key(key: &str) -> Option<String> {
    let normal = key.to_ascii_lowercase().replace('-', "_");
    KNOWN_KEYS
        .iter()
        .map(|known| (edit_distance(&normal, known), *known))
        .filter(|(distance, _)| *distance <= (key.len() / 3).max(2))
        .min()
        .map(|(_, known)| known.to_string())
}

/// Keys whose `SSFD_` variable is a comma-separated list.
const ENV_LIST_KEYS: &[&str] = &[
    "statsd_listen_addresses",
    "ssf_listen_addresses",
    "grpc_listen_addresses",
    "otlp_listen_addresses",
    "percentiles",
    "aggregates",
    "extend_tags",
];

const KNOWN_KEYS: &[&str] = &[
    "role",
    "statsd_listen_addresses",
    "ssf_listen_addresses",
    "grpc_listen_addresses",
    "grpc_address",
    "otlp_listen_addresses",
    "http_address",
    "interval",
    "percentiles",
    "aggregates",
    "forward_address",
    "num_workers",
    "num_readers",
    "num_span_workers",
    "span_channel_capacity",
    "metric_max_length",
    "trace_max_length_bytes",
    "read_buffer_size_bytes",
    "indicator_span_timer_name",
    "objective_span_timer_name",
    "extend_tags",
    "hostname",
    "metric_sinks",
    "span_sinks",
    "metric_sink_routing",
    "features",
    "tls_key",
    "tls_certificate",
    "tls_authority_certificate",
    "data_dir",
    "retention",
    "storage",
    "max_series",
    "memory_limit",
    "shutdown_timeout",
    "slos",
    "proxy",
    "tls",
    "http_bearer_token_file",
    "prometheus_expiry",
    "wal",
    "stats_address",
    "grpc_wait",
    "query_timeout",
    "http_max_connections",
];

/// A listen address in Veneur's URL forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Udp(String),
    Tcp(String),
    /// A UNIX stream socket path (`@name` is an abstract socket).
    Unix(String),
    /// A UNIX datagram socket path (`@name` is an abstract socket).
    Unixgram(String),
}

impl ListenAddr {
    /// Parses `udp://host:port`, `tcp://host:port`, `unix:///path`, `unix:@name`,
    /// `unixgram://...`. `localhost` means 127.0.0.1.
    pub fn parse(url: &str) -> Result<ListenAddr, String> {
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            format!("`{url}` has no scheme (udp://, tcp://, unix://, unixgram://)")
        })?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        match scheme {
            "udp" | "udp4" | "udp6" => Ok(ListenAddr::Udp(Self::parse_host_port(rest)?)),
            "tcp" | "tcp4" | "tcp6" => Ok(ListenAddr::Tcp(Self::parse_host_port(rest)?)),
            "unix" | "unixgram" => {
                if rest.is_empty() {
                    return Err(format!("`{url}` has no socket path"));
                }
                Ok(if scheme == "unix" {
                    ListenAddr::Unix(rest.to_string())
                } else {
                    ListenAddr::Unixgram(rest.to_string())
                })
            }
            _ => Err(format!("`{url}` has an unknown scheme `{scheme}`")),
        }
    }

    /// Checks `host:port`, turns `localhost` into 127.0.0.1 and an empty host into
    /// every interface, as Go (and so Veneur) reads `:8126`. ssfd's own defaults name
    /// 127.0.0.1; an address without a host is a choice written in a config.
    pub fn parse_host_port(text: &str) -> Result<String, String> {
        let text = text.trim_end_matches('/');
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not host:port"))?;
        port.parse::<u16>()
            .map_err(|_| format!("`{text}` has a bad port"))?;
        let host = match host {
            "" => "0.0.0.0",
            "localhost" => "127.0.0.1",
            other => other,
        };
        Ok(format!("{host}:{port}"))
    }
}

/// Parses a Go-style duration: `250ms`, `1.5s`, `1m30s`, `24h`; a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` lacks a unit (ns, us, ms, s, m, h)"))?;
        if number_len == 0 {
            return Err(format!("`{text}` is not a duration"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("`{text}` has an unknown unit `{unit}`")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_opens_every_listener() {
        let config = Config::embedded();
        assert_eq!(
            config.statsd_listen_addresses,
            ["udp://127.0.0.1:8126", "tcp://127.0.0.1:8126"]
        );
        assert_eq!(config.grpc_address, "127.0.0.1:8128");
        assert_eq!(config.metric_max_length, 8192);
        assert_eq!(config.interval(), Duration::from_secs(10));
    }

    #[test]
    fn a_file_without_listener_keys_opens_nothing() {
        let loaded = Config::parse("interval: 5s\n").unwrap();
        assert!(loaded.config.statsd_listen_addresses.is_empty());
        assert!(loaded.config.grpc_address.is_empty());
        assert_eq!(loaded.config.interval(), Duration::from_secs(5));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let error = Config::parse("interval: 5s\nbogus_key: 1\n").unwrap_err();
        assert_eq!(
            error,
            ConfigError::UnknownKey {
                key: "bogus_key".into(),
                line: 2,
                suggestion: None,
            }
        );
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let error = Config::parse(
            "interval: 5s
statsd_listen_adresses: []
",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown config key `statsd_listen_adresses` at line 2 (did you mean `statsd_listen_addresses`?)"
        );
        assert_eq!(nearest_key("Num-Workers").as_deref(), Some("num_workers"));
        assert_eq!(nearest_key("intervals").as_deref(), Some("interval"));
        assert_eq!(nearest_key("completely_different"), None);
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let env = [("SSFD_INTERVAL".to_string(), "soon".to_string())];
        // the file has the key too: the error must not blame its line
        let error = Config::parse_with_env("interval: 5s\n", env).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("SSFD_INTERVAL"), "{text}");
        assert!(!text.contains("line"), "{text}");
        let env = [("SSFD_NUM_WORKERS".to_string(), "many".to_string())];
        let text = Config::parse_with_env("", env).unwrap_err().to_string();
        assert!(text.contains("SSFD_NUM_WORKERS"), "{text}");
        // a bad value in the file still names its line
        let text = Config::parse_with_env("\ninterval: soon\n", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn secrets_are_redacted_and_known() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "T0KEN-FROM-FILE\n").unwrap();
        let text = format!(
            "stats_address: udp://127.0.0.1:8125\n\
             metric_sinks:\n\
             \x20 - kind: datadog\n    name: dd\n    config: {{api_key: DDKEY-123, api_hostname: http://x}}\n\
             \x20 - kind: prometheus_remote_write\n    name: rw\n    config:\n      url: http://u:URLPASS@host/w\n      \
             basic_auth: {{username: me, password: PASS-456}}\n      bearer_token_file: {}\n      \
             headers: {{Authorization: Bearer HDR-789, X-Scope-OrgID: tenant}}\n",
            token.display()
        );
        let config = Config::parse_with_env(&text, Vec::new()).unwrap().config;
        let yaml = config.redacted_yaml().unwrap();
        for secret in ["DDKEY-123", "PASS-456", "HDR-789", "URLPASS"] {
            assert!(!yaml.contains(secret), "{secret} in {yaml}");
        }
        assert!(yaml.contains(REDACTED), "{yaml}");
        assert!(yaml.contains("tenant") && yaml.contains("me"), "{yaml}");
        let redactor = Redactor::new(config.secrets());
        let line = "send to http://x/api/v1/series?api_key=DDKEY-123 failed; token T0KEN-FROM-FILE";
        let clean = redactor.scrub(line);
        assert!(
            !clean.contains("DDKEY") && !clean.contains("T0KEN"),
            "{clean}"
        );
        assert_eq!(config.stats_target().unwrap(), "127.0.0.1:8125");
        // as a basic-auth header and a JSON-escaped log field show them
        let header = format!("Authorization: Basic {}", base64(b"me:PASS-456"));
        assert!(!redactor.scrub(&header).contains(&base64(b"me:PASS-456")));
        assert_eq!(base64(b"me:pw"), "bWU6cHc=");
        let quoted = Redactor::new(["pa\"ss\\word".to_string()]);
        assert_eq!(
            quoted.scrub(r#"{"error":"pa\"ss\\word"}"#),
            r#"{"error":"<redacted>"}"#
        );
        assert!(!format!("{redactor:?}").contains("DDKEY"));
        // a list under a secret key: each item is a secret
        let config = Config::parse(
            "metric_sinks:\n  - kind: blackhole\n    config: {tokens: [TOK-ONE, TOK-TWO]}\n",
        )
        .unwrap()
        .config;
        let yaml = config.redacted_yaml().unwrap();
        assert!(
            !yaml.contains("TOK-ONE") && !yaml.contains("TOK-TWO"),
            "{yaml}"
        );
        assert!(config.secrets().iter().any(|s| s == "TOK-TWO"));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("300MiB"), Ok(300 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5KB"), Ok(1500));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        for bad in ["", "MiB", "3 parsecs", "-1GiB", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let config = Config::parse(
            "memory_limit: 300MiB\nstorage: {max_bytes: 1GiB}\nread_buffer_size_bytes: 8MiB\nmetric_max_length: 8KiB\n",
        )
        .unwrap()
        .config;
        assert_eq!(config.memory_limit, 300 << 20);
        assert_eq!(config.storage.max_bytes, 1 << 30);
        assert_eq!(config.read_buffer_size_bytes, 8 << 20);
        assert_eq!(config.metric_max_length, 8192);
        // plain integers as before, and an environment variable with a unit
        assert_eq!(
            Config::parse("memory_limit: 314572800\n")
                .unwrap()
                .config
                .memory_limit,
            314_572_800
        );
        let env = [("SSFD_MEMORY_LIMIT".to_string(), "2GiB".to_string())];
        assert_eq!(
            Config::parse_with_env("", env).unwrap().config.memory_limit,
            2 << 30
        );
        let error = Config::parse("memory_limit: 3 parsecs\n").unwrap_err();
        assert!(error.to_string().contains("memory_limit"), "{error}");
    }

    #[test]
    fn grpc_wait_is_a_duration() {
        assert_eq!(Config::embedded().grpc_wait(), Duration::from_secs(1));
        let config = Config::parse("grpc_wait: 250ms\n").unwrap().config;
        assert_eq!(config.grpc_wait(), Duration::from_millis(250));
        let config = Config::parse("query_timeout: 750ms\n").unwrap().config;
        assert_eq!(config.query_timeout(), Duration::from_millis(750));
        assert_eq!(Config::embedded().query_timeout(), Duration::from_secs(5));
        for bad in ["query_timeout: soon\n", "query_timeout: 0s\n"] {
            let error = Config::parse(bad).unwrap_err();
            assert!(error.to_string().contains("query_timeout"), "{error}");
        }
        let error = Config::parse("grpc_wait: soon\n").unwrap_err();
        assert!(error.to_string().contains("grpc_wait"), "{error}");
    }

    #[test]
    fn stats_address_takes_veneurs_forms() {
        for (text, want) in [
            ("localhost:8125", Ok("127.0.0.1:8125")),
            ("udp://10.0.0.1:9", Ok("10.0.0.1:9")),
        ] {
            let config = Config::parse(&format!("stats_address: {text}\n"))
                .unwrap()
                .config;
            assert_eq!(
                config.stats_target().as_deref(),
                want.map_err(|e: &str| e.to_string()).as_deref()
            );
        }
        for bad in ["tcp://x:1", "nohost", "x:99999"] {
            let error = Config::parse(&format!("stats_address: \"{bad}\"\n")).unwrap_err();
            assert!(error.to_string().contains("stats_address"), "{error}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = [
            ("SSFD_INTERVAL", "2s"),
            ("SSFD_PERCENTILES", "0.5, 0.9"),
            (
                "SSFD_STATSD_LISTEN_ADDRESSES",
                "udp://127.0.0.1:9999,tcp://127.0.0.1:9999",
            ),
            ("SSFD_STORAGE", "{max_bytes: 0}"),
            ("SSFD_NUM_WORKERS", "3"),
            ("SSFD_NOT_A_KEY", "ignored"),
            ("OTHER", "ignored"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::parse_with_env("interval: 5s\npercentiles: [0.99]\n", env)
            .unwrap()
            .config;
        assert_eq!(config.interval(), Duration::from_secs(2));
        assert_eq!(config.percentiles, [0.5, 0.9]);
        assert_eq!(
            config.statsd_listen_addresses,
            ["udp://127.0.0.1:9999", "tcp://127.0.0.1:9999"]
        );
        assert_eq!(config.storage.max_bytes, 0);
        assert_eq!(config.num_workers, 3);
        let bad = [("SSFD_NUM_WORKERS".to_string(), "many".to_string())];
        let error = Config::parse_with_env("", bad).unwrap_err();
        assert!(error.to_string().contains("num_workers"), "{error}");
    }

    #[test]
    fn veneur_keys_warn_once_each() {
        let loaded = Config::parse("debug: true\nsentry_dsn: x\n").unwrap();
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("`debug`"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = Config::parse("percentiles: [0.5, 1.5]\n").unwrap_err();
        assert!(error.to_string().contains("percentiles"), "{error}");
        let error = Config::parse("statsd_listen_addresses: [\"ftp://x:1\"]\n").unwrap_err();
        assert!(
            error.to_string().contains("statsd_listen_addresses"),
            "{error}"
        );
        let error = Config::parse("num_readers: many\n").unwrap_err();
        assert!(error.to_string().contains("num_readers"), "{error}");
    }

    #[test]
    fn veneur_example_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/veneur/example.yaml"
        ))
        .unwrap();
        let loaded = Config::parse(&text).unwrap();
        assert!(loaded.warnings.iter().any(|w| w.contains("sentry_dsn")));
        assert_eq!(loaded.config.num_readers, 1);
    }

    #[test]
    fn proxy_section_and_otlp_listeners() {
        let settings = Config::parse("role: proxy\nproxy:\n  dns_names: [\"g:8128\"]\n  resolve_interval: 1ms\n  ignore_tags: [host]\n")
            .unwrap()
            .config
            .proxy_settings()
            .unwrap();
        assert_eq!(settings.dns_names, ["g:8128"]);
        assert_eq!(settings.resolve_interval, Duration::from_millis(100));
        assert_eq!(settings.ignore_tags, ["host"]);
        let settings = Config::parse("role: proxy\nproxy: {destinations: [\"a:1\"]}\n")
            .unwrap()
            .config
            .proxy_settings()
            .unwrap();
        assert_eq!(settings.resolve_interval, Duration::from_secs(30));
        assert!(Config::parse("role: proxy\nproxy: {destinations: [1]}\n").is_err());
        assert!(Config::parse("proxy: [a]\n").is_err());
        assert_eq!(
            OtlpListen::parse("grpc://:4317"),
            Ok(OtlpListen::Grpc("0.0.0.0:4317".into()))
        );
        assert_eq!(
            OtlpListen::parse("http://localhost:4318"),
            Ok(OtlpListen::Http("127.0.0.1:4318".into()))
        );
        assert!(OtlpListen::parse("udp://127.0.0.1:4317").is_err());
    }

    #[test]
    fn slos_parse_and_validate() {
        let loaded = Config::parse(
            "slos:\n  - {name: checkout, service: shop, span_name: pay, objective: 0.99, latency_threshold: 250ms}\n",
        )
        .unwrap();
        assert_eq!(loaded.config.slos[0].objective, 0.99);
        assert!(Config::parse("slos:\n  - {name: a, service: s, objective: 1.5}\n").is_err());
        assert!(
            Config::parse(
                "slos:\n  - {name: a, service: s, objective: 0.9, latency_threshold: soon}\n"
            )
            .is_err()
        );
    }

    #[test]
    fn veneur_sink_options_are_accepted_with_a_warning() {
        let loaded = Config::parse(
            "metric_sinks:\n  - kind: jsonl\n    name: f\n    max_tags: 20\n    strip_tags: [a]\n    config: {path: /tmp/x}\n",
        )
        .unwrap();
        assert_eq!(loaded.config.metric_sinks[0].kind, "jsonl");
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("max_tags"),
            "{:?}",
            loaded.warnings
        );
        // anything else on a sink entry is still an error
        assert!(Config::parse("metric_sinks:\n  - kind: jsonl\n    nonsense: 1\n").is_err());
    }

    #[test]
    fn environment_values_keep_their_text() {
        let env = [
            ("SSFD_HOSTNAME".to_string(), "12345".to_string()),
            (
                "SSFD_TLS_KEY".to_string(),
                "-----BEGIN X-----\nAAAA\n-----END X-----\n".to_string(),
            ),
            (
                "SSFD_TLS_CERTIFICATE".to_string(),
                "-----BEGIN Y-----\nBBBB\n-----END Y-----\n".to_string(),
            ),
            ("SSFD_MAX_SERIES".to_string(), "42".to_string()),
        ];
        let config = Config::parse_with_env("", env).unwrap().config;
        assert_eq!(config.hostname, "12345");
        assert_eq!(config.tls_key, "-----BEGIN X-----\nAAAA\n-----END X-----\n");
        assert_eq!(
            config.tls_certificate,
            "-----BEGIN Y-----\nBBBB\n-----END Y-----\n"
        );
        assert_eq!(config.max_series, 42);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            ListenAddr::parse("udp://localhost:8126"),
            Ok(ListenAddr::Udp("127.0.0.1:8126".into()))
        );
        assert_eq!(
            ListenAddr::parse("unixgram:@veneur.sock"),
            Ok(ListenAddr::Unixgram("@veneur.sock".into()))
        );
        assert_eq!(
            ListenAddr::parse("unix:///tmp/a.sock"),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            ListenAddr::parse("tcp://[::]:0"),
            Ok(ListenAddr::Tcp("[::]:0".into()))
        );
        assert!(ListenAddr::parse("udp://x").is_err());
        // Go's `:port`: every interface, as in a Veneur config
        assert_eq!(
            ListenAddr::parse("udp://:8126"),
            Ok(ListenAddr::Udp("0.0.0.0:8126".into()))
        );
        assert_eq!(
            ListenAddr::parse_host_port(":8128"),
            Ok("0.0.0.0:8128".to_string())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
