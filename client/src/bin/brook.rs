//! `brook`: the Brook command-line tool.
//!
//! ```text
//! brook [--bootstrap ADDR] topic create NAME [--partitions N] [--replication-factor R] [--config K=V]...
//! brook topic list | describe [NAME...] | delete NAME... | alter NAME [--set K=V]... [--delete K]...
//! brook topic add-partitions NAME --total N
//! brook produce TOPIC [--key-separator SEP] [--acks none|leader|all] [--partition P] ...
//! brook consume TOPIC [--from-beginning] [--max-messages N] [--timeout-ms T] [--partition P] ...
//! brook cluster status
//! ```
//!
//! The broker address comes from `--bootstrap`, else `BROOK_BOOTSTRAP`, else `127.0.0.1:7400`.
//!
//! Results go to stdout, one item per line; errors, warnings and the `produced N records` /
//! `consumed N records` summaries go to stderr. Log verbosity follows `RUST_LOG` (default
//! `warn`).
//!
//! Exit codes (stable, for scripts):
//!
//! | code | meaning | stderr |
//! |---|---|---|
//! | 0 | success (also when the reader of stdout closed it early) | |
//! | 1 | the broker reported an error for a topic or partition, failed the request, or the input or output failed | `error: CODE: message (topic T[, partition P])`, e.g. `error: TOPIC_ALREADY_EXISTS: ...` |
//! | 2 | usage error or invalid argument (clap's own errors included) | clap's message or `error: ...` |
//! | 3 | the broker cannot be reached, or the connection was lost | `error: cannot connect to ADDR: reason` |
//!
//! Everything but argument parsing lives in `brook_client::cli`, so it can be tested in-process.

use std::io::Write;
use std::process::ExitCode;

use brook_client::Connection;
use brook_client::cli::{Cli, Exit, report, run};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_target(false)
        .without_time()
        .init();
    let mut stderr = std::io::stderr();
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(execute(&cli)),
        Err(err) => {
            let _ = writeln!(stderr, "error: cannot start the async runtime: {err}");
            return ExitCode::from(Exit::Failed.code());
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = report(&err, &mut stderr);
            ExitCode::from(Exit::for_error(&err).code())
        }
    }
}

async fn execute(cli: &Cli) -> Result<(), brook_client::ClientError> {
    // Usage errors first: they are reported as such even when the broker is down.
    cli.validate()?;
    let security = cli.security.build()?;
    let conn = Connection::connect_with(&cli.bootstrap, &security).await?;
    let input = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut stderr = std::io::stderr();
    run(
        &cli.command,
        &conn,
        input,
        &mut out,
        &mut stderr,
        interrupted(),
    )
    .await
}

/// Completes on Ctrl-C (SIGINT). Only `consume` waits on it; the handler is installed when it
/// is first polled, so other commands keep the default (the process ends).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
