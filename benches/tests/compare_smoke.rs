//! `brook-bench compare` end to end against a real Kafka and the real `brook-broker` binary,
//! at a tiny scale: every workload runs on both systems, the cross-check runs, and the report
//! files are written and agree with each other. (Numbers come from release builds; see
//! docs/benchmarks.md. This only proves the harness works.)

use std::time::Duration;

use brook_bench::compare::model::Report;
use brook_bench::compare::runner::{CompareOptions, compare};
use brook_bench::compare::systems::Durability;
use brook_tests::kafka::kafka_available;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_runs_every_workload_on_both_systems_and_writes_the_report() {
    if !kafka_available("compare_runs_every_workload_on_both_systems_and_writes_the_report") {
        return;
    }
    // The workspace's binaries sit next to the test's deps/ directory.
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("brook-broker");
    assert!(bin.exists(), "build brook-broker first: {}", bin.display());
    let out = tempfile::tempdir().unwrap();
    let mut o = CompareOptions::new(out.path().to_path_buf());
    o.duration = Duration::from_secs(1);
    o.warmup = Duration::from_millis(300);
    o.consume_messages = 2_000;
    o.cross_check_messages = 2_000;
    o.durability = vec![Durability::NoFsync];
    o.broker_bin = bin;
    let report = compare(&o).await.expect("compare runs");

    let names: Vec<&str> = report.cases.iter().map(|c| c.workload.as_str()).collect();
    assert_eq!(
        names,
        [
            "produce-max",
            "produce-50MBps",
            "consume",
            "e2e-50MBps",
            "group-e2e-20MBps"
        ]
    );
    for case in &report.cases {
        let systems: Vec<&str> = case.results.iter().map(|r| r.system.as_str()).collect();
        assert_eq!(systems, ["brook", "kafka"], "{}", case.workload);
        for r in &case.results {
            assert!(
                r.messages > 0,
                "{} on {} measured nothing",
                case.workload,
                r.system
            );
            assert!(
                r.broker_peak_rss_bytes > 0,
                "{} on {}: no RSS",
                case.workload,
                r.system
            );
            assert_eq!(
                r.latency_us.is_some(),
                case.kind != "consume",
                "{}",
                case.workload
            );
        }
    }
    let consume = &report.cases[2];
    assert!(consume.results.iter().all(|r| r.messages == 2_000));
    let cc = report.cross_check.as_ref().expect("cross-check ran");
    assert!(cc.rdkafka_msgs_per_sec > 0.0 && cc.java_msgs_per_sec > 0.0);

    let json: Report =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json.cases.len(), report.cases.len());
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("| produce-max | produce |"), "{md}");
    assert!(out.path().join("throughput.svg").exists());
    assert!(out.path().join("latency-e2e-50MBps-no-fsync.svg").exists());
}
