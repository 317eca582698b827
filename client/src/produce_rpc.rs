//! The Produce RPC without copying record batches.
//!
//! tonic's codec encodes a message into one contiguous buffer, so each record batch would be
//! copied once more between the producer's batch and the socket (growing that buffer copies
//! it again). In profiles of `brook-bench` that copy was the producer's largest single cost.
//! Here the request is framed by hand instead: prost encodes every field except the batches
//! into small chunks, and each batch's [`Bytes`] goes into the HTTP/2 body as it is. The
//! answer is decoded by tonic's own [`Streaming`], so status and trailer handling are
//! tonic's.
//!
//! Protobuf lets a message's fields come in any order, so each message is written as
//! "prost's encoding of the message without its repeated or batch field" followed by that
//! field; the broker's prost decoder reads it like any other encoding.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::connection::Transport;
use brook_proto::v1::{PartitionProduceData, ProduceRequest, ProduceResponse, TopicProduceData};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderValue, Method, Uri, Version};
use http_body::{Frame, SizeHint};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tonic::client::GrpcService;
use tonic::codec::{Codec, Streaming};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// The method's HTTP/2 path.
const PRODUCE_PATH: &str = "/brook.v1.Broker/Produce";

/// Field numbers in proto/brook/v1/broker.proto.
const REQUEST_TOPICS: u32 = 3;
const TOPIC_PARTITIONS: u32 = 2;
const PARTITION_RECORDS: u32 = 2;

/// gRPC's message prefix: a compression flag and a big-endian length.
const GRPC_PREFIX: usize = 5;

/// Batches shorter than this are copied into the surrounding chunk: a separate HTTP/2 write
/// of a few bytes costs more than the copy.
const COPY_BELOW: usize = 4096;

/// Sends `request` over `channel` and returns the broker's answer. `max_bytes` bounds both
/// the request and the answer, like tonic's `max_{en,de}coding_message_size`.
pub(crate) async fn produce(
    channel: &mut Transport,
    request: &ProduceRequest,
    max_bytes: usize,
) -> Result<ProduceResponse, Status> {
    let body = encode(request);
    let len = body.len - GRPC_PREFIX;
    if len > max_bytes {
        return Err(Status::out_of_range(format!(
            "Error, encoded message length too large: found {len} bytes, the limit is: {max_bytes} bytes"
        )));
    }
    let mut http = http::Request::new(tonic::body::Body::new(body));
    *http.method_mut() = Method::POST;
    *http.uri_mut() = Uri::from_static(PRODUCE_PATH);
    *http.version_mut() = Version::HTTP_2;
    let headers = http.headers_mut();
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));

    std::future::poll_fn(|cx| GrpcService::poll_ready(channel, cx))
        .await
        .map_err(|err| Status::from_error(err.into()))?;
    let response = GrpcService::call(channel, http)
        .await
        .map_err(|err| Status::from_error(err.into()))?;

    // As tonic's client does: a `grpc-status` in the headers is a trailers-only answer.
    let trailers_only = match Status::from_header_map(response.headers()) {
        Some(status) if status.code() != Code::Ok => return Err(status),
        Some(_) => true,
        None => false,
    };
    let status_code = response.status();
    let decoder = ProstCodec::<ProduceRequest, ProduceResponse>::default().decoder();
    let body = response.into_body();
    let mut answer = if trailers_only {
        Streaming::new_empty(decoder, body)
    } else {
        Streaming::new_response(decoder, body, status_code, None, Some(max_bytes))
    };
    let message = answer
        .message()
        .await?
        .ok_or_else(|| Status::internal("Missing response message."))?;
    answer.trailers().await?;
    Ok(message)
}

/// An HTTP/2 request body made of ready chunks.
#[derive(Debug)]
struct ChunkBody {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
    }
}

/// Collects small pieces into one buffer and large batches as chunks of their own.
struct Chunks {
    small: BytesMut,
    out: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    fn bytes(&mut self, batch: &Bytes) {
        self.len += batch.len();
        if batch.len() < COPY_BELOW {
            self.small.extend_from_slice(batch);
        } else {
            if !self.small.is_empty() {
                self.out.push_back(self.small.split().freeze());
            }
            self.out.push_back(batch.clone());
        }
    }

    fn put(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let before = self.small.len();
        write(&mut self.small);
        self.len += self.small.len() - before;
    }

    fn field_header(&mut self, tag: u32, len: usize) {
        self.put(|buf| {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
        });
    }

    fn message(&mut self, message: &impl Message) {
        self.put(|buf| message.encode_raw(buf));
    }
}

/// Length of a length-delimited field holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn partition_head(partition: &PartitionProduceData) -> PartitionProduceData {
    PartitionProduceData {
        partition: partition.partition,
        records: Bytes::new(),
    }
}

fn partition_len(partition: &PartitionProduceData) -> usize {
    let records = &partition.records;
    partition_head(partition).encoded_len()
        + if records.is_empty() {
            0
        } else {
            field_len(PARTITION_RECORDS, records.len())
        }
}

fn topic_head(topic: &TopicProduceData) -> TopicProduceData {
    TopicProduceData {
        topic: topic.topic.clone(),
        partitions: Vec::new(),
    }
}

fn topic_len(topic: &TopicProduceData) -> usize {
    topic_head(topic).encoded_len()
        + topic
            .partitions
            .iter()
            .map(|p| field_len(TOPIC_PARTITIONS, partition_len(p)))
            .sum::<usize>()
}

/// The gRPC message (prefix and protobuf) of `request`, batches by reference.
fn encode(request: &ProduceRequest) -> ChunkBody {
    let head = ProduceRequest {
        acks: request.acks,
        timeout_ms: request.timeout_ms,
        topics: Vec::new(),
    };
    let topic_lens: Vec<usize> = request.topics.iter().map(topic_len).collect();
    let len = head.encoded_len()
        + topic_lens
            .iter()
            .map(|&l| field_len(REQUEST_TOPICS, l))
            .sum::<usize>();
    let mut chunks = Chunks {
        small: BytesMut::with_capacity(256),
        out: VecDeque::new(),
        len: 0,
    };
    chunks.put(|buf| {
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    });
    chunks.message(&head);
    for (topic, topic_len) in request.topics.iter().zip(topic_lens) {
        chunks.field_header(REQUEST_TOPICS, topic_len);
        chunks.message(&topic_head(topic));
        for partition in &topic.partitions {
            chunks.field_header(TOPIC_PARTITIONS, partition_len(partition));
            chunks.message(&partition_head(partition));
            if !partition.records.is_empty() {
                chunks.field_header(PARTITION_RECORDS, partition.records.len());
                chunks.bytes(&partition.records);
            }
        }
    }
    if !chunks.small.is_empty() {
        let last = chunks.small.split().freeze();
        chunks.out.push_back(last);
    }
    debug_assert_eq!(chunks.len, GRPC_PREFIX + len);
    ChunkBody {
        chunks: chunks.out,
        len: chunks.len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(batches: &[(&str, u32, usize)]) -> ProduceRequest {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for &(topic, partition, size) in batches {
            let data = PartitionProduceData {
                partition,
                records: Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>()),
            };
            match topics.iter_mut().find(|t| t.topic == topic) {
                Some(t) => t.partitions.push(data),
                None => topics.push(TopicProduceData {
                    topic: topic.into(),
                    partitions: vec![data],
                }),
            }
        }
        ProduceRequest {
            acks: 2,
            timeout_ms: 30_000,
            topics,
        }
    }

    fn joined(body: &ChunkBody) -> Vec<u8> {
        body.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn the_body_is_the_grpc_message_prost_would_send() {
        let cases = [
            request(&[]),
            request(&[("t", 0, 10)]),
            request(&[("t", 0, 0)]),
            request(&[("t", 0, 100_000), ("t", 3, 5), ("u", 1, 300_000)]),
            request(&[("a", 0, 4095), ("a", 1, 4096), ("b", 200, 70_000)]),
        ];
        for request in cases {
            let body = encode(&request);
            let bytes = joined(&body);
            let expected = request.encode_to_vec();
            assert_eq!(bytes.len(), GRPC_PREFIX + expected.len());
            assert_eq!(body.len, bytes.len());
            assert_eq!(bytes[0], 0, "not compressed");
            assert_eq!(
                u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize,
                expected.len()
            );
            // Fields in tag order, as prost writes them: the same bytes.
            assert_eq!(&bytes[GRPC_PREFIX..], &expected[..]);
            assert_eq!(
                ProduceRequest::decode(&bytes[GRPC_PREFIX..]).unwrap(),
                request
            );
        }
    }

    #[test]
    fn large_batches_are_sent_without_a_copy() {
        let request = request(&[("t", 0, 100_000), ("t", 1, 10), ("t", 2, 8192)]);
        let body = encode(&request);
        let shared: Vec<bool> = body
            .chunks
            .iter()
            .map(|chunk| {
                request.topics[0]
                    .partitions
                    .iter()
                    .any(|p| p.records.as_ptr() == chunk.as_ptr())
            })
            .collect();
        // head, batch 0, (head of 1, batch 1 copied, head of 2), batch 2.
        assert_eq!(shared, vec![false, true, false, true]);
    }
}
