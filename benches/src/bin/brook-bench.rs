//! `brook-bench`: Brook's benchmark harness.
//!
//! `brook-bench grpc`: produce and fetch throughput over gRPC on loopback beside the storage
//! engine's own append throughput in the same run, and produce latency at a fixed rate (see
//! `brook_bench::grpc`). Prints Markdown tables on stdout; progress on stderr.
//!
//! The comparison against a real Apache Kafka joins with its issue.

use std::time::Duration;

/// The same allocator as the broker binary, so in-process brokers behave like the real one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use brook_bench::grpc::{GrpcBench, latency_table, throughput_table};
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

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.command {
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
