//! Every bad-input case gets its own error while the broker and other clients keep working.

mod server_common;

use std::collections::HashMap;

use brook_proto::v1::*;
use bytes::Bytes;
use server_common::*;

async fn still_works(c: &mut Clients) {
    let out = produce(c, "ok", 0, &values("still", 1)).await;
    assert_eq!(out.error_code(), ErrorCode::None, "{}", out.error_message);
    let got = read_partition(c, "ok", 0, out.base_offset).await;
    assert_eq!(got, vec![(out.base_offset, "still-0".to_string())]);
}

#[tokio::test]
async fn bad_produce_and_fetch_requests_get_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.max_request_bytes = 64 * 1024;
    cfg.log.max_batch_bytes = 16 * 1024;
    let b = start(cfg).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "ok", 2, &[("max.message.bytes", "2048")]).await;

    let out = produce(&mut c, "nope", 0, &values("x", 1)).await;
    assert_eq!(
        (out.error_code(), out.error_message.as_str()),
        (
            ErrorCode::UnknownTopicOrPartition,
            "topic \"nope\" partition 0 does not exist"
        )
    );
    let out = produce(&mut c, "ok", 2, &values("x", 1)).await;
    assert_eq!(
        (out.error_code(), out.error_message.as_str()),
        (
            ErrorCode::UnknownTopicOrPartition,
            "topic \"ok\" partition 2 does not exist"
        )
    );

    // Over the topic's max.message.bytes.
    let big = batch(&["y".repeat(3000)]);
    let res = c
        .broker
        .produce(produce_request("ok", 0, big.clone()))
        .await
        .unwrap()
        .into_inner();
    let out = &res.topics[0].partitions[0];
    assert_eq!(out.error_code(), ErrorCode::BatchTooLarge);
    assert_eq!(
        out.error_message,
        format!(
            "batch 0: invalid batch: batch of {} bytes exceeds the limit of 2048 bytes",
            big.len()
        )
    );
    assert_eq!(out.base_offset, -1);

    // A flipped byte: CRC mismatch.
    let mut bad = batch(&values("z", 2)).to_vec();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let res = c
        .broker
        .produce(produce_request("ok", 0, bad.into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.topics[0].partitions[0].error_code(),
        ErrorCode::CorruptBatch
    );
    assert!(
        res.topics[0].partitions[0]
            .error_message
            .contains("CRC mismatch")
    );

    // Garbage and an empty payload.
    for junk in [Bytes::from_static(b"not a batch at all"), Bytes::new()] {
        let res = c
            .broker
            .produce(produce_request("ok", 0, junk))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            res.topics[0].partitions[0].error_code(),
            ErrorCode::CorruptBatch
        );
    }

    // A good batch followed by a bad one: nothing of the request is appended.
    let mut mixed = batch(&values("good", 1)).to_vec();
    mixed.extend_from_slice(&big);
    let res = c
        .broker
        .produce(produce_request("ok", 0, mixed.into()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.topics[0].partitions[0].error_code(),
        ErrorCode::BatchTooLarge
    );
    assert!(read_partition(&mut c, "ok", 0, 0).await.is_empty());

    // A request over max_request_bytes is refused as a whole, with the sizes.
    let huge = batch(
        &(0..40)
            .map(|i| format!("{i}{}", "h".repeat(2000)))
            .collect::<Vec<_>>(),
    );
    let err = c
        .broker
        .produce(produce_request("ok", 1, huge))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    assert!(err.message().contains("65536"), "{}", err.message());

    // Fetch out of range, unknown partition.
    produce(&mut c, "ok", 1, &values("a", 3)).await;
    let f = fetch(&mut c, "ok", 1, 4).await;
    assert_eq!(f.error_code(), ErrorCode::OffsetOutOfRange);
    assert_eq!(
        f.error_message,
        "offset 4 is out of range: the log holds offsets 0 to 3 (exclusive)"
    );
    assert_eq!((f.high_watermark, f.log_start_offset), (3, 0));
    assert_eq!(
        fetch(&mut c, "ok", 1, -5).await.error_code(),
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        fetch(&mut c, "ok", 9, 0).await.error_code(),
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        fetch(&mut c, "ok", 1, 3).await.records.len(),
        0,
        "at the end: empty, no error"
    );

    still_works(&mut c).await;
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn bad_admin_requests_get_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "ok", 1, &[]).await;
    let create =
        |name: &str, partitions: u32, rf: u32, configs: &[(&str, &str)]| CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: rf,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            }],
            validate_only: false,
        };
    let cases: Vec<(CreateTopicsRequest, ErrorCode, &str)> = vec![
        (
            create("ok", 1, 1, &[]),
            ErrorCode::TopicAlreadyExists,
            "topic \"ok\" already exists",
        ),
        (
            create("bad/name", 1, 1, &[]),
            ErrorCode::InvalidTopic,
            "topic name \"bad/name\" contains '/' at position 3: only ASCII letters, digits, '.', '_' and '-' are allowed",
        ),
        (
            create("", 1, 1, &[]),
            ErrorCode::InvalidTopic,
            "topic name is empty",
        ),
        (
            create("p0", 0, 1, &[]),
            ErrorCode::InvalidPartitions,
            "partition count 0 for topic \"p0\" is out of range: must be between 1 and 10000",
        ),
        (
            create("p1", 10_001, 1, &[]),
            ErrorCode::InvalidPartitions,
            "partition count 10001 for topic \"p1\" is out of range: must be between 1 and 10000",
        ),
        (
            create("rf", 1, 3, &[]),
            ErrorCode::InvalidReplicationFactor,
            "replication factor 3 is out of range: this cluster has 1 broker(s)",
        ),
        (
            create("cfg", 1, 1, &[("segment.bytes", "10")]),
            ErrorCode::InvalidConfig,
            "topic config segment.bytes = 10 is out of range: must be between 1024 and 2147483648",
        ),
        (
            create("cfg", 1, 1, &[("flush.policy", "sometimes")]),
            ErrorCode::InvalidConfig,
            "",
        ),
        (
            create("cfg", 1, 1, &[("no.such.key", "1")]),
            ErrorCode::InvalidConfig,
            "",
        ),
    ];
    for (req, code, message) in cases {
        let name = req.topics[0].name.clone();
        let res = c.admin.create_topics(req).await.unwrap().into_inner();
        let r = &res.results[0];
        assert_eq!(r.error_code(), code, "{name}: {}", r.error_message);
        if !message.is_empty() {
            assert_eq!(r.error_message, message);
        }
    }
    // Nothing half-made: only "ok" exists.
    let list = c
        .admin
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.topics,
        vec![TopicListing {
            name: "ok".into(),
            partitions: 1
        }]
    );

    let res = c
        .admin
        .delete_topics(DeleteTopicsRequest {
            names: vec!["ghost".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.results[0].error_code(),
        ErrorCode::UnknownTopicOrPartition
    );
    let res = c
        .admin
        .create_partitions(CreatePartitionsRequest {
            topics: vec![PartitionCount {
                name: "ok".into(),
                total: 1,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            res.results[0].error_code(),
            res.results[0].error_message.as_str()
        ),
        (
            ErrorCode::InvalidPartitions,
            "topic \"ok\" has 1 partitions; the new total 1 must be larger"
        )
    );
    let change = TopicConfigChange {
        name: "ok".into(),
        set: [("retention.ms".to_string(), "soon".to_string())].into(),
        delete: vec![],
    };
    let res = c
        .admin
        .alter_configs(AlterConfigsRequest {
            topics: vec![change],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code(), ErrorCode::InvalidConfig);
    let change = TopicConfigChange {
        name: "ok".into(),
        set: HashMap::new(),
        delete: vec!["bogus".into()],
    };
    let res = c
        .admin
        .alter_configs(AlterConfigsRequest {
            topics: vec![change],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code(), ErrorCode::InvalidConfig);

    still_works(&mut c).await;
    b.shutdown();
    b.wait().await.unwrap();
}

/// A broker running alone has nothing to move partitions to: a reassignment is refused naming
/// the partition, and there are none to list.
#[tokio::test]
async fn a_standalone_broker_refuses_reassignments() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "ok", 1, &[]).await;
    let asked = |replicas: Vec<i32>, cancel| PartitionReassignment {
        topic: "ok".into(),
        partition: 0,
        replicas,
        cancel,
    };
    let res = c
        .admin
        .alter_partition_reassignments(AlterPartitionReassignmentsRequest {
            partitions: vec![asked(vec![1, 2], false), asked(vec![], true)],
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<(ErrorCode, &str)> = (res.results.iter())
        .map(|r| (r.error_code(), r.error_message.as_str()))
        .collect();
    let alone = "cannot reassign ok-0: this broker runs alone (no cluster.voters), so every partition has one replica";
    assert_eq!(
        outcomes,
        [
            (ErrorCode::InvalidRequest, alone),
            (ErrorCode::InvalidRequest, alone)
        ]
    );
    let listed = c
        .admin
        .list_partition_reassignments(ListPartitionReassignmentsRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.reassignments.is_empty());
    still_works(&mut c).await;
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn topic_lifecycle_delete_and_add_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "ok", 1, &[]).await;
    create_topic(&mut c, "gone", 2, &[]).await;
    produce(&mut c, "gone", 1, &values("g", 2)).await;
    let res = c
        .admin
        .delete_topics(DeleteTopicsRequest {
            names: vec!["gone".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code(), ErrorCode::None);
    assert!(!dir.path().join("gone-0").exists() && !dir.path().join("gone-1").exists());
    assert_eq!(
        produce(&mut c, "gone", 1, &values("g", 1))
            .await
            .error_code(),
        ErrorCode::UnknownTopicOrPartition
    );
    // The name can be used again, starting empty.
    create_topic(&mut c, "gone", 1, &[]).await;
    assert!(read_partition(&mut c, "gone", 0, 0).await.is_empty());

    let res = c
        .admin
        .create_partitions(CreatePartitionsRequest {
            topics: vec![PartitionCount {
                name: "ok".into(),
                total: 3,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code(), ErrorCode::None);
    assert_eq!(
        produce(&mut c, "ok", 2, &values("new", 1))
            .await
            .base_offset,
        0
    );
    b.shutdown();
    b.wait().await.unwrap();
    // Directories of no recorded topic (an interrupted delete) are removed at start.
    std::fs::create_dir(dir.path().join("orphan-0")).unwrap();
    let b = start(config(dir.path())).await;
    assert!(!dir.path().join("orphan-0").exists());
    assert_eq!(b.context.registry.topic("ok").unwrap().partitions.len(), 3);
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_the_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.max_connections = 2;
    let b = start(cfg).await;
    let mut first = clients(&b).await;
    create_topic(&mut first, "ok", 1, &[]).await;
    let mut second = clients(&b).await;
    produce(&mut second, "ok", 0, &values("two", 1)).await;
    let mut third = clients(&b).await;
    let err = third
        .broker
        .metadata(MetadataRequest { topics: vec![] })
        .await
        .unwrap_err();
    // The broker closes the connection at once; the client reports it closed.
    assert!(
        matches!(
            err.code(),
            tonic::Code::Cancelled | tonic::Code::Unavailable
        ),
        "{err:?}"
    );
    assert!(format!("{err:?}").contains("connection closed"), "{err:?}");
    still_works(&mut first).await;
    still_works(&mut second).await;
    drop(first);
    // A freed slot serves a new connection.
    let mut fourth = None;
    for _ in 0..50 {
        let mut c = clients(&b).await;
        if c.broker
            .metadata(MetadataRequest { topics: vec![] })
            .await
            .is_ok()
        {
            fourth = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    still_works(fourth.as_mut().expect("a slot freed within 2.5 s")).await;
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let err = brook_broker::server::start(
        config(dir.path()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("is locked by another process"),
        "{err}"
    );
    b.shutdown();
    b.wait().await.unwrap();
}
