//! Sequential read throughput of the log against a raw-file baseline.
//!
//! Three files of the same bytes, 128 MiB of batches of 1000 records of 1 KiB, written just
//! before (so reads come from the page cache). Each iteration reads one of them front to back:
//!
//! - `brook_active`: a log whose only segment is the active one, so `Log::read_blocking`
//!   does positional reads (`pread` into a fresh buffer);
//! - `brook_sealed`: the same log contents after `Log::roll`, so reads slice the segment's
//!   memory map (zero copy: the payload bytes are not touched by the read);
//! - `brook_sealed_copied`: `brook_sealed`, then each read's bytes copied into one reused
//!   buffer, so the payload is moved once as `raw`'s `read` moves it (what a broker pays when
//!   it copies fetched bytes out, to a socket say);
//! - `raw`: `std::fs::File::read` of 1 MiB at a time into one reused buffer.
//!
//! Brook reads ask for up to 1 MiB from the current offset and find the next offset from the
//! batch headers of what came back (no CRC check, no record decoding). A batch here is a
//! little over 1 MiB, and a read always returns at least one whole batch, so each read
//! returns exactly one batch.

use std::fs::File;
use std::hint::black_box;
use std::time::Instant;

use brook_bench::{
    READ_BYTES, RawWriter, Tally, VALUE_LEN, append_batches, bench_config, open_log, raw_read_all,
    read_log, read_log_each, record_batch, runtime,
};
use brook_broker::log::{FlushPolicy, Log, LogConfig};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// Size of the log read in each iteration.
const LOG_BYTES: u64 = 128 << 20;

fn bench_log(b: &mut criterion::Bencher<'_>, log: &Log, tally: &Tally, name: &str) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..iters {
            bytes += black_box(read_log(log, READ_BYTES).expect("read log"));
        }
        let took = start.elapsed();
        tally.add(name, bytes, took);
        took
    });
}

fn read(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let batch = record_batch(1000, VALUE_LEN);
    let count = LOG_BYTES.div_ceil(batch.len() as u64);
    let config = bench_config(FlushPolicy::Never, LogConfig::default().segment_bytes, 4096);

    let active = open_log(&dir.path().join("active"), config.clone());
    append_batches(&rt, &active, &batch, count, 16);
    rt.block_on(active.flush()).expect("flush");

    let sealed = open_log(&dir.path().join("sealed"), config);
    append_batches(&rt, &sealed, &batch, count, 16);
    rt.block_on(sealed.roll()).expect("roll");

    let raw_path = dir.path().join("raw.log");
    let mut raw = RawWriter::create(&raw_path, FlushPolicy::Never).expect("create raw file");
    for _ in 0..count {
        raw.write_batch(&batch).expect("raw write");
    }
    raw.sync_all().expect("sync raw file");

    let size = active.size_bytes();
    assert_eq!(size, sealed.size_bytes());
    assert_eq!(size, raw.written());
    let tally = Tally::default();
    let name = "read/128MiB_of_1000x1KiB";
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Bytes(size))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20);
    group.bench_function("brook_active", |b| {
        bench_log(b, &active, &tally, "brook_active")
    });
    group.bench_function("brook_sealed", |b| {
        bench_log(b, &sealed, &tally, "brook_sealed")
    });
    group.bench_function("brook_sealed_copied", |b| {
        let mut buf = Vec::with_capacity(2 * READ_BYTES);
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut bytes = 0;
            for _ in 0..iters {
                let read = read_log_each(&sealed, READ_BYTES, |bytes| {
                    buf.clear();
                    buf.extend_from_slice(bytes);
                    black_box(&buf);
                });
                bytes += black_box(read.expect("read log"));
            }
            let took = start.elapsed();
            tally.add("brook_sealed_copied", bytes, took);
            took
        });
    });
    group.bench_function("raw", |b| {
        let mut file = File::open(&raw_path).expect("open raw file");
        let mut buf = vec![0u8; READ_BYTES];
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut bytes = 0;
            for _ in 0..iters {
                bytes += black_box(raw_read_all(&mut file, &mut buf).expect("raw read"));
            }
            let took = start.elapsed();
            tally.add("raw", bytes, took);
            took
        });
    });
    group.finish();
    tally.report(name);
    for log in [active, sealed] {
        rt.block_on(log.close()).expect("close log");
    }
}

criterion_group!(benches, read);
criterion_main!(benches);
