//! `brook-connect`'s configuration: one TOML file, one serde tree, a `validate` that names the
//! setting, the value and the limit.
//!
//! Precedence, lowest first: the defaults below, the TOML file, then the environment variables
//! `BROOK_CONNECT_HTTP_LISTEN`, `BROOK_CONNECT_BROOK_BOOTSTRAP` and
//! `BROOK_CONNECT_KAFKA_BOOTSTRAP` ([`ConnectConfig::load`]). `connectors/brook-connect.example.toml`
//! lists every key; a unit test keeps its defaults equal to these.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use brook_client::Security;

use crate::ConfigError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Everything `brook-connect` reads at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    /// The HTTP listener for `/health` and `/metrics`.
    pub http: HttpConfig,
    /// The Brook cluster on one side of every pipeline.
    pub brook: BrookConfig,
    /// The Kafka cluster on the other side.
    pub kafka: KafkaConfig,
    /// How long start-up waits for each cluster to answer before giving up, and how long a
    /// graceful shutdown waits for in-flight records.
    pub timeouts: TimeoutsConfig,
    /// The pipelines, each `[[pipeline]]` table one of them; at least one.
    pub pipeline: Vec<PipelineConfig>,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/health` and `/metrics` (default `127.0.0.1:7501`).
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7501)),
        }
    }
}

/// The Brook side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrookConfig {
    /// A Brook broker's gRPC address (default `127.0.0.1:7400`).
    pub bootstrap: String,
    /// PEM CA certificates that sign the brokers' certificates; set, the connector speaks TLS
    /// (default empty: plain text).
    pub tls_ca_file: String,
    /// PEM client certificate, for brokers that require one (with `tls_key_file`).
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Name to check the brokers' certificates against instead of the host connected to.
    pub tls_server_name: String,
    /// File holding a bearer token (JWT) sent with every request (default empty: none).
    pub token_file: String,
}

impl Default for BrookConfig {
    fn default() -> Self {
        BrookConfig {
            bootstrap: "127.0.0.1:7400".into(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_server_name: String::new(),
            token_file: String::new(),
        }
    }
}

impl BrookConfig {
    /// The connections' security settings: plain text, or TLS as the `tls_*` keys say, and
    /// the token of `token_file`. Reads the files; an error names the key and the file.
    pub fn security(&self) -> Result<Security, ConfigError> {
        let security = self.tls()?;
        if self.token_file.is_empty() {
            return Ok(security);
        }
        security
            .with_token_file(Path::new(&self.token_file))
            .map_err(|e| ConfigError::Invalid {
                name: "brook.token_file".into(),
                value: self.token_file.clone(),
                reason: e.to_string(),
            })
    }

    fn tls(&self) -> Result<Security, ConfigError> {
        let invalid = |name: &str, value: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            value: value.into(),
            reason,
        };
        let (ca, cert, key, name) = (
            self.tls_ca_file.as_str(),
            self.tls_cert_file.as_str(),
            self.tls_key_file.as_str(),
            self.tls_server_name.as_str(),
        );
        if ca.is_empty() {
            if let Some((setting, value)) = [
                ("brook.tls_cert_file", cert),
                ("brook.tls_key_file", key),
                ("brook.tls_server_name", name),
            ]
            .into_iter()
            .find(|(_, v)| !v.is_empty())
            {
                return Err(invalid(setting, value, "needs brook.tls_ca_file".into()));
            }
            return Ok(Security::plaintext());
        }
        let mut security = Security::tls_from_files(Path::new(ca))
            .map_err(|e| invalid("brook.tls_ca_file", ca, e.to_string()))?;
        match (cert.is_empty(), key.is_empty()) {
            (false, false) => {
                security = security
                    .with_client_certificate_files(Path::new(cert), Path::new(key))
                    .map_err(|e| invalid("brook.tls_cert_file", cert, e.to_string()))?;
            }
            (true, true) => {}
            (false, true) => {
                return Err(invalid(
                    "brook.tls_cert_file",
                    cert,
                    "needs brook.tls_key_file".into(),
                ));
            }
            (true, false) => {
                return Err(invalid(
                    "brook.tls_key_file",
                    key,
                    "needs brook.tls_cert_file".into(),
                ));
            }
        }
        if !name.is_empty() {
            security = security
                .with_server_name(name)
                .map_err(|e| invalid("brook.tls_server_name", name, e.to_string()))?;
        }
        Ok(security)
    }
}

/// The Kafka side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Kafka's `bootstrap.servers` (default `127.0.0.1:9092`).
    pub bootstrap: String,
    /// Extra librdkafka properties for every Kafka client the connector creates (security,
    /// timeouts, `compression.type`, ...). They override the connector's own choices, except
    /// the ones its guarantees rest on, which are refused by `validate`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap: "127.0.0.1:9092".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// librdkafka properties the connector sets itself because at-least-once rests on them.
pub const RESERVED_KAFKA_PROPERTIES: [&str; 6] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "enable.idempotence",
    "acks",
];

/// Start-up and shutdown timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// How long start-up waits for each cluster to answer (default 15 000 ms; 100..=600 000).
    /// Past start-up, an unreachable cluster is retried for as long as it takes.
    pub startup_ms: u64,
    /// How long a graceful shutdown waits for in-flight records to be acknowledged before it
    /// commits what was and exits (default 30 000 ms; 0..=600 000).
    pub shutdown_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            startup_ms: 15_000,
            shutdown_ms: 30_000,
        }
    }
}

/// Which way a pipeline moves records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// A source connector: Kafka topics into Brook topics (alias `source`).
    #[serde(alias = "source")]
    KafkaToBrook,
    /// A sink connector: Brook topics into Kafka topics (alias `sink`).
    #[serde(alias = "sink")]
    BrookToKafka,
}

impl Direction {
    /// The name used in metrics labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Direction::KafkaToBrook => "kafka-to-brook",
            Direction::BrookToKafka => "brook-to-kafka",
        }
    }
}

/// How a record's destination partition is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// Keyed records go to `murmur2(key) % partitions` (Kafka's and Brook's default
    /// partitioner), so a key lands on the same partition number on both sides. Records
    /// without a key go to `source partition % partitions`, which keeps their order.
    ByKey,
    /// A record goes to the partition with its source partition's number; the destination
    /// needs at least as many partitions as the source.
    OneToOne,
}

/// Where a pipeline starts on a partition its group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The first record still retained.
    Earliest,
    /// Records written from now on.
    Latest,
}

/// One pipeline: topics on one side mirrored to topics on the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name, 1..=64 characters of `[A-Za-z0-9._-]`; labels metrics and names the
    /// default consumer group.
    pub name: String,
    /// `kafka-to-brook` (alias `source`) or `brook-to-kafka` (alias `sink`).
    pub direction: Direction,
    /// Topics read on the source side; at least one.
    pub topics: Vec<String>,
    /// The destination topic's name, where `{topic}` stands for the source topic (default
    /// `"{topic}"`: the same name).
    #[serde(default = "default_destination")]
    pub destination: String,
    /// `by-key` (default) or `one-to-one`.
    #[serde(default = "default_partitioning")]
    pub partitioning: Partitioning,
    /// The consumer group on the source side whose committed offsets are the pipeline's
    /// position (default `brook-connect.<name>`).
    #[serde(default)]
    pub group: Option<String>,
    /// Where to begin on partitions the group never committed (default `earliest`).
    #[serde(default = "default_start_from")]
    pub start_from: StartFrom,
    /// Create a missing destination topic with the source topic's partition count (and the
    /// destination cluster's default replication) (default `true`); when `false`, a missing
    /// destination topic is an error.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// How often acknowledged positions are committed on the source side (default 1000 ms;
    /// 10..=600 000). Records after the last commit are what a crash may deliver twice.
    #[serde(default = "default_commit_interval")]
    pub commit_interval_ms: u64,
    /// Most records read but not yet acknowledged by the destination (default 50 000;
    /// 1..=1 000 000). Reading pauses at the limit: backpressure from the slower side.
    #[serde(default = "default_in_flight_records")]
    pub max_in_flight_records: u64,
    /// Most bytes (keys, values, headers) read but not yet acknowledged (default 64 MiB;
    /// 1 MiB..=4 GiB).
    #[serde(default = "default_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// How long the destination producer waits to fill a batch (default 5 ms; 0..=10 000).
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Largest batch the destination producer builds (default 256 KiB; 1 KiB..=32 MiB).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: u64,
}

fn default_destination() -> String {
    "{topic}".into()
}
fn default_partitioning() -> Partitioning {
    Partitioning::ByKey
}
fn default_start_from() -> StartFrom {
    StartFrom::Earliest
}
fn default_true() -> bool {
    true
}
fn default_commit_interval() -> u64 {
    1000
}
fn default_in_flight_records() -> u64 {
    50_000
}
fn default_in_flight_bytes() -> u64 {
    64 * MIB
}
fn default_linger() -> u64 {
    5
}
fn default_batch_bytes() -> u64 {
    256 * KIB
}

impl PipelineConfig {
    /// A pipeline with every optional setting at its default.
    pub fn new(name: &str, direction: Direction, topics: &[&str]) -> PipelineConfig {
        PipelineConfig {
            name: name.into(),
            direction,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            destination: default_destination(),
            partitioning: default_partitioning(),
            group: None,
            start_from: default_start_from(),
            create_topics: true,
            commit_interval_ms: default_commit_interval(),
            max_in_flight_records: default_in_flight_records(),
            max_in_flight_bytes: default_in_flight_bytes(),
            linger_ms: default_linger(),
            batch_bytes: default_batch_bytes(),
        }
    }

    /// The source-side consumer group.
    pub fn group_id(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("brook-connect.{}", self.name))
    }

    /// The destination topic of `source_topic`.
    pub fn destination_of(&self, source_topic: &str) -> String {
        self.destination.replace("{topic}", source_topic)
    }

    /// The commit interval.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

/// A topic name both Kafka and Brook accept: 1..=249 characters of `[A-Za-z0-9._-]`.
fn valid_topic(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn range(name: String, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

impl ConnectConfig {
    /// Reads `path` (TOML), applies the environment overrides and validates.
    pub fn load(path: &Path) -> Result<ConnectConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = ConnectConfig::parse(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        config.apply_env(std::env::vars())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating.
    pub fn parse(text: &str) -> Result<ConnectConfig, ConfigError> {
        toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: "<text>".into(),
            message: err.to_string(),
        })
    }

    /// Applies `BROOK_CONNECT_HTTP_LISTEN`, `BROOK_CONNECT_BROOK_BOOTSTRAP` and
    /// `BROOK_CONNECT_KAFKA_BOOTSTRAP` from `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in vars {
            match key.as_str() {
                "BROOK_CONNECT_HTTP_LISTEN" => {
                    self.http.listen = value.parse().map_err(|_| ConfigError::Invalid {
                        name: key.clone(),
                        value: value.clone(),
                        reason: "expected an address such as 127.0.0.1:7501".into(),
                    })?;
                }
                "BROOK_CONNECT_BROOK_BOOTSTRAP" => self.brook.bootstrap = value,
                "BROOK_CONNECT_KAFKA_BOOTSTRAP" => self.kafka.bootstrap = value,
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks every setting against its limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name: &str, value: &str, reason: &str| ConfigError::Invalid {
            name: name.into(),
            value: value.into(),
            reason: reason.into(),
        };
        if self.brook.bootstrap.trim().is_empty() {
            return Err(invalid("brook.bootstrap", "", "must name a Brook broker"));
        }
        if self.kafka.bootstrap.trim().is_empty() {
            return Err(invalid("kafka.bootstrap", "", "must name a Kafka broker"));
        }
        self.brook.security()?;
        for key in self.kafka.properties.keys() {
            if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("kafka.properties.\"{key}\""),
                    &self.kafka.properties[key],
                    "the connector sets this property itself (its at-least-once guarantee rests on it)",
                ));
            }
        }
        range(
            "timeouts.startup_ms".into(),
            self.timeouts.startup_ms,
            100,
            600_000,
        )?;
        range(
            "timeouts.shutdown_ms".into(),
            self.timeouts.shutdown_ms,
            0,
            600_000,
        )?;
        if self.pipeline.is_empty() {
            return Err(ConfigError::NoPipelines);
        }
        let mut names = BTreeSet::new();
        for p in &self.pipeline {
            let at = |key: &str| format!("pipeline \"{}\".{key}", p.name);
            let name_ok = (1..=64).contains(&p.name.len())
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !name_ok {
                return Err(invalid(
                    "pipeline.name",
                    &p.name,
                    "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    "pipeline.name",
                    &p.name,
                    "two pipelines have this name",
                ));
            }
            if p.topics.is_empty() {
                return Err(invalid(&at("topics"), "[]", "list at least one topic"));
            }
            let mut seen = BTreeSet::new();
            for topic in &p.topics {
                if !valid_topic(topic) {
                    return Err(invalid(
                        &at("topics"),
                        topic,
                        "a topic name is 1 to 249 characters of A-Z a-z 0-9 . _ -",
                    ));
                }
                if !seen.insert(topic) {
                    return Err(invalid(&at("topics"), topic, "listed twice"));
                }
                let dest = p.destination_of(topic);
                if !valid_topic(&dest) {
                    return Err(invalid(
                        &at("destination"),
                        &p.destination,
                        &format!(
                            "gives the topic name \"{dest}\" for \"{topic}\"; a topic name is 1 to 249 characters of A-Z a-z 0-9 . _ -"
                        ),
                    ));
                }
            }
            if let Some(group) = &p.group
                && (group.is_empty() || group.len() > 255)
            {
                return Err(invalid(&at("group"), group, "must be 1 to 255 characters"));
            }
            range(at("commit_interval_ms"), p.commit_interval_ms, 10, 600_000)?;
            range(
                at("max_in_flight_records"),
                p.max_in_flight_records,
                1,
                1_000_000,
            )?;
            range(
                at("max_in_flight_bytes"),
                p.max_in_flight_bytes,
                MIB,
                4 * GIB,
            )?;
            range(at("linger_ms"), p.linger_ms, 0, 10_000)?;
            range(at("batch_bytes"), p.batch_bytes, KIB, 32 * MIB)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[pipeline]]
name = "orders-in"
direction = "kafka-to-brook"
topics = ["orders"]
"#;

    fn with(extra: &str) -> Result<ConnectConfig, ConfigError> {
        let config = ConnectConfig::parse(&format!("{MINIMAL}{extra}"))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn minimal_config_takes_every_default() {
        let config = with("").unwrap();
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.brook.bootstrap, "127.0.0.1:7400");
        assert_eq!(config.kafka.bootstrap, "127.0.0.1:9092");
        assert_eq!(
            config.pipeline,
            vec![PipelineConfig::new(
                "orders-in",
                Direction::KafkaToBrook,
                &["orders"]
            )]
        );
        assert_eq!(config.pipeline[0].group_id(), "brook-connect.orders-in");
        assert_eq!(config.pipeline[0].destination_of("orders"), "orders");
    }

    #[test]
    fn example_file_parses_and_matches_the_defaults() {
        let text = include_str!("../brook-connect.example.toml");
        let config = ConnectConfig::parse(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.brook, BrookConfig::default());
        assert_eq!(config.kafka.bootstrap, KafkaConfig::default().bootstrap);
        assert_eq!(config.timeouts, TimeoutsConfig::default());
        let first = &config.pipeline[0];
        let mut expected = PipelineConfig::new(&first.name, first.direction, &["orders"]);
        expected.topics = first.topics.clone();
        expected.group = first.group.clone();
        assert_eq!(
            first, &expected,
            "the first example pipeline shows the defaults"
        );
        assert_eq!(config.pipeline[1].direction, Direction::BrookToKafka);
    }

    #[test]
    fn source_and_sink_are_aliases_of_the_directions() {
        let config = ConnectConfig::parse(
            "[[pipeline]]\nname = \"a\"\ndirection = \"source\"\ntopics = [\"t\"]\n\
             [[pipeline]]\nname = \"b\"\ndirection = \"sink\"\ntopics = [\"t\"]\n",
        )
        .unwrap();
        assert_eq!(config.pipeline[0].direction, Direction::KafkaToBrook);
        assert_eq!(config.pipeline[1].direction, Direction::BrookToKafka);
    }

    #[test]
    fn destination_template_renames_topics() {
        let config = with("destination = \"kafka.{topic}.copy\"\n").unwrap();
        assert_eq!(
            config.pipeline[0].destination_of("orders"),
            "kafka.orders.copy"
        );
    }

    #[test]
    fn malformed_toml_and_unknown_keys_are_refused_with_the_key() {
        let err = ConnectConfig::parse("[[pipeline]\nname=").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = with("linger = 5\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `linger`"), "{err}");
        let err = with("direction2 = 1\n").unwrap_err().to_string();
        assert!(err.contains("direction2"), "{err}");
        let err = ConnectConfig::parse(
            "[[pipeline]]\nname = \"a\"\ndirection = \"sideways\"\ntopics = [\"t\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sideways"), "{err}");
        let err = with("partitioning = \"random\"\n").unwrap_err().to_string();
        assert!(err.contains("random"), "{err}");
    }

    #[test]
    fn out_of_range_settings_name_the_value_and_the_limits() {
        let cases = [
            (
                "commit_interval_ms = 5\n",
                "commit_interval_ms",
                5,
                10,
                600_000,
            ),
            (
                "max_in_flight_records = 0\n",
                "max_in_flight_records",
                0,
                1,
                1_000_000,
            ),
            (
                "max_in_flight_records = 1000001\n",
                "max_in_flight_records",
                1_000_001,
                1,
                1_000_000,
            ),
            (
                "max_in_flight_bytes = 1000\n",
                "max_in_flight_bytes",
                1000,
                MIB,
                4 * GIB,
            ),
            ("linger_ms = 10001\n", "linger_ms", 10_001, 0, 10_000),
            ("batch_bytes = 1023\n", "batch_bytes", 1023, KIB, 32 * MIB),
            (
                "batch_bytes = 33554433\n",
                "batch_bytes",
                33_554_433,
                KIB,
                32 * MIB,
            ),
        ];
        for (extra, key, value, min, max) in cases {
            let err = with(extra).unwrap_err();
            assert_eq!(
                err,
                ConfigError::OutOfRange {
                    name: format!("pipeline \"orders-in\".{key}"),
                    value,
                    min,
                    max
                },
                "{extra}"
            );
            assert_eq!(
                err.to_string(),
                format!("pipeline \"orders-in\".{key} = {value} is out of range {min}..={max}")
            );
        }
        let mut config = with("").unwrap();
        config.timeouts.startup_ms = 50;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "timeouts.startup_ms = 50 is out of range 100..=600000"
        );
    }

    #[test]
    fn bad_names_topics_and_templates_are_refused() {
        let mut config = with("").unwrap();
        config.pipeline.push(config.pipeline[0].clone());
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "pipeline.name = \"orders-in\": two pipelines have this name"
        );
        let err = ConnectConfig::parse(
            "[[pipeline]]\nname = \"a b\"\ndirection = \"source\"\ntopics = [\"t\"]\n",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            err.to_string().starts_with("pipeline.name = \"a b\""),
            "{err}"
        );
        let too_long = "x".repeat(250);
        let err = ConnectConfig::parse(&format!(
            "[[pipeline]]\nname = \"a\"\ndirection = \"source\"\ntopics = [\"{too_long}\"]\n"
        ))
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("1 to 249 characters"), "{err}");
        let err = ConnectConfig::parse(
            "[[pipeline]]\nname = \"a\"\ndirection = \"source\"\ntopics = []\n",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline \"a\".topics = \"[]\": list at least one topic"
        );
        let err = with("destination = \"bad/{topic}\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("gives the topic name \"bad/orders\" for \"orders\""),
            "{err}"
        );
        let err = ConnectConfig::parse("").unwrap().validate().unwrap_err();
        assert_eq!(err, ConfigError::NoPipelines);
    }

    #[test]
    fn reserved_kafka_properties_are_refused() {
        let err = with("[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "kafka.properties.\"enable.auto.commit\" = \"true\": the connector sets this property itself"
            ),
            "{err}"
        );
        let ok = with("[kafka.properties]\n\"compression.type\" = \"lz4\"\n").unwrap();
        assert_eq!(ok.kafka.properties["compression.type"], "lz4");
    }

    #[test]
    fn tls_keys_that_do_not_go_together_or_name_missing_files_are_refused() {
        let refused = |brook: &str| with(&format!("[brook]\n{brook}")).unwrap_err().to_string();
        assert_eq!(
            refused("tls_cert_file = \"c.pem\"\ntls_key_file = \"c.key\""),
            "brook.tls_cert_file = \"c.pem\": needs brook.tls_ca_file"
        );
        assert_eq!(
            refused("tls_server_name = \"b\""),
            "brook.tls_server_name = \"b\": needs brook.tls_ca_file"
        );
        let err = refused("tls_ca_file = \"/nonexistent/ca.pem\"");
        assert!(
            err.starts_with(
                "brook.tls_ca_file = \"/nonexistent/ca.pem\": TLS CA file /nonexistent/ca.pem: "
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let ca = not_pem.to_str().unwrap();
        assert_eq!(
            refused(&format!("tls_ca_file = \"{ca}\"")),
            format!("brook.tls_ca_file = \"{ca}\": TLS CA file {ca}: holds no CERTIFICATE block")
        );
        assert!(!with("").unwrap().brook.security().unwrap().is_tls());
        let err = refused("token_file = \"/nonexistent/token\"");
        assert!(
            err.starts_with(
                "brook.token_file = \"/nonexistent/token\": token file /nonexistent/token: "
            ),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_the_endpoints() {
        let mut config = with("").unwrap();
        config
            .apply_env([
                (
                    "BROOK_CONNECT_KAFKA_BOOTSTRAP".to_string(),
                    "k:1".to_string(),
                ),
                (
                    "BROOK_CONNECT_BROOK_BOOTSTRAP".to_string(),
                    "b:2".to_string(),
                ),
                (
                    "BROOK_CONNECT_HTTP_LISTEN".to_string(),
                    "127.0.0.1:9999".to_string(),
                ),
                ("UNRELATED".to_string(), "x".to_string()),
            ])
            .unwrap();
        assert_eq!(config.kafka.bootstrap, "k:1");
        assert_eq!(config.brook.bootstrap, "b:2");
        assert_eq!(config.http.listen.port(), 9999);
        let err = config
            .apply_env([("BROOK_CONNECT_HTTP_LISTEN".to_string(), "nope".to_string())])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "BROOK_CONNECT_HTTP_LISTEN = \"nope\": expected an address such as 127.0.0.1:7501"
        );
    }
}
