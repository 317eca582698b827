//! A fake broker for what the real one cannot do: it serves the `Broker` gRPC service on its
//! own port and forwards every call to a real in-process broker, except that it can be told
//! to answer produce requests with error codes. A single-node broker never returns
//! `NOT_LEADER` nor `NOT_ENOUGH_REPLICAS` (it leads every partition and is the whole ISR), so
//! the producer's retry of those codes can only be tested through this fake. It also counts
//! the calls it forwarded, so a test knows when a consumer has its start offsets.
//!
//! The metadata it forwards names the real broker as the only one; with a single broker the
//! client sends everything to its bootstrap connection, that is, to this fake.

// Each test crate uses a different part of the fake.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use brook_proto::v1::broker_client::BrokerClient;
use brook_proto::v1::broker_server::{Broker, BrokerServer};
use brook_proto::v1::*;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Largest message forwarded either way.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What the fake does with one produce request after forwarding it to the broker (see
/// [`FakeBroker::script_produce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterForward {
    /// Return the broker's answer.
    Answer,
    /// Drop the broker's answer and fail the call with `Unavailable`: a lost response, the
    /// batches are written.
    LoseAsUnavailable,
    /// Drop the broker's answer and report this code for every partition: the batches are
    /// written but the client is told otherwise.
    LoseAsCode(ErrorCode),
    /// Return the broker's answer after this long: a slow round trip.
    AnswerAfter(std::time::Duration),
}

struct State {
    upstream: BrokerClient<Channel>,
    produce_faults: Mutex<VecDeque<ErrorCode>>,
    produce_script: Mutex<VecDeque<AfterForward>>,
    metadata_requests: AtomicUsize,
    produce_requests: AtomicUsize,
    list_offsets_requests: AtomicUsize,
    /// Partitions of each fetch request being served, by request number.
    fetches_in_flight: Mutex<std::collections::BTreeMap<usize, usize>>,
    fetch_requests: AtomicUsize,
}

/// Takes a fetch off [`State::fetches_in_flight`] when it is answered or cancelled (the
/// client resetting the stream drops the handler).
struct FetchInFlight(Arc<State>, usize);

impl Drop for FetchInFlight {
    fn drop(&mut self) {
        self.0.fetches_in_flight.lock().unwrap().remove(&self.1);
    }
}

/// A running fake in front of a real broker; stops serving when dropped.
pub struct FakeBroker {
    state: Arc<State>,
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl FakeBroker {
    /// Starts a fake on an ephemeral port, forwarding to the broker at `upstream`.
    pub async fn start(upstream: SocketAddr) -> FakeBroker {
        let channel = Channel::from_shared(format!("http://{upstream}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: BrokerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            produce_faults: Mutex::new(VecDeque::new()),
            produce_script: Mutex::new(VecDeque::new()),
            metadata_requests: AtomicUsize::new(0),
            produce_requests: AtomicUsize::new(0),
            list_offsets_requests: AtomicUsize::new(0),
            fetches_in_flight: Mutex::new(std::collections::BTreeMap::new()),
            fetch_requests: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let service = BrokerServer::new(Service(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeBroker {
            state,
            addr,
            stop: Some(stop),
        }
    }

    /// The next produce requests, one per code, are answered with that code for every
    /// partition (message `injected`) instead of being forwarded: nothing is appended.
    pub fn fail_produce(&self, codes: &[ErrorCode]) {
        self.state
            .produce_faults
            .lock()
            .unwrap()
            .extend(codes.iter().copied());
    }

    /// The next produce requests (after those [`FakeBroker::fail_produce`] fails) are
    /// forwarded to the broker and then answered as the steps say, one step per request.
    pub fn script_produce(&self, steps: &[AfterForward]) {
        self.state
            .produce_script
            .lock()
            .unwrap()
            .extend(steps.iter().copied());
    }

    /// Drops the faults [`FakeBroker::fail_produce`] queued that were not used yet.
    pub fn clear_produce_faults(&self) {
        self.state.produce_faults.lock().unwrap().clear();
    }

    /// Metadata requests answered.
    pub fn metadata_requests(&self) -> usize {
        self.state.metadata_requests.load(Ordering::SeqCst)
    }

    /// Produce requests received, failed or forwarded.
    pub fn produce_requests(&self) -> usize {
        self.state.produce_requests.load(Ordering::SeqCst)
    }

    /// ListOffsets requests answered.
    pub fn list_offsets_requests(&self) -> usize {
        self.state.list_offsets_requests.load(Ordering::SeqCst)
    }

    /// The partition count of each fetch request being served now, smallest first.
    pub fn fetches_in_flight(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = (self.state.fetches_in_flight.lock().unwrap())
            .values()
            .copied()
            .collect();
        sizes.sort_unstable();
        sizes
    }
}

struct Service(Arc<State>);

impl Service {
    fn upstream(&self) -> BrokerClient<Channel> {
        self.0.upstream.clone()
    }
}

#[tonic::async_trait]
impl Broker for Service {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        self.0.produce_requests.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        let fault = self.0.produce_faults.lock().unwrap().pop_front();
        let Some(fault) = fault else {
            let step = self.0.produce_script.lock().unwrap().pop_front();
            let answer = forward(self.upstream().produce(request).await);
            if let Some(AfterForward::AnswerAfter(delay)) = step {
                tokio::time::sleep(delay).await;
            }
            return match (step, answer) {
                (None | Some(AfterForward::Answer | AfterForward::AnswerAfter(_)), answer)
                | (_, answer @ Err(_)) => answer,
                (Some(AfterForward::LoseAsUnavailable), Ok(_)) => {
                    Err(Status::unavailable("injected: response lost"))
                }
                (Some(AfterForward::LoseAsCode(code)), Ok(response)) => {
                    Ok(Response::new(answer_all(response.into_inner(), code)))
                }
            };
        };
        let topics = request
            .topics
            .into_iter()
            .map(|t| TopicProduceResponse {
                topic: t.topic,
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionProduceResponse {
                        partition: p.partition,
                        error_code: fault as i32,
                        error_message: "injected".into(),
                        base_offset: -1,
                        log_append_time_ms: -1,
                        log_start_offset: 0,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ProduceResponse { topics }))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let request = request.into_inner();
        let n = self.0.fetch_requests.fetch_add(1, Ordering::SeqCst);
        let partitions = request.topics.iter().map(|t| t.partitions.len()).sum();
        self.0
            .fetches_in_flight
            .lock()
            .unwrap()
            .insert(n, partitions);
        let _in_flight = FetchInFlight(self.0.clone(), n);
        forward(self.upstream().fetch(request).await)
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let response = forward(self.upstream().list_offsets(request.into_inner()).await);
        // Counted once the broker answered: a test waiting for the count knows the offsets
        // the consumer starts from.
        self.0.list_offsets_requests.fetch_add(1, Ordering::SeqCst);
        response
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        self.0.metadata_requests.fetch_add(1, Ordering::SeqCst);
        forward(self.upstream().metadata(request.into_inner()).await)
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        forward(self.upstream().init_producer_id(request.into_inner()).await)
    }

    async fn offset_for_leader_epoch(
        &self,
        request: Request<OffsetForLeaderEpochRequest>,
    ) -> Result<Response<OffsetForLeaderEpochResponse>, Status> {
        forward(
            self.upstream()
                .offset_for_leader_epoch(request.into_inner())
                .await,
        )
    }
}

/// The broker's answer as this fake's own (its message only, not the broker's headers).
fn forward<T>(answer: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    answer.map(|response| Response::new(response.into_inner()))
}

/// `response` with every partition's outcome replaced by `code`.
fn answer_all(mut response: ProduceResponse, code: ErrorCode) -> ProduceResponse {
    for partition in response.topics.iter_mut().flat_map(|t| &mut t.partitions) {
        partition.error_code = code as i32;
        partition.error_message = "injected".into();
        partition.base_offset = -1;
    }
    response
}
