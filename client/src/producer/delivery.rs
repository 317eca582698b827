//! Delivery results shared by a batch's records: one [`BatchAck`] per batch, one
//! [`DeliveryFuture`] per record pointing into it.
//!
//! A record's outcome is its batch's outcome (the broker writes or refuses a batch whole), so
//! the sender settles a batch once and each record's future reads its own offset from the
//! batch's base offset and its index, instead of a channel per record.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::accumulator::Tp;
use super::{ProducerError, RecordMetadata};

/// The outcome of one batch: its base offset (`None` when the broker did not say, as for
/// `acks=0`) or why it failed.
pub(crate) type BatchOutcome = Result<Option<i64>, ProducerError>;

#[derive(Debug)]
enum AckState {
    /// Not settled; the wakers of the records' futures polled so far.
    Pending(Vec<Waker>),
    Settled(BatchOutcome),
}

/// One batch's settlement, shared by its records' futures.
#[derive(Debug)]
pub(crate) struct BatchAck {
    topic: String,
    partition: u32,
    state: Mutex<AckState>,
}

impl BatchAck {
    fn state(&self) -> MutexGuard<'_, AckState> {
        // A panic while holding this lock cannot leave the state half-written: every write
        // replaces it whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Settles the batch and wakes its records' futures. Only the first settlement counts.
    fn settle(&self, outcome: BatchOutcome) {
        let wakers = {
            let mut state = self.state();
            match &mut *state {
                AckState::Settled(_) => return,
                AckState::Pending(wakers) => {
                    let wakers = std::mem::take(wakers);
                    *state = AckState::Settled(outcome);
                    wakers
                }
            }
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The sender's side of a [`BatchAck`]. Dropping it unsettled (the producer went away with
/// the batch) settles the batch as [`ProducerError::Closed`], so no future waits forever.
#[derive(Debug)]
pub(crate) struct Completion(Arc<BatchAck>);

impl Completion {
    pub fn new(tp: &Tp) -> Self {
        Completion(Arc::new(BatchAck {
            topic: tp.topic.clone(),
            partition: tp.partition,
            state: Mutex::new(AckState::Pending(Vec::new())),
        }))
    }

    /// The future of the record at `index` in this batch, written at `timestamp`.
    pub fn future(&self, index: usize, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture(Inner::Batch {
            ack: self.0.clone(),
            index: index as i64,
            timestamp,
            waker: None,
        })
    }

    pub fn settle(self, outcome: BatchOutcome) {
        self.0.settle(outcome);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.0.settle(Err(ProducerError::Closed));
    }
}

/// Resolves to where a record was written, or why it was not. Returned by
/// [`Producer::enqueue`](super::Producer::enqueue) once the record is in the buffer.
#[derive(Debug)]
pub struct DeliveryFuture(Inner);

#[derive(Debug)]
enum Inner {
    Batch {
        ack: Arc<BatchAck>,
        index: i64,
        timestamp: i64,
        /// Where this future's waker sits in the batch's list, once registered.
        waker: Option<usize>,
    },
    /// Refused before it reached a batch (unknown topic or partition); taken when polled.
    Failed(Option<ProducerError>),
}

impl DeliveryFuture {
    pub(crate) fn failed(error: ProducerError) -> Self {
        DeliveryFuture(Inner::Failed(Some(error)))
    }

    /// True for the first record of a batch: its append opened the batch.
    pub(crate) fn opened_batch(&self) -> bool {
        matches!(self.0, Inner::Batch { index: 0, .. })
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProducerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Inner::Failed(error) => Poll::Ready(Err(error.take().unwrap_or(ProducerError::Closed))),
            Inner::Batch {
                ack,
                index,
                timestamp,
                waker,
            } => {
                let mut state = ack.state();
                match &mut *state {
                    AckState::Settled(Ok(base_offset)) => Poll::Ready(Ok(RecordMetadata {
                        topic: ack.topic.clone(),
                        partition: ack.partition,
                        offset: base_offset.map(|base| base + *index),
                        timestamp: *timestamp,
                    })),
                    AckState::Settled(Err(error)) => Poll::Ready(Err(error.clone())),
                    AckState::Pending(wakers) => {
                        match waker.and_then(|slot| wakers.get_mut(slot)) {
                            Some(registered) if registered.will_wake(cx.waker()) => {}
                            Some(registered) => registered.clone_from(cx.waker()),
                            None => {
                                *waker = Some(wakers.len());
                                wakers.push(cx.waker().clone());
                            }
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tp() -> Tp {
        Tp {
            topic: "orders".into(),
            partition: 3,
        }
    }

    fn poll(
        future: &mut DeliveryFuture,
        waker: &Waker,
    ) -> Poll<Result<RecordMetadata, ProducerError>> {
        Pin::new(future).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn each_record_reads_its_offset_from_the_batch_base() {
        let completion = Completion::new(&tp());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut futures: Vec<DeliveryFuture> = (0..3)
            .map(|i| completion.future(i, 100 + i as i64))
            .collect();
        for future in &mut futures {
            assert!(poll(future, &waker).is_pending());
        }
        // Polling again with the same waker registers nothing new.
        assert!(poll(&mut futures[0], &waker).is_pending());
        completion.settle(Ok(Some(40)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
        let got: Vec<RecordMetadata> = futures
            .iter_mut()
            .map(|f| match poll(f, &waker) {
                Poll::Ready(Ok(meta)) => meta,
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<RecordMetadata> = (0..3)
            .map(|i| RecordMetadata {
                topic: "orders".into(),
                partition: 3,
                offset: Some(40 + i),
                timestamp: 100 + i,
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_failed_batch_fails_every_record_and_later_settlements_are_ignored() {
        let completion = Completion::new(&tp());
        let mut first = completion.future(0, 1);
        let mut second = completion.future(1, 1);
        let ack = match &first.0 {
            Inner::Batch { ack, .. } => ack.clone(),
            Inner::Failed(_) => unreachable!(),
        };
        completion.settle(Err(ProducerError::Abandoned {
            topic: "orders".into(),
            partition: 3,
        }));
        ack.settle(Ok(Some(1)));
        let waker = Waker::noop();
        for future in [&mut first, &mut second] {
            match poll(future, waker) {
                Poll::Ready(Err(ProducerError::Abandoned { topic, partition })) => {
                    assert_eq!((topic.as_str(), partition), ("orders", 3));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_dropped_completion_settles_as_closed_and_acks_0_has_no_offset() {
        let completion = Completion::new(&tp());
        let mut future = completion.future(5, 9);
        drop(completion);
        assert!(matches!(
            poll(&mut future, Waker::noop()),
            Poll::Ready(Err(ProducerError::Closed))
        ));
        let completion = Completion::new(&tp());
        let mut future = completion.future(5, 9);
        completion.settle(Ok(None));
        match poll(&mut future, Waker::noop()) {
            Poll::Ready(Ok(meta)) => assert_eq!((meta.offset, meta.timestamp), (None, 9)),
            other => panic!("{other:?}"),
        }
        let mut refused = DeliveryFuture::failed(ProducerError::Closed);
        assert!(matches!(
            poll(&mut refused, Waker::noop()),
            Poll::Ready(Err(ProducerError::Closed))
        ));
    }
}
