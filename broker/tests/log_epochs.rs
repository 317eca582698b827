//! The log's leader-epoch cache: recorded from appended batches, kept in
//! `leader-epoch-checkpoint`, trimmed by truncation and retention, rebuilt from batch headers
//! when the file is missing or damaged.

mod common;

use brook_broker::log::{Log, LogConfig};
use brook_broker::replication::{EPOCH_CHECKPOINT_FILE, EpochCache, EpochEnd};
use brook_proto::{LeaderEpoch, Offset};
use common::*;

fn entries(log: &Log) -> Vec<(i32, i64)> {
    log.epochs()
        .entries()
        .iter()
        .map(|e| (e.epoch.get(), e.start_offset.get()))
        .collect()
}

fn checkpoint(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(EPOCH_CHECKPOINT_FILE)).unwrap()
}

/// Appends batches of `records` records under each epoch in turn.
async fn fill(log: &Log, plan: &[(i32, usize)]) {
    for (i, (epoch, records)) in plan.iter().enumerate() {
        log.append(
            batch(&format!("b{i}"), *records, 1_000),
            LeaderEpoch(*epoch),
        )
        .await
        .unwrap();
    }
}

fn end(epoch: i32, offset: i64) -> EpochEnd {
    EpochEnd {
        epoch: LeaderEpoch(epoch),
        end_offset: Offset(offset),
    }
}

#[tokio::test]
async fn epochs_are_recorded_checkpointed_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert!(log.epochs().entries().is_empty());
    // Offsets: epoch 0 at 0..4, epoch 2 at 4..7, epoch 5 at 7.
    fill(&log, &[(0, 2), (0, 2), (2, 3), (5, 1)]).await;
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 7)]);
    assert_eq!(checkpoint(dir.path()), "0\n3\n0 0\n2 4\n5 7\n");
    assert_eq!(log.epoch_end(LeaderEpoch(1)), end(0, 4));
    assert_eq!(log.epoch_end(LeaderEpoch(2)), end(2, 7));
    assert_eq!(log.epoch_end(LeaderEpoch(7)), end(5, 8));
    assert_eq!(
        log.latest_epoch()
            .map(|e| (e.epoch.get(), e.start_offset.get())),
        Some((5, 7))
    );
    // A deposed leader's write (an older epoch) is refused; the log goes on.
    let err = log
        .append(batch("stale", 1, 1_000), LeaderEpoch(3))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("leader epoch 3 is older than the log's newest epoch 5"),
        "{err}"
    );
    let info = log
        .append(batch("next", 1, 1_000), LeaderEpoch(5))
        .await
        .unwrap();
    assert_eq!(info.base_offset, Offset(8));
    log.close().await.unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 7)]);
    assert_eq!(log.epoch_end(LeaderEpoch(5)), end(5, 9));
}

#[tokio::test]
async fn truncation_drops_the_epochs_it_cuts_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    // One record per batch: epoch 0 at 0..3, epoch 1 at 3..6, epoch 2 at 6..9.
    let plan: Vec<(i32, usize)> = (0..9).map(|i| (i / 3, 1)).collect();
    fill(&log, &plan).await;
    assert_eq!(entries(&log), [(0, 0), (1, 3), (2, 6)]);
    assert_eq!(log.truncate_to(Offset(5)).await.unwrap(), Offset(5));
    assert_eq!(entries(&log), [(0, 0), (1, 3)]);
    assert_eq!(checkpoint(dir.path()), "0\n2\n0 0\n1 3\n");
    assert_eq!(log.truncate_to(Offset(3)).await.unwrap(), Offset(3));
    assert_eq!(entries(&log), [(0, 0)]);
    // A follower copying a new leader's batches records that leader's epoch.
    fill(&log, &[(4, 2)]).await;
    assert_eq!(entries(&log), [(0, 0), (4, 3)]);
    assert_eq!(log.epoch_end(LeaderEpoch(2)), end(0, 3));
}

#[tokio::test]
async fn a_reset_empties_the_log_and_its_epochs_and_restarts_it_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    let plan: Vec<(i32, usize)> = (0..9).map(|i| (i / 3, 1)).collect();
    fill(&log, &plan).await;
    // Past the end: a follower whose leader's log now starts at 100.
    assert_eq!(log.reset_to(Offset(100)).await.unwrap(), Offset(100));
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(100), Offset(100))
    );
    assert!(entries(&log).is_empty());
    assert_eq!(checkpoint(dir.path()), "0\n0\n");
    assert!(log.read(Offset(100), 1 << 20).await.unwrap().is_empty());
    fill(&log, &[(7, 2)]).await;
    assert_eq!(entries(&log), [(7, 100)]);
    log.close().await.unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(100), Offset(102))
    );
    assert_eq!(log.segment_base_offsets(), [Offset(100)]);
    // Back to an empty log at 0: a replica moved off this broker.
    assert_eq!(log.reset_to(Offset(0)).await.unwrap(), Offset(0));
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(0), Offset(0))
    );
    let err = log.reset_to(Offset(-1)).await.unwrap_err();
    assert!(err.to_string().contains("-1"), "{err}");
    assert_eq!(log.end_offset(), Offset(0));
    // Again at 0, over a log that starts at 0 (same segment file name), across a reopen.
    fill(&log, &[(1, 3), (1, 2)]).await;
    log.roll().await.unwrap();
    fill(&log, &[(2, 1)]).await;
    assert_eq!(log.reset_to(Offset(0)).await.unwrap(), Offset(0));
    log.close().await.unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(0), Offset(0))
    );
    assert_eq!(log.segment_base_offsets(), [Offset(0)]);
    assert!(entries(&log).is_empty());
}

#[tokio::test]
async fn retention_moves_the_first_epoch_up_to_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1600,
        retention_bytes: Some(1000),
        ..small_config()
    };
    let log = Log::open(dir.path(), config).await.unwrap();
    // Three ~400-byte batches per segment; epoch 0 for batches 0..6, epoch 1 after.
    for i in 0..12i64 {
        let b = big_batch(&format!("b{i:02}"), 1, 400, 1_000);
        log.append(b, LeaderEpoch(if i < 6 { 0 } else { 1 }))
            .await
            .unwrap();
    }
    let outcome = log.enforce_retention().await.unwrap();
    let start = log.start_offset().get();
    assert!(outcome.deleted_segments > 0 && start > 6, "start {start}");
    assert_eq!(entries(&log), [(1, start)]);
    assert_eq!(checkpoint(dir.path()), format!("0\n1\n1 {start}\n"));
}

#[tokio::test]
async fn a_missing_damaged_or_too_long_checkpoint_is_mended_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    fill(&log, &[(0, 2), (3, 2), (3, 1), (6, 2)]).await;
    let expected = [(0, 0), (3, 2), (6, 5)];
    assert_eq!(entries(&log), expected);
    log.close().await.unwrap();
    drop(log);
    let path = dir.path().join(EPOCH_CHECKPOINT_FILE);
    // Missing (a log written before epochs were kept): rebuilt from the batch headers.
    std::fs::remove_file(&path).unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(entries(&log), expected);
    assert_eq!(checkpoint(dir.path()), "0\n3\n0 0\n3 2\n6 5\n");
    log.close().await.unwrap();
    drop(log);
    // Damaged: rebuilt the same way.
    std::fs::write(&path, "0\n3\n0 0\ngarbage\n").unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(entries(&log), expected);
    log.close().await.unwrap();
    drop(log);
    // An entry past the log end (a crash after the checkpoint, before the data): dropped.
    std::fs::write(&path, "0\n4\n0 0\n3 2\n6 5\n9 50\n").unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(entries(&log), expected);
    assert_eq!(
        EpochCache::load(dir.path()).unwrap().entries(),
        log.epochs().entries()
    );
}

/// Everything in `log` as stored, front to back (segment by segment).
fn stored_bytes(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.start_offset();
    while offset < log.end_offset() {
        let bytes = log.read_blocking(offset, 1 << 20).unwrap();
        let last = records(&bytes).last().unwrap().0;
        out.extend_from_slice(&bytes);
        offset = Offset(last + 1);
    }
    out
}

/// A follower copies the leader's batches as they are: same offsets, same epochs, same
/// bytes, across segment rolls; a batch that does not start at its log end, a damaged batch
/// and a cut one are refused and change nothing.
#[tokio::test]
async fn a_follower_appends_the_leaders_batches_with_their_offsets_and_epochs() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(leader_dir.path(), small_config()).await.unwrap();
    let follower = Log::open(follower_dir.path(), small_config())
        .await
        .unwrap();
    fill(&leader, &[(1, 3), (1, 2), (3, 4), (3, 1), (4, 5)]).await;
    fill(&leader, &[(4, 3); 80]).await;
    let all = bytes::Bytes::from(stored_bytes(&leader));

    // In two fetches, the second starting where the first ended.
    let first = leader.read_blocking(Offset(0), 300).unwrap();
    let end = follower.append_replica(first.clone()).await.unwrap();
    assert_eq!(end, Offset(records(&first).last().unwrap().0 + 1));
    assert_eq!(follower.end_offset(), end);

    // Refused: a batch past the end (a gap), a damaged one, a cut one; nothing changes.
    let later = leader.read_blocking(Offset(end.0 + 1), 300).unwrap();
    let later_start = records(&later)[0].0;
    if later_start != end.0 {
        let err = follower.append_replica(later).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "log {}: a replicated batch starts at offset {later_start}, the log ends at {}",
                follower_dir.path().display(),
                end.0
            )
        );
    }
    let next = leader.read_blocking(end, 300).unwrap();
    let mut damaged = next.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let err = follower.append_replica(damaged.into()).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid batch: "), "{err}");
    let cut = next.slice(..next.len() - 1);
    let err = follower.append_replica(cut).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid batch: "), "{err}");
    assert_eq!(follower.end_offset(), end);

    // The rest, in reads of up to 300 bytes.
    let mut at = end;
    while at < leader.end_offset() {
        let bytes = leader.read_blocking(at, 300).unwrap();
        at = follower.append_replica(bytes).await.unwrap();
    }
    assert_eq!(follower.end_offset(), leader.end_offset());
    assert_eq!(entries(&follower), entries(&leader));
    assert_eq!(entries(&follower), [(1, 0), (3, 5), (4, 10)]);
    assert_eq!(&stored_bytes(&follower)[..], &all[..]);
    assert!(follower.segment_base_offsets().len() > 1, "rolled");

    // After a reopen the copy is the same.
    follower.close().await.unwrap();
    let follower = Log::open(follower_dir.path(), small_config())
        .await
        .unwrap();
    assert_eq!(&stored_bytes(&follower)[..], &all[..]);
    assert_eq!(entries(&follower), [(1, 0), (3, 5), (4, 10)]);
}
