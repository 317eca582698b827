//! Append throughput of the log against a raw-file baseline.
//!
//! One group per flush policy (`never`, `interval` at 100 ms, `always`) and batch size (1, 100
//! and 1000 records of 1 KiB), throughput in bytes of batch. In each group:
//!
//! - `brook`: `Log::append` of the same prebuilt batch, [`IN_FLIGHT`] appends outstanding at
//!   once (that many tasks on a current-thread runtime, each awaiting its appends in turn), so
//!   the writer thread can group them into one `writev` (and, under `always`, one fsync);
//! - `brook_serial`: one append in flight, each awaited before the next;
//! - `raw`: `write_all` of the same bytes to a plain file, one write per batch, with the same
//!   fsync cadence (`always`: `sync_data` after every batch; `interval`: after a batch once
//!   100 ms have passed since the last sync; `never`: none).
//!
//! Each function gets a fresh temporary directory. Files are emptied (untimed) before they
//! would pass 256 MiB ([`brook_bench::CAP_BYTES`]), so logs keep their default 1 GiB segments
//! and never roll while timed.
//! After each group a `tally` line per function gives its throughput over all timed work and
//! the ratio to `raw`.

use std::time::{Duration, Instant};

use brook_bench::{
    BATCH_SIZES, Chunked, RawWriter, Tally, VALUE_LEN, append_batches, bench_config,
    flush_policies, open_log, policy_label, record_batch, reset_log, runtime,
};
use brook_broker::log::{FlushPolicy, LogConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Appends outstanding at once in the `brook` function.
const IN_FLIGHT: usize = 16;

fn append(c: &mut Criterion) {
    let rt = runtime();
    for policy in flush_policies() {
        for records in BATCH_SIZES {
            let batch = record_batch(records, VALUE_LEN);
            let len = batch.len() as u64;
            let name = format!("append/{}/{records}x1KiB", policy_label(policy));
            let tally = Tally::default();
            let mut group = c.benchmark_group(&name);
            group.throughput(Throughput::Bytes(len));
            if policy == FlushPolicy::Always {
                // Every batch waits for a sync: few, short samples.
                group
                    .sample_size(10)
                    .warm_up_time(Duration::from_secs(1))
                    .measurement_time(Duration::from_secs(3));
            }
            for (function, in_flight) in [("brook", IN_FLIGHT), ("brook_serial", 1)] {
                group.bench_function(function, |b| {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let config = bench_config(policy, LogConfig::default().segment_bytes, 4096);
                    let mut log = open_log(dir.path(), config);
                    let mut chunks = Chunked::new(len);
                    b.iter_custom(|iters| {
                        let took = chunks.run(
                            &mut log,
                            iters,
                            |log, n| append_batches(&rt, log, &batch, n, in_flight),
                            |log| reset_log(&rt, log),
                        );
                        tally.add(function, iters * len, took);
                        took
                    });
                    reset_log(&rt, &log);
                    rt.block_on(log.close()).expect("close log");
                });
            }
            group.bench_function("raw", |b| {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut raw = RawWriter::create(&dir.path().join("raw.log"), policy)
                    .expect("create raw file");
                let mut chunks = Chunked::new(len);
                b.iter_custom(|iters| {
                    let took = chunks.run(
                        &mut raw,
                        iters,
                        |raw, n| {
                            let start = Instant::now();
                            for _ in 0..n {
                                raw.write_batch(&batch).expect("raw write");
                            }
                            start.elapsed()
                        },
                        |raw| raw.reset().expect("reset raw file"),
                    );
                    tally.add("raw", iters * len, took);
                    took
                });
            });
            group.finish();
            tally.report(&name);
        }
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
