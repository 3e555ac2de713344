//! Builds the metric sinks of `metric_sinks` (SPEC 9): `jsonl`, `statsd` (and
//! Veneur's `prometheus` repeater), `datadog`, `prometheus_remote_write` (and Veneur's
//! `cortex`), `otlp` and `blackhole` each run behind their own queue and thread with
//! retries (`ssfd_export::delivery`). Span sinks
//! (`span_sinks`): `jsonl`, `otlp` (its own queue and thread), `blackhole`. With
//! `features.enable_metric_sink_routing: true` (as Veneur), `metric_sink_routing`
//! decides which sinks get each metric.

use anyhow::{Context, bail};
use ssfd_config::{Config, SinkConfig};
use ssfd_engine::MetricSink;
use ssfd_export::delivery::{Blackhole, Deliver, QueuedSink, RetryPolicy};
use ssfd_export::routing::Router;
use std::path::Path;
use std::sync::Arc;

fn text<'a>(sink: &'a SinkConfig, key: &str) -> Option<&'a str> {
    sink.config.get(key).and_then(|v| v.as_str())
}

fn pairs(sink: &SinkConfig, key: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some(map) = sink.config.get(key) else {
        return Ok(Vec::new());
    };
    let map = map
        .as_mapping()
        .with_context(|| format!("sink `{}`: config.{key} must be a map", sink.name))?;
    map.iter()
        .map(|(k, v)| {
            let text = |v: &serde_yaml::Value| match v {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            Ok((
                text(k).with_context(|| format!("sink `{}`: config.{key} key", sink.name))?,
                text(v).with_context(|| format!("sink `{}`: config.{key} value", sink.name))?,
            ))
        })
        .collect()
}

/// RFC 4648 base64, for `basic_auth`.
fn base64(bytes: &[u8]) -> String {
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

/// The routing table, when Veneur's feature flag turns it on.
pub fn router(config: &Config) -> anyhow::Result<Option<Arc<Router>>> {
    let enabled = config
        .features
        .get("enable_metric_sink_routing")
        .and_then(serde_yaml::Value::as_bool)
        .unwrap_or(false);
    if config.metric_sink_routing.is_null() {
        return Ok(None);
    }
    if !enabled {
        tracing::warn!(
            "metric_sink_routing is set but features.enable_metric_sink_routing is not true: \
             every sink gets every metric (as Veneur)"
        );
        return Ok(None);
    }
    let router = Router::from_yaml(&config.metric_sink_routing).map_err(anyhow::Error::msg)?;
    for name in router.named_sinks() {
        if !config.metric_sinks.iter().any(|s| s.name == name) {
            tracing::warn!(
                sink = name,
                "metric_sink_routing names a sink that metric_sinks does not have"
            );
        }
    }
    Ok(Some(Arc::new(router)))
}

/// The configured metric sinks.
pub fn metric_sinks(
    config: &Config,
    hostname: &str,
    expiry: std::time::Duration,
) -> anyhow::Result<Vec<Box<dyn MetricSink>>> {
    let router = router(config)?;
    let shutdown_timeout = config.shutdown_timeout();
    let mut sinks: Vec<Box<dyn MetricSink>> = Vec::new();
    for sink in &config.metric_sinks {
        let name = if sink.name.is_empty() {
            sink.kind.clone()
        } else {
            sink.name.clone()
        };
        let delivered: Box<dyn Deliver> = match sink.kind.as_str() {
            "jsonl" => {
                let path = text(sink, "path")
                    .with_context(|| format!("metric sink `{name}` (jsonl) needs config.path"))?;
                let jsonl = ssfd_export::jsonl::JsonlSink::open(&name, Path::new(path), hostname)
                    .with_context(|| format!("cannot open jsonl sink file {path}"))?;
                // written on its own thread like the network sinks; routed there
                Box::new(ssfd_export::delivery::Local::new("jsonl", Box::new(jsonl)))
            }
            "statsd" | "prometheus" => {
                // Veneur's `prometheus` sink is a statsd repeater: repeater_address + network_type
                let address = match sink.kind.as_str() {
                    "statsd" => text(sink, "address").map(String::from),
                    _ => text(sink, "repeater_address").map(|a| {
                        let network = text(sink, "network_type").unwrap_or("udp");
                        format!("{network}://{a}")
                    }),
                };
                let address = address.with_context(|| {
                    format!(
                        "metric sink `{name}` ({}) needs config.address (udp:// or tcp://)",
                        sink.kind
                    )
                })?;
                Box::new(
                    ssfd_export::statsd::StatsdSink::new(&name, &address)
                        .with_context(|| format!("metric sink `{name}`"))?,
                )
            }
            "datadog" => {
                let api_key = text(sink, "api_key").with_context(|| {
                    format!("metric sink `{name}` (datadog) needs config.api_key")
                })?;
                let api_hostname =
                    text(sink, "api_hostname").unwrap_or("https://app.datadoghq.com");
                let max = sink
                    .config
                    .get("flush_max_per_body")
                    .and_then(serde_yaml::Value::as_u64)
                    .unwrap_or(25_000) as usize;
                Box::new(ssfd_export::datadog::DatadogSink::new(
                    api_key,
                    api_hostname,
                    hostname,
                    config.interval(),
                    max,
                ))
            }
            "prometheus_remote_write" | "cortex" => {
                let url = text(sink, "url").with_context(|| {
                    format!("metric sink `{name}` ({}) needs config.url", sink.kind)
                })?;
                let mut headers = pairs(sink, "headers")?;
                if let Some(auth) = sink.config.get("basic_auth") {
                    let field = |key: &str| {
                        auth.get(key)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let credentials = format!("{}:{}", field("username"), field("password"));
                    headers.push((
                        "Authorization".into(),
                        format!("Basic {}", base64(credentials.as_bytes())),
                    ));
                }
                if let Some(file) = text(sink, "bearer_token_file") {
                    let token = std::fs::read_to_string(file).with_context(|| {
                        format!("metric sink `{name}`: bearer_token_file {file}")
                    })?;
                    headers.push(("Authorization".into(), format!("Bearer {}", token.trim())));
                }
                let add_host = sink
                    .config
                    .get("add_host_label")
                    .and_then(serde_yaml::Value::as_bool)
                    .unwrap_or(true);
                Box::new(ssfd_export::remote_write::RemoteWriteSink::new(
                    url,
                    headers,
                    add_host.then_some(hostname),
                    pairs(sink, "external_labels")?,
                    expiry,
                ))
            }
            "blackhole" => Box::new(Blackhole),
            "otlp" => {
                let endpoint = text(sink, "endpoint").with_context(|| {
                    format!("metric sink `{name}` (otlp) needs config.endpoint (host:port)")
                })?;
                Box::new(ssfd_export::otlp::OtlpMetrics::new(endpoint, hostname))
            }
            other => {
                tracing::warn!(kind = other, name = %name, "metric sink kind is not implemented; ignored");
                continue;
            }
        };
        let mut policy = RetryPolicy::default();
        if let Some(retries) = sink
            .config
            .get("max_retries")
            .and_then(serde_yaml::Value::as_u64)
        {
            policy.max_retries = retries as u32;
        }
        if let Some(queue) = sink.config.get("queue").and_then(serde_yaml::Value::as_u64) {
            policy.queue = (queue as usize).max(1);
        }
        if sinks.iter().any(|s| s.name() == name) {
            bail!("two metric sinks are named `{name}`; give each its own name");
        }
        sinks.push(Box::new(QueuedSink::start(
            &name,
            delivered,
            policy,
            router.clone(),
            shutdown_timeout,
        )));
    }
    Ok(sinks)
}

/// A `jsonl` span sink (SPEC 9): one JSON object per span, SPEC 6's `SPAN` fields
/// without `children`, plus `trace_id`; written by the span workers, flushed when they
/// idle and at exit.
pub struct JsonlSpans {
    file: std::sync::Mutex<std::io::BufWriter<std::fs::File>>,
}

impl JsonlSpans {
    pub fn open(path: &Path) -> std::io::Result<JsonlSpans> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonlSpans {
            file: std::sync::Mutex::new(std::io::BufWriter::new(file)),
        })
    }
}

impl ssfd_engine::SpanSink for JsonlSpans {
    fn append(&self, spans: &ssfd_engine::SpanBatch) {
        use prost::Message;
        use std::io::Write;
        let Ok(mut file) = self.file.lock() else {
            return;
        };
        for (_, bytes) in spans.iter() {
            let Ok(span) = ssfd_wire::ssf::SsfSpan::decode(bytes) else {
                continue;
            };
            let mut json = ssfd_query::span_json(&span, Vec::new());
            if let Some(object) = json.as_object_mut() {
                object.remove("children");
                object.insert("trace_id".into(), span.trace_id.to_string().into());
            }
            if writeln!(file, "{json}").is_err() {
                ssfd_telemetry::dropped(
                    ssfd_telemetry::Stage::Sink,
                    ssfd_telemetry::DropReason::RetryExhausted,
                    1,
                );
            }
        }
    }

    fn tick(&self) {
        use std::io::Write;
        if let Ok(mut file) = self.file.lock() {
            let _ = file.flush();
        }
    }
}

impl Drop for JsonlSpans {
    fn drop(&mut self) {
        use std::io::Write;
        if let Ok(mut file) = self.file.lock() {
            let _ = file.flush();
        }
    }
}

/// Several span sinks as one (the stores and `span_sinks`).
pub struct FanOut(pub Vec<Arc<dyn ssfd_engine::SpanSink>>);

impl ssfd_engine::SpanSink for FanOut {
    fn append(&self, spans: &ssfd_engine::SpanBatch) {
        for sink in &self.0 {
            sink.append(spans);
        }
    }

    fn append_logs(&self, records: Vec<ssfd_engine::LogRecord>) {
        if let Some((last, others)) = self.0.split_last() {
            for sink in others {
                sink.append_logs(records.clone());
            }
            last.append_logs(records);
        }
    }

    fn tick(&self) {
        for sink in &self.0 {
            sink.tick();
        }
    }

    fn barrier(&self, token: ssfd_engine::Token) {
        for sink in &self.0 {
            sink.barrier(std::sync::Arc::clone(&token));
        }
    }
}

/// The configured span sinks (`span_sinks`).
pub fn span_sinks(config: &Config) -> anyhow::Result<Vec<Arc<dyn ssfd_engine::SpanSink>>> {
    let mut out: Vec<Arc<dyn ssfd_engine::SpanSink>> = Vec::new();
    for sink in &config.span_sinks {
        match sink.kind.as_str() {
            "jsonl" => {
                let path = text(sink, "path").with_context(|| {
                    format!("span sink `{}` (jsonl) needs config.path", sink.name)
                })?;
                out.push(Arc::new(JsonlSpans::open(Path::new(path)).with_context(
                    || format!("cannot open jsonl span sink file {path}"),
                )?));
            }
            "otlp" => {
                let endpoint = text(sink, "endpoint").with_context(|| {
                    format!(
                        "span sink `{}` (otlp) needs config.endpoint (host:port)",
                        sink.name
                    )
                })?;
                let name = if sink.name.is_empty() {
                    "otlp"
                } else {
                    &sink.name
                };
                out.push(Arc::new(ssfd_export::otlp::OtlpSpans::start(
                    name,
                    endpoint,
                    RetryPolicy {
                        shutdown_timeout: config.shutdown_timeout(),
                        ..RetryPolicy::default()
                    },
                )));
            }
            "blackhole" => {}
            other => {
                tracing::warn!(kind = other, name = %sink.name, "span sink kind is not implemented; ignored")
            }
        }
    }
    Ok(out)
}

/// A global's span store, as `ssfd.v1.Query/GetTrace` reads it.
pub struct StoreLookup(pub Arc<ssfd_store::Store>);

impl ssfd_ingest::grpc::TraceLookup for StoreLookup {
    fn trace(&self, trace_id: i64) -> Result<Vec<Vec<u8>>, String> {
        self.0.spans.trace(trace_id).map_err(|e| e.to_string())
    }
}

/// The proxy role's router, as ingest sees it.
pub struct ProxyRoute(pub Arc<ssfd_export::proxy::Proxy>);

#[tonic::async_trait]
impl ssfd_ingest::grpc::ForwardRoute for ProxyRoute {
    async fn metrics(&self, metrics: Vec<ssfd_wire::metricpb::Metric>) -> Result<(), String> {
        self.0.route_metrics(metrics).await
    }

    async fn spans(&self, spans: Vec<ssfd_wire::ssf::SsfSpan>) -> Result<(), String> {
        self.0.route_spans(spans).await
    }
}

/// Starts the proxy's router from `proxy.destinations` and `proxy.ignore_tags`.
pub fn proxy(config: &Config) -> anyhow::Result<Arc<ssfd_export::proxy::Proxy>> {
    let list = |key: &str| -> Vec<String> {
        config
            .proxy
            .get(key)
            .and_then(serde_yaml::Value::as_sequence)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let destinations = list("destinations");
    let dns_names = list("dns_names");
    if destinations.is_empty() && dns_names.is_empty() {
        bail!(
            "role proxy needs proxy.destinations or proxy.dns_names (host:port of the globals' gRPC)"
        );
    }
    let resolve_interval = match config
        .proxy
        .get("resolve_interval")
        .and_then(|v| v.as_str())
    {
        Some(text) => ssfd_config::parse_duration(text)
            .map_err(|e| anyhow::anyhow!("proxy.resolve_interval: {e}"))?,
        None => std::time::Duration::from_secs(30),
    };
    Ok(ssfd_export::proxy::Proxy::start(
        &destinations,
        &dns_names,
        resolve_interval.max(std::time::Duration::from_millis(100)),
        list("ignore_tags"),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(super::base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(super::base64(b"a"), "YQ==");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b""), "");
    }
}
