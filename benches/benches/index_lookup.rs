//! Offset lookup latency.
//!
//! - `lookup/offset_index`: the bare index lookup the target is about
//!   (`OffsetIndex::lookup`, a binary search over a memory-mapped index) on a full-size
//!   index: 1 000 000 entries (8 MB, nearly a default 10 MiB index), random targets.
//! - `lookup/read_1_byte_at_random_offset`: the whole path a fetch takes,
//!   `Log::read_blocking(random offset, 1)`: segment choice, the index floor lookup, the
//!   header scan from the floor entry to the batch holding the offset, and the read of that
//!   one batch.
//!
//! Each log holds one segment of 100 000 batches of 10 records with 16-byte values (about
//! 300 bytes a batch, 1 000 000 offsets). Cases:
//!
//! - `sealed_interval256`: `index_interval_bytes` 256, so an index entry for about every
//!   batch, segment sealed (reads slice the memory map);
//! - `active_interval256`: the same, segment still active (reads are `pread`s);
//! - `sealed_interval4096`: the default interval, an entry about every 14 batches, so lookups
//!   scan more headers.
//!
//! The number of index entries of each sealed segment is printed (from its trimmed `.index`
//! file: 8 bytes an entry).

use std::path::Path;

use brook_bench::{XorShift, append_batches, bench_config, open_log, record_batch, runtime};
use brook_broker::log::{FlushPolicy, Log, LogConfig, OFFSET_ENTRY_SIZE, OffsetIndex};
use brook_proto::Offset;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

const BATCHES: u64 = 100_000;
const RECORDS: usize = 10;
const VALUE: usize = 16;
/// Random offsets cycled through by each benchmark.
const LOOKUPS: usize = 4096;

fn index_entries(dir: &Path) -> u64 {
    let path = dir.join(format!("{:020}.index", 0));
    std::fs::metadata(&path).expect("index file").len() / OFFSET_ENTRY_SIZE as u64
}

fn bare_lookup(c: &mut Criterion) {
    const ENTRIES: u32 = 1_000_000;
    let tmp = tempfile::tempdir().expect("temp dir");
    let (mut index, _) =
        OffsetIndex::open(&tmp.path().join("0.index"), Some(ENTRIES as usize)).expect("index");
    for i in 0..ENTRIES {
        assert!(index.append(i * 37 + 5, (i + 1) * 4096));
    }
    let mut rng = XorShift::new(11);
    let targets: Vec<u32> = (0..LOOKUPS)
        .map(|_| rng.range(0, i64::from(ENTRIES) * 37) as u32)
        .collect();
    let mut group = c.benchmark_group("lookup/offset_index");
    group.bench_function("1M_entries_random_target", |b| {
        let mut i = 0;
        b.iter(|| {
            let t = targets[i % LOOKUPS];
            i += 1;
            black_box(index.lookup(t))
        });
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("temp dir");
    let batch = record_batch(RECORDS, VALUE);
    let segment_bytes = LogConfig::default().segment_bytes;
    let make = |name: &str, interval: u32, seal: bool| -> Log {
        let dir = tmp.path().join(name);
        let log = open_log(
            &dir,
            bench_config(FlushPolicy::Never, segment_bytes, interval),
        );
        append_batches(&rt, &log, &batch, BATCHES, 64);
        if seal {
            rt.block_on(log.roll()).expect("roll");
            eprintln!(
                "{name}: {} offsets, {} index entries, {} bytes",
                log.end_offset(),
                index_entries(&dir),
                log.size_bytes()
            );
        }
        log
    };
    let cases = [
        ("sealed_interval256", make("sealed_interval256", 256, true)),
        ("active_interval256", make("active_interval256", 256, false)),
        (
            "sealed_interval4096",
            make("sealed_interval4096", 4096, true),
        ),
    ];
    let end = cases[0].1.end_offset().0;
    let mut rng = XorShift::new(7);
    let offsets: Vec<i64> = (0..LOOKUPS).map(|_| rng.range(0, end)).collect();

    let mut group = c.benchmark_group("lookup/read_1_byte_at_random_offset");
    for (name, log) in &cases {
        group.bench_function(*name, |b| {
            let mut i = 0;
            b.iter(|| {
                let offset = offsets[i % LOOKUPS];
                i += 1;
                black_box(log.read_blocking(Offset(offset), 1).expect("read"))
            });
        });
    }
    group.finish();
    for (_, log) in cases {
        rt.block_on(log.close()).expect("close log");
    }
}

criterion_group!(benches, bare_lookup, lookup);
criterion_main!(benches);
