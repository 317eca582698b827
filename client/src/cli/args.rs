//! The `brook` command line: every subcommand and flag (clap derive), and the parsers for the
//! values clap cannot check by itself.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use brook_proto::v1::Acks;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::connection::DEFAULT_BOOTSTRAP;
use crate::{ClientError, Security};

/// Exit codes and output conventions, shown at the end of `brook --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the broker reported an error (printed as `error: CODE: message (topic T[, partition P])`,
     e.g. `error: TOPIC_ALREADY_EXISTS: ...`), the request failed, or the input/output failed
  2  usage error: unknown flag, malformed value (e.g. --config without `=`), invalid argument
  3  cannot reach the broker (printed as `error: cannot connect to ADDR: reason`), or the
     connection was lost

Results go to stdout, one item per line; errors and progress (`produced N records`,
`consumed N records`) go to stderr.";

/// Default of `produce --batch-size`.
pub const DEFAULT_BATCH_SIZE: u32 = 1000;
/// Default of `produce --max-batch-bytes`: below the 1 MiB `max.message.bytes` default.
pub const DEFAULT_MAX_BATCH_BYTES: u32 = 1_000_000;
/// Default of `produce --linger-ms`.
pub const DEFAULT_LINGER_MS: u64 = 100;
/// Default of `produce --request-timeout-ms`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// `brook`: the Brook command-line tool.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "brook",
    version,
    about = "Command-line tool for Brook brokers: topics, produce, consume, cluster status",
    after_long_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Broker to connect to: host:port or http://host:port
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "BROOK_BOOTSTRAP",
        default_value = DEFAULT_BOOTSTRAP,
        value_name = "ADDR"
    )]
    pub bootstrap: String,

    /// TLS and credentials.
    #[command(flatten)]
    pub security: SecurityArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// TLS and token options shared by the tools (`brook`, `brook-bench`).
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// Connect with TLS, trusting brokers whose certificate chains to a CA in this PEM file
    #[arg(long, global = true, env = "BROOK_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one; needs --tls-ca and --tls-key
    #[arg(long, global = true, env = "BROOK_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, global = true, env = "BROOK_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Name to check the brokers' certificates against, instead of the host connected to
    #[arg(
        long,
        global = true,
        env = "BROOK_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,
    /// Bearer token (JWT) sent with every request; prefer --token-file, which keeps it out of
    /// the process list
    #[arg(
        long,
        global = true,
        env = "BROOK_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the bearer token (JWT) sent with every request
    #[arg(
        long,
        global = true,
        env = "BROOK_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// The connections' security settings; refuses options that need others.
    pub fn build(&self) -> Result<Security, ClientError> {
        let mut security = self.tls()?;
        if let Some(token) = &self.token {
            security = security.with_token(token)?;
        }
        if let Some(path) = &self.token_file {
            security = security.with_token_file(path)?;
        }
        Ok(security)
    }

    fn tls(&self) -> Result<Security, ClientError> {
        let Some(ca) = &self.tls_ca else {
            return match (&self.tls_cert, &self.tls_key, &self.tls_server_name) {
                (None, None, None) => Ok(Security::plaintext()),
                _ => Err(ClientError::InvalidArgument(
                    "--tls-cert, --tls-key and --tls-server-name need --tls-ca".into(),
                )),
            };
        };
        let mut security = Security::tls_from_files(ca)?;
        security = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => security.with_client_certificate_files(cert, key)?,
            (None, None) => security,
            _ => {
                return Err(ClientError::InvalidArgument(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        if let Some(name) = &self.tls_server_name {
            security = security.with_server_name(name.clone())?;
        }
        Ok(security)
    }
}

/// The top-level subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write stdin to a topic, one record per line
    #[command(long_about = PRODUCE_HELP)]
    Produce(ProduceArgs),
    /// Print a topic's records to stdout, one value per line
    #[command(long_about = CONSUME_HELP)]
    Consume(ConsumeArgs),
    /// Cluster-wide information
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Consumer groups: list and describe
    #[command(subcommand)]
    Group(GroupCommand),
    /// Access control lists: add, remove and list who may do what
    #[command(subcommand)]
    Acl(AclCommand),
}

/// `brook acl ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AclCommand {
    /// Add ACLs: one per --operation; prints each as `acl list` does
    Add(AclArgs),
    /// Remove ACLs given as they were added; prints those that were there
    Remove(AclArgs),
    /// List ACLs: `PRINCIPAL<TAB>PERMISSION<TAB>OPERATION<TAB>RESOURCE_TYPE<TAB>PATTERN<TAB>NAME`
    List(AclListArgs),
}

/// The operations an ACL can name.
pub const ACL_OPERATIONS: [&str; 9] = [
    "all",
    "read",
    "write",
    "create",
    "delete",
    "describe",
    "alter_configs",
    "admin",
    "cluster_action",
];

/// `brook acl add|remove`: who, what, on which resource.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("resource").required(true).args(["topic", "group", "cluster"])))]
pub struct AclArgs {
    /// The principal: `User:<name>`, or `User:*` for everyone
    #[arg(long)]
    pub principal: String,
    /// The operation (repeatable)
    #[arg(long = "operation", short = 'o', required = true, value_parser = clap::builder::PossibleValuesParser::new(ACL_OPERATIONS))]
    pub operations: Vec<String>,
    /// A topic name (`*` for every topic), or a prefix with --prefixed
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// A group id (`*` for every group), or a prefix with --prefixed
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// The cluster (admin, cluster_action, create, describe)
    #[arg(long)]
    pub cluster: bool,
    /// The name is a prefix: the ACL covers every name that starts with it
    #[arg(long, conflicts_with = "cluster")]
    pub prefixed: bool,
    /// Deny instead of allow (a matching deny beats any allow)
    #[arg(long)]
    pub deny: bool,
}

/// `brook acl list`: optional filters.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("resource").args(["topic", "group", "cluster"])))]
pub struct AclListArgs {
    /// Only this principal's ACLs
    #[arg(long)]
    pub principal: Option<String>,
    /// Only the ACLs that cover this topic
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// Only the ACLs that cover this group
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Only the ACLs on the cluster
    #[arg(long)]
    pub cluster: bool,
}

/// `brook group ...`
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// List groups: `GROUP<TAB>MEMBERS`, one per line, sorted by id
    List,
    /// Describe a group: members and their assignments, committed offsets and lag
    Describe {
        /// Group id
        group: String,
    },
}

const PRODUCE_HELP: &str = "\
Write stdin to a topic, one record per line (the line ending, \\n or \\r\\n, is removed; an
empty line is a record with an empty value).

With --key-separator, each line is split at the first occurrence of the separator into key and
value; a line without the separator is sent with a null key and the whole line as value.

Partition: --partition if given; otherwise a keyed record goes to murmur2(key) % partitions
(the partition Kafka's default partitioner picks) and records without a key go to one
partition per batch, round robin.

Exits 0 only after every record was acknowledged (with --acks none: after the broker answered),
then prints `produced N records` to stderr; nothing is written to stdout. On the first error it
prints the error and exits 1; records sent before it stay written.";

const CONSUME_HELP: &str = "\
Print a topic's records to stdout, one value per line (bytes that are not UTF-8 are replaced
by U+FFFD; a null value prints as `null`). Records of one partition come in offset order;
partitions are interleaved.

With --print-offset a line starts with `PARTITION<TAB>OFFSET<TAB>`, with --print-key the key
(or `null`) and a tab come before the value.

Starts at the end of each partition (only new records) or, with --from-beginning, at the log
start. Stops after --max-messages records, after --timeout-ms without a new record, or on
Ctrl-C; then prints `consumed N records` to stderr and exits 0.";

/// `brook topic ...`
#[derive(Debug, Clone, Subcommand)]
pub enum TopicCommand {
    /// Create a topic
    Create(TopicCreateArgs),
    /// List topics: `NAME<TAB>PARTITIONS`, one per line, sorted by name
    List,
    /// Describe topics (all when no name is given): configs and partitions
    Describe(TopicNames),
    /// Delete topics
    Delete(RequiredTopicNames),
    /// Set or reset topic configs
    Alter(TopicAlterArgs),
    /// Raise a topic's partition count
    AddPartitions(AddPartitionsArgs),
}

/// `brook cluster ...`
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers, topic and partition counts
    Status,
    /// Move leadership back to each partition's preferred (first) replica
    ElectLeaders(ElectLeadersArgs),
    /// Move partitions to new replicas (the new ones catch up before the old are dropped),
    /// or cancel a move
    Reassign(ReassignArgs),
    /// List the reassignments still running: `TOPIC-PARTITION<TAB>REPLICAS<TAB>ADDING<TAB>REMOVING<TAB>ISR`
    Reassignments(ReassignmentsArgs),
}

/// `brook cluster reassign`
#[derive(Debug, Clone, Args)]
pub struct ReassignArgs {
    /// The topic
    #[arg(long, short = 't')]
    pub topic: String,
    /// The partitions to move (repeatable)
    #[arg(long, short = 'p', required = true)]
    pub partition: Vec<u32>,
    /// The target replicas as broker ids, preferred leader first: `2,3,4`
    #[arg(long, short = 'r', value_delimiter = ',', num_args = 1.., required_unless_present = "cancel", conflicts_with = "cancel")]
    pub replicas: Vec<i32>,
    /// Cancel the running moves instead: back to the replicas they started from
    #[arg(long)]
    pub cancel: bool,
    /// Wait until the moves have finished
    #[arg(long, conflicts_with = "cancel")]
    pub wait: bool,
    /// How long --wait waits, in milliseconds
    #[arg(long, default_value_t = 600_000, requires = "wait", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

/// `brook cluster reassignments`
#[derive(Debug, Clone, Args)]
pub struct ReassignmentsArgs {
    /// Only these topics (repeatable; default: every topic)
    #[arg(long, short = 't')]
    pub topic: Vec<String>,
}

/// `brook cluster elect-leaders`
#[derive(Debug, Clone, Args)]
pub struct ElectLeadersArgs {
    /// Only this topic (default: every topic)
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// Only these partitions of the topic (repeatable; needs --topic)
    #[arg(long, short = 'p', requires = "topic")]
    pub partition: Vec<u32>,
}

/// `brook topic create`
#[derive(Debug, Clone, Args)]
pub struct TopicCreateArgs {
    /// Topic name
    pub name: String,
    /// Number of partitions
    #[arg(long, short = 'p', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Replicas per partition [default: the broker's default]
    #[arg(long, short = 'r', value_parser = clap::value_parser!(u32).range(1..))]
    pub replication_factor: Option<u32>,
    /// Topic config as KEY=VALUE, e.g. retention.ms=3600000 (repeatable)
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_config_entry)]
    pub configs: Vec<ConfigEntry>,
}

/// One or more topic names, or none for "all".
#[derive(Debug, Clone, Args)]
pub struct TopicNames {
    /// Topic names (none: every topic)
    pub names: Vec<String>,
}

/// One or more topic names.
#[derive(Debug, Clone, Args)]
pub struct RequiredTopicNames {
    /// Topic names
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `brook topic alter`
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("changes").required(true).multiple(true))]
pub struct TopicAlterArgs {
    /// Topic name
    pub name: String,
    /// Config to set, KEY=VALUE (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_config_entry, group = "changes")]
    pub set: Vec<ConfigEntry>,
    /// Config to return to its default (repeatable)
    #[arg(long = "delete", value_name = "KEY", value_parser = parse_config_key, group = "changes")]
    pub delete: Vec<String>,
}

/// `brook topic add-partitions`
#[derive(Debug, Clone, Args)]
pub struct AddPartitionsArgs {
    /// Topic name
    pub name: String,
    /// The new partition count (above the current one)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub total: u32,
}

/// `brook produce`
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Topic to write to
    pub topic: String,
    /// Split each line at the first SEP into key and value
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Acknowledgement to wait for: none (0), leader (1) or all (-1)
    #[arg(long, value_enum, default_value_t = AckMode::All, allow_hyphen_values = true)]
    pub acks: AckMode,
    /// Send every record to this partition
    #[arg(long)]
    pub partition: Option<u32>,
    /// Most records per batch
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Most bytes per batch (estimated before encoding)
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_bytes: u32,
    /// Send a partly filled batch once its first line is this old
    #[arg(long, default_value_t = DEFAULT_LINGER_MS)]
    pub linger_ms: u64,
    /// Give up on a produce request after this long
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
}

impl ProduceArgs {
    /// The arguments `brook produce TOPIC` gets with no flags.
    pub fn new(topic: impl Into<String>) -> ProduceArgs {
        ProduceArgs {
            topic: topic.into(),
            key_separator: None,
            acks: AckMode::All,
            partition: None,
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            linger_ms: DEFAULT_LINGER_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }
}

/// `brook consume`
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Topic to read
    pub topic: String,
    /// Start at the log start instead of the end
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Stop after this many milliseconds without a new record [default: wait forever]
    #[arg(long, value_name = "T")]
    pub timeout_ms: Option<u64>,
    /// Read only this partition
    #[arg(long)]
    pub partition: Option<u32>,
    /// Print the key and a tab before the value
    #[arg(long)]
    pub print_key: bool,
    /// Print the partition, the offset and a tab before the record
    #[arg(long)]
    pub print_offset: bool,
    /// Read as a member of this consumer group: the group assigns the partitions, reading
    /// resumes at the group's committed offsets, and what is printed is committed
    #[arg(long, short = 'g', value_name = "GROUP", conflicts_with = "partition")]
    pub group: Option<String>,
}

impl ConsumeArgs {
    /// The arguments `brook consume TOPIC` gets with no flags.
    pub fn new(topic: impl Into<String>) -> ConsumeArgs {
        ConsumeArgs {
            topic: topic.into(),
            from_beginning: false,
            max_messages: None,
            timeout_ms: None,
            partition: None,
            print_key: false,
            print_offset: false,
            group: None,
        }
    }
}

/// `--acks`: how many replicas must have a batch before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    /// Do not wait for the append (Kafka acks=0)
    #[value(alias = "0")]
    None,
    /// The leader appended (Kafka acks=1)
    #[value(alias = "1")]
    Leader,
    /// Every in-sync replica appended (Kafka acks=all)
    #[value(alias = "-1")]
    All,
}

impl From<AckMode> for Acks {
    fn from(mode: AckMode) -> Acks {
        match mode {
            AckMode::None => Acks::None,
            AckMode::Leader => Acks::Leader,
            AckMode::All => Acks::All,
        }
    }
}

/// A topic config given as `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name, e.g. `retention.ms`.
    pub key: String,
    /// Its value, as text (the broker parses and range-checks it).
    pub value: String,
}

impl fmt::Display for ConfigEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Parses `KEY=VALUE` (split at the first `=`; the value may contain `=` and may be empty, the
/// key may not be empty nor contain whitespace).
pub fn parse_config_entry(s: &str) -> Result<ConfigEntry, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {s:?} (no '=')"));
    };
    let key = parse_config_key(key).map_err(|reason| format!("{reason} in {s:?}"))?;
    Ok(ConfigEntry {
        key,
        value: value.to_owned(),
    })
}

/// Parses a config name: not empty, no whitespace, no `=`.
pub fn parse_config_key(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty config key".to_owned());
    }
    if s.contains(|c: char| c.is_whitespace() || c == '=') {
        return Err(format!("config key {s:?} contains whitespace or '='"));
    }
    Ok(s.to_owned())
}

/// Parses `--key-separator`: any non-empty string.
pub fn parse_separator(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the key separator must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Collects config entries into the map the API takes, rejecting a key given twice.
pub fn config_map(entries: &[ConfigEntry]) -> Result<HashMap<String, String>, ClientError> {
    let mut map = HashMap::with_capacity(entries.len());
    for entry in entries {
        if let Some(first) = map.insert(entry.key.clone(), entry.value.clone()) {
            return Err(ClientError::InvalidArgument(format!(
                "config key {:?} given twice ({}={first} and {entry})",
                entry.key, entry.key
            )));
        }
    }
    Ok(map)
}

impl Cli {
    /// Checks what clap cannot: arguments that are invalid together. Run before connecting,
    /// so a usage error is reported as one (exit 2) even when the broker is down.
    pub fn validate(&self) -> Result<(), ClientError> {
        match &self.command {
            Command::Topic(TopicCommand::Create(args)) => config_map(&args.configs).map(drop),
            Command::Topic(TopicCommand::Alter(args)) => {
                config_map(&args.set)?;
                let mut seen = std::collections::HashSet::new();
                for key in &args.delete {
                    if args.set.iter().any(|e| &e.key == key) {
                        return Err(ClientError::InvalidArgument(format!(
                            "config key {key:?} is both set and deleted"
                        )));
                    }
                    if !seen.insert(key) {
                        return Err(ClientError::InvalidArgument(format!(
                            "config key {key:?} deleted twice"
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("brook").chain(args.iter().copied()))
    }

    #[test]
    fn config_entry_splits_at_the_first_equals() {
        assert_eq!(
            parse_config_entry("retention.ms=1000").unwrap(),
            ConfigEntry {
                key: "retention.ms".into(),
                value: "1000".into()
            }
        );
        let e = parse_config_entry("flush.policy=interval:=5").unwrap();
        assert_eq!(
            (e.key.as_str(), e.value.as_str()),
            ("flush.policy", "interval:=5")
        );
        assert_eq!(parse_config_entry("k=").unwrap().value, "");
    }

    #[test]
    fn config_entry_rejects_malformed_input_naming_it() {
        assert_eq!(
            parse_config_entry("retention.ms").unwrap_err(),
            "expected KEY=VALUE, got \"retention.ms\" (no '=')"
        );
        assert_eq!(
            parse_config_entry("=5").unwrap_err(),
            "empty config key in \"=5\""
        );
        assert!(
            parse_config_entry("a b=5")
                .unwrap_err()
                .contains("\"a b=5\"")
        );
    }

    #[test]
    fn malformed_config_is_a_usage_error_naming_the_value() {
        let err = parse(&["topic", "create", "t", "--config", "nonsense"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn topic_create_parses_partitions_and_configs() {
        let cli = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "retention.ms=1000",
            "-c",
            "segment.bytes=1048576",
        ])
        .unwrap();
        let Command::Topic(TopicCommand::Create(args)) = &cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(args.name, "orders");
        assert_eq!(args.partitions, 3);
        assert_eq!(args.replication_factor, Some(2));
        let map = config_map(&args.configs).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["segment.bytes"], "1048576");
        cli.validate().unwrap();
    }

    #[test]
    fn topic_create_defaults_to_one_partition_and_the_broker_replication() {
        let cli = parse(&["topic", "create", "t"]).unwrap();
        let Command::Topic(TopicCommand::Create(args)) = cli.command else {
            panic!()
        };
        assert_eq!((args.partitions, args.replication_factor), (1, None));
        assert!(args.configs.is_empty());
    }

    #[test]
    fn zero_partitions_is_a_usage_error() {
        let err = parse(&["topic", "create", "t", "--partitions", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn duplicate_config_key_fails_validation() {
        let cli = parse(&["topic", "create", "t", "--config", "a=1", "--config", "a=2"]).unwrap();
        let err = cli.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key \"a\" given twice (a=1 and a=2)"
        );
    }

    #[test]
    fn alter_needs_a_change_and_rejects_contradictions() {
        assert!(parse(&["topic", "alter", "t"]).is_err());
        let cli = parse(&["topic", "alter", "t", "--set", "a=1", "--delete", "b"]).unwrap();
        cli.validate().unwrap();
        let cli = parse(&["topic", "alter", "t", "--set", "a=1", "--delete", "a"]).unwrap();
        assert!(matches!(
            cli.validate(),
            Err(ClientError::InvalidArgument(_))
        ));
    }

    #[test]
    fn acks_accepts_names_and_kafka_numbers() {
        for (text, mode) in [
            ("none", AckMode::None),
            ("0", AckMode::None),
            ("leader", AckMode::Leader),
            ("1", AckMode::Leader),
            ("all", AckMode::All),
            ("-1", AckMode::All),
        ] {
            let cli = parse(&["produce", "t", "--acks", text]).unwrap();
            let Command::Produce(args) = cli.command else {
                panic!()
            };
            assert_eq!(args.acks, mode, "{text}");
        }
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert_eq!(Acks::from(AckMode::Leader), Acks::Leader);
    }

    #[test]
    fn produce_defaults_match_produce_args_new() {
        let cli = parse(&["produce", "events"]).unwrap();
        let Command::Produce(args) = cli.command else {
            panic!()
        };
        let expected = ProduceArgs::new("events");
        assert_eq!(args.topic, expected.topic);
        assert_eq!(args.acks, AckMode::All);
        assert_eq!(args.key_separator, None);
        assert_eq!(args.partition, None);
        assert_eq!(args.batch_size, expected.batch_size);
        assert_eq!(args.max_batch_bytes, expected.max_batch_bytes);
        assert_eq!(args.linger_ms, expected.linger_ms);
        assert_eq!(args.request_timeout_ms, expected.request_timeout_ms);
    }

    #[test]
    fn empty_key_separator_is_a_usage_error() {
        let err = parse(&["produce", "t", "--key-separator", ""]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let cli = parse(&["produce", "t", "--key-separator", "::"]).unwrap();
        let Command::Produce(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.key_separator.as_deref(), Some("::"));
    }

    #[test]
    fn consume_flags_parse() {
        let cli = parse(&[
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "10",
            "--timeout-ms",
            "2000",
            "--partition",
            "1",
            "--print-key",
        ])
        .unwrap();
        let Command::Consume(args) = cli.command else {
            panic!()
        };
        assert!(args.from_beginning && args.print_key && !args.print_offset);
        assert_eq!(args.max_messages, Some(10));
        assert_eq!(args.timeout_ms, Some(2000));
        assert_eq!(args.partition, Some(1));
    }

    #[test]
    fn elect_leaders_takes_a_topic_and_partitions() {
        let cli = parse(&[
            "cluster",
            "elect-leaders",
            "-t",
            "orders",
            "-p",
            "0",
            "-p",
            "2",
        ])
        .unwrap();
        let Command::Cluster(ClusterCommand::ElectLeaders(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.topic.as_deref(), Some("orders"));
        assert_eq!(args.partition, [0, 2]);
        let cli = parse(&["cluster", "elect-leaders"]).unwrap();
        let Command::Cluster(ClusterCommand::ElectLeaders(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!((args.topic, args.partition), (None, vec![]));
        let err = parse(&["cluster", "elect-leaders", "-p", "1"]).unwrap_err();
        assert!(err.to_string().contains("--topic"), "{err}");
        let err = parse(&["cluster", "elect-leaders", "-t", "x", "-p", "-1"]).unwrap_err();
        assert!(err.to_string().contains("-1"), "{err}");
    }

    #[test]
    fn reassign_takes_partitions_and_a_replica_list_or_a_cancel() {
        let cli = parse(&[
            "cluster", "reassign", "-t", "orders", "-p", "0", "-p", "3", "-r", "2,3,4", "--wait",
        ])
        .unwrap();
        let Command::Cluster(ClusterCommand::Reassign(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (args.topic.as_str(), &args.partition[..], &args.replicas[..]),
            ("orders", &[0, 3][..], &[2, 3, 4][..])
        );
        assert!(args.wait && !args.cancel);
        assert_eq!(args.timeout_ms, 600_000);
        let cli = parse(&["cluster", "reassign", "-t", "o", "-p", "1", "--cancel"]).unwrap();
        let Command::Cluster(ClusterCommand::Reassign(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert!(args.cancel && args.replicas.is_empty());
        let refused: [(&[&str], &str); 5] = [
            (&["-t", "o", "-p", "1"], "--replicas"),
            (&["-t", "o", "-r", "1"], "--partition"),
            (&["-t", "o", "-p", "1", "-r", "1", "--cancel"], "--cancel"),
            (&["-t", "o", "-p", "1", "-r", "1,x"], "x"),
            (
                &["-t", "o", "-p", "1", "-r", "1", "--timeout-ms", "5"],
                "--wait",
            ),
        ];
        for (rest, named) in refused {
            let mut argv = vec!["cluster", "reassign"];
            argv.extend_from_slice(rest);
            let err = parse(&argv).unwrap_err();
            assert!(err.to_string().contains(named), "{argv:?}: {err}");
        }
        let cli = parse(&["cluster", "reassignments", "-t", "a", "-t", "b"]).unwrap();
        let Command::Cluster(ClusterCommand::Reassignments(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.topic, ["a", "b"]);
    }

    #[test]
    fn bootstrap_is_global_with_a_default() {
        let cli = parse(&["cluster", "status"]).unwrap();
        // BROOK_BOOTSTRAP may be set in the environment running the tests.
        if std::env::var_os("BROOK_BOOTSTRAP").is_none() {
            assert_eq!(cli.bootstrap, DEFAULT_BOOTSTRAP);
        }
        let cli = parse(&["topic", "list", "--bootstrap", "b:1"]).unwrap();
        assert_eq!(cli.bootstrap, "b:1");
        let cli = parse(&["-b", "b:2", "topic", "list"]).unwrap();
        assert_eq!(cli.bootstrap, "b:2");
    }

    #[test]
    fn delete_needs_a_name_describe_does_not() {
        assert!(parse(&["topic", "delete"]).is_err());
        let cli = parse(&["topic", "describe"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Topic(TopicCommand::Describe(TopicNames { ref names })) if names.is_empty()
        ));
    }

    #[test]
    fn help_mentions_exit_codes() {
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        let text = err.to_string();
        assert!(text.contains("Exit codes:"), "{text}");
        assert!(text.contains("cannot connect to ADDR"), "{text}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
