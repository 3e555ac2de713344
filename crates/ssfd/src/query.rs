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
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// One trace as a waterfall: decimal id, 16 or 32 hex digits.
    Trace { id: String },
    /// Trace search, newest first.
    Traces {
        #[arg(long)]
        service: Option<String>,
        /// The span name (operation).
        #[arg(long)]
        name: Option<String>,
        /// `key:value`; repeatable, all must hold on one span.
        #[arg(long)]
        tag: Vec<String>,
        /// true or false.
        #[arg(long)]
        error: Option<bool>,
        /// Go-style, inclusive: `250ms`.
        #[arg(long)]
        min_duration: Option<String>,
        #[arg(long)]
        max_duration: Option<String>,
        /// Unix ns or RFC 3339.
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Log search, newest first.
    Logs {
        /// Full-text: words (all must match) and "quoted phrases".
        #[arg(long, short)]
        q: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// trace, debug, info, warn, error, fatal or unknown.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        trace_id: Option<String>,
        /// `key:value` or a bare tag; repeatable.
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// SLO status: good and total events, burn rates over 5m, 1h and 6h.
    Slos,
}

/// GETs `path?params` and returns the JSON body; an API error becomes its message.
fn get(
    addr: &str,
    token: Option<&str>,
    path: &str,
    params: &[(&str, String)],
) -> anyhow::Result<(String, serde_json::Value)> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        query.append_pair(key, value);
    }
    let query = query.finish();
    let base = if addr.contains("://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    };
    let url = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(&url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot reach ssfd at {base}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    let value: serde_json::Value = serde_json::from_str(&body)
        .with_context(|| format!("{url} answered {status} with no JSON"))?;
    if !status.is_success() {
        let message = value["error"].as_str().unwrap_or("no message");
        bail!("{status}: {message}");
    }
    Ok((body, value))
}

fn push(params: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(value) = value {
        params.push((key, value));
    }
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let (body, value, render): (String, serde_json::Value, fn(&serde_json::Value) -> String) =
        match args.what {
            What::Trace { id } => {
                let (body, value) = get(
                    &args.addr,
                    args.token.as_deref(),
                    &format!("/api/v1/traces/{id}"),
                    &[],
                )?;
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
                limit,
            } => {
                let mut params = Vec::new();
                push(&mut params, "service", service);
                push(&mut params, "name", name);
                for tag in tag {
                    params.push(("tag", tag));
                }
                push(&mut params, "error", error.map(|e| e.to_string()));
                push(&mut params, "min_duration", min_duration);
                push(&mut params, "max_duration", max_duration);
                push(&mut params, "start", start);
                push(&mut params, "end", end);
                push(&mut params, "limit", limit.map(|l| l.to_string()));
                let (body, value) =
                    get(&args.addr, args.token.as_deref(), "/api/v1/traces", &params)?;
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
                limit,
            } => {
                let mut params = Vec::new();
                push(&mut params, "q", q);
                push(&mut params, "service", service);
                push(&mut params, "severity", severity);
                push(&mut params, "trace_id", trace_id);
                for tag in tag {
                    params.push(("tag", tag));
                }
                push(&mut params, "start", start);
                push(&mut params, "end", end);
                push(&mut params, "limit", limit.map(|l| l.to_string()));
                let (body, value) =
                    get(&args.addr, args.token.as_deref(), "/api/v1/logs", &params)?;
                (body, value, ssfd_query::text::logs_table)
            }
            What::Slos => {
                let (body, value) = get(&args.addr, args.token.as_deref(), "/api/v1/slos", &[])?;
                (body, value, ssfd_query::text::slos_table)
            }
        };
    if args.json {
        println!("{body}");
    } else {
        print!("{}", render(&value));
    }
    Ok(())
}
