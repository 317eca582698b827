//! Crash recovery on open: torn and corrupt tails, damaged indexes, corrupt sealed segments.

mod common;

use std::fs;
use std::path::Path;

use brook_broker::log::{CHECKPOINT_FILE, Log, LogConfig, LogError, log_file_name};
use brook_proto::batch::layout;
use brook_proto::{LeaderEpoch, Offset};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn config() -> LogConfig {
    // Every batch gets an index entry, so entries past a cut must be dropped too.
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 1,
        max_batch_bytes: 1024,
        ..small_config()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    expected: Vec<(i64, String)>,
    last_segment: i64,
    last_batch_start: u64,
    last_batch_base: i64,
    file_len: u64,
}

/// A closed log of several segments whose active segment holds three batches.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    // Rising timestamps: the last batch carries the active segment's last time-index entry,
    // so recovery starts its scan exactly at the batch the tests damage.
    let t0 = now_ms();
    for i in 0..37 {
        append(&log, &format!("b{i:02}"), 1 + i % 4, t0 + i as i64).await;
    }
    let last_segment = log.segment_base_offsets().last().unwrap().0;
    let mut sizes = Vec::new();
    let mut offset = Offset(last_segment);
    while offset < log.end_offset() {
        let b = log.read_blocking(offset, 1).unwrap();
        let h = brook_proto::BatchHeader::parse(&b).unwrap();
        sizes.push((h.base_offset, b.len() as u64));
        offset = Offset(h.next_offset());
    }
    assert!(
        sizes.len() >= 2,
        "active segment holds {} batches",
        sizes.len()
    );
    let expected = read_all(&log);
    log.close().await.unwrap();
    let file_len = fs::metadata(dir.path().join(log_file_name(last_segment)))
        .unwrap()
        .len();
    let last_batch_start = file_len - sizes.last().unwrap().1;
    let last_batch_base = sizes.last().unwrap().0;
    assert!(log_count(dir.path()) > 2);
    Fixture {
        dir,
        expected,
        last_segment,
        last_batch_start,
        last_batch_base,
        file_len,
    }
}

fn log_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

/// Opens a copy of the fixture after `damage`, and checks that exactly the batches before
/// the last one survived and the file was cut back to where the last batch started.
async fn assert_recovers_to_last_batch_start(f: &Fixture, what: &str, damage: impl FnOnce(&Path)) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    damage(copy.path());
    let log = Log::open(copy.path(), config())
        .await
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert_eq!(log.end_offset(), Offset(f.last_batch_base), "{what}");
    let kept: Vec<_> = f
        .expected
        .iter()
        .filter(|r| r.0 < f.last_batch_base)
        .cloned()
        .collect();
    assert_eq!(read_all(&log), kept, "{what}");
    let len = fs::metadata(copy.path().join(log_file_name(f.last_segment)))
        .unwrap()
        .len();
    assert_eq!(
        len, f.last_batch_start,
        "{what}: file cut back to the last valid batch"
    );
    // The log takes appends again at the cut.
    let info = log
        .append(batch("after", 1, now_ms()), LeaderEpoch(1))
        .await
        .unwrap();
    assert_eq!(info.base_offset, Offset(f.last_batch_base), "{what}");
    log.close().await.unwrap();
}

fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[tokio::test]
async fn cutting_the_last_batch_at_every_byte_keeps_exactly_the_batches_before_it() {
    let f = fixture().await;
    let log_path = |d: &Path| d.join(log_file_name(f.last_segment));
    for len in f.last_batch_start..f.file_len {
        assert_recovers_to_last_batch_start(&f, &format!("cut at {len}"), |d| {
            cut(&log_path(d), len)
        })
        .await;
    }
}

#[tokio::test]
async fn flipped_bytes_in_the_last_batch_are_cut_off() {
    let f = fixture().await;
    let seed: u64 = std::env::var("BROOK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("flipped_bytes seed {seed} (set BROOK_TEST_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    // Every header byte outside the epoch, with a low and a high bit, then random bytes.
    let header_flips = (0..layout::HEADER_LEN)
        .filter(|r| !(layout::LEADER_EPOCH..layout::MAGIC).contains(r))
        .flat_map(|r| [(r, 0x01u8), (r, 0x80u8)]);
    let random_flips: Vec<(usize, u8)> = (0..150)
        .map(|_| {
            let rel = loop {
                let rel = rng.random_range(0..f.file_len - f.last_batch_start) as usize;
                // partitionLeaderEpoch (bytes 12..16) lies outside the CRC, as in Kafka.
                if !(layout::LEADER_EPOCH..layout::MAGIC).contains(&rel) {
                    break rel;
                }
            };
            (rel, rng.random_range(1..=255))
        })
        .collect();
    for (rel, mask) in header_flips.chain(random_flips) {
        let pos = f.last_batch_start + rel as u64;
        let path = f.dir.path().join(log_file_name(f.last_segment));
        let what = format!("seed {seed}: xor {mask:#04x} at byte {pos} (batch byte {rel})");
        assert_recovers_to_last_batch_start(&f, &what, |d| {
            let p = d.join(path.file_name().unwrap());
            let mut bytes = fs::read(&p).unwrap();
            bytes[pos as usize] ^= mask;
            fs::write(&p, bytes).unwrap();
        })
        .await;
    }
}

#[tokio::test]
async fn zeroed_tail_from_a_preallocating_filesystem_is_cut_off() {
    let f = fixture().await;
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    let path = copy.path().join(log_file_name(f.last_segment));
    cut(&path, f.file_len + 4096);
    let log = Log::open(copy.path(), config()).await.unwrap();
    assert_eq!(read_all(&log), f.expected);
    assert_eq!(fs::metadata(&path).unwrap().len(), f.file_len);
    log.close().await.unwrap();
}

#[tokio::test]
async fn missing_and_damaged_indexes_are_rebuilt_identically() {
    let f = fixture().await;
    let names: Vec<String> = fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("index"))
        .collect();
    assert!(names.len() >= 6);
    let originals: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.clone(), fs::read(f.dir.path().join(n)).unwrap()))
        .collect();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    for (i, name) in names.iter().enumerate() {
        let p = copy.path().join(name);
        match i % 3 {
            0 => fs::remove_file(&p).unwrap(),
            1 => fs::write(&p, vec![0xA5; 37]).unwrap(),
            _ => {
                let mut b = fs::read(&p).unwrap();
                if b.len() >= 16 {
                    b.swap(0, 8); // out of order entries
                    b[3] ^= 0x40;
                }
                fs::write(&p, b).unwrap();
            }
        }
    }
    let log = Log::open(copy.path(), config()).await.unwrap();
    assert_eq!(read_all(&log), f.expected);
    for base in log.segment_base_offsets() {
        for o in base.0..log.end_offset().0.min(base.0 + 3) {
            let got = log.read_blocking(Offset(o), 1).unwrap();
            assert!(records(&got).iter().any(|r| r.0 == o), "offset {o}");
        }
    }
    log.close().await.unwrap();
    for (name, bytes) in originals {
        assert_eq!(
            fs::read(copy.path().join(&name)).unwrap(),
            bytes,
            "{name} rebuilt differently"
        );
    }
}

#[tokio::test]
async fn corruption_inside_a_sealed_segment_is_an_error_naming_segment_and_position() {
    let f = fixture().await;
    let sealed = log_file_name(0);
    let bytes = fs::read(f.dir.path().join(&sealed)).unwrap();
    // Position of the second batch in the first segment.
    let first_len =
        layout::LOG_OVERHEAD + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;

    // Without a checkpoint every sealed segment is scanned in full: a flipped value byte is
    // found by its CRC.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    fs::remove_file(copy.path().join(CHECKPOINT_FILE)).unwrap();
    let mut damaged = bytes.clone();
    damaged[first_len + 70] ^= 0x01;
    fs::write(copy.path().join(&sealed), &damaged).unwrap();
    match Log::open(copy.path(), config()).await {
        Err(LogError::Corrupt {
            segment,
            position,
            reason,
        }) => {
            assert_eq!(segment, copy.path().join(&sealed));
            assert_eq!(position, first_len as u64);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        fs::read(copy.path().join(&sealed)).unwrap(),
        damaged,
        "nothing is cut from a sealed segment"
    );

    // A sealed segment cut short is found by the tail check, checkpoint or not.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    cut(&copy.path().join(&sealed), bytes.len() as u64 - 5);
    match Log::open(copy.path(), config()).await {
        Err(LogError::Corrupt {
            segment, reason, ..
        }) => {
            assert_eq!(segment, copy.path().join(&sealed));
            assert!(reason.contains("cut off"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A damaged batch header met by a read is reported with its position.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    let mut damaged = bytes.clone();
    damaged[first_len + layout::MAGIC] = 7;
    fs::write(copy.path().join(&sealed), &damaged).unwrap();
    fs::remove_file(copy.path().join(sealed.replace(".log", ".index"))).unwrap();
    let err = Log::open(copy.path(), config()).await.unwrap_err();
    assert!(
        matches!(err, LogError::Corrupt { position, .. } if position == first_len as u64),
        "{err}"
    );
}

#[tokio::test]
async fn leftovers_of_interrupted_operations_are_removed() {
    let f = fixture().await;
    let copy = tempfile::tempdir().unwrap();
    copy_dir(f.dir.path(), copy.path());
    fs::write(
        copy.path().join("00000000000000000000.log.tmp"),
        b"half a rewrite",
    )
    .unwrap();
    fs::write(copy.path().join("00000000000000999999.index"), [0u8; 8]).unwrap();
    fs::write(
        copy.path().join("00000000000000999999.timeindex"),
        [0u8; 12],
    )
    .unwrap();
    let log = Log::open(copy.path(), config()).await.unwrap();
    assert_eq!(read_all(&log), f.expected);
    log.close().await.unwrap();
    assert!(!copy.path().join("00000000000000000000.log.tmp").exists());
    assert!(!copy.path().join("00000000000000999999.index").exists());
    assert!(!copy.path().join("00000000000000999999.timeindex").exists());
}

#[tokio::test]
async fn an_empty_log_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(0), Offset(0))
    );
    assert!(log.read_blocking(Offset(0), 100).unwrap().is_empty());
    assert_eq!(append(&log, "a", 1, now_ms()).await.base_offset, Offset(0));
    log.close().await.unwrap();
}
