//! The `ssfd` binary: wires config, ingest, the pipeline and the HTTP endpoints, and
//! hosts the client subcommands (`emit`, `query`, `check-config`).

use clap::{Parser, Subcommand};

mod emit;
mod http;
mod query;
mod serve;
mod sinks;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve {
        /// A YAML configuration file.
        #[arg(short = 'f', long = "config")]
        config: Option<std::path::PathBuf>,
    },
    /// Sends one metric or span to a running ssfd (or Veneur).
    Emit(Box<emit::EmitArgs>),
    /// Reads traces and logs from a running ssfd (its HTTP API).
    Query(Box<query::QueryArgs>),
    /// Parses and validates a configuration, then prints the effective configuration.
    CheckConfig {
        /// The YAML configuration file.
        file: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from(emit::normalise_flags(std::env::args()));
    let result = match cli.command {
        Command::Serve { config } => serve::run(config.as_deref()),
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
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{:#?}", loaded.config);
    Ok(())
}
