//! `brook group list|describe`.

use std::io::Write;

use brook_proto::v1::{DescribeGroupRequest, ListGroupsRequest};

use super::output_error;
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Prints `GROUP<TAB>MEMBERS` per group, sorted by id; returns how many.
pub async fn list_groups(conn: &Connection, out: &mut impl Write) -> Result<usize, ClientError> {
    let res = conn
        .groups()
        .list_groups(ListGroupsRequest {})
        .await?
        .into_inner();
    for g in &res.groups {
        writeln!(out, "{}\t{}", g.group_id, g.members).map_err(output_error)?;
    }
    Ok(res.groups.len())
}

/// Prints a group: its epoch, members with their assignments, and per partition the
/// committed offset, the high watermark and the lag.
pub async fn describe_group(
    conn: &Connection,
    group: &str,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let d = conn
        .groups()
        .describe_group(DescribeGroupRequest {
            group_id: group.to_string(),
        })
        .await?
        .into_inner();
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
