//! `brook-bench tls`: what security costs. The same `brook-broker` binary runs in each
//! [`Mode`] (plain text; mutual TLS with a throw-away CA, certificates from rcgen; mutual TLS
//! with authorization and ACLs; plain text with JWT bearer tokens), one after the other in
//! each round, each a fresh process with `flush = never`. The suite's `produce-max` and
//! `consume` workloads run against each with brook-client, and the report gives every
//! repetition, the medians and each mode's ratio to plain text.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use brook_client::{Connection, Security};
use brook_proto::v1::{AclBinding, CreateAclsRequest};
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
    /// The modes, in the order each round runs them; plain text is always measured.
    pub modes: Vec<Mode>,
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
            modes: Mode::ALL.to_vec(),
            broker_bin: sibling_binary("brook-broker"),
        }
    }
}

/// How the broker and the client talk in one measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS, no authentication.
    Plaintext,
    /// Mutual TLS: the client presents a certificate.
    Mtls,
    /// Mutual TLS with `[authorization]` on: the client is no super-user, and its rights
    /// come from ACLs among 200 others.
    MtlsAcl,
    /// Plain text with `auth.required`: every request carries an HS256 JWT.
    Token,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 4] = [Mode::Plaintext, Mode::Mtls, Mode::MtlsAcl, Mode::Token];

    /// The name `--modes` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plaintext => "plaintext",
            Mode::Mtls => "mtls",
            Mode::MtlsAcl => "mtls-acl",
            Mode::Token => "token",
        }
    }

    /// Parses a `--modes` entry.
    pub fn parse(name: &str) -> Result<Mode, String> {
        (Mode::ALL.into_iter())
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode {name:?}: one of {}", names.join(", "))
            })
    }
}

/// What each mode needs: the broker's environment and the client's settings.
struct Setups {
    mtls_env: Vec<(&'static str, PathBuf)>,
    token_env: Vec<(&'static str, PathBuf)>,
    client: Security,
    admin: Security,
    token: Security,
}

impl Setups {
    fn new(dir: &std::path::Path) -> anyhow::Result<Setups> {
        let ca = Ca::new(dir, "bench");
        let broker = ca.issue(&Leaf::loopback("broker"));
        let client = ca.issue(&Leaf::loopback("bench"));
        let admin = ca.issue(&Leaf::loopback("admin"));
        let secret = dir.join("jwt.secret");
        let secret_text = "brook-bench-secret-0123456789abc";
        std::fs::write(&secret, secret_text)?;
        let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({ "sub": "bench", "aud": "brook-bench", "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(secret_text.as_bytes())?,
        )?;
        Ok(Setups {
            mtls_env: vec![
                ("BROOK_TLS_CERT_FILE", broker.cert.clone()),
                ("BROOK_TLS_KEY_FILE", broker.key.clone()),
                ("BROOK_TLS_CA_FILE", ca.cert.clone()),
                ("BROOK_TLS_CLIENT_AUTH", "required".into()),
            ],
            token_env: vec![
                ("BROOK_AUTH_REQUIRED", "true".into()),
                ("BROOK_AUTH_JWT_HS256_SECRET_FILE", secret),
                ("BROOK_AUTH_JWT_AUDIENCE", "brook-bench".into()),
            ],
            client: Security::tls_from_files(&ca.cert)?
                .with_client_certificate_files(&client.cert, &client.key)?,
            admin: Security::tls_from_files(&ca.cert)?
                .with_client_certificate_files(&admin.cert, &admin.key)?,
            token: Security::plaintext().with_token(&token)?,
        })
    }

    fn env(&self, mode: Mode) -> Vec<(&'static str, PathBuf)> {
        match mode {
            Mode::Plaintext => Vec::new(),
            Mode::Mtls => self.mtls_env.clone(),
            Mode::MtlsAcl => {
                let mut env = self.mtls_env.clone();
                env.push(("BROOK_AUTHORIZATION_ENABLED", "true".into()));
                env.push(("BROOK_AUTHORIZATION_SUPER_USERS", "User:admin".into()));
                env
            }
            Mode::Token => self.token_env.clone(),
        }
    }

    fn client(&self, mode: Mode) -> Security {
        match mode {
            Mode::Plaintext => Security::plaintext(),
            Mode::Mtls | Mode::MtlsAcl => self.client.clone(),
            Mode::Token => self.token.clone(),
        }
    }

    /// With authorization on: grants the bench principal every topic and group, among 200
    /// ACLs of other principals that each request's check walks past.
    async fn grant(&self, mode: Mode, addr: &str) -> anyhow::Result<()> {
        if mode != Mode::MtlsAcl {
            return Ok(());
        }
        let acl =
            |principal: String, resource_type: &str, pattern: &str, name: String, op: &str| {
                AclBinding {
                    principal,
                    resource_type: resource_type.into(),
                    pattern_type: pattern.into(),
                    resource_name: name,
                    operation: op.into(),
                    permission: "allow".into(),
                }
            };
        let mut acls = vec![
            acl("User:bench".into(), "topic", "literal", "*".into(), "all"),
            acl("User:bench".into(), "group", "literal", "*".into(), "all"),
        ];
        for i in 0..100 {
            for op in ["read", "write"] {
                let (who, prefix) = (format!("User:team-{i}"), format!("team-{i}-"));
                acls.push(acl(who, "topic", "prefixed", prefix, op));
            }
        }
        let admin = Connection::connect_with(addr, &self.admin).await?;
        admin
            .admin()
            .create_acls(CreateAclsRequest { acls })
            .await?;
        Ok(())
    }
}

/// One workload's rates (msg/s) and broker CPU (cores) per mode, by repetition.
struct Row {
    workload: String,
    rates: Vec<Vec<f64>>,
    cpu: Vec<Vec<f64>>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison and returns the report (markdown).
pub async fn run(o: &TlsOptions) -> anyhow::Result<String> {
    let scratch = tempfile::tempdir()?;
    let setups = Setups::new(scratch.path())?;
    let mut modes = vec![Mode::Plaintext];
    modes.extend(o.modes.iter().filter(|m| **m != Mode::Plaintext));
    let mut options = CompareOptions::new(scratch.path().join("unused"));
    options.duration = o.duration;
    options.warmup = o.warmup;
    options.consume_messages = o.consume_messages;
    options.workloads = vec!["produce-max".into(), "consume".into()];
    let workloads = suite(&options);
    let mut rows: Vec<Row> = (workloads.iter())
        .map(|w| Row {
            workload: w.name.clone(),
            rates: vec![Vec::new(); modes.len()],
            cpu: vec![Vec::new(); modes.len()],
        })
        .collect();
    let bar = ProgressBar::hidden();
    for round in 0..o.repeat.max(1) {
        for (m, mode) in modes.iter().enumerate() {
            let env = setups.env(*mode);
            let env: Vec<(&str, &std::path::Path)> =
                env.iter().map(|(k, v)| (*k, v.as_path())).collect();
            let process =
                BrookProcess::start_with(&o.broker_bin, scratch.path(), Durability::NoFsync, &env)?;
            setups.grant(*mode, &process.addr).await?;
            let target = Target::Brook {
                addr: process.addr.clone(),
                security: setups.client(*mode),
            };
            for (w, row) in workloads.iter().zip(&mut rows) {
                let result = run_case(&target, process.pid(), w, Durability::NoFsync, &bar).await?;
                eprintln!(
                    "round {} {:>9} {:>12}: {:>9.0} msg/s  cpu {:.2}",
                    round + 1,
                    mode.name(),
                    w.name,
                    result.msgs_per_sec,
                    result.broker_cpu_cores
                );
                row.rates[m].push(result.msgs_per_sec);
                row.cpu[m].push(result.broker_cpu_cores);
            }
        }
    }
    let m = machine(scratch.path());
    let mut md = String::new();
    writeln!(
        md,
        "# Security's cost: TLS, authorization and tokens against plain text\n"
    )?;
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
        "- **Setup:** one brook-broker, flush = never, a fresh process per mode and round; {} rounds, each running the modes in the order of the table; 1 KiB messages, 4 partitions, acks=all, 256 KiB batches, 5 ms linger.",
        o.repeat.max(1)
    )?;
    writeln!(
        md,
        "- **Modes:** plaintext: no TLS, no authentication. mtls: mutual TLS (client certificate required), TLS 1.3 with rustls on ring. mtls-acl: mtls with `[authorization]` on; the client is no super-user and is allowed by ACLs among 200 others. token: plain text, `auth.required`, an HS256 JWT on every request.\n"
    )?;
    writeln!(
        md,
        "| workload | mode | msg/s (median) | / plaintext | broker CPU (cores) | runs |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    let runs = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.0}k", r / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for row in &rows {
        let plain = median(&row.rates[0]);
        for (i, mode) in modes.iter().enumerate() {
            let rate = median(&row.rates[i]);
            writeln!(
                md,
                "| {} | {} | {:.1}k | **{:.2}** | {:.2} | {} |",
                row.workload,
                mode.name(),
                rate / 1000.0,
                rate / plain,
                median(&row.cpu[i]),
                runs(&row.rates[i])
            )?;
        }
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name_and_unknown_ones_are_named() {
        for mode in Mode::ALL {
            assert_eq!(Mode::parse(mode.name()), Ok(mode));
        }
        assert_eq!(
            Mode::parse("sasl"),
            Err("unknown mode \"sasl\": one of plaintext, mtls, mtls-acl, token".to_string())
        );
    }
}
