//! The `compare` command: per durability class, starts each system alone, warms it up, runs
//! the suite on it and stops it, then the next; cross-checks the Kafka driver with Kafka's own `ProducerPerformance`, and writes the
//! report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use brook_client::Security;
use indicatif::{ProgressBar, ProgressStyle};

use super::driver::{ProducerSettings, Target};
use super::model::{Case, CrossCheck, Latency, Report, SystemResult};
use super::render;
use super::systems::{BrookProcess, Durability, Usage, machine, sibling_binary, start_kafka};
use super::workload::{self, Kind, Workload};

/// Options of `brook-bench compare`.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Measured seconds per workload.
    pub duration: Duration,
    /// Warm-up per workload.
    pub warmup: Duration,
    /// Messages of the consume workload.
    pub consume_messages: u64,
    /// Messages of the cross-check.
    pub cross_check_messages: u64,
    /// Durability classes to run.
    pub durability: Vec<Durability>,
    /// Where the report goes.
    pub out: PathBuf,
    /// The `brook-broker` binary.
    pub broker_bin: PathBuf,
    /// The command line, for the report.
    pub command: String,
    /// Which systems run: `brook`, `kafka` or both (default).
    pub systems: Vec<String>,
    /// Which workloads of the suite run, by key (see [`WORKLOAD_KEYS`]); all by default.
    pub workloads: Vec<String>,
    /// Repetitions: each system runs the whole suite this many times, alternating with the
    /// other, and each case reports its median run.
    pub repeat: usize,
    /// Message payload bytes of every workload.
    pub size: usize,
    /// Topic partitions of every workload.
    pub partitions: u32,
    /// Producers of every workload.
    pub producers: usize,
    /// Consumers of the consume and end-to-end workloads (the group workload has at least 2).
    pub consumers: usize,
    /// Producer settings of every workload.
    pub settings: ProducerSettings,
    /// The fixed rate of the produce and end-to-end workloads, MB/s (the group workload runs
    /// at 40 % of it).
    pub rate_mb: f64,
}

impl CompareOptions {
    /// Defaults: 10 s measured after 3 s of warm-up, both durability classes, the broker next
    /// to this binary.
    pub fn new(out: PathBuf) -> CompareOptions {
        CompareOptions {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(3),
            consume_messages: 3_000_000,
            cross_check_messages: 1_000_000,
            durability: vec![Durability::NoFsync, Durability::FsyncEveryWrite],
            out,
            broker_bin: sibling_binary("brook-broker"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            systems: vec!["brook".into(), "kafka".into()],
            workloads: WORKLOAD_KEYS.iter().map(|k| k.to_string()).collect(),
            repeat: 1,
            size: 1024,
            partitions: 4,
            producers: 1,
            consumers: 1,
            settings: default_settings(),
            rate_mb: 50.0,
        }
    }
}

/// Kafka's recommended producer settings, shared by both systems: idempotent acks=all, 5 ms
/// linger, 256 KiB batches, no compression.
pub fn default_settings() -> ProducerSettings {
    ProducerSettings {
        batch_bytes: 256 * 1024,
        linger_ms: 5,
        compression: "none".into(),
        acks: "all".into(),
    }
}

/// Keys of the suite's workloads, in the order they run: `--workloads` picks among them.
pub const WORKLOAD_KEYS: [&str; 5] = ["produce-max", "produce-rate", "consume", "e2e", "group-e2e"];

/// The standard suite (the workloads `o.workloads` names), by default 1 KiB messages over 4 partitions at 50 MB/s where the rate
/// is fixed. The workload names carry the rates.
pub fn suite(o: &CompareOptions) -> Vec<Workload> {
    let base = Workload {
        name: String::new(),
        kind: Kind::Produce,
        size: o.size,
        partitions: o.partitions,
        producers: o.producers,
        consumers: o.consumers,
        settings: o.settings.clone(),
        rate_mb: None,
        warmup: o.warmup,
        duration: o.duration,
        consume_messages: o.consume_messages,
    };
    let w = |name: &str, kind: Kind, rate_mb: Option<f64>, consumers: usize| Workload {
        name: name.into(),
        kind,
        rate_mb,
        consumers,
        ..base.clone()
    };
    let (rate, group_rate) = (o.rate_mb, o.rate_mb * 0.4);
    let c = o.consumers;
    let all = [
        w("produce-max", Kind::Produce, None, c),
        w(&format!("produce-{rate}MBps"), Kind::Produce, Some(rate), c),
        w("consume", Kind::Consume, None, c),
        w(&format!("e2e-{rate}MBps"), Kind::EndToEnd, Some(rate), c),
        w(
            &format!("group-e2e-{group_rate}MBps"),
            Kind::GroupEndToEnd,
            Some(group_rate),
            c.max(2),
        ),
    ];
    WORKLOAD_KEYS
        .iter()
        .zip(all)
        .filter(|(key, _)| o.workloads.iter().any(|k| k == *key))
        .map(|(_, w)| w)
        .collect()
}

fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    let curve = [
        0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
    ]
    .iter()
    .map(|&p| (p, h.value_at_percentile(p)))
    .collect();
    Latency {
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        curve,
    }
}

/// Runs workload `w` once on a fresh topic of `target` (whose broker is process `pid`) and
/// measures it.
pub async fn run_case(
    target: &Target,
    pid: u32,
    w: &Workload,
    durability: Durability,
    bar: &ProgressBar,
) -> anyhow::Result<SystemResult> {
    let topic = format!("{}-{}-{}", w.name, durability.name(), target.name());
    target.create_topic(&topic, w.partitions).await?;
    bar.set_message(format!("{} on {}", w.name, target.name()));
    bar.set_position(0);
    write_back_dirty_pages().await?;
    let usage = Usage::start(pid);
    let m = workload::run(target, w, &topic, |f| bar.set_position((f * 1000.0) as u64))
        .await
        .with_context(|| format!("{} on {}", w.name, target.name()))?;
    let (cpu, rss) = usage.finish();
    let msgs_per_sec = m.messages as f64 / m.seconds.max(1e-9);
    Ok(SystemResult {
        system: target.name().into(),
        msgs_per_sec,
        mb_per_sec: msgs_per_sec * w.size as f64 / 1e6,
        latency_us: m.latency.as_ref().map(latency),
        broker_cpu_cores: cpu,
        broker_peak_rss_bytes: rss,
        messages: m.messages,
        seconds: m.seconds,
        runs_msgs_per_sec: Vec::new(),
    })
}

/// Writes every dirty page cache page back to disk (`sync`) before a case starts. Without
/// it a case inherits the previous case's unwritten gigabytes: the kernel throttles writers
/// once dirty data passes `vm.dirty_ratio`, so a case's throughput would depend on what ran
/// before it rather than on the system measured.
async fn write_back_dirty_pages() -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("running sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// Kafka's `ProducerPerformance` beside our rdkafka driver with the same settings.
async fn cross_check(
    kafka: &brook_tests::kafka::KafkaCluster,
    messages: u64,
) -> anyhow::Result<CrossCheck> {
    let s = default_settings();
    let target = Target::Kafka {
        bootstrap: kafka.bootstrap(),
    };
    // Ours: as fast as it goes, the same message count, timed to the last acknowledgement.
    let ours = Workload {
        name: "cross-check".into(),
        kind: Kind::Consume,
        size: 1024,
        partitions: 4,
        producers: 1,
        consumers: 1,
        settings: s.clone(),
        rate_mb: None,
        warmup: Duration::ZERO,
        duration: Duration::ZERO,
        consume_messages: messages,
    };
    target.create_topic("cross-check-rdkafka", 4).await?;
    let producer = target.producer(&s).await?;
    let filler = bytes::Bytes::from(vec![b'x'; ours.size]);
    let started = std::time::Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..messages {
        let key = bytes::Bytes::from(format!("k{}", i % 1024));
        acks.push(
            producer
                .send("cross-check-rdkafka", Some(key), filler.clone())
                .await?,
        );
        while acks.len() > 100_000 {
            futures::StreamExt::next(&mut acks)
                .await
                .expect("non-empty")?;
        }
    }
    while let Some(r) = futures::StreamExt::next(&mut acks).await {
        r?;
    }
    let rdkafka = messages as f64 / started.elapsed().as_secs_f64();
    target.create_topic("cross-check-java", 4).await?;
    let bootstrap = format!("bootstrap.servers={}", kafka.bootstrap());
    let props = [
        bootstrap.as_str(),
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "batch.size=262144",
        "compression.type=none",
        "buffer.memory=67108864",
    ];
    let n = messages.to_string();
    let mut args = vec![
        "--topic",
        "cross-check-java",
        "--num-records",
        n.as_str(),
        "--record-size",
        "1024",
        "--throughput",
        "-1",
        "--producer-props",
    ];
    args.extend(props);
    let out = kafka.tool("org.apache.kafka.tools.ProducerPerformance", &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The summary: "N records sent, X records/sec (Y MB/sec), ...".
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .context("no ProducerPerformance summary")?;
    let java: f64 = summary
        .split(',')
        .nth(1)
        .and_then(|f| f.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot read {summary:?}"))?;
    Ok(CrossCheck {
        parameters: ours.parameters(),
        rdkafka_msgs_per_sec: rdkafka,
        java_msgs_per_sec: java,
    })
}

fn now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    out.map_or("unknown".into(), |o| {
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    })
}

/// A started system, stopped when dropped.
enum Running {
    /// Held only to be dropped (SIGTERM) when the system's turn ends.
    #[allow(dead_code)]
    Brook(BrookProcess),
    Kafka(brook_tests::kafka::KafkaCluster),
}

async fn start_system(
    o: &CompareOptions,
    system: &str,
    durability: Durability,
    scratch: &Path,
) -> anyhow::Result<(Target, u32, Running)> {
    if system == "brook" {
        let brook = BrookProcess::start(&o.broker_bin, scratch, durability)?;
        let target = Target::Brook {
            addr: brook.addr.clone(),
            security: Security::plaintext(),
        };
        Ok((target, brook.pid(), Running::Brook(brook)))
    } else {
        let kafka = tokio::task::spawn_blocking(move || start_kafka(durability)).await??;
        let pid = kafka.pid(1).context("Kafka's pid")?;
        let target = Target::Kafka {
            bootstrap: kafka.bootstrap(),
        };
        Ok((target, pid, Running::Kafka(kafka)))
    }
}

/// Runs the comparison and writes `report.json`, `report.md` and the charts into `o.out`.
pub async fn compare(o: &CompareOptions) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&o.out)?;
    let scratch = tempfile::tempdir()?;
    let mut report = Report {
        started: now_rfc3339(),
        command: o.command.clone(),
        machine: machine(scratch.path()),
        cases: Vec::new(),
        cross_check: None,
    };
    let workloads = suite(o);
    anyhow::ensure!(!workloads.is_empty(), "no workload selected");
    let bar = ProgressBar::new(1000);
    bar.set_style(ProgressStyle::with_template("{prefix:>18} {bar:30} {msg}").expect("template"));
    for &durability in &o.durability {
        bar.set_prefix(durability.name());
        let first = report.cases.len();
        for w in &workloads {
            report.cases.push(Case {
                workload: w.name.clone(),
                kind: w.kind.name().into(),
                durability: durability.name().into(),
                parameters: w.parameters(),
                results: Vec::new(),
            });
        }
        // One system at a time, alone on the machine: started, warmed up, measured, stopped.
        let mut runs: Vec<Vec<SystemResult>> = vec![Vec::new(); workloads.len() * 2];
        let order = ["brook", "kafka"];
        for (rep, system) in (0..o.repeat.max(1)).flat_map(|r| order.iter().map(move |s| (r, *s))) {
            if !o.systems.iter().any(|s| s == system) {
                continue;
            }
            bar.set_message(format!("starting {system}"));
            let (target, pid, running) =
                start_system(o, system, durability, scratch.path()).await?;
            // An unrecorded run first (the JVM's JIT above all), so the first workload
            // measures a warm broker as the others do.
            let warm = Workload {
                name: "warm-up".into(),
                kind: Kind::Produce,
                rate_mb: None,
                warmup: Duration::ZERO,
                duration: o.warmup * 3,
                ..workloads[0].clone()
            };
            bar.set_message(format!("warming up {system}"));
            let topic = format!("warm-up-{}-{system}", durability.name());
            target.create_topic(&topic, warm.partitions).await?;
            workload::run(&target, &warm, &topic, |f| {
                bar.set_position((f * 1000.0) as u64)
            })
            .await?;
            for (i, w) in workloads.iter().enumerate() {
                let r = run_case(&target, pid, w, durability, &bar).await?;
                let line = format!(
                    "{:>18} {:>18} {:>6}: {:>9.0} msg/s {:>7.1} MB/s  p99 {} µs  cpu {:.2}  rss {} MiB",
                    durability.name(),
                    w.name,
                    r.system,
                    r.msgs_per_sec,
                    r.mb_per_sec,
                    r.latency_us
                        .as_ref()
                        .map_or("-".into(), |l| l.p99.to_string()),
                    r.broker_cpu_cores,
                    r.broker_peak_rss_bytes >> 20
                );
                // indicatif prints nothing when stderr is not a terminal.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
                let slot = i * 2 + usize::from(system == "kafka");
                runs[slot].push(r);
            }
            if let Running::Kafka(kafka) = &running
                && rep == 0
                && durability == Durability::NoFsync
                && o.cross_check_messages > 0
            {
                bar.set_message("cross-check: rdkafka vs ProducerPerformance");
                report.cross_check = Some(cross_check(kafka, o.cross_check_messages).await?);
            }
            drop(running);
        }
        for (slot, mut results) in runs.into_iter().enumerate() {
            if results.is_empty() {
                continue;
            }
            let all: Vec<f64> = results.iter().map(|r| r.msgs_per_sec).collect();
            // The median run: by throughput, or by p99 latency where the rate was fixed (every
            // run then has the same throughput).
            if workloads[slot / 2].rate_mb.is_some() {
                let p99 = |r: &SystemResult| r.latency_us.as_ref().map_or(0, |l| l.p99);
                results.sort_by_key(p99);
            } else {
                results.sort_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec));
            }
            let mut median = results.swap_remove(results.len() / 2);
            median.runs_msgs_per_sec = all;
            report.cases[first + slot / 2].results.push(median);
        }
    }
    bar.finish_and_clear();
    write(&report, &o.out)?;
    Ok(report)
}

/// Writes `report.json`, `report.md` and the charts.
pub fn write(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    render::charts(report, out)?;
    std::fs::write(out.join("report.md"), render::markdown(report))?;
    Ok(())
}
