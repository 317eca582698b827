//! The results of a comparison run, as written to the JSON report and rendered into markdown
//! and charts.

use serde::{Deserialize, Serialize};

/// A whole `brook-bench compare` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// The command line that produced it.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// One entry per workload and durability class, each with every system's result.
    pub cases: Vec<Case>,
    /// Kafka's own `ProducerPerformance` beside our rdkafka driver, same settings.
    pub cross_check: Option<CrossCheck>,
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// The data directories' file system and device (e.g. `ext4 on /dev/vda1`).
    pub disk: String,
}

/// One workload in one durability class, run on each system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    /// Workload name, e.g. `produce-1k-max` or `e2e-1k-50MBps`.
    pub workload: String,
    /// `produce`, `consume`, `end-to-end` or `group-end-to-end`.
    pub kind: String,
    /// `no-fsync` (Brook flush=never, Kafka default) or `fsync-every-write` (Brook
    /// flush=always, Kafka flush.messages=1).
    pub durability: String,
    /// The parameters, as `key=value` strings for the table (size, partitions, producers,
    /// consumers, batch, linger, compression, acks, rate).
    pub parameters: Vec<String>,
    /// `brook` and `kafka`, in that order when both ran.
    pub results: Vec<SystemResult>,
}

/// One system's numbers for one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemResult {
    /// `brook` or `kafka`.
    pub system: String,
    /// Messages per second over the measured window (warm-up excluded).
    pub msgs_per_sec: f64,
    /// MB per second (10^6 bytes of message payload).
    pub mb_per_sec: f64,
    /// Latency percentiles, microseconds: produce acknowledgement latency for `produce`,
    /// end-to-end (scheduled send to receipt) for the end-to-end kinds, empty for `consume`.
    pub latency_us: Option<Latency>,
    /// Broker CPU over the measured window: cores busy on average (1.0 = one core).
    pub broker_cpu_cores: f64,
    /// Broker peak resident memory during the case, bytes.
    pub broker_peak_rss_bytes: u64,
    /// Messages measured.
    pub messages: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Messages per second of every repetition; the other fields are the median one's.
    #[serde(default)]
    pub runs_msgs_per_sec: Vec<f64>,
}

/// Latency percentiles in microseconds, and points of the percentile curve for charts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
    /// (percentile in 0..=100, microseconds), ascending: the curve to draw.
    pub curve: Vec<(f64, u64)>,
}

/// Our rdkafka driver against Kafka's own `ProducerPerformance` on the same broker and
/// settings: shows the driver does not undersell Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossCheck {
    /// The settings both ran with.
    pub parameters: Vec<String>,
    /// Our driver, messages per second.
    pub rdkafka_msgs_per_sec: f64,
    /// `ProducerPerformance`, messages per second.
    pub java_msgs_per_sec: f64,
}

impl Case {
    /// The result of `system`, if it ran.
    pub fn result(&self, system: &str) -> Option<&SystemResult> {
        self.results.iter().find(|r| r.system == system)
    }
}
