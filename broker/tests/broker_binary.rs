//! The real `brook-broker` binary: start-up line, flags and environment, exit codes,
//! SIGTERM shutdown, and SIGKILL durability with flush=always.

mod server_common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brook_proto::v1::ErrorCode;
use brook_proto::v1::admin_client::AdminClient;
use brook_proto::v1::broker_client::BrokerClient;
use server_common::*;

struct Broker {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

fn spawn(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Broker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook-broker"));
    cmd.args([
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])
    .args(extra)
    .env("BROOK_LOGGING_LEVEL", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start brook-broker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let rest = line
        .trim()
        .strip_prefix("brook-broker listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (grpc, http) = rest.split_once(' ').unwrap();
    Broker {
        child,
        grpc: grpc.strip_prefix("grpc=").unwrap().parse().unwrap(),
        http: http.strip_prefix("http=").unwrap().parse().unwrap(),
    }
}

async fn connect(b: &Broker) -> Clients {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", b.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients {
        broker: BrokerClient::new(channel.clone()),
        admin: AdminClient::new(channel),
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_data_persists() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = spawn(dir.path(), &[], &[]);
    let mut c = connect(&b).await;
    create_topic(&mut c, "t", 2, &[]).await;
    assert_eq!(
        produce(&mut c, "t", 1, &values("v", 5)).await.base_offset,
        0
    );
    assert_eq!(http_get(b.http, "/ready").await.0, 200);
    signal(&b.child, "-TERM");
    let status = b.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let mut b = spawn(dir.path(), &[], &[]);
    let mut c = connect(&b).await;
    let got: Vec<String> = read_partition(&mut c, "t", 1, 0)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(got, values("v", 5));
    signal(&b.child, "-INT");
    assert_eq!(b.child.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_flush_always_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("BROOK_LOG_FLUSH", "always")];
    let mut acked: Vec<(u32, i64, String)> = Vec::new();
    for round in 0..5u32 {
        let mut b = spawn(dir.path(), &env, &[]);
        let mut c = connect(&b).await;
        if round == 0 {
            create_topic(&mut c, "durable", 2, &[]).await;
        }
        // Two producers race; the broker is killed while they are mid-flight.
        let mut tasks = Vec::new();
        for w in 0..2u32 {
            let mut c = connect(&b).await;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0.. {
                    let tag = format!("r{round}-w{w}-{i}");
                    let res = c
                        .broker
                        .produce(produce_request(
                            "durable",
                            w,
                            batch(std::slice::from_ref(&tag)),
                        ))
                        .await;
                    match res {
                        Ok(r)
                            if r.get_ref().topics[0].partitions[0].error_code()
                                == ErrorCode::None =>
                        {
                            mine.push((w, r.get_ref().topics[0].partitions[0].base_offset, tag));
                        }
                        _ => break,
                    }
                }
                mine
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + 70 * u64::from(round))).await;
        signal(&b.child, "-KILL");
        let status = b.child.wait().unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        // Restart and check every acknowledged record.
        let mut b = spawn(dir.path(), &env, &[]);
        let mut c = connect(&b).await;
        for p in 0..2 {
            let stored = read_partition(&mut c, "durable", p, 0).await;
            for (_, offset, tag) in acked.iter().filter(|a| a.0 == p) {
                assert_eq!(
                    stored.get(*offset as usize),
                    Some(&(*offset, tag.clone())),
                    "round {round}: acked {tag} at {offset}"
                );
            }
        }
        signal(&b.child, "-KILL");
        b.child.wait().unwrap();
    }
    assert!(
        acked.len() > 20,
        "only {} acknowledged records",
        acked.len()
    );
}

#[test]
fn invalid_configuration_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brook-broker"))
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[("BROOK_SERVER_MAX_CONNECTIONS", "0")], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("server.max_connections = 0 is out of range: must be between 1 and 100000"),
        "{err}"
    );
    let (code, err) = run(&[], &["--config", "/nonexistent/brook.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/brook.toml"), "{err}");
    let (code, err) = run(&[("BROOK_LOG_FLUSH", "sometimes")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("sometimes"), "{err}");
    let (code, _) = run(&[], &["--listen", "not-an-address"]);
    assert_eq!(code, Some(2));
    // Cluster seeds: malformed, repeated, or without this broker.
    let (code, err) = run(&[], &["--seeds", "1@127.0.0.1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("entry \"1@127.0.0.1\": address \"127.0.0.1\" is not host:port"),
        "{err}"
    );
    let (code, err) = run(&[], &["--seeds", "1@127.0.0.1:1,1@127.0.0.1:2"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("node id 1 is given twice"), "{err}");
    let (code, err) = run(&[], &["--node-id", "4", "--seeds", "1@127.0.0.1:1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("server.node_id = 4 is not among cluster.voters (1@127.0.0.1:1)"),
        "{err}"
    );
}

/// A broker holding topics it made alone refuses to join a cluster rather than hide or
/// delete them, and starts again alone with its data intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_with_standalone_topics_cannot_join_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = spawn(dir.path(), &[], &[]);
    let mut c = connect(&b).await;
    create_topic(&mut c, "mine", 1, &[]).await;
    signal(&b.child, "-TERM");
    assert_eq!(b.child.wait().unwrap().code(), Some(0));
    let out = Command::new(env!("CARGO_BIN_EXE_brook-broker"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--seeds", "1@127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "the data directory holds topics created outside a cluster (__consumer_offsets, mine)"
        ),
        "{err}"
    );
    let mut b = spawn(dir.path(), &[], &[]);
    let mut c = connect(&b).await;
    let md = c
        .broker
        .metadata(brook_proto::v1::MetadataRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.topics.len(), 1);
    assert_eq!(md.topics[0].name, "mine");
    signal(&b.child, "-TERM");
    assert_eq!(b.child.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_file_starts_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/brook-broker.example.toml");
    let mut b = spawn(dir.path(), &[], &["--config", example, "--node-id", "7"]);
    let mut c = connect(&b).await;
    let md = c
        .broker
        .metadata(brook_proto::v1::MetadataRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.brokers[0].node_id, 7);
    signal(&b.child, "-TERM");
    assert_eq!(b.child.wait().unwrap().code(), Some(0));
}
