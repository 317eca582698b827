//! Idempotent producers at the log: duplicates answered with the original offsets, gaps and
//! fenced epochs refused, and the state kept across restarts and truncations.

mod common;

use brook_broker::log::{Log, LogConfig, LogError, SequenceError};
use brook_proto::{BatchBuilder, LeaderEpoch, Offset};
use bytes::Bytes;
use common::*;

fn idem_batch(producer_id: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new().producer(producer_id, epoch, seq);
    for v in values {
        b.append(now_ms(), None, Some(v.as_bytes()), &[]);
    }
    b.build()
}

async fn send(log: &Log, b: &Bytes) -> Result<(i64, i64), LogError> {
    log.append(b.clone(), LeaderEpoch(1))
        .await
        .map(|i| (i.base_offset.0, i.last_offset.0))
}

#[tokio::test]
async fn a_resent_batch_is_written_once_and_answered_with_its_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    append(&log, "plain", 2, now_ms()).await; // offsets 0..=1, no producer id
    let first = idem_batch(9, 0, 0, &["a", "b", "c"]);
    let second = idem_batch(9, 0, 3, &["d"]);
    assert_eq!(send(&log, &first).await.unwrap(), (2, 4));
    assert_eq!(send(&log, &second).await.unwrap(), (5, 5));
    // The responses were "lost": the producer sends both again.
    assert_eq!(send(&log, &first).await.unwrap(), (2, 4));
    assert_eq!(send(&log, &second).await.unwrap(), (5, 5));
    assert_eq!(log.end_offset(), Offset(6));
    let values: Vec<String> = read_all(&log).into_iter().map(|r| r.1).collect();
    assert_eq!(values, ["plain:0", "plain:1", "a", "b", "c", "d"]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn duplicates_inside_one_group_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    let b = idem_batch(1, 0, 0, &["x"]);
    // Queued together: the writer sees the original and its resend in one group.
    let next = idem_batch(1, 0, 1, &["y"]);
    let (r1, r2, r3) = tokio::join!(send(&log, &b), send(&log, &b), send(&log, &next));
    assert_eq!(r1.unwrap(), (0, 0));
    assert_eq!(r2.unwrap(), (0, 0));
    assert_eq!(r3.unwrap(), (1, 1));
    assert_eq!(log.end_offset(), Offset(2));
    log.close().await.unwrap();
}

#[tokio::test]
async fn gaps_and_fenced_epochs_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    send(&log, &idem_batch(4, 2, 0, &["a", "b"])).await.unwrap();
    match send(&log, &idem_batch(4, 2, 5, &["gap"])).await {
        Err(LogError::Sequence(e)) => {
            assert_eq!(
                e,
                SequenceError::OutOfOrder {
                    producer_id: 4,
                    epoch: 2,
                    expected: 2,
                    got: 5
                }
            )
        }
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    match send(&log, &idem_batch(4, 1, 2, &["old"])).await {
        Err(LogError::Sequence(e)) => assert_eq!(
            e,
            SequenceError::Fenced {
                producer_id: 4,
                epoch: 1,
                current: 2
            }
        ),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(
        send(&log, &idem_batch(4, 2, 5, &["gap"]))
            .await
            .unwrap_err()
            .to_string(),
        "producer 4 epoch 2: sequence 5 is out of order, expected 2"
    );
    // A new epoch starts again at 0; the old epoch is fenced from then on.
    assert_eq!(
        send(&log, &idem_batch(4, 3, 0, &["new"])).await.unwrap(),
        (2, 2)
    );
    assert!(matches!(
        send(&log, &idem_batch(4, 2, 2, &["c"])).await,
        Err(LogError::Sequence(SequenceError::Fenced { .. }))
    ));
    assert_eq!(log.end_offset(), Offset(3));
    log.close().await.unwrap();
}

#[tokio::test]
async fn producer_state_survives_restart_roll_and_lost_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1024,
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    let batches: Vec<Bytes> = (0..30)
        .map(|i| idem_batch(2, 0, i, &[&format!("v{i:02}-{}", "p".repeat(60))]))
        .collect();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(send(&log, b).await.unwrap().0, i as i64);
    }
    assert!(
        log.segment_base_offsets().len() > 2,
        "rolled, so snapshots were written"
    );
    log.close().await.unwrap();

    // Restart: the last five batches are still recognised; sequence continues at 30.
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    for (i, b) in batches.iter().enumerate().skip(25) {
        assert_eq!(
            send(&log, b).await.unwrap().0,
            i as i64,
            "resend of {i} after restart"
        );
    }
    assert!(matches!(
        send(&log, &batches[20]).await,
        Err(LogError::Sequence(SequenceError::OutOfOrder {
            expected: 30,
            ..
        }))
    ));
    log.close().await.unwrap();

    // Without any snapshot the state is rebuilt from the log itself.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = Log::open(dir.path(), config).await.unwrap();
    assert_eq!(send(&log, &batches[29]).await.unwrap().0, 29);
    assert_eq!(
        send(&log, &idem_batch(2, 0, 30, &["next"]))
            .await
            .unwrap()
            .0,
        30
    );
    assert_eq!(log.end_offset(), Offset(31));
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncation_forgets_the_batches_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    let b0 = idem_batch(6, 0, 0, &["a"]);
    let b1 = idem_batch(6, 0, 1, &["b"]);
    send(&log, &b0).await.unwrap();
    send(&log, &b1).await.unwrap();
    assert_eq!(log.truncate_to(Offset(1)).await.unwrap(), Offset(1));
    // b1 is gone, so its resend is new data, written again at offset 1.
    assert_eq!(send(&log, &b1).await.unwrap(), (1, 1));
    assert_eq!(
        send(&log, &b0).await.unwrap(),
        (0, 0),
        "b0 is still remembered"
    );
    assert_eq!(log.end_offset(), Offset(2));
    log.close().await.unwrap();
}
