//! `brook acl add|remove|list`.

use std::io::Write;

use brook_proto::v1::{AclBinding, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};

use super::args::{AclArgs, AclListArgs};
use super::output_error;
use crate::{ClientError, Connection};

/// The ACLs `args` names: one per operation.
pub fn bindings(args: &AclArgs) -> Vec<AclBinding> {
    let (resource_type, name) = match (&args.topic, &args.group) {
        (Some(topic), _) => ("topic", topic.as_str()),
        (None, Some(group)) => ("group", group.as_str()),
        (None, None) => ("cluster", "cluster"),
    };
    (args.operations.iter())
        .map(|operation| AclBinding {
            principal: args.principal.clone(),
            resource_type: resource_type.to_string(),
            pattern_type: if args.prefixed { "prefixed" } else { "literal" }.to_string(),
            resource_name: name.to_string(),
            operation: operation.clone(),
            permission: if args.deny { "deny" } else { "allow" }.to_string(),
        })
        .collect()
}

fn print(acls: &[AclBinding], out: &mut impl Write) -> Result<(), ClientError> {
    for a in acls {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            a.principal,
            a.permission,
            a.operation,
            a.resource_type,
            a.pattern_type,
            a.resource_name
        )
        .map_err(output_error)?;
    }
    Ok(())
}

/// Adds the ACLs `args` names and prints them.
pub async fn add_acls(
    conn: &Connection,
    args: &AclArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let acls = bindings(args);
    (conn.admin())
        .create_acls(CreateAclsRequest { acls: acls.clone() })
        .await?;
    print(&acls, out)
}

/// Removes the ACLs `args` names and prints those that were there.
pub async fn remove_acls(
    conn: &Connection,
    args: &AclArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let acls = bindings(args);
    let deleted = (conn.admin())
        .delete_acls(DeleteAclsRequest { acls })
        .await?
        .into_inner()
        .deleted;
    print(&deleted, out)
}

/// Prints the ACLs that pass the filters; returns how many.
pub async fn list_acls(
    conn: &Connection,
    args: &AclListArgs,
    out: &mut impl Write,
) -> Result<usize, ClientError> {
    let (resource_type, resource_name) = match (&args.topic, &args.group, args.cluster) {
        (Some(topic), _, _) => ("topic", topic.clone()),
        (None, Some(group), _) => ("group", group.clone()),
        (None, None, true) => ("cluster", "cluster".to_string()),
        (None, None, false) => ("", String::new()),
    };
    let acls = (conn.admin())
        .describe_acls(DescribeAclsRequest {
            principal: args.principal.clone().unwrap_or_default(),
            resource_type: resource_type.to_string(),
            resource_name,
        })
        .await?
        .into_inner()
        .acls;
    print(&acls, out)?;
    Ok(acls.len())
}
