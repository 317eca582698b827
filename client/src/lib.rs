//! Brook's client library.
//!
//! Planned layout (filled by the client issue): a batching producer with idempotence,
//! compression, retries and backpressure; batching consumers; consumer groups; and the `brook`
//! command-line tool. Today the crate is empty: the record-batch format the producer will build
//! already lives in `brook-proto` (`BatchBuilder`, `RecordBatch`).
