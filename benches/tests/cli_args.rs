//! `brook-bench compare` refuses bad arguments before starting anything: exit code 2 and a
//! message naming the argument and what it takes.

use std::process::Command;

fn compare(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brook-bench"))
        .arg("compare")
        .args(args)
        .args(["--out", "/nonexistent/never-written"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_compare_arguments_exit_2_naming_them() {
    let cases: [(&[&str], &str); 7] = [
        (&["--size", "4"], "--size must be at least 8"),
        (&["--partitions", "0"], "--partitions"),
        (
            &["--compression", "brotli"],
            "--compression takes none, gzip, snappy, lz4 or zstd (got \"brotli\")",
        ),
        (&["--acks", "2"], "--acks takes 0, 1 or all (got \"2\")"),
        (
            &["--durability", "sometimes"],
            "--durability takes no-fsync and fsync-every-write, not \"sometimes\"",
        ),
        (
            &["--systems", "pulsar"],
            "--systems takes brook and kafka, not \"pulsar\"",
        ),
        (
            &["--workloads", "consume,replay"],
            "--workloads takes produce-max, produce-rate, consume, e2e, group-e2e, not \"replay\"",
        ),
    ];
    for (args, message) in cases {
        let (code, err) = compare(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (code, err) = compare(&["--size", "many"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid value 'many' for '--size <SIZE>'"),
        "{err}"
    );
}

/// `brook-bench cluster` refuses bad arguments before starting anything.
#[test]
fn bad_cluster_arguments_exit_2_naming_them() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brook-bench"))
            .arg("cluster")
            .args(args)
            .args(["--out", "/nonexistent/never-written"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cases: [(&[&str], &str); 4] = [
        (
            &["--kills", "0"],
            "invalid value '0' for '--kills <KILLS>': 0 is not in 1..=50",
        ),
        (
            &["--kills", "51"],
            "invalid value '51' for '--kills <KILLS>': 51 is not in 1..=50",
        ),
        (&["--rate-mb=-5"], "--rate-mb must be above 0 (got -5)"),
        (
            &["--duration-secs", "0"],
            "--duration-secs must be at least 1",
        ),
    ];
    for (args, message) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
