//! The systems under test as processes: a `brook-broker` child and a Kafka from
//! scripts/kafka.sh, each with its durability class; their CPU and peak memory read from
//! `/proc`; and a description of the machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use brook_tests::kafka::KafkaCluster;

use super::model::Machine;

/// How much each system writes to disk before acknowledging: the two classes compared like
/// with like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Brook `flush = never`; Kafka's default (no fsync, the page cache and replication are
    /// the durability).
    NoFsync,
    /// Brook `flush = always` (fsync before acknowledging, grouped); Kafka
    /// `flush.messages=1` (fsync after every write).
    FsyncEveryWrite,
}

impl Durability {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Durability::NoFsync => "no-fsync",
            Durability::FsyncEveryWrite => "fsync-every-write",
        }
    }

    fn brook_flush(self) -> &'static str {
        match self {
            Durability::NoFsync => "never",
            Durability::FsyncEveryWrite => "always",
        }
    }

    fn kafka_properties(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Durability::NoFsync => vec![],
            Durability::FsyncEveryWrite => vec![("log.flush.interval.messages", "1")],
        }
    }
}

/// A running `brook-broker`, stopped (SIGTERM) on drop.
pub struct BrookProcess {
    child: Child,
    /// Its gRPC address.
    pub addr: String,
    _data: tempfile::TempDir,
}

impl BrookProcess {
    /// Starts `bin` on free loopback ports with a fresh data directory under `parent` and the
    /// durability class's flush policy.
    pub fn start(bin: &Path, parent: &Path, durability: Durability) -> anyhow::Result<Self> {
        BrookProcess::start_with(bin, parent, durability, &[])
    }

    /// [`BrookProcess::start`] with extra environment (`BROOK_TLS_*`, for one).
    pub fn start_with(
        bin: &Path,
        parent: &Path,
        durability: Durability,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Self> {
        let data = tempfile::tempdir_in(parent)?;
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .env("BROOK_LOG_FLUSH", durability.brook_flush())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(addr) = line
            .strip_prefix("brook-broker listening grpc=")
            .and_then(|rest| rest.split_whitespace().next())
        else {
            let _ = child.kill();
            bail!("brook-broker did not start: {line:?}");
        };
        Ok(BrookProcess {
            addr: addr.to_string(),
            child,
            _data: data,
        })
    }

    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BrookProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts a one-node Kafka in the durability class.
pub fn start_kafka(durability: Durability) -> anyhow::Result<KafkaCluster> {
    KafkaCluster::start_with(1, &durability.kafka_properties())
}

/// CPU time and peak memory of one process over a measured window.
pub struct Usage {
    pid: u32,
    cpu_ticks: u64,
    started: Instant,
}

fn proc_ticks(pid: u32) -> u64 {
    let Some(fields) = crate::procs::stat_fields(pid) else {
        return 0;
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Usage {
    /// Starts measuring `pid`: resets its peak resident set (`clear_refs` 5) so the peak read
    /// at the end is this window's.
    pub fn start(pid: u32) -> Usage {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        Usage {
            pid,
            cpu_ticks: proc_ticks(pid),
            started: Instant::now(),
        }
    }

    /// (cores busy on average, peak resident bytes) since `start`.
    pub fn finish(&self) -> (f64, u64) {
        // Linux reports CPU time in 1/100 s (USER_HZ) whatever the kernel's tick.
        let cpu = (proc_ticks(self.pid) - self.cpu_ticks) as f64 / 100.0;
        let cores = cpu / self.started.elapsed().as_secs_f64();
        (cores, status_kib(self.pid, "VmHWM:") * 1024)
    }
}

/// The machine: CPU, cores, memory, kernel, and the file system under `data_dir`.
pub fn machine(data_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |s| s.trim().to_string());
    let disk = Command::new("df")
        .args(["--output=fstype,source"])
        .arg(data_dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" on "))
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: memory_kib * 1024,
        kernel,
        disk,
    }
}

/// A binary next to the running one (`brook-broker` beside `brook-bench`).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .with_file_name(name)
}
