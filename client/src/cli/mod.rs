//! The `brook` command-line tool as library functions.
//!
//! Each command takes a [`Connection`], its parsed arguments, and the streams it uses (an
//! input reader for `produce`, an output writer for results); it returns a result instead of
//! exiting, so tests run commands in-process against a broker. The binary
//! (`src/bin/brook.rs`) parses [`Cli`], calls [`Cli::validate`], connects, calls [`run`] and
//! turns an error into an exit code with [`Exit::for_error`] and a message with [`report`].
//!
//! ```text
//! argv ─▶ Cli (clap) ─▶ validate ─▶ Connection::connect ─▶ run(command)
//!                                                           ├─ topic::*   Admin service
//!                                                           ├─ produce    Metadata, Produce
//!                                                           ├─ consume    Metadata, ListOffsets, Fetch
//!                                                           ├─ cluster    Metadata
//!                                                           ├─ group::*   Groups service
//!                                                           └─ acl::*     Admin service (ACLs)
//! ```
//!
//! - [`args`]: the clap definitions and value parsers (`KEY=VALUE`, `--acks`).
//! - [`topic`], [`produce`](mod@produce), [`consume`](mod@consume), [`cluster`]: the commands.
//! - [`line_reader`] and [`chunk`]: stdin lines to records to per-partition batches.
//! - [`router`]: partition leaders and connections to them.
//! - [`exit`]: exit codes and error messages.

pub mod acl;
pub mod args;
pub mod chunk;
pub mod cluster;
pub mod consume;
pub mod exit;
pub mod group;
pub mod line_reader;
pub mod produce;
pub mod router;
pub mod topic;

use std::future::Future;
use std::io::Write;

use tokio::io::AsyncBufRead;

pub use args::{
    AckMode, AclArgs, AclCommand, AclListArgs, AddPartitionsArgs, Cli, ClusterCommand, Command,
    ConfigEntry, ConsumeArgs, GroupCommand, ProduceArgs, TopicAlterArgs, TopicCommand,
    TopicCreateArgs,
};
pub use cluster::cluster_status;
pub use consume::consume;
pub use exit::{Exit, report};
pub use produce::produce;
pub use topic::{
    add_partitions, alter_topic, create_topic, delete_topics, describe_topics, list_topics,
};

use crate::{ClientError, Connection};

/// Runs one command: results to `out`, the `produced N records` / `consumed N records`
/// summaries to `diagnostics`. `input` is read by `produce` only; `shutdown` stops `consume`
/// (which then still succeeds). `out` is flushed before returning.
pub async fn run<R, W, D, S>(
    command: &Command,
    conn: &Connection,
    input: R,
    out: &mut W,
    diagnostics: &mut D,
    shutdown: S,
) -> Result<(), ClientError>
where
    R: AsyncBufRead + Unpin,
    W: Write,
    D: Write,
    S: Future<Output = ()>,
{
    match command {
        Command::Topic(TopicCommand::Create(args)) => create_topic(conn, args, out).await?,
        Command::Topic(TopicCommand::List) => {
            list_topics(conn, out).await?;
        }
        Command::Topic(TopicCommand::Describe(args)) => {
            describe_topics(conn, &args.names, out).await?
        }
        Command::Topic(TopicCommand::Delete(args)) => delete_topics(conn, &args.names, out).await?,
        Command::Topic(TopicCommand::Alter(args)) => alter_topic(conn, args, out).await?,
        Command::Topic(TopicCommand::AddPartitions(args)) => {
            add_partitions(conn, args, out).await?
        }
        Command::Produce(args) => {
            let count = produce(conn, args, input).await?;
            writeln!(diagnostics, "produced {count} records").map_err(output_error)?;
        }
        Command::Consume(args) => {
            let result = consume(conn, args, out, shutdown).await;
            let count = result?;
            writeln!(diagnostics, "consumed {count} records").map_err(output_error)?;
        }
        Command::Cluster(ClusterCommand::Status) => cluster_status(conn, out).await?,
        Command::Cluster(ClusterCommand::ElectLeaders(args)) => {
            cluster::elect_leaders(conn, args, out).await?
        }
        Command::Cluster(ClusterCommand::Reassign(args)) => {
            cluster::reassign(conn, args, out).await?
        }
        Command::Cluster(ClusterCommand::Reassignments(args)) => {
            cluster::list_reassignments(conn, &args.topic, out).await?
        }
        Command::Group(GroupCommand::List) => {
            group::list_groups(conn, out).await?;
        }
        Command::Group(GroupCommand::Describe { group }) => {
            group::describe_group(conn, group, out).await?
        }
        Command::Acl(AclCommand::Add(args)) => acl::add_acls(conn, args, out).await?,
        Command::Acl(AclCommand::Remove(args)) => acl::remove_acls(conn, args, out).await?,
        Command::Acl(AclCommand::List(args)) => {
            acl::list_acls(conn, args, out).await?;
        }
    }
    out.flush().map_err(output_error)
}

/// No error, one error, or [`ClientError::Multiple`].
pub(crate) fn one_or_many(mut errors: Vec<ClientError>) -> Result<(), ClientError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(ClientError::Multiple(errors)),
    }
}

/// An error writing the command's output.
pub(crate) fn output_error(source: std::io::Error) -> ClientError {
    ClientError::Io {
        context: "cannot write the output",
        source,
    }
}
