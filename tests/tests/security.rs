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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::config::{BrokerConfig, ClientAuth, TlsConfig};
use brook_broker::server::RunningBroker;
use brook_client::connection::error_chain;
use brook_client::{Connection, Producer, ProducerConfig, ProducerRecord, Security};
use brook_proto::v1::{CreateTopicsRequest, ErrorCode, MetadataRequest, NewTopic};
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
    running: RunningBroker,
    _data: TempDir,
}

impl TestBroker {
    async fn start(tls: TlsConfig) -> TestBroker {
        TestBroker::start_with(BrokerConfig {
            tls,
            ..BrokerConfig::default()
        })
        .await
    }

    async fn start_with(mut config: BrokerConfig) -> TestBroker {
        let data = tempfile::tempdir().unwrap();
        config.server.data_dir = data.path().to_path_buf();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http_listen = "127.0.0.1:0".parse().unwrap();
        let running = brook_broker::server::start(config, CancellationToken::new())
            .await
            .expect("the broker starts");
        TestBroker {
            running,
            _data: data,
        }
    }

    fn addr(&self) -> String {
        self.running.grpc_addr.to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.running.shutdown();
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

fn start_mtls_cluster(nodes: &[(i32, CertFiles, &Path)], admin: Security) -> Cluster {
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
    let env = [
        ("BROOK_TLS_CLIENT_AUTH", "required"),
        ("BROOK_CLUSTER_SESSION_TIMEOUT_MS", "2000"),
    ];
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
    let cluster = start_mtls_cluster(&nodes, admin);
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
    let cluster = start_mtls_cluster(&nodes, admin);
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
