//! `brook-broker`: runs a Brook broker.
//!
//! Configuration comes from, in rising priority: built-in defaults, the TOML file given with
//! `--config` (see `brook-broker.example.toml`), `BROOK_<SECTION>_<KEY>` environment
//! variables, and the flags below. With nothing given it serves gRPC on 127.0.0.1:7400 and
//! HTTP on 127.0.0.1:7401 with data in `./data`.
//!
//! Once listening it prints one line to stdout, `brook-broker listening grpc=ADDR http=ADDR`,
//! which scripts and tests wait for. SIGINT or SIGTERM stop it gracefully.
//!
//! Exit codes: 0 after a clean shutdown; 1 when the broker failed while running; 2 for an
//! invalid configuration or a data directory or address that cannot be used.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use brook_broker::config::{BrokerConfig, LogFormat};
use brook_broker::server;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The broker allocates and frees buffers of a megabyte or more per request (HTTP/2 bodies,
/// fetch responses). By default glibc serves blocks above 128 KiB to 32 MiB (its threshold
/// moves) with fresh `mmap`s and trims its heaps eagerly, so every request page-faults its
/// buffers in again: a quarter of the broker's CPU in a produce-heavy run. Raising both
/// thresholds keeps such blocks in the heap for reuse. Measured (docs/benchmarks.md): broker
/// CPU per record down a fifth, produce throughput up a quarter, peak RSS about 40 MiB, where
/// mimalloc, tried first, held 150 to 190 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    /// Blocks smaller than this come from the heap, not from their own `mmap`.
    const MMAP_THRESHOLD: libc::c_int = 16 << 20;
    /// Free memory at the top of a heap beyond this goes back to the OS.
    const TRIM_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: mallopt only adjusts allocator parameters; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Runs a Brook broker.
#[derive(Debug, Parser)]
#[command(name = "brook-broker", version, about, long_about = None)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where partition logs and topic metadata live (server.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HTTP listen address for /health, /ready, /metrics (server.http_listen).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// This broker's id (server.node_id).
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// The cluster's controller voters, `id@host:port,...` (cluster.voters); this broker's
    /// --node-id must be among them.
    #[arg(long, value_name = "VOTERS")]
    seeds: Option<String>,
}

fn main() -> ExitCode {
    tune_allocator();
    let args = Args::parse();
    let mut config = match BrokerConfig::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(d) = args.data_dir {
        config.server.data_dir = d;
    }
    if let Some(a) = args.listen {
        config.server.listen = a;
    }
    if let Some(a) = args.http_listen {
        config.server.http_listen = a;
    }
    if let Some(n) = args.node_id {
        config.server.node_id = n;
    }
    if let Some(seeds) = args.seeds {
        config.cluster.voters = seeds;
    }
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("brook")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: BrokerConfig) -> ExitCode {
    let shutdown = CancellationToken::new();
    // Handlers first: a SIGTERM sent as soon as the listening line is read must not find the
    // default action (death) still in place.
    let signals = Signals::install();
    let running = match server::start(config, shutdown.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(cause = %e, "cannot start");
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "brook-broker listening grpc={} http={}",
            running.grpc_addr, running.http_addr
        );
        let _ = out.flush();
    }
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("signal received; shutting down");
        shutdown.cancel();
    });
    match running.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e, "broker failed");
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
        }
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
