//! Domain errors to the wire's `ErrorCode`, in one place so every service maps alike.

use brook_proto::BatchError;
use brook_proto::v1::ErrorCode;

use crate::log::{LogError, SequenceError};
use crate::partition::AdminError;

/// The code a client sees for a log error.
pub fn log_error_code(err: &LogError) -> ErrorCode {
    match err {
        LogError::InvalidBatch(BatchError::TooLarge { .. }) => ErrorCode::BatchTooLarge,
        LogError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Sequence(SequenceError::OutOfOrder { .. }) => ErrorCode::OutOfOrderSequence,
        LogError::Sequence(SequenceError::Fenced { .. }) => ErrorCode::InvalidProducerEpoch,
        // A closed log belongs to a topic being deleted (or a broker shutting down).
        LogError::Closed { .. } => ErrorCode::UnknownTopicOrPartition,
        LogError::Config(_) => ErrorCode::InvalidConfig,
        LogError::StaleLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
        LogError::ReplicaGap { .. } => ErrorCode::OffsetOutOfRange,
        LogError::Io { .. }
        | LogError::Corrupt { .. }
        | LogError::Locked { .. }
        | LogError::Failed { .. }
        | LogError::WriteFailed { .. } => ErrorCode::StorageError,
    }
}

/// The code a client sees for an admin error.
pub fn admin_error_code(err: &AdminError) -> ErrorCode {
    match err {
        AdminError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        AdminError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
        AdminError::InvalidName(_) => ErrorCode::InvalidTopic,
        AdminError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
        AdminError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        AdminError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        AdminError::Storage(e) => log_error_code(e),
        AdminError::Cluster { .. } => ErrorCode::RequestTimedOut,
        AdminError::NotInCluster { .. } => ErrorCode::InvalidRequest,
    }
}
