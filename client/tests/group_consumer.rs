//! Group members against a real in-process broker: disjoint assignments covering every
//! record, hand-over at the committed offset, and the exact duplicate window of a member that
//! leaves without committing.

mod groups_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brook_broker::config::BrokerConfig;
use brook_client::Connection;
use brook_client::consumer::GroupConsumer;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

fn value(p: u32, i: usize) -> String {
    format!("p{p}-{i}")
}

async fn setup(conn: &Connection, partitions: u32, per_partition: usize) {
    groups_common::setup(conn, partitions, per_partition, value).await;
}

async fn produce(conn: &Connection, p: u32, range: std::ops::Range<usize>) {
    groups_common::produce(conn, p, range, value).await;
}

fn member(conn: &Connection, auto_commit: Option<Duration>) -> GroupConsumer {
    groups_common::member(conn, "g", auto_commit)
}

type Seen = Arc<Mutex<BTreeMap<String, usize>>>;

/// Polls `m` until `seen` holds `total` distinct values (or 20 s pass).
async fn run(mut m: GroupConsumer, seen: Seen, total: usize) -> GroupConsumer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline && seen.lock().len() < total {
        for r in m.poll(Duration::from_millis(100)).await.unwrap() {
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            *seen.lock().entry(v).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_see_every_record_exactly_once() {
    let (b, _data) = groups_common::broker().await;
    let conn = Connection::connect(&b.grpc_addr.to_string()).await.unwrap();
    setup(&conn, 6, 200).await;
    let seen: Seen = Arc::default();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(run(
                member(&conn, Some(Duration::from_millis(50))),
                seen.clone(),
                1200,
            ))
        })
        .collect();
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.unwrap());
    }
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1200, "every record");
    // Revocations commit before releasing, so nothing is delivered twice here.
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // Once stable, the three members hold disjoint sets of two partitions.
    for _ in 0..40 {
        for m in members.iter_mut() {
            m.poll(Duration::from_millis(20)).await.unwrap();
        }
        if members.iter().all(|m| m.assignment().len() == 2) {
            break;
        }
    }
    let mut all: Vec<_> = members.iter().flat_map(|m| m.assignment()).collect();
    assert_eq!(
        members
            .iter()
            .map(|m| m.assignment().len())
            .collect::<Vec<_>>(),
        [2, 2, 2]
    );
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6);
    for m in members {
        m.close().await.unwrap();
    }
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_without_commit_is_replayed_from_the_committed_offset_exactly() {
    let (b, _data) = groups_common::broker().await;
    let conn = Connection::connect(&b.grpc_addr.to_string()).await.unwrap();
    setup(&conn, 1, 50).await;
    // A reads the first 50 and commits them, then reads 30 more and leaves without
    // committing (a crash after processing, as far as the group can tell).
    let seen: Seen = Arc::default();
    let mut a = run(member(&conn, None), seen.clone(), 50).await;
    // An asynchronous commit, awaited here only so the test knows it landed.
    a.commit_async().await.unwrap().await.unwrap().unwrap();
    produce(&conn, 0, 50..80).await;
    let mut a = run(a, seen.clone(), 80).await;
    assert_eq!(seen.lock().len(), 80);
    // Leave without committing: close() commits only with auto-commit on.
    let leave_seen = seen.lock().clone();
    a.poll(Duration::from_millis(10)).await.unwrap();
    a.close().await.unwrap();
    produce(&conn, 0, 80..100).await;
    // B takes the partition over at the committed offset 50: it sees 50..100, so exactly the
    // 30 uncommitted records are delivered twice.
    let b_seen: Seen = Arc::default();
    let bm = run(
        member(&conn, Some(Duration::from_millis(50))),
        b_seen.clone(),
        50,
    )
    .await;
    let b_seen = b_seen.lock().clone();
    let expected: Vec<String> = (50..100).map(|i| format!("p0-{i}")).collect();
    assert_eq!(b_seen.keys().cloned().collect::<Vec<_>>().len(), 50);
    for v in &expected {
        assert_eq!(b_seen.get(v), Some(&1), "{v}");
    }
    let duplicates = b_seen
        .keys()
        .filter(|v| leave_seen.contains_key(*v))
        .count();
    assert_eq!(duplicates, 30);
    bm.close().await.unwrap();
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_evicted_after_the_session_timeout_and_replayed_exactly() {
    let data = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::default();
    config.server.data_dir = data.path().to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http_listen = "127.0.0.1:0".parse().unwrap();
    config.groups.session_timeout_ms = 1000;
    config.groups.heartbeat_interval_ms = 100;
    let b = brook_broker::server::start(config, CancellationToken::new())
        .await
        .unwrap();
    let conn = Connection::connect(&b.grpc_addr.to_string()).await.unwrap();
    setup(&conn, 2, 20).await;
    // A reads everything, commits after the first 40 records, then crashes (dropped without
    // closing: it stops heartbeating) having read 40 more.
    let seen: Seen = Arc::default();
    let mut a = run(member(&conn, None), seen.clone(), 40).await;
    a.commit().await.unwrap();
    let committed = seen.lock().clone();
    assert_eq!(committed.len(), 40);
    produce(&conn, 0, 20..40).await;
    produce(&conn, 1, 20..40).await;
    let a = run(a, seen.clone(), 80).await;
    let read_by_a = seen.lock().clone();
    assert_eq!(read_by_a.len(), 80);
    let crashed_at = tokio::time::Instant::now();
    drop(a);
    // B joins at once but gets A's partitions only after A's session timed out, and resumes at
    // the committed offsets: the records A read after its commit are delivered again, exactly.
    let b_seen: Seen = Arc::default();
    let bm = run(
        member(&conn, Some(Duration::from_millis(50))),
        b_seen.clone(),
        80 - committed.len(),
    )
    .await;
    // A's last heartbeat was at most one interval (100 ms) before the crash.
    assert!(
        crashed_at.elapsed() >= Duration::from_millis(900),
        "partitions moved before the session timeout"
    );
    let b_seen = b_seen.lock().clone();
    let expected: Vec<&String> = read_by_a
        .keys()
        .filter(|v| !committed.contains_key(*v))
        .collect();
    assert_eq!(b_seen.len(), expected.len());
    for v in expected {
        assert_eq!(b_seen.get(v), Some(&1), "{v} replayed once");
    }
    bm.close().await.unwrap();
    b.shutdown();
    b.wait().await.unwrap();
}
