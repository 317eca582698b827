//! `brook cluster status`: a summary of Metadata; `brook cluster elect-leaders`,
//! `reassign` and `reassignments`.

use std::io::Write;
use std::time::Duration;

use brook_proto::v1::{
    AlterPartitionReassignmentsRequest, ElectLeadersRequest, ElectLeadersResult, ElectLeadersTopic,
    ErrorCode, ListPartitionReassignmentsRequest, MetadataRequest, MetadataResponse,
    OngoingReassignment, PartitionReassignment, ReassignmentResult,
};

use super::args::{ElectLeadersArgs, ReassignArgs};
use super::{one_or_many, output_error};
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Asks for preferred-leader elections (every partition, a topic's, or some of its
/// partitions) and prints a line per partition (see [`write_elections`]); fails with the
/// partitions whose preferred replica could not take over.
pub async fn elect_leaders(
    conn: &Connection,
    args: &ElectLeadersArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let topics = match &args.topic {
        Some(topic) => vec![ElectLeadersTopic {
            topic: topic.clone(),
            partitions: args.partition.clone(),
        }],
        None => Vec::new(),
    };
    let response = (conn.admin())
        .elect_leaders(ElectLeadersRequest { topics })
        .await?
        .into_inner();
    write_elections(out, &response.results).map_err(output_error)?;
    one_or_many(
        (response.results.iter())
            .filter(|r| r.error_code() != ErrorCode::ElectionNotNeeded)
            .filter_map(|r| {
                check_code(&r.topic, Some(r.partition), r.error_code, &r.error_message).err()
            })
            .collect(),
    )
}

/// One line per partition:
///
/// ```text
/// orders-0: leader 2 (elected)
/// orders-1: leader 1 (already preferred)
/// orders-2: not elected: the preferred replica 3 of orders-2 is not live
/// ```
pub fn write_elections(
    out: &mut impl Write,
    results: &[ElectLeadersResult],
) -> std::io::Result<()> {
    for r in results {
        let at = format!("{}-{}", r.topic, r.partition);
        match r.error_code() {
            ErrorCode::None => writeln!(out, "{at}: leader {} (elected)", r.leader)?,
            ErrorCode::ElectionNotNeeded => {
                writeln!(out, "{at}: leader {} (already preferred)", r.leader)?
            }
            _ => writeln!(out, "{at}: not elected: {}", r.error_message)?,
        }
    }
    Ok(())
}

/// How often `reassign --wait` asks whether the moves are done.
const REASSIGN_POLL: Duration = Duration::from_millis(250);

/// Starts (or cancels) the moves of the given partitions and prints a line per partition
/// (see [`write_reassignments`]); with `--wait`, then waits until none of them is still
/// moving and prints `done`. Fails with the partitions that were refused.
pub async fn reassign(
    conn: &Connection,
    args: &ReassignArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let partitions = (args.partition.iter())
        .map(|&partition| PartitionReassignment {
            topic: args.topic.clone(),
            partition,
            replicas: args.replicas.clone(),
            cancel: args.cancel,
        })
        .collect();
    let response = (conn.admin())
        .alter_partition_reassignments(AlterPartitionReassignmentsRequest { partitions })
        .await?
        .into_inner();
    write_reassignments(out, &response.results, args.cancel).map_err(output_error)?;
    one_or_many(
        (response.results.iter())
            .filter_map(|r| {
                check_code(&r.topic, Some(r.partition), r.error_code, &r.error_message).err()
            })
            .collect(),
    )?;
    if !args.wait {
        return Ok(());
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let running = (conn.admin())
            .list_partition_reassignments(ListPartitionReassignmentsRequest {
                topics: vec![args.topic.clone()],
            })
            .await?
            .into_inner()
            .reassignments;
        let mut moving: Vec<u32> = (running.iter())
            .filter(|r| args.partition.contains(&r.partition))
            .map(|r| r.partition)
            .collect();
        if moving.is_empty() {
            writeln!(out, "done").map_err(output_error)?;
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            moving.sort_unstable();
            return Err(ClientError::Timeout {
                operation: format!("moving {} partitions {moving:?}", args.topic),
                after: timeout,
            });
        }
        tokio::time::sleep(REASSIGN_POLL).await;
    }
}

/// One line per partition:
///
/// ```text
/// orders-0: moving to [2, 3, 4]
/// orders-1: cancelled
/// orders-2: not moved: orders-2: broker 9 is not registered
/// ```
pub fn write_reassignments(
    out: &mut impl Write,
    results: &[ReassignmentResult],
    cancel: bool,
) -> std::io::Result<()> {
    for r in results {
        let at = format!("{}-{}", r.topic, r.partition);
        match r.error_code() {
            ErrorCode::None if cancel => writeln!(out, "{at}: cancelled")?,
            ErrorCode::None => writeln!(out, "{at}: moving")?,
            _ if cancel => writeln!(out, "{at}: not cancelled: {}", r.error_message)?,
            _ => writeln!(out, "{at}: not moved: {}", r.error_message)?,
        }
    }
    Ok(())
}

/// Prints the running moves of `topics` (all when empty), one line each (see
/// [`write_ongoing`]).
pub async fn list_reassignments(
    conn: &Connection,
    topics: &[String],
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let response = (conn.admin())
        .list_partition_reassignments(ListPartitionReassignmentsRequest {
            topics: topics.to_vec(),
        })
        .await?
        .into_inner();
    write_ongoing(out, &response.reassignments).map_err(output_error)
}

/// `TOPIC-PARTITION<TAB>replicas 2,3,4,1<TAB>adding 4<TAB>removing 1<TAB>isr 1,2,3`, sorted by
/// topic and partition.
pub fn write_ongoing(out: &mut impl Write, running: &[OngoingReassignment]) -> std::io::Result<()> {
    let list = |ids: &[i32]| {
        let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
        ids.join(",")
    };
    let mut running = running.to_vec();
    running.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for r in &running {
        writeln!(
            out,
            "{}-{}\treplicas {}\tadding {}\tremoving {}\tisr {}",
            r.topic,
            r.partition,
            list(&r.replicas),
            list(&r.adding_replicas),
            list(&r.removing_replicas),
            list(&r.isr)
        )?;
    }
    Ok(())
}

/// Prints the cluster id, the controller, each broker, and topic and partition counts (see
/// [`write_status`]).
pub async fn cluster_status(conn: &Connection, out: &mut impl Write) -> Result<(), ClientError> {
    let metadata = conn
        .broker()
        .metadata(MetadataRequest { topics: vec![] })
        .await?
        .into_inner();
    write_status(out, &metadata).map_err(output_error)
}

/// Writes the status as `key: value` lines, brokers sorted by node id:
///
/// ```text
/// cluster id: 3f2a...
/// controller: 1
/// brokers: 2
///   broker 1: 127.0.0.1:7400 (controller)
///   broker 2: 127.0.0.1:7410
/// topics: 2
/// partitions: 4
/// offline partitions: 0
/// under-replicated partitions: 0
/// ```
///
/// A partition is offline without a leader and under-replicated when its ISR is smaller than
/// its replica list. A controller id below 0 prints as `none`.
pub fn write_status(out: &mut impl Write, metadata: &MetadataResponse) -> std::io::Result<()> {
    let cluster_id = if metadata.cluster_id.is_empty() {
        "(unknown)"
    } else {
        &metadata.cluster_id
    };
    writeln!(out, "cluster id: {cluster_id}")?;
    if metadata.controller_id < 0 {
        writeln!(out, "controller: none")?;
    } else {
        writeln!(out, "controller: {}", metadata.controller_id)?;
    }
    let mut brokers = metadata.brokers.clone();
    brokers.sort_by_key(|b| b.node_id);
    writeln!(out, "brokers: {}", brokers.len())?;
    for broker in &brokers {
        let role = if broker.node_id == metadata.controller_id {
            " (controller)"
        } else {
            ""
        };
        writeln!(out, "  broker {}: {}{role}", broker.node_id, broker.address)?;
    }
    let partitions = metadata.topics.iter().flat_map(|t| t.partitions.iter());
    let (mut total, mut offline, mut under_replicated) = (0, 0, 0);
    for p in partitions {
        total += 1;
        if p.leader < 0 {
            offline += 1;
        }
        if p.isr.len() < p.replicas.len() {
            under_replicated += 1;
        }
    }
    writeln!(out, "topics: {}", metadata.topics.len())?;
    writeln!(out, "partitions: {total}")?;
    writeln!(out, "offline partitions: {offline}")?;
    writeln!(out, "under-replicated partitions: {under_replicated}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_proto::v1::{BrokerInfo, PartitionMetadata, TopicMetadata};

    fn partition(partition: u32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn status_counts_brokers_topics_and_unhealthy_partitions() {
        let metadata = MetadataResponse {
            cluster_id: "c-1".into(),
            controller_id: 2,
            brokers: vec![
                BrokerInfo {
                    node_id: 2,
                    address: "b2:7400".into(),
                },
                BrokerInfo {
                    node_id: 1,
                    address: "b1:7400".into(),
                },
            ],
            topics: vec![
                TopicMetadata {
                    name: "a".into(),
                    error_code: 0,
                    error_message: String::new(),
                    partitions: vec![
                        partition(0, 1, &[1, 2], &[1, 2]),
                        partition(1, 2, &[2, 1], &[2]),
                    ],
                },
                TopicMetadata {
                    name: "b".into(),
                    error_code: 0,
                    error_message: String::new(),
                    partitions: vec![partition(0, -1, &[1], &[])],
                },
            ],
        };
        let mut out = Vec::new();
        write_status(&mut out, &metadata).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cluster id: c-1\n\
             controller: 2\n\
             brokers: 2\n\
             \x20 broker 1: b1:7400\n\
             \x20 broker 2: b2:7400 (controller)\n\
             topics: 2\n\
             partitions: 3\n\
             offline partitions: 1\n\
             under-replicated partitions: 2\n"
        );
    }

    #[test]
    fn reassignment_lines_name_each_partition_and_its_outcome() {
        let result = |partition, code: ErrorCode, message: &str| ReassignmentResult {
            topic: "o".into(),
            partition,
            error_code: code as i32,
            error_message: message.into(),
        };
        let results = [
            result(0, ErrorCode::None, ""),
            result(
                1,
                ErrorCode::InvalidReplicaAssignment,
                "o-1: broker 9 is not registered",
            ),
        ];
        let mut out = Vec::new();
        write_reassignments(&mut out, &results, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "o-0: moving\no-1: not moved: o-1: broker 9 is not registered\n"
        );
        let mut out = Vec::new();
        write_reassignments(&mut out, &results, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "o-0: cancelled\no-1: not cancelled: o-1: broker 9 is not registered\n"
        );
        let ongoing = |topic: &str, partition| OngoingReassignment {
            topic: topic.into(),
            partition,
            replicas: vec![2, 3, 4, 1],
            adding_replicas: vec![4],
            removing_replicas: vec![1],
            isr: vec![1, 2, 3],
            leader: 1,
        };
        let mut out = Vec::new();
        write_ongoing(
            &mut out,
            &[ongoing("b", 0), ongoing("a", 2), ongoing("a", 1)],
        )
        .unwrap();
        let line = "replicas 2,3,4,1\tadding 4\tremoving 1\tisr 1,2,3";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("a-1\t{line}\na-2\t{line}\nb-0\t{line}\n")
        );
    }

    #[test]
    fn status_of_an_empty_single_broker() {
        let metadata = MetadataResponse {
            cluster_id: String::new(),
            controller_id: -1,
            brokers: vec![],
            topics: vec![],
        };
        let mut out = Vec::new();
        write_status(&mut out, &metadata).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cluster id: (unknown)\ncontroller: none\nbrokers: 0\ntopics: 0\npartitions: 0\n\
             offline partitions: 0\nunder-replicated partitions: 0\n"
        );
    }
}
