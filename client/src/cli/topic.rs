//! `brook topic ...`: the Admin service's topic operations.

use std::io::Write;

use brook_proto::v1::{
    AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeTopicsRequest, ListTopicsRequest, NewTopic, PartitionCount, TopicConfigChange,
    TopicDescription, TopicResult,
};

use super::args::{AddPartitionsArgs, TopicAlterArgs, TopicCreateArgs, config_map};
use super::{one_or_many, output_error};
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Creates a topic; prints `created topic NAME with N partitions`.
pub async fn create_topic(
    conn: &Connection,
    args: &TopicCreateArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let request = CreateTopicsRequest {
        topics: vec![NewTopic {
            name: args.name.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor.unwrap_or(0),
            configs: config_map(&args.configs)?,
        }],
        validate_only: false,
    };
    let response = conn.admin().create_topics(request).await?.into_inner();
    check_results(std::slice::from_ref(&args.name), &response.results)?;
    writeln!(
        out,
        "created topic {} with {} partitions",
        args.name, args.partitions
    )
    .map_err(output_error)
}

/// Lists every topic as `NAME\tPARTITIONS` lines, sorted by name; returns how many.
pub async fn list_topics(conn: &Connection, out: &mut impl Write) -> Result<usize, ClientError> {
    let mut topics = conn
        .admin()
        .list_topics(ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in &topics {
        writeln!(out, "{}\t{}", topic.name, topic.partitions).map_err(output_error)?;
    }
    Ok(topics.len())
}

/// Describes `names` (every topic when empty): replication factor, configs and a table of
/// partitions with leader, log start and end offsets, high watermark, size and segments. The
/// topics that exist are printed even when others fail.
pub async fn describe_topics(
    conn: &Connection,
    names: &[String],
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let response = conn
        .admin()
        .describe_topics(DescribeTopicsRequest {
            names: names.to_vec(),
        })
        .await?
        .into_inner();
    let mut topics = response.topics;
    if names.is_empty() {
        topics.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut errors = Vec::new();
    let mut first = true;
    for topic in &topics {
        if let Err(err) = check_code(&topic.name, None, topic.error_code, &topic.error_message) {
            errors.push(err);
            continue;
        }
        if !first {
            writeln!(out).map_err(output_error)?;
        }
        first = false;
        write_description(out, topic).map_err(output_error)?;
    }
    for name in names {
        if !topics.iter().any(|t| &t.name == name) {
            errors.push(missing(name, "describe"));
        }
    }
    one_or_many(errors)
}

/// Deletes `names`; prints `deleted topic NAME` for each one deleted.
pub async fn delete_topics(
    conn: &Connection,
    names: &[String],
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let response = conn
        .admin()
        .delete_topics(DeleteTopicsRequest {
            names: names.to_vec(),
        })
        .await?
        .into_inner();
    let mut errors = Vec::new();
    for name in names {
        match result_for(name, &response.results, "delete") {
            Ok(()) => writeln!(out, "deleted topic {name}").map_err(output_error)?,
            Err(err) => errors.push(err),
        }
    }
    one_or_many(errors)
}

/// Sets and resets configs of one topic; prints `altered topic NAME`.
pub async fn alter_topic(
    conn: &Connection,
    args: &TopicAlterArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let request = AlterConfigsRequest {
        topics: vec![TopicConfigChange {
            name: args.name.clone(),
            set: config_map(&args.set)?,
            delete: args.delete.clone(),
        }],
    };
    let response = conn.admin().alter_configs(request).await?.into_inner();
    check_results(std::slice::from_ref(&args.name), &response.results)?;
    writeln!(out, "altered topic {}", args.name).map_err(output_error)
}

/// Raises a topic's partition count; prints `topic NAME now has N partitions`.
pub async fn add_partitions(
    conn: &Connection,
    args: &AddPartitionsArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let request = CreatePartitionsRequest {
        topics: vec![PartitionCount {
            name: args.name.clone(),
            total: args.total,
        }],
    };
    let response = conn.admin().create_partitions(request).await?.into_inner();
    check_results(std::slice::from_ref(&args.name), &response.results)?;
    writeln!(out, "topic {} now has {} partitions", args.name, args.total).map_err(output_error)
}

/// Writes one topic's description (see [`describe_topics`]).
pub fn write_description(out: &mut impl Write, topic: &TopicDescription) -> std::io::Result<()> {
    writeln!(out, "topic: {}", topic.name)?;
    writeln!(out, "partitions: {}", topic.partitions.len())?;
    writeln!(out, "replication factor: {}", topic.replication_factor)?;
    let mut configs: Vec<_> = topic.configs.iter().collect();
    configs.sort();
    if configs.is_empty() {
        writeln!(out, "configs: (none)")?;
    } else {
        writeln!(out, "configs:")?;
        for (key, value) in configs {
            writeln!(out, "  {key}={value}")?;
        }
    }
    let mut partitions = topic.partitions.clone();
    partitions.sort_by_key(|p| p.partition);
    let mut rows = vec![
        [
            "partition",
            "leader",
            "start offset",
            "end offset",
            "high watermark",
            "size bytes",
            "segments",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for p in &partitions {
        rows.push(vec![
            p.partition.to_string(),
            p.leader.to_string(),
            p.log_start_offset.to_string(),
            p.log_end_offset.to_string(),
            p.high_watermark.to_string(),
            p.size_bytes.to_string(),
            p.segments.to_string(),
        ]);
    }
    write_table(out, &rows, "  ")
}

/// Writes rows as left-aligned columns separated by two spaces, each line after `indent`.
fn write_table(out: &mut impl Write, rows: &[Vec<String>], indent: &str) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The outcome for `name` among per-topic results.
fn result_for(name: &str, results: &[TopicResult], operation: &str) -> Result<(), ClientError> {
    match results.iter().find(|r| r.name == name) {
        Some(r) => check_code(name, None, r.error_code, &r.error_message),
        None => Err(missing(name, operation)),
    }
}

/// Every name's outcome; the errors, if any, as one error.
fn check_results(names: &[String], results: &[TopicResult]) -> Result<(), ClientError> {
    one_or_many(
        names
            .iter()
            .filter_map(|name| result_for(name, results, "the request").err())
            .collect(),
    )
}

fn missing(name: &str, operation: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the broker's answer to {operation} has no outcome for topic {name}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_proto::v1::{ErrorCode, PartitionDescription};

    #[test]
    fn description_lists_configs_sorted_and_aligns_partitions() {
        let topic = TopicDescription {
            name: "orders".into(),
            error_code: 0,
            error_message: String::new(),
            replication_factor: 1,
            configs: [
                ("segment.bytes".to_owned(), "1073741824".to_owned()),
                ("retention.ms".to_owned(), "604800000".to_owned()),
            ]
            .into_iter()
            .collect(),
            partitions: vec![
                PartitionDescription {
                    partition: 1,
                    leader: 1,
                    log_start_offset: 0,
                    log_end_offset: 12345,
                    high_watermark: 12345,
                    size_bytes: 1_048_576,
                    segments: 2,
                },
                PartitionDescription {
                    partition: 0,
                    leader: 1,
                    log_start_offset: 0,
                    log_end_offset: 7,
                    high_watermark: 7,
                    size_bytes: 512,
                    segments: 1,
                },
            ],
        };
        let mut out = Vec::new();
        write_description(&mut out, &topic).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "topic: orders\n\
             partitions: 2\n\
             replication factor: 1\n\
             configs:\n  retention.ms=604800000\n  segment.bytes=1073741824\n\
             \x20 partition  leader  start offset  end offset  high watermark  size bytes  segments\n\
             \x20 0          1       0             7           7               512         1\n\
             \x20 1          1       0             12345       12345           1048576     2\n"
        );
    }

    #[test]
    fn results_are_matched_by_name() {
        let results = vec![
            TopicResult {
                name: "a".into(),
                error_code: 0,
                error_message: String::new(),
            },
            TopicResult {
                name: "b".into(),
                error_code: ErrorCode::UnknownTopicOrPartition as i32,
                error_message: "no topic b".into(),
            },
        ];
        assert!(result_for("a", &results, "delete").is_ok());
        let err = result_for("b", &results, "delete").unwrap_err();
        assert_eq!(err.error_code(), Some(ErrorCode::UnknownTopicOrPartition));
        assert!(matches!(
            result_for("c", &results, "delete"),
            Err(ClientError::Protocol(_))
        ));
        let names = ["a", "b", "c"].map(String::from);
        match check_results(&names, &results) {
            Err(ClientError::Multiple(errors)) => assert_eq!(errors.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
