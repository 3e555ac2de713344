//! Builds the metric sinks of `metric_sinks` (SPEC 9): `jsonl`, `statsd` (and
//! Veneur's `prometheus` repeater), `datadog`, `prometheus_remote_write` (and Veneur's
//! `cortex`), `otlp` and `blackhole` each run behind their own queue and thread with
//! retries (`ssfd_export::delivery`). Span sinks
//! (`span_sinks`): `jsonl`, `otlp` (its own queue and thread), `blackhole`. With
//! `features.enable_metric_sink_routing: true` (as Veneur), `metric_sink_routing`
//! decides which sinks get each metric.

use anyhow::Context;
use ssfd_config::Config;
use ssfd_engine::MetricSink;
use ssfd_export::delivery::{Blackhole, Deliver, QueuedSink, RetryPolicy};
use ssfd_export::routing::Router;
use std::path::Path;
use std::sync::Arc;

use ssfd_config::base64;

/// The routing table, when Veneur's feature flag turns it on; its warnings are logged.
pub fn router(config: &Config) -> anyhow::Result<Option<Arc<Router>>> {
    let (router, warnings) = router_with_warnings(config)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    Ok(router)
}

/// [`router`], with what is wrong but not fatal in the routing configuration returned
/// as text (`check-config` prints it; `serve` logs it).
pub fn router_with_warnings(config: &Config) -> anyhow::Result<(Option<Arc<Router>>, Vec<String>)> {
    let enabled = config
        .features
        .get("enable_metric_sink_routing")
        .and_then(serde_yaml::Value::as_bool)
        .unwrap_or(false);
    if config.metric_sink_routing.is_null() {
        return Ok((None, Vec::new()));
    }
    if !enabled {
        let warning = "metric_sink_routing is set but features.enable_metric_sink_routing is \
                       not true: every sink gets every metric (as Veneur)";
        return Ok((None, vec![warning.to_string()]));
    }
    let router = Router::from_yaml(&config.metric_sink_routing).map_err(anyhow::Error::msg)?;
    let warnings = router
        .named_sinks()
        .into_iter()
        .filter(|name| !config.metric_sinks.iter().any(|s| &s.name == name))
        .map(|name| {
            format!("metric_sink_routing names a sink that metric_sinks does not have: {name}")
        })
        .collect();
    Ok((Some(Arc::new(router)), warnings))
}

/// Metric sink kinds ssfd builds (Veneur's `prometheus` and `cortex` included).
const METRIC_SINK_KINDS: &[&str] = &[
    "jsonl",
    "statsd",
    "prometheus",
    "datadog",
    "prometheus_remote_write",
    "cortex",
    "blackhole",
    "otlp",
];

/// Span sink kinds ssfd builds.
const SPAN_SINK_KINDS: &[&str] = &["jsonl", "otlp", "blackhole"];

/// One warning per configured sink whose kind ssfd does not implement (a Veneur
/// config's `signalfx`, `kafka`, ...): `serve` logs them, `check-config` prints them.
pub fn unimplemented_kinds(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (list, sinks, kinds) in [
        ("metric_sinks", &config.metric_sinks, METRIC_SINK_KINDS),
        ("span_sinks", &config.span_sinks, SPAN_SINK_KINDS),
    ] {
        for sink in sinks {
            if !kinds.contains(&sink.kind.as_str()) {
                warnings.push(format!(
                    "{list}: sink `{}` of kind `{}` is not implemented by ssfd and is ignored",
                    sink.label(),
                    sink.kind
                ));
            }
        }
    }
    warnings
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
        let name = sink.label().to_string();
        let delivered: Box<dyn Deliver> = match sink.kind.as_str() {
            "jsonl" => {
                let path = sink.required("path").map_err(anyhow::Error::msg)?;
                let jsonl = ssfd_export::jsonl::JsonlSink::open(&name, Path::new(path), hostname)
                    .with_context(|| format!("cannot open jsonl sink file {path}"))?;
                // written on its own thread like the network sinks; routed there
                Box::new(ssfd_export::delivery::Local::new("jsonl", Box::new(jsonl)))
            }
            "statsd" | "prometheus" => {
                // Veneur's `prometheus` sink is a statsd repeater: repeater_address + network_type
                let address = match sink.kind.as_str() {
                    "statsd" => sink.required("address").map(String::from),
                    _ => sink.required("repeater_address").map(|a| {
                        let network = sink.text("network_type").unwrap_or("udp");
                        format!("{network}://{a}")
                    }),
                }
                .map_err(anyhow::Error::msg)?;
                Box::new(
                    ssfd_export::statsd::StatsdSink::new(&name, &address)
                        .with_context(|| format!("metric sink `{name}`"))?,
                )
            }
            "datadog" => {
                let api_key = sink.required("api_key").map_err(anyhow::Error::msg)?;
                let api_hostname = sink
                    .text("api_hostname")
                    .unwrap_or("https://app.datadoghq.com");
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
                let url = sink.required("url").map_err(anyhow::Error::msg)?;
                let mut headers = sink.pairs("headers").map_err(anyhow::Error::msg)?;
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
                if let Some(file) = sink.text("bearer_token_file") {
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
                    sink.pairs("external_labels").map_err(anyhow::Error::msg)?,
                    expiry,
                ))
            }
            "blackhole" => Box::new(Blackhole),
            "otlp" => {
                let endpoint = sink.required("endpoint").map_err(anyhow::Error::msg)?;
                Box::new(ssfd_export::otlp::OtlpMetrics::new(endpoint, hostname))
            }
            // warned about once by `unimplemented_kinds`
            _ => continue,
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
            let logs = ssfd_query::embedded_logs(&span);
            let mut json = ssfd_query::span_json(&span, Vec::new(), &logs);
            if let Some(object) = json.as_object_mut() {
                object.remove("children");
                let trace_id = ssfd_query::TraceId::from_parts(span.trace_id_high, span.trace_id);
                object.insert("trace_id".into(), trace_id.to_string().into());
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
        let takers: Vec<&Arc<dyn ssfd_engine::SpanSink>> =
            self.0.iter().filter(|sink| sink.takes_logs()).collect();
        if let Some((last, others)) = takers.split_last() {
            for sink in others {
                sink.append_logs(records.clone());
            }
            last.append_logs(records);
        }
    }

    fn append_alone(&self, records: &[ssfd_engine::LogRecord]) {
        for sink in &self.0 {
            sink.append_alone(records);
        }
    }

    fn takes_logs(&self) -> bool {
        self.0.iter().any(|sink| sink.takes_logs())
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
                let path = sink.required("path").map_err(anyhow::Error::msg)?;
                out.push(Arc::new(JsonlSpans::open(Path::new(path)).with_context(
                    || format!("cannot open jsonl span sink file {path}"),
                )?));
            }
            "otlp" => {
                let endpoint = sink.required("endpoint").map_err(anyhow::Error::msg)?;
                let name = sink.label();
                out.push(Arc::new(ssfd_export::otlp::OtlpSpans::start(
                    name,
                    endpoint,
                    RetryPolicy {
                        shutdown_timeout: config.shutdown_timeout(),
                        ..RetryPolicy::default()
                    },
                )));
            }
            // other kinds: warned about once by `unimplemented_kinds`
            _ => {}
        }
    }
    Ok(out)
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

    async fn logs(&self, records: Vec<ssfd_wire::ssfd::v1::LogRecord>) -> Result<(), String> {
        self.0.route_logs(records).await
    }
}

/// Starts the proxy's router from the `proxy` section.
pub fn proxy(config: &Config) -> anyhow::Result<Arc<ssfd_export::proxy::Proxy>> {
    let settings = config
        .proxy_settings()
        .map_err(|m| anyhow::anyhow!("proxy: {m}"))?;
    Ok(ssfd_export::proxy::Proxy::start(
        &settings.destinations,
        &settings.dns_names,
        settings.resolve_interval,
        settings.ignore_tags,
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
