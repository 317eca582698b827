//! `brook-bench` leaves nothing behind: its temporary directories go at every exit, and on
//! SIGINT or SIGTERM it stops the brokers it started first and exits 130 or 143.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use brook_bench::procs::{alive, children};

/// The pid of a `brook-broker` whose parent is `parent`, if one runs.
fn broker_child(parent: u32) -> Option<u32> {
    children(parent).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "brook-broker")
    })
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn an_error_exit_leaves_no_scratch_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brook-bench"))
        .args([
            "compare",
            "--size",
            "4",
            "--out",
            "/nonexistent/never-written",
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_signal_stops_the_broker_and_removes_the_scratch_directory() {
    let broker = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("brook-broker");
    assert!(
        broker.exists(),
        "build brook-broker first: {}",
        broker.display()
    );
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let scratch = tmp.path().join("tmp");
        std::fs::create_dir(&scratch).unwrap();
        let mut bench = Command::new(env!("CARGO_BIN_EXE_brook-bench"))
            .args(["tls", "--modes", "plaintext", "--repeat", "1"])
            .args(["--duration-secs", "120", "--warmup-secs", "1"])
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg("--broker-bin")
            .arg(&broker)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = loop {
            if let Some(pid) = broker_child(bench.id()) {
                break pid;
            }
            assert!(
                bench.try_wait().unwrap().is_none(),
                "brook-bench ended before starting a broker"
            );
            assert!(Instant::now() < deadline, "no broker started within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let run_dirs = entries(&scratch);
        assert_eq!(run_dirs.len(), 1, "{run_dirs:?}");
        assert!(run_dirs[0].starts_with("brook-bench-"), "{run_dirs:?}");

        let sent = Command::new("kill")
            .args([signal, &bench.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = bench.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "brook-bench still runs 30 s after {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(code), "after {signal}");
        // The broker was stopped before brook-bench exited; once orphaned, init reaps it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "broker {pid} outlived brook-bench"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(entries(&scratch), Vec::<String>::new(), "after {signal}");
    }
}
