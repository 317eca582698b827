//! What can go wrong talking to a broker, in one enum with the cause kept.

use std::fmt;
use std::time::Duration;

use brook_proto::BatchError;
use brook_proto::v1::ErrorCode;

/// An error from the client library.
///
/// Request-level failures (the broker could not be reached, or answered with a gRPC status) are
/// kept apart from per-topic and per-partition outcomes the broker reported inside a successful
/// response ([`ClientError::Broker`]). [`ClientError::is_retriable`] tells which ones a caller
/// may retry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP or HTTP/2 connection to the broker could not be established.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address as the user gave it.
        addr: String,
        /// Why the transport failed (refused, timed out, unresolvable host, ...).
        #[source]
        source: tonic::transport::Error,
    },
    /// The broker address is not a valid `host:port` or `http://host:port`.
    #[error("invalid broker address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as the user gave it.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker (or the transport) failed the whole request with a gRPC status.
    #[error("request failed: {}", StatusDisplay(.0))]
    Rpc(tonic::Status),
    /// The broker reported an error for one topic or one partition.
    #[error("{}: {} ({})", error_code_name(*.code), BrokerMessage(*.code, .message), Location(.topic, *.partition))]
    Broker {
        /// The topic the error is about.
        topic: String,
        /// The partition, for per-partition errors; `None` for per-topic ones.
        partition: Option<u32>,
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's explanation (may be empty).
        message: String,
    },
    /// The broker answered something the protocol does not allow (an unknown error code, a
    /// partition missing from a response).
    #[error("unexpected response from the broker: {0}")]
    Protocol(String),
    /// A fetched batch failed validation or decoding.
    #[error("corrupt batch in topic {topic} partition {partition} at fetch offset {offset}")]
    CorruptBatch {
        /// Topic the batch came from.
        topic: String,
        /// Partition the batch came from.
        partition: u32,
        /// The offset that was fetched.
        offset: i64,
        /// What is wrong with the batch.
        #[source]
        source: BatchError,
    },
    /// An operation did not complete in time.
    #[error("{operation} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long it was given.
        after: Duration,
    },
    /// An argument is invalid (a malformed `key=value`, a duplicate config key, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// Reading the input or writing the output failed.
    #[error("{context}")]
    Io {
        /// What was being read or written.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Several independent operations failed (for example deleting several topics); each
    /// error in the order the operations were given.
    #[error("{} operations failed, the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Multiple(Vec<ClientError>),
}

impl ClientError {
    /// True if repeating the same request later may succeed: the broker was unreachable or
    /// busy, leadership moved, or too few replicas were in sync. Invalid arguments, unknown
    /// topics and corrupt data are not retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
            ClientError::Rpc(status) => {
                matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) || is_broken_connection(status)
            }
            ClientError::Broker { code, .. } => is_retriable_code(*code),
            ClientError::Multiple(errors) => errors.iter().all(ClientError::is_retriable),
            ClientError::InvalidAddress { .. }
            | ClientError::Protocol(_)
            | ClientError::CorruptBatch { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::Io { .. } => false,
        }
    }

    /// The broker error code, for [`ClientError::Broker`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Rpc(status)
    }
}

/// A request cut off by its connection breaking: tonic reports a broker killed mid-request
/// as `UNKNOWN` "transport error" and a connection the broker closed while stopping as
/// `CANCELLED` "connection closed", each with the transport error as its source. A failed
/// TLS handshake (plain text against a TLS port) looks the same, or, when the broker's TLS
/// alert reaches the client's HTTP/2 layer first, `INTERNAL` "h2 protocol error": the other
/// end does not speak plain HTTP/2, so the connection is as good as broken.
pub(crate) fn is_broken_connection(status: &tonic::Status) -> bool {
    use std::error::Error;
    let transport = matches!(status.code(), tonic::Code::Unknown | tonic::Code::Cancelled)
        && status
            .source()
            .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
    let not_http2 =
        status.code() == tonic::Code::Internal && status.message().starts_with("h2 protocol error");
    transport || not_http2
}

/// Codes that describe a transient state of the cluster rather than a bad request.
pub fn is_retriable_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeader
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::RequestTimedOut
    )
}

/// The code's name without the `ERROR_CODE_` prefix, e.g. `TOPIC_ALREADY_EXISTS`: the name
/// the `brook` tool prints.
pub fn error_code_name(code: ErrorCode) -> &'static str {
    let name = code.as_str_name();
    name.strip_prefix("ERROR_CODE_").unwrap_or(name)
}

/// Turns a per-topic or per-partition outcome into a `Result`: `ERROR_CODE_NONE` is `Ok`, a
/// known code is [`ClientError::Broker`], an unknown number is [`ClientError::Protocol`].
pub fn check_code(
    topic: &str,
    partition: Option<u32>,
    code: i32,
    message: &str,
) -> Result<(), ClientError> {
    match ErrorCode::try_from(code) {
        Ok(ErrorCode::None) => Ok(()),
        Ok(code) => Err(ClientError::Broker {
            topic: topic.to_owned(),
            partition,
            code,
            message: message.to_owned(),
        }),
        Err(_) => Err(ClientError::Protocol(format!(
            "unknown error code {code} ({}): {message}",
            Location(topic, partition)
        ))),
    }
}

/// What the code means, for a broker that sent no message.
fn describe_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::None => "no error",
        ErrorCode::UnknownTopicOrPartition => "the topic or the partition does not exist",
        ErrorCode::NotLeader => "this broker does not lead the partition",
        ErrorCode::OffsetOutOfRange => "the offset is below the log start or above the log end",
        ErrorCode::CorruptBatch => "a batch failed validation",
        ErrorCode::BatchTooLarge => "a batch is larger than the topic's max.message.bytes",
        ErrorCode::NotEnoughReplicas => "fewer in-sync replicas than min.insync.replicas",
        ErrorCode::FencedLeaderEpoch => "the leader epoch is older than the partition's",
        ErrorCode::OutOfOrderSequence => "the producer's sequence number skipped ahead",
        ErrorCode::DuplicateSequence => "the batch was already written",
        ErrorCode::InvalidRequest => "the request asks for something invalid",
        ErrorCode::StorageError => "the broker could not read or write its disk",
        ErrorCode::TopicAlreadyExists => "the topic already exists",
        ErrorCode::InvalidTopic => "the topic name breaks the naming rules",
        ErrorCode::InvalidConfig => "a config key is unknown or its value out of range",
        ErrorCode::InvalidPartitions => "invalid partition count",
        ErrorCode::InvalidReplicationFactor => "the cluster cannot provide the replication factor",
        ErrorCode::RequestTimedOut => "the operation did not complete within the timeout",
        ErrorCode::InvalidProducerEpoch => "a newer instance of this producer took over (fenced)",
        ErrorCode::UnknownProducerId => "the producer id was never handed out by this cluster",
        ErrorCode::UnknownMemberId => "the member is not in the group: rejoin",
        ErrorCode::FencedMemberEpoch => "the member's epoch is stale: rejoin",
        ErrorCode::InvalidGroupId => "the group id is empty or too long",
        ErrorCode::GroupIdNotFound => "no such group",
        ErrorCode::NotCoordinator => "this broker does not coordinate the group",
        ErrorCode::CoordinatorNotAvailable => "the group's coordinator is not available yet",
        ErrorCode::ElectionNotNeeded => "the preferred replica already leads",
        ErrorCode::PreferredLeaderNotAvailable => "the preferred replica cannot lead now",
        ErrorCode::InvalidReplicaAssignment => {
            "the replica list is empty, repeats or names an unknown broker"
        }
        ErrorCode::NoReassignmentInProgress => "no reassignment of the partition is running",
    }
}

struct BrokerMessage<'a>(ErrorCode, &'a String);

impl fmt::Display for BrokerMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            f.write_str(describe_code(self.0))
        } else {
            f.write_str(self.1)
        }
    }
}

struct Location<'a>(&'a str, Option<u32>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(p) => write!(f, "topic {}, partition {p}", self.0),
            None => write!(f, "topic {}", self.0),
        }
    }
}

struct StatusDisplay<'a>(&'a tonic::Status);

impl fmt::Display for StatusDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0;
        if status.message().is_empty() {
            write!(f, "{:?}: {}", status.code(), status.code().description())
        } else {
            write!(f, "{:?}: {}", status.code(), status.message())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_error_names_code_message_and_partition() {
        let err = check_code(
            "orders",
            Some(3),
            ErrorCode::NotLeader as i32,
            "leader is node 2",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "NOT_LEADER: leader is node 2 (topic orders, partition 3)"
        );
        assert!(err.is_retriable());
        assert_eq!(err.error_code(), Some(ErrorCode::NotLeader));
    }

    #[test]
    fn broker_error_without_message_describes_the_code() {
        let err = check_code("orders", None, ErrorCode::TopicAlreadyExists as i32, "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "TOPIC_ALREADY_EXISTS: the topic already exists (topic orders)"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn check_code_accepts_none_and_rejects_unknown_numbers() {
        assert!(check_code("t", Some(0), 0, "").is_ok());
        let err = check_code("t", Some(0), 999, "what").unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)));
        assert_eq!(
            err.to_string(),
            "unexpected response from the broker: unknown error code 999 (topic t, partition 0): what"
        );
    }

    #[test]
    fn rpc_error_shows_code_and_message() {
        let err = ClientError::from(tonic::Status::unavailable("shutting down"));
        assert_eq!(
            err.to_string(),
            "request failed: Unavailable: shutting down"
        );
        assert!(err.is_retriable());
        let err = ClientError::from(tonic::Status::invalid_argument(""));
        assert_eq!(
            err.to_string(),
            "request failed: InvalidArgument: Client specified an invalid argument"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn every_code_has_a_short_name() {
        for code in 0..=17 {
            let code = ErrorCode::try_from(code).unwrap();
            assert!(!error_code_name(code).starts_with("ERROR_CODE_"));
            assert!(!describe_code(code).is_empty());
        }
        assert_eq!(
            error_code_name(ErrorCode::OffsetOutOfRange),
            "OFFSET_OUT_OF_RANGE"
        );
    }
}
