//! Topic configs under their Kafka names (`retention.ms`, `segment.bytes`, ...) to and from
//! [`LogConfig`]: what CreateTopics and AlterConfigs accept and DescribeTopics reports.
//!
//! | key                   | field                  | value                                  |
//! |-----------------------|------------------------|----------------------------------------|
//! | `flush.policy`        | `flush`                | `always`, `never`, `interval:<ms>`     |
//! | `index.interval.bytes`| `index_interval_bytes` | bytes                                  |
//! | `max.message.bytes`   | `max_batch_bytes`      | bytes                                  |
//! | `retention.bytes`     | `retention_bytes`      | bytes, `-1`: no limit                  |
//! | `retention.ms`        | `retention_ms`         | ms, `-1`: keep forever                 |
//! | `segment.bytes`       | `segment_bytes`        | bytes                                  |
//! | `segment.index.bytes` | `max_index_bytes`      | bytes                                  |
//! | `segment.ms`          | `segment_ms`           | ms, `-1`: never roll by age            |
//!
//! Two more keys are replication settings, kept apart in [`ReplicationSettings`] since they
//! do not touch the log: `min.insync.replicas` (1 to 100; unset: the broker's
//! `cluster.min_insync_replicas`) and `unclean.leader.election.enable` (`true` or `false`).
//!
//! Kafka has no `-1` for `segment.ms`; Brook accepts it since [`LogConfig::segment_ms`] can
//! be unset. Values are integers in decimal (surrounding whitespace ignored); ranges are those
//! of [`LogConfig::validate`].

use std::collections::BTreeMap;
use std::num::ParseIntError;
use std::str::FromStr;

use super::log_config::{ConfigError, FlushPolicy, LogConfig};

/// Every topic config key, sorted.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    FLUSH_POLICY,
    INDEX_INTERVAL_BYTES,
    MAX_MESSAGE_BYTES,
    MIN_INSYNC_REPLICAS,
    RETENTION_BYTES,
    RETENTION_MS,
    SEGMENT_BYTES,
    SEGMENT_INDEX_BYTES,
    SEGMENT_MS,
    UNCLEAN_LEADER_ELECTION,
];

const FLUSH_POLICY: &str = "flush.policy";
const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
const RETENTION_BYTES: &str = "retention.bytes";
const RETENTION_MS: &str = "retention.ms";
const SEGMENT_BYTES: &str = "segment.bytes";
const SEGMENT_INDEX_BYTES: &str = "segment.index.bytes";
const SEGMENT_MS: &str = "segment.ms";
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Largest `min.insync.replicas` (the broker's `cluster.min_insync_replicas` has the same).
pub const MAX_MIN_INSYNC_REPLICAS: u32 = 100;

/// A topic's replication settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `min.insync.replicas`; `None`: the broker's default.
    pub min_insync_replicas: Option<u32>,
    /// `unclean.leader.election.enable`: a partition whose ISR is all down may be led by a
    /// live replica outside it (losing what only the ISR held).
    pub unclean_leader_election: bool,
}

impl ReplicationSettings {
    /// The `min.insync.replicas` in force, given the broker's default.
    pub fn min_insync(&self, broker_default: u32) -> u32 {
        self.min_insync_replicas.unwrap_or(broker_default)
    }
}

/// The replication settings in `configs` (other keys are ignored here; see
/// [`apply_topic_configs`] for them).
pub fn replication_settings(
    configs: &BTreeMap<String, String>,
) -> Result<ReplicationSettings, TopicConfigError> {
    let mut settings = ReplicationSettings::default();
    if let Some(value) = configs.get(MIN_INSYNC_REPLICAS) {
        let n = parse_u64(value.trim()).map_err(|reason| TopicConfigError::InvalidValue {
            key: MIN_INSYNC_REPLICAS,
            value: value.clone(),
            reason,
        })?;
        if !(1..=u64::from(MAX_MIN_INSYNC_REPLICAS)).contains(&n) {
            return Err(TopicConfigError::OutOfRange {
                key: MIN_INSYNC_REPLICAS,
                value: n,
                min: 1,
                max: MAX_MIN_INSYNC_REPLICAS.into(),
            });
        }
        settings.min_insync_replicas = Some(n as u32);
    }
    if let Some(value) = configs.get(UNCLEAN_LEADER_ELECTION) {
        settings.unclean_leader_election = match value.trim() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(TopicConfigError::InvalidValue {
                    key: UNCLEAN_LEADER_ELECTION,
                    value: value.clone(),
                    reason: InvalidTopicValue::NotABool,
                });
            }
        };
    }
    Ok(settings)
}

/// A topic config that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// Not one of [`TOPIC_CONFIG_KEYS`].
    #[error(
        "unknown topic config {key:?}: valid keys are {}",
        TOPIC_CONFIG_KEYS.join(", ")
    )]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// A value that does not parse for its key.
    #[error("topic config {key} = {value:?} is invalid: {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        #[source]
        reason: InvalidTopicValue,
    },
    /// `min.insync.replicas` above the topic's replication factor: no acks=all write could
    /// ever be acknowledged.
    #[error(
        "topic config min.insync.replicas = {min_insync} is larger than the replication factor {replication_factor}: no acks=all write could succeed"
    )]
    MinInsyncAboveReplicas {
        /// The setting.
        min_insync: u32,
        /// The topic's replication factor.
        replication_factor: u32,
    },
    /// A value that parses but is outside the range [`LogConfig::validate`] allows.
    #[error("topic config {key} = {value} is out of range: must be between {min} and {max}")]
    OutOfRange {
        /// The key in Kafka form (the `LogConfig` field name if it has no key).
        key: &'static str,
        /// The value in force.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
}

/// Why a topic config value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopicValue {
    /// Not a decimal integer, or beyond 64 bits.
    #[error("expected an integer ({0})")]
    NotAnInteger(#[source] ParseIntError),
    /// Negative where `-1` has no meaning.
    #[error("must not be negative")]
    Negative,
    /// Below `-1` where `-1` means unlimited.
    #[error("must be -1 (unlimited) or at least 0")]
    BelowMinusOne,
    /// Larger than the setting can hold.
    #[error("must be at most {max}")]
    TooLarge {
        /// Largest value the setting holds.
        max: u64,
    },
    /// Neither `true` nor `false`.
    #[error("use \"true\" or \"false\"")]
    NotABool,
    /// Not a flush policy.
    #[error("use \"always\", \"never\" or \"interval:<ms>\" with 1 to 3600000 ms")]
    FlushPolicy(#[source] ConfigError),
}

/// `base` (the broker's defaults, or a topic's current configs) with `configs` applied, then
/// validated. Keys not in `configs` keep their value from `base`.
pub fn apply_topic_configs(
    base: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicConfigError> {
    replication_settings(configs)?;
    let mut config = base.clone();
    for (key, value) in configs {
        apply_one(&mut config, key, value)?;
    }
    config.validate().map_err(|err| match err {
        ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        } => TopicConfigError::OutOfRange {
            key: kafka_key(name),
            value,
            min,
            max,
        },
        ConfigError::FlushPolicy { ref value } => TopicConfigError::InvalidValue {
            key: FLUSH_POLICY,
            value: value.clone(),
            reason: InvalidTopicValue::FlushPolicy(err),
        },
    })?;
    Ok(config)
}

/// Every topic config key with the value in force in `config` and `replication` (with
/// `min_insync_default` where the topic sets none); `-1` for unlimited.
pub fn topic_configs(
    config: &LogConfig,
    replication: &ReplicationSettings,
    min_insync_default: u32,
) -> BTreeMap<String, String> {
    // Named field by field, so a field added to LogConfig fails to compile here until it has
    // a key.
    let LogConfig {
        segment_bytes,
        segment_ms,
        index_interval_bytes,
        max_index_bytes,
        retention_bytes,
        retention_ms,
        flush,
        max_batch_bytes,
    } = *config;
    let unlimited = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
    [
        (FLUSH_POLICY, flush.to_string()),
        (INDEX_INTERVAL_BYTES, index_interval_bytes.to_string()),
        (MAX_MESSAGE_BYTES, max_batch_bytes.to_string()),
        (
            MIN_INSYNC_REPLICAS,
            replication.min_insync(min_insync_default).to_string(),
        ),
        (RETENTION_BYTES, unlimited(retention_bytes)),
        (RETENTION_MS, unlimited(retention_ms)),
        (SEGMENT_BYTES, segment_bytes.to_string()),
        (SEGMENT_INDEX_BYTES, max_index_bytes.to_string()),
        (SEGMENT_MS, unlimited(segment_ms)),
        (
            UNCLEAN_LEADER_ELECTION,
            replication.unclean_leader_election.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn apply_one(config: &mut LogConfig, key: &str, value: &str) -> Result<(), TopicConfigError> {
    let Some(&key) = TOPIC_CONFIG_KEYS.iter().find(|k| **k == key) else {
        return Err(TopicConfigError::UnknownKey {
            key: key.to_string(),
        });
    };
    let invalid = |reason| TopicConfigError::InvalidValue {
        key,
        value: value.to_string(),
        reason,
    };
    let text = value.trim();
    match key {
        FLUSH_POLICY => {
            config.flush = FlushPolicy::from_str(text)
                .map_err(|err| invalid(InvalidTopicValue::FlushPolicy(err)))?;
        }
        INDEX_INTERVAL_BYTES => config.index_interval_bytes = parse_u32(text).map_err(invalid)?,
        MAX_MESSAGE_BYTES => config.max_batch_bytes = parse_u32(text).map_err(invalid)?,
        RETENTION_BYTES => config.retention_bytes = parse_unlimited(text).map_err(invalid)?,
        RETENTION_MS => config.retention_ms = parse_unlimited(text).map_err(invalid)?,
        SEGMENT_BYTES => config.segment_bytes = parse_u64(text).map_err(invalid)?,
        SEGMENT_INDEX_BYTES => config.max_index_bytes = parse_u32(text).map_err(invalid)?,
        SEGMENT_MS => config.segment_ms = parse_unlimited(text).map_err(invalid)?,
        // Checked by replication_settings; not part of the log's config.
        MIN_INSYNC_REPLICAS | UNCLEAN_LEADER_ELECTION => {}
        _ => unreachable!("{key} is in TOPIC_CONFIG_KEYS but has no field"),
    }
    Ok(())
}

/// The Kafka key of a [`LogConfig::validate`] setting name; the name itself if it has none.
fn kafka_key(name: &'static str) -> &'static str {
    match name {
        "segment_bytes" => SEGMENT_BYTES,
        "segment_ms" => SEGMENT_MS,
        "index_interval_bytes" => INDEX_INTERVAL_BYTES,
        "max_index_bytes" => SEGMENT_INDEX_BYTES,
        "retention_bytes" => RETENTION_BYTES,
        "retention_ms" => RETENTION_MS,
        "max_batch_bytes" => MAX_MESSAGE_BYTES,
        "flush interval ms" => FLUSH_POLICY,
        other => other,
    }
}

/// Parsed as i64 first so that `-5` reads "must not be negative", not "invalid digit".
fn parse_i64(text: &str) -> Result<i64, InvalidTopicValue> {
    text.parse::<i64>().map_err(InvalidTopicValue::NotAnInteger)
}

fn parse_u64(text: &str) -> Result<u64, InvalidTopicValue> {
    u64::try_from(parse_i64(text)?).map_err(|_| InvalidTopicValue::Negative)
}

fn parse_u32(text: &str) -> Result<u32, InvalidTopicValue> {
    let v = parse_u64(text)?;
    u32::try_from(v).map_err(|_| InvalidTopicValue::TooLarge {
        max: u32::MAX.into(),
    })
}

/// `-1` is `None`.
fn parse_unlimited(text: &str) -> Result<Option<u64>, InvalidTopicValue> {
    match parse_i64(text)? {
        -1 => Ok(None),
        v => u64::try_from(v)
            .map(Some)
            .map_err(|_| InvalidTopicValue::BelowMinusOne),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn apply(pairs: &[(&str, &str)]) -> Result<LogConfig, TopicConfigError> {
        apply_topic_configs(&LogConfig::default(), &map(pairs))
    }

    fn int_error(text: &str) -> ParseIntError {
        text.parse::<i64>().unwrap_err()
    }

    #[test]
    fn keys_are_sorted_and_match_topic_configs() {
        let mut sorted = TOPIC_CONFIG_KEYS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, TOPIC_CONFIG_KEYS);
        let described: Vec<String> =
            topic_configs(&LogConfig::default(), &ReplicationSettings::default(), 1)
                .into_keys()
                .collect();
        assert_eq!(described, TOPIC_CONFIG_KEYS);
    }

    #[test]
    fn defaults_are_described_in_kafka_form() {
        assert_eq!(
            topic_configs(&LogConfig::default(), &ReplicationSettings::default(), 1),
            map(&[
                ("flush.policy", "never"),
                ("index.interval.bytes", "4096"),
                ("max.message.bytes", "1048576"),
                ("min.insync.replicas", "1"),
                ("retention.bytes", "-1"),
                ("retention.ms", "604800000"),
                ("segment.bytes", "1073741824"),
                ("segment.index.bytes", "10485760"),
                ("segment.ms", "604800000"),
                ("unclean.leader.election.enable", "false"),
            ])
        );
    }

    #[test]
    fn full_map_sets_every_field_and_round_trips() {
        let full = map(&[
            ("flush.policy", "interval:250"),
            ("index.interval.bytes", "512"),
            ("max.message.bytes", "2097152"),
            ("min.insync.replicas", "1"),
            ("retention.bytes", "5000000"),
            ("retention.ms", "-1"),
            ("segment.bytes", "1048576"),
            ("segment.index.bytes", "4096"),
            ("segment.ms", "-1"),
            ("unclean.leader.election.enable", "false"),
        ]);
        let config = apply_topic_configs(&LogConfig::default(), &full).unwrap();
        assert_eq!(
            config,
            LogConfig {
                segment_bytes: 1 << 20,
                segment_ms: None,
                index_interval_bytes: 512,
                max_index_bytes: 4096,
                retention_bytes: Some(5_000_000),
                retention_ms: None,
                flush: FlushPolicy::Interval(Duration::from_millis(250)),
                max_batch_bytes: 2 << 20,
            }
        );
        assert_eq!(
            topic_configs(&config, &ReplicationSettings::default(), 1),
            full
        );
    }

    #[test]
    fn described_configs_apply_back_to_the_same_config() {
        let config = apply(&[("retention.bytes", "123456"), ("flush.policy", "always")]).unwrap();
        let described = topic_configs(&config, &ReplicationSettings::default(), 1);
        assert_eq!(
            apply_topic_configs(&LogConfig::default(), &described).unwrap(),
            config
        );
    }

    #[test]
    fn keys_not_given_keep_the_base_value() {
        let base = LogConfig {
            flush: FlushPolicy::Always,
            retention_ms: Some(1000),
            ..LogConfig::default()
        };
        let config = apply_topic_configs(&base, &map(&[("segment.bytes", " 2048 ")])).unwrap();
        assert_eq!(
            config,
            LogConfig {
                segment_bytes: 2048,
                ..base.clone()
            }
        );
        assert_eq!(apply_topic_configs(&base, &BTreeMap::new()).unwrap(), base);
    }

    #[test]
    fn unknown_key_lists_the_valid_ones() {
        let err = apply(&[("cleanup.policy", "delete")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::UnknownKey {
                key: "cleanup.policy".to_string()
            }
        );
        assert_eq!(
            err.to_string(),
            "unknown topic config \"cleanup.policy\": valid keys are flush.policy, \
             index.interval.bytes, max.message.bytes, min.insync.replicas, retention.bytes, \
             retention.ms, segment.bytes, segment.index.bytes, segment.ms, \
             unclean.leader.election.enable"
        );
    }

    #[test]
    fn replication_settings_are_read_and_checked() {
        let set = map(&[
            ("min.insync.replicas", " 3 "),
            ("unclean.leader.election.enable", "true"),
            ("retention.ms", "1000"),
        ]);
        let settings = replication_settings(&set).unwrap();
        assert_eq!(
            settings,
            ReplicationSettings {
                min_insync_replicas: Some(3),
                unclean_leader_election: true,
            }
        );
        assert_eq!(settings.min_insync(2), 3);
        assert_eq!(ReplicationSettings::default().min_insync(2), 2);
        // The log's config is untouched by them.
        assert_eq!(
            apply_topic_configs(&LogConfig::default(), &set).unwrap(),
            LogConfig {
                retention_ms: Some(1000),
                ..LogConfig::default()
            }
        );
        let described = topic_configs(&LogConfig::default(), &settings, 2);
        assert_eq!(described["min.insync.replicas"], "3");
        assert_eq!(described["unclean.leader.election.enable"], "true");
        assert_eq!(replication_settings(&described).unwrap(), settings);
    }

    #[test]
    fn bad_replication_settings_name_the_value_and_the_limit() {
        for (value, message) in [
            (
                "0",
                "topic config min.insync.replicas = 0 is out of range: must be between 1 and 100",
            ),
            (
                "101",
                "topic config min.insync.replicas = 101 is out of range: must be between 1 and 100",
            ),
            (
                "-1",
                "topic config min.insync.replicas = \"-1\" is invalid: must not be negative",
            ),
            (
                "two",
                "topic config min.insync.replicas = \"two\" is invalid: expected an integer (invalid digit found in string)",
            ),
        ] {
            let err = apply(&[("min.insync.replicas", value)]).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let err = apply(&[("unclean.leader.election.enable", "yes")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::InvalidValue {
                key: "unclean.leader.election.enable",
                value: "yes".to_string(),
                reason: InvalidTopicValue::NotABool,
            }
        );
        assert_eq!(
            err.to_string(),
            "topic config unclean.leader.election.enable = \"yes\" is invalid: use \"true\" or \"false\""
        );
    }

    #[test]
    fn non_integer_is_invalid() {
        let err = apply(&[("segment.bytes", "1GB")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::InvalidValue {
                key: "segment.bytes",
                value: "1GB".to_string(),
                reason: InvalidTopicValue::NotAnInteger(int_error("1GB")),
            }
        );
        assert_eq!(
            err.to_string(),
            "topic config segment.bytes = \"1GB\" is invalid: \
             expected an integer (invalid digit found in string)"
        );
    }

    #[test]
    fn negative_size_is_invalid() {
        let err = apply(&[("max.message.bytes", "-1")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::InvalidValue {
                key: "max.message.bytes",
                value: "-1".to_string(),
                reason: InvalidTopicValue::Negative,
            }
        );
        assert_eq!(
            err.to_string(),
            "topic config max.message.bytes = \"-1\" is invalid: must not be negative"
        );
    }

    #[test]
    fn below_minus_one_is_invalid_for_unlimited_keys() {
        for key in ["retention.ms", "retention.bytes", "segment.ms"] {
            let err = apply(&[(key, "-2")]).unwrap_err();
            assert_eq!(
                err,
                TopicConfigError::InvalidValue {
                    key,
                    value: "-2".to_string(),
                    reason: InvalidTopicValue::BelowMinusOne,
                }
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "topic config {key} = \"-2\" is invalid: must be -1 (unlimited) or at least 0"
                )
            );
        }
    }

    #[test]
    fn beyond_u32_is_too_large() {
        let err = apply(&[("segment.index.bytes", "4294967296")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::InvalidValue {
                key: "segment.index.bytes",
                value: "4294967296".to_string(),
                reason: InvalidTopicValue::TooLarge { max: 4294967295 },
            }
        );
        assert_eq!(
            err.to_string(),
            "topic config segment.index.bytes = \"4294967296\" is invalid: must be at most 4294967295"
        );
    }

    #[test]
    fn bad_flush_policy_is_invalid() {
        let err = apply(&[("flush.policy", "sometimes")]).unwrap_err();
        assert_eq!(
            err,
            TopicConfigError::InvalidValue {
                key: "flush.policy",
                value: "sometimes".to_string(),
                reason: InvalidTopicValue::FlushPolicy(ConfigError::FlushPolicy {
                    value: "sometimes".to_string()
                }),
            }
        );
        assert_eq!(
            err.to_string(),
            "topic config flush.policy = \"sometimes\" is invalid: \
             use \"always\", \"never\" or \"interval:<ms>\" with 1 to 3600000 ms"
        );
    }

    #[test]
    fn out_of_range_names_the_kafka_key() {
        let cases = [
            ("segment.bytes", "100", 100, 1024, 2 << 30),
            ("segment.ms", "0", 0, 1, i64::MAX as u64),
            ("index.interval.bytes", "0", 0, 1, 1 << 30),
            ("segment.index.bytes", "8", 8, 64, 1 << 30),
            ("retention.ms", "0", 0, 1, i64::MAX as u64),
            ("max.message.bytes", "268435457", 268435457, 64, 256 << 20),
        ];
        for (key, text, value, min, max) in cases {
            let err = apply(&[(key, text)]).unwrap_err();
            assert_eq!(
                err,
                TopicConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max
                },
                "{key}"
            );
        }
        let err = apply(&[("segment.bytes", "100")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic config segment.bytes = 100 is out of range: must be between 1024 and 2147483648"
        );
    }

    #[test]
    fn retention_bytes_zero_is_accepted() {
        let config = apply(&[("retention.bytes", "0")]).unwrap();
        assert_eq!(config.retention_bytes, Some(0));
    }
}
