//! The `Groups` gRPC service: heartbeats, offset commits and fetches, listing and describing
//! groups. Domain types at the edge: requests become `Heartbeat`/`TopicPartition` values and
//! back.

use crate::security::Caller;
use crate::security::acl::{Operation, ResourceType};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::groups_server::Groups;
use brook_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::group::offset_store::partition_for_group;
use crate::group::{
    CommitError, Committed, GroupError, Heartbeat, OFFSETS_TOPIC, OffsetStoreError, TopicPartition,
};
use crate::server::BrokerContext;

/// Implements `brook.v1.Groups`.
#[derive(Debug, Clone)]
pub struct GroupsService {
    ctx: Arc<BrokerContext>,
}

impl GroupsService {
    pub(crate) fn new(ctx: Arc<BrokerContext>) -> Self {
        GroupsService { ctx }
    }
}

fn to_set(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.clone(), p))
        })
        .collect()
}

fn to_wire(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in set {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(t, partitions)| TopicPartitions {
            topic: t.to_string(),
            partitions,
        })
        .collect()
}

fn error_code(err: &CommitError) -> ErrorCode {
    match err {
        CommitError::Member(GroupError::UnknownMember { .. }) => ErrorCode::UnknownMemberId,
        CommitError::Member(GroupError::FencedMemberEpoch { .. }) => ErrorCode::FencedMemberEpoch,
        CommitError::Member(GroupError::Invalid { .. }) => ErrorCode::InvalidRequest,
        CommitError::Invalid(_) => ErrorCode::InvalidGroupId,
        CommitError::NotCoordinator(_) => ErrorCode::NotCoordinator,
        CommitError::TimedOut(_) => ErrorCode::RequestTimedOut,
        CommitError::Store(OffsetStoreError::Replication { code, .. }) => match code {
            // The leadership moved while the commit was on its way: so did the coordinator.
            ErrorCode::NotLeader | ErrorCode::FencedLeaderEpoch => ErrorCode::NotCoordinator,
            code => *code,
        },
        CommitError::Store(_) => ErrorCode::StorageError,
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let caller = Caller::of(&request);
        let group = request.into_inner().group_id;
        let group_name = [group.as_str()];
        let describe = Operation::Describe;
        (self.ctx).authorize(
            &caller,
            "FindCoordinator",
            describe,
            ResourceType::Group,
            group_name,
        )?;
        let fail = |code: ErrorCode, message: String| FindCoordinatorResponse {
            error_code: code as i32,
            error_message: message,
            node_id: -1,
            address: String::new(),
        };
        if let Err(message) = crate::group::check_group_id(&group) {
            return Ok(Response::new(fail(ErrorCode::InvalidGroupId, message)));
        }
        let Some(cluster) = &self.ctx.cluster else {
            return Ok(Response::new(FindCoordinatorResponse {
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
                node_id: self.ctx.config.server.node_id,
                address: self.ctx.grpc_addr.to_string(),
            }));
        };
        let p = partition_for_group(&group);
        if let Err(e) = cluster.ensure_offsets_topic().await {
            return Ok(Response::new(fail(
                ErrorCode::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC} cannot be made yet: {e}"),
            )));
        }
        let leader = cluster.controller().with_metadata(|m| {
            let leader = m
                .topics
                .get(OFFSETS_TOPIC)?
                .partitions
                .get(p as usize)?
                .leader?;
            Some((leader, m.brokers.get(&leader)?.address.clone()))
        });
        Ok(Response::new(match leader {
            Some((node_id, address)) => FindCoordinatorResponse {
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
                node_id,
                address,
            },
            None => fail(
                ErrorCode::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC}-{p}, which keeps group {group:?}, has no leader now"),
            ),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<GroupHeartbeatRequest>,
    ) -> Result<Response<GroupHeartbeatResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        // Joining and staying in a group is Read on it; subscribing, Describe on each topic.
        let group = [req.group_id.as_str()];
        (self.ctx).authorize(
            &caller,
            "Heartbeat",
            Operation::Read,
            ResourceType::Group,
            group,
        )?;
        if let Some(subscription) = &req.subscription {
            let topics = subscription.topics.iter().map(String::as_str);
            let describe = Operation::Describe;
            (self.ctx).authorize(&caller, "Heartbeat", describe, ResourceType::Topic, topics)?;
        }
        let hb = Heartbeat {
            member_id: Some(req.member_id.clone()).filter(|m| !m.is_empty()),
            member_epoch: req.member_epoch,
            topics: req.subscription.map(|s| s.topics.into_iter().collect()),
            owned: req.owned.map(|o| to_set(&o.topics)),
        };
        let out = match self
            .ctx
            .coordinator
            .heartbeat(&self.ctx.registry, &req.group_id, hb)
            .await
        {
            Ok(r) => GroupHeartbeatResponse {
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
                member_id: r.member_id,
                member_epoch: r.member_epoch,
                heartbeat_interval_ms: r.heartbeat_interval.as_millis() as u32,
                assignment: to_wire(&r.assignment),
            },
            Err(e) => GroupHeartbeatResponse {
                error_code: error_code(&e) as i32,
                error_message: e.to_string(),
                member_id: req.member_id,
                member_epoch: -1,
                heartbeat_interval_ms: 0,
                assignment: Vec::new(),
            },
        };
        Ok(Response::new(out))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let group = [req.group_id.as_str()];
        let read = Operation::Read;
        (self.ctx).authorize(&caller, "CommitOffsets", read, ResourceType::Group, group)?;
        let topics = req.offsets.iter().map(|o| o.topic.as_str());
        (self.ctx).authorize(&caller, "CommitOffsets", read, ResourceType::Topic, topics)?;
        let offsets = req
            .offsets
            .into_iter()
            .map(|o| {
                (
                    TopicPartition::new(o.topic, o.partition),
                    Committed {
                        offset: o.offset,
                        metadata: o.metadata,
                    },
                )
            })
            .collect();
        let result = self
            .ctx
            .coordinator
            .commit(
                &self.ctx.registry,
                &req.group_id,
                &req.member_id,
                req.member_epoch,
                offsets,
            )
            .await;
        Ok(Response::new(match result {
            Ok(()) => CommitOffsetsResponse {
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
            },
            Err(e) => CommitOffsetsResponse {
                error_code: error_code(&e) as i32,
                error_message: e.to_string(),
            },
        }))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let group = [req.group_id.as_str()];
        let describe = Operation::Describe;
        (self.ctx).authorize(
            &caller,
            "FetchOffsets",
            describe,
            ResourceType::Group,
            group,
        )?;
        let topics = req.partitions.iter().map(|p| p.topic.as_str());
        (self.ctx).authorize(
            &caller,
            "FetchOffsets",
            describe,
            ResourceType::Topic,
            topics,
        )?;
        let only: Vec<TopicPartition> = to_set(&req.partitions).into_iter().collect();
        let only = (!only.is_empty()).then_some(only.as_slice());
        let committed = (self.ctx.coordinator)
            .committed(&self.ctx.registry, &req.group_id, only)
            .await;
        let mut out = match committed {
            Ok(committed) => FetchOffsetsResponse {
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
                offsets: committed
                    .into_iter()
                    .map(|(tp, c)| PartitionOffset {
                        topic: tp.topic,
                        partition: tp.partition,
                        offset: c.offset,
                        metadata: c.metadata,
                    })
                    .collect(),
            },
            Err(e) => FetchOffsetsResponse {
                error_code: error_code(&e) as i32,
                error_message: e.to_string(),
                offsets: Vec::new(),
            },
        };
        // Asked for every committed offset: only those of topics the caller may describe.
        out.offsets =
            (self.ctx).describable(&caller, ResourceType::Topic, out.offsets, |o| &o.topic);
        Ok(Response::new(out))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let caller = Caller::of(&request);
        let groups = self
            .ctx
            .coordinator
            .list(&self.ctx.registry)
            .await
            .into_iter()
            .map(|(group_id, members)| GroupListing { group_id, members })
            .collect();
        let groups = (self.ctx).describable(&caller, ResourceType::Group, groups, |g| &g.group_id);
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let caller = Caller::of(&request);
        let group_id = request.into_inner().group_id;
        let group = [group_id.as_str()];
        let describe = Operation::Describe;
        (self.ctx).authorize(
            &caller,
            "DescribeGroup",
            describe,
            ResourceType::Group,
            group,
        )?;
        let described = (self.ctx.coordinator)
            .describe(&self.ctx.registry, &group_id)
            .await;
        let d = match described {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Ok(Response::new(DescribeGroupResponse {
                    error_code: ErrorCode::GroupIdNotFound as i32,
                    error_message: format!(
                        "group {group_id:?} has no members and no committed offsets"
                    ),
                    group_id,
                    ..Default::default()
                }));
            }
            Err(e) => {
                return Ok(Response::new(DescribeGroupResponse {
                    error_code: error_code(&e) as i32,
                    error_message: e.to_string(),
                    group_id,
                    ..Default::default()
                }));
            }
        };
        let members = d
            .members
            .into_iter()
            .map(
                |(member_id, member_epoch, topics, assignment)| GroupMember {
                    member_id,
                    member_epoch,
                    topics: topics.into_iter().collect(),
                    assignment: to_wire(&assignment),
                },
            )
            .collect();
        let offsets = d
            .committed
            .into_iter()
            .map(|(tp, c)| {
                let hw = self
                    .ctx
                    .registry
                    .partition(&tp.topic, tp.partition)
                    .map_or(-1, |p| p.high_watermark().0);
                PartitionLag {
                    lag: if hw >= 0 { (hw - c.offset).max(0) } else { -1 },
                    topic: tp.topic,
                    partition: tp.partition,
                    committed_offset: c.offset,
                    high_watermark: hw,
                }
            })
            .collect();
        Ok(Response::new(DescribeGroupResponse {
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            group_id,
            group_epoch: d.epoch,
            members,
            offsets,
        }))
    }
}

/// How often the coordinator looks for members past their timeouts.
pub(crate) const EXPIRY_INTERVAL: Duration = Duration::from_millis(500);
