//! TLS and mutual TLS, end to end: clients against in-process brokers, and real broker
//! processes for what needs a process of its own (SIGHUP, exact metrics, clusters).
//!
//! - TLS clients produce and fetch; a plain-text client against the TLS port fails at once
//!   and leaves the broker serving others.
//! - A client trusting another CA, or facing an expired broker certificate, is refused.
//! - With `client_auth = "required"`: no certificate, a certificate of another CA and an
//!   expired certificate are each refused; a good one works, before and after.
//! - Reload: a replaced certificate is served to new connections after the polling interval,
//!   or at once on SIGHUP; a key that does not match keeps the old pair and counts a failure.
//! - A 3-broker cluster replicates over mutual TLS; a broker whose certificate comes from a
//!   foreign CA never joins and never holds a replica.
//! - Tokens: missing, expired, wrong-audience, foreign-secret, tampered and oversized ones
//!   are refused; a replaced JWT secret is in force after the polling interval.
//! - Authorization: a principal without WRITE cannot produce, without READ cannot fetch or
//!   join a group, without ALTER_CONFIGS cannot change configs; each refusal is an exact
//!   PERMISSION_DENIED, audited, and leaves others working. ACL requests are validated and
//!   admin-only, and a lone broker's ACLs survive a restart. In a 3-broker cluster a grant
//!   and a revoke through different brokers reach all three without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::config::{BrokerConfig, ClientAuth, TlsConfig};
use brook_broker::server::RunningBroker;
use brook_client::connection::error_chain;
use brook_client::{Connection, Producer, ProducerConfig, ProducerRecord, Security};
use brook_proto::v1::{
    Acks, AclBinding, AlterConfigsRequest, CommitOffsetsRequest, CreateAclsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest,
    DescribeAclsRequest, DescribeTopicsRequest, ElectLeadersRequest, ErrorCode, FetchPartition,
    FetchRequest, FetchResponse, FetchTopic, FindCoordinatorRequest, GroupHeartbeatRequest,
    ListGroupsRequest, ListTopicsRequest, MetadataRequest, NewTopic, PartitionCount,
    PartitionProduceData, ProduceRequest, Subscription, TopicConfigChange, TopicProduceData,
};
use brook_tests::cluster::Cluster;
use brook_tests::pki::{Ca, CertFiles, Leaf};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;

/// A broker in this process, its data in a temporary directory.
struct TestBroker {
    running: Option<RunningBroker>,
    config: BrokerConfig,
    data: Option<TempDir>,
}

impl TestBroker {
    async fn start(tls: TlsConfig) -> TestBroker {
        TestBroker::start_with(BrokerConfig {
            tls,
            ..BrokerConfig::default()
        })
        .await
    }

    async fn start_with(config: BrokerConfig) -> TestBroker {
        TestBroker::start_in(tempfile::tempdir().unwrap(), config).await
    }

    async fn start_in(data: TempDir, mut config: BrokerConfig) -> TestBroker {
        config.server.data_dir = data.path().to_path_buf();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http_listen = "127.0.0.1:0".parse().unwrap();
        let running = brook_broker::server::start(config.clone(), CancellationToken::new())
            .await
            .expect("the broker starts");
        TestBroker {
            running: Some(running),
            config,
            data: Some(data),
        }
    }

    /// Stops the broker, waits until its logs are closed, and starts it again on the same
    /// data directory and configuration.
    async fn restart(mut self) -> TestBroker {
        let running = self.running.take().unwrap();
        running.shutdown();
        running.wait().await.unwrap();
        let data = self.data.take().unwrap();
        TestBroker::start_in(data, self.config.clone()).await
    }

    fn data_dir(&self) -> &Path {
        self.data.as_ref().unwrap().path()
    }

    fn addr(&self) -> String {
        self.running.as_ref().unwrap().grpc_addr.to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}

fn tls_config(cert: &CertFiles, ca: &Ca, client_auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        cert_file: cert.cert.clone(),
        key_file: cert.key.clone(),
        ca_file: ca.cert.clone(),
        client_auth,
        ..TlsConfig::default()
    }
}

fn trusting(ca: &Ca) -> Security {
    Security::tls_from_files(&ca.cert).unwrap()
}

fn with_cert(ca: &Ca, cert: &CertFiles) -> Security {
    trusting(ca)
        .with_client_certificate_files(&cert.cert, &cert.key)
        .unwrap()
}

/// Connects and asks for metadata; the error's whole chain on failure. Bounded, so a
/// refusal that hangs fails the test instead.
async fn attempt(addr: &str, security: &Security) -> Result<(), String> {
    let call = async {
        let conn = Connection::connect_with(addr, security)
            .await
            .map_err(|e| error_chain(&e))?;
        conn.broker()
            .metadata(MetadataRequest { topics: vec![] })
            .await
            .map_err(|e| format!("{}: {}", e.message(), error_chain(&e)))?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("a refusal comes at once, not after a hang")
}

async fn create_topic(conn: &Connection, name: &str, replication_factor: u32) -> ErrorCode {
    let response = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions: 1,
                replication_factor,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    response.results[0].error_code()
}

/// Produces `values` to partition 0 of `topic` with acks=all and reads them back.
async fn round_trip(conn: &Connection, topic: &str, values: &[&str]) {
    let producer = Producer::new(conn.clone(), ProducerConfig::default())
        .await
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let written = producer
            .send(ProducerRecord::new(topic, value.to_string()).partition(0))
            .await
            .unwrap();
        assert_eq!(written.offset, Some(i as i64));
    }
    producer.close().await;
    let (read, high_watermark) = brook_tests::read_partition(conn, topic, 0, 0)
        .await
        .unwrap();
    let read: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(read, values);
    assert_eq!(high_watermark, values.len() as i64);
}

/// A TLS connection to `addr`, checking its certificate against `ca` and presenting `client`.
async fn tls_connect(
    addr: &str,
    ca: &Path,
    client: Option<&CertFiles>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(brook_broker::security::tls::crypto_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(files) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&files.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// The certificate (DER) a TLS server at `addr` presents to a new connection.
async fn served_certificate(addr: &str, ca: &Path, client: Option<&CertFiles>) -> Vec<u8> {
    let tls = tls_connect(addr, ca, client).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Why the server at `addr` ends a connection presenting `client`: with TLS 1.3 the client's
/// side of the handshake completes first, and the server's alert arrives on the first read.
async fn server_refusal(addr: &str, ca: &Path, client: Option<&CertFiles>) -> String {
    let mut tls = match tls_connect(addr, ca, client).await {
        Ok(tls) => tls,
        Err(e) => return e.to_string(),
    };
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut byte))
        .await
        .expect("the server answers at once");
    match read {
        Err(e) => e.to_string(),
        Ok(n) => panic!("the server accepted the connection and sent {n} bytes"),
    }
}

fn der_of(cert: &CertFiles) -> Vec<u8> {
    CertificateDer::from_pem_file(&cert.cert).unwrap().to_vec()
}

/// Replaces `target`'s files with `source`'s, each by a rename (as a secret manager would).
fn replace_files(target: &CertFiles, source: &CertFiles) {
    for (from, to) in [(&source.cert, &target.cert), (&source.key, &target.key)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

async fn wait_served(addr: &str, ca: &Path, client: Option<&CertFiles>, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(addr, ca, client).await != want {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tls_clients_work_and_a_plaintext_client_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let broker_cert = ca.issue(&Leaf::loopback("broker"));
    let broker = TestBroker::start(tls_config(&broker_cert, &ca, ClientAuth::None)).await;
    let conn = Connection::connect_with(&broker.addr(), &trusting(&ca))
        .await
        .unwrap();
    assert_eq!(create_topic(&conn, "secret", 0).await, ErrorCode::None);
    round_trip(&conn, "secret", &["a", "b", "c"]).await;

    let refused = attempt(&broker.addr(), &Security::plaintext()).await;
    assert!(refused.is_err(), "plain text reached a TLS port");

    // The broker and its TLS clients are unaffected.
    attempt(&broker.addr(), &trusting(&ca)).await.unwrap();
    let conn = Connection::connect_with(&broker.addr(), &trusting(&ca))
        .await
        .unwrap();
    assert_eq!(create_topic(&conn, "after", 0).await, ErrorCode::None);
    round_trip(&conn, "after", &["d"]).await;
}

#[tokio::test]
async fn a_broker_of_an_unknown_ca_or_with_an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let other = Ca::new(dir.path(), "other");
    let good = TestBroker::start(tls_config(
        &ca.issue(&Leaf::loopback("broker")),
        &ca,
        ClientAuth::None,
    ))
    .await;
    let err = attempt(&good.addr(), &trusting(&other)).await.unwrap_err();
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );

    let expired = ca.issue(&Leaf {
        expired: true,
        ..Leaf::loopback("broker")
    });
    let stale = TestBroker::start(tls_config(&expired, &ca, ClientAuth::None)).await;
    let err = attempt(&stale.addr(), &trusting(&ca)).await.unwrap_err();
    assert!(
        err.contains("invalid peer certificate: certificate expired"),
        "{err}"
    );

    // A certificate that does not name the address, unless the client names it.
    let named = TestBroker::start(tls_config(
        &ca.issue(&Leaf {
            sans: &["broker.example"],
            ..Leaf::loopback("broker")
        }),
        &ca,
        ClientAuth::None,
    ))
    .await;
    let err = attempt(&named.addr(), &trusting(&ca)).await.unwrap_err();
    assert!(
        err.contains("invalid peer certificate: certificate not valid for name"),
        "{err}"
    );
    let by_name = trusting(&ca).with_server_name("broker.example").unwrap();
    attempt(&named.addr(), &by_name).await.unwrap();
}

#[tokio::test]
async fn mutual_tls_refuses_missing_foreign_and_expired_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let other = Ca::new(dir.path(), "other");
    let broker = TestBroker::start(tls_config(
        &ca.issue(&Leaf::loopback("broker")),
        &ca,
        ClientAuth::Required,
    ))
    .await;
    let alice = with_cert(&ca, &ca.issue(&Leaf::loopback("alice")));
    attempt(&broker.addr(), &alice).await.unwrap();

    let mallory = other.issue(&Leaf::loopback("mallory"));
    let bob = ca.issue(&Leaf {
        expired: true,
        ..Leaf::loopback("bob")
    });
    let cases = [
        (None, "CertificateRequired"),
        (Some(&mallory), "UnknownCA"),
        (Some(&bob), "CertificateExpired"),
    ];
    for (client, alert) in cases {
        let security = match client {
            Some(files) => with_cert(&ca, files),
            None => trusting(&ca),
        };
        // Refused through the client library (the exact error depends on whether the alert
        // or the closed connection is seen first)...
        let err = attempt(&broker.addr(), &security).await.unwrap_err();
        assert!(
            err.contains(&format!("received fatal alert: {alert}"))
                || err.contains("connection closed"),
            "{security:?}: {err}"
        );
        // ...and the alert the broker sends.
        assert_eq!(
            server_refusal(&broker.addr(), &ca.cert, client).await,
            format!("received fatal alert: {alert}")
        );
    }
    // Good clients go on working.
    let conn = Connection::connect_with(&broker.addr(), &alice)
        .await
        .unwrap();
    assert_eq!(create_topic(&conn, "mtls", 0).await, ErrorCode::None);
    round_trip(&conn, "mtls", &["x", "y"]).await;
}

#[tokio::test]
async fn a_replaced_certificate_is_served_after_the_polling_interval() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let first = ca.issue(&Leaf::loopback("broker-a"));
    let second = ca.issue(&Leaf::loopback("broker-b"));
    let live = CertFiles {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    replace_files(&live, &first);
    let mut tls = tls_config(&live, &ca, ClientAuth::None);
    tls.reload_interval_ms = 100;
    let broker = TestBroker::start(tls).await;
    assert_eq!(
        served_certificate(&broker.addr(), &ca.cert, None).await,
        der_of(&first)
    );
    let conn = Connection::connect_with(&broker.addr(), &trusting(&ca))
        .await
        .unwrap();
    replace_files(&live, &second);
    wait_served(&broker.addr(), &ca.cert, None, &der_of(&second)).await;
    // The connection opened before the change keeps working.
    assert_eq!(create_topic(&conn, "kept", 0).await, ErrorCode::None);
}

/// A one-broker cluster process with mutual TLS, reloading only on SIGHUP.
fn tls_process(ca: &Ca, live: &CertFiles) -> Cluster {
    let env = [
        ("BROOK_TLS_CERT_FILE", live.cert.to_str().unwrap()),
        ("BROOK_TLS_KEY_FILE", live.key.to_str().unwrap()),
        ("BROOK_TLS_CA_FILE", ca.cert.to_str().unwrap()),
        ("BROOK_TLS_CLIENT_AUTH", "required"),
        ("BROOK_TLS_RELOAD_INTERVAL_MS", "0"),
    ];
    let admin = ca.issue(&Leaf::loopback("admin"));
    Cluster::start_configured(1, &env, &[], with_cert(ca, &admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_mismatched_key_keeps_the_old_pair() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let first = ca.issue(&Leaf::loopback("broker-a"));
    let second = ca.issue(&Leaf::loopback("broker-b"));
    let third = ca.issue(&Leaf::loopback("broker-c"));
    let probe = ca.issue(&Leaf::loopback("probe"));
    let live = CertFiles {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    replace_files(&live, &first);
    let cluster = tls_process(&ca, &live);
    let addr = cluster.node(1).grpc.clone();
    let pid = cluster.pid(1).unwrap() as i32;
    cluster
        .wait_metadata(1, "the broker registered", Duration::from_secs(20), |m| {
            m.brokers.len() == 1
        })
        .await;
    assert_eq!(
        served_certificate(&addr, &ca.cert, Some(&probe)).await,
        der_of(&first)
    );

    // A changed file alone does nothing with reload_interval_ms = 0; SIGHUP reloads.
    replace_files(&live, &second);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        served_certificate(&addr, &ca.cert, Some(&probe)).await,
        der_of(&first)
    );
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_served(&addr, &ca.cert, Some(&probe), &der_of(&second)).await;
    cluster
        .wait_metric(1, "brook_tls_reloads_total", Duration::from_secs(5), |v| {
            v == 1.0
        })
        .await;

    // The third certificate with the second's key: refused, the second pair stays.
    std::fs::copy(&third.cert, &live.cert).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    cluster
        .wait_metric(
            1,
            "brook_tls_reload_failures_total",
            Duration::from_secs(5),
            |v| v == 1.0,
        )
        .await;
    assert_eq!(
        served_certificate(&addr, &ca.cert, Some(&probe)).await,
        der_of(&second)
    );
    // The broker still serves its clients, and still runs.
    let conn = cluster.connect(1).await;
    assert_eq!(
        create_topic(&conn, "after-reload", 1).await,
        ErrorCode::None
    );
    assert!(cluster.node(1).is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_on_the_tls_port_is_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let live = ca.issue(&Leaf::loopback("broker"));
    let cluster = tls_process(&ca, &live);
    let addr = cluster.node(1).grpc.clone();
    cluster
        .wait_metadata(1, "the broker registered", Duration::from_secs(20), |m| {
            m.brokers.len() == 1
        })
        .await;
    // The HTTP/2 preface a plain-text gRPC client opens with.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the broker closes the connection at once");
    // rustls answers a non-TLS record with nothing or an alert, then closes.
    assert!(read.is_ok() || answer.is_empty(), "{read:?}");
    assert!(answer.len() <= 7, "more than one TLS alert: {answer:?}");
    cluster
        .wait_metric(
            1,
            "brook_tls_handshake_failures_total{listener=\"grpc\"}",
            Duration::from_secs(5),
            |v| v == 1.0,
        )
        .await;
    // Mutual TLS clients are served.
    let conn = cluster.connect(1).await;
    assert_eq!(create_topic(&conn, "served", 1).await, ErrorCode::None);
}

/// Environment giving broker `id` of a cluster its own certificate.
fn node_certificates(certs: &[(i32, CertFiles)]) -> Vec<(i32, &'static str, String)> {
    let mut env = Vec::new();
    for (id, files) in certs {
        env.push((
            *id,
            "BROOK_TLS_CERT_FILE",
            files.cert.to_str().unwrap().to_string(),
        ));
        env.push((
            *id,
            "BROOK_TLS_KEY_FILE",
            files.key.to_str().unwrap().to_string(),
        ));
    }
    env
}

fn start_mtls_cluster(
    nodes: &[(i32, CertFiles, &Path)],
    admin: Security,
    extra_env: &[(&str, &str)],
) -> Cluster {
    let mut node_env = node_certificates(
        &(nodes.iter())
            .map(|(id, files, _)| (*id, files.clone()))
            .collect::<Vec<_>>(),
    );
    for (id, _, trusted) in nodes {
        node_env.push((
            *id,
            "BROOK_TLS_CA_FILE",
            trusted.to_str().unwrap().to_string(),
        ));
    }
    let node_env: Vec<(i32, &str, &str)> = (node_env.iter())
        .map(|(id, k, v)| (*id, *k, v.as_str()))
        .collect();
    let mut env = vec![
        ("BROOK_TLS_CLIENT_AUTH", "required"),
        ("BROOK_CLUSTER_SESSION_TIMEOUT_MS", "2000"),
    ];
    env.extend_from_slice(extra_env);
    Cluster::start_configured(nodes.len(), &env, &node_env, admin)
}

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_replicates_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let nodes: Vec<(i32, CertFiles, &Path)> = (1..=3)
        .map(|id| {
            let cn = format!("broker-{id}");
            (id, ca.issue(&Leaf::loopback(&cn)), ca.cert.as_path())
        })
        .collect();
    let admin = with_cert(&ca, &ca.issue(&Leaf::loopback("admin")));
    let cluster = start_mtls_cluster(&nodes, admin, &[]);
    cluster
        .wait_metadata(1, "three live brokers", PATIENCE, |m| m.brokers.len() == 3)
        .await;
    let conn = cluster.connect(1).await;
    assert_eq!(create_topic(&conn, "replicated", 3).await, ErrorCode::None);
    let m = cluster
        .wait_metadata(1, "a leader with three in sync", PATIENCE, |m| {
            m.topics.iter().any(|t| {
                t.name == "replicated"
                    && t.partitions
                        .first()
                        .is_some_and(|p| p.leader > 0 && p.isr.len() == 3)
            })
        })
        .await;
    let leader = m
        .topics
        .iter()
        .find(|t| t.name == "replicated")
        .unwrap()
        .partitions[0]
        .leader;
    let leader_conn = cluster.connect(leader).await;
    let values: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    round_trip(&leader_conn, "replicated", &refs).await;
    // Every replica's log ends at 50: the followers fetched over mutual TLS.
    for id in 1..=3 {
        cluster
            .wait_metric(
                id,
                "brook_log_end_offset{topic=\"replicated\",partition=\"0\"}",
                PATIENCE,
                |v| v == 50.0,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_with_a_foreign_certificate_cannot_join_or_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let foreign = Ca::new(dir.path(), "foreign");
    // Broker 3's certificate comes from another CA, which is also the only one it trusts.
    let nodes: Vec<(i32, CertFiles, &Path)> = vec![
        (1, ca.issue(&Leaf::loopback("broker-1")), ca.cert.as_path()),
        (2, ca.issue(&Leaf::loopback("broker-2")), ca.cert.as_path()),
        (
            3,
            foreign.issue(&Leaf::loopback("broker-3")),
            foreign.cert.as_path(),
        ),
    ];
    let admin = with_cert(&ca, &ca.issue(&Leaf::loopback("admin")));
    let cluster = start_mtls_cluster(&nodes, admin, &[]);
    cluster
        .wait_metadata(1, "brokers 1 and 2", PATIENCE, |m| m.brokers.len() == 2)
        .await;
    let conn = cluster.connect(1).await;
    // Three replicas need broker 3, which never registered.
    assert_eq!(
        create_topic(&conn, "three", 3).await,
        ErrorCode::InvalidReplicationFactor
    );
    assert_eq!(create_topic(&conn, "two", 2).await, ErrorCode::None);
    // The controller's attempts to reach broker 3 (to bring it into the quorum) fail at the
    // handshake: broker 3 refuses them, and they refuse broker 3's certificate. Broker 3,
    // never given the quorum's membership, stays outside it and sends nothing itself.
    cluster
        .wait_metric(
            3,
            "brook_tls_handshake_failures_total{listener=\"grpc\"}",
            PATIENCE,
            |v| v >= 1.0,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = cluster.metadata(1).await.unwrap();
    let mut brokers: Vec<i32> = m.brokers.iter().map(|b| b.node_id).collect();
    brokers.sort();
    assert_eq!(brokers, [1, 2]);
    let two = m.topics.iter().find(|t| t.name == "two").unwrap();
    let mut replicas = two.partitions[0].replicas.clone();
    replicas.sort();
    assert_eq!(replicas, [1, 2]);
    // Fetching as a replica with broker 3's certificate is refused before any request.
    let stranger = with_cert(&foreign, &nodes[2].1);
    let err = attempt(&cluster.node(1).grpc, &stranger).await.unwrap_err();
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    let mixed = with_cert(&ca, &nodes[2].1);
    attempt(&cluster.node(1).grpc, &mixed).await.unwrap_err();
    assert_eq!(
        server_refusal(&cluster.node(1).grpc, &ca.cert, Some(&nodes[2].1)).await,
        "received fatal alert: UnknownCA"
    );
}

/// An HS256 secret for the token tests (32 bytes).
const SECRET: &str = "brook-test-secret-0123456789abcd";

/// A `Bearer`-ready HS256 token for `sub`, audience `aud`, expiring `ttl_s` seconds from now
/// (negative: already expired), signed with `secret`.
fn token(sub: &str, aud: &str, ttl_s: i64, secret: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() as i64 + ttl_s;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "aud": aud, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn jwt_broker(dir: &Path, required: bool) -> TestBroker {
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut config = BrokerConfig::default();
    config.auth.required = required;
    config.auth.jwt_hs256_secret_file = secret;
    config.auth.jwt_audience = "brook".into();
    TestBroker::start_with(config).await
}

/// The gRPC status of a metadata request with `security`.
async fn metadata_status(addr: &str, security: &Security) -> Result<(), tonic::Status> {
    let conn = Connection::connect_with(addr, security).await.unwrap();
    conn.broker()
        .metadata(MetadataRequest { topics: vec![] })
        .await
        .map(drop)
}

#[tokio::test]
async fn tokens_are_checked_for_signature_expiry_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let broker = jwt_broker(dir.path(), true).await;
    let addr = broker.addr();
    let with = |t: &str| Security::plaintext().with_token(t).unwrap();
    let good = with(&token("alice", "brook", 600, SECRET));
    let cases = [
        (
            Security::plaintext(),
            "authentication required: send a bearer token or connect with a client certificate",
        ),
        (
            with(&token("alice", "brook", -120, SECRET)),
            "token refused: it has expired",
        ),
        (
            with(&token("alice", "another-service", 600, SECRET)),
            "token refused: its audience (aud) does not name this broker's",
        ),
        (
            with(&token(
                "alice",
                "brook",
                600,
                "some-other-secret-0123456789abcd",
            )),
            "token refused: the signature does not verify",
        ),
    ];
    for (security, message) in cases {
        let status = metadata_status(&addr, &security).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{security:?}");
        assert_eq!(status.message(), message);
    }
    // Tampered: alice's signature over a payload naming admin.
    let alice = token("alice", "brook", 600, SECRET);
    let admin = token("admin", "brook", 600, SECRET);
    let parts: Vec<&str> = alice.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        admin.split('.').nth(1).unwrap(),
        parts[2]
    );
    let status = metadata_status(&addr, &with(&tampered)).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::Unauthenticated,
            "token refused: the signature does not verify"
        )
    );
    // A good token reaches every service, produce included, and the refusals above left
    // the broker serving.
    let conn = Connection::connect_with(&addr, &good).await.unwrap();
    assert_eq!(create_topic(&conn, "tokens", 0).await, ErrorCode::None);
    round_trip(&conn, "tokens", &["p", "q"]).await;
}

#[tokio::test]
async fn without_required_a_request_without_credentials_is_anonymous_but_a_bad_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = jwt_broker(dir.path(), false).await;
    metadata_status(&broker.addr(), &Security::plaintext())
        .await
        .unwrap();
    let expired = Security::plaintext()
        .with_token(&token("alice", "brook", -120, SECRET))
        .unwrap();
    let status = metadata_status(&broker.addr(), &expired).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn an_oversized_token_is_refused_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = jwt_broker(dir.path(), true).await;
    // 64 KiB: far above the HTTP/2 header list limit.
    let huge = Security::plaintext()
        .with_token(&"x".repeat(64 << 10))
        .unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(15),
        metadata_status(&broker.addr(), &huge),
    )
    .await
    .expect("refused at once")
    .unwrap_err();
    // The broker's HTTP/2 layer refuses the header block before any handler runs.
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    let good = Security::plaintext()
        .with_token(&token("alice", "brook", 600, SECRET))
        .unwrap();
    metadata_status(&broker.addr(), &good).await.unwrap();
}

#[tokio::test]
async fn a_replaced_jwt_secret_is_in_force_after_the_polling_interval() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut config = BrokerConfig::default();
    config.auth.required = true;
    config.auth.jwt_hs256_secret_file = secret.clone();
    config.auth.jwt_audience = "brook".into();
    config.auth.reload_interval_ms = 100;
    let broker = TestBroker::start_with(config).await;
    let with = |secret: &str| {
        Security::plaintext()
            .with_token(&token("alice", "brook", 600, secret))
            .unwrap()
    };
    let (old, new) = (with(SECRET), with("rotated-secret-0123456789abcdef-2"));
    metadata_status(&broker.addr(), &old).await.unwrap();
    std::fs::write(&secret, "rotated-secret-0123456789abcdef-2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metadata_status(&broker.addr(), &new).await.is_err() {
        assert!(Instant::now() < deadline, "the new secret was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old secret's tokens, remembered as verified before, are refused now.
    let status = metadata_status(&broker.addr(), &old).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::Unauthenticated,
            "token refused: the signature does not verify"
        )
    );
}

/// An HS256 token like [`token`], whose header names the key id `kid`.
fn token_with_kid(sub: &str, kid: &str, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({ "sub": sub, "aud": "brook", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Writes a JSON Web Key Set of HS256 keys `(kid, secret)`, by a rename as a secret manager
/// would.
fn write_key_set(path: &Path, keys: &[(&str, &str)]) {
    use base64::Engine as _;
    let keys: Vec<serde_json::Value> = (keys.iter())
        .map(|(kid, secret)| {
            let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
            serde_json::json!({ "kty": "oct", "kid": kid, "alg": "HS256", "k": k })
        })
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_key_set_rotates_keys_without_refusing_a_token() {
    const NEW_SECRET: &str = "rotated-secret-0123456789abcdef-2";
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    write_key_set(&jwks, &[("k1", SECRET)]);
    let mut config = BrokerConfig::default();
    config.auth.required = true;
    config.auth.jwt_jwks_file = jwks.clone();
    config.auth.jwt_audience = "brook".into();
    config.auth.reload_interval_ms = 100;
    let broker = TestBroker::start_with(config).await;
    let addr = broker.addr();
    let with = |t: String| Security::plaintext().with_token(&t).unwrap();
    let old = with(token_with_kid("alice", "k1", SECRET));
    let new = with(token_with_kid("bob", "k2", NEW_SECRET));
    let refused = |kid: &str| {
        format!("token refused: its key id (kid) \"{kid}\" is not in this broker's key set")
    };
    metadata_status(&addr, &old).await.unwrap();
    let status = metadata_status(&addr, &new).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unauthenticated, refused("k2").as_str())
    );

    // Step 1: the new key joins the set. The old key's tokens pass throughout.
    write_key_set(&jwks, &[("k1", SECRET), ("k2", NEW_SECRET)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metadata_status(&addr, &new).await.is_err() {
        assert!(Instant::now() < deadline, "the new key was not loaded");
        metadata_status(&addr, &old).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    metadata_status(&addr, &old).await.unwrap();
    let conn = Connection::connect_with(&addr, &new).await.unwrap();
    assert_eq!(create_topic(&conn, "rotated", 0).await, ErrorCode::None);
    round_trip(&conn, "rotated", &["a", "b"]).await;

    // Step 2: the old key leaves the set, and its tokens are refused, naming the key id.
    write_key_set(&jwks, &[("k2", NEW_SECRET)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match metadata_status(&addr, &old).await {
            Err(status) => break status,
            Ok(()) => assert!(Instant::now() < deadline, "the old key was not dropped"),
        }
        metadata_status(&addr, &new).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unauthenticated, refused("k1").as_str())
    );
    metadata_status(&addr, &new).await.unwrap();
}

// ---- Authorization ----

/// A broker taking HS256 tokens (`sub` is the user) with authorization on and `User:admin`
/// its super-user.
async fn authz_broker(dir: &Path) -> TestBroker {
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut config = BrokerConfig::default();
    config.auth.required = true;
    config.auth.jwt_hs256_secret_file = secret;
    config.auth.jwt_audience = "brook".into();
    config.authorization.enabled = true;
    config.authorization.super_users = "User:admin".into();
    TestBroker::start_with(config).await
}

async fn connect_as(addr: &str, user: &str) -> Connection {
    let security = Security::plaintext()
        .with_token(&token(user, "brook", 600, SECRET))
        .unwrap();
    Connection::connect_with(addr, &security).await.unwrap()
}

/// An ALLOW of `operation` for `User:<user>` on the resource named literally `name`.
fn allow(user: &str, resource_type: &str, name: &str, operation: &str) -> AclBinding {
    AclBinding {
        principal: format!("User:{user}"),
        resource_type: resource_type.into(),
        pattern_type: "literal".into(),
        resource_name: name.into(),
        operation: operation.into(),
        permission: "allow".into(),
    }
}

async fn grant(admin: &Connection, acls: Vec<AclBinding>) {
    admin
        .admin()
        .create_acls(CreateAclsRequest { acls })
        .await
        .unwrap();
}

async fn revoke(admin: &Connection, acls: Vec<AclBinding>) -> Vec<AclBinding> {
    (admin.admin().delete_acls(DeleteAclsRequest { acls }).await)
        .unwrap()
        .into_inner()
        .deleted
}

/// Produces one record to partition 0 of `topic` with a plain (not idempotent) request.
async fn produce_one(conn: &Connection, topic: &str, value: &str) -> Result<i64, tonic::Status> {
    let mut batch = brook_proto::BatchBuilder::new();
    batch.append(0, None, Some(value.as_bytes()), &[]);
    let response = conn
        .broker()
        .produce(ProduceRequest {
            acks: Acks::All as i32,
            timeout_ms: 10_000,
            topics: vec![TopicProduceData {
                topic: topic.into(),
                partitions: vec![PartitionProduceData {
                    partition: 0,
                    records: batch.build(),
                }],
            }],
        })
        .await?
        .into_inner();
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code(), ErrorCode::None, "{answer:?}");
    Ok(answer.base_offset)
}

/// Asserts `result` failed with PERMISSION_DENIED and exactly `message`.
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, message: &str) {
    let status = result.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::PermissionDenied, message)
    );
}

/// The audit log's lines as JSON.
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    (std::fs::read_to_string(path).unwrap().lines())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_principal_without_write_cannot_produce_and_the_denial_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let broker = authz_broker(dir.path()).await;
    let addr = broker.addr();
    let admin = connect_as(&addr, "admin").await;
    assert_eq!(create_topic(&admin, "orders", 1).await, ErrorCode::None);
    grant(&admin, vec![allow("alice", "topic", "orders", "read")]).await;
    let alice = connect_as(&addr, "alice").await;

    // Reading is granted, writing is not: refused whole, nothing written.
    assert_denied(
        produce_one(&alice, "orders", "a1").await,
        "User:alice may not write topic \"orders\": no ACL allows it",
    );
    // Nor may alice start an idempotent producer: she may write no topic at all.
    let err = Producer::new(alice.clone(), ProducerConfig::default())
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        chain.contains("User:alice may not write topic \"*\": no ACL allows it"),
        "{chain}"
    );
    // The broker and other clients go on: admin writes, alice reads exactly that.
    assert_eq!(produce_one(&admin, "orders", "x0").await.unwrap(), 0);
    let (read, _) = brook_tests::read_partition(&alice, "orders", 0, 0)
        .await
        .unwrap();
    assert_eq!(read, [(0, "x0".to_string())]);

    // A matching DENY beats an ALLOW.
    let mut deny = allow("alice", "topic", "orders", "write");
    deny.permission = "deny".into();
    let mut prefixed = allow("alice", "topic", "ord", "write");
    prefixed.pattern_type = "prefixed".into();
    grant(&admin, vec![prefixed, deny.clone()]).await;
    assert_denied(
        produce_one(&alice, "orders", "a2").await,
        "User:alice may not write topic \"orders\": an ACL denies it",
    );
    assert_eq!(revoke(&admin, vec![deny.clone()]).await, [deny]);
    // The prefixed ALLOW now lets her write, through the idempotent producer too.
    round_trip_from(&alice, "orders", 1, &["a3", "a4"]).await;

    let audit = audit_lines(&broker.data_dir().join("audit.log"));
    let denials: Vec<_> = (audit.iter())
        .filter(|e| e["event"] == "denied")
        .map(|e| {
            (
                e["principal"].as_str().unwrap(),
                e["rpc"].as_str().unwrap(),
                e["operation"].as_str().unwrap(),
                e["resource"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        denials,
        [
            (
                "User:alice",
                "Produce",
                "write",
                "orders",
                "no ACL allows it"
            ),
            (
                "User:alice",
                "InitProducerId",
                "write",
                "*",
                "no ACL allows it"
            ),
            (
                "User:alice",
                "Produce",
                "write",
                "orders",
                "an ACL denies it"
            ),
        ]
    );
    let changes: Vec<_> = (audit.iter())
        .filter(|e| e["event"] != "denied")
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["acls"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("acls_created", 1),
            ("acls_created", 2),
            ("acls_deleted", 1)
        ]
    );
}

/// Produces `values` with an idempotent producer to partition 0 of `topic`, expecting them at
/// offsets from `first`.
async fn round_trip_from(conn: &Connection, topic: &str, first: i64, values: &[&str]) {
    let producer = Producer::new(conn.clone(), ProducerConfig::default())
        .await
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let written = producer
            .send(ProducerRecord::new(topic, value.to_string()).partition(0))
            .await
            .unwrap();
        assert_eq!(written.offset, Some(first + i as i64));
    }
    producer.close().await;
}

/// One fetch of partition 0 of `topic` from offset 0, as a consumer or (with `replica_id`)
/// as that broker's replica.
async fn fetch_from_start(
    conn: &Connection,
    topic: &str,
    replica_id: Option<i32>,
) -> Result<FetchResponse, tonic::Status> {
    let request = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        replica_id,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 0,
                current_leader_epoch: None,
            }],
        }],
    };
    conn.broker()
        .fetch(request)
        .await
        .map(tonic::Response::into_inner)
}

fn heartbeat(group: &str, topic: &str) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: 0,
        subscription: Some(Subscription {
            topics: vec![topic.into()],
        }),
        owned: None,
    }
}

#[tokio::test]
async fn a_principal_without_read_cannot_fetch_or_join_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = authz_broker(dir.path()).await;
    let addr = broker.addr();
    let admin = connect_as(&addr, "admin").await;
    assert_eq!(create_topic(&admin, "events", 1).await, ErrorCode::None);
    grant(&admin, vec![allow("bob", "topic", "events", "write")]).await;
    let bob = connect_as(&addr, "bob").await;
    assert_eq!(produce_one(&bob, "events", "e0").await.unwrap(), 0);

    assert_denied(
        fetch_from_start(&bob, "events", None).await,
        "User:bob may not read topic \"events\": no ACL allows it",
    );
    // Write implies Describe (as in Kafka), not Read: bob sees the topic, cannot read it.
    let listed = (bob.admin().list_topics(ListTopicsRequest {}).await)
        .unwrap()
        .into_inner();
    assert_eq!(listed.topics.len(), 1);

    // Reading the topic is not joining a group.
    grant(&admin, vec![allow("bob", "topic", "events", "read")]).await;
    assert_eq!(
        brook_tests::read_partition(&bob, "events", 0, 0)
            .await
            .unwrap()
            .0,
        [(0, "e0".to_string())]
    );
    assert_denied(
        bob.groups().heartbeat(heartbeat("loaders", "events")).await,
        "User:bob may not read group \"loaders\": no ACL allows it",
    );
    assert_denied(
        (bob.groups())
            .find_coordinator(FindCoordinatorRequest {
                group_id: "loaders".into(),
            })
            .await,
        "User:bob may not describe group \"loaders\": no ACL allows it",
    );
    assert_denied(
        (bob.groups())
            .commit_offsets(CommitOffsetsRequest {
                group_id: "loaders".into(),
                member_id: String::new(),
                member_epoch: -1,
                offsets: vec![],
            })
            .await,
        "User:bob may not read group \"loaders\": no ACL allows it",
    );
    // Another principal's group work goes on meanwhile.
    let joined = (admin.groups().heartbeat(heartbeat("ops", "events")).await)
        .unwrap()
        .into_inner();
    assert_eq!(joined.error_code(), ErrorCode::None, "{joined:?}");

    grant(&admin, vec![allow("bob", "group", "loaders", "read")]).await;
    let joined = (bob.groups().heartbeat(heartbeat("loaders", "events")).await)
        .unwrap()
        .into_inner();
    assert_eq!(joined.error_code(), ErrorCode::None, "{joined:?}");
    // Alone in the group, bob is assigned the topic's one partition.
    assert!(!joined.member_id.is_empty());
    let assigned: Vec<(&str, &[u32])> = (joined.assignment.iter())
        .map(|t| (t.topic.as_str(), t.partitions.as_slice()))
        .collect();
    assert_eq!(assigned, [("events", &[0u32][..])]);
    // Only the groups bob may describe are listed.
    let groups = (bob.groups().list_groups(ListGroupsRequest {}).await)
        .unwrap()
        .into_inner()
        .groups;
    let ids: Vec<&str> = groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, ["loaders"]);
}

#[tokio::test]
async fn a_principal_without_alter_configs_cannot_change_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = authz_broker(dir.path()).await;
    let addr = broker.addr();
    let admin = connect_as(&addr, "admin").await;
    assert_eq!(create_topic(&admin, "secret", 1).await, ErrorCode::None);
    let mut own = allow("carol", "topic", "carol-", "create");
    own.pattern_type = "prefixed".into();
    grant(&admin, vec![own]).await;
    let carol = connect_as(&addr, "carol").await;
    // Create on her prefix: she creates her topic, and no other.
    assert_eq!(create_topic(&carol, "carol-1", 1).await, ErrorCode::None);
    let create_other = (carol.admin())
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: "elsewhere".into(),
                partitions: 1,
                replication_factor: 1,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await;
    assert_denied(
        create_other,
        "User:carol may not create topic \"elsewhere\": no ACL allows it",
    );
    let alter = |name: &str| AlterConfigsRequest {
        topics: vec![TopicConfigChange {
            name: name.into(),
            set: [("retention.ms".to_string(), "60000".to_string())].into(),
            delete: vec![],
        }],
    };
    assert_denied(
        carol.admin().alter_configs(alter("carol-1")).await,
        "User:carol may not alter_configs topic \"carol-1\": no ACL allows it",
    );
    assert_denied(
        (carol.admin())
            .create_partitions(CreatePartitionsRequest {
                topics: vec![PartitionCount {
                    name: "carol-1".into(),
                    total: 2,
                }],
            })
            .await,
        "User:carol may not alter_configs topic \"carol-1\": no ACL allows it",
    );
    assert_denied(
        (carol.admin())
            .delete_topics(DeleteTopicsRequest {
                names: vec!["carol-1".into()],
            })
            .await,
        "User:carol may not delete topic \"carol-1\": no ACL allows it",
    );
    assert_denied(
        (carol.admin())
            .describe_topics(DescribeTopicsRequest {
                names: vec!["secret".into()],
            })
            .await,
        "User:carol may not describe topic \"secret\": no ACL allows it",
    );
    assert_denied(
        (carol.admin())
            .elect_leaders(ElectLeadersRequest { topics: vec![] })
            .await,
        "User:carol may not admin cluster \"cluster\": no ACL allows it",
    );
    // Listings show nothing she may not describe (Create does not imply Describe).
    let listed = (carol.admin().list_topics(ListTopicsRequest {}).await)
        .unwrap()
        .into_inner();
    let names: Vec<String> = listed.topics.into_iter().map(|t| t.name).collect();
    assert_eq!(names, Vec::<String>::new());

    grant(
        &admin,
        vec![allow("carol", "topic", "carol-1", "alter_configs")],
    )
    .await;
    let altered = (carol.admin().alter_configs(alter("carol-1")).await)
        .unwrap()
        .into_inner();
    assert_eq!(altered.results[0].error_code(), ErrorCode::None);
    let metadata = (carol.broker())
        .metadata(MetadataRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<&str> = metadata.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(seen, ["carol-1"]);
    // The refused requests changed nothing: admin still sees secret as it was.
    let described = (admin.admin())
        .describe_topics(DescribeTopicsRequest {
            names: vec!["carol-1".into(), "secret".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let partitions: Vec<usize> = (described.topics.iter())
        .map(|t| t.partitions.len())
        .collect();
    assert_eq!(partitions, [1, 1]);
}

#[tokio::test]
async fn acl_requests_are_validated_limited_to_admins_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = authz_broker(dir.path()).await;
    let addr = broker.addr();
    let admin = connect_as(&addr, "admin").await;
    let alice = connect_as(&addr, "alice").await;
    let read = allow("alice", "topic", "t", "read");
    assert_denied(
        (alice.admin())
            .create_acls(CreateAclsRequest {
                acls: vec![read.clone()],
            })
            .await,
        "User:alice may not admin cluster \"cluster\": no ACL allows it",
    );
    assert_denied(
        (alice.admin())
            .describe_acls(DescribeAclsRequest::default())
            .await,
        "User:alice may not describe cluster \"cluster\": no ACL allows it",
    );
    let refused = |change: &dyn Fn(&mut AclBinding)| {
        let mut bad = read.clone();
        change(&mut bad);
        bad
    };
    let cases: Vec<(Vec<AclBinding>, String)> = vec![
        (vec![], "the request names no ACL".into()),
        (
            vec![read.clone(), refused(&|a| a.principal = "alice".into())],
            "ACL 1: principal \"alice\" is not User:<name> (User:* for everyone)".into(),
        ),
        (
            vec![refused(&|a| a.operation = "fly".into())],
            "ACL 0: operation \"fly\" is not one of all, read, write, create, delete, describe, alter_configs, admin, cluster_action".into(),
        ),
        (
            vec![refused(&|a| a.resource_type = "queue".into())],
            "ACL 0: resource_type \"queue\" is not one of topic, group, cluster".into(),
        ),
        (
            vec![refused(&|a| a.pattern_type = "regex".into())],
            "ACL 0: pattern_type \"regex\" is not one of literal, prefixed".into(),
        ),
        (
            vec![refused(&|a| a.permission = "maybe".into())],
            "ACL 0: permission \"maybe\" is not one of allow, deny".into(),
        ),
        (
            vec![refused(&|a| a.operation = "admin".into())],
            "ACL 0: operation admin does not apply to topic resources (it takes all, read, write, create, delete, describe, alter_configs)".into(),
        ),
        (
            vec![refused(&|a| a.resource_name = "n".repeat(256))],
            format!(
                "ACL 0: topic name {:?} is invalid: it is longer than 255 bytes",
                "n".repeat(256)
            ),
        ),
        (
            vec![read.clone(); 1001],
            "1001 ACLs in one request; at most 1000".into(),
        ),
    ];
    for (acls, message) in cases {
        let status = (admin.admin().create_acls(CreateAclsRequest { acls }).await).unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::InvalidArgument, message.as_str())
        );
    }
    // Nothing of the refused requests was stored, not even their valid ACLs.
    let all = (admin
        .admin()
        .describe_acls(DescribeAclsRequest::default())
        .await)
        .unwrap()
        .into_inner()
        .acls;
    assert!(all.is_empty(), "{all:?}");

    let mut logs = allow("etl", "topic", "logs-", "read");
    logs.pattern_type = "prefixed".into();
    let group = allow("etl", "group", "etl", "read");
    grant(&admin, vec![read.clone(), logs.clone(), group.clone()]).await;
    let describe =
        |principal: &str, resource_type: &str, resource_name: &str| DescribeAclsRequest {
            principal: principal.into(),
            resource_type: resource_type.into(),
            resource_name: resource_name.into(),
        };
    let listed = |request: DescribeAclsRequest| {
        let admin = admin.clone();
        async move {
            (admin.admin().describe_acls(request).await)
                .unwrap()
                .into_inner()
                .acls
        }
    };
    assert_eq!(
        // Sorted by principal, then resource type (topic, group, cluster).
        listed(describe("User:etl", "", "")).await,
        [logs.clone(), group.clone()]
    );
    assert_eq!(
        listed(describe("", "topic", "logs-web")).await,
        [logs.clone()]
    );
    assert_eq!(
        listed(describe("", "topic", "t")).await,
        std::slice::from_ref(&read)
    );
    assert_eq!(listed(describe("", "cluster", "")).await, []);
    let status = (admin.admin().describe_acls(describe("", "", "t")).await).unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::InvalidArgument,
            "resource_name \"t\" needs a resource_type"
        )
    );
    let status = (admin.admin().describe_acls(describe("", "queue", "")).await).unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            tonic::Code::InvalidArgument,
            "resource_type \"queue\" is not one of topic, group, cluster"
        )
    );
    // Removing returns what was there.
    assert_eq!(
        revoke(
            &admin,
            vec![group.clone(), allow("nobody", "topic", "t", "read")]
        )
        .await,
        [group]
    );

    // The ACLs are on disk: after a restart they are in force unchanged.
    let broker = broker.restart().await;
    let admin = connect_as(&broker.addr(), "admin").await;
    let alice = connect_as(&broker.addr(), "alice").await;
    let all = (admin
        .admin()
        .describe_acls(DescribeAclsRequest::default())
        .await)
        .unwrap()
        .into_inner()
        .acls;
    assert_eq!(all, [read, logs]);
    assert_eq!(create_topic(&admin, "t", 1).await, ErrorCode::None);
    brook_tests::read_partition(&alice, "t", 0, 0)
        .await
        .unwrap();
    assert_denied(
        produce_one(&alice, "t", "no").await,
        "User:alice may not write topic \"t\": no ACL allows it",
    );
}

/// DescribeTopics of `topic` as `security` on the broker at `addr`.
async fn describe_as(addr: &str, security: &Security, topic: &str) -> Result<(), tonic::Status> {
    let conn = Connection::connect_with(addr, security).await.unwrap();
    let request = DescribeTopicsRequest {
        names: vec![topic.into()],
    };
    conn.admin().describe_topics(request).await.map(drop)
}

/// Waits until every broker of `cluster` gives `want` (allowed or not) for `security`
/// describing `topic`.
async fn wait_everywhere(cluster: &Cluster, security: &Security, topic: &str, want: bool) {
    for node in &cluster.nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let outcome = describe_as(&node.grpc, security, topic).await;
            if let Err(status) = &outcome {
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            }
            if outcome.is_ok() == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker {} still answers {outcome:?}",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_changes_reach_every_broker_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "main");
    let nodes: Vec<(i32, CertFiles, &Path)> = (1..=3)
        .map(|id| {
            let cn = format!("broker-{id}");
            (id, ca.issue(&Leaf::loopback(&cn)), ca.cert.as_path())
        })
        .collect();
    let admin = with_cert(&ca, &ca.issue(&Leaf::loopback("admin")));
    let alice = with_cert(&ca, &ca.issue(&Leaf::loopback("alice")));
    let authorization = [
        ("BROOK_AUTHORIZATION_ENABLED", "true"),
        (
            "BROOK_AUTHORIZATION_SUPER_USERS",
            "User:broker-1;User:broker-2;User:broker-3;User:admin",
        ),
    ];
    let cluster = start_mtls_cluster(&nodes, admin, &authorization);
    cluster
        .wait_metadata(1, "three live brokers", PATIENCE, |m| m.brokers.len() == 3)
        .await;
    let conn = cluster.connect(1).await;
    assert_eq!(create_topic(&conn, "shared", 3).await, ErrorCode::None);
    // The brokers, super-users by their certificates, replicate: all three in sync.
    let m = cluster
        .wait_metadata(1, "a leader with three in sync", PATIENCE, |m| {
            (m.topics.iter()).any(|t| {
                t.name == "shared"
                    && (t.partitions.first()).is_some_and(|p| p.leader > 0 && p.isr.len() == 3)
            })
        })
        .await;
    let leader = m
        .topics
        .iter()
        .find(|t| t.name == "shared")
        .unwrap()
        .partitions[0]
        .leader;

    for node in &cluster.nodes {
        assert_denied(
            describe_as(&node.grpc, &alice, "shared").await,
            "User:alice may not describe topic \"shared\": no ACL allows it",
        );
    }
    // Granted through broker 1, in force on all three.
    let acls: Vec<AclBinding> = ["read", "write"]
        .iter()
        .map(|op| allow("alice", "topic", "shared", op))
        .collect();
    grant(&conn, acls.clone()).await;
    wait_everywhere(&cluster, &alice, "shared", true).await;
    let alice_at_leader = Connection::connect_with(&cluster.node(leader).grpc, &alice)
        .await
        .unwrap();
    round_trip(&alice_at_leader, "shared", &["a", "b", "c"]).await;
    // Reading as a consumer is not fetching as a replica: that is for brokers only.
    assert_denied(
        fetch_from_start(&alice_at_leader, "shared", Some(3)).await,
        "User:alice may not cluster_action cluster \"cluster\": no ACL allows it",
    );

    // A denial on broker 3 is counted there and written to its audit log.
    let alice_at_3 = Connection::connect_with(&cluster.node(3).grpc, &alice)
        .await
        .unwrap();
    assert_denied(
        (alice_at_3.admin())
            .delete_topics(DeleteTopicsRequest {
                names: vec!["shared".into()],
            })
            .await,
        "User:alice may not delete topic \"shared\": no ACL allows it",
    );
    cluster
        .wait_metric(
            3,
            "brook_authorization_denied_total{operation=\"delete\",resource_type=\"topic\"}",
            PATIENCE,
            |v| v == 1.0,
        )
        .await;
    let audit = audit_lines(&cluster.node(3).dir().join("audit.log"));
    let deletes: Vec<_> = (audit.iter())
        .filter(|e| e["rpc"] == "DeleteTopics")
        .map(|e| {
            (
                e["principal"].as_str().unwrap(),
                e["resource"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(deletes, [("User:alice", "shared")]);

    // Revoked through broker 2: denied again on all three, and the topic is intact.
    let admin_at_2 = cluster.connect(2).await;
    assert_eq!(revoke(&admin_at_2, acls.clone()).await, acls);
    wait_everywhere(&cluster, &alice, "shared", false).await;
    let (read, _) = (cluster
        .read_partition_from_leader(1, "shared", 0, PATIENCE)
        .await)
        .unwrap();
    let values: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["a", "b", "c"]);
}
