//! The connector's metrics, served as Prometheus text on `/metrics`.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `brook_connect_records_total` | counter | pipeline, direction: records acknowledged by the destination |
//! | `brook_connect_bytes_total` | counter | pipeline, direction: their key, value and header bytes |
//! | `brook_connect_errors_total` | counter | pipeline, kind (`read`, `write`, `commit`, `metadata`, `create topic`, `unreachable`, `topic`, `record`) |
//! | `brook_connect_restarts_total` | counter | pipeline: runs ended by an error and started again |
//! | `brook_connect_lag_records` | gauge | pipeline: records on the source side not read yet (refreshed every 5 s) |
//! | `brook_connect_in_flight_records` | gauge | pipeline: read, not yet acknowledged |
//! | `brook_connect_pipeline_up` | gauge | pipeline: 1 while running, 0 while starting or waiting to retry |

use std::sync::OnceLock;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::PipelineConfig;
use crate::error::ConnectError;

/// The process's Prometheus handle (installs the recorder on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "brook_connect_records_total",
        Unit::Count,
        "Records the destination acknowledged, per pipeline"
    );
    describe_counter!(
        "brook_connect_bytes_total",
        Unit::Bytes,
        "Key, value and header bytes of the acknowledged records, per pipeline"
    );
    describe_counter!(
        "brook_connect_errors_total",
        Unit::Count,
        "Failures per pipeline and kind"
    );
    describe_counter!(
        "brook_connect_restarts_total",
        Unit::Count,
        "Pipeline runs ended by an error and started again"
    );
    describe_gauge!(
        "brook_connect_lag_records",
        Unit::Count,
        "Records on the source side the pipeline has not read yet"
    );
    describe_gauge!(
        "brook_connect_in_flight_records",
        Unit::Count,
        "Records read and not yet acknowledged by the destination"
    );
    describe_gauge!(
        "brook_connect_pipeline_up",
        Unit::Count,
        "1 while the pipeline runs, 0 while it starts or waits to retry"
    );
}

/// One pipeline's metric handles.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    name: String,
    records: Counter,
    bytes: Counter,
    restarts: Counter,
    lag: Gauge,
    in_flight: Gauge,
    up: Gauge,
}

impl PipelineMetrics {
    /// Registers the pipeline's series.
    pub fn new(pipeline: &PipelineConfig) -> PipelineMetrics {
        let name = pipeline.name.clone();
        let direction = pipeline.direction.name();
        let labels = [
            ("pipeline", name.clone()),
            ("direction", direction.to_string()),
        ];
        let pipeline_label = [("pipeline", name.clone())];
        PipelineMetrics {
            records: metrics::counter!("brook_connect_records_total", &labels),
            bytes: metrics::counter!("brook_connect_bytes_total", &labels),
            restarts: metrics::counter!("brook_connect_restarts_total", &pipeline_label),
            lag: metrics::gauge!("brook_connect_lag_records", &pipeline_label),
            in_flight: metrics::gauge!("brook_connect_in_flight_records", &pipeline_label),
            up: metrics::gauge!("brook_connect_pipeline_up", &pipeline_label),
            name,
        }
    }

    /// A record of `bytes` was acknowledged.
    pub fn moved(&self, bytes: usize) {
        self.records.increment(1);
        self.bytes.increment(bytes as u64);
    }

    /// Counts a failure by its kind.
    pub fn error(&self, err: &ConnectError) {
        metrics::counter!(
            "brook_connect_errors_total",
            "pipeline" => self.name.clone(),
            "kind" => err.kind()
        )
        .increment(1);
    }

    /// A run ended by an error; another follows.
    pub fn restarted(&self) {
        self.restarts.increment(1);
    }

    /// Sets the lag gauge.
    pub fn lag(&self, records: i64) {
        self.lag.set(records as f64);
    }

    /// Sets the in-flight gauge.
    pub fn in_flight(&self, records: usize) {
        self.in_flight.set(records as f64);
    }

    /// Sets the up gauge.
    pub fn up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }
}
