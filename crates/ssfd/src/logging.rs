//! The server's own log (standard error): quiet by default (ssfd's crates at `info`,
//! every dependency at `warn`), `SSFD_LOG` for more, text or JSON lines
//! (`--log-format`, `SSFD_LOG_FORMAT`), and no secret of the config in any line.

use ssfd_config::Redactor;
use std::io::Write;
use std::sync::Arc;

/// ssfd's own crates: `info` and above by default; every other target `warn`.
const OWN_CRATES: &[&str] = &[
    "ssfd",
    "ssfd_config",
    "ssfd_engine",
    "ssfd_export",
    "ssfd_ingest",
    "ssfd_query",
    "ssfd_store",
    "ssfd_telemetry",
    "ssfd_cluster",
];

/// The filter used when `SSFD_LOG` is unset: `warn` for dependencies (tantivy's
/// `INFO` lines were 840 of 851 lines in eight minutes), `info` for ssfd.
pub fn default_filter() -> String {
    let mut filter = String::from("warn");
    for krate in OWN_CRATES {
        filter.push_str(&format!(",{krate}=info"));
    }
    filter
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

impl Format {
    /// `--log-format`, else `SSFD_LOG_FORMAT`, else text. A bad variable is an error
    /// that names it.
    pub fn resolve(flag: Option<Format>) -> anyhow::Result<Format> {
        if let Some(format) = flag {
            return Ok(format);
        }
        match std::env::var("SSFD_LOG_FORMAT") {
            Err(_) => Ok(Format::Text),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Format::Text),
                "json" => Ok(Format::Json),
                other => anyhow::bail!(
                    "bad value in environment variable `SSFD_LOG_FORMAT`: `{other}` (text or json)"
                ),
            },
        }
    }
}

/// Standard error, with every known secret replaced before a byte is written.
#[derive(Clone)]
struct Scrubbed {
    redactor: Arc<Redactor>,
}

struct ScrubbedWriter {
    redactor: Arc<Redactor>,
    line: Vec<u8>,
}

impl Write for ScrubbedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedWriter {
    fn drop(&mut self) {
        // one event is one write of the whole line: scrub it, then write it at once
        let text = String::from_utf8_lossy(&self.line);
        let clean = self.redactor.scrub(&text);
        let _ = std::io::stderr().lock().write_all(clean.as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Scrubbed {
    type Writer = ScrubbedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter {
            redactor: Arc::clone(&self.redactor),
            line: Vec::with_capacity(256),
        }
    }
}

/// `SSFD_LOG`'s filter, else [`default_filter`]; a filter that does not parse is an
/// error naming the variable, not a silent fallback.
pub fn filter() -> anyhow::Result<tracing_subscriber::EnvFilter> {
    match std::env::var("SSFD_LOG") {
        Err(_) => Ok(default_filter().into()),
        Ok(text) if text.trim().is_empty() => Ok(default_filter().into()),
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text).map_err(|error| {
            anyhow::anyhow!(
                "bad value in environment variable `SSFD_LOG`: `{text}`: {error} (a level such as `debug`, or `warn,ssfd_ingest=debug`)"
            )
        }),
    }
}

/// Installs the process's log subscriber.
pub fn init(format: Format, filter: tracing_subscriber::EnvFilter, redactor: Arc<Redactor>) {
    let writer = Scrubbed { redactor };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    match format {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Format::Json => builder.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_quiet_by_default() {
        let filter = default_filter();
        assert!(filter.starts_with("warn,"), "{filter}");
        assert!(filter.contains("ssfd_store=info"), "{filter}");
        assert!(!filter.contains("tantivy"), "{filter}");
        // it parses as a filter
        let _: tracing_subscriber::EnvFilter = filter.parse().expect("a valid filter");
    }
}
