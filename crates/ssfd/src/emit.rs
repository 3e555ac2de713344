//! `ssfd emit`: a Veneur-emit-compatible client. Sends a counter, gauge, timer, set,
//! event, service check or span as DogStatsD text (UDP or TCP), as an SSF span (UDP),
//! or over gRPC (`SendSpan` with `--ssf`, else `SendPacket`). SPEC 8.

use anyhow::{Context as _, bail};
use clap::Args;
use prost::Message;
use ssfd_wire::ssf::{SsfSample, SsfSpan, ssf_sample};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug, Default)]
pub struct EmitArgs {
    /// Where to send: udp://, tcp:// (statsd or gRPC), default by mode.
    #[arg(long, alias = "host")]
    pub hostport: Option<String>,
    /// Send over gRPC (SendSpan with --ssf, SendPacket otherwise).
    #[arg(long)]
    pub grpc: bool,
    /// Send an SSF span instead of DogStatsD text.
    #[arg(long)]
    pub ssf: bool,
    /// metric (default), event or sc.
    #[arg(long, default_value = "metric")]
    pub mode: String,
    /// The metric name.
    #[arg(long)]
    pub name: Option<String>,
    /// Sends a counter of N.
    #[arg(long, allow_negative_numbers = true)]
    pub count: Option<f64>,
    /// Sends a gauge.
    #[arg(long, allow_negative_numbers = true)]
    pub gauge: Option<f64>,
    /// Sends a timer (a duration like 250ms).
    #[arg(long)]
    pub timing: Option<String>,
    /// Sends a set member.
    #[arg(long)]
    pub set: Option<String>,
    /// Tags, comma separated k:v.
    #[arg(long)]
    pub tag: Option<String>,
    /// The event's title (with --mode event).
    #[arg(long = "e-title", alias = "e_title")]
    pub e_title: Option<String>,
    /// The event's text (with --mode event).
    #[arg(long = "e-text", alias = "e_text")]
    pub e_text: Option<String>,
    /// error, warning, info or success.
    #[arg(long = "e-alert-type", alias = "e_alert_type")]
    pub e_alert_type: Option<String>,
    /// The event's time (unix seconds or a date and time; default: when it arrives).
    #[arg(long = "e-time", alias = "e_time")]
    pub e_time: Option<String>,
    /// The host the event is about.
    #[arg(long = "e-hostname", alias = "e_hostname")]
    pub e_hostname: Option<String>,
    /// The event's aggregation key (events with one key are grouped).
    #[arg(long = "e-aggr-key", alias = "e_aggr_key")]
    pub e_aggr_key: Option<String>,
    /// low or normal.
    #[arg(long = "e-priority", alias = "e_priority")]
    pub e_priority: Option<String>,
    /// The event's source type name (e.g. `nagios`).
    #[arg(long = "e-source-type", alias = "e_source_type")]
    pub e_source_type: Option<String>,
    /// The event's tags, comma separated (default: --tag).
    #[arg(long = "e-event-tags", alias = "e_event_tags")]
    pub e_event_tags: Option<String>,
    /// The service check's name (with --mode sc).
    #[arg(long = "sc-name", alias = "sc_name")]
    pub sc_name: Option<String>,
    /// The check's status: 0 or OK, 1 or WARNING, 2 or CRITICAL, 3 or UNKNOWN.
    #[arg(long = "sc-status", alias = "sc_status")]
    pub sc_status: Option<String>,
    /// The check's message.
    #[arg(long = "sc-msg", alias = "sc_msg")]
    pub sc_msg: Option<String>,
    /// The check's time (unix seconds or a date and time).
    #[arg(long = "sc-time", alias = "sc_time")]
    pub sc_time: Option<String>,
    /// The host the check is about.
    #[arg(long = "sc-hostname", alias = "sc_hostname")]
    pub sc_hostname: Option<String>,
    /// The check's tags, comma separated (default: --tag).
    #[arg(long = "sc-tags", alias = "sc_tags")]
    pub sc_tags: Option<String>,
    /// The span's service (sends an SSF span).
    #[arg(long = "span-service", alias = "span_service")]
    pub span_service: Option<String>,
    /// The span's name (operation).
    #[arg(long = "span-name", alias = "span_name")]
    pub span_name: Option<String>,
    /// The trace to join: 32 hex digits (an OpenTelemetry id), a decimal SSF id as
    /// Veneur's tools pass it, or hex (default: SSFD_TRACE_ID, else a new trace).
    #[arg(long = "trace-id", alias = "trace_id", allow_hyphen_values = true, value_parser = emit_trace_id)]
    pub trace_id: Option<ssfd_wire::ids::TraceId>,
    /// The parent span's id: decimal or 16 hex digits (default: SSFD_PARENT_SPAN_ID,
    /// else a root span).
    #[arg(long = "parent-span-id", alias = "parent_span_id", allow_hyphen_values = true, value_parser = emit_span_id)]
    pub parent_span_id: Option<i64>,
    /// Marks the span as an indicator span (SLI timer, SPEC 4.4).
    #[arg(long)]
    pub indicator: bool,
    /// Marks the span as failed.
    #[arg(long)]
    pub error: bool,
    /// The span's tags, comma separated k:v.
    #[arg(long = "span-tags", alias = "span_tags")]
    pub span_tags: Option<String>,
    /// The span's start: unix seconds, milliseconds, microseconds or nanoseconds (told
    /// apart by their digits), fractional seconds, or a date and time (RFC 3339, or
    /// `2026-12-04 10:00:00` in UTC). Default: its end minus --timing.
    #[arg(long = "span-starttime", alias = "span_starttime")]
    pub span_starttime: Option<String>,
    /// The span's end, in the same forms. Default: now.
    #[arg(long = "span-endtime", alias = "span_endtime")]
    pub span_endtime: Option<String>,
    /// Prints what is sent, and where, on stderr.
    #[arg(long)]
    pub debug: bool,
    /// How long to wait to connect and for a gRPC answer (Go-style: `10s`).
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// An ssfd (or Veneur-style) config file: without --hostport, send to its first
    /// statsd listener (its first SSF listener with --ssf, gRPC listener with --grpc).
    #[arg(short = 'f', long = "config")]
    pub config: Option<std::path::PathBuf>,
    /// Times the command after `--` and reports it as a span (and, with --name, a
    /// timer); the command sees SSFD_TRACE_ID and SSFD_PARENT_SPAN_ID (and Veneur's
    /// VENEUR_EMIT_*), so nested `ssfd emit --command` calls form one trace.
    #[arg(long)]
    pub command: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true)]
    pub argv: Vec<String>,
    /// Set by `--command`: (span id, start, end, failed).
    #[arg(skip)]
    pub timed: Option<(i64, i64, i64, bool)>,
}

fn random_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 1) as i64 | 1
}

fn tags_of(text: Option<&str>) -> Vec<(String, String)> {
    text.unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (t.to_string(), String::new()),
        })
        .collect()
}

/// A time as veneur-emit takes it, in unix nanoseconds: unix seconds, milliseconds,
/// microseconds or nanoseconds told apart by their digits (10, 13, 16, 19, as Go's
/// dateparse), fractional seconds, or a date and time.
fn parse_when(flag: &str, text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let bad = || anyhow::anyhow!("--{flag} `{text}` is not a unix time or a date and time");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: i64 = text.parse().map_err(|_| bad())?;
        let scale = match text.len() {
            0..=10 => 1_000_000_000,
            11..=13 => 1_000_000,
            14..=16 => 1_000,
            _ => 1,
        };
        return value.checked_mul(scale).ok_or_else(bad);
    }
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
        && seconds.abs() < 9.2e9
    {
        return Ok((seconds * 1e9) as i64);
    }
    ssfd_query::api::parse_datetime_ns(text).ok_or_else(bad)
}

/// `|d:<unix seconds>` for DogStatsD, from a time flag.
fn timestamp_field(flag: &str, text: Option<&str>) -> anyhow::Result<String> {
    Ok(match text {
        Some(text) => format!("|d:{}", parse_when(flag, text)?.div_euclid(1_000_000_000)),
        None => String::new(),
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64
}

/// The innermost cause of an error, the one line a person needs ("Connection
/// refused"), without the transport's nested repetitions.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A failed gRPC call in one line: what went wrong, in words a person can act on.
fn grpc_failure(status: &tonic::Status, timeout: Duration) -> String {
    let message = status.message();
    if message.contains("compression flag")
        || message.contains("content-type")
        || message.contains("h2 protocol error")
        || message.contains("frame with invalid size")
    {
        return "it does not speak gRPC (is it an HTTP or statsd port? ssfd's gRPC listeners are grpc_listen_addresses and grpc_address, 127.0.0.1:8181 and :8128 by default)".into();
    }
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            format!("no answer within {timeout:?} (--timeout)")
        }
        tonic::Code::Unavailable if message.is_empty() => "unavailable".into(),
        code => {
            let cause = std::error::Error::source(status)
                .map(root_cause)
                .filter(|cause| !message.contains(cause.as_str()));
            match cause {
                Some(cause) => format!("{code:?}: {message}: {cause}"),
                None => format!("{code:?}: {message}"),
            }
        }
    }
}

impl EmitArgs {
    fn timeout(&self) -> anyhow::Result<Duration> {
        ssfd_config::parse_duration(&self.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))
    }

    fn timing(&self) -> anyhow::Result<Option<Duration>> {
        self.timing
            .as_deref()
            .map(|t| ssfd_config::parse_duration(t).map_err(anyhow::Error::msg))
            .transpose()
    }

    fn wants_span(&self) -> bool {
        self.span_service.is_some()
            || self.span_name.is_some()
            || self.trace_id.is_some()
            || self.span_starttime.is_some()
            || self.span_endtime.is_some()
            || self.timed.is_some()
    }

    /// The trace context from the environment, when the flags do not give it (a
    /// nested `ssfd emit` or `veneur-emit` under `--command`).
    fn inherit_trace_context(&mut self) {
        let spanning =
            self.command || self.ssf || self.span_service.is_some() || self.span_name.is_some();
        if !spanning {
            return;
        }
        let from_env = |names: [&str; 2]| names.iter().find_map(|name| std::env::var(name).ok());
        if self.trace_id.is_none() {
            self.trace_id = from_env(["SSFD_TRACE_ID", "VENEUR_EMIT_TRACE_ID"])
                .and_then(|text| emit_trace_id(&text).ok());
        }
        if self.parent_span_id.is_none() {
            self.parent_span_id = from_env(["SSFD_PARENT_SPAN_ID", "VENEUR_EMIT_PARENT_SPAN_ID"])
                .and_then(|text| emit_span_id(&text).ok());
        }
    }

    /// Runs the `--command`, timing it, with this span as the parent of its children.
    fn run_command(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some((program, arguments)) = self.argv.split_first() else {
            bail!("--command needs the command after `--`");
        };
        let id = random_id();
        let trace = self
            .trace_id
            .unwrap_or(ssfd_wire::ids::TraceId::from_parts(0, id));
        let start = now_ns();
        // ssfd's variables carry the whole id; Veneur's the decimal low half it reads
        let status = std::process::Command::new(program)
            .args(arguments)
            .env("SSFD_TRACE_ID", trace.to_string())
            .env("SSFD_PARENT_SPAN_ID", id.to_string())
            .env("VENEUR_EMIT_TRACE_ID", trace.low().to_string())
            .env("VENEUR_EMIT_PARENT_SPAN_ID", id.to_string())
            .status()
            .with_context(|| format!("cannot run `{program}`"))?;
        let end = now_ns();
        self.trace_id = Some(trace);
        if self.span_name.is_none() {
            self.span_name = Some(program.clone());
        }
        self.timed = Some((id, start, end, !status.success()));
        if self.name.is_some() && self.timing.is_none() {
            self.timing = Some(format!("{}ns", (end - start).max(1)));
        }
        Ok(status)
    }

    /// The DogStatsD lines this invocation sends.
    fn statsd_lines(&self) -> anyhow::Result<Vec<String>> {
        let tags_field = |tags: Option<&str>| {
            tags.filter(|t| !t.is_empty())
                .map(|t| format!("|#{t}"))
                .unwrap_or_default()
        };
        let tags = tags_field(self.tag.as_deref());
        let field = |prefix: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| format!("|{prefix}:{v}"))
                .unwrap_or_default()
        };
        match self.mode.as_str() {
            "event" => {
                let title = self
                    .e_title
                    .as_deref()
                    .context("--e-title is required in event mode")?;
                let text = self
                    .e_text
                    .as_deref()
                    .unwrap_or_default()
                    .replace('\n', "\\n");
                if let Some(alert) = self.e_alert_type.as_deref()
                    && !["error", "warning", "info", "success"].contains(&alert)
                {
                    bail!("--e-alert-type `{alert}` is not error, warning, info or success");
                }
                if let Some(priority) = self.e_priority.as_deref()
                    && !["low", "normal"].contains(&priority)
                {
                    bail!("--e-priority `{priority}` is not low or normal");
                }
                // DogStatsD's order: d, h, p, t, k, s, then the tags
                let fields = [
                    timestamp_field("e-time", self.e_time.as_deref())?,
                    field("h", &self.e_hostname),
                    field("p", &self.e_priority),
                    field("t", &self.e_alert_type),
                    field("k", &self.e_aggr_key),
                    field("s", &self.e_source_type),
                    tags_field(self.e_event_tags.as_deref().or(self.tag.as_deref())),
                ]
                .concat();
                Ok(vec![format!(
                    "_e{{{},{}}}:{title}|{text}{fields}",
                    title.len(),
                    text.len()
                )])
            }
            "sc" => {
                let name = self
                    .sc_name
                    .as_deref()
                    .context("--sc-name is required in sc mode")?;
                let status = match self.sc_status.as_deref().unwrap_or("0") {
                    "0" | "ok" | "OK" => 0,
                    "1" | "warning" | "WARNING" => 1,
                    "2" | "critical" | "CRITICAL" => 2,
                    "3" | "unknown" | "UNKNOWN" => 3,
                    other => {
                        bail!("--sc-status `{other}` is not 0-3 or ok/warning/critical/unknown")
                    }
                };
                // DogStatsD's order: d, h, the tags, and the message last
                let fields = [
                    timestamp_field("sc-time", self.sc_time.as_deref())?,
                    field("h", &self.sc_hostname),
                    tags_field(self.sc_tags.as_deref().or(self.tag.as_deref())),
                    field("m", &self.sc_msg),
                ]
                .concat();
                Ok(vec![format!("_sc|{name}|{status}{fields}")])
            }
            "metric" => {
                let mut lines = Vec::new();
                let name = self.name.as_deref();
                let need = || name.context("--name is required for a metric");
                if let Some(count) = self.count {
                    lines.push(format!("{}:{count}|c{tags}", need()?));
                }
                if let Some(gauge) = self.gauge {
                    lines.push(format!("{}:{gauge}|g{tags}", need()?));
                }
                if let Some(timing) = self.timing()? {
                    lines.push(format!(
                        "{}:{}|ms{tags}",
                        need()?,
                        timing.as_secs_f64() * 1000.0
                    ));
                }
                if let Some(member) = &self.set {
                    lines.push(format!("{}:{member}|s{tags}", need()?));
                }
                Ok(lines)
            }
            other => bail!("--mode `{other}` is not metric, event or sc"),
        }
    }

    /// The SSF span this invocation sends.
    fn span(&self) -> anyhow::Result<SsfSpan> {
        let tags: BTreeMap<String, String> = tags_of(self.tag.as_deref()).into_iter().collect();
        let mut metrics = Vec::new();
        let sample = |metric: ssf_sample::Metric, value: f32| SsfSample {
            metric: metric as i32,
            name: self.name.clone().unwrap_or_default(),
            value,
            sample_rate: 1.0,
            tags: tags.clone(),
            ..Default::default()
        };
        if self.name.is_some() {
            if let Some(count) = self.count {
                metrics.push(sample(ssf_sample::Metric::Counter, count as f32));
            }
            if let Some(gauge) = self.gauge {
                metrics.push(sample(ssf_sample::Metric::Gauge, gauge as f32));
            }
            if let Some(timing) = self.timing()? {
                let mut timer = sample(
                    ssf_sample::Metric::Histogram,
                    (timing.as_secs_f64() * 1000.0) as f32,
                );
                timer.unit = "ms".into();
                metrics.push(timer);
            }
            if let Some(member) = &self.set {
                let mut set = sample(ssf_sample::Metric::Set, 0.0);
                set.message = member.clone();
                metrics.push(set);
            }
        }
        let mut span = SsfSpan {
            metrics,
            ..Default::default()
        };
        if self.wants_span() {
            match self.timed {
                Some((id, start, end, _)) => {
                    span.id = id;
                    span.start_timestamp = start;
                    span.end_timestamp = end;
                }
                None => {
                    let end = match &self.span_endtime {
                        Some(text) => parse_when("span-endtime", text)?,
                        None => now_ns(),
                    };
                    let start = match &self.span_starttime {
                        Some(text) => parse_when("span-starttime", text)?,
                        None => {
                            let duration = self
                                .timing()?
                                .map_or(1_000, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                                .max(1);
                            end.checked_sub(duration).ok_or_else(|| {
                                anyhow::anyhow!(
                                    "--span-endtime minus --timing is before the year 1678"
                                )
                            })?
                        }
                    };
                    if end < start {
                        bail!("the span ends before it starts (--span-endtime < --span-starttime)");
                    }
                    span.id = random_id();
                    span.start_timestamp = start;
                    span.end_timestamp = end;
                }
            }
            let trace = self
                .trace_id
                .unwrap_or(ssfd_wire::ids::TraceId::from_parts(0, span.id));
            span.trace_id = trace.low();
            span.trace_id_high = trace.high();
            span.parent_id = self.parent_span_id.unwrap_or(0);
            span.service = self.span_service.clone().unwrap_or_default();
            span.name = self.span_name.clone().unwrap_or_default();
            span.error = self.error || self.timed.is_some_and(|(_, _, _, failed)| failed);
            span.indicator = self.indicator;
            span.tags = tags_of(self.span_tags.as_deref()).into_iter().collect();
        }
        if span.metrics.is_empty() && !self.wants_span() {
            bail!("nothing to send: give --count, --gauge, --timing, --set or span flags");
        }
        Ok(span)
    }
}

/// Where `-f FILE` says to send: its first statsd listener, its first SSF listener
/// with --ssf, its first gRPC listener with --grpc (a listener on every interface is
/// reached on loopback).
fn configured_address(file: &std::path::Path, grpc: bool, ssf: bool) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = ssfd_config::Config::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .config;
    let (key, list) = match (grpc, ssf) {
        (true, _) => ("grpc_listen_addresses", &config.grpc_listen_addresses),
        (false, true) => ("ssf_listen_addresses", &config.ssf_listen_addresses),
        (false, false) => ("statsd_listen_addresses", &config.statsd_listen_addresses),
    };
    let listed = list
        .iter()
        .find(|a| a.starts_with("udp://") || a.starts_with("tcp://"))
        .cloned();
    // a Veneur config names its gRPC listener `grpc_address` (host:port)
    let fallback =
        (grpc && !config.grpc_address.is_empty()).then(|| format!("tcp://{}", config.grpc_address));
    let address = listed.or(fallback).with_context(|| {
        let also = if grpc { " or grpc_address" } else { "" };
        format!(
            "{} has no udp:// or tcp:// entry in {key}{also}",
            file.display()
        )
    })?;
    Ok(address
        .replace("://0.0.0.0:", "://127.0.0.1:")
        .replace("://:", "://127.0.0.1:"))
}

/// Go's flag package takes `-hostport` as well as `--hostport`; so does emit.
pub fn normalise_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut after_separator = false;
    args.into_iter()
        .map(|arg| {
            // what follows `--` is a command's own arguments: left as they are
            if after_separator || arg == "--" {
                after_separator = true;
                return arg;
            }
            let bytes = arg.as_bytes();
            // a one-letter flag stays short, with or without its `=value` (`-f=FILE`)
            let one_letter = bytes.len() == 2 || bytes.get(2) == Some(&b'=');
            if bytes.len() > 2 && bytes[0] == b'-' && bytes[1].is_ascii_alphabetic() && !one_letter
            {
                format!("-{arg}")
            } else {
                arg
            }
        })
        .collect()
}

pub fn run(mut args: EmitArgs) -> anyhow::Result<()> {
    args.inherit_trace_context();
    let status = if args.command {
        Some(args.run_command()?)
    } else {
        None
    };
    send(&args)?;
    match status {
        // veneur-emit's exit status is its command's
        Some(status) if !status.success() => {
            eprintln!("ssfd emit: the command failed: {status}");
            std::process::exit(status.code().unwrap_or(1));
        }
        _ => Ok(()),
    }
}

fn send(args: &EmitArgs) -> anyhow::Result<()> {
    let grpc = args.grpc;
    let ssf = args.ssf || (args.wants_span() && !grpc);
    let default_host = match (grpc, ssf) {
        (true, _) => "tcp://127.0.0.1:8181",
        (false, true) => "udp://127.0.0.1:8128",
        (false, false) => "udp://127.0.0.1:8126",
    };
    let hostport = match (&args.hostport, &args.config) {
        (Some(hostport), _) => hostport.clone(),
        (None, Some(file)) => configured_address(file, grpc, ssf)?,
        (None, None) => default_host.to_string(),
    };
    let (scheme, address) = match hostport.split_once("://") {
        Some((scheme, address)) => (scheme.to_string(), address.to_string()),
        None => ("udp".to_string(), hostport.clone()),
    };
    if grpc {
        let span = if args.ssf || args.wants_span() {
            Some(args.span()?)
        } else {
            None
        };
        let packet = if span.is_none() {
            args.statsd_lines()?.join("\n")
        } else {
            String::new()
        };
        if args.debug {
            match &span {
                Some(span) => eprintln!("ssfd emit: SendSpan to {hostport}: {span:?}"),
                None => eprintln!("ssfd emit: SendPacket to {hostport}:\n{packet}"),
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let timeout = args.timeout()?;
        return runtime.block_on(async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
                .map_err(|_| anyhow::anyhow!("`{hostport}` is not a host:port"))?
                .connect_timeout(timeout)
                .timeout(timeout)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to {hostport}: {}", root_cause(&e)))?;
            let call = match span {
                Some(span) => ssfd_wire::ssf::ssfgrpc_client::SsfgrpcClient::new(channel)
                    .send_span(span)
                    .await
                    .map(drop),
                None => {
                    let packet = ssfd_wire::dogstatsd::DogstatsdPacket {
                        packet_bytes: packet.into_bytes(),
                    };
                    ssfd_wire::dogstatsd::dogstatsd_grpc_client::DogstatsdGrpcClient::new(channel)
                        .send_packet(packet)
                        .await
                        .map(drop)
                }
            };
            call.map_err(|status| anyhow::anyhow!("{hostport}: {}", grpc_failure(&status, timeout)))
        });
    }
    let payload = if ssf {
        let span = args.span()?;
        if args.debug {
            eprintln!("ssfd emit: SSF span to {hostport}: {span:?}");
        }
        span.encode_to_vec()
    } else {
        let lines = args.statsd_lines()?.join("\n");
        if args.debug {
            eprintln!("ssfd emit: DogStatsD to {hostport}:\n{lines}");
        }
        lines.into_bytes()
    };
    if payload.is_empty() {
        bail!("nothing to send: give --count, --gauge, --timing, --set or span flags");
    }
    match scheme.as_str() {
        "udp" => {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket
                .send_to(&payload, &address)
                .with_context(|| format!("cannot send to {hostport}"))?;
        }
        "tcp" => {
            use std::io::Write;
            let timeout = args.timeout()?;
            // every address the name has (`localhost` may be ::1 first), each within
            // the time-out
            let targets: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&address)
                    .map_err(|e| anyhow::anyhow!("cannot resolve {hostport}: {e}"))?
                    .collect();
            let mut last_error = None;
            let mut connected = None;
            for target in &targets {
                match std::net::TcpStream::connect_timeout(target, timeout) {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(error) => last_error = Some(error),
                }
            }
            let mut stream = connected.ok_or_else(|| match last_error {
                Some(error) => anyhow::anyhow!("cannot connect to {hostport}: {error}"),
                None => anyhow::anyhow!("cannot resolve {hostport}"),
            })?;
            stream.set_write_timeout(Some(timeout))?;
            if ssf {
                let mut framed = Vec::new();
                ssfd_wire::framing::encode_frame(&payload, &mut framed);
                stream.write_all(&framed)?;
            } else {
                stream.write_all(&payload)?;
                stream.write_all(b"\n")?;
            }
        }
        other => bail!("--hostport scheme `{other}` is not udp or tcp"),
    }
    Ok(())
}

/// A trace id given to `emit` (SPEC 6's forms). Veneur's flags and variables are
/// decimal, so digits that read both ways are decimal here, unless there are 32 of them.
fn emit_trace_id(text: &str) -> Result<ssfd_wire::ids::TraceId, String> {
    let ids = ssfd_wire::ids::TraceId::candidates(text).map_err(|bad| bad.to_string())?;
    Ok(if text.trim().len() == 32 {
        ids[0]
    } else {
        ids[ids.len() - 1]
    })
}

/// A span id given to `emit`: decimal first (Veneur's), else hex.
fn emit_span_id(text: &str) -> Result<i64, String> {
    let ids = ssfd_wire::ids::span_candidates(text).map_err(|bad| bad.to_string())?;
    Ok(ids[ids.len() - 1])
}

#[cfg(test)]
mod tests {
    #[test]
    fn emit_takes_veneurs_decimal_ids_and_otel_hex_ids() {
        use ssfd_wire::ids::TraceId;
        assert_eq!(
            emit_trace_id("1234"),
            Ok(TraceId(1234)),
            "decimal, as veneur-emit"
        );
        assert_eq!(emit_trace_id("-5"), Ok(TraceId::from_parts(0, -5)));
        assert_eq!(emit_trace_id("4d2"), Ok(TraceId(0x4d2)));
        assert_eq!(
            emit_trace_id("94568bc249d55603975fbd3ef288210b").map(|id| id.to_string()),
            Ok("94568bc249d55603975fbd3ef288210b".to_string())
        );
        assert_eq!(
            emit_trace_id("00000000000000000000000000001234"),
            Ok(TraceId(0x1234)),
            "32 digits are hex"
        );
        assert!(emit_trace_id("zz").is_err());
        assert_eq!(emit_span_id("10"), Ok(10));
        assert_eq!(emit_span_id("ff"), Ok(255));
    }

    use super::*;

    #[test]
    fn emit_f_with_grpc_finds_veneurs_grpc_address() {
        let path = std::env::temp_dir().join(format!("ssfd-emit-{}.yaml", std::process::id()));
        std::fs::write(&path, "grpc_address: \"0.0.0.0:9999\"\n").unwrap();
        let grpc = configured_address(&path, true, false);
        let statsd = configured_address(&path, false, false);
        std::fs::write(
            &path,
            "grpc_address: \"127.0.0.1:9999\"\ngrpc_listen_addresses: [\"tcp://127.0.0.1:8181\"]\n",
        )
        .unwrap();
        let listed = configured_address(&path, true, false);
        let _ = std::fs::remove_file(&path);
        assert_eq!(grpc.unwrap(), "tcp://127.0.0.1:9999");
        assert!(
            statsd
                .unwrap_err()
                .to_string()
                .contains("statsd_listen_addresses")
        );
        assert_eq!(listed.unwrap(), "tcp://127.0.0.1:8181");
    }
}
