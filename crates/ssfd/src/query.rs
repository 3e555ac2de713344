//! `ssfd query`: the HTTP API from a terminal. `trace ID` prints the joined tree as a
//! waterfall, `traces` and `logs` take the API's filters and print tables, `slos` the
//! SLO status; `--json`
//! prints the API's answer as it came.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The ssfd HTTP address (`http_address`).
    #[arg(
        long,
        global = true,
        env = "SSFD_QUERY_ADDR",
        default_value = "http://127.0.0.1:8127"
    )]
    addr: String,
    /// Print the API's JSON answer unchanged.
    #[arg(long, global = true)]
    json: bool,
    /// The API's bearer token (`http_bearer_token_file` on the server).
    #[arg(long, global = true, env = "SSFD_QUERY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long to wait for ssfd to answer (Go-style: `10s`, `500ms`).
    #[arg(long, global = true, default_value = "10s")]
    timeout: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// One trace as a waterfall, each span with its logs and metrics.
    #[command(after_help = "Examples:
  ssfd query trace 94568bc249d55603975fbd3ef288210b
  ssfd query trace \"$(ssfd query traces --service web --limit 1 --ids)\"")]
    Trace {
        /// The trace id: 32 or up to 16 hex digits, or a decimal SSF id.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Trace search, newest first.
    #[command(after_help = "Examples:
  ssfd query traces --service web --since 1h
  ssfd query traces --service web --error true --min-duration 250ms --limit 5")]
    Traces {
        /// Only traces with a span of this service.
        #[arg(long)]
        service: Option<String>,
        /// The span name (operation).
        #[arg(long)]
        name: Option<String>,
        /// `key:value`; repeatable, all must hold on one span.
        #[arg(long)]
        tag: Vec<String>,
        /// Only traces with (true) or without (false) an error span.
        #[arg(long)]
        error: Option<bool>,
        /// Only traces at least this long (Go-style, inclusive: `250ms`).
        #[arg(long)]
        min_duration: Option<String>,
        /// Only traces at most this long (Go-style, inclusive: `2s`).
        #[arg(long)]
        max_duration: Option<String>,
        /// From: unix ns, RFC 3339, or relative (`1h`, `now-30m`).
        #[arg(long, allow_hyphen_values = true)]
        start: Option<String>,
        /// Until: unix ns, RFC 3339, or relative (`now`, `now-5m`).
        #[arg(long, allow_hyphen_values = true)]
        end: Option<String>,
        /// The last stretch of time, as `--start now-DURATION` (`1h`, `15m`).
        #[arg(long, conflicts_with = "start")]
        since: Option<String>,
        /// At most this many traces (1 to 1000; default 20).
        #[arg(long)]
        limit: Option<usize>,
        /// Print only the trace ids, one per line (for scripts).
        #[arg(long, conflicts_with = "json")]
        ids: bool,
    },
    /// Log search, newest first; `--follow` tails new records.
    #[command(after_help = "Examples:
  ssfd query logs -q 'timeout \"user 42\"' --severity error --since 1h
  ssfd query logs --service web --follow")]
    Logs {
        /// Full-text: words (all must match) and "quoted phrases".
        #[arg(long, short)]
        q: Option<String>,
        /// Only records of this service.
        #[arg(long)]
        service: Option<String>,
        /// trace, debug, info, warn, error, fatal or unknown (any case).
        #[arg(long)]
        severity: Option<String>,
        /// Only records of this trace (32 or up to 16 hex digits, or decimal).
        #[arg(long, allow_hyphen_values = true)]
        trace_id: Option<String>,
        /// `key:value` or a bare tag; repeatable.
        #[arg(long)]
        tag: Vec<String>,
        /// From: unix ns, RFC 3339, or relative (`1h`, `now-30m`).
        #[arg(long, allow_hyphen_values = true)]
        start: Option<String>,
        /// Until: unix ns, RFC 3339, or relative (`now`, `now-5m`).
        #[arg(long, allow_hyphen_values = true)]
        end: Option<String>,
        /// The last stretch of time, as `--start now-DURATION` (`1h`, `15m`).
        #[arg(long, conflicts_with = "start")]
        since: Option<String>,
        /// At most this many records (1 to 1000; default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Keep printing new matching records as they arrive, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// SLO status: good and total events, burn rates over 5m, 1h and 6h.
    #[command(after_help = "Examples:
  ssfd query slos
  ssfd query slos --json --addr http://127.0.0.1:8127")]
    Slos,
}

/// `--since D` as the API's `start`.
fn since(start: Option<String>, since: Option<String>) -> Option<String> {
    since.map(|d| format!("now-{d}")).or(start)
}

/// One line for a failed request: what was asked and why it failed, without the
/// nested repetitions of the HTTP client's own chain.
fn describe(error: &ureq::Error, timeout: std::time::Duration) -> String {
    match error {
        ureq::Error::Timeout(_) => format!("no answer within {timeout:?} (--timeout)"),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is `ssfd serve` running there?)".into()
            }
            std::io::ErrorKind::TimedOut => format!("no answer within {timeout:?} (--timeout)"),
            _ => io.to_string(),
        },
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

fn agent(timeout: std::time::Duration, follow: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout));
    let config = if follow {
        config
    } else {
        config.timeout_global(Some(timeout))
    };
    config.build().into()
}

fn base_of(addr: &str) -> String {
    if addr.contains("://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

/// `base` as an error may show it: without a password in its user part.
fn shown(base: &str) -> String {
    ssfd_export::delivery::shown_url(base)
}

fn url_of(base: &str, path: &str, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    }
}

/// Sends GET `path?params` with the token; `Err` says, in one line, which ssfd could
/// not be reached and why. Returns the URL as errors may show it (no password) and the
/// response. `follow` keeps the time-out off the body (a tail never ends).
fn request(
    args: &Common,
    path: &str,
    params: &[(&str, String)],
    follow: bool,
) -> anyhow::Result<(String, ureq::http::Response<ureq::Body>)> {
    let base = base_of(&args.addr);
    let url = url_of(&base, path, params);
    let mut request = agent(args.timeout, follow).get(&url);
    if let Some(token) = &args.token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let response = request.call().map_err(|e| {
        anyhow::anyhow!(
            "cannot reach ssfd at {}: {}",
            shown(&base),
            describe(&e, args.timeout)
        )
    })?;
    Ok((shown(&url), response))
}

/// GETs `path?params` and returns the JSON body; an API error becomes its message.
fn get(
    args: &Common,
    path: &str,
    params: &[(&str, String)],
) -> anyhow::Result<(String, serde_json::Value)> {
    let (url, mut response) = request(args, path, params, false)?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .map_err(|e| {
            anyhow::anyhow!(
                "reading the answer of {url}: {}",
                describe(&e, args.timeout)
            )
        })?;
    let value: serde_json::Value = serde_json::from_str(&body).with_context(|| {
        format!("{url} answered {status} with no JSON (is it ssfd's http_address?)")
    })?;
    if !status.is_success() {
        let message = value["error"].as_str().unwrap_or("no message");
        bail!("{status}: {message}");
    }
    warn_partial(&value);
    Ok((body, value))
}

/// A proxy's answer without some globals (SPEC 6 `"partial": true`): one line on
/// stderr per global that did not answer, so what is printed is known to be partial.
fn warn_partial(value: &serde_json::Value) {
    if value["partial"] != serde_json::Value::Bool(true) {
        return;
    }
    for error in value["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "partial answer: global {} did not answer: {}",
            error["node"].as_str().unwrap_or("?"),
            error["error"].as_str().unwrap_or("?")
        );
    }
}

/// The flags every query shares.
struct Common {
    addr: String,
    token: Option<String>,
    timeout: std::time::Duration,
}

/// Prints each new record of `/api/v1/logs/tail` as it arrives (server-sent events).
fn follow(args: &Common, params: &[(&str, String)], json: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let (_, mut response) = request(args, "/api/v1/logs/tail", params, true)?;
    let base = shown(&base_of(&args.addr));
    let status = response.status();
    if !status.is_success() {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(body);
        bail!("{status}: {message}");
    }
    eprintln!("following new logs at {base} (Ctrl-C stops)");
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let mut stdout = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(|e| anyhow::anyhow!("the tail from {base} ended: {e}"))?;
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let record: serde_json::Value = match serde_json::from_str(data.trim()) {
            Ok(record) => record,
            Err(_) => continue,
        };
        let text = if json {
            format!("{record}\n")
        } else {
            ssfd_query::text::logs_table(&serde_json::json!({ "logs": [record] }))
        };
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // the reader went away (a closed pipe): stop quietly, as `tail -f` does
            return Ok(());
        }
    }
    bail!("ssfd at {base} closed the tail")
}

fn push(params: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(value) = value {
        params.push((key, value));
    }
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let timeout = ssfd_config::parse_duration(&args.timeout)
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let common = Common {
        addr: args.addr.clone(),
        token: args.token.clone(),
        timeout,
    };
    let mut ids_only = false;
    let (body, value, render): (String, serde_json::Value, fn(&serde_json::Value) -> String) =
        match args.what {
            What::Trace { id } => {
                let id = id.trim().to_string();
                if id.is_empty() || id.contains(['/', '?', '#', ' ', '<', '>']) {
                    bail!(
                        "`{id}` is not a trace id (32 or up to 16 hex digits, or a decimal SSF id)"
                    );
                }
                let (body, value) = get(&common, &format!("/api/v1/traces/{id}"), &[])?;
                (body, value, ssfd_query::text::waterfall)
            }
            What::Traces {
                service,
                name,
                tag,
                error,
                min_duration,
                max_duration,
                start,
                end,
                since: since_flag,
                limit,
                ids,
            } => {
                ids_only = ids;
                let mut params = Vec::new();
                push(&mut params, "service", service);
                push(&mut params, "name", name);
                for tag in tag {
                    params.push(("tag", tag));
                }
                push(&mut params, "error", error.map(|e| e.to_string()));
                push(&mut params, "min_duration", min_duration);
                push(&mut params, "max_duration", max_duration);
                push(&mut params, "start", since(start, since_flag));
                push(&mut params, "end", end);
                push(&mut params, "limit", limit.map(|l| l.to_string()));
                let (body, value) = get(&common, "/api/v1/traces", &params)?;
                (body, value, ssfd_query::text::traces_table)
            }
            What::Logs {
                q,
                service,
                severity,
                trace_id,
                tag,
                start,
                end,
                since: since_flag,
                limit,
                follow: following,
            } => {
                let mut params = Vec::new();
                push(&mut params, "q", q);
                push(&mut params, "service", service);
                push(&mut params, "severity", severity);
                push(&mut params, "trace_id", trace_id);
                for tag in tag {
                    params.push(("tag", tag));
                }
                if following {
                    return follow(&common, &params, args.json);
                }
                push(&mut params, "start", since(start, since_flag));
                push(&mut params, "end", end);
                push(&mut params, "limit", limit.map(|l| l.to_string()));
                let (body, value) = get(&common, "/api/v1/logs", &params)?;
                (body, value, ssfd_query::text::logs_table)
            }
            What::Slos => {
                let (body, value) = get(&common, "/api/v1/slos", &[])?;
                (body, value, ssfd_query::text::slos_table)
            }
        };
    if ids_only {
        for trace in value["traces"].as_array().into_iter().flatten() {
            if let Some(id) = trace["trace_id"].as_str() {
                println!("{id}");
            }
        }
    } else if args.json {
        println!("{body}");
    } else {
        print!("{}", render(&value));
    }
    Ok(())
}
