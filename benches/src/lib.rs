//! Brook benchmarks. The criterion micro-benchmarks live in `benches/`; the `brook-bench`
//! binary (src/bin) runs workloads over the network: gRPC against the storage engine
//! ([`grpc`]), the client library ([`client`]) and brook-connect beside Kafka's own consumer
//! ([`connect`]), Brook against a real Kafka ([`compare`]) and TLS against plain text
//! ([`tls`]).
//!
//! This library holds what the micro-benchmarks share:
//!
//! - the workload: [`record_batch`] builds a batch of `n` records with [`VALUE_LEN`]-byte
//!   values once, and the benchmarks append the same bytes over and over (the log stamps
//!   the base offset and leader epoch outside the CRC, so that is valid);
//! - the raw baselines: [`RawWriter`] writes batches to a plain file with the fsync cadence of
//!   a [`FlushPolicy`], [`raw_read_all`] reads a file front to back in 1 MiB reads;
//! - the Brook side: [`append_batches`] keeps a window of appends in flight on a
//!   current-thread runtime, [`read_log`] reads a log front to back walking batch headers only;
//! - [`Tally`], which adds up bytes and timed durations per benchmark function so that each
//!   group can print the brook / raw throughput ratio the issue asks for.

pub mod client;
pub mod compare;
pub mod connect;
pub mod grpc;
pub mod procs;
pub mod tls;

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use brook_broker::log::{FlushPolicy, Log, LogConfig, LogError, SystemClock};
use brook_proto::batch::layout::HEADER_LEN;
use brook_proto::{BatchBuilder, BatchHeader, LeaderEpoch, Offset};
use bytes::Bytes;

/// Size of every record value in the benchmarks (the "1 KiB records").
pub const VALUE_LEN: usize = 1024;

/// Records per batch in the append benchmarks.
pub const BATCH_SIZES: [usize; 3] = [1, 100, 1000];

/// The interval of the `interval` flush policy in the benchmarks.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes asked of one read in the read benchmarks (Brook's `max_bytes`, the raw read size).
pub const READ_BYTES: usize = 1 << 20;

/// Leader epoch stamped on appended batches.
pub const EPOCH: LeaderEpoch = LeaderEpoch(1);

/// The three flush policies, `interval` at [`FLUSH_INTERVAL`].
pub fn flush_policies() -> [FlushPolicy; 3] {
    [
        FlushPolicy::Never,
        FlushPolicy::Interval(FLUSH_INTERVAL),
        FlushPolicy::Always,
    ]
}

/// A name for `policy` usable in a benchmark id (`never`, `interval100ms`, `always`).
pub fn policy_label(policy: FlushPolicy) -> String {
    match policy {
        FlushPolicy::Never => "never".into(),
        FlushPolicy::Always => "always".into(),
        FlushPolicy::Interval(d) => format!("interval{}ms", d.as_millis()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One uncompressed batch of `records` records, each with no key and a `value_len`-byte
/// value of pseudo-random bytes, timestamped now (so age-based rolling never triggers).
pub fn record_batch(records: usize, value_len: usize) -> Bytes {
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ records as u64);
    let value: Vec<u8> = (0..value_len).map(|_| rng.next_u64() as u8).collect();
    let mut b = BatchBuilder::with_capacity(records * (value_len + 16) + HEADER_LEN);
    let ts = now_ms();
    for _ in 0..records {
        b.append(ts, None, Some(&value), &[]);
    }
    b.build()
}

/// The log configuration of the benchmarks: `policy`, segments of `segment_bytes`, index
/// entries every `index_interval_bytes`, and no age-based rolling or retention.
pub fn bench_config(
    policy: FlushPolicy,
    segment_bytes: u64,
    index_interval_bytes: u32,
) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        index_interval_bytes,
        retention_bytes: None,
        retention_ms: None,
        flush: policy,
        ..LogConfig::default()
    }
}

/// Opens (creating) a log in `dir` on the calling thread, with the system clock.
pub fn open_log(dir: &Path, config: LogConfig) -> Log {
    Log::open_blocking(dir.to_path_buf(), config, Arc::new(SystemClock)).expect("open log")
}

/// A single-threaded tokio runtime: with the log's writer thread that makes two busy threads,
/// one per core of the benchmark machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Appends `batch` `count` times to `log`, with `in_flight` appends outstanding at once: that
/// many tasks each await their share of the appends one after the other. Returns the time
/// taken. `in_flight = 1` is a single producer awaiting each append before the next.
pub fn append_batches(
    rt: &tokio::runtime::Runtime,
    log: &Log,
    batch: &Bytes,
    count: u64,
    in_flight: usize,
) -> Duration {
    let in_flight = in_flight.max(1) as u64;
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..in_flight.min(count) {
            // Split `count` as evenly as possible.
            let n = count / in_flight + u64::from(w < count % in_flight);
            let log = log.clone();
            let batch = batch.clone();
            tasks.spawn(async move {
                for _ in 0..n {
                    log.append(batch.clone(), EPOCH).await.expect("append");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("append task");
        }
    });
    start.elapsed()
}

/// Empties `log` (drops every segment file and starts again at the log start offset), so a
/// long benchmark does not fill the disk. Dirty pages of the removed files are discarded,
/// not written back.
pub fn reset_log(rt: &tokio::runtime::Runtime, log: &Log) {
    rt.block_on(log.truncate_to(log.start_offset()))
        .expect("truncate log");
}

/// Offset following the last whole batch in `bytes` (batches as a read returns them), found
/// from the batch headers alone: no CRC check, no record decoding. `None` if `bytes` holds no
/// whole batch.
pub fn next_offset_after(bytes: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while pos + HEADER_LEN <= bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).expect("batch header");
        if pos + h.total_size() > bytes.len() {
            break;
        }
        pos += h.total_size();
        next = Some(h.next_offset());
    }
    next
}

/// Reads `log` from its start offset to its end offset with reads of up to `max_bytes`,
/// finding each next offset from the batch headers. Returns the bytes read.
pub fn read_log(log: &Log, max_bytes: usize) -> Result<u64, LogError> {
    read_log_each(log, max_bytes, |_| {})
}

/// [`read_log`], handing each read's bytes to `consume` (to copy them, say).
pub fn read_log_each(
    log: &Log,
    max_bytes: usize,
    mut consume: impl FnMut(&[u8]),
) -> Result<u64, LogError> {
    let end = log.end_offset().0;
    let mut offset = log.start_offset().0;
    let mut total = 0u64;
    while offset < end {
        let bytes = log.read_blocking(Offset(offset), max_bytes)?;
        total += bytes.len() as u64;
        offset = next_offset_after(&bytes).expect("a read returns at least one batch");
        consume(&bytes);
    }
    Ok(total)
}

/// The raw append baseline: plain sequential writes of whole batches to one file, synced with
/// the cadence of a [`FlushPolicy`]: `always` → `sync_data` after every batch, `interval` →
/// `sync_data` after a batch once the interval has passed since the last sync, `never` → no
/// sync.
#[derive(Debug)]
pub struct RawWriter {
    path: PathBuf,
    file: File,
    policy: FlushPolicy,
    last_sync: Instant,
    written: u64,
    syncs: u64,
}

impl RawWriter {
    /// Creates (truncating) the file at `path`.
    pub fn create(path: &Path, policy: FlushPolicy) -> io::Result<RawWriter> {
        Ok(RawWriter {
            path: path.to_path_buf(),
            file: File::create(path)?,
            policy,
            last_sync: Instant::now(),
            written: 0,
            syncs: 0,
        })
    }

    /// Writes one batch, then syncs if the policy says so.
    pub fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        self.file.write_all(batch)?;
        self.written += batch.len() as u64;
        match self.policy {
            FlushPolicy::Always => self.sync()?,
            FlushPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            FlushPolicy::Interval(_) | FlushPolicy::Never => {}
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.syncs += 1;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Bytes in the file.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Syncs done by the flush policy so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Removes the file and starts a new, empty one in its place (as [`reset_log`] does for
    /// the log). Dirty pages of the removed file are discarded.
    pub fn reset(&mut self) -> io::Result<()> {
        std::fs::remove_file(&self.path)?;
        self.file = File::create(&self.path)?;
        self.written = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs the file whatever the policy.
    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// Reads `file` from its start to its end with `buf.len()`-byte reads into `buf`. Returns the
/// bytes read.
pub fn raw_read_all(file: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut total = 0u64;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Largest file [`Chunked`] lets a benchmark build before it resets it. A compromise:
/// - small, so the page-cache pages of a removed file are soon reused by the next one and
///   writes measure copying into the page cache, not the first touch of memory the machine
///   has not used for a while (on a virtual machine that costs several times the copy, and
///   varies from run to run);
/// - not too small, since a reset gives the log a fresh segment, whose first index writes
///   fault in its sparse, memory-mapped index files (a per-segment cost that a real log
///   spreads over 1 GiB, here over this many bytes).
///
/// Far below the default 1 GiB segment, so a log never rolls inside a timed chunk.
pub const CAP_BYTES: u64 = 256 << 20;

/// Runs units of work in timed chunks, resetting the file they fill (untimed) whenever the
/// next unit would take it past [`CAP_BYTES`], so a benchmark's files stay bounded however
/// many iterations criterion asks for. A chunk runs up to the next reset, so appends stay in
/// flight across as many units as possible.
#[derive(Debug)]
pub struct Chunked {
    /// Bytes one unit of work adds to the file.
    pub bytes_per_unit: u64,
    /// Units that fit in the file after a reset.
    pub per_file: u64,
    /// Units done since the last reset.
    pub used: u64,
}

impl Chunked {
    /// Units of `bytes_per_unit` bytes, files capped at [`CAP_BYTES`].
    pub fn new(bytes_per_unit: u64) -> Chunked {
        Chunked {
            bytes_per_unit,
            per_file: (CAP_BYTES / bytes_per_unit).max(1),
            used: 0,
        }
    }

    /// Does `count` units: `work(state, n)` does `n` of them and returns the time they took;
    /// `reset(state)` empties the file. Returns the summed time of the work alone.
    pub fn run<S>(
        &mut self,
        state: &mut S,
        count: u64,
        mut work: impl FnMut(&mut S, u64) -> Duration,
        mut reset: impl FnMut(&mut S),
    ) -> Duration {
        let mut left = count;
        let mut timed = Duration::ZERO;
        while left > 0 {
            if self.used == self.per_file {
                reset(state);
                self.used = 0;
            }
            let n = left.min(self.per_file - self.used);
            timed += work(state, n);
            self.used += n;
            left -= n;
        }
        timed
    }
}

/// Bytes and timed durations added up per benchmark function of one group (warm-up
/// included), to print each function's throughput and its ratio to the `raw` baseline.
#[derive(Debug, Default)]
pub struct Tally {
    entries: RefCell<Vec<(String, u64, Duration)>>,
}

impl Tally {
    /// Counts `bytes` done in `took` for function `name`.
    pub fn add(&self, name: &str, bytes: u64, took: Duration) {
        let mut entries = self.entries.borrow_mut();
        match entries.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, b, t)) => {
                *b += bytes;
                *t += took;
            }
            None => entries.push((name.to_string(), bytes, took)),
        }
    }

    /// Throughput of `name` in bytes per second, if it ran.
    pub fn throughput(&self, name: &str) -> Option<f64> {
        self.entries
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .filter(|(_, _, t)| !t.is_zero())
            .map(|(_, b, t)| *b as f64 / t.as_secs_f64())
    }

    /// Prints one line per function to stderr: throughput in MiB/s and, when `raw` ran, the
    /// ratio to it.
    pub fn report(&self, group: &str) {
        let raw = self.throughput("raw");
        for (name, _, _) in self.entries.borrow().iter() {
            let Some(tp) = self.throughput(name) else {
                continue;
            };
            let ratio = match raw {
                Some(r) if name != "raw" => format!("  ratio to raw {:.3}", tp / r),
                _ => String::new(),
            };
            eprintln!(
                "tally {group}/{name}: {:.1} MiB/s (all timed work, warm-up included){ratio}",
                tp / (1024.0 * 1024.0)
            );
        }
    }
}

/// A small, fast, deterministic pseudo-random generator (xorshift64*) for values and offsets.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x2545_f491_4f6c_dd1d
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `[lo, hi)`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
}
