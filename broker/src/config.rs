//! The broker's configuration: one serde tree with documented defaults, read from a TOML file,
//! overridden by environment variables, then validated.
//!
//! Precedence, lowest first: the defaults below, the TOML file, `BROOK_<SECTION>_<KEY>`
//! environment variables ([`BrokerConfig::load`]). The binary applies its command-line flags to
//! the loaded value and calls [`BrokerConfig::validate`] again.
//!
//! `broker/brook-broker.example.toml` lists every key with its default and what it does; a
//! unit test keeps it equal to [`BrokerConfig::default`].
//!
//! In the `[log]` section `segment_ms`, `retention_ms` and `retention_bytes` take `-1` for
//! "unlimited" (Kafka's convention, also used by the topic configs), since TOML has no null.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::{ConfigError, LogConfig};

/// The sections of the file, which are also the `<SECTION>` of an environment override.
const SECTIONS: [&str; 9] = [
    "server",
    "log",
    "retention",
    "groups",
    "cluster",
    "tls",
    "auth",
    "authorization",
    "logging",
];

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "BROOK_";

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;
/// Longest timeout or wait any setting accepts: one hour.
const HOUR_MS: u64 = 3_600_000;

/// Everything the broker reads at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Identity, listeners, request limits and timeouts.
    pub server: ServerConfig,
    /// Storage settings of new topics, unless their topic configs override them.
    pub log: LogConfig,
    /// The background retention task.
    pub retention: RetentionConfig,
    /// Consumer-group timeouts.
    pub groups: GroupsConfig,
    /// Cluster membership: the controller quorum's voters and broker liveness.
    pub cluster: ClusterConfig,
    /// TLS on the listeners and between brokers (docs/security.md).
    pub tls: TlsConfig,
    /// Who requests come from: bearer tokens and client certificates (docs/security.md).
    pub auth: AuthConfig,
    /// What each principal may do: ACLs, super-users, the audit log (docs/security.md).
    pub authorization: AuthorizationConfig,
    /// The broker's own diagnostic output (tracing).
    pub logging: LoggingConfig,
}

/// Identity, listeners, request limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// This broker's id in the cluster, unique among the brokers (default 1; 0..=2^31-1).
    pub node_id: i32,
    /// gRPC listener (default `127.0.0.1:7400`).
    pub listen: SocketAddr,
    /// HTTP listener for `/health`, `/ready` and `/metrics` (default `127.0.0.1:7401`).
    pub http_listen: SocketAddr,
    /// Root of the partition directories and broker metadata (default `./data`).
    pub data_dir: PathBuf,
    /// Largest gRPC request accepted (default 16 MiB; 1 KiB..=1 GiB). At least
    /// `log.max_batch_bytes`, or the largest batch could never be produced.
    pub max_request_bytes: usize,
    /// Client connections served at once (default 1024; 1..=100 000).
    pub max_connections: usize,
    /// Partitions of a topic created without a count, e.g. by the command-line tool
    /// (default 1; 1..=10 000, at most `max_partitions_per_topic`).
    pub default_partitions: u32,
    /// Most partitions one topic may have (default 10 000; 1..=100 000).
    pub max_partitions_per_topic: u32,
    /// Most bytes one fetch response carries over all its partitions (Kafka
    /// `fetch.max.bytes`; default 50 MiB; 1 KiB..=1 GiB). A first batch larger than this is
    /// still returned whole so consumers make progress.
    pub fetch_max_bytes: usize,
    /// Most bytes one fetch response carries per partition (Kafka
    /// `max.partition.fetch.bytes`; default 1 MiB; 1 KiB..=1 GiB).
    pub fetch_partition_max_bytes: usize,
    /// Cap on a fetch's `max_wait_ms` (default 30 000; 0..=3 600 000). 0: fetches never wait.
    pub max_fetch_wait_ms: u64,
    /// How long a produce waits for its acknowledgements (acks=all) before failing with a
    /// timeout (default 30 000; 1..=3 600 000).
    pub produce_timeout_ms: u64,
    /// How long a graceful shutdown waits for in-flight requests before closing them
    /// (default 30 000; 0..=3 600 000).
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7401)),
            data_dir: PathBuf::from("./data"),
            max_request_bytes: 16 * MIB,
            max_connections: 1024,
            default_partitions: 1,
            max_partitions_per_topic: 10_000,
            fetch_max_bytes: 50 * MIB,
            fetch_partition_max_bytes: MIB,
            max_fetch_wait_ms: 30_000,
            produce_timeout_ms: 30_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

/// The background retention task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often every log is checked for segments to delete (Kafka
    /// `log.retention.check.interval.ms`; default 300 000; 100..=86 400 000).
    pub check_interval_ms: u64,
}

/// Consumer-group timeouts (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// A member without a heartbeat for this long is evicted and its partitions move (Kafka
    /// `group.consumer.session.timeout.ms`; default 45 000; 100..=3 600 000).
    pub session_timeout_ms: u64,
    /// A member asked to release partitions that has not within this long is evicted
    /// (default 60 000; 100..=3 600 000).
    pub rebalance_timeout_ms: u64,
    /// How often members are told to heartbeat (Kafka
    /// `group.consumer.heartbeat.interval.ms`; default 5 000; 10..=session_timeout_ms).
    pub heartbeat_interval_ms: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 60_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

/// Cluster membership (see docs/replication.md). With no voters the broker runs alone, as
/// a single-node cluster without a controller quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The controller quorum's voters, `id@host:port` separated by commas, the address being
    /// each voter's gRPC listener as the others reach it (default empty: no cluster). Every
    /// voter is given the same list, and this broker's `server.node_id` must be in it; its
    /// entry is also the address clients are told to use for it.
    pub voters: String,
    /// How often a broker sends the controller a heartbeat, ms (default 500; 10..=60 000).
    pub heartbeat_interval_ms: u64,
    /// A broker the controller has not heard from for this long is fenced: it loses its
    /// leaderships (Kafka `broker.session.timeout.ms`; default 3 000;
    /// 2 × heartbeat_interval_ms..=3 600 000).
    pub session_timeout_ms: u64,
    /// A follower that has not caught up with its leader for this long leaves the ISR (Kafka
    /// `replica.lag.time.max.ms`; default 30 000; 100..=3 600 000).
    pub replica_lag_time_max_ms: u64,
    /// Fewest in-sync replicas, the leader included, for an acks=all write; fewer is refused
    /// with NOT_ENOUGH_REPLICAS (Kafka `min.insync.replicas`; default 1; 1..=100).
    pub min_insync_replicas: u32,
    /// How often the controller moves leadership back to each partition's preferred replica
    /// once it is in sync again (Kafka `auto.leader.rebalance.enable` with
    /// `leader.imbalance.check.interval.seconds`); 0 turns it off (default 30 000;
    /// 0..=3 600 000).
    pub leader_rebalance_interval_ms: u64,
    /// Replicas of each partition of `__consumer_offsets`, made on the first FindCoordinator
    /// (Kafka `offsets.topic.replication.factor`); capped at the number of voters (default
    /// 3; 1..=100).
    pub offsets_replication_factor: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            voters: String::new(),
            heartbeat_interval_ms: 500,
            session_timeout_ms: 3_000,
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            leader_rebalance_interval_ms: 30_000,
            offsets_replication_factor: 3,
        }
    }
}

impl ClusterConfig {
    /// The voters by node id; empty when no cluster is configured. Refuses an entry that is
    /// not `id@host:port`, an id out of range, and a repeated id or address.
    pub fn voters(&self) -> Result<BTreeMap<u64, String>, BrokerConfigError> {
        let mut out = BTreeMap::new();
        let bad = |entry: &str, reason: String| BrokerConfigError::Voters {
            value: self.voters.clone(),
            entry: entry.to_string(),
            reason,
        };
        for entry in self
            .voters
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((id, address)) = entry.split_once('@') else {
                return Err(bad(entry, "expected id@host:port".into()));
            };
            let id: u64 = match id.trim().parse() {
                Ok(id) if id <= i32::MAX as u64 => id,
                _ => {
                    return Err(bad(
                        entry,
                        format!("node id {id:?} is out of range: must be 0 to {}", i32::MAX),
                    ));
                }
            };
            let address = address.trim();
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => {
                    return Err(bad(entry, format!("address {address:?} is not host:port")));
                }
            }
            if out.values().any(|a: &String| a == address) {
                return Err(bad(entry, format!("address {address} is given twice")));
            }
            if out.insert(id, address.to_string()).is_some() {
                return Err(bad(entry, format!("node id {id} is given twice")));
            }
        }
        Ok(out)
    }
}

/// TLS on the gRPC listener (clients and other brokers), on the HTTP listener, and on this
/// broker's own connections to other brokers. Off while `cert_file` is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain this broker presents, its own certificate first (default empty:
    /// TLS off). It also presents it to the brokers it connects to.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1); required with it.
    pub key_file: PathBuf,
    /// PEM CA certificates that verify client certificates (with `client_auth = "required"`)
    /// and the certificates of the brokers this one connects to. Required with
    /// `client_auth = "required"` and in a cluster.
    pub ca_file: PathBuf,
    /// `none` (default): clients are not asked for a certificate. `required`: every
    /// connection presents one signed by `ca_file` (mutual TLS), and its subject's common
    /// name becomes the connection's principal, `User:<CN>`.
    pub client_auth: ClientAuth,
    /// Serve the HTTP listener (`/health`, `/ready`, `/metrics`) over TLS too, with the same
    /// certificate and client authentication (default false: plain HTTP, so probes and
    /// Prometheus need no certificate).
    pub http: bool,
    /// How often the three files are checked for a change, ms; a change reloads them for new
    /// connections, and SIGHUP reloads them at once (default 10 000; 0 = only on SIGHUP;
    /// 0..=3 600 000).
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            client_auth: ClientAuth::None,
            http: false,
            reload_interval_ms: 10_000,
        }
    }
}

impl TlsConfig {
    /// TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// Checks that the settings go together (the files themselves are read at start).
    fn validate(&self, in_cluster: bool) -> Result<(), BrokerConfigError> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        let reason = if set(&self.cert_file) != set(&self.key_file) {
            "cert_file and key_file go together: set both (TLS on) or neither (TLS off)"
        } else if !self.enabled() && set(&self.ca_file) {
            "ca_file is set but cert_file is not: TLS needs this broker's certificate"
        } else if !self.enabled() && self.client_auth == ClientAuth::Required {
            "client_auth = \"required\" needs TLS: set cert_file, key_file and ca_file"
        } else if !self.enabled() && self.http {
            "http = true needs TLS: set cert_file and key_file"
        } else if self.client_auth == ClientAuth::Required && !set(&self.ca_file) {
            "client_auth = \"required\" needs ca_file, the CA that signs client certificates"
        } else if self.enabled() && in_cluster && !set(&self.ca_file) {
            "a cluster with TLS needs ca_file, the CA that verifies the other brokers' certificates"
        } else {
            return Ok(());
        };
        Err(BrokerConfigError::Tls {
            reason: reason.to_string(),
        })
    }
}

/// Authentication (docs/security.md): a request's principal comes from its bearer token
/// (JWT), else from its connection's client certificate, else it is `User:ANONYMOUS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse requests that carry neither a valid token nor a client certificate, with
    /// UNAUTHENTICATED (default false: they run as `User:ANONYMOUS`).
    pub required: bool,
    /// File holding the HS256 shared secret, at least 32 bytes (a trailing newline is not
    /// part of it); empty (default): HS256 tokens are refused.
    pub jwt_hs256_secret_file: PathBuf,
    /// PEM RSA public key that verifies RS256 tokens; empty (default): RS256 tokens are
    /// refused.
    pub jwt_rs256_public_key_file: PathBuf,
    /// JSON Web Key Set (RFC 7517) of RS256 and HS256 keys, each with a key id (`kid`): a
    /// token naming a `kid` verifies with that key, so keys rotate with an overlap (at most
    /// 64 keys); empty (default): none.
    pub jwt_jwks_file: PathBuf,
    /// The audience (`aud`) every token must name; required with a JWT key.
    pub jwt_audience: String,
    /// The issuer (`iss`) every token must name; empty (default): not checked.
    pub jwt_issuer: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds (default 30; 0..=300).
    pub jwt_leeway_s: u64,
    /// How often the key files are checked for a change, ms; a change reloads them, and
    /// SIGHUP reloads them at once (default 10 000; 0 = only on SIGHUP; 0..=3 600 000).
    pub reload_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            jwt_hs256_secret_file: PathBuf::new(),
            jwt_rs256_public_key_file: PathBuf::new(),
            jwt_jwks_file: PathBuf::new(),
            jwt_audience: String::new(),
            jwt_issuer: String::new(),
            jwt_leeway_s: 30,
            reload_interval_ms: 10_000,
        }
    }
}

impl AuthConfig {
    /// A JWT key is configured.
    pub fn takes_tokens(&self) -> bool {
        !self.jwt_hs256_secret_file.as_os_str().is_empty()
            || !self.jwt_rs256_public_key_file.as_os_str().is_empty()
            || !self.jwt_jwks_file.as_os_str().is_empty()
    }

    fn validate(&self, tls: &TlsConfig, in_cluster: bool) -> Result<(), BrokerConfigError> {
        let mtls = tls.enabled() && tls.client_auth == ClientAuth::Required;
        let reason = if self.takes_tokens() && self.jwt_audience.is_empty() {
            "a JWT key needs jwt_audience, the audience every token must name"
        } else if !self.takes_tokens() && !self.jwt_audience.is_empty() {
            "jwt_audience is set but no JWT key is: set jwt_hs256_secret_file, jwt_rs256_public_key_file or jwt_jwks_file"
        } else if !self.takes_tokens() && !self.jwt_issuer.is_empty() {
            "jwt_issuer is set but no JWT key is: set jwt_hs256_secret_file, jwt_rs256_public_key_file or jwt_jwks_file"
        } else if self.required && !self.takes_tokens() && !mtls {
            "required = true needs a way to authenticate: a JWT key, or tls.client_auth = \"required\""
        } else if self.required && in_cluster && !mtls {
            "required = true in a cluster needs tls.client_auth = \"required\": brokers authenticate to each other with their certificates"
        } else {
            return Ok(());
        };
        Err(BrokerConfigError::Auth {
            reason: reason.to_string(),
        })
    }
}

/// Authorization (docs/security.md): once enabled, a request runs only if an ACL allows its
/// principal the operation on every resource it touches, or the principal is a super-user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Check every request against the ACLs and deny what none allows (default false: every
    /// authenticated request runs).
    pub enabled: bool,
    /// Principals allowed everything, `User:<name>` separated by semicolons (Kafka's
    /// `super.users`; a certificate's DN may hold commas), e.g. `"User:admin;User:broker-1"`.
    /// Required with `enabled`: somebody has to grant the first ACL. In a cluster the brokers'
    /// own certificate principals belong here (or get `cluster_action` on the cluster).
    pub super_users: String,
    /// Where denials (and ACL changes) are written, one JSON object per line (default empty:
    /// `<data_dir>/audit.log`).
    pub audit_log: PathBuf,
    /// Size at which the audit log is rotated to `<audit_log>.1`, replacing the previous one,
    /// bytes (default 100 MiB; 4 KiB..=1 TiB).
    pub audit_log_max_bytes: u64,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            enabled: false,
            super_users: String::new(),
            audit_log: PathBuf::new(),
            audit_log_max_bytes: 100 << 20,
        }
    }
}

impl AuthorizationConfig {
    /// The super-users, each checked to be `User:<name>`.
    pub fn super_users(&self) -> Result<Vec<String>, BrokerConfigError> {
        let mut out = Vec::new();
        for entry in self.super_users.split(';').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            match entry.strip_prefix("User:") {
                Some(name) if !name.is_empty() && name != "*" => out.push(entry.to_string()),
                _ => {
                    return Err(BrokerConfigError::Authorization {
                        reason: format!(
                            "super_users entry {entry:?} is not User:<name> (entries are separated by semicolons)"
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The audit log's path: `audit_log`, or `<data_dir>/audit.log`.
    pub fn audit_log_path(&self, data_dir: &Path) -> PathBuf {
        if self.audit_log.as_os_str().is_empty() {
            data_dir.join("audit.log")
        } else {
            self.audit_log.clone()
        }
    }

    fn validate(&self, tls: &TlsConfig, in_cluster: bool) -> Result<(), BrokerConfigError> {
        let super_users = self.super_users()?;
        let mtls = tls.enabled() && tls.client_auth == ClientAuth::Required;
        let reason = if self.enabled && super_users.is_empty() {
            "enabled = true needs super_users: without a super-user nobody could grant the first ACL"
        } else if self.enabled && in_cluster && !mtls {
            "enabled = true in a cluster needs tls.client_auth = \"required\": brokers are authorized by their certificates' principals"
        } else {
            return Ok(());
        };
        Err(BrokerConfigError::Authorization {
            reason: reason.to_string(),
        })
    }
}

/// Whether TLS clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate signed by `tls.ca_file` is required (mutual TLS).
    Required,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            check_interval_ms: 300_000,
        }
    }
}

/// The broker's own diagnostic output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Line format on standard error.
    pub format: LogFormat,
    /// Which events to emit: a `tracing_subscriber::EnvFilter` directive string such as
    /// `info` or `info,brook_broker::log=debug` (default `info`).
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

/// Line format of the broker's diagnostic output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`text`).
    #[default]
    Text,
    /// One JSON object per line (`json`), for log collectors.
    Json,
}

/// Why a configuration cannot be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not TOML, has an unknown key, or a value of the wrong type or
    /// form. toml's error gives the line, column and key.
    #[error("config file {} is invalid: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The parse or deserialization error (boxed: it is large).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A `BROOK_<SECTION>_<KEY>` variable whose section exists but has no such key.
    #[error(
        "environment variable {variable} sets no setting: [{section}] has no key {key:?} (keys: {})",
        known.join(", ")
    )]
    UnknownEnvKey {
        /// The variable's name.
        variable: String,
        /// The section it names.
        section: &'static str,
        /// The key it names, lowercased.
        key: String,
        /// The keys of the section.
        known: Vec<String>,
    },
    /// A `BROOK_<SECTION>_<KEY>` variable whose value does not fit the setting.
    #[error("environment variable {variable}={value:?} is invalid: {source}")]
    EnvValue {
        /// The variable's name.
        variable: String,
        /// Its value.
        value: String,
        /// The deserialization error (boxed: it is large).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// `cluster.voters` does not parse.
    #[error("cluster.voters = {value:?} is invalid: entry {entry:?}: {reason}")]
    Voters {
        /// The whole setting.
        value: String,
        /// The entry at fault.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// This broker is not among the voters.
    #[error(
        "server.node_id = {node_id} is not among cluster.voters ({voters}): every broker of a cluster is a voter"
    )]
    NotAVoter {
        /// This broker's id.
        node_id: i32,
        /// The voters setting.
        voters: String,
    },
    /// A numeric setting outside `[min, max]`.
    #[error("{name} = {value} is out of range: must be between {min} and {max}")]
    OutOfRange {
        /// The setting, `section.key`.
        name: &'static str,
        /// The value given.
        value: i128,
        /// Smallest allowed value.
        min: i128,
        /// Largest allowed value.
        max: i128,
    },
    /// An invalid `[log]` setting.
    #[error("[log] {source}")]
    Log {
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// The gRPC and HTTP listeners would bind the same port.
    #[error(
        "server.listen = {listen} and server.http_listen = {http_listen} would bind the same port: give each its own (or port 0)"
    )]
    ListenConflict {
        /// The gRPC listener.
        listen: SocketAddr,
        /// The HTTP listener.
        http_listen: SocketAddr,
    },
    /// The default partition count is above the per-topic maximum.
    #[error(
        "server.default_partitions = {default_partitions} is above server.max_partitions_per_topic = {max_partitions_per_topic}"
    )]
    DefaultPartitionsAboveMax {
        /// `server.default_partitions`.
        default_partitions: u32,
        /// `server.max_partitions_per_topic`.
        max_partitions_per_topic: u32,
    },
    /// A produce request could never carry the largest batch the logs accept.
    #[error(
        "server.max_request_bytes = {max_request_bytes} is below log.max_batch_bytes = {max_batch_bytes}: a request could never carry the largest batch"
    )]
    RequestBelowBatch {
        /// `server.max_request_bytes`.
        max_request_bytes: usize,
        /// `log.max_batch_bytes`.
        max_batch_bytes: u32,
    },
    /// TLS settings that do not go together.
    #[error("[tls] {reason}")]
    Tls {
        /// What is missing or contradictory, naming the settings.
        reason: String,
    },
    /// Authentication settings that do not go together.
    #[error("[auth] {reason}")]
    Auth {
        /// What is missing or contradictory, naming the settings.
        reason: String,
    },
    /// Authorization settings that do not go together.
    #[error("[authorization] {reason}")]
    Authorization {
        /// What is missing or contradictory, naming the settings.
        reason: String,
    },
    /// `logging.level` is not a valid filter directive string.
    #[error("logging.level = {value:?} is not a valid filter: {source}")]
    LoggingLevel {
        /// The value given.
        value: String,
        /// Why `EnvFilter` rejected it.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

fn check(name: &'static str, value: i128, min: i128, max: i128) -> Result<(), BrokerConfigError> {
    if value < min || value > max {
        return Err(BrokerConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Both listeners would bind the same port: same port (not 0) on the same address, or on
/// overlapping ones (a wildcard address covers every specific one).
fn listeners_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl BrokerConfig {
    /// Reads the TOML file at `path` (if any) over the defaults, applies the environment
    /// overrides in `env` (pass `std::env::vars()`), and validates the result.
    ///
    /// An override is a variable `BROOK_<SECTION>_<KEY>`: SECTION is `SERVER`, `LOG`,
    /// `RETENTION` or `LOGGING` (any case) and KEY, lowercased, is a key of that section, e.g.
    /// `BROOK_SERVER_MAX_REQUEST_BYTES=1048576` or `BROOK_LOG_FLUSH=always`. The value is
    /// taken as written for string settings and parsed as a TOML value (number, boolean)
    /// otherwise. Other `BROOK_` variables (`BROOK_BOOTSTRAP`, `BROOK_TEST_SEED`) are not
    /// configuration and are ignored; an unknown KEY in one of the sections is an error.
    /// Overrides apply in the order of their names.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<BrokerConfig, BrokerConfigError> {
        let mut table = match path {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let defaults = default_table();
        let mut overrides = Vec::new();
        for (variable, value) in env {
            if let Some(found) = EnvOverride::parse(variable, value, &defaults)? {
                overrides.push(found);
            }
        }
        overrides.sort_by(|a, b| a.variable.cmp(&b.variable));

        for o in &overrides {
            let section = table
                .entry(o.section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            // The file was checked to deserialize, so every present section is a table.
            if let toml::Value::Table(section) = section {
                section.insert(o.key.clone(), o.parsed.clone());
            }
            // One at a time, so a value that does not fit is blamed on its variable.
            BrokerConfig::deserialize(table.clone()).map_err(|source| {
                BrokerConfigError::EnvValue {
                    variable: o.variable.clone(),
                    value: o.raw.clone(),
                    source: Box::new(source),
                }
            })?;
        }
        let config = BrokerConfig::deserialize(table)
            .expect("the file and each override were checked above");
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting against its range, and the settings that must agree.
    pub fn validate(&self) -> Result<(), BrokerConfigError> {
        let s = &self.server;
        let (kib, gib, hour) = (KIB as i128, GIB as i128, i128::from(HOUR_MS));
        let retention = self.retention.check_interval_ms.into();
        #[rustfmt::skip]
        let g = &self.groups;
        let c = &self.cluster;
        let ranges: [(&'static str, i128, i128, i128); 24] = [
            ("server.node_id", s.node_id.into(), 0, i32::MAX.into()),
            (
                "server.max_request_bytes",
                s.max_request_bytes as i128,
                kib,
                gib,
            ),
            (
                "server.max_connections",
                s.max_connections as i128,
                1,
                100_000,
            ),
            (
                "server.default_partitions",
                s.default_partitions.into(),
                1,
                10_000,
            ),
            (
                "server.max_partitions_per_topic",
                s.max_partitions_per_topic.into(),
                1,
                100_000,
            ),
            (
                "server.fetch_max_bytes",
                s.fetch_max_bytes as i128,
                kib,
                gib,
            ),
            (
                "server.fetch_partition_max_bytes",
                s.fetch_partition_max_bytes as i128,
                kib,
                gib,
            ),
            (
                "server.max_fetch_wait_ms",
                s.max_fetch_wait_ms.into(),
                0,
                hour,
            ),
            (
                "server.produce_timeout_ms",
                s.produce_timeout_ms.into(),
                1,
                hour,
            ),
            (
                "server.shutdown_timeout_ms",
                s.shutdown_timeout_ms.into(),
                0,
                hour,
            ),
            ("retention.check_interval_ms", retention, 100, 86_400_000),
            (
                "groups.session_timeout_ms",
                g.session_timeout_ms.into(),
                100,
                hour,
            ),
            (
                "groups.rebalance_timeout_ms",
                g.rebalance_timeout_ms.into(),
                100,
                hour,
            ),
            (
                "groups.heartbeat_interval_ms",
                g.heartbeat_interval_ms.into(),
                10,
                g.session_timeout_ms.into(),
            ),
            (
                "cluster.heartbeat_interval_ms",
                c.heartbeat_interval_ms.into(),
                10,
                60_000,
            ),
            (
                "cluster.session_timeout_ms",
                c.session_timeout_ms.into(),
                2 * i128::from(c.heartbeat_interval_ms),
                hour,
            ),
            (
                "cluster.replica_lag_time_max_ms",
                c.replica_lag_time_max_ms.into(),
                100,
                hour,
            ),
            (
                "cluster.min_insync_replicas",
                c.min_insync_replicas.into(),
                1,
                100,
            ),
            (
                "cluster.leader_rebalance_interval_ms",
                c.leader_rebalance_interval_ms.into(),
                0,
                hour,
            ),
            (
                "cluster.offsets_replication_factor",
                c.offsets_replication_factor.into(),
                1,
                100,
            ),
            (
                "tls.reload_interval_ms",
                self.tls.reload_interval_ms.into(),
                0,
                hour,
            ),
            ("auth.jwt_leeway_s", self.auth.jwt_leeway_s.into(), 0, 300),
            (
                "auth.reload_interval_ms",
                self.auth.reload_interval_ms.into(),
                0,
                hour,
            ),
            (
                "authorization.audit_log_max_bytes",
                self.authorization.audit_log_max_bytes.into(),
                4 * kib,
                1024 * gib,
            ),
        ];
        for (name, value, min, max) in ranges {
            check(name, value, min, max)?;
        }
        self.log
            .validate()
            .map_err(|source| BrokerConfigError::Log { source })?;

        let voters = c.voters()?;
        if !voters.is_empty() && !voters.contains_key(&(s.node_id as u64)) {
            return Err(BrokerConfigError::NotAVoter {
                node_id: s.node_id,
                voters: c.voters.clone(),
            });
        }
        if listeners_conflict(s.listen, s.http_listen) {
            return Err(BrokerConfigError::ListenConflict {
                listen: s.listen,
                http_listen: s.http_listen,
            });
        }
        if s.default_partitions > s.max_partitions_per_topic {
            return Err(BrokerConfigError::DefaultPartitionsAboveMax {
                default_partitions: s.default_partitions,
                max_partitions_per_topic: s.max_partitions_per_topic,
            });
        }
        if s.max_request_bytes < self.log.max_batch_bytes as usize {
            return Err(BrokerConfigError::RequestBelowBatch {
                max_request_bytes: s.max_request_bytes,
                max_batch_bytes: self.log.max_batch_bytes,
            });
        }
        self.tls.validate(!voters.is_empty())?;
        self.auth.validate(&self.tls, !voters.is_empty())?;
        (self.authorization).validate(&self.tls, !voters.is_empty())?;
        if let Err(source) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            return Err(BrokerConfigError::LoggingLevel {
                value: self.logging.level.clone(),
                source,
            });
        }
        Ok(())
    }
}

/// Reads and checks the file; returns it as a table for the overrides to merge into.
fn read_file(path: &Path) -> Result<toml::Table, BrokerConfigError> {
    let file_error = |source| BrokerConfigError::File {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let text = std::fs::read_to_string(path).map_err(|source| BrokerConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Deserializing from the text (rather than from the table) keeps line and column in the
    // errors for unknown keys and bad values.
    toml::from_str::<BrokerConfig>(&text).map_err(file_error)?;
    toml::from_str::<toml::Table>(&text).map_err(file_error)
}

/// The defaults as a TOML table: the sections and keys that exist, and each key's type.
fn default_table() -> toml::Table {
    toml::Table::try_from(BrokerConfig::default()).expect("the defaults serialize to TOML")
}

/// One `BROOK_<SECTION>_<KEY>` variable.
struct EnvOverride {
    variable: String,
    raw: String,
    section: &'static str,
    key: String,
    parsed: toml::Value,
}

impl EnvOverride {
    /// `None` for a variable that is not configuration.
    fn parse(
        variable: String,
        raw: String,
        defaults: &toml::Table,
    ) -> Result<Option<EnvOverride>, BrokerConfigError> {
        let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
            return Ok(None);
        };
        let Some((section, key)) = rest.split_once('_') else {
            return Ok(None);
        };
        let Some(section) = SECTIONS
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(section))
        else {
            return Ok(None);
        };
        let key = key.to_ascii_lowercase();
        let keys = defaults
            .get(section)
            .and_then(toml::Value::as_table)
            .expect("every section has a default table");
        let Some(default) = keys.get(&key) else {
            return Err(BrokerConfigError::UnknownEnvKey {
                variable,
                section,
                key,
                known: keys.keys().cloned().collect(),
            });
        };
        let parsed = if default.is_str() {
            toml::Value::String(raw.clone())
        } else {
            // Not TOML (e.g. `abc` for a number): keep the text, so the type error that
            // follows shows the value.
            raw.parse::<toml::Value>()
                .unwrap_or_else(|_| toml::Value::String(raw.clone()))
        };
        Ok(Some(EnvOverride {
            variable,
            raw,
            section,
            key,
            parsed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::log::FlushPolicy;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    /// The error's message without toml's source excerpt.
    fn toml_message(err: &toml::de::Error) -> &str {
        err.message()
    }

    /// 1-based line of a toml error in `text`.
    fn line_of(err: &toml::de::Error, text: &str) -> usize {
        let span = err.span().expect("error has a position");
        text[..span.start].matches('\n').count() + 1
    }

    #[test]
    fn defaults_without_file_or_env() {
        let config = BrokerConfig::load(None, no_env()).unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(config.server.node_id, 1);
        assert_eq!(config.server.listen, "127.0.0.1:7400".parse().unwrap());
        assert_eq!(config.server.http_listen, "127.0.0.1:7401".parse().unwrap());
        assert_eq!(config.server.data_dir, PathBuf::from("./data"));
        assert_eq!(config.server.max_request_bytes, 16 << 20);
        assert_eq!(config.server.max_connections, 1024);
        assert_eq!(config.server.default_partitions, 1);
        assert_eq!(config.server.max_partitions_per_topic, 10_000);
        assert_eq!(config.server.fetch_max_bytes, 50 << 20);
        assert_eq!(config.server.fetch_partition_max_bytes, 1 << 20);
        assert_eq!(config.server.max_fetch_wait_ms, 30_000);
        assert_eq!(config.server.produce_timeout_ms, 30_000);
        assert_eq!(config.server.shutdown_timeout_ms, 30_000);
        assert_eq!(config.retention.check_interval_ms, 300_000);
        assert_eq!(config.logging.format, LogFormat::Text);
        assert_eq!(config.logging.level, "info");
        assert_eq!(config.log, LogConfig::default());
    }

    #[test]
    fn voters_parse_into_ids_and_addresses() {
        let mut c = BrokerConfig::default();
        c.cluster.voters = " 1@127.0.0.1:7400, 2@broker-2:7400 ,3@[::1]:7402,".into();
        let voters = c.cluster.voters().unwrap();
        assert_eq!(
            voters.into_iter().collect::<Vec<_>>(),
            vec![
                (1, "127.0.0.1:7400".to_string()),
                (2, "broker-2:7400".to_string()),
                (3, "[::1]:7402".to_string()),
            ]
        );
        c.validate().unwrap();
        c.cluster.voters = String::new();
        assert!(c.cluster.voters().unwrap().is_empty());
    }

    #[test]
    fn example_file_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("brook-broker.example.toml");
        let config = BrokerConfig::load(Some(&path), no_env()).unwrap();
        assert_eq!(config, BrokerConfig::default());
        // Every key of the defaults appears in the example, uncommented.
        let example: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(example, default_table());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&BrokerConfig::default()).unwrap();
        let back: BrokerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, BrokerConfig::default());
    }

    const FULL: &str = r#"
[server]
node_id = 7
listen = "0.0.0.0:9400"
http_listen = "0.0.0.0:9401"
data_dir = "/var/lib/brook"
max_request_bytes = 33554432
max_connections = 500
default_partitions = 3
max_partitions_per_topic = 64
fetch_max_bytes = 10485760
fetch_partition_max_bytes = 2097152
max_fetch_wait_ms = 1000
produce_timeout_ms = 5000
shutdown_timeout_ms = 0

[log]
segment_bytes = 1048576
segment_ms = -1
index_interval_bytes = 1024
max_index_bytes = 65536
retention_bytes = 1073741824
retention_ms = -1
flush = "interval:50"
max_batch_bytes = 4194304

[retention]
check_interval_ms = 1000

[groups]
session_timeout_ms = 10000
rebalance_timeout_ms = 20000
heartbeat_interval_ms = 1000

[cluster]
voters = "7@10.0.0.7:9400,8@10.0.0.8:9400"
heartbeat_interval_ms = 250
session_timeout_ms = 5000
replica_lag_time_max_ms = 10000
min_insync_replicas = 2
leader_rebalance_interval_ms = 0
offsets_replication_factor = 2

[tls]
cert_file = "/etc/brook/broker.pem"
key_file = "/etc/brook/broker.key"
ca_file = "/etc/brook/ca.pem"
client_auth = "required"
http = true
reload_interval_ms = 0

[auth]
required = true
jwt_hs256_secret_file = "/etc/brook/jwt.secret"
jwt_rs256_public_key_file = "/etc/brook/jwt.pub"
jwt_jwks_file = "/etc/brook/jwks.json"
jwt_audience = "brook"
jwt_issuer = "https://id.example"
jwt_leeway_s = 5
reload_interval_ms = 500

[authorization]
enabled = true
super_users = "User:admin; User:broker-7"
audit_log = "/var/log/brook/audit.log"
audit_log_max_bytes = 1048576

[logging]
format = "json"
level = "warn,brook_broker=debug"
"#;

    fn full_config() -> BrokerConfig {
        BrokerConfig {
            server: ServerConfig {
                node_id: 7,
                listen: "0.0.0.0:9400".parse().unwrap(),
                http_listen: "0.0.0.0:9401".parse().unwrap(),
                data_dir: PathBuf::from("/var/lib/brook"),
                max_request_bytes: 32 << 20,
                max_connections: 500,
                default_partitions: 3,
                max_partitions_per_topic: 64,
                fetch_max_bytes: 10 << 20,
                fetch_partition_max_bytes: 2 << 20,
                max_fetch_wait_ms: 1000,
                produce_timeout_ms: 5000,
                shutdown_timeout_ms: 0,
            },
            log: LogConfig {
                segment_bytes: 1 << 20,
                segment_ms: None,
                index_interval_bytes: 1024,
                max_index_bytes: 65536,
                retention_bytes: Some(1 << 30),
                retention_ms: None,
                flush: FlushPolicy::Interval(Duration::from_millis(50)),
                max_batch_bytes: 4 << 20,
            },
            retention: RetentionConfig {
                check_interval_ms: 1000,
            },
            groups: GroupsConfig {
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 20_000,
                heartbeat_interval_ms: 1_000,
            },
            cluster: ClusterConfig {
                voters: "7@10.0.0.7:9400,8@10.0.0.8:9400".into(),
                heartbeat_interval_ms: 250,
                session_timeout_ms: 5000,
                replica_lag_time_max_ms: 10_000,
                min_insync_replicas: 2,
                leader_rebalance_interval_ms: 0,
                offsets_replication_factor: 2,
            },
            tls: TlsConfig {
                cert_file: PathBuf::from("/etc/brook/broker.pem"),
                key_file: PathBuf::from("/etc/brook/broker.key"),
                ca_file: PathBuf::from("/etc/brook/ca.pem"),
                client_auth: ClientAuth::Required,
                http: true,
                reload_interval_ms: 0,
            },
            auth: AuthConfig {
                required: true,
                jwt_hs256_secret_file: PathBuf::from("/etc/brook/jwt.secret"),
                jwt_rs256_public_key_file: PathBuf::from("/etc/brook/jwt.pub"),
                jwt_jwks_file: PathBuf::from("/etc/brook/jwks.json"),
                jwt_audience: "brook".into(),
                jwt_issuer: "https://id.example".into(),
                jwt_leeway_s: 5,
                reload_interval_ms: 500,
            },
            authorization: AuthorizationConfig {
                enabled: true,
                super_users: "User:admin; User:broker-7".into(),
                audit_log: PathBuf::from("/var/log/brook/audit.log"),
                audit_log_max_bytes: 1 << 20,
            },
            logging: LoggingConfig {
                format: LogFormat::Json,
                level: "warn,brook_broker=debug".to_string(),
            },
        }
    }

    #[test]
    fn full_file_sets_every_key() {
        let f = file(FULL);
        let config = BrokerConfig::load(Some(f.path()), no_env()).unwrap();
        assert_eq!(config, full_config());
    }

    #[test]
    fn partial_file_keeps_defaults_for_the_rest() {
        let f = file("[server]\nnode_id = 3\n[log]\nflush = \"always\"\n");
        let config = BrokerConfig::load(Some(f.path()), no_env()).unwrap();
        let mut expected = BrokerConfig::default();
        expected.server.node_id = 3;
        expected.log.flush = FlushPolicy::Always;
        assert_eq!(config, expected);
    }

    #[test]
    fn env_overrides_beat_the_file() {
        let f = file(FULL);
        let vars = env(&[
            ("BROOK_SERVER_MAX_REQUEST_BYTES", "8388608"),
            ("BROOK_SERVER_LISTEN", "127.0.0.1:0"),
            ("BROOK_SERVER_DATA_DIR", "2024"),
            ("brook_server_node_id", "99"), // not BROOK_: not configuration
            ("BROOK_log_Flush", "always"),
            ("BROOK_LOG_RETENTION_MS", "3600000"),
            ("BROOK_LOG_SEGMENT_MS", "-1"),
            ("BROOK_RETENTION_CHECK_INTERVAL_MS", "100"),
            ("BROOK_LOGGING_FORMAT", "text"),
            ("BROOK_LOGGING_LEVEL", "debug"),
            ("BROOK_BOOTSTRAP", "localhost:7400"),
            ("BROOK_TEST_SEED", "42"),
            ("BROOK_LOG", "ignored"),
            ("PATH", "/usr/bin"),
        ]);
        let config = BrokerConfig::load(Some(f.path()), vars).unwrap();
        let mut expected = full_config();
        expected.server.max_request_bytes = 8 << 20;
        expected.server.listen = "127.0.0.1:0".parse().unwrap();
        expected.server.data_dir = PathBuf::from("2024");
        expected.log.flush = FlushPolicy::Always;
        expected.log.retention_ms = Some(3_600_000);
        expected.log.segment_ms = None;
        expected.retention.check_interval_ms = 100;
        expected.logging.format = LogFormat::Text;
        expected.logging.level = "debug".to_string();
        assert_eq!(config, expected);
    }

    #[test]
    fn env_overrides_apply_without_a_file() {
        let vars = env(&[("BROOK_SERVER_NODE_ID", "5")]);
        let config = BrokerConfig::load(None, vars).unwrap();
        let mut expected = BrokerConfig::default();
        expected.server.node_id = 5;
        assert_eq!(config, expected);
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = BrokerConfig::load(Some(&path), no_env()).unwrap_err();
        let BrokerConfigError::Read { path: p, source } = &err else {
            panic!("expected Read, got {err:?}");
        };
        assert_eq!(p, &path);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read config file {}: ", path.display()))
        );
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let text = "[server]\nnode_id = 1\nlisten = \"127.0.0.1:7400\n";
        let f = file(text);
        let err = BrokerConfig::load(Some(f.path()), no_env()).unwrap_err();
        let BrokerConfigError::File { path, source } = &err else {
            panic!("expected File, got {err:?}");
        };
        assert_eq!(path, f.path());
        assert_eq!(line_of(source, text), 3);
        assert_eq!(toml_message(source), "invalid basic string, expected `\"`");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "config file {} is invalid: TOML parse error at line 3, column",
                f.path().display()
            )),
            "{shown}"
        );
    }

    #[test]
    fn unknown_key_in_file_names_key_and_line() {
        let text = "[server]\nnode_id = 1\nnope = 2\n";
        let f = file(text);
        let err = BrokerConfig::load(Some(f.path()), no_env()).unwrap_err();
        let BrokerConfigError::File { path, source } = &err else {
            panic!("expected File, got {err:?}");
        };
        assert_eq!(path, f.path());
        assert_eq!(line_of(source, text), 3);
        assert_eq!(
            toml_message(source),
            "unknown field `nope`, expected one of `node_id`, `listen`, `http_listen`, \
             `data_dir`, `max_request_bytes`, `max_connections`, `default_partitions`, \
             `max_partitions_per_topic`, `fetch_max_bytes`, `fetch_partition_max_bytes`, \
             `max_fetch_wait_ms`, `produce_timeout_ms`, `shutdown_timeout_ms`"
        );
    }

    #[test]
    fn unknown_section_in_file_is_an_error() {
        let text = "[servre]\nnode_id = 1\n";
        let f = file(text);
        let err = BrokerConfig::load(Some(f.path()), no_env()).unwrap_err();
        let BrokerConfigError::File { source, .. } = &err else {
            panic!("expected File, got {err:?}");
        };
        assert_eq!(line_of(source, text), 1);
        assert_eq!(
            toml_message(source),
            "unknown field `servre`, expected one of `server`, `log`, `retention`, `groups`, `cluster`, `tls`, `auth`, `authorization`, `logging`"
        );
    }

    #[test]
    fn out_of_range_value_is_an_exact_error() {
        let f = file("[server]\nmax_request_bytes = 10\n");
        let err = BrokerConfig::load(Some(f.path()), no_env()).unwrap_err();
        assert!(
            matches!(
                err,
                BrokerConfigError::OutOfRange {
                    name: "server.max_request_bytes",
                    value: 10,
                    min: 1024,
                    max: 1073741824,
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "server.max_request_bytes = 10 is out of range: must be between 1024 and 1073741824"
        );
    }

    #[test]
    fn negative_node_id_is_out_of_range() {
        let err = BrokerConfig::load(None, env(&[("BROOK_SERVER_NODE_ID", "-1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server.node_id = -1 is out of range: must be between 0 and 2147483647"
        );
    }

    #[test]
    fn every_range_is_checked() {
        type Mutation = fn(&mut BrokerConfig);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |c| c.cluster.voters = "1@127.0.0.1:7400,garbage".into(),
                "cluster.voters = \"1@127.0.0.1:7400,garbage\" is invalid: entry \"garbage\": expected id@host:port",
            ),
            (
                |c| c.cluster.voters = "x@127.0.0.1:7400".into(),
                "cluster.voters = \"x@127.0.0.1:7400\" is invalid: entry \"x@127.0.0.1:7400\": node id \"x\" is out of range: must be 0 to 2147483647",
            ),
            (
                |c| c.cluster.voters = "2147483648@127.0.0.1:7400".into(),
                "cluster.voters = \"2147483648@127.0.0.1:7400\" is invalid: entry \"2147483648@127.0.0.1:7400\": node id \"2147483648\" is out of range: must be 0 to 2147483647",
            ),
            (
                |c| c.cluster.voters = "1@127.0.0.1:99999".into(),
                "cluster.voters = \"1@127.0.0.1:99999\" is invalid: entry \"1@127.0.0.1:99999\": address \"127.0.0.1:99999\" is not host:port",
            ),
            (
                |c| c.cluster.voters = "1@a:1,1@b:2".into(),
                "cluster.voters = \"1@a:1,1@b:2\" is invalid: entry \"1@b:2\": node id 1 is given twice",
            ),
            (
                |c| c.cluster.voters = "1@a:1,2@a:1".into(),
                "cluster.voters = \"1@a:1,2@a:1\" is invalid: entry \"2@a:1\": address a:1 is given twice",
            ),
            (
                |c| c.cluster.voters = "2@a:1,3@b:1".into(),
                "server.node_id = 1 is not among cluster.voters (2@a:1,3@b:1): every broker of a cluster is a voter",
            ),
            (
                |c| c.cluster.leader_rebalance_interval_ms = 3_600_001,
                "cluster.leader_rebalance_interval_ms = 3600001 is out of range: must be between 0 and 3600000",
            ),
            (
                |c| c.cluster.offsets_replication_factor = 0,
                "cluster.offsets_replication_factor = 0 is out of range: must be between 1 and 100",
            ),
            (
                |c| c.tls.reload_interval_ms = 3_600_001,
                "tls.reload_interval_ms = 3600001 is out of range: must be between 0 and 3600000",
            ),
            (
                |c| c.auth.jwt_leeway_s = 301,
                "auth.jwt_leeway_s = 301 is out of range: must be between 0 and 300",
            ),
            (
                |c| c.cluster.min_insync_replicas = 0,
                "cluster.min_insync_replicas = 0 is out of range: must be between 1 and 100",
            ),
            (
                |c| c.cluster.replica_lag_time_max_ms = 99,
                "cluster.replica_lag_time_max_ms = 99 is out of range: must be between 100 and 3600000",
            ),
            (
                |c| c.cluster.heartbeat_interval_ms = 9,
                "cluster.heartbeat_interval_ms = 9 is out of range: must be between 10 and 60000",
            ),
            (
                |c| c.cluster.session_timeout_ms = 999,
                "cluster.session_timeout_ms = 999 is out of range: must be between 1000 and 3600000",
            ),
            (
                |c| c.server.max_connections = 0,
                "server.max_connections = 0 is out of range: must be between 1 and 100000",
            ),
            (
                |c| c.server.default_partitions = 10_001,
                "server.default_partitions = 10001 is out of range: must be between 1 and 10000",
            ),
            (
                |c| c.server.max_partitions_per_topic = 0,
                "server.max_partitions_per_topic = 0 is out of range: must be between 1 and 100000",
            ),
            (
                |c| c.server.fetch_max_bytes = (1 << 30) + 1,
                "server.fetch_max_bytes = 1073741825 is out of range: must be between 1024 and 1073741824",
            ),
            (
                |c| c.server.fetch_partition_max_bytes = 1023,
                "server.fetch_partition_max_bytes = 1023 is out of range: must be between 1024 and 1073741824",
            ),
            (
                |c| c.server.max_fetch_wait_ms = 3_600_001,
                "server.max_fetch_wait_ms = 3600001 is out of range: must be between 0 and 3600000",
            ),
            (
                |c| c.server.produce_timeout_ms = 0,
                "server.produce_timeout_ms = 0 is out of range: must be between 1 and 3600000",
            ),
            (
                |c| c.server.shutdown_timeout_ms = 3_600_001,
                "server.shutdown_timeout_ms = 3600001 is out of range: must be between 0 and 3600000",
            ),
            (
                |c| c.retention.check_interval_ms = 99,
                "retention.check_interval_ms = 99 is out of range: must be between 100 and 86400000",
            ),
            (
                |c| c.log.segment_bytes = 10,
                "[log] segment_bytes = 10 is out of range: must be between 1024 and 2147483648",
            ),
            (
                |c| c.server.default_partitions = 65,
                "server.default_partitions = 65 is above server.max_partitions_per_topic = 64",
            ),
            (
                |c| c.server.max_request_bytes = 4 << 20,
                "server.max_request_bytes = 4194304 is below log.max_batch_bytes = 8388608: \
                 a request could never carry the largest batch",
            ),
        ];
        for (mutate, message) in cases {
            let mut config = BrokerConfig::default();
            config.server.max_partitions_per_topic = 64;
            config.log.max_batch_bytes = 8 << 20;
            mutate(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn log_error_keeps_its_source() {
        let mut config = BrokerConfig::default();
        config.log.max_index_bytes = 1;
        let err = config.validate().unwrap_err();
        let BrokerConfigError::Log { source } = &err else {
            panic!("expected Log, got {err:?}");
        };
        assert_eq!(
            source,
            &ConfigError::OutOfRange {
                name: "max_index_bytes",
                value: 1,
                min: 64,
                max: 1 << 30,
            }
        );
    }

    #[test]
    fn bad_flush_policy_in_file_names_line() {
        let text = "[log]\nflush = \"sometimes\"\n";
        let f = file(text);
        let err = BrokerConfig::load(Some(f.path()), no_env()).unwrap_err();
        let BrokerConfigError::File { source, .. } = &err else {
            panic!("expected File, got {err:?}");
        };
        assert_eq!(line_of(source, text), 2);
        assert_eq!(
            toml_message(source),
            ConfigError::FlushPolicy {
                value: "sometimes".to_string()
            }
            .to_string()
        );
    }

    #[test]
    fn bad_flush_policy_in_env_names_variable() {
        let vars = env(&[("BROOK_LOG_FLUSH", "interval:0")]);
        let err = BrokerConfig::load(None, vars).unwrap_err();
        let BrokerConfigError::EnvValue {
            variable,
            value,
            source,
        } = &err
        else {
            panic!("expected EnvValue, got {err:?}");
        };
        assert_eq!(variable, "BROOK_LOG_FLUSH");
        assert_eq!(value, "interval:0");
        assert_eq!(
            toml_message(source),
            ConfigError::FlushPolicy {
                value: "interval:0".to_string()
            }
            .to_string()
        );
    }

    #[test]
    fn unlimited_below_minus_one_is_an_error() {
        let vars = env(&[("BROOK_LOG_RETENTION_BYTES", "-2")]);
        let err = BrokerConfig::load(None, vars).unwrap_err();
        let BrokerConfigError::EnvValue { source, .. } = &err else {
            panic!("expected EnvValue, got {err:?}");
        };
        assert_eq!(
            toml_message(source),
            "-2 is invalid: use -1 for unlimited or a number from 0"
        );
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        let vars = env(&[("BROOK_SERVER_NOPE", "1")]);
        let err = BrokerConfig::load(None, vars).unwrap_err();
        let BrokerConfigError::UnknownEnvKey {
            variable,
            section,
            key,
            known,
        } = &err
        else {
            panic!("expected UnknownEnvKey, got {err:?}");
        };
        assert_eq!(variable, "BROOK_SERVER_NOPE");
        assert_eq!(*section, "server");
        assert_eq!(key, "nope");
        assert_eq!(known.len(), 13);
        assert!(err.to_string().starts_with(
            "environment variable BROOK_SERVER_NOPE sets no setting: [server] has no key \"nope\" \
             (keys: "
        ));
    }

    #[test]
    fn env_value_of_wrong_type_names_the_variable() {
        let vars = env(&[
            ("BROOK_SERVER_NODE_ID", "2"),
            ("BROOK_SERVER_MAX_CONNECTIONS", "many"),
        ]);
        let err = BrokerConfig::load(None, vars).unwrap_err();
        let BrokerConfigError::EnvValue {
            variable, value, ..
        } = &err
        else {
            panic!("expected EnvValue, got {err:?}");
        };
        assert_eq!(variable, "BROOK_SERVER_MAX_CONNECTIONS");
        assert_eq!(value, "many");
    }

    #[test]
    fn listeners_on_one_port_conflict_unless_port_zero() {
        let mut config = BrokerConfig::default();
        config.server.http_listen = "0.0.0.0:7400".parse().unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "server.listen = 127.0.0.1:7400 and server.http_listen = 0.0.0.0:7400 would bind \
             the same port: give each its own (or port 0)"
        );

        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http_listen = "127.0.0.1:0".parse().unwrap();
        config.validate().unwrap();

        // Distinct specific addresses may share a port.
        config.server.listen = "127.0.0.1:7400".parse().unwrap();
        config.server.http_listen = "127.0.0.2:7400".parse().unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn tls_settings_that_do_not_go_together_are_refused() {
        let tls = |f: &dyn Fn(&mut TlsConfig)| {
            let mut c = BrokerConfig::default();
            f(&mut c.tls);
            c
        };
        let reason = |c: BrokerConfig| match c.validate() {
            Err(BrokerConfigError::Tls { reason }) => reason,
            other => panic!("expected a [tls] error, got {other:?}"),
        };
        let on = |t: &mut TlsConfig| {
            t.cert_file = "b.pem".into();
            t.key_file = "b.key".into();
        };
        assert_eq!(
            reason(tls(&|t| t.cert_file = "b.pem".into())),
            "cert_file and key_file go together: set both (TLS on) or neither (TLS off)"
        );
        assert_eq!(
            reason(tls(&|t| t.key_file = "b.key".into())),
            "cert_file and key_file go together: set both (TLS on) or neither (TLS off)"
        );
        assert_eq!(
            reason(tls(&|t| t.ca_file = "ca.pem".into())),
            "ca_file is set but cert_file is not: TLS needs this broker's certificate"
        );
        assert_eq!(
            reason(tls(&|t| t.http = true)),
            "http = true needs TLS: set cert_file and key_file"
        );
        assert_eq!(
            reason(tls(&|t| {
                on(t);
                t.client_auth = ClientAuth::Required;
            })),
            "client_auth = \"required\" needs ca_file, the CA that signs client certificates"
        );
        let mut cluster = tls(&on);
        cluster.cluster.voters = "1@127.0.0.1:7400".into();
        assert_eq!(
            reason(cluster.clone()),
            "a cluster with TLS needs ca_file, the CA that verifies the other brokers' certificates"
        );
        cluster.tls.ca_file = "ca.pem".into();
        cluster.validate().unwrap();
        tls(&on).validate().unwrap();
        // The message names the section.
        let err = tls(&|t| t.http = true).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "[tls] http = true needs TLS: set cert_file and key_file"
        );
    }

    #[test]
    fn auth_settings_that_do_not_go_together_are_refused() {
        let reason = |f: &dyn Fn(&mut BrokerConfig)| {
            let mut c = BrokerConfig::default();
            f(&mut c);
            match c.validate() {
                Err(BrokerConfigError::Auth { reason }) => reason,
                other => panic!("expected an [auth] error, got {other:?}"),
            }
        };
        assert_eq!(
            reason(&|c| c.auth.jwt_hs256_secret_file = "s".into()),
            "a JWT key needs jwt_audience, the audience every token must name"
        );
        assert_eq!(
            reason(&|c| c.auth.jwt_jwks_file = "jwks.json".into()),
            "a JWT key needs jwt_audience, the audience every token must name"
        );
        assert_eq!(
            reason(&|c| c.auth.jwt_audience = "brook".into()),
            "jwt_audience is set but no JWT key is: set jwt_hs256_secret_file, jwt_rs256_public_key_file or jwt_jwks_file"
        );
        assert_eq!(
            reason(&|c| c.auth.jwt_issuer = "i".into()),
            "jwt_issuer is set but no JWT key is: set jwt_hs256_secret_file, jwt_rs256_public_key_file or jwt_jwks_file"
        );
        assert_eq!(
            reason(&|c| c.auth.required = true),
            "required = true needs a way to authenticate: a JWT key, or tls.client_auth = \"required\""
        );
        let jwt = |c: &mut BrokerConfig| {
            c.auth.required = true;
            c.auth.jwt_rs256_public_key_file = "k.pub".into();
            c.auth.jwt_audience = "brook".into();
        };
        assert_eq!(
            reason(&|c| {
                jwt(c);
                c.cluster.voters = "1@127.0.0.1:7400".into();
            }),
            "required = true in a cluster needs tls.client_auth = \"required\": brokers authenticate to each other with their certificates"
        );
        let mut alone = BrokerConfig::default();
        jwt(&mut alone);
        alone.validate().unwrap();
        let mut mtls = BrokerConfig::default();
        mtls.auth.required = true;
        mtls.tls.cert_file = "b.pem".into();
        mtls.tls.key_file = "b.key".into();
        mtls.tls.ca_file = "ca.pem".into();
        mtls.tls.client_auth = ClientAuth::Required;
        mtls.cluster.voters = "1@127.0.0.1:7400".into();
        mtls.validate().unwrap();
    }

    #[test]
    fn authorization_settings_that_do_not_go_together_are_refused() {
        let reason = |f: &dyn Fn(&mut BrokerConfig)| {
            let mut c = BrokerConfig::default();
            f(&mut c);
            match c.validate() {
                Err(BrokerConfigError::Authorization { reason }) => reason,
                other => panic!("expected an [authorization] error, got {other:?}"),
            }
        };
        assert_eq!(
            reason(&|c| c.authorization.enabled = true),
            "enabled = true needs super_users: without a super-user nobody could grant the first ACL"
        );
        for bad in ["admin", "User:", "User:*", "User:a;Group:b"] {
            let entry = bad.rsplit(';').next().unwrap();
            assert_eq!(
                reason(&|c| c.authorization.super_users = bad.into()),
                format!(
                    "super_users entry {entry:?} is not User:<name> (entries are separated by semicolons)"
                )
            );
        }
        assert_eq!(
            reason(&|c| {
                c.authorization.enabled = true;
                c.authorization.super_users = "User:admin".into();
                c.cluster.voters = "1@127.0.0.1:7400".into();
            }),
            "enabled = true in a cluster needs tls.client_auth = \"required\": brokers are authorized by their certificates' principals"
        );
        let mut c = BrokerConfig::default();
        c.authorization.enabled = true;
        c.authorization.super_users = " User:admin ;; User:CN=b,O=x ".into();
        c.validate().unwrap();
        assert_eq!(
            c.authorization.super_users().unwrap(),
            ["User:admin", "User:CN=b,O=x"]
        );
        assert_eq!(
            c.authorization.audit_log_path(Path::new("d")),
            Path::new("d/audit.log")
        );
        c.authorization.audit_log_max_bytes = 100;
        assert!(matches!(
            c.validate(),
            Err(BrokerConfigError::OutOfRange {
                name: "authorization.audit_log_max_bytes",
                value: 100,
                min: 4096,
                max: 1_099_511_627_776,
            })
        ));
    }

    #[test]
    fn tls_settings_come_from_the_environment() {
        let vars = env(&[
            ("BROOK_TLS_CERT_FILE", "/b.pem"),
            ("BROOK_TLS_KEY_FILE", "/b.key"),
            ("BROOK_TLS_CA_FILE", "/ca.pem"),
            ("BROOK_TLS_CLIENT_AUTH", "required"),
        ]);
        let config = BrokerConfig::load(None, vars).unwrap();
        assert!(config.tls.enabled());
        assert_eq!(config.tls.client_auth, ClientAuth::Required);
        assert_eq!(config.tls.ca_file, PathBuf::from("/ca.pem"));
        let err =
            BrokerConfig::load(None, env(&[("BROOK_TLS_CLIENT_AUTH", "optional")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable BROOK_TLS_CLIENT_AUTH=\"optional\" is invalid"),
            "{err}"
        );
    }

    #[test]
    fn invalid_logging_level_is_an_error() {
        let vars = env(&[("BROOK_LOGGING_LEVEL", "info,brook=loud")]);
        let err = BrokerConfig::load(None, vars).unwrap_err();
        let BrokerConfigError::LoggingLevel { value, .. } = &err else {
            panic!("expected LoggingLevel, got {err:?}");
        };
        assert_eq!(value, "info,brook=loud");
        assert!(
            err.to_string()
                .starts_with("logging.level = \"info,brook=loud\" is not a valid filter: "),
            "{err}"
        );
    }
}
