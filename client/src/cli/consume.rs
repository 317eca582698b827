//! `brook consume`: ListOffsets for the start, then Fetch rounds until a stop condition, each
//! record printed as a line.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use brook_proto::Offset;
use brook_proto::v1::{
    ErrorCode, FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic,
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, OffsetSpec,
};
use brook_proto::{BatchError, Batches, Record};
use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::args::ConsumeArgs;
use super::output_error;
use super::router::{Router, backoff};
use crate::connection::MAX_MESSAGE_BYTES;
use crate::error::{check_code, is_retriable_code};
use crate::{ClientError, Connection};

/// Longest long-poll of one Fetch.
pub const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Most bytes asked for in one Fetch response.
const FETCH_MAX_BYTES: u32 = 16 * 1024 * 1024;
/// Extra time the client waits for a Fetch beyond its long-poll.
const FETCH_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// Attempts of ListOffsets when the leader is moving.
const LIST_OFFSETS_ATTEMPTS: u32 = 10;

/// Prints `args.topic`'s records to `out`, one per line (see [`write_record`]), and returns how
/// many were printed.
///
/// Starts at every partition's end (its high watermark) or, with `from_beginning`, its log
/// start. Stops, returning `Ok`, after `max_messages` records, after `timeout_ms` without a new
/// record (at least one fetch is made), or when `shutdown` completes. `out` is flushed after
/// every fetch.
pub async fn consume<W, S>(
    conn: &Connection,
    args: &ConsumeArgs,
    out: &mut W,
    shutdown: S,
) -> Result<u64, ClientError>
where
    W: Write,
    S: Future<Output = ()>,
{
    if let Some(group) = &args.group {
        return consume_group(conn, args, group, out, shutdown).await;
    }
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let mut router = Router::load(conn, &args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            router.check_partition(p)?;
            vec![p]
        }
        None => (0..router.partition_count()).collect(),
    };
    if limit == 0 {
        return Ok(0);
    }
    let spec = if args.from_beginning {
        OffsetSpec::Earliest
    } else {
        OffsetSpec::Latest
    };
    let mut positions = list_offsets(&mut router, &args.topic, &partitions, spec).await?;
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut consumed = 0u64;
    let mut rounds = 0u64;
    tokio::pin!(shutdown);
    while consumed < limit {
        let wait = match idle_limit {
            Some(idle) => {
                let left = idle.saturating_sub(last_record.elapsed());
                if left.is_zero() && rounds > 0 {
                    break;
                }
                left.min(FETCH_MAX_WAIT)
            }
            None => FETCH_MAX_WAIT,
        };
        rounds += 1;
        let responses = tokio::select! {
            biased;
            () = &mut shutdown => break,
            responses = fetch_round(&mut router, &args.topic, &positions, wait) => responses?,
        };
        let mut printed = 0u64;
        let mut refresh = false;
        for answer in responses {
            let partition = answer.partition;
            let Some(&position) = positions.get(&partition) else {
                continue;
            };
            match check_code(
                &args.topic,
                Some(partition),
                answer.error_code,
                &answer.error_message,
            ) {
                Ok(()) => {}
                Err(err) if answer.error_code == ErrorCode::OffsetOutOfRange as i32 => {
                    let reset = if position < answer.log_start_offset {
                        OffsetSpec::Earliest
                    } else {
                        OffsetSpec::Latest
                    };
                    let new = list_offsets(&mut router, &args.topic, &[partition], reset).await?;
                    tracing::warn!(topic = %args.topic, partition, from = position, to = ?new.get(&partition), cause = %err, "offset out of range, resetting");
                    positions.extend(new);
                    continue;
                }
                Err(err) if retriable_for_fetch(&err) => {
                    tracing::warn!(topic = %args.topic, partition, cause = %err, "fetch failed, refreshing metadata");
                    refresh = true;
                    continue;
                }
                Err(err) => return Err(err),
            }
            let (records, next) = decode(&args.topic, partition, position, answer.records)?;
            for record in &records {
                if consumed + printed == limit {
                    break;
                }
                write_record(out, partition, record, args.print_key, args.print_offset)
                    .map_err(output_error)?;
                printed += 1;
            }
            positions.insert(partition, next);
        }
        out.flush().map_err(output_error)?;
        if printed > 0 {
            consumed += printed;
            last_record = Instant::now();
        }
        if refresh {
            tokio::time::sleep(backoff(1)).await;
            router.refresh().await?;
        }
    }
    Ok(consumed)
}

/// `consume --group`: a [`GroupConsumer`] member; after each poll the printed records are
/// committed (exactly those, so `--max-messages` never skips a record for the group), and
/// the member leaves the group at the end.
async fn consume_group<W, S>(
    conn: &Connection,
    args: &ConsumeArgs,
    group: &str,
    out: &mut W,
    shutdown: S,
) -> Result<u64, ClientError>
where
    W: Write,
    S: Future<Output = ()>,
{
    use crate::consumer::{
        AutoOffsetReset, ConsumerConfig, GroupConsumer, GroupMemberConfig, NoListener,
    };
    let limit = args.max_messages.unwrap_or(u64::MAX);
    let config = ConsumerConfig::builder()
        .bootstrap(conn.addr())
        .auto_offset_reset(if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        })
        .build()
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    let member = GroupMemberConfig {
        group_id: group.to_string(),
        topics: vec![args.topic.clone()],
        auto_commit: None,
    };
    let mut consumer =
        GroupConsumer::subscribe(conn.clone(), config, member, Box::new(NoListener))?;
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut consumed = 0u64;
    tokio::pin!(shutdown);
    while consumed < limit {
        let wait = match idle_limit {
            Some(idle) => {
                let left = idle.saturating_sub(last_record.elapsed());
                if left.is_zero() {
                    break;
                }
                left.min(FETCH_MAX_WAIT)
            }
            None => FETCH_MAX_WAIT,
        };
        let records = tokio::select! {
            biased;
            () = &mut shutdown => break,
            records = consumer.poll(wait) => records?,
        };
        let mut next = std::collections::BTreeMap::new();
        for r in records {
            if consumed == limit {
                break;
            }
            let record = Record {
                offset: r.offset.0,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            };
            write_record(out, r.partition, &record, args.print_key, args.print_offset)
                .map_err(output_error)?;
            next.insert(
                crate::consumer::TopicPartition::new(r.topic.clone(), r.partition),
                Offset(record.offset + 1),
            );
            consumed += 1;
            last_record = Instant::now();
        }
        out.flush().map_err(output_error)?;
        let offsets: Vec<_> = next.into_iter().collect();
        consumer.commit_offsets(&offsets).await?;
    }
    consumer.close().await?;
    Ok(consumed)
}

/// Writes one record as a line: `[PARTITION\tOFFSET\t][KEY\t]VALUE\n`, bytes as lossy UTF-8,
/// a null key or value as `null`.
pub fn write_record(
    out: &mut impl Write,
    partition: u32,
    record: &Record,
    print_key: bool,
    print_offset: bool,
) -> std::io::Result<()> {
    if print_offset {
        write!(out, "{partition}\t{}\t", record.offset)?;
    }
    if print_key {
        write_nullable(out, record.key.as_ref())?;
        out.write_all(b"\t")?;
    }
    write_nullable(out, record.value.as_ref())?;
    out.write_all(b"\n")
}

fn write_nullable(out: &mut impl Write, bytes: Option<&Bytes>) -> std::io::Result<()> {
    match bytes {
        Some(bytes) => out.write_all(String::from_utf8_lossy(bytes).as_bytes()),
        None => out.write_all(b"null"),
    }
}

/// Errors that a metadata refresh may cure; the partition is fetched again next round.
fn retriable_for_fetch(err: &ClientError) -> bool {
    err.error_code()
        .is_some_and(|code| is_retriable_code(code) || code == ErrorCode::UnknownTopicOrPartition)
}

/// The records of `records` (whole batches from a fetch at `position`) at or after `position`,
/// and the offset to fetch next. A partial batch at the end, after at least one whole one, is
/// left for the next fetch.
pub fn decode(
    topic: &str,
    partition: u32,
    position: i64,
    records: Bytes,
) -> Result<(Vec<Record>, i64), ClientError> {
    let corrupt = |source| ClientError::CorruptBatch {
        topic: topic.to_owned(),
        partition,
        offset: position,
        source,
    };
    let mut out = Vec::new();
    let mut next = position;
    for (index, batch) in Batches::new(records, MAX_MESSAGE_BYTES).enumerate() {
        let batch = match batch {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) if index > 0 => break,
            Err(err) => return Err(corrupt(err)),
        };
        for record in batch.records().map_err(corrupt)? {
            let record = record.map_err(corrupt)?;
            if record.offset >= position {
                out.push(record);
            }
        }
        next = next.max(batch.last_offset() + 1);
    }
    Ok((out, next))
}

/// Start offsets of `partitions` by `spec`, asking each partition's leader; retries while
/// leadership moves.
async fn list_offsets(
    router: &mut Router,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<BTreeMap<u32, i64>, ClientError> {
    let mut found = BTreeMap::new();
    let mut pending: Vec<u32> = partitions.to_vec();
    let mut attempt = 0;
    loop {
        let mut retry = Vec::new();
        let mut last_err = None;
        for (leader, group) in router.by_leader(pending.iter().copied()) {
            let conn = router.connection(leader).await?;
            let request = ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    topic: topic.to_owned(),
                    partitions: group
                        .iter()
                        .map(|&partition| ListOffsetsPartition {
                            partition,
                            spec: spec as i32,
                            timestamp: 0,
                        })
                        .collect(),
                }],
            };
            let response = conn.broker().list_offsets(request).await?.into_inner();
            let answers: Vec<_> = response
                .topics
                .into_iter()
                .filter(|t| t.topic == topic)
                .flat_map(|t| t.partitions)
                .collect();
            for partition in group {
                let Some(answer) = answers.iter().find(|a| a.partition == partition) else {
                    return Err(ClientError::Protocol(format!(
                        "the list-offsets response has no outcome for topic {topic} partition \
                         {partition}"
                    )));
                };
                match check_code(
                    topic,
                    Some(partition),
                    answer.error_code,
                    &answer.error_message,
                ) {
                    Ok(()) => {
                        found.insert(partition, answer.offset);
                    }
                    Err(err) if retriable_for_fetch(&err) => {
                        retry.push(partition);
                        last_err = Some(err);
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        let Some(err) = last_err else {
            return Ok(found);
        };
        attempt += 1;
        if attempt >= LIST_OFFSETS_ATTEMPTS {
            return Err(err);
        }
        tokio::time::sleep(backoff(attempt)).await;
        router.refresh().await?;
        pending = retry;
    }
}

/// One Fetch to each leader, concurrently; the partition outcomes of all of them.
async fn fetch_round(
    router: &mut Router,
    topic: &str,
    positions: &BTreeMap<u32, i64>,
    wait: Duration,
) -> Result<Vec<FetchPartitionResponse>, ClientError> {
    let mut requests = JoinSet::new();
    for (leader, group) in router.by_leader(positions.keys().copied()) {
        let conn = router.connection(leader).await?;
        let request = FetchRequest {
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: 1,
            max_bytes: FETCH_MAX_BYTES,
            replica_id: None,
            topics: vec![FetchTopic {
                topic: topic.to_owned(),
                partitions: group
                    .iter()
                    .map(|p| FetchPartition {
                        partition: *p,
                        fetch_offset: positions[p],
                        partition_max_bytes: 0,
                        current_leader_epoch: None,
                    })
                    .collect(),
            }],
        };
        let limit = wait + FETCH_TIMEOUT_MARGIN;
        requests.spawn(async move {
            let mut client = conn.broker();
            match tokio::time::timeout(limit, client.fetch(request)).await {
                Ok(response) => Ok(response?.into_inner()),
                Err(_elapsed) => Err(ClientError::Timeout {
                    operation: format!("fetch from {}", conn.addr()),
                    after: limit,
                }),
            }
        });
    }
    let mut partitions = Vec::new();
    while let Some(joined) = requests.join_next().await {
        let response: FetchResponse = joined
            .map_err(|err| ClientError::Protocol(format!("the fetch task failed: {err}")))??;
        partitions.extend(
            response
                .topics
                .into_iter()
                .filter(|t| t.topic == topic)
                .flat_map(|t| t.partitions),
        );
    }
    partitions.sort_by_key(|p| p.partition);
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_proto::BatchBuilder;
    use brook_proto::batch::stamp;

    fn batch(base_offset: i64, values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new();
        for v in values {
            b.append(1, Some(b"k"), Some(v.as_bytes()), &[]);
        }
        let built = b.build();
        let prefix = stamp(&built, base_offset, 0);
        let mut bytes = bytes::BytesMut::from(&built[..]);
        bytes[..prefix.len()].copy_from_slice(&prefix);
        bytes.freeze()
    }

    fn values(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn decode_skips_records_before_the_fetch_offset() {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&batch(10, &["a", "b", "c"]));
        buf.extend_from_slice(&batch(13, &["d"]));
        let (records, next) = decode("t", 0, 11, buf.freeze()).unwrap();
        assert_eq!(values(&records), ["b", "c", "d"]);
        assert_eq!(records[0].offset, 11);
        assert_eq!(next, 14);
    }

    #[test]
    fn decode_of_nothing_keeps_the_position() {
        let (records, next) = decode("t", 0, 7, Bytes::new()).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 7);
    }

    #[test]
    fn decode_leaves_a_trailing_partial_batch_for_later() {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&batch(0, &["a"]));
        let second = batch(1, &["b"]);
        buf.extend_from_slice(&second[..second.len() - 3]);
        let (records, next) = decode("t", 0, 0, buf.freeze()).unwrap();
        assert_eq!(values(&records), ["a"]);
        assert_eq!(next, 1);
    }

    #[test]
    fn decode_reports_a_corrupt_batch_with_its_place() {
        let mut bytes = bytes::BytesMut::from(&batch(5, &["a"])[..]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = decode("orders", 2, 5, bytes.freeze()).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::CorruptBatch {
                    partition: 2,
                    offset: 5,
                    source: BatchError::CrcMismatch { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn write_record_formats() {
        let record = Record {
            offset: 42,
            timestamp: 0,
            key: Some(Bytes::from_static(b"user-1")),
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![],
        };
        let line = |key, offset| {
            let mut out = Vec::new();
            write_record(&mut out, 3, &record, key, offset).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(line(false, false), "hello\n");
        assert_eq!(line(true, false), "user-1\thello\n");
        assert_eq!(line(false, true), "3\t42\thello\n");
        assert_eq!(line(true, true), "3\t42\tuser-1\thello\n");

        let odd = Record {
            key: None,
            value: Some(Bytes::from_static(b"a\xffb")),
            ..record.clone()
        };
        let mut out = Vec::new();
        write_record(&mut out, 0, &odd, true, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "null\ta\u{fffd}b\n");
        let tombstone = Record {
            value: None,
            ..record
        };
        let mut out = Vec::new();
        write_record(&mut out, 0, &tombstone, false, false).unwrap();
        assert_eq!(out, b"null\n");
    }
}
