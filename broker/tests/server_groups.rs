//! Consumer groups over gRPC: heartbeats converge to disjoint assignments, commits are fenced
//! by member epoch, committed offsets survive a restart, listing and describing with lag.

mod server_common;

use std::collections::BTreeSet;

use brook_proto::v1::groups_client::GroupsClient;
use brook_proto::v1::*;
use server_common::*;
use tonic::transport::Channel;

async fn groups(b: &brook_broker::server::RunningBroker) -> GroupsClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", b.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GroupsClient::new(channel)
}

#[derive(Debug, Clone, Default)]
struct Member {
    id: String,
    epoch: i32,
    owned: Vec<TopicPartitions>,
}

async fn beat(g: &mut GroupsClient<Channel>, m: &mut Member) -> GroupHeartbeatResponse {
    let res = g
        .heartbeat(GroupHeartbeatRequest {
            group_id: "g".into(),
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            subscription: Some(Subscription {
                topics: vec!["t".into()],
            }),
            owned: Some(OwnedPartitions {
                topics: m.owned.clone(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    if res.error_code() == ErrorCode::None {
        m.id = res.member_id.clone();
        m.epoch = res.member_epoch;
        m.owned = res.assignment.clone();
    }
    res
}

fn owned(m: &Member) -> BTreeSet<(String, u32)> {
    m.owned
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.clone(), p)))
        .collect()
}

#[tokio::test]
async fn members_converge_commits_are_fenced_and_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 6, &[]).await;
    let mut g = groups(&b).await;
    let mut members = [Member::default(), Member::default(), Member::default()];
    for _ in 0..6 {
        for m in members.iter_mut() {
            assert_eq!(beat(&mut g, m).await.error_code(), ErrorCode::None);
        }
    }
    let sets: Vec<_> = members.iter().map(owned).collect();
    assert_eq!(sets.iter().map(|s| s.len()).collect::<Vec<_>>(), [2, 2, 2]);
    let all: BTreeSet<_> = sets.iter().flatten().cloned().collect();
    assert_eq!(all, (0..6).map(|p| ("t".to_string(), p)).collect());

    // A member commits the partitions it holds; a partition it does not hold, or an epoch
    // from the future, is fenced.
    produce(&mut c, "t", 0, &values("x", 10)).await;
    let holder = members
        .iter()
        .position(|m| owned(m).contains(&("t".to_string(), 0)))
        .unwrap();
    let other = (holder + 1) % 3;
    let commit = |m: &Member, epoch: i32, offset: i64| CommitOffsetsRequest {
        group_id: "g".into(),
        member_id: m.id.clone(),
        member_epoch: epoch,
        offsets: vec![PartitionOffset {
            topic: "t".into(),
            partition: 0,
            offset,
            metadata: "meta".into(),
        }],
    };
    let ok = g
        .commit_offsets(commit(&members[holder], members[holder].epoch, 7))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.error_code(), ErrorCode::None, "{}", ok.error_message);
    let behind = g
        .commit_offsets(commit(&members[holder], members[holder].epoch - 1, 7))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        behind.error_code(),
        ErrorCode::None,
        "an epoch behind is fine for the holder"
    );
    let not_mine = g
        .commit_offsets(commit(&members[other], members[other].epoch, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(not_mine.error_code(), ErrorCode::FencedMemberEpoch);
    let future = g
        .commit_offsets(commit(&members[holder], members[holder].epoch + 5, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(future.error_code(), ErrorCode::FencedMemberEpoch);
    let ghost = Member {
        id: "nobody".into(),
        ..Default::default()
    };
    let unknown = g
        .commit_offsets(commit(&ghost, 3, 9))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.error_code(), ErrorCode::UnknownMemberId);
    let bad = g
        .commit_offsets(commit(&members[0], members[0].epoch, -5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad.error_code(), ErrorCode::InvalidGroupId);
    assert_eq!(
        bad.error_message,
        "commit for t-0: offset -5 must be >= 0 and metadata at most 4096 bytes (got 4)"
    );

    let d = g
        .describe_group(DescribeGroupRequest {
            group_id: "g".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.members.len(), 3);
    assert_eq!(
        d.offsets,
        vec![PartitionLag {
            topic: "t".into(),
            partition: 0,
            committed_offset: 7,
            high_watermark: 10,
            lag: 3
        }]
    );
    let list = g
        .list_groups(ListGroupsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.groups,
        vec![GroupListing {
            group_id: "g".into(),
            members: 3
        }]
    );
    // The internal topic stays out of topic listings.
    let topics = c
        .admin
        .list_topics(ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        topics
            .topics
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["t"]
    );

    b.shutdown();
    b.wait().await.unwrap();
    let b = start(config(dir.path())).await;
    let mut g = groups(&b).await;
    let fetched = g
        .fetch_offsets(FetchOffsetsRequest {
            group_id: "g".into(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        fetched.offsets,
        vec![PartitionOffset {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            metadata: "meta".into()
        }]
    );
    // Membership is not kept across a restart: the old member is told to rejoin.
    let res = beat(&mut g, &mut members[1]).await;
    assert_eq!(res.error_code(), ErrorCode::UnknownMemberId);
    let mut fresh = Member::default();
    for _ in 0..2 {
        beat(&mut g, &mut fresh).await;
    }
    assert_eq!(owned(&fresh).len(), 6);
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn bad_group_requests_get_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    let mut g = groups(&b).await;
    let res = g
        .heartbeat(GroupHeartbeatRequest {
            group_id: String::new(),
            member_id: String::new(),
            member_epoch: 0,
            subscription: Some(Subscription {
                topics: vec!["t".into()],
            }),
            owned: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (res.error_code(), res.error_message.as_str()),
        (
            ErrorCode::InvalidGroupId,
            "group id of 0 bytes is invalid: must be 1 to 4096 bytes"
        )
    );
    let res = g
        .heartbeat(GroupHeartbeatRequest {
            group_id: "g".into(),
            member_id: String::new(),
            member_epoch: 0,
            subscription: None,
            owned: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.error_code(), ErrorCode::InvalidRequest);
    let d = g
        .describe_group(DescribeGroupRequest {
            group_id: "none".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.error_code(), ErrorCode::GroupIdNotFound);
    let res = c
        .admin
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: "__mine".into(),
                partitions: 1,
                replication_factor: 1,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            res.results[0].error_code(),
            res.results[0].error_message.as_str()
        ),
        (ErrorCode::InvalidTopic, "topic name \"__mine\" is reserved")
    );
    b.shutdown();
    b.wait().await.unwrap();
}

#[tokio::test]
async fn find_coordinator_names_this_broker_standalone_and_checks_the_group_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut g = groups(&b).await;
    let res = g
        .find_coordinator(FindCoordinatorRequest {
            group_id: "orders-app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (res.error_code(), res.node_id, res.address),
        (ErrorCode::None, 1, b.grpc_addr.to_string())
    );
    for (group_id, message) in [
        (
            String::new(),
            "group id of 0 bytes is invalid: must be 1 to 4096 bytes",
        ),
        (
            "g".repeat(4097),
            "group id of 4097 bytes is invalid: must be 1 to 4096 bytes",
        ),
    ] {
        let res = g
            .find_coordinator(FindCoordinatorRequest { group_id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (res.error_code(), res.error_message.as_str(), res.node_id),
            (ErrorCode::InvalidGroupId, message, -1)
        );
        assert!(res.address.is_empty());
    }
    b.shutdown();
    b.wait().await.unwrap();
}
