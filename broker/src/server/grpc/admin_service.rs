//! The `Admin` gRPC service: topics and their configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use brook_proto::v1::admin_server::Admin;
use brook_proto::v1::*;
use tonic::{Request, Response, Status};

use super::error_code::admin_error_code;
use crate::log::topic_config::{replication_settings, topic_configs};
use crate::partition::{AdminError, TopicNameError, is_internal};
use crate::security::Caller;
use crate::security::acl::{Acl, CLUSTER, Operation, Pattern, ResourceType};
use crate::server::BrokerContext;

/// Implements `brook.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    ctx: Arc<BrokerContext>,
}

impl AdminService {
    pub(crate) fn new(ctx: Arc<BrokerContext>) -> Self {
        AdminService { ctx }
    }
}

fn result(name: String, outcome: Result<(), AdminError>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name,
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
        },
        Err(e) => {
            tracing::info!(topic = %name, cause = %e, "admin request refused");
            TopicResult {
                name,
                error_code: admin_error_code(&e) as i32,
                error_message: e.to_string(),
            }
        }
    }
}

/// Most ACLs one CreateAcls or DeleteAcls request takes.
pub const MAX_ACLS_PER_REQUEST: usize = 1000;

/// An ACL as the wire carries it, checked; the error names the field and the value.
pub fn acl_from_wire(binding: &AclBinding) -> Result<Acl, String> {
    let field = |name: &str, e: String| format!("{name} {e}");
    let resource_type =
        (binding.resource_type.parse::<ResourceType>()).map_err(|e| field("resource_type", e))?;
    let name = binding.resource_name.clone();
    let pattern = match binding.pattern_type.to_ascii_lowercase().as_str() {
        "" | "literal" => Pattern::Literal(name),
        "prefixed" => Pattern::Prefixed(name),
        other => {
            return Err(format!(
                "pattern_type {other:?} is not one of literal, prefixed"
            ));
        }
    };
    let acl = Acl {
        principal: binding.principal.clone(),
        resource_type,
        pattern,
        operation: (binding.operation.parse()).map_err(|e| field("operation", e))?,
        permission: (binding.permission.parse()).map_err(|e| field("permission", e))?,
    };
    acl.validate().map_err(|e| e.to_string())?;
    Ok(acl)
}

/// An ACL as the wire carries it.
pub fn acl_to_wire(acl: &Acl) -> AclBinding {
    let (pattern_type, resource_name) = match &acl.pattern {
        Pattern::Literal(name) => ("literal", name),
        Pattern::Prefixed(prefix) => ("prefixed", prefix),
    };
    AclBinding {
        principal: acl.principal.clone(),
        resource_type: acl.resource_type.to_string(),
        pattern_type: pattern_type.to_string(),
        resource_name: resource_name.clone(),
        operation: acl.operation.to_string(),
        permission: acl.permission.to_string(),
    }
}

/// The ACLs of a CreateAcls or DeleteAcls request, or INVALID_ARGUMENT naming the first bad
/// one by its position.
fn parse_acls(bindings: &[AclBinding]) -> Result<Vec<Acl>, Status> {
    if bindings.is_empty() {
        return Err(Status::invalid_argument("the request names no ACL"));
    }
    if bindings.len() > MAX_ACLS_PER_REQUEST {
        return Err(Status::invalid_argument(format!(
            "{} ACLs in one request; at most {MAX_ACLS_PER_REQUEST}",
            bindings.len()
        )));
    }
    (bindings.iter().enumerate())
        .map(|(i, b)| {
            acl_from_wire(b).map_err(|e| Status::invalid_argument(format!("ACL {i}: {e}")))
        })
        .collect()
}

fn acl_store_failed(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the ACL change was not made: {e}"))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_acls(
        &self,
        request: Request<CreateAclsRequest>,
    ) -> Result<Response<CreateAclsResponse>, Status> {
        let caller = Caller::of(&request);
        self.ctx
            .authorize_cluster(&caller, "CreateAcls", Operation::Admin)?;
        let acls = parse_acls(&request.get_ref().acls)?;
        match (&self.ctx.cluster, &self.ctx.local_acls) {
            (Some(cluster), _) => cluster
                .create_acls(acls.clone())
                .await
                .map_err(acl_store_failed)?,
            (None, Some(local)) => local.create(&acls).await.map_err(acl_store_failed)?,
            (None, None) => return Err(Status::internal("this broker has no ACL store")),
        }
        tracing::info!(principal = %caller.principal, count = acls.len(), "ACLs created");
        (self.ctx.authorizer).audit_change(&caller, "CreateAcls", "acls_created", &acls);
        Ok(Response::new(CreateAclsResponse {}))
    }

    async fn delete_acls(
        &self,
        request: Request<DeleteAclsRequest>,
    ) -> Result<Response<DeleteAclsResponse>, Status> {
        let caller = Caller::of(&request);
        self.ctx
            .authorize_cluster(&caller, "DeleteAcls", Operation::Admin)?;
        let acls = parse_acls(&request.get_ref().acls)?;
        let deleted = match (&self.ctx.cluster, &self.ctx.local_acls) {
            (Some(cluster), _) => cluster.delete_acls(acls).await.map_err(acl_store_failed)?,
            (None, Some(local)) => local.delete(&acls).await.map_err(acl_store_failed)?,
            (None, None) => return Err(Status::internal("this broker has no ACL store")),
        };
        tracing::info!(principal = %caller.principal, count = deleted.len(), "ACLs deleted");
        (self.ctx.authorizer).audit_change(&caller, "DeleteAcls", "acls_deleted", &deleted);
        Ok(Response::new(DeleteAclsResponse {
            deleted: deleted.iter().map(acl_to_wire).collect(),
        }))
    }

    async fn describe_acls(
        &self,
        request: Request<DescribeAclsRequest>,
    ) -> Result<Response<DescribeAclsResponse>, Status> {
        let caller = Caller::of(&request);
        self.ctx
            .authorize_cluster(&caller, "DescribeAcls", Operation::Describe)?;
        let filter = request.into_inner();
        let resource_type = match filter.resource_type.as_str() {
            "" => None,
            given => Some(
                given
                    .parse::<ResourceType>()
                    .map_err(|e| Status::invalid_argument(format!("resource_type {e}")))?,
            ),
        };
        if !filter.resource_name.is_empty() && resource_type.is_none() {
            return Err(Status::invalid_argument(format!(
                "resource_name {:?} needs a resource_type",
                filter.resource_name
            )));
        }
        let acls = self.ctx.with_acls(|acls| {
            (acls.iter())
                .filter(|a| filter.principal.is_empty() || a.principal == filter.principal)
                .filter(|a| resource_type.is_none_or(|t| a.resource_type == t))
                .filter(|a| {
                    filter.resource_name.is_empty() || a.pattern.matches(&filter.resource_name)
                })
                .map(acl_to_wire)
                .collect()
        });
        Ok(Response::new(DescribeAclsResponse { acls }))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        // Create on the cluster covers every topic; otherwise Create on each named one.
        let create = Operation::Create;
        if !(self.ctx).permits(&caller, create, ResourceType::Cluster, CLUSTER) {
            let names = req.topics.iter().map(|t| t.name.as_str());
            (self.ctx).authorize(&caller, "CreateTopics", create, ResourceType::Topic, names)?;
        }
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let configs: BTreeMap<String, String> = t.configs.into_iter().collect();
            let registry = &self.ctx.registry;
            let outcome = match &self.ctx.cluster {
                Some(cluster) => {
                    cluster
                        .create_topic(
                            registry,
                            &t.name,
                            t.partitions,
                            t.replication_factor,
                            configs,
                            req.validate_only,
                        )
                        .await
                }
                None => {
                    registry
                        .create_topic(
                            &t.name,
                            t.partitions,
                            t.replication_factor,
                            configs,
                            req.validate_only,
                        )
                        .await
                }
            };
            results.push(result(t.name, outcome));
        }
        Ok(Response::new(CreateTopicsResponse { results }))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let caller = Caller::of(&request);
        let names = request.into_inner().names;
        let delete = Operation::Delete;
        let topics = names.iter().map(String::as_str);
        (self.ctx).authorize(&caller, "DeleteTopics", delete, ResourceType::Topic, topics)?;
        let mut results = Vec::new();
        for name in names {
            // The broker's own topics (committed offsets) are not the users' to delete.
            let outcome = match &self.ctx.cluster {
                _ if is_internal(&name) => Err(AdminError::InvalidName(TopicNameError::Reserved {
                    name: name.clone(),
                })),
                Some(cluster) => cluster.delete_topic(&self.ctx.registry, &name).await,
                None => self.ctx.registry.delete_topic(&name).await,
            };
            results.push(result(name, outcome));
        }
        Ok(Response::new(DeleteTopicsResponse { results }))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let caller = Caller::of(&request);
        let topics = self
            .ctx
            .registry
            .topics()
            .values()
            .filter(|t| !is_internal(&t.name))
            .map(|t| TopicListing {
                name: t.name.clone(),
                partitions: t.meta.partitions,
            })
            .collect();
        let topics = (self.ctx).describable(&caller, ResourceType::Topic, topics, |t| &t.name);
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn describe_topics(
        &self,
        request: Request<DescribeTopicsRequest>,
    ) -> Result<Response<DescribeTopicsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let all = self.ctx.registry.topics();
        let names: Vec<String> = if req.names.is_empty() {
            let listed = all.keys().filter(|n| !is_internal(n)).cloned().collect();
            (self.ctx).describable(&caller, ResourceType::Topic, listed, |n| n)
        } else {
            let named = req.names.iter().map(String::as_str);
            let describe = Operation::Describe;
            (self.ctx).authorize(
                &caller,
                "DescribeTopics",
                describe,
                ResourceType::Topic,
                named,
            )?;
            req.names
        };
        let node = self.ctx.config.server.node_id;
        let topics = names
            .into_iter()
            .map(|name| match all.get(&name) {
                Some(t) => TopicDescription {
                    name,
                    error_code: ErrorCode::None as i32,
                    error_message: String::new(),
                    replication_factor: t.meta.replication_factor,
                    configs: topic_configs(
                        &t.config,
                        // Checked when the topic was created or altered.
                        &replication_settings(&t.meta.configs).unwrap_or_default(),
                        self.ctx.config.cluster.min_insync_replicas,
                    )
                    .into_iter()
                    .collect(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionDescription {
                            partition: p.id(),
                            leader: node,
                            log_start_offset: p.log().start_offset().0,
                            log_end_offset: p.log().end_offset().0,
                            high_watermark: p.high_watermark().0,
                            size_bytes: p.log().size_bytes(),
                            segments: p.log().segment_base_offsets().len() as u32,
                        })
                        .collect(),
                },
                None => TopicDescription {
                    error_code: ErrorCode::UnknownTopicOrPartition as i32,
                    error_message: format!("topic {name:?} does not exist"),
                    name,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(DescribeTopicsResponse { topics }))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let caller = Caller::of(&request);
        let topics = request.into_inner().topics;
        let names = topics.iter().map(|t| t.name.as_str());
        let alter = Operation::AlterConfigs;
        (self.ctx).authorize(
            &caller,
            "CreatePartitions",
            alter,
            ResourceType::Topic,
            names,
        )?;
        let mut results = Vec::new();
        for t in topics {
            let outcome = match &self.ctx.cluster {
                Some(_) => Err(AdminError::NotInCluster {
                    operation: "adding partitions",
                }),
                None => self.ctx.registry.add_partitions(&t.name, t.total).await,
            };
            results.push(result(t.name, outcome));
        }
        Ok(Response::new(CreatePartitionsResponse { results }))
    }

    async fn alter_partition_reassignments(
        &self,
        request: Request<AlterPartitionReassignmentsRequest>,
    ) -> Result<Response<AlterPartitionReassignmentsResponse>, Status> {
        let caller = Caller::of(&request);
        (self.ctx).authorize_cluster(&caller, "AlterPartitionReassignments", Operation::Admin)?;
        let request = request.into_inner();
        let mut results = Vec::with_capacity(request.partitions.len());
        for asked in request.partitions {
            let at = format!("{}-{}", asked.topic, asked.partition);
            let (code, message) = match &self.ctx.cluster {
                None => (
                    ErrorCode::InvalidRequest,
                    format!(
                        "cannot reassign {at}: this broker runs alone (no cluster.voters), so every partition has one replica"
                    ),
                ),
                Some(_) if asked.cancel && !asked.replicas.is_empty() => (
                    ErrorCode::InvalidRequest,
                    format!(
                        "cancel of {at} names replicas {:?}: a cancel takes none",
                        asked.replicas
                    ),
                ),
                Some(cluster) => {
                    let target = (!asked.cancel).then_some(asked.replicas);
                    cluster
                        .alter_reassignment(&asked.topic, asked.partition, target)
                        .await
                }
            };
            if code != ErrorCode::None {
                tracing::info!(partition = %at, cause = %message, "reassignment refused");
            }
            results.push(ReassignmentResult {
                topic: asked.topic,
                partition: asked.partition,
                error_code: code as i32,
                error_message: message,
            });
        }
        Ok(Response::new(AlterPartitionReassignmentsResponse {
            results,
        }))
    }

    async fn list_partition_reassignments(
        &self,
        request: Request<ListPartitionReassignmentsRequest>,
    ) -> Result<Response<ListPartitionReassignmentsResponse>, Status> {
        let caller = Caller::of(&request);
        let describe = Operation::Describe;
        (self.ctx).authorize_cluster(&caller, "ListPartitionReassignments", describe)?;
        let request = request.into_inner();
        let Some(cluster) = &self.ctx.cluster else {
            return Ok(Response::new(ListPartitionReassignmentsResponse::default()));
        };
        let metadata = cluster.metadata();
        let wanted = |name: &String| request.topics.is_empty() || request.topics.contains(name);
        let reassignments = (metadata.topics.iter())
            .filter(|(name, _)| wanted(name))
            .flat_map(|(name, topic)| {
                (topic.partitions.iter().enumerate())
                    .filter(|(_, p)| p.is_reassigning())
                    .map(|(i, p)| OngoingReassignment {
                        topic: name.clone(),
                        partition: i as u32,
                        replicas: p.replicas.clone(),
                        adding_replicas: p.adding.clone(),
                        removing_replicas: p.removing.clone(),
                        isr: p.isr.iter().copied().collect(),
                        leader: p.leader.unwrap_or(-1),
                    })
            })
            .collect();
        Ok(Response::new(ListPartitionReassignmentsResponse {
            reassignments,
        }))
    }

    async fn elect_leaders(
        &self,
        request: Request<ElectLeadersRequest>,
    ) -> Result<Response<ElectLeadersResponse>, Status> {
        let caller = Caller::of(&request);
        (self.ctx).authorize_cluster(&caller, "ElectLeaders", Operation::Admin)?;
        let request = request.into_inner();
        // Partition counts as this broker knows them: the cluster metadata, or its registry.
        let counts: BTreeMap<String, u32> = match &self.ctx.cluster {
            Some(cluster) => (cluster.metadata().topics.iter())
                .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
                .collect(),
            None => (self.ctx.registry.topics().iter())
                .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
                .collect(),
        };
        let asked: Vec<(String, Vec<u32>)> = if request.topics.is_empty() {
            (counts.iter())
                .map(|(name, n)| (name.clone(), (0..*n).collect()))
                .collect()
        } else {
            (request.topics.into_iter())
                .map(|t| {
                    let all = (0..counts.get(&t.topic).copied().unwrap_or(0)).collect();
                    let partitions = if t.partitions.is_empty() {
                        all
                    } else {
                        t.partitions
                    };
                    (t.topic, partitions)
                })
                .collect()
        };
        let mut results = Vec::new();
        for (topic, partitions) in asked {
            if !counts.contains_key(&topic) {
                results.push(ElectLeadersResult {
                    error_code: ErrorCode::UnknownTopicOrPartition as i32,
                    error_message: format!("topic {topic:?} does not exist"),
                    topic,
                    partition: 0,
                    leader: -1,
                });
                continue;
            }
            for partition in partitions {
                let (code, message, leader) = match &self.ctx.cluster {
                    Some(cluster) => cluster.elect_preferred_leader(&topic, partition).await,
                    None if partition < counts[&topic] => (
                        ErrorCode::ElectionNotNeeded,
                        format!("{topic}-{partition} is led by its only replica, this broker"),
                        self.ctx.config.server.node_id,
                    ),
                    None => (
                        ErrorCode::UnknownTopicOrPartition,
                        format!(
                            "topic {topic:?} has {} partitions; there is no partition {partition}",
                            counts[&topic]
                        ),
                        -1,
                    ),
                };
                results.push(ElectLeadersResult {
                    topic: topic.clone(),
                    partition,
                    error_code: code as i32,
                    error_message: message,
                    leader,
                });
            }
        }
        Ok(Response::new(ElectLeadersResponse { results }))
    }

    async fn alter_configs(
        &self,
        request: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        let caller = Caller::of(&request);
        let topics = request.into_inner().topics;
        let names = topics.iter().map(|t| t.name.as_str());
        let alter = Operation::AlterConfigs;
        (self.ctx).authorize(&caller, "AlterConfigs", alter, ResourceType::Topic, names)?;
        let mut results = Vec::new();
        for t in topics {
            let set: BTreeMap<String, String> = t.set.into_iter().collect();
            let outcome = match &self.ctx.cluster {
                Some(_) => Err(AdminError::NotInCluster {
                    operation: "altering topic configs",
                }),
                None => {
                    (self.ctx.registry)
                        .alter_configs(&t.name, set, &t.delete)
                        .await
                }
            };
            results.push(result(t.name, outcome));
        }
        Ok(Response::new(AlterConfigsResponse { results }))
    }
}
