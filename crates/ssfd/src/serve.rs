//! `ssfd serve`: binds every listener, announces them on standard error, then serves
//! until SIGTERM or SIGINT, when intake stops and the workers drain.

use anyhow::Context as _;
use ssfd_config::Config;
use ssfd_engine::{Aggregate, FlushConfig, MetricSink, Percentile, Pipeline, PipelineConfig};
use ssfd_export::prometheus::PrometheusSink;
use std::path::Path;

/// The configuration and its warnings (logged once the log is set up).
fn load(path: Option<&Path>) -> anyhow::Result<(Config, Vec<String>)> {
    let Some(path) = path else {
        // the embedded default, with the environment's SSFD_* overrides: a bad one is
        // an error naming it, not a panic
        let loaded = Config::parse(ssfd_config::EMBEDDED_DEFAULT)
            .map_err(|e| anyhow::anyhow!("embedded default with the environment: {e}"))?;
        return Ok((loaded.config, loaded.warnings));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let loaded = Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((loaded.config, loaded.warnings))
}

/// StatsD and DogStatsD clients send to 8125 unless told otherwise; the embedded
/// default listens there too when the port is free (SPEC 9), so a client left on its
/// default loses nothing.
const CLIENT_DEFAULT_STATSD: &str = "udp://127.0.0.1:8125";

/// Adds [`CLIENT_DEFAULT_STATSD`] to the embedded default's statsd listeners when no
/// `SSFD_STATSD_LISTEN_ADDRESSES` chose them and the port is free; a warning if not.
fn add_client_default_port(config: &mut Config) {
    if std::env::var_os("SSFD_STATSD_LISTEN_ADDRESSES").is_some()
        || config
            .statsd_listen_addresses
            .iter()
            .any(|url| url == CLIENT_DEFAULT_STATSD)
    {
        return;
    }
    match std::net::UdpSocket::bind("127.0.0.1:8125") {
        Ok(probe) => {
            drop(probe);
            config
                .statsd_listen_addresses
                .push(CLIENT_DEFAULT_STATSD.to_string());
        }
        Err(error) => tracing::warn!(
            %error,
            "statsd clients' default port udp://127.0.0.1:8125 is taken; listening for statsd on {} only",
            config.statsd_listen_addresses.join(", ")
        ),
    }
}

/// Where this server sends upstream, for the start-up line.
fn upstream(config: &Config) -> String {
    if !config.forward_address.is_empty() {
        return config.forward_address.clone();
    }
    if config.role == "proxy"
        && let Ok(settings) = config.proxy_settings()
    {
        return settings
            .destinations
            .iter()
            .chain(&settings.dns_names)
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
    }
    "none".into()
}

/// `ssfd serve`: errors come back with every secret of the config replaced.
pub fn run(path: Option<&Path>, log_format: Option<crate::logging::Format>) -> anyhow::Result<()> {
    let format = crate::logging::Format::resolve(log_format)?;
    let filter = crate::logging::filter()?;
    let (mut config, warnings) = load(path)?;
    let redactor = std::sync::Arc::new(ssfd_config::Redactor::new(config.secrets()));
    crate::logging::init(format, filter, std::sync::Arc::clone(&redactor));
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    for warning in crate::sinks::unimplemented_kinds(&config) {
        tracing::warn!("{warning}");
    }
    if path.is_none() {
        add_client_default_port(&mut config);
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.map_or_else(|| "embedded default".to_string(), |p| p.display().to_string()),
        data_dir = %config.data_dir,
        role = %config.role,
        upstream = %upstream(&config),
        "ssfd starting"
    );
    run_config(config).map_err(|error| anyhow::anyhow!("{}", redactor.scrub(&format!("{error:#}"))))
}

fn run_config(config: Config) -> anyhow::Result<()> {
    let tls = config.tls_pem().map_err(anyhow::Error::msg)?;
    if let Some(ca) = tls.as_ref().and_then(|t| t.ca.as_ref()) {
        // forwarding and the proxy check their peers against the CA (mutual with a key)
        let identity = tls
            .as_ref()
            .and_then(|t| t.identity.as_ref())
            .map(|(cert, key)| (&cert[..], &key[..]));
        ssfd_export::delivery::set_peer_tls(ca, identity);
    }
    // memory_limit (SPEC 7): intake sheds load near it
    ssfd_engine::memory::govern(config.memory_limit);
    // a nearly full data_dir: durable intake refuses, the stores write nothing
    ssfd_engine::disk::watch(Path::new(&config.data_dir));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pipeline_config = PipelineConfig {
        metric_workers: if config.num_workers == 0 {
            cores
        } else {
            config.num_workers
        },
        span_workers: if config.num_span_workers == 0 {
            1
        } else {
            config.num_span_workers
        },
        metric_queue_batches: 1024,
        span_queue_batches: config.span_channel_capacity.max(1),
        stall_per_batch: std::env::var("SSFD_TEST_WORKER_STALL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis),
        interval: config.interval(),
        max_series: usize::try_from(config.max_series).unwrap_or(usize::MAX),
    };
    let flush_config = FlushConfig {
        percentiles: Percentile::all(&config.percentiles),
        aggregates: {
            let mut aggregates: Vec<Aggregate> = Vec::new();
            for aggregate in config.aggregates.iter().filter_map(|a| Aggregate::parse(a)) {
                if !aggregates.contains(&aggregate) {
                    aggregates.push(aggregate);
                }
            }
            aggregates
        },
        local: !config.forward_address.is_empty(),
        remainders: Default::default(),
    };
    let expiry = ssfd_config::parse_duration(&config.prometheus_expiry)
        .unwrap_or(std::time::Duration::from_secs(300));
    let prometheus = PrometheusSink::new(expiry);
    let hostname = hostname(&config.hostname);
    let mut sinks: Vec<Box<dyn MetricSink>> = vec![Box::new(prometheus.clone())];
    if flush_config.local {
        sinks.push(Box::new(ssfd_export::delivery::QueuedSink::start(
            &config.forward_address,
            Box::new(ssfd_export::forward::ForwardSink::new(
                &config.forward_address,
            )),
            ssfd_export::delivery::RetryPolicy::forward(config.shutdown_timeout()),
            None,
            config.shutdown_timeout(),
        )));
    }
    sinks.extend(crate::sinks::metric_sinks(&config, &hostname, expiry)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .thread_name("ssfd-io")
        .enable_all()
        .build()?;
    let shutdown_timeout = config.shutdown_timeout();
    let self_stats = match config.stats_address.as_str() {
        "" => None,
        _ => {
            let target = config.stats_target().map_err(anyhow::Error::msg)?;
            Some(
                crate::selfstats::SelfStats::start(target, config.interval())
                    .context("cannot open a socket for stats_address")?,
            )
        }
    };
    runtime.block_on(async move {
        // one cap on span names per service for the RED metrics and the OTel ones
        let span_names = std::sync::Arc::new(ssfd_engine::span_metrics::SpanNameCap::new(
            ssfd_ingest::SPAN_NAMES_PER_SERVICE,
            expiry,
        ));
        let span_metrics = std::sync::Arc::new(
            ssfd_engine::span_metrics::SpanMetricsRegistry::new(
                ssfd_ingest::SPAN_NAMES_PER_SERVICE,
            )
            .with_expiry(expiry)
            .with_name_cap(std::sync::Arc::clone(&span_names)),
        );
        let slos = std::sync::Arc::new(
            ssfd_engine::slo::SloRegistry::new(
                config
                    .slos
                    .iter()
                    .map(|slo| ssfd_engine::slo::Slo {
                        name: slo.name.clone(),
                        service: slo.service.clone(),
                        span_name: slo.span_name.clone(),
                        objective: slo.objective,
                        latency_threshold: slo
                            .latency_threshold
                            .as_deref()
                            .and_then(|t| ssfd_config::parse_duration(t).ok()),
                    })
                    .collect(),
            )
            .with_extend_tags(&config.extend_tags),
        );
        // storage.max_bytes: 0 keeps no spans (the front-door benchmarks use it)
        let store = match config.storage.max_bytes {
            0 => None,
            max_bytes => Some(std::sync::Arc::new(
                ssfd_store::Store::open(
                    Path::new(&config.data_dir),
                    max_bytes,
                    ssfd_config::parse_duration(&config.retention).map_err(anyhow::Error::msg)?,
                )
                .with_context(|| {
                    format!("cannot open the stores in data_dir {}", config.data_dir)
                })?,
            )),
        };
        let mut span_sinks = crate::sinks::span_sinks(&config)?;
        if !config.forward_address.is_empty() {
            // a local forwards every valid span upstream (SPEC 1)
            span_sinks.push(std::sync::Arc::new(
                ssfd_export::forward::ForwardSpans::start(
                    &config.forward_address,
                    ssfd_export::delivery::RetryPolicy::forward(config.shutdown_timeout()),
                ),
            ));
        }
        if let Some(store) = &store {
            span_sinks.insert(
                0,
                store.clone() as std::sync::Arc<dyn ssfd_engine::SpanSink>,
            );
        }
        let span_sink: Option<std::sync::Arc<dyn ssfd_engine::SpanSink>> = match span_sinks.len() {
            0 => None,
            1 => span_sinks.pop(),
            _ => Some(std::sync::Arc::new(crate::sinks::FanOut(span_sinks))),
        };
        let derived = ssfd_engine::Derived {
            span_sink,
            span_metrics: std::sync::Arc::clone(&span_metrics),
            slos: std::sync::Arc::clone(&slos),
            events: std::sync::Arc::default(),
        };
        let (pipeline, workers) =
            Pipeline::start_with(pipeline_config, flush_config, sinks, derived.clone());
        let mut bound = match ssfd_ingest::bind(&config).await {
            Ok(bound) => bound,
            // the clients' default port, found free a moment ago, was taken since: one
            // warning, and the rest is served (SPEC 9)
            Err(error)
                if config
                    .statsd_listen_addresses
                    .iter()
                    .any(|url| url == CLIENT_DEFAULT_STATSD)
                    && error.to_string().contains(CLIENT_DEFAULT_STATSD) =>
            {
                tracing::warn!(
                    %error,
                    "statsd clients' default port udp://127.0.0.1:8125 was taken; going on without it"
                );
                let mut without = config.clone();
                without
                    .statsd_listen_addresses
                    .retain(|url| url != CLIENT_DEFAULT_STATSD);
                ssfd_ingest::bind(&without).await?
            }
            Err(error) => return Err(error.into()),
        };
        bound.share_span_names(span_names);
        bound.set_event_queue(derived.events);
        if let Some(pem) = tls.as_ref().filter(|t| t.identity.is_some()) {
            bound.set_tls(pem)?;
        }
        // the write-ahead log (SPEC 7): what a crash left is replayed before intake opens
        let wal = if config.wal && config.role != "proxy" {
            let dir = Path::new(&config.data_dir).join("wal");
            let (wal, left) = ssfd_ingest::wal::Wal::open(&dir)
                .with_context(|| format!("cannot open the write-ahead log in {}", dir.display()))?;
            pipeline
                .gate()
                .set_log(std::sync::Arc::clone(&wal) as std::sync::Arc<dyn ssfd_engine::Log>);
            if !left.is_empty() {
                let replayed = tokio::task::block_in_place(|| bound.replay(&pipeline, &left))
                    .with_context(|| {
                        format!("cannot replay the write-ahead log in {}", dir.display())
                    })?;
                tracing::info!(
                    segments = replayed.segments,
                    records = replayed.records,
                    spans_only = replayed.spans_only,
                    torn = replayed.torn,
                    "replayed the write-ahead log"
                );
            }
            bound.set_wal(std::sync::Arc::clone(&wal));
            Some(wal)
        } else {
            None
        };
        let query_timeout = config.query_timeout();
        let bearer_token = match config.http_bearer_token_file.as_str() {
            "" => None,
            file => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read http_bearer_token_file {file}"))?
                    .trim()
                    .to_string(),
            )
            .filter(|token| !token.is_empty()),
        };
        let proxy = if config.role == "proxy" {
            let proxy = crate::sinks::proxy(&config)?;
            // the globals' reads want the fleet's bearer token, as the proxy's own do
            proxy.set_read_token(bearer_token.clone());
            bound.set_proxy(std::sync::Arc::new(crate::sinks::ProxyRoute(
                std::sync::Arc::clone(&proxy),
            )));
            Some(proxy)
        } else {
            None
        };
        // one budget for the memory of every read of this node (SPEC 7)
        let budget = std::sync::Arc::new(crate::http::QueryBudget::new(
            ssfd_engine::memory::limit_bytes(),
        ));
        if let Some(store) = &store {
            bound.set_trace_lookup(std::sync::Arc::new(crate::http::PeerReads::new(
                std::sync::Arc::clone(&prometheus.exposition),
                std::sync::Arc::clone(&span_metrics),
                std::sync::Arc::clone(&slos),
                std::sync::Arc::clone(store),
                std::sync::Arc::clone(&budget),
                bearer_token.as_deref(),
            )));
        }
        let http = tokio::net::TcpListener::bind(
            ssfd_config::ListenAddr::parse_host_port(&config.http_address)
                .map_err(anyhow::Error::msg)?,
        )
        .await
        .with_context(|| format!("cannot listen on http_address {}", config.http_address))?;
        // the handlers are in place before anyone is told the server listens, so a
        // SIGTERM sent on the first "listening" line still shuts down gracefully
        let signals = Signals::install()?;
        for announcement in &bound.announcements {
            eprintln!("listening {} {}", announcement.kind, announcement.url);
        }
        eprintln!("listening http http://{}", http.local_addr()?);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = bound.start(pipeline.clone(), stopped.clone()).await?;
        let http_stopped = stopped.clone();
        let http_store = store.clone();
        let http_max = match config.http_max_connections {
            0 => crate::connections::default_max(),
            max => max,
        };
        let http_server = tokio::spawn(crate::connections::serve(
            http,
            crate::http::router(
                prometheus.exposition,
                span_metrics,
                slos,
                http_store,
                crate::http::Fleet {
                    proxy,
                    query_timeout,
                },
                budget,
                bearer_token,
            ),
            http_max,
            http_stopped,
        ));
        signals.wait().await;
        tracing::info!("shutting down: intake stops, workers drain, the last interval is flushed");
        let flushes_before = ssfd_telemetry::flushes();
        let sinks_before = sink_totals();
        // every sink and queue delivers within shutdown_timeout of the signal, together
        ssfd_export::delivery::begin_shutdown(shutdown_timeout);
        let _ = stop.send(true);
        running.stop(shutdown_timeout).await;
        drop(pipeline);
        tokio::task::spawn_blocking(move || workers.join()).await?;
        if let Some(store) = &store
            && let Err(error) = store.sync()
        {
            tracing::warn!(%error, "span store sync at shutdown failed");
        }
        // every interval is delivered: the log keeps only what a sink failed to take
        if let Some(wal) = &wal {
            wal.close();
        }
        let _ = http_server.await;
        if let Some(stats) = &self_stats {
            stats.send();
        }
        let sinks_after = sink_totals();
        let final_flush = ssfd_telemetry::flushes() > flushes_before;
        tracing::info!(
            final_flush,
            series = if final_flush {
                ssfd_telemetry::series()
            } else {
                0
            },
            sent_since_signal = sinks_after.0.saturating_sub(sinks_before.0),
            dropped_since_signal = sinks_after.1.saturating_sub(sinks_before.1),
            dropped_at_shutdown = ssfd_telemetry::dropped_for(ssfd_telemetry::DropReason::Shutdown),
            "ssfd stopped"
        );
        anyhow::Ok(())
    })
}

/// Items every sink and forwarder has sent and dropped so far, for the stop line.
fn sink_totals() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    ssfd_telemetry::sinks()
        .iter()
        .fold((0, 0), |(sent, dropped), (_, _, counters)| {
            (
                sent + counters.sent.load(Relaxed),
                dropped + counters.dropped.load(Relaxed),
            )
        })
}

/// `hostname` from the config, else the system's.
fn hostname(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
