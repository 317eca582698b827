//! The batching consumer against a real broker: batch sizes, per-partition order, bounded
//! concurrency, commit only after the handler succeeded.

mod groups_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brook_client::Connection;
use brook_client::consumer::{
    BatchConfig, BatchRunError, GroupConsumer, TopicPartition, run_batches,
};
use parking_lot::Mutex;

async fn setup(conn: &Connection, partitions: u32, per_partition: usize) {
    groups_common::setup(conn, partitions, per_partition, |_, i| format!("{i}")).await;
}

fn member(conn: &Connection) -> GroupConsumer {
    groups_common::member(conn, "batches", None)
}

#[derive(Debug, thiserror::Error)]
#[error("boom")]
struct Boom;

type Log = Arc<Mutex<BTreeMap<u32, Vec<i64>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_partition_order_run_in_parallel_and_commit_after_success() {
    let (b, _data) = groups_common::broker().await;
    let conn = Connection::connect(&b.grpc_addr.to_string()).await.unwrap();
    setup(&conn, 4, 250).await;
    let mut m = member(&conn);
    let seen: Log = Arc::default();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (seen, running, peak, sizes) =
            (seen.clone(), running.clone(), peak.clone(), sizes.clone());
        move |tp: TopicPartition, records: Vec<brook_client::ConsumerRecord>| {
            let (seen, running, peak, sizes) =
                (seen.clone(), running.clone(), peak.clone(), sizes.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                sizes.lock().push(records.len());
                tokio::time::sleep(Duration::from_millis(30)).await;
                seen.lock()
                    .entry(tp.partition)
                    .or_default()
                    .extend(records.iter().map(|r| r.offset.0));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), Boom>(())
            }
        }
    };
    let total = seen.clone();
    let stop = async move {
        while total.lock().values().map(Vec::len).sum::<usize>() < 1000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let config = BatchConfig {
        max_records: 100,
        max_wait: Duration::from_millis(50),
        workers: 2,
    };
    let handled = tokio::time::timeout(
        Duration::from_secs(30),
        run_batches(&mut m, config, handler, stop),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(handled, 1000);
    let seen = seen.lock().clone();
    for p in 0..4 {
        assert_eq!(
            seen[&p],
            (0..250).collect::<Vec<i64>>(),
            "partition {p} in order, each record once"
        );
    }
    assert!(
        sizes.lock().iter().all(|&n| (1..=100).contains(&n)),
        "batches of at most 100: {:?}",
        sizes.lock()
    );
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "at most two handlers at once, and the pool was used"
    );
    // Everything handled was committed.
    let offsets = conn
        .groups()
        .fetch_offsets(brook_proto::v1::FetchOffsetsRequest {
            group_id: "batches".into(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        offsets.offsets.iter().map(|o| o.offset).collect::<Vec<_>>(),
        [250, 250, 250, 250]
    );
    m.close().await.unwrap();
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_not_committed_and_is_delivered_again() {
    let (b, _data) = groups_common::broker().await;
    let conn = Connection::connect(&b.grpc_addr.to_string()).await.unwrap();
    setup(&conn, 1, 30).await;
    let mut m = member(&conn);
    let config = BatchConfig {
        max_records: 10,
        max_wait: Duration::from_millis(20),
        workers: 1,
    };
    // Fails on the batch that holds offset 20.
    let handler = |_tp: TopicPartition, records: Vec<brook_client::ConsumerRecord>| async move {
        if records.iter().any(|r| r.offset.0 == 20) {
            Err(Boom)
        } else {
            Ok(())
        }
    };
    let err = run_batches(&mut m, config, handler, std::future::pending())
        .await
        .unwrap_err();
    let BatchRunError::Handler {
        partition,
        first_offset,
        ..
    } = err
    else {
        panic!("expected a handler error")
    };
    assert_eq!((partition.partition, first_offset), (0, 20));
    m.close().await.unwrap();
    // The next member resumes at 20: the failed batch is delivered again.
    let mut next = member(&conn);
    let firsts = Arc::new(Mutex::new(Vec::new()));
    let f = firsts.clone();
    let handler = move |_tp: TopicPartition, records: Vec<brook_client::ConsumerRecord>| {
        let f = f.clone();
        async move {
            f.lock().extend(records.iter().map(|r| r.offset.0));
            Ok::<(), Boom>(())
        }
    };
    let watch = firsts.clone();
    let stop = async move {
        while watch.lock().len() < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    run_batches(&mut next, config, handler, stop).await.unwrap();
    assert_eq!(*firsts.lock(), (20..30).collect::<Vec<i64>>());
    next.close().await.unwrap();
    b.shutdown();
    b.wait().await.unwrap();
}
