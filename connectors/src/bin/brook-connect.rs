//! `brook-connect`: runs the Kafka ⇄ Brook pipelines of a TOML config.
//!
//! ```text
//! brook-connect --config FILE [--http-listen ADDR]
//! ```
//!
//! On start it validates the config, checks that both clusters answer within
//! `timeouts.startup_ms`, serves `/health` and `/metrics`, prints
//! `brook-connect listening http=ADDR pipelines=N` on stdout and runs until SIGINT or SIGTERM,
//! then stops reading, waits up to `timeouts.shutdown_ms` for what is in flight, commits and
//! exits. Log verbosity follows `RUST_LOG` (default `info`); `BROOK_CONNECT_LOG_FORMAT=json`
//! logs JSON.
//!
//! Exit codes (stable, for scripts and supervisors):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | stopped by a signal after a clean shutdown |
//! | 1 | a runtime failure (the HTTP address cannot be bound, ...) |
//! | 2 | usage error or invalid config (`error: ...` names the setting, value and limit) |
//! | 3 | a cluster did not answer at start-up (`error: cannot reach Kafka at ...`) |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use brook_connectors::config::ConnectConfig;
use brook_connectors::supervisor::{self, Status};
use brook_connectors::{brook_side, http, kafka_side, metrics};
use clap::Parser;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Mirrors topics between Kafka and Brook.
#[derive(Debug, Parser)]
#[command(name = "brook-connect", version)]
struct Args {
    /// The TOML config (see connectors/brook-connect.example.toml).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Overrides `http.listen`.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var("BROOK_CONNECT_LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    let mut config = match ConnectConfig::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.http_listen {
        config.http.listen = listen;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(config));
    // librdkafka's threads may take a moment; everything was committed already.
    runtime.shutdown_timeout(Duration::from_secs(5));
    ExitCode::from(code)
}

async fn run(config: ConnectConfig) -> u8 {
    // Checked by validate() when the configuration was loaded.
    let security = match config.brook.security() {
        Ok(security) => security,
        Err(err) => {
            eprintln!("error: {err}");
            return 2;
        }
    };
    let startup = Duration::from_millis(config.timeouts.startup_ms);
    let (brook, kafka) = tokio::join!(
        brook_side::connect(&config.brook.bootstrap, &security, startup),
        kafka_side::check_reachable(&config.kafka, startup)
    );
    let unreachable: Vec<_> = [brook.err(), kafka.err()].into_iter().flatten().collect();
    if !unreachable.is_empty() {
        for err in unreachable {
            eprintln!("error: {err}");
        }
        return 3;
    }
    let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "error: cannot listen on {} (http.listen): {err}",
                config.http.listen
            );
            return 1;
        }
    };
    let http_addr = listener
        .local_addr()
        .map_or_else(|_| config.http.listen.to_string(), |a| a.to_string());
    // The recorder goes in before any pipeline registers its series.
    let prometheus = metrics::prometheus();
    let cancel = CancellationToken::new();
    let status = Status::default();
    let mut tasks = JoinSet::new();
    supervisor::spawn_all(&config, &status, &cancel, &mut tasks);
    let router = http::router(status.clone(), prometheus);
    let http_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await
    });
    println!(
        "brook-connect listening http={http_addr} pipelines={}",
        config.pipeline.len()
    );
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight records and committing");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = server.await;
    tracing::info!("stopped");
    0
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
