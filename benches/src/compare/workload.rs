//! Workloads in the style of the OpenMessaging Benchmark, and the loops that measure them.
//!
//! - **produce**: `producers` tasks send `size`-byte messages at the maximum rate, or at a
//!   fixed total rate. Fixed rates are *open loop*: message `i` is due at `start + i/rate`
//!   whether or not earlier sends have finished, and its latency counts from when it was due,
//!   so a stall is charged to every message it delayed (coordinated omission corrected).
//!   Latency is the produce acknowledgement's.
//! - **consume**: the topic is filled first (untimed); `consumers` tasks then read it from the
//!   beginning, each its share of the partitions; timed from the first message to the last.
//! - **end-to-end**: consumers reading while producers send; latency from the message's due
//!   time (carried in its first 8 bytes) to its receipt.
//! - **group-end-to-end**: the same with the consumers as one consumer group's members.
//!
//! The first `warmup` of sending is not measured; then `duration` is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::driver::{Ack, AnyConsumer, ProducerSettings, Target};

/// What a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Producers only.
    Produce,
    /// Consumers of a pre-filled topic only.
    Consume,
    /// Producers and assigned consumers at once.
    EndToEnd,
    /// Producers and a consumer group at once.
    GroupEndToEnd,
}

impl Kind {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
            Kind::EndToEnd => "end-to-end",
            Kind::GroupEndToEnd => "group-end-to-end",
        }
    }
}

/// One workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Name in reports.
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// Message payload bytes (at least 8: the due time travels in the first 8).
    pub size: usize,
    /// Topic partitions.
    pub partitions: u32,
    /// Producer tasks, each with its own client.
    pub producers: usize,
    /// Consumer tasks, each with its own client.
    pub consumers: usize,
    /// Producer batching, compression and acks.
    pub settings: ProducerSettings,
    /// Total target rate in MB/s (10^6 bytes of payload); `None`: as fast as possible.
    pub rate_mb: Option<f64>,
    /// Unmeasured time at the start.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Messages the consume workload reads (the topic is filled with as many).
    pub consume_messages: u64,
}

impl Workload {
    /// `key=value` strings describing the parameters.
    pub fn parameters(&self) -> Vec<String> {
        let s = &self.settings;
        vec![
            format!("size={}", self.size),
            format!("partitions={}", self.partitions),
            format!("producers={}", self.producers),
            format!("consumers={}", self.consumers),
            format!("batch={}", s.batch_bytes),
            format!("linger={}ms", s.linger_ms),
            format!("compression={}", s.compression),
            format!("acks={}", s.acks),
            match self.rate_mb {
                Some(r) => format!("rate={r}MB/s"),
                None => "rate=max".into(),
            },
        ]
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    /// Messages in the measured window.
    pub messages: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Latency (µs) of the window's messages, if the kind has one.
    pub latency: Option<Histogram<u64>>,
}

fn epoch_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The wall-clock time (µs since the epoch) of `t`, past or future.
fn wall_of(t: Instant) -> i64 {
    let (now, wall) = (Instant::now(), SystemTime::now());
    if t >= now {
        epoch_us(wall + (t - now))
    } else {
        epoch_us(wall - (now - t))
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// A payload of `size` bytes carrying `due_us` (µs since the epoch) in its first 8.
fn payload(filler: &Bytes, due_us: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(filler.len());
    b.put_i64_le(due_us);
    b.extend_from_slice(&filler[8..]);
    b.freeze()
}

/// The measured window: messages due inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// Shared tallies of a run.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    consumed: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl Tally {
    fn record(&self, us: u64) {
        let mut h = self.latency.lock();
        let h = h.get_or_insert_with(histogram);
        let _ = h.record(us.max(1));
    }
}

/// What the producer tasks of one run share.
#[derive(Clone)]
struct ProduceRun {
    target: Target,
    w: Workload,
    topic: String,
    start: Instant,
    window: Window,
    tally: Arc<Tally>,
    /// Record the acknowledgement latency (produce workloads; end-to-end ones record theirs
    /// at the consumers).
    ack_latency: bool,
}

/// Sends for `warmup + duration` from `start`; counts acknowledgements of messages due in
/// `window` and, when `ack_latency`, their latency.
async fn produce_loop(run: ProduceRun, index: usize) -> anyhow::Result<()> {
    let ProduceRun {
        target,
        w,
        topic,
        start,
        window,
        tally,
        ack_latency,
    } = run;
    let producer = target.producer(&w.settings).await?;
    let filler = Bytes::from(vec![b'x'; w.size.max(8)]);
    let interval = w.rate_mb.map(|mb| {
        let per_sec = mb * 1e6 / w.size as f64 / w.producers as f64;
        Duration::from_secs_f64(1.0 / per_sec)
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Ack)>();
    let acker = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some((due, ack)) => pending.push(async move { (due, ack.await) }),
                        None => break,
                    },
                    Some((due, result)) = pending.next(), if !pending.is_empty() => {
                        result?;
                        if window.contains(due) {
                            tally.acked.fetch_add(1, Ordering::Relaxed);
                            if ack_latency {
                                tally.record(due.elapsed().as_micros() as u64);
                            }
                        }
                    }
                }
            }
            while let Some((due, result)) = pending.next().await {
                result?;
                if window.contains(due) {
                    tally.acked.fetch_add(1, Ordering::Relaxed);
                    if ack_latency {
                        tally.record(due.elapsed().as_micros() as u64);
                    }
                }
            }
            anyhow::Ok(())
        })
    };
    let mut i: u64 = 0;
    loop {
        let due = match interval {
            Some(every) => {
                let due = start + every.mul_f64(i as f64);
                // Never early: a message sent before it is due would arrive "before" it was
                // sent. The timer's millisecond granularity makes sends late instead, and
                // lateness counts as latency (the schedule is the reference).
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
            None => Instant::now(),
        };
        if due >= window.end {
            break;
        }
        let key = Bytes::from(format!("k{}-{}", index, i % 1024));
        let ack = producer
            .send(&topic, Some(key), payload(&filler, wall_of(due)))
            .await?;
        let _ = tx.send((due, ack));
        i += 1;
    }
    drop(tx);
    producer.flush().await;
    acker.await.context("acker")??;
    Ok(())
}

/// Reads until `stop`, counting messages due in `window` and their end-to-end latency.
async fn consume_loop(
    mut consumer: AnyConsumer,
    window: (i64, i64),
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let now = epoch_us(SystemTime::now());
        for value in consumer.poll(Duration::from_millis(100)).await? {
            if value.len() < 8 {
                continue;
            }
            let due = i64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
            if due >= window.0 && due < window.1 {
                tally.consumed.fetch_add(1, Ordering::Relaxed);
                tally.record((now - due).max(1) as u64);
            }
        }
    }
    Ok(())
}

/// Splits `partitions` among `n` consumers, round robin.
fn shares(partitions: u32, n: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); n.max(1)];
    for p in 0..partitions {
        out[p as usize % n.max(1)].push(p);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Runs `w` against `target` on the existing, empty `topic`; `tick` is called about every
/// 100 ms with the fraction done (for a progress bar).
pub async fn run(
    target: &Target,
    w: &Workload,
    topic: &str,
    tick: impl Fn(f64),
) -> anyhow::Result<Measured> {
    match w.kind {
        Kind::Produce => produce(target, w, topic, tick).await,
        Kind::Consume => consume(target, w, topic, tick).await,
        Kind::EndToEnd | Kind::GroupEndToEnd => end_to_end(target, w, topic, tick).await,
    }
}

fn window_for(w: &Workload, start: Instant) -> Window {
    Window {
        start: start + w.warmup,
        end: start + w.warmup + w.duration,
    }
}

async fn run_producers(run: &ProduceRun, tick: &impl Fn(f64)) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..run.w.producers.max(1) {
        tasks.spawn(produce_loop(run.clone(), index));
    }
    let (start, total) = (run.start, (run.w.warmup + run.w.duration).as_secs_f64());
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(r) => r.context("producer task")??,
                None => return Ok(()),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                tick((start.elapsed().as_secs_f64() / total).min(1.0));
            }
        }
    }
}

async fn produce(
    target: &Target,
    w: &Workload,
    topic: &str,
    tick: impl Fn(f64),
) -> anyhow::Result<Measured> {
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let run = ProduceRun {
        target: target.clone(),
        w: w.clone(),
        topic: topic.to_string(),
        start,
        window: window_for(w, start),
        tally: tally.clone(),
        ack_latency: true,
    };
    run_producers(&run, &tick).await?;
    let latency = tally.latency.lock().take();
    Ok(Measured {
        messages: tally.acked.load(Ordering::Relaxed),
        seconds: w.duration.as_secs_f64(),
        latency,
    })
}

async fn consume(
    target: &Target,
    w: &Workload,
    topic: &str,
    tick: impl Fn(f64),
) -> anyhow::Result<Measured> {
    // Fill the topic, untimed: as fast as the producers go.
    let producer = target.producer(&w.settings).await?;
    let filler = Bytes::from(vec![b'x'; w.size.max(8)]);
    let mut acks = FuturesUnordered::new();
    for i in 0..w.consume_messages {
        let key = Bytes::from(format!("k{}", i % 1024));
        acks.push(producer.send(topic, Some(key), payload(&filler, 0)).await?);
        while acks.len() > 100_000 {
            acks.next().await.expect("non-empty")?;
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let total = w.consume_messages;
    let seen = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares(w.partitions, w.consumers) {
        let mut consumer = target.consumer(topic, Some(share), None).await?;
        let (seen, first) = (seen.clone(), first.clone());
        tasks.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            while seen.load(Ordering::Relaxed) < total && Instant::now() < deadline {
                let n = consumer.poll(Duration::from_millis(100)).await?.len() as u64;
                if n > 0 {
                    first.lock().get_or_insert_with(Instant::now);
                    seen.fetch_add(n, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("consumer task")??;
        tick(seen.load(Ordering::Relaxed) as f64 / total as f64);
    }
    let read = seen.load(Ordering::Relaxed);
    anyhow::ensure!(
        read >= total,
        "read {read} of {total} messages in 10 minutes"
    );
    let seconds = first.lock().map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(Measured {
        messages: total,
        seconds,
        latency: None,
    })
}

async fn end_to_end(
    target: &Target,
    w: &Workload,
    topic: &str,
    tick: impl Fn(f64),
) -> anyhow::Result<Measured> {
    let group = (w.kind == Kind::GroupEndToEnd).then(|| format!("{topic}-group"));
    let mut consumers = Vec::new();
    if let Some(group) = &group {
        for _ in 0..w.consumers.max(1) {
            consumers.push(target.consumer(topic, None, Some(group)).await?);
        }
        // Let the group settle: every partition owned before producing starts.
        let settle = Instant::now() + Duration::from_secs(30);
        loop {
            for c in &mut consumers {
                c.poll(Duration::from_millis(50)).await?;
            }
            let owned: usize = consumers.iter().map(AnyConsumer::assigned).sum();
            if owned >= w.partitions as usize || Instant::now() > settle {
                break;
            }
        }
    } else {
        for share in shares(w.partitions, w.consumers) {
            consumers.push(target.consumer(topic, Some(share), None).await?);
        }
    }
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let window = window_for(w, start);
    let wall_window = (wall_of(window.start), wall_of(window.end));
    let mut readers = tokio::task::JoinSet::new();
    for c in consumers {
        readers.spawn(consume_loop(c, wall_window, tally.clone(), stop.clone()));
    }
    let run = ProduceRun {
        target: target.clone(),
        w: w.clone(),
        topic: topic.to_string(),
        start,
        window,
        tally: tally.clone(),
        ack_latency: false,
    };
    run_producers(&run, &tick).await?;
    // Let the last messages arrive (bounded).
    let produced = tally.acked.load(Ordering::Relaxed);
    let drain = Instant::now() + Duration::from_secs(10);
    while tally.consumed.load(Ordering::Relaxed) < produced && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = readers.join_next().await {
        r.context("consumer task")??;
    }
    let latency = tally.latency.lock().take();
    Ok(Measured {
        messages: tally.consumed.load(Ordering::Relaxed),
        seconds: w.duration.as_secs_f64(),
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_shared_round_robin() {
        assert_eq!(shares(4, 2), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(shares(2, 4), vec![vec![0], vec![1]]);
        assert_eq!(shares(3, 1), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn payload_carries_the_due_time_and_keeps_its_size() {
        let filler = Bytes::from(vec![b'x'; 1024]);
        let p = payload(&filler, 1_700_000_000_123_456);
        assert_eq!(p.len(), 1024);
        assert_eq!(
            i64::from_le_bytes(p[..8].try_into().unwrap()),
            1_700_000_000_123_456
        );
        assert!(p[8..].iter().all(|&b| b == b'x'));
    }

    #[test]
    fn window_holds_its_start_but_not_its_end() {
        let start = Instant::now();
        let w = Window {
            start,
            end: start + Duration::from_secs(1),
        };
        assert!(w.contains(start));
        assert!(!w.contains(start + Duration::from_secs(1)));
        assert!(!w.contains(start - Duration::from_millis(1)));
    }
}
