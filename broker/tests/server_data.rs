//! The broker over gRPC: produce and fetch, long polls, offsets, restarts, retention.

mod server_common;

use std::time::{Duration, Instant};

use brook_proto::v1::*;
use server_common::*;

#[tokio::test]
async fn produce_and_fetch_round_trip_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "orders", 4, &[]).await;
    for p in 0..4 {
        for round in 0..3 {
            let vals = values(&format!("p{p}-r{round}"), 5);
            let out = produce(&mut c, "orders", p, &vals).await;
            assert_eq!(out.error_code(), ErrorCode::None, "{}", out.error_message);
            assert_eq!(out.base_offset, round * 5);
            assert_eq!(out.log_start_offset, 0);
            assert!(out.log_append_time_ms > 0);
        }
    }
    for p in 0..4 {
        let got = read_partition(&mut c, "orders", p, 0).await;
        let want: Vec<(i64, String)> = (0..3)
            .flat_map(|r| values(&format!("p{p}-r{r}"), 5))
            .enumerate()
            .map(|(i, v)| (i as i64, v))
            .collect();
        assert_eq!(got, want);
        // Reading from the middle starts at the batch that holds the offset.
        let mid = fetch(&mut c, "orders", p, 7).await;
        assert_eq!(decode(&mid.records)[0].0, 5);
        assert_eq!(mid.high_watermark, 15);
    }
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn several_batches_in_one_request_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    let mut records = batch(&values("a", 2)).to_vec();
    records.extend_from_slice(&batch(&values("b", 3)));
    let res = c
        .broker
        .produce(produce_request("t", 0, records.into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.topics[0].partitions[0].base_offset, 0);
    let got: Vec<String> = read_partition(&mut c, "t", 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(got, ["a-0", "a-1", "b-0", "b-1", "b-2"]);
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn acks_none_answers_without_an_offset_and_keeps_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    for i in 0..50 {
        let mut req = produce_request("t", 0, batch(&[format!("n{i}")]));
        req.acks = Acks::None as i32;
        let res = c.broker.produce(req).await.unwrap().into_inner();
        let p = &res.topics[0].partitions[0];
        assert_eq!(
            (p.error_code(), p.base_offset, p.log_append_time_ms),
            (ErrorCode::None, -1, -1)
        );
    }
    // An acks=all produce after them lands after all of them.
    assert_eq!(
        produce(&mut c, "t", 0, &values("last", 1))
            .await
            .base_offset,
        50
    );
    let got: Vec<String> = read_partition(&mut c, "t", 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    let mut want: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
    want.push("last-0".into());
    assert_eq!(got, want);
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn long_poll_wakes_on_append_and_times_out_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;

    // Nothing arrives: the fetch answers empty after max_wait.
    let started = Instant::now();
    let res = c
        .broker
        .fetch(fetch_request("t", 0, 0, 300, 1))
        .await
        .unwrap()
        .into_inner();
    let waited = started.elapsed();
    assert!(res.topics[0].partitions[0].records.is_empty());
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}, before max_wait"
    );

    // Data arrives 200 ms into a 20 s wait: the fetch answers with it, long before 20 s.
    let mut producer = clients(&b).await;
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let res = c
            .broker
            .fetch(fetch_request("t", 0, 0, 20_000, 1))
            .await
            .unwrap()
            .into_inner();
        (started.elapsed(), res)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut producer, "t", 0, &values("late", 2)).await;
    let (waited, res) = poll.await.unwrap();
    assert_eq!(
        decode(&res.topics[0].partitions[0].records),
        vec![(0, "late-0".into()), (1, "late-1".into())]
    );
    assert!(
        waited < Duration::from_secs(10),
        "the append did not wake the fetch ({waited:?})"
    );
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn concurrent_producers_to_one_partition_get_dense_unique_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    let mut tasks = Vec::new();
    for w in 0..6 {
        let mut c = clients(&b).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..40 {
                let out = produce(&mut c, "t", 0, &values(&format!("w{w}-{i}"), 3)).await;
                assert_eq!(out.error_code(), ErrorCode::None);
                got.push((out.base_offset, format!("w{w}-{i}")));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(
        all.iter().map(|a| a.0).collect::<Vec<_>>(),
        (0..720).step_by(3).collect::<Vec<i64>>()
    );
    let records = read_partition(&mut c, "t", 0, 0).await;
    for (base, prefix) in &all {
        for i in 0..3 {
            assert_eq!(
                records[(*base + i) as usize],
                (base + i, format!("{prefix}-{i}"))
            );
        }
    }
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn list_offsets_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 2, &[]).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    produce(&mut c, "t", 1, &values("x", 4)).await;
    let req = |spec: OffsetSpec, ts: i64| ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            topic: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 1,
                spec: spec as i32,
                timestamp: ts,
            }],
        }],
    };
    let one = |r: ListOffsetsResponse| r.topics[0].partitions[0].clone();
    let earliest = one(c
        .broker
        .list_offsets(req(OffsetSpec::Earliest, 0))
        .await
        .unwrap()
        .into_inner());
    let latest = one(c
        .broker
        .list_offsets(req(OffsetSpec::Latest, 0))
        .await
        .unwrap()
        .into_inner());
    let by_time = one(c
        .broker
        .list_offsets(req(OffsetSpec::Timestamp, before - 1000))
        .await
        .unwrap()
        .into_inner());
    let future = one(c
        .broker
        .list_offsets(req(OffsetSpec::Timestamp, before + 3_600_000))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(
        (
            earliest.offset,
            latest.offset,
            by_time.offset,
            future.offset
        ),
        (0, 4, 0, -1)
    );
    assert!(by_time.timestamp >= before);

    let md = c
        .broker
        .metadata(MetadataRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        md.brokers,
        vec![BrokerInfo {
            node_id: 1,
            address: b.grpc_addr.to_string()
        }]
    );
    assert_eq!(md.cluster_id.len(), 32);
    assert_eq!(md.topics.len(), 1);
    assert_eq!(md.topics[0].partitions.len(), 2);
    assert_eq!(md.topics[0].partitions[1].leader, 1);
    let md = c
        .broker
        .metadata(MetadataRequest {
            topics: vec!["nope".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        md.topics[0].error_code(),
        ErrorCode::UnknownTopicOrPartition
    );
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn topics_configs_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(
        &mut c,
        "keep",
        3,
        &[("retention.ms", "86400000"), ("flush.policy", "always")],
    )
    .await;
    for p in 0..3 {
        produce(&mut c, "keep", p, &values(&format!("p{p}"), 10)).await;
    }
    let alter = TopicConfigChange {
        name: "keep".into(),
        set: [("segment.bytes".to_string(), "4096".to_string())].into(),
        delete: vec!["retention.ms".into()],
    };
    let res = c
        .admin
        .alter_configs(AlterConfigsRequest {
            topics: vec![alter],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.results[0].error_code(),
        ErrorCode::None,
        "{}",
        res.results[0].error_message
    );
    let cluster = b.context.registry.cluster_id().to_string();
    b.shutdown();
    b.wait().await.unwrap();

    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    assert_eq!(b.context.registry.cluster_id(), cluster);
    let d = c
        .admin
        .describe_topics(DescribeTopicsRequest {
            names: vec!["keep".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let t = &d.topics[0];
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.configs["segment.bytes"], "4096");
    assert_eq!(t.configs["flush.policy"], "always");
    assert_eq!(
        t.configs["retention.ms"], "604800000",
        "deleted key back at its default"
    );
    for p in 0..3 {
        let got: Vec<String> = read_partition(&mut c, "keep", p, 0)
            .await
            .into_iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(got, values(&format!("p{p}"), 10));
    }
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn segment_and_retention_settings_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention.check_interval_ms = 100;
    let b = start(cfg).await;
    let mut c = clients(&b).await;
    create_topic(
        &mut c,
        "small",
        1,
        &[("segment.bytes", "2048"), ("retention.bytes", "4096")],
    )
    .await;
    let big = "x".repeat(500);
    for i in 0..40 {
        produce(&mut c, "small", 0, &[format!("{i:03}{big}")]).await;
    }
    // Retention runs in the background every 100 ms; wait (bounded) for it.
    let mut described = None;
    for _ in 0..100 {
        let d = c
            .admin
            .describe_topics(DescribeTopicsRequest {
                names: vec!["small".into()],
            })
            .await
            .unwrap()
            .into_inner();
        let p = d.topics[0].partitions[0];
        if p.log_start_offset > 0 && p.size_bytes < 4096 + 2048 {
            described = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = described.expect("retention deleted old segments within 5 s");
    assert_eq!(p.log_end_offset, 40);
    assert!(
        p.size_bytes >= 4096 && p.size_bytes < 4096 + 2048,
        "size {} kept between retention.bytes and one segment more",
        p.size_bytes
    );
    assert!(p.segments >= 2);
    let kept = read_partition(&mut c, "small", 0, p.log_start_offset).await;
    assert_eq!(kept.len() as i64, 40 - p.log_start_offset);
    let gone = fetch(&mut c, "small", 0, 0).await;
    assert_eq!(gone.error_code(), ErrorCode::OffsetOutOfRange);
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn health_ready_and_metrics_over_http_and_grpc_health() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "m", 1, &[]).await;
    produce(&mut c, "m", 0, &values("v", 3)).await;
    fetch(&mut c, "m", 0, 0).await;
    assert_eq!(
        http_get(b.http_addr, "/health").await,
        (200, "ok\n".to_string())
    );
    assert_eq!(
        http_get(b.http_addr, "/ready").await,
        (200, "ready\n".to_string())
    );
    let (status, body) = http_get(b.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "brook_messages_in_total{topic=\"m\"}",
        "brook_bytes_in_total{topic=\"m\"}",
        "brook_bytes_out_total{topic=\"m\"}",
        "brook_log_end_offset{topic=\"m\",partition=\"0\"} 3",
        "brook_produce_request_seconds_bucket",
        "brook_fetch_request_seconds_bucket",
        "brook_connections",
    ] {
        assert!(body.contains(needle), "metrics lack {needle}:\n{body}");
    }
    assert_eq!(http_get(b.http_addr, "/nope").await.0, 404);

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", b.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let res = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "brook.v1.Broker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_a_waiting_long_poll_and_closes_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    produce(&mut c, "t", 0, &values("a", 1)).await;
    let poll =
        tokio::spawn(async move { c.broker.fetch(fetch_request("t", 0, 1, 30_000, 1)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    b.shutdown();
    b.wait().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let res = poll.await.unwrap().unwrap().into_inner();
    assert!(res.topics[0].partitions[0].records.is_empty());
    // The lock is released: the same directory opens again.
    let b = start(config(dir.path())).await;
    b.shutdown();
    b.wait().await.unwrap();
}
