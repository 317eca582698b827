//! Runs every pipeline of a config until shutdown, each restarted after a pause when a run
//! fails, and keeps the state `/health` reports.
//!
//! A run that fails (a cluster unreachable for longer than its client retries, a destination
//! topic missing, a record the destination refuses) commits what was acknowledged, and the
//! pipeline starts again from the committed positions after a pause that doubles from 1 s up
//! to 30 s (reset once a run lasted a minute). Nothing is skipped: a record the destination
//! refuses stops its pipeline until an operator intervenes, and `/health` says why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::brook_side::{self, BrookReader, BrookWriter};
use crate::config::{ConnectConfig, Direction, PipelineConfig};
use crate::error::{ConnectError, Side};
use crate::kafka_side::{KafkaReader, KafkaWriter};
use crate::metrics::PipelineMetrics;
use crate::pipeline;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// A pipeline's state, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PipelineState {
    /// Connecting and checking topics.
    Starting,
    /// Moving records.
    Running,
    /// The last run failed; the next starts after a pause.
    Retrying {
        /// Why the last run failed.
        error: String,
        /// Consecutive failed runs.
        failures: u32,
    },
    /// Shut down.
    Stopped,
}

/// Every pipeline's state by name.
#[derive(Debug, Clone, Default)]
pub struct Status(Arc<Mutex<BTreeMap<String, PipelineState>>>);

impl Status {
    /// Sets a pipeline's state.
    pub fn set(&self, pipeline: &str, state: PipelineState) {
        self.0.lock().insert(pipeline.to_string(), state);
    }

    /// A copy of every state.
    pub fn snapshot(&self) -> BTreeMap<String, PipelineState> {
        self.0.lock().clone()
    }

    /// Whether every pipeline is running.
    pub fn healthy(&self) -> bool {
        self.0.lock().values().all(|s| *s == PipelineState::Running)
    }
}

/// Starts every pipeline of `config` on `tasks`; they stop when `cancel` fires.
pub fn spawn_all(
    config: &ConnectConfig,
    status: &Status,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    for p in &config.pipeline {
        status.set(&p.name, PipelineState::Starting);
        tasks.spawn(supervise(
            config.clone(),
            p.clone(),
            status.clone(),
            cancel.clone(),
        ));
    }
}

async fn supervise(
    config: ConnectConfig,
    pipeline: PipelineConfig,
    status: Status,
    cancel: CancellationToken,
) {
    let metrics = PipelineMetrics::new(&pipeline);
    let mut pause = FIRST_PAUSE;
    let mut failures = 0;
    while !cancel.is_cancelled() {
        status.set(&pipeline.name, PipelineState::Starting);
        let started = Instant::now();
        let on_running = || {
            status.set(&pipeline.name, PipelineState::Running);
            metrics.up(true);
            tracing::info!(pipeline = %pipeline.name, direction = pipeline.direction.name(), "pipeline running");
        };
        let result = run_once(&config, &pipeline, &metrics, &cancel, on_running).await;
        metrics.up(false);
        let err = match result {
            Ok(()) => break,
            Err(err) => err,
        };
        if started.elapsed() >= STABLE_RUN {
            pause = FIRST_PAUSE;
            failures = 0;
        }
        failures += 1;
        tracing::error!(pipeline = %pipeline.name, cause = %err, failures, retry_in_ms = pause.as_millis() as u64, "pipeline failed");
        metrics.error(&err);
        metrics.restarted();
        status.set(
            &pipeline.name,
            PipelineState::Retrying {
                error: err.to_string(),
                failures,
            },
        );
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
    status.set(&pipeline.name, PipelineState::Stopped);
}

async fn run_once(
    config: &ConnectConfig,
    pipeline: &PipelineConfig,
    metrics: &PipelineMetrics,
    cancel: &CancellationToken,
    on_running: impl FnOnce(),
) -> Result<(), ConnectError> {
    let connect_timeout = Duration::from_millis(config.timeouts.startup_ms);
    let drain = Duration::from_millis(config.timeouts.shutdown_ms);
    let conn = brook_side::connect(
        &config.brook.bootstrap,
        &config
            .brook
            .security()
            .map_err(|e| ConnectError::Unreachable {
                side: Side::Brook,
                bootstrap: config.brook.bootstrap.clone(),
                reason: e.to_string(),
            })?,
        connect_timeout,
    )
    .await?;
    match pipeline.direction {
        Direction::KafkaToBrook => {
            let reader = KafkaReader::new(&config.kafka, pipeline)?;
            let writer = BrookWriter::new(conn, pipeline).await?;
            pipeline::run(pipeline, reader, writer, metrics, cancel, drain, on_running).await
        }
        Direction::BrookToKafka => {
            let reader = BrookReader::new(conn, pipeline)?;
            let writer = KafkaWriter::new(&config.kafka, pipeline)?;
            pipeline::run(pipeline, reader, writer, metrics, cancel, drain, on_running).await
        }
    }
}
