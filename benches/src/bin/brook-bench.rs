//! `brook-bench`: Brook's benchmark harness (docs/benchmarks.md): `compare` (Brook beside a
//! real Apache Kafka), `grpc`, `client`, `connect` and `tls`. Prints Markdown on stdout and
//! progress on stderr.
//!
//! Every temporary directory of a run (brokers' data, Kafka's, certificates) is made under one
//! scratch directory, which goes at every exit. On SIGINT or SIGTERM the brokers and connectors
//! it started are stopped first; Kafka nodes stop by themselves once it is gone
//! (`scripts/kafka.sh`, `BROOK_KAFKA_OWNER_PID`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The same allocator as the broker binary, so in-process brokers behave like the real one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use brook_bench::grpc::{GrpcBench, latency_table, throughput_table};
use brook_bench::procs;
use brook_broker::log::FlushPolicy;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "brook-bench", version, about = "Brook's benchmark harness")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Client library: consumer-group throughput with 1, 2 and 4 members, and end-to-end
    /// latency at a fixed rate (HdrHistogram, corrected for coordinated omission).
    Client {
        /// Partitions of the group-consume topic.
        #[arg(long, default_value_t = 8)]
        partitions: u32,
        /// MB produced for the group-consume runs.
        #[arg(long, default_value_t = 256)]
        total_mb: u64,
        /// Member counts.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        members: Vec<usize>,
        /// Repetitions (medians reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Records per second in the latency run.
        #[arg(long, default_value_t = 1000)]
        latency_rate: u32,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 10)]
        latency_secs: u64,
    },
    /// Brook against a real Kafka, side by side: the standard suite in both durability
    /// classes, Kafka's ProducerPerformance cross-check, report.json / report.md / SVG charts.
    Compare {
        /// Where the report goes.
        #[arg(long, default_value = "target/bench-report")]
        out: std::path::PathBuf,
        /// Measured seconds per workload.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Warm-up seconds per workload.
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// Messages of the consume workload (3 GB at 1 KiB: reading takes seconds, so the
        /// rate is not dominated by start-up and scheduling noise).
        #[arg(long, default_value_t = 3_000_000)]
        consume_messages: u64,
        /// Messages of the ProducerPerformance cross-check (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        cross_check_messages: u64,
        /// Durability classes: no-fsync, fsync-every-write.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "no-fsync,fsync-every-write"
        )]
        durability: Vec<String>,
        /// The brook-broker binary (default: next to this one).
        #[arg(long)]
        broker_bin: Option<std::path::PathBuf>,
        /// Systems to run: brook, kafka.
        #[arg(long, value_delimiter = ',', default_value = "brook,kafka")]
        systems: Vec<String>,
        /// Workloads to run: produce-max, produce-rate, consume, e2e, group-e2e.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "produce-max,produce-rate,consume,e2e,group-e2e"
        )]
        workloads: Vec<String>,
        /// Repetitions of each system's suite (alternating); each case reports its median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Message payload bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Topic partitions.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Producers per workload.
        #[arg(long, default_value_t = 1)]
        producers: usize,
        /// Consumers per workload (the group workload has at least 2).
        #[arg(long, default_value_t = 1)]
        consumers: usize,
        /// Producer batch size, bytes.
        #[arg(long, default_value_t = 262_144)]
        batch_bytes: usize,
        /// Producer linger, ms.
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
        /// none, gzip, snappy, lz4 or zstd.
        #[arg(long, default_value = "none")]
        compression: String,
        /// 0, 1 or all.
        #[arg(long, default_value = "all")]
        acks: String,
        /// The fixed rate of the fixed-rate workloads, MB/s (the group one runs at 40 %).
        #[arg(long, default_value_t = 50.0)]
        rate_mb: f64,
    },
    /// Replication's price and failover time: one Brook broker (RF 1), three Brook brokers
    /// (RF 3) and a three-node Kafka (RF 3), min.insync.replicas 2 and acks=all on both
    /// clusters; produce at the maximum and at a fixed rate; then leader SIGKILLs timed to the
    /// first acknowledged produce.
    Cluster {
        /// Where report.md goes.
        #[arg(long, default_value = "target/bench-cluster")]
        out: std::path::PathBuf,
        /// Measured seconds per workload.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Warm-up seconds per workload.
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// Leader kills per system (1..=50).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
        kills: u64,
        /// The fixed rate, MB/s.
        #[arg(long, default_value_t = 50.0)]
        rate_mb: f64,
        /// The brook-broker binary (default: next to this one).
        #[arg(long)]
        broker_bin: Option<std::path::PathBuf>,
    },
    /// brook-connect's throughput each way beside Kafka's own consumer on the same topics
    /// (starts a real Kafka with scripts/kafka.sh and an in-process Brook broker).
    Connect {
        /// Records in each source topic.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Bytes per record value.
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Partitions of every topic.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Repetitions (medians reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// The brook-connect binary (default: next to this one).
        #[arg(long)]
        connect_bin: Option<std::path::PathBuf>,
    },
    /// What security costs: produce-max and consume against one broker in plain text, with
    /// mutual TLS, with mutual TLS and ACLs, and with JWT tokens; medians and the ratios.
    Tls {
        /// Where report.md goes.
        #[arg(long, default_value = "target/bench-tls")]
        out: std::path::PathBuf,
        /// Measured seconds per workload.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Warm-up seconds per workload.
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// Messages of the consume workload.
        #[arg(long, default_value_t = 3_000_000)]
        consume_messages: u64,
        /// Rounds (each runs every mode once).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
        repeat: u64,
        /// Modes beside plaintext (always run): mtls, mtls-acl (mutual TLS, authorization
        /// and ACLs), token (JWT bearer tokens).
        #[arg(long, value_delimiter = ',', default_value = "plaintext,mtls,mtls-acl,token", value_parser = brook_bench::tls::Mode::parse)]
        modes: Vec<brook_bench::tls::Mode>,
        /// The brook-broker binary (default: next to this one).
        #[arg(long)]
        broker_bin: Option<std::path::PathBuf>,
    },
    /// gRPC produce/fetch throughput and produce latency beside the storage engine.
    Grpc {
        /// Records per batch.
        #[arg(long, default_value_t = 1000)]
        records_per_batch: usize,
        /// Bytes per record value.
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// MB (10^6 bytes) produced per case and repetition.
        #[arg(long, default_value_t = 512)]
        total_mb: u64,
        /// Partition counts.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        partitions: Vec<u32>,
        /// Flush policies (always, never, interval:<ms>).
        #[arg(long, value_delimiter = ',', default_value = "never,always")]
        flush: Vec<FlushPolicy>,
        /// Requests in flight per partition.
        #[arg(long, default_value_t = 4)]
        window: usize,
        /// Repetitions per case (medians reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Batches per second in the latency run (0 skips it).
        #[arg(long, default_value_t = 100)]
        latency_rate: u32,
        /// Seconds of the latency run.
        #[arg(long, default_value_t = 10)]
        latency_secs: u64,
    },
}

/// This run's scratch directory, the default temporary directory of everything in it.
static RUN_DIR: OnceLock<PathBuf> = OnceLock::new();
/// The exit code of the signal received (130 or 143), once one was.
static SIGNALLED: OnceLock<i32> = OnceLock::new();
/// Held by whoever is ending the process: the run, when it ends or fails, or the signal
/// handler. A run that fails because the handler stopped its broker waits here, so the
/// handler finishes stopping and exits with the signal's code.
static EXITING: Mutex<()> = Mutex::new(());

fn main() {
    let args = Args::parse();
    let run_dir = tempfile::Builder::new()
        .prefix("brook-bench-")
        .tempdir()
        .expect("a scratch directory in the temporary directory")
        .keep();
    tempfile::env::override_temp_dir(&run_dir).expect("the first override");
    RUN_DIR.set(run_dir).expect("set once");
    std::thread::spawn(stop_on_signal);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(args)));
    exit(if outcome.is_ok() { 0 } else { 101 })
}

/// Removes the run's scratch directory and exits with `code`, or with the signal's code once
/// a signal was received.
fn exit(code: i32) -> ! {
    let _exiting = EXITING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dir) = RUN_DIR.get() {
        remove_scratch(dir);
    }
    std::process::exit(SIGNALLED.get().copied().unwrap_or(code))
}

/// Removes `dir`; a process still stopping may write into it meanwhile, so a few tries.
fn remove_scratch(dir: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!("brook-bench: could not remove {}", dir.display());
}

/// Waits for SIGINT or SIGTERM, then stops this process's children (the brokers and
/// connectors it started: SIGTERM, SIGKILL after 10 s), removes the scratch directory and
/// exits with 130 or 143, as a shell reports those signals.
fn stop_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("signal runtime");
    let code = runtime.block_on(async {
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        }
    });
    SIGNALLED.set(code).expect("one signal handled");
    let exiting = EXITING.lock().unwrap_or_else(PoisonError::into_inner);
    eprintln!("brook-bench: interrupted; stopping what it started");
    let children = procs::children(std::process::id());
    signal_all("-TERM", &children);
    let deadline = Instant::now() + Duration::from_secs(10);
    while children.iter().any(|pid| procs::alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = children
        .into_iter()
        .filter(|pid| procs::alive(*pid))
        .collect();
    signal_all("-KILL", &left);
    drop(exiting);
    exit(code)
}

fn signal_all(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .status();
}

fn run(args: Args) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.command {
        Cmd::Client {
            partitions,
            total_mb,
            members,
            repeat,
            latency_rate,
            latency_secs,
        } => {
            runtime.block_on(async {
                use brook_proto::Compression;
                let ms = Duration::from_millis;
                let settings = [
                    (16 << 10, ms(5), Compression::None, true),
                    (256 << 10, ms(5), Compression::None, true),
                    (1 << 20, ms(5), Compression::None, true),
                    (256 << 10, ms(0), Compression::None, true),
                    (256 << 10, ms(20), Compression::None, true),
                    (256 << 10, ms(5), Compression::None, false),
                    (256 << 10, ms(5), Compression::Lz4, true),
                    (256 << 10, ms(5), Compression::Zstd, true),
                ];
                println!("## Producer throughput\n");
                println!("{total_mb} MB of 1 KiB text-like records over 4 partitions, enqueue + flush, acks=all, median of {repeat}. Stored/raw is bytes on disk per byte of record value.\n");
                println!("| batch bytes | linger | compression | idempotence | MB/s | stored/raw |\n|---|---|---|---|---|---|");
                for r in brook_bench::client::producer_throughput(&settings, total_mb, repeat.max(1)).await {
                    println!("| {} | {} ms | {} | {} | {:.0} | {:.2} |", r.batch_bytes, r.linger.as_millis(), r.compression, r.idempotence, r.mbps, r.wire_ratio);
                }
                println!("\n## Consumer groups: throughput\n");
                println!("{partitions} partitions, {total_mb} MB of 1 KiB records, median of {repeat}.\n");
                println!("| members | MB/s |\n|---|---|");
                for row in brook_bench::client::group_consume(partitions, total_mb, &members, repeat.max(1)).await {
                    println!("| {} | {:.0} |", row.members, row.mbps);
                }
                let h = brook_bench::client::end_to_end(latency_rate, Duration::from_secs(latency_secs)).await;
                println!("\n## End-to-end latency\n");
                println!("{latency_rate} records/s of 1 KiB for {latency_secs} s, one per produce request; timed from the scheduled send (coordinated omission corrected).\n");
                println!("| samples | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|");
                println!("| {} | {} | {} | {} | {} |", h.len(), h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.value_at_quantile(0.999), h.max());
            });
        }
        Cmd::Tls {
            out,
            duration_secs,
            warmup_secs,
            consume_messages,
            repeat,
            modes,
            broker_bin,
        } => {
            let mut o = brook_bench::tls::TlsOptions {
                duration: Duration::from_secs(duration_secs),
                warmup: Duration::from_secs(warmup_secs),
                consume_messages,
                repeat: repeat as usize,
                modes,
                ..Default::default()
            };
            if let Some(bin) = broker_bin {
                o.broker_bin = bin;
            }
            let report = runtime.block_on(brook_bench::tls::run(&o)).and_then(|md| {
                std::fs::create_dir_all(&out)?;
                std::fs::write(out.join("report.md"), &md)?;
                Ok(md)
            });
            match report {
                Ok(md) => {
                    println!("{md}");
                    println!("report written to {}", out.join("report.md").display());
                }
                Err(err) => {
                    eprintln!("error: {err:#}");
                    exit(1);
                }
            }
        }
        Cmd::Compare {
            out,
            duration_secs,
            warmup_secs,
            consume_messages,
            cross_check_messages,
            durability,
            broker_bin,
            systems,
            workloads,
            repeat,
            size,
            partitions,
            producers,
            consumers,
            batch_bytes,
            linger_ms,
            compression,
            acks,
            rate_mb,
        } => {
            use brook_bench::compare::runner::{CompareOptions, compare};
            use brook_bench::compare::systems::Durability;
            let mut o = CompareOptions::new(out);
            o.duration = Duration::from_secs(duration_secs);
            o.warmup = Duration::from_secs(warmup_secs);
            o.consume_messages = consume_messages;
            o.cross_check_messages = cross_check_messages;
            o.durability = durability
                .iter()
                .map(|d| match d.as_str() {
                    "no-fsync" => Durability::NoFsync,
                    "fsync-every-write" => Durability::FsyncEveryWrite,
                    other => {
                        eprintln!("error: --durability takes no-fsync and fsync-every-write, not {other:?}");
                        exit(2);
                    }
                })
                .collect();
            if let Some(bin) = broker_bin {
                o.broker_bin = bin;
            }
            if let Some(bad) = systems.iter().find(|s| *s != "brook" && *s != "kafka") {
                eprintln!("error: --systems takes brook and kafka, not {bad:?}");
                exit(2);
            }
            o.systems = systems;
            use brook_bench::compare::runner::WORKLOAD_KEYS;
            if let Some(bad) = workloads
                .iter()
                .find(|w| !WORKLOAD_KEYS.contains(&w.as_str()))
            {
                eprintln!(
                    "error: --workloads takes {}, not {bad:?}",
                    WORKLOAD_KEYS.join(", ")
                );
                exit(2);
            }
            o.workloads = workloads;
            o.repeat = repeat;
            if size < 8 || partitions == 0 || producers == 0 || consumers == 0 || rate_mb <= 0.0 {
                eprintln!(
                    "error: --size must be at least 8 (the due time travels in the payload), and --partitions, --producers, --consumers and --rate-mb above 0"
                );
                exit(2);
            }
            if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str())
                || !["0", "1", "all"].contains(&acks.as_str())
            {
                eprintln!(
                    "error: --compression takes none, gzip, snappy, lz4 or zstd (got {compression:?}); --acks takes 0, 1 or all (got {acks:?})"
                );
                exit(2);
            }
            (o.size, o.partitions, o.producers, o.consumers, o.rate_mb) =
                (size, partitions, producers, consumers, rate_mb);
            o.settings = brook_bench::compare::driver::ProducerSettings {
                batch_bytes,
                linger_ms,
                compression,
                acks,
            };
            match runtime.block_on(compare(&o)) {
                Ok(_) => println!("report written to {}", o.out.display()),
                Err(err) => {
                    eprintln!("error: {err:#}");
                    exit(1);
                }
            }
        }
        Cmd::Cluster {
            out,
            duration_secs,
            warmup_secs,
            kills,
            rate_mb,
            broker_bin,
        } => {
            use brook_bench::compare::cluster::{ClusterOptions, run};
            if !(rate_mb.is_finite() && rate_mb > 0.0) {
                eprintln!("error: --rate-mb must be above 0 (got {rate_mb})");
                exit(2);
            }
            if duration_secs == 0 {
                eprintln!("error: --duration-secs must be at least 1");
                exit(2);
            }
            let o = ClusterOptions {
                broker_bin: broker_bin.unwrap_or_else(|| {
                    brook_bench::compare::systems::sibling_binary("brook-broker")
                }),
                duration: Duration::from_secs(duration_secs),
                warmup: Duration::from_secs(warmup_secs),
                kills: kills as usize,
                rate_mb,
            };
            let written = runtime.block_on(run(&o)).and_then(|report| {
                std::fs::create_dir_all(&out)?;
                std::fs::write(out.join("report.md"), &report)?;
                println!("{report}");
                Ok(())
            });
            if let Err(err) = written {
                eprintln!("error: {err:#}");
                exit(1);
            }
        }
        Cmd::Connect {
            records,
            record_size,
            partitions,
            repeat,
            connect_bin,
        } => {
            let connect_bin = connect_bin.unwrap_or_else(|| {
                std::env::current_exe()
                    .expect("own path")
                    .with_file_name("brook-connect")
            });
            let bench = brook_bench::connect::ConnectBench {
                records,
                record_size,
                partitions,
                repeat: repeat.max(1),
                connect_bin,
            };
            let rows = runtime.block_on(bench.run());
            println!("## brook-connect beside Kafka's consumer\n");
            println!(
                "{records} records of {record_size} bytes (+ 8-byte keys) per topic, {partitions} partitions, median of {repeat}; MB = 10^6 bytes of keys and values.\n"
            );
            println!("| measured | records/s | MB/s |\n|---|---|---|");
            for r in rows {
                println!(
                    "| {} | {:.0} | {:.1} |",
                    r.what, r.records_per_sec, r.mb_per_sec
                );
            }
        }
        Cmd::Grpc {
            records_per_batch,
            record_size,
            total_mb,
            partitions,
            flush,
            window,
            repeat,
            latency_rate,
            latency_secs,
        } => {
            let bench = GrpcBench {
                records_per_batch,
                record_size,
                total_bytes: total_mb * 1_000_000,
                partitions,
                flush,
                window,
                repeat: repeat.max(1),
                latency_rate,
                latency_duration: Duration::from_secs(latency_secs),
            };
            let batch_bytes = brook_bench::record_batch(records_per_batch, record_size).len();
            runtime.block_on(async {
                println!("## gRPC vs storage engine: throughput\n");
                println!("{records_per_batch} records of {record_size} bytes per batch ({batch_bytes} bytes), {total_mb} MB per case, window {window} per partition, median of {repeat}.\n");
                let rows = bench.throughput().await;
                println!("{}", throughput_table(&rows));
                let lat = bench.latency().await;
                if !lat.is_empty() {
                    println!("## Produce latency\n");
                    println!("{}", latency_table(&lat, latency_rate, batch_bytes));
                }
            });
        }
    }
}
