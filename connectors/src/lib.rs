//! Kafka connectors for Brook.
//!
//! Planned layout (filled by the Kafka interop issue): a source that copies a Kafka topic into
//! Brook and a sink that copies a Brook topic into Kafka, each committing offsets on one side
//! only after the other side acknowledged, plus the `brook-connect` binary. Empty today.
