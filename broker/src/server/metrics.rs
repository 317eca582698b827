//! The Prometheus recorder, installed once per process, and the metric descriptions.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `brook_bytes_in_total`, `brook_messages_in_total` | counter | topic |
//! | `brook_bytes_out_total` | counter | topic |
//! | `brook_produce_request_seconds`, `brook_fetch_request_seconds` | histogram | |
//! | `brook_log_fsync_seconds` | histogram | |
//! | `brook_log_end_offset`, `brook_log_start_offset`, `brook_log_size_bytes` | gauge | topic, partition |
//! | `brook_connections` | gauge | |
//! | `brook_connections_rejected_total` | counter | |
//! | `brook_http_connections`, `brook_http_connections_rejected_total` | gauge, counter | |
//! | `brook_tls_handshake_failures_total` | counter | listener (`grpc`, `http`) |
//! | `brook_tls_reloads_total`, `brook_tls_reload_failures_total` | counter | |
//! | `brook_authentication_failures_total` | counter | reason |
//! | `brook_auth_reloads_total`, `brook_auth_reload_failures_total` | counter | |
//! | `brook_authorization_denied_total` | counter | operation, resource_type |
//! | `brook_audit_log_failures_total` | counter | |
//! | `brook_cluster_is_controller`, `brook_cluster_live_brokers`, `brook_cluster_fenced_brokers` | gauge | |
//! | `brook_cluster_offline_partitions` | gauge | |
//! | `brook_under_replicated_partitions`, `brook_leader_partitions` | gauge | |
//! | `brook_replica_max_lag_records` | gauge | |
//! | `brook_isr_shrinks_total`, `brook_isr_expands_total` | counter | |

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The process's Prometheus handle (installs the recorder on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("buckets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows only what reaches this one");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "brook_bytes_in_total",
        Unit::Bytes,
        "Bytes of record batches appended, per topic"
    );
    describe_counter!(
        "brook_messages_in_total",
        Unit::Count,
        "Records appended, per topic"
    );
    describe_counter!(
        "brook_bytes_out_total",
        Unit::Bytes,
        "Bytes of record batches fetched, per topic"
    );
    describe_histogram!(
        "brook_produce_request_seconds",
        Unit::Seconds,
        "Produce request latency"
    );
    describe_histogram!(
        "brook_fetch_request_seconds",
        Unit::Seconds,
        "Fetch request latency, long-poll wait included"
    );
    describe_histogram!(
        "brook_log_fsync_seconds",
        Unit::Seconds,
        "fdatasync latency of partition logs"
    );
    describe_gauge!("brook_log_end_offset", "Log end offset per partition");
    describe_gauge!("brook_log_start_offset", "Log start offset per partition");
    describe_gauge!(
        "brook_log_size_bytes",
        Unit::Bytes,
        "Bytes on disk per partition"
    );
    describe_gauge!("brook_connections", "Open gRPC connections");
    describe_gauge!(
        "brook_cluster_is_controller",
        "1 while this broker is the controller (the quorum's leader), else 0"
    );
    describe_gauge!(
        "brook_cluster_live_brokers",
        "Registered, unfenced brokers, as this broker's metadata says"
    );
    describe_gauge!(
        "brook_cluster_fenced_brokers",
        "Registered brokers the controller holds fenced"
    );
    describe_gauge!(
        "brook_cluster_offline_partitions",
        "Partitions of the cluster without a leader"
    );
    describe_gauge!(
        "brook_under_replicated_partitions",
        "Partitions this broker leads whose ISR is smaller than their replica list"
    );
    describe_gauge!("brook_leader_partitions", "Partitions this broker leads");
    describe_gauge!(
        "brook_replica_max_lag_records",
        "Largest lag of a follower behind this broker, over the partitions it leads"
    );
    describe_counter!(
        "brook_isr_shrinks_total",
        "ISR shrinks this broker proposed as leader and the controller committed"
    );
    describe_counter!(
        "brook_isr_expands_total",
        "ISR expansions this broker proposed as leader and the controller committed"
    );
    describe_counter!(
        "brook_connections_rejected_total",
        "Connections closed because max_connections was reached"
    );
    describe_gauge!("brook_http_connections", "Open HTTP connections");
    describe_counter!(
        "brook_http_connections_rejected_total",
        "HTTP connections closed because max_connections was reached"
    );
    describe_counter!(
        "brook_tls_handshake_failures_total",
        "Connections closed because their TLS handshake failed or timed out"
    );
    describe_counter!(
        "brook_tls_reloads_total",
        "Times the TLS certificate, key and CA files were reloaded"
    );
    describe_counter!(
        "brook_tls_reload_failures_total",
        "TLS reloads that failed and kept the previous files"
    );
    describe_counter!(
        "brook_authentication_failures_total",
        "Requests refused with UNAUTHENTICATED, by reason"
    );
    describe_counter!(
        "brook_auth_reloads_total",
        "Times the JWT key files were reloaded"
    );
    describe_counter!(
        "brook_auth_reload_failures_total",
        "JWT key reloads that failed and kept the previous keys"
    );
    describe_counter!(
        "brook_authorization_denied_total",
        "Requests refused with PERMISSION_DENIED, by operation and resource type"
    );
    describe_counter!(
        "brook_audit_log_failures_total",
        "Audit log lines that could not be written"
    );
}
