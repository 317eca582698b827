//! `brook-bench compare`: the same workloads against Brook and a real Apache Kafka on this
//! machine, one system after the other, reported side by side.
//!
//! ```text
//!  for each durability class (no-fsync, fsync-every-write):
//!     start brook-broker (flush never|always)      start Kafka (default | flush.messages=1)
//!     for each workload:  run on Brook ──▶ SystemResult ◀── run on Kafka
//!                         (broker CPU and peak RSS sampled from /proc while it runs)
//!  cross-check: our rdkafka producer vs Kafka's ProducerPerformance, same settings
//!  ──▶ report.json, report.md, charts (SVG)
//! ```
//!
//! - [`workload`]: what a workload is, and the measuring loops (max rate, or fixed rate open
//!   loop with latency from the schedule, so coordinated omission is corrected; warm-up cut).
//! - [`driver`]: the two clients behind one interface: brook-client and rdkafka, with the same
//!   batching, acks, compression, message size and partitions.
//! - [`systems`]: the broker processes, their CPU and memory, the machine.
//! - [`runner`]: the `compare` command: the suite, the cross-check, the report files.
//! - [`model`] and [`render`]: the report, its markdown and its charts.
//! - [`cluster`]: the `cluster` command: 3-node Brook and Kafka with replication factor 3
//!   beside one Brook broker, and failover time.

pub mod cluster;
pub mod driver;
pub mod model;
pub mod render;
pub mod runner;
pub mod systems;
pub mod workload;
