//! ssfd's front door: every way data enters (SPEC 2, 3.1-3.3). Listeners decode and
//! validate, and a per-thread [`handoff::Handoff`] hands items to the pipeline through
//! bounded queues. Ingest never aggregates and never stores.
//!
//! [`bind`] opens every configured socket first, so the caller can announce the real
//! addresses before anything is served; [`Bound::start`] then runs them.

pub mod datagram;
pub mod grpc;
pub mod handoff;
pub mod otlp;
pub mod room;
pub mod stream;
pub mod wal;

/// Every gRPC service takes gzip-compressed requests (clients choose; answers stay
/// uncompressed).
const GZIP: tonic::codec::CompressionEncoding = tonic::codec::CompressionEncoding::Gzip;

use datagram::{Payload, ReaderContext};
use handoff::HandoffConfig;
use ssfd_config::{Config, ListenAddr};
use ssfd_engine::Pipeline;
use ssfd_telemetry::Protocol;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use stream::{StreamContext, StreamPayload};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One bound listener, as announced on standard error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// statsd, ssf or grpc.
    pub kind: &'static str,
    /// The URL with the real port.
    pub url: String,
}

enum Socket {
    Datagram {
        payload: Payload,
        protocol: Protocol,
        sockets: Vec<socket2::Socket>,
        max: usize,
    },
    Tcp {
        payload: StreamPayload,
        listener: TcpListener,
    },
    Unix {
        payload: StreamPayload,
        listener: UnixListener,
    },
    Grpc {
        listener: TcpListener,
    },
    OtlpGrpc {
        listener: TcpListener,
    },
    OtlpHttp {
        listener: TcpListener,
    },
}

/// Every ingest socket, bound but not yet served.
pub struct Bound {
    sockets: Vec<Socket>,
    pub announcements: Vec<Announcement>,
    handoff: HandoffConfig,
    proxy: Option<Arc<dyn grpc::ForwardRoute>>,
    traces: Option<Arc<dyn grpc::TraceLookup>>,
    durability: wal::Durability,
    /// TLS (mutual with a CA) for every gRPC listener.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// `grpc_wait`: how long a unary call waits for room in a full queue.
    grpc_wait: std::time::Duration,
}

/// The running listeners.
pub struct Running {
    threads: Vec<JoinHandle<()>>,
    tasks: JoinSet<()>,
    stop_threads: Arc<AtomicBool>,
}

impl Running {
    /// Stops intake and waits for every listener to return (after `shutdown` was sent),
    /// taking at most half of `shutdown_timeout` (and at most 2 s) for calls in flight,
    /// so the flush after it still has time within the same deadline.
    pub async fn stop(mut self, shutdown_timeout: std::time::Duration) {
        self.stop_threads
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // servers finish what is in flight; a client that keeps its connection open
        // (another ssfd's channel) must not hold shutdown, so after a grace period the
        // rest is cut
        let grace = STOP_GRACE.min(shutdown_timeout / 2);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("listeners still had connections after {grace:?}; closing them");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Serves a tonic router on `listener` until `shutdown` changes.
fn serve_grpc(
    tasks: &mut JoinSet<()>,
    router: tonic::transport::server::Router,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) {
    // tonic sets TCP_NODELAY only on listeners it binds itself: without it a small
    // answer (a unary call's, a proxy's read) waits out Nagle and the peer's delayed
    // ACK, about 40 ms
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |accepted| {
            accepted.inspect(|stream| {
                let _ = stream.set_nodelay(true);
            })
        },
    );
    tasks.spawn(async move {
        let signal = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, signal).await {
            tracing::error!(%error, "{what} server failed");
        }
    });
}

/// How long stopping waits for listeners to finish what is in flight.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn with_context(error: io::Error, what: &str) -> io::Error {
    io::Error::new(error.kind(), format!("cannot listen on {what}: {error}"))
}

async fn bind_unix_stream(path: &str) -> io::Result<UnixListener> {
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let listener = std::os::unix::net::UnixListener::bind_addr(&address)?;
            listener.set_nonblocking(true)?;
            UnixListener::from_std(listener)
        }
        None => {
            if datagram::unix_path_in_use(path, socket2::Type::STREAM) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("unix://{path} is already in use by another process"),
                ));
            }
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path)
        }
    }
}

/// Binds every ingest listener of `config`.
pub async fn bind(config: &Config) -> io::Result<Bound> {
    let mut sockets = Vec::new();
    let mut announcements = Vec::new();
    let readers = config.num_readers.max(1);
    let buffer = config.read_buffer_size_bytes;
    let parse = |url: &str| {
        ListenAddr::parse(url).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))
    };
    // statsd takes udp, tcp and unixgram; SSF takes udp, tcp and unix (streams)
    let families = [
        (
            "statsd",
            &config.statsd_listen_addresses,
            Payload::Statsd,
            StreamPayload::StatsdLines,
            config.metric_max_length,
        ),
        (
            "ssf",
            &config.ssf_listen_addresses,
            Payload::Ssf,
            StreamPayload::SsfFrames,
            config.trace_max_length_bytes,
        ),
    ];
    for (kind, urls, payload, stream_payload, max) in families {
        for url in urls {
            let (announced, socket) = match parse(url)? {
                ListenAddr::Udp(address) => {
                    let bound = datagram::bind_udp(&address, readers, buffer)
                        .map_err(|e| with_context(e, url))?;
                    let local = bound[0].local_addr()?.as_socket().expect("inet address");
                    (
                        format!("udp://{local}"),
                        Socket::Datagram {
                            payload,
                            protocol: Protocol::Udp,
                            sockets: bound,
                            max,
                        },
                    )
                }
                ListenAddr::Tcp(address) => {
                    let listener = TcpListener::bind(&address)
                        .await
                        .map_err(|e| with_context(e, url))?;
                    (
                        format!("tcp://{}", listener.local_addr()?),
                        Socket::Tcp {
                            payload: stream_payload,
                            listener,
                        },
                    )
                }
                ListenAddr::Unixgram(path) if payload == Payload::Statsd => {
                    let socket =
                        datagram::bind_unixgram(&path, buffer).map_err(|e| with_context(e, url))?;
                    let bound = Socket::Datagram {
                        payload,
                        protocol: Protocol::Unixgram,
                        sockets: vec![socket],
                        max,
                    };
                    (format!("unixgram://{path}"), bound)
                }
                ListenAddr::Unix(path) if payload == Payload::Ssf => {
                    let listener = bind_unix_stream(&path)
                        .await
                        .map_err(|e| with_context(e, url))?;
                    (
                        format!("unix://{path}"),
                        Socket::Unix {
                            payload: stream_payload,
                            listener,
                        },
                    )
                }
                _ => {
                    let takes = if payload == Payload::Statsd {
                        "udp, tcp and unixgram"
                    } else {
                        "udp, tcp and unix"
                    };
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{kind}_listen_addresses: `{url}`: {kind} takes {takes}"),
                    ));
                }
            };
            announcements.push(Announcement {
                kind,
                url: announced,
            });
            sockets.push(socket);
        }
    }
    let mut grpc_addresses = Vec::new();
    for url in &config.grpc_listen_addresses {
        match parse(url)? {
            ListenAddr::Tcp(address) => grpc_addresses.push((url.clone(), address)),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("grpc_listen_addresses: `{url}`: gRPC takes tcp only"),
                ));
            }
        }
    }
    if !config.grpc_address.is_empty() {
        let address = ListenAddr::parse_host_port(&config.grpc_address)
            .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        grpc_addresses.push((config.grpc_address.clone(), address));
    }
    for (url, address) in grpc_addresses {
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|e| with_context(e, &url))?;
        announcements.push(Announcement {
            kind: "grpc",
            url: format!("tcp://{}", listener.local_addr()?),
        });
        sockets.push(Socket::Grpc { listener });
    }
    for url in &config.otlp_listen_addresses {
        let listen = ssfd_config::OtlpListen::parse(url).map_err(|m| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("otlp_listen_addresses: {m}"),
            )
        })?;
        let (ssfd_config::OtlpListen::Grpc(address) | ssfd_config::OtlpListen::Http(address)) =
            &listen;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| with_context(e, url))?;
        let announced = match listen {
            ssfd_config::OtlpListen::Grpc(_) => format!("grpc://{}", listener.local_addr()?),
            ssfd_config::OtlpListen::Http(_) => format!("http://{}", listener.local_addr()?),
        };
        sockets.push(match listen {
            ssfd_config::OtlpListen::Grpc(_) => Socket::OtlpGrpc { listener },
            ssfd_config::OtlpListen::Http(_) => Socket::OtlpHttp { listener },
        });
        announcements.push(Announcement {
            kind: "otlp",
            url: announced,
        });
    }
    Ok(Bound {
        sockets,
        announcements,
        proxy: None,
        traces: None,
        durability: wal::Durability::default(),
        tls: None,
        grpc_wait: config.grpc_wait(),
        handoff: HandoffConfig {
            extend_tags: config
                .extend_tags
                .iter()
                .filter(|t| !t.is_empty())
                .cloned()
                .collect(),
            metric_max_length: config.metric_max_length,
            span_metrics: Some(Arc::new(handoff::SpanMetrics::new(
                &config.indicator_span_timer_name,
                &config.objective_span_timer_name,
                SPAN_NAMES_PER_SERVICE,
            ))),
            events: None,
            forwarded: false,
        },
    })
}

/// SPEC 4.4's default cap on distinct span names per service in the RED metrics.
pub const SPAN_NAMES_PER_SERVICE: usize = 1000;

impl Bound {
    /// Serves `ssfd.v1.Query/GetTrace` from `traces` (a proxy asks it for traces).
    pub fn set_trace_lookup(&mut self, traces: Arc<dyn grpc::TraceLookup>) {
        self.traces = Some(traces);
    }

    /// Counts the RED metrics' span names under `cap`, the cap the OTel span metrics
    /// use, so both overflow the same names (SPEC 4.4).
    pub fn share_span_names(&mut self, cap: Arc<ssfd_engine::span_metrics::SpanNameCap>) {
        if let Some(metrics) = &self.handoff.span_metrics {
            self.handoff.span_metrics = Some(Arc::new(metrics.with_name_cap(cap)));
        }
    }

    /// Makes this server a proxy: forwarded metrics and spans go to `route`.
    pub fn set_proxy(&mut self, route: Arc<dyn grpc::ForwardRoute>) {
        self.proxy = Some(route);
    }

    /// Replays the segments a crash left (see [`wal::replay`]).
    pub fn replay(
        &self,
        pipeline: &Pipeline,
        segments: &[std::path::PathBuf],
    ) -> io::Result<wal::Replayed> {
        wal::replay(segments, pipeline, &self.handoff)
    }

    /// Serves every gRPC listener (ingest, forward import, OTLP) over TLS: the
    /// identity is required; with a CA, clients must present a certificate it signed.
    pub fn set_tls(&mut self, pem: &ssfd_config::TlsPem) -> io::Result<()> {
        let Some((cert, key)) = &pem.identity else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tls: serving TLS needs a certificate and its key",
            ));
        };
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if let Some(ca) = &pem.ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        self.tls = Some(config);
        Ok(())
    }
}

/// A gRPC server builder, with TLS when configured.
fn grpc_server(
    tls: &Option<tonic::transport::ServerTlsConfig>,
) -> io::Result<tonic::transport::Server> {
    {
        let server = tonic::transport::Server::builder();
        match tls {
            None => Ok(server),
            Some(tls) => server
                .tls_config(tls.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}"))),
        }
    }
}

impl Bound {
    /// Answers durable requests (gRPC, OTLP) once they are in `wal`.
    pub fn set_wal(&mut self, wal: Arc<wal::Wal>) {
        self.durability = wal::Durability(Some(wal));
    }

    /// Sends DogStatsD events to `events` too, for the sinks.
    pub fn set_event_queue(&mut self, events: Arc<ssfd_engine::events::EventQueue>) {
        self.handoff.events = Some(events);
    }

    /// Serves every bound listener until `shutdown` turns true.
    pub async fn start(
        self,
        pipeline: Pipeline,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Running> {
        let stop_threads = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut tasks = JoinSet::new();
        // one waker per pipeline: unary calls wait on it for room (SPEC 3.3)
        let waiting = room::Waiting::new(pipeline.clone(), self.grpc_wait);
        let grpc = grpc::GrpcIngest {
            pipeline: pipeline.clone(),
            handoff: self.handoff.clone(),
            proxy: self.proxy.clone(),
            durability: self.durability.clone(),
            waiting: waiting.clone(),
        };
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        for service in ["", "veneur"] {
            health_reporter
                .set_service_status(service, tonic_health::ServingStatus::Serving)
                .await;
        }
        let mut otlp = otlp::OtlpIngest::new(pipeline.clone(), self.handoff.clone());
        otlp.durability = self.durability.clone();
        otlp.waiting = Some(waiting);
        let tls = self.tls.clone();
        for socket in self.sockets {
            match socket {
                Socket::OtlpGrpc { listener } => {
                    use opentelemetry_proto::tonic::collector::{
                        logs::v1::logs_service_server::LogsServiceServer,
                        metrics::v1::metrics_service_server::MetricsServiceServer,
                        trace::v1::trace_service_server::TraceServiceServer,
                    };
                    let router = grpc_server(&tls)?
                        .add_service(health_service.clone())
                        // gzip: the OpenTelemetry Collector's otlp exporter compresses by default
                        .add_service(otlp::DecodeIsInvalid(
                            TraceServiceServer::new(otlp.clone()).accept_compressed(GZIP),
                        ))
                        .add_service(otlp::DecodeIsInvalid(
                            LogsServiceServer::new(otlp.clone()).accept_compressed(GZIP),
                        ))
                        .add_service(otlp::DecodeIsInvalid(
                            MetricsServiceServer::new(otlp.clone()).accept_compressed(GZIP),
                        ));
                    serve_grpc(&mut tasks, router, listener, shutdown.clone(), "otlp grpc");
                }
                Socket::OtlpHttp { listener } => {
                    let router = otlp::http_router(otlp.clone());
                    let mut stop = shutdown.clone();
                    tasks.spawn(async move {
                        let signal = async move {
                            let _ = stop.changed().await;
                        };
                        if let Err(error) = axum::serve(listener, router)
                            .with_graceful_shutdown(signal)
                            .await
                        {
                            tracing::error!(%error, "otlp http server failed");
                        }
                    });
                }
                Socket::Datagram {
                    payload,
                    protocol,
                    sockets,
                    max,
                } => {
                    let context = ReaderContext {
                        pipeline: pipeline.clone(),
                        handoff: self.handoff.clone(),
                        shutdown: Arc::clone(&stop_threads),
                    };
                    threads.extend(datagram::spawn_readers(
                        sockets, payload, protocol, max, context,
                    )?);
                }
                Socket::Tcp { payload, listener } => {
                    let context = StreamContext {
                        pipeline: pipeline.clone(),
                        handoff: self.handoff.clone(),
                        shutdown: shutdown.clone(),
                    };
                    tasks.spawn(stream::serve_tcp(listener, payload, context));
                }
                Socket::Unix { payload, listener } => {
                    let context = StreamContext {
                        pipeline: pipeline.clone(),
                        handoff: self.handoff.clone(),
                        shutdown: shutdown.clone(),
                    };
                    tasks.spawn(stream::serve_unix(listener, payload, context));
                }
                Socket::Grpc { listener } => {
                    let router = grpc_server(&tls)?
                        .add_service(health_service.clone())
                        .add_service(
                            ssfd_wire::raw::ssf::ssfgrpc_server::SsfgrpcServer::new(grpc.clone())
                                .accept_compressed(GZIP),
                        )
                        .add_service(
                            ssfd_wire::dogstatsd::dogstatsd_grpc_server::DogstatsdGrpcServer::new(
                                grpc.clone(),
                            )
                            .accept_compressed(GZIP),
                        )
                        .add_service(
                            ssfd_wire::raw::ssfd_v1::ingest_server::IngestServer::new(grpc.clone())
                                .accept_compressed(GZIP),
                        )
                        .add_service(
                            ssfd_wire::forwardrpc::forward_server::ForwardServer::new(grpc.clone())
                                .max_decoding_message_size(64 << 20)
                                .accept_compressed(GZIP),
                        )
                        .add_service(
                            ssfd_wire::ssfd::v1::logs_server::LogsServer::new(grpc.clone())
                                .max_decoding_message_size(64 << 20)
                                .accept_compressed(GZIP),
                        )
                        .add_optional_service(self.traces.clone().map(|traces| {
                            ssfd_wire::ssfd::v1::query_server::QueryServer::new(grpc::QueryService(
                                traces,
                            ))
                            .max_encoding_message_size(256 << 20)
                        }));
                    serve_grpc(&mut tasks, router, listener, shutdown.clone(), "grpc");
                }
            }
        }
        Ok(Running {
            threads,
            tasks,
            stop_threads,
        })
    }
}
