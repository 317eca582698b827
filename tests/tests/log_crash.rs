//! SIGKILL durability: a child appends with `flush = always` and reports each acknowledged
//! batch over a pipe; the parent kills it at seeded random moments, reopens the log and
//! checks every acknowledged batch is present and intact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brook_broker::log::Log;
use brook_proto::{Batches, Offset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: u32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_batch() {
    let seed: u64 = std::env::var("BROOK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("log_crash seed {seed} (set BROOK_TEST_SEED={seed} to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(i64, i64, String)> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-appender"))
            .arg(dir.path())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start log-appender");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements (0 = possibly during recovery or
        // before the first append), plus a random sub-millisecond delay.
        let wait_for: usize = if rng.random_bool(0.1) {
            0
        } else {
            rng.random_range(1..400)
        };
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines.len() < wait_for {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => lines.push(l),
                Err(e) => panic!(
                    "seed {seed} round {round}: appender made no progress ({e}) after {} acks",
                    lines.len()
                ),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..1000)));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "seed {seed} round {round}: appender exited by itself: {status}"
        );
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for l in &lines {
            acked.push(
                brook_tests::parse_ack_line(l).unwrap_or_else(|| panic!("bad ack line {l:?}")),
            );
        }
        verify(dir.path(), &acked, seed, round).await;
    }
    println!(
        "{ROUNDS} rounds, {} acknowledged batches, {:?}",
        acked.len(),
        started.elapsed()
    );
    assert!(
        acked.len() > ROUNDS as usize * 10,
        "too few acknowledgements to mean anything"
    );
}

async fn verify(dir: &std::path::Path, acked: &[(i64, i64, String)], seed: u64, round: u32) {
    let ctx = format!("seed {seed} round {round}");
    let log = Log::open(dir, brook_tests::crash_test_config())
        .await
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let mut seen = std::collections::HashSet::new();
    for (base, last, tag) in acked {
        assert!(
            seen.insert(*base),
            "{ctx}: offset {base} acknowledged twice"
        );
        assert!(
            Offset(*last) < log.end_offset(),
            "{ctx}: acked batch {tag} at {base}..={last} is past the log end {}",
            log.end_offset()
        );
        let bytes = log
            .read_blocking(Offset(*base), 1)
            .unwrap_or_else(|e| panic!("{ctx}: read {base}: {e}"));
        let batch = Batches::new(bytes, usize::MAX)
            .next()
            .expect("a batch")
            .unwrap_or_else(|e| panic!("{ctx}: batch at {base} invalid: {e}"));
        assert_eq!(
            (batch.base_offset(), batch.last_offset()),
            (*base, *last),
            "{ctx}: {tag}"
        );
        for (i, r) in batch.records().unwrap().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("{ctx}: {tag} record {i}: {e}"));
            let value = r.value.unwrap();
            let expected = format!("{tag}:{i}:{}", "v".repeat(100));
            assert_eq!(value, expected.as_bytes(), "{ctx}: {tag} record {i}");
        }
    }
    // Everything in the log, acknowledged or not, is whole and valid.
    let mut offset = log.start_offset();
    while offset < log.end_offset() {
        let bytes = log.read_blocking(offset, 1 << 20).unwrap();
        for b in Batches::new(bytes, usize::MAX) {
            let b = b.unwrap_or_else(|e| panic!("{ctx}: invalid batch after recovery: {e}"));
            assert_eq!(b.base_offset(), offset.0, "{ctx}: offsets are dense");
            offset = Offset(b.last_offset() + 1);
        }
    }
    log.close().await.unwrap();
}
