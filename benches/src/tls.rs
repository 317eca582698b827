//! `brook-bench tls`: what TLS costs. The same `brook-broker` binary runs plain text and
//! with mutual TLS (a throw-away CA, certificates from rcgen), alternately, each a fresh
//! process with `flush = never`; the suite's `produce-max` and `consume` workloads run
//! against each with brook-client, and the report gives every repetition, the medians and
//! the TLS / plain-text ratio.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use brook_client::Security;
use brook_tests::pki::{Ca, Leaf};
use indicatif::ProgressBar;

use crate::compare::driver::Target;
use crate::compare::runner::{CompareOptions, run_case, suite};
use crate::compare::systems::{BrookProcess, Durability, machine, sibling_binary};

/// Options of `brook-bench tls`.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Measured time per workload.
    pub duration: Duration,
    /// Warm-up per workload.
    pub warmup: Duration,
    /// Messages the consume workload reads.
    pub consume_messages: u64,
    /// Repetitions (the modes alternate).
    pub repeat: usize,
    /// The `brook-broker` binary.
    pub broker_bin: PathBuf,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(3),
            consume_messages: 3_000_000,
            repeat: 3,
            broker_bin: sibling_binary("brook-broker"),
        }
    }
}

/// One workload's rates (msg/s) in each mode, by repetition.
struct Row {
    workload: String,
    plain: Vec<f64>,
    tls: Vec<f64>,
    plain_cpu: Vec<f64>,
    tls_cpu: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison and returns the report (markdown).
pub async fn run(o: &TlsOptions) -> anyhow::Result<String> {
    let scratch = tempfile::tempdir()?;
    let ca = Ca::new(scratch.path(), "bench");
    let broker = ca.issue(&Leaf::loopback("broker"));
    let client = ca.issue(&Leaf::loopback("bench"));
    let security = Security::tls_from_files(&ca.cert)?
        .with_client_certificate_files(&client.cert, &client.key)?;
    let tls_env = [
        ("BROOK_TLS_CERT_FILE", broker.cert.as_path()),
        ("BROOK_TLS_KEY_FILE", broker.key.as_path()),
        ("BROOK_TLS_CA_FILE", ca.cert.as_path()),
        ("BROOK_TLS_CLIENT_AUTH", "required".as_ref()),
    ];
    let mut options = CompareOptions::new(scratch.path().join("unused"));
    options.duration = o.duration;
    options.warmup = o.warmup;
    options.consume_messages = o.consume_messages;
    options.workloads = vec!["produce-max".into(), "consume".into()];
    let workloads = suite(&options);
    let mut rows: Vec<Row> = (workloads.iter())
        .map(|w| Row {
            workload: w.name.clone(),
            plain: Vec::new(),
            tls: Vec::new(),
            plain_cpu: Vec::new(),
            tls_cpu: Vec::new(),
        })
        .collect();
    let bar = ProgressBar::hidden();
    for round in 0..o.repeat.max(1) {
        for with_tls in [false, true] {
            let env: &[(&str, &std::path::Path)] = if with_tls { &tls_env } else { &[] };
            let process =
                BrookProcess::start_with(&o.broker_bin, scratch.path(), Durability::NoFsync, env)?;
            let target = Target::Brook {
                addr: process.addr.clone(),
                security: if with_tls {
                    security.clone()
                } else {
                    Security::plaintext()
                },
            };
            for (w, row) in workloads.iter().zip(&mut rows) {
                let result = run_case(&target, process.pid(), w, Durability::NoFsync, &bar).await?;
                let mode = if with_tls { "tls" } else { "plaintext" };
                eprintln!(
                    "round {} {:>9} {:>12}: {:>9.0} msg/s  cpu {:.2}",
                    round + 1,
                    mode,
                    w.name,
                    result.msgs_per_sec,
                    result.broker_cpu_cores
                );
                let (rates, cpu) = if with_tls {
                    (&mut row.tls, &mut row.tls_cpu)
                } else {
                    (&mut row.plain, &mut row.plain_cpu)
                };
                rates.push(result.msgs_per_sec);
                cpu.push(result.broker_cpu_cores);
            }
        }
    }
    let m = machine(scratch.path());
    let mut md = String::new();
    writeln!(md, "# TLS against plain text\n")?;
    writeln!(
        md,
        "- **Machine:** {}, {} cores, {:.1} GiB memory, kernel {}, disk {}",
        m.cpu,
        m.cores,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        m.disk
    )?;
    writeln!(
        md,
        "- **Setup:** one brook-broker, flush = never; TLS is mutual (client certificate required), TLS 1.3 with rustls on ring; {} rounds alternating plain text and TLS, fresh broker each time; 1 KiB messages, 4 partitions, acks=all, 256 KiB batches, 5 ms linger.\n",
        o.repeat.max(1)
    )?;
    writeln!(
        md,
        "| workload | plain text msg/s | TLS msg/s | TLS / plain | broker CPU plain | broker CPU TLS | runs plain | runs TLS |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|")?;
    let runs = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.0}k", r / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for row in &rows {
        let (plain, tls) = (median(&row.plain), median(&row.tls));
        writeln!(
            md,
            "| {} | {:.1}k | {:.1}k | **{:.2}** | {:.2} | {:.2} | {} | {} |",
            row.workload,
            plain / 1000.0,
            tls / 1000.0,
            tls / plain,
            median(&row.plain_cpu),
            median(&row.tls_cpu),
            runs(&row.plain),
            runs(&row.tls)
        )?;
    }
    Ok(md)
}
