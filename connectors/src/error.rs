//! The connector's errors: [`ConfigError`] for a configuration refused at start-up, and
//! [`ConnectError`] for what goes wrong while a pipeline runs, with what the supervisor retries
//! told apart from what it cannot.

/// A configuration `brook-connect` refuses; every variant names the setting and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this tree (syntax, unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML parser's message, with line, column and key.
        message: String,
    },
    /// A number outside its limits.
    #[error("{name} = {value} is out of range {min}..={max}")]
    OutOfRange {
        /// The setting.
        name: String,
        /// The value given.
        value: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A value that is not acceptable for another reason.
    #[error("{name} = \"{value}\": {reason}")]
    Invalid {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file defines no `[[pipeline]]`.
    #[error("the config defines no pipeline: add at least one [[pipeline]] table")]
    NoPipelines,
}

impl PartialEq for ConfigError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Which side of a pipeline an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The Kafka cluster.
    Kafka,
    /// The Brook cluster.
    Brook,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Kafka => "Kafka",
            Side::Brook => "Brook",
        })
    }
}

/// A failure while a pipeline runs.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A cluster did not answer (at start-up this ends the process; later the pipeline
    /// restarts after a pause).
    #[error("cannot reach {side} at {bootstrap}: {reason}")]
    Unreachable {
        /// Which cluster.
        side: Side,
        /// Its bootstrap address.
        bootstrap: String,
        /// The client's description of the failure.
        reason: String,
    },
    /// A source topic does not exist.
    #[error("{side} topic \"{topic}\" does not exist")]
    NoSuchTopic {
        /// Which cluster.
        side: Side,
        /// The topic.
        topic: String,
    },
    /// A one-to-one mapping onto a destination with fewer partitions than its source.
    #[error(
        "one-to-one partitioning needs {side} topic \"{topic}\" to have at least {needed} partitions; it has {actual}"
    )]
    TooFewPartitions {
        /// The destination cluster.
        side: Side,
        /// The destination topic.
        topic: String,
        /// The source topic's partition count.
        needed: u32,
        /// The destination's.
        actual: u32,
    },
    /// A record that cannot be written to the destination as it is (the pipeline stops
    /// rather than alter or skip it).
    #[error("{topic}[{partition}]@{offset}: {reason}")]
    BadRecord {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: u32,
        /// Source offset.
        offset: i64,
        /// Why it cannot be written.
        reason: String,
    },
    /// Reading, writing or committing failed.
    #[error("{side} {operation} failed: {reason}")]
    Client {
        /// Which cluster.
        side: Side,
        /// What was being done: `read`, `write`, `commit`, `metadata`, `create topic`.
        operation: &'static str,
        /// The client's error.
        reason: String,
    },
}

impl ConnectError {
    /// A client failure of `side` during `operation`.
    pub fn client(side: Side, operation: &'static str, err: impl std::fmt::Display) -> Self {
        ConnectError::Client {
            side,
            operation,
            reason: err.to_string(),
        }
    }

    /// The metrics label of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Unreachable { .. } => "unreachable",
            ConnectError::NoSuchTopic { .. } | ConnectError::TooFewPartitions { .. } => "topic",
            ConnectError::BadRecord { .. } => "record",
            ConnectError::Client { operation, .. } => operation,
        }
    }
}
