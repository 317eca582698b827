//! Idempotent produce over gRPC: InitProducerId, duplicate sends across a broker restart,
//! out-of-order and fenced batches.

mod server_common;

use brook_proto::BatchBuilder;
use brook_proto::v1::*;
use bytes::Bytes;
use server_common::*;

fn idem_batch(producer_id: i64, epoch: i32, seq: i32, values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new().producer(producer_id, epoch as i16, seq);
    for v in values {
        b.append(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.build()
}

async fn init(c: &mut Clients, producer_id: i64, epoch: i32) -> InitProducerIdResponse {
    c.broker
        .init_producer_id(InitProducerIdRequest {
            producer_id,
            producer_epoch: epoch,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn send(c: &mut Clients, records: Bytes) -> PartitionProduceResponse {
    let res = c
        .broker
        .produce(produce_request("t", 0, records))
        .await
        .unwrap()
        .into_inner();
    res.topics[0].partitions[0].clone()
}

#[tokio::test]
async fn duplicate_sends_across_a_restart_leave_exactly_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    create_topic(&mut c, "t", 1, &[]).await;
    let id = init(&mut c, -1, -1).await;
    assert_eq!((id.error_code(), id.producer_epoch), (ErrorCode::None, 0));
    let batches: Vec<Bytes> = (0..4)
        .map(|i| idem_batch(id.producer_id, 0, i * 2, &values(&format!("b{i}"), 2)))
        .collect();
    for (i, batch) in batches.iter().enumerate() {
        let out = send(&mut c, batch.clone()).await;
        assert_eq!(
            (out.error_code(), out.base_offset),
            (ErrorCode::None, i as i64 * 2)
        );
    }
    // Responses "lost": resend the last two, before and after a restart.
    assert_eq!(send(&mut c, batches[3].clone()).await.base_offset, 6);
    b.shutdown();
    b.wait().await.unwrap();
    let b = start(config(dir.path())).await;
    let mut c = clients(&b).await;
    for (i, batch) in batches.iter().enumerate().skip(2) {
        let out = send(&mut c, batch.clone()).await;
        assert_eq!(
            (out.error_code(), out.base_offset),
            (ErrorCode::None, i as i64 * 2),
            "resend {i}"
        );
    }
    let got: Vec<String> = read_partition(&mut c, "t", 0, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    let want: Vec<String> = (0..4).flat_map(|i| values(&format!("b{i}"), 2)).collect();
    assert_eq!(got, want, "exactly one copy of each record");

    // A gap is refused; a bumped epoch fences the old one.
    let gap = send(&mut c, idem_batch(id.producer_id, 0, 20, &values("gap", 1))).await;
    assert_eq!(gap.error_code(), ErrorCode::OutOfOrderSequence);
    assert_eq!(
        gap.error_message,
        format!(
            "producer {} epoch 0: sequence 20 is out of order, expected 8",
            id.producer_id
        )
    );
    let bumped = init(&mut c, id.producer_id, 0).await;
    assert_eq!(
        (bumped.producer_id, bumped.producer_epoch),
        (id.producer_id, 1)
    );
    assert_eq!(
        send(&mut c, idem_batch(id.producer_id, 1, 0, &values("new", 1)))
            .await
            .base_offset,
        8
    );
    let fenced = send(&mut c, idem_batch(id.producer_id, 0, 8, &values("old", 1))).await;
    assert_eq!(fenced.error_code(), ErrorCode::InvalidProducerEpoch);
    let unknown = init(&mut c, 999_999, 0).await;
    assert_eq!(unknown.error_code(), ErrorCode::UnknownProducerId);
    b.shutdown();
    b.wait().await.unwrap();
}
