//! The `ssfd` binary: wires config, ingest, the pipeline and the HTTP endpoints, and
//! hosts the client subcommands (`emit`, `query`, `check-config`).

use clap::{Parser, Subcommand};

mod connections;
mod emit;
mod http;
mod logging;
mod query;
mod selfstats;
mod serve;
mod sinks;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's option calls, linked in with the allocator (`mimalloc.h`, v2 and v3).
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
/// `mi_option_purge_delay` in `mimalloc.h` (the same position in v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Memory freed is given back to the kernel at once, unless `MIMALLOC_PURGE_DELAY`
/// says otherwise. With mimalloc's default delay, what a thread frees is purged only
/// when that thread allocates again, so a flush's buffers, freed by the flusher and
/// its naming threads, stayed resident until the next flush: a million series read
/// 469 B of RSS each after a flush, 201 B with this (BENCHMARKS.md), and the
/// `memory_limit` governor, which reads RSS, saw memory that was already free.
fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// No transparent huge pages for this process, unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so the
/// first touch of any 2 MiB of them zeroes all 2 MiB: a new server's first hand-offs
/// spent their time in `clear_page_erms` while the socket buffer overflowed (a client
/// sending 2.4 M lines/s lost up to about 4,000 datagrams in its first 100 ms, in 7 of 24
/// runs; none of 24 without huge pages). Without them the 1 M-series load also reads
/// less RSS and flushes faster (BENCHMARKS.md).
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and changes only this
        // process's huge-page policy.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// One pipeline for metrics, logs and traces over Veneur's SSF.
#[derive(Parser)]
#[command(name = "ssfd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the pipeline (without -f, on the embedded default configuration).
    #[command(after_help = "Examples:
  ssfd serve
  SSFD_LOG=debug ssfd serve -f deploy/config/local.yaml --log-format json")]
    Serve {
        /// A YAML configuration file (default: the embedded default).
        #[arg(short = 'f', long = "config")]
        config: Option<std::path::PathBuf>,
        /// How the server's own log lines are written on standard error (default:
        /// `SSFD_LOG_FORMAT`, else text). `SSFD_LOG` sets the level filter.
        #[arg(long, value_enum)]
        log_format: Option<logging::Format>,
    },
    /// Sends one metric or span to a running ssfd (or Veneur).
    #[command(after_help = "Examples:
  ssfd emit --name demo.count --count 3 --tag env:dev
  ssfd emit --ssf --span-service ci --span-name build --command -- make test")]
    Emit(Box<emit::EmitArgs>),
    /// Reads traces and logs from a running ssfd (its HTTP API).
    #[command(after_help = "Examples:
  ssfd query traces --service web --since 1h
  ssfd query logs -q timeout --severity error --follow")]
    Query(Box<query::QueryArgs>),
    /// Parses and validates a configuration, then prints the effective configuration.
    #[command(after_help = "Examples:
  ssfd check-config deploy/config/local.yaml
  SSFD_INTERVAL=5s ssfd check-config /etc/veneur/veneur.yaml")]
    CheckConfig {
        /// The YAML configuration file.
        file: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    return_freed_memory_promptly();
    let cli = Cli::parse_from(emit::normalise_flags(std::env::args()));
    let result = match cli.command {
        Command::Serve { config, log_format } => {
            // the server only: the setting is inherited, and `emit --command` runs
            // the user's program
            no_transparent_huge_pages();
            serve::run(config.as_deref(), log_format)
        }
        Command::Emit(args) => emit::run(*args),
        Command::Query(args) => query::run(*args),
        Command::CheckConfig { file } => check_config(&file),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ssfd: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let loaded = ssfd_config::Config::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // nothing it prints shows a secret of the file (SPEC 9's keys and the files named)
    let redactor = ssfd_config::Redactor::new(loaded.config.secrets());
    let checked = (|| -> anyhow::Result<String> {
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        for warning in sinks::unimplemented_kinds(&loaded.config) {
            eprintln!("warning: {warning}");
        }
        // what serve reads beyond the file: the TLS files, the routing table
        loaded
            .config
            .tls_pem()
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let (_, routing_warnings) = sinks::router_with_warnings(&loaded.config)
            .map_err(|e| anyhow::anyhow!("{}: metric_sink_routing: {e}", file.display()))?;
        for warning in routing_warnings {
            eprintln!("warning: {warning}");
        }
        // the effective configuration, as YAML a config file could hold
        loaded
            .config
            .redacted_yaml()
            .map_err(|e| anyhow::anyhow!("cannot print the configuration: {e}"))
    })();
    match checked {
        Ok(yaml) => {
            print!("{}", redactor.scrub(&yaml));
            Ok(())
        }
        Err(error) => anyhow::bail!("{}", redactor.scrub(&format!("{error:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand, nested ones included, with its path.
    fn every_command(
        command: &clap::Command,
        path: String,
        out: &mut Vec<(String, clap::Command)>,
    ) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            out.push((path.clone(), sub.clone()));
            every_command(sub, path, out);
        }
    }

    #[test]
    fn every_flag_has_help_and_every_subcommand_two_examples() {
        let mut commands = Vec::new();
        every_command(&Cli::command(), "ssfd".into(), &mut commands);
        assert!(commands.len() >= 8, "{}", commands.len());
        let mut missing = Vec::new();
        for (path, command) in &commands {
            if command.get_name() == "help" {
                continue;
            }
            for arg in command.get_arguments() {
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            let examples = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            let lines = examples.split_once("Examples:").map_or(0, |(_, rest)| {
                rest.lines().filter(|l| l.contains("ssfd ")).count()
            });
            if lines < 2 {
                missing.push(format!("{path}: two examples"));
            }
        }
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
