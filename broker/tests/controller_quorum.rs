//! The controller quorum: three voters in this process, each serving the quorum's gRPC service
//! on its own 127.0.0.1 port with its data in a temporary directory. They elect a leader,
//! agree on every command, fail over when the leader stops, and a restarted voter catches up
//! from its own files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brook_broker::cluster::controller::{Controller, ControllerConfig, ControllerError};
use brook_broker::cluster::metadata::{ClusterMetadata, Command, LeaderChange};
use brook_broker::cluster::network::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// One running voter: its controller and the server in front of it.
struct Voter {
    controller: Controller,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Voter {
    async fn start(
        id: u64,
        voters: &BTreeMap<u64, String>,
        dir: &Path,
        listener: TcpListener,
    ) -> Voter {
        let mut config = ControllerConfig::new(id, voters.clone(), dir.to_path_buf());
        // Shorter than the defaults to keep the test quick, long enough that a loaded CI
        // machine does not start spurious elections.
        config.heartbeat_ms = 100;
        config.election_timeout_ms = (800, 1600);
        let controller = Controller::start(config)
            .await
            .expect("the controller starts");
        let stop = CancellationToken::new();
        let service = controller.service().into_server();
        let cancelled = stop.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), cancelled)
                .await
                .expect("the quorum server runs");
        });
        Voter {
            controller,
            stop,
            server,
        }
    }

    async fn stop(self) {
        self.controller.shutdown().await;
        self.stop.cancel();
        self.server.await.unwrap();
    }
}

/// Waits until every voter in `voters` names the same leader, one of them; returns its id.
async fn agreed_leader(voters: &BTreeMap<u64, Voter>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<u64>> = voters.values().map(|v| v.controller.leader()).collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
            && voters.contains_key(leader)
        {
            return *leader;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every voter's metadata equals `want`.
async fn converged(voters: &BTreeMap<u64, Voter>, want: &ClusterMetadata) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let behind: Vec<u64> = (voters.iter())
            .filter(|(_, v)| v.controller.metadata() != *want)
            .map(|(&id, _)| id)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "voters {behind:?} did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits `command` to whichever voter leads, following leader changes (10 s at most).
async fn submit(
    voters: &BTreeMap<u64, Voter>,
    command: Command,
) -> Result<Vec<LeaderChange>, ControllerError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leader = agreed_leader(voters).await;
        match voters[&leader].controller.submit(command.clone()).await {
            Err(ControllerError::NotController { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

fn register(node: i32) -> Command {
    Command::RegisterBroker {
        node,
        address: format!("127.0.0.1:{}", 7400 + node),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_agree_fail_over_and_a_restarted_voter_catches_up() {
    let data = tempfile::tempdir().unwrap();
    let mut listeners = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, listener.local_addr().unwrap().to_string());
        listeners.insert(id, listener);
    }
    let dir = |id: u64| -> PathBuf { data.path().join(format!("voter-{id}")) };
    let mut voters = BTreeMap::new();
    for (id, listener) in listeners {
        voters.insert(id, Voter::start(id, &addrs, &dir(id), listener).await);
    }
    let leader = agreed_leader(&voters).await;

    // Commands go through the leader; the others name it.
    let follower = *voters.keys().find(|&&id| id != leader).unwrap();
    match voters[&follower].controller.submit(register(1)).await {
        Err(ControllerError::NotController {
            leader: Some((id, addr)),
        }) => assert_eq!((id, addr), (leader, addrs[&leader].clone())),
        other => panic!("a follower took a command: {other:?}"),
    }
    for node in 1..=3 {
        submit(&voters, register(node)).await.unwrap();
        submit(&voters, Command::UnfenceBroker { node })
            .await
            .unwrap();
    }
    let create = Command::CreateTopic {
        name: "orders".into(),
        replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
        unclean_leader_election: false,
        configs: Default::default(),
    };
    let changes = submit(&voters, create).await.unwrap();
    let leaders: Vec<Option<i32>> = changes.iter().map(|c| c.leader).collect();
    assert_eq!(leaders, [Some(1), Some(2)]);
    // A refused command is refused on the leader and changes nothing anywhere.
    let delete = Command::DeleteTopic {
        name: "nope".into(),
    };
    let refused = submit(&voters, delete).await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        "topic \"nope\" does not exist"
    );
    let want = voters[&agreed_leader(&voters).await].controller.metadata();
    assert_eq!(want.topics["orders"].partitions.len(), 2);
    converged(&voters, &want).await;

    // The leader stops: the other two elect one of themselves and go on.
    let leader = agreed_leader(&voters).await;
    let old = voters.remove(&leader).unwrap();
    old.stop().await;
    let next = agreed_leader(&voters).await;
    assert_ne!(next, leader);
    let changes = submit(&voters, Command::FenceBroker { node: 1 })
        .await
        .unwrap();
    assert_eq!(changes[0].leader, Some(2));
    assert_eq!(changes[0].leader_epoch, 1);
    let want = voters[&agreed_leader(&voters).await].controller.metadata();
    converged(&voters, &want).await;

    // The old leader comes back on its address with its own files and catches up.
    let listener = TcpListener::bind(&addrs[&leader]).await.unwrap();
    voters.insert(
        leader,
        Voter::start(leader, &addrs, &dir(leader), listener).await,
    );
    converged(&voters, &want).await;
    agreed_leader(&voters).await;
    for (_, v) in voters {
        v.stop().await;
    }
}

#[tokio::test]
async fn a_voter_list_without_this_node_or_empty_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let err = Controller::start(ControllerConfig::new(2, voters, dir.path().into()))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "controller configuration: node 2 is not among the voters [1]"
    );
    let err = Controller::start(ControllerConfig::new(1, BTreeMap::new(), dir.path().into()))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "controller configuration: the voter list is empty"
    );
}

#[tokio::test]
async fn a_single_voter_leads_alone_and_refuses_messages_that_do_not_decode() {
    use brook_proto::v1::RaftMessage;
    use brook_proto::v1::controller_quorum_client::ControllerQuorumClient;

    let data = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let addrs = BTreeMap::from([(7, addr.clone())]);
    let voters = BTreeMap::from([(7, Voter::start(7, &addrs, data.path(), listener).await)]);
    assert_eq!(agreed_leader(&voters).await, 7);
    submit(&voters, register(7)).await.unwrap();
    assert_eq!(
        voters[&7].controller.metadata().brokers[&7].address,
        "127.0.0.1:7407"
    );

    let mut client = ControllerQuorumClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let garbage = || RaftMessage {
        json: bytes::Bytes::from_static(b"{\"vote\": 3"),
    };
    for (rpc, status) in [
        ("AppendEntries", client.append_entries(garbage()).await),
        ("Vote", client.vote(garbage()).await),
        ("InstallSnapshot", client.install_snapshot(garbage()).await),
    ] {
        let status = status.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{rpc}");
        assert!(
            status
                .message()
                .starts_with(&format!("{rpc}: the message does not decode: ")),
            "{rpc}: {}",
            status.message()
        );
    }
    // Past the quorum's message limit: refused before decoding.
    let oversized = RaftMessage {
        json: bytes::Bytes::from(vec![b' '; MAX_MESSAGE_BYTES + 1]),
    };
    let status = client.append_entries(oversized).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    assert!(
        status.message().contains(&format!(
            "found {} bytes, the limit is: {MAX_MESSAGE_BYTES} bytes",
            MAX_MESSAGE_BYTES + 6
        )),
        "{status}"
    );
    // The voter goes on.
    submit(&voters, register(8)).await.unwrap();
    for (_, v) in voters {
        v.stop().await;
    }
}

/// Heartbeats register and unfence a broker, a silent broker is fenced after its session, a
/// stopping broker at once; Submit commits a command or names the rule that refused it; bad
/// heartbeats and undecodable commands are refused naming the value.
#[tokio::test]
async fn heartbeats_keep_brokers_live_and_bad_heartbeats_or_commands_are_refused() {
    use brook_proto::v1::controller_quorum_client::ControllerQuorumClient;
    use brook_proto::v1::{BrokerHeartbeatRequest, RaftMessage};

    let data = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let addrs = BTreeMap::from([(1, addr.clone())]);
    let voter = Voter::start(1, &addrs, data.path(), listener).await;
    let voters = BTreeMap::from([(1, voter)]);
    assert_eq!(agreed_leader(&voters).await, 1);
    let controller = &voters[&1].controller;
    let mut client = ControllerQuorumClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let beat = |node: i32, address: &str, shutting_down: bool| BrokerHeartbeatRequest {
        node_id: node,
        address: address.into(),
        shutting_down,
    };

    // First heartbeats: registered and unfenced.
    for node in [1, 2] {
        let answer = client
            .broker_heartbeat(beat(node, &format!("10.0.0.{node}:7400"), false))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.fenced);
    }
    let md = controller.metadata();
    assert_eq!(md.live_brokers(), vec![1, 2]);
    assert_eq!(md.brokers[&2].address, "10.0.0.2:7400");
    // A new address re-registers the broker.
    client
        .broker_heartbeat(beat(2, "10.0.0.22:7400", false))
        .await
        .unwrap();
    assert_eq!(controller.metadata().brokers[&2].address, "10.0.0.22:7400");

    // Silent for the session timeout (3 s by default): fenced by fence_silent, only then.
    assert!(controller.fence_silent().await.unwrap().is_empty());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        client
            .broker_heartbeat(beat(1, "10.0.0.1:7400", false))
            .await
            .unwrap();
        let fenced = controller.fence_silent().await.unwrap();
        if !fenced.is_empty() {
            assert_eq!(fenced, vec![2]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker 2 never fenced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(controller.metadata().live_brokers(), vec![1]);
    // Back with a heartbeat; fenced at once when it says it is stopping.
    client
        .broker_heartbeat(beat(2, "10.0.0.22:7400", false))
        .await
        .unwrap();
    assert_eq!(controller.metadata().live_brokers(), vec![1, 2]);
    let answer = client
        .broker_heartbeat(beat(2, "10.0.0.22:7400", true))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.fenced);
    assert_eq!(controller.metadata().live_brokers(), vec![1]);

    // Out-of-range heartbeats.
    let status = client
        .broker_heartbeat(beat(-1, "a:1", false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "BrokerHeartbeat: node id -1 is out of range: must be 0 or more"
    );
    for address in [String::new(), "a".repeat(257)] {
        let status = client
            .broker_heartbeat(beat(3, &address, false))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            format!(
                "BrokerHeartbeat: address of {} bytes is out of range: must be 1 to 256",
                address.len()
            )
        );
    }

    // Submit: a command commits; a refused one names the rule; garbage does not decode.
    let json = |c: &Command| RaftMessage {
        json: serde_json::to_vec(c).unwrap().into(),
    };
    let delete = Command::DeleteTopic {
        name: "nope".into(),
    };
    let answer = client.submit(json(&delete)).await.unwrap().into_inner();
    assert_eq!(
        String::from_utf8(answer.json.to_vec()).unwrap(),
        r#"{"Err":{"UnknownTopic":"nope"}}"#
    );
    let create = Command::CreateTopic {
        name: "t".into(),
        replicas: vec![vec![1]],
        unclean_leader_election: false,
        configs: Default::default(),
    };
    let answer = client.submit(json(&create)).await.unwrap().into_inner();
    assert!(
        String::from_utf8(answer.json.to_vec())
            .unwrap()
            .starts_with(r#"{"Ok":[{"topic":"t","partition":0,"leader":1"#)
    );
    let status = client
        .submit(RaftMessage {
            json: bytes::Bytes::from_static(b"[1, 2"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("Submit: the message does not decode: "),
        "{}",
        status.message()
    );
    assert!(controller.metadata().topics.contains_key("t"));
    for (_, v) in voters {
        v.stop().await;
    }
}
