//! `brook group list|describe`.

use std::io::Write;

use std::collections::BTreeMap;
use std::time::Duration;

use brook_proto::v1::{
    DescribeGroupRequest, DescribeGroupResponse, ListGroupsRequest, ListGroupsResponse,
    MetadataRequest,
};

use super::output_error;
use crate::consumer::coordinator::CoordinatorLink;
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Prints `GROUP<TAB>MEMBERS` per group, sorted by id; returns how many. In a cluster each
/// broker lists the groups it coordinates, so every broker the metadata names is asked.
pub async fn list_groups(conn: &Connection, out: &mut impl Write) -> Result<usize, ClientError> {
    let brokers = (conn.broker())
        .metadata(MetadataRequest { topics: Vec::new() })
        .await?
        .into_inner()
        .brokers;
    let mut groups = BTreeMap::new();
    let mut ask = |listing: ListGroupsResponse| {
        groups.extend(listing.groups.into_iter().map(|g| (g.group_id, g.members)))
    };
    if brokers.len() <= 1 {
        ask(conn
            .groups()
            .list_groups(ListGroupsRequest {})
            .await?
            .into_inner());
    } else {
        for b in brokers {
            let broker = conn.sibling(&b.address).await?;
            ask(broker
                .groups()
                .list_groups(ListGroupsRequest {})
                .await?
                .into_inner());
        }
    }
    for (group, members) in &groups {
        writeln!(out, "{group}\t{members}").map_err(output_error)?;
    }
    Ok(groups.len())
}

/// Prints a group: its epoch, members with their assignments, and per partition the
/// committed offset, the high watermark and the lag. Asks the group's coordinator.
pub async fn describe_group(
    conn: &Connection,
    group: &str,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let link = CoordinatorLink::new(conn.clone(), group.to_string(), Duration::from_secs(10));
    let req = DescribeGroupRequest {
        group_id: group.to_string(),
    };
    let d = link
        .call(
            |conn| {
                let req = req.clone();
                async move { Ok(conn.groups().describe_group(req).await?.into_inner()) }
            },
            |d: &DescribeGroupResponse| (d.error_code, d.error_message.as_str()),
        )
        .await?;
    check_code(group, None, d.error_code, &d.error_message)?;
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(output_error);
    w(out, format!("group: {}", d.group_id))?;
    w(out, format!("epoch: {}", d.group_epoch))?;
    w(out, format!("members: {}", d.members.len()))?;
    for m in &d.members {
        let assigned: Vec<String> = m
            .assignment
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic)))
            .collect();
        w(
            out,
            format!(
                "  {} epoch {} topics {} assigned [{}]",
                m.member_id,
                m.member_epoch,
                m.topics.join(","),
                assigned.join(" ")
            ),
        )?;
    }
    w(
        out,
        "TOPIC\tPARTITION\tCOMMITTED\tHIGH-WATERMARK\tLAG".to_string(),
    )?;
    for o in &d.offsets {
        w(
            out,
            format!(
                "{}\t{}\t{}\t{}\t{}",
                o.topic, o.partition, o.committed_offset, o.high_watermark, o.lag
            ),
        )?;
    }
    Ok(())
}
