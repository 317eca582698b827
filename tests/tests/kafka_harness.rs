//! The Kafka harness (brook_tests::kafka) against a real Apache Kafka: single node and 3-node
//! starts, topics through TopicCommand, node restarts with data kept, clean stops (no JVM and
//! no listening port left), nothing left behind when the process that started Kafka is killed,
//! and `scripts/kafka.sh fetch` without Java.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use brook_tests::kafka::{KafkaCluster, TOPIC_COMMAND, kafka_available};

/// `TopicCommand --describe --topic TOPIC`'s stdout.
fn describe(kafka: &KafkaCluster, topic: &str) -> String {
    let bootstrap = kafka.bootstrap();
    let out = kafka
        .tool(
            TOPIC_COMMAND,
            &[
                "--bootstrap-server",
                &bootstrap,
                "--describe",
                "--topic",
                topic,
            ],
        )
        .expect("describe topic");
    String::from_utf8(out.stdout).expect("utf-8 describe output")
}

/// The per-partition lines of a describe output, as `field name -> value` lists.
fn partition_lines(describe: &str) -> Vec<Vec<(String, String)>> {
    describe
        .lines()
        .filter(|l| l.contains("Partition: "))
        .map(|l| {
            l.split('\t')
                .filter_map(|f| f.trim().split_once(": ").map(|(k, v)| (k.into(), v.into())))
                .collect()
        })
        .collect()
}

fn field<'a>(line: &'a [(String, String)], name: &str) -> &'a str {
    line.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// The broker ids of a `1,2,3` list, sorted.
fn ids(list: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("broker id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Whether `pid` is a process that has not exited: `/proc/<pid>` exists and is no zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Asserts that `pid` is gone: `/proc/<pid>` disappears within 10 s. An orphaned JVM that
/// exited stays a zombie until init reaps it, which some inits do late or never; a zombie
/// still passes (it has exited and holds no port), anything else fails.
fn assert_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() >= deadline {
            assert!(!running(pid), "Kafka pid {pid} still runs after stop");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_port_closed(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "127.0.0.1:{port} still accepts connections"
    );
}

/// Client and controller ports of every node.
fn all_ports(kafka: &KafkaCluster) -> Vec<u16> {
    (1..=kafka.nodes())
        .flat_map(|i| [kafka.client_port(i), kafka.client_port(i) + 1])
        .collect()
}

fn pids(kafka: &KafkaCluster) -> Vec<u32> {
    (1..=kafka.nodes())
        .map(|i| {
            kafka
                .pid(i)
                .unwrap_or_else(|| panic!("node {i} has no kafka.pid"))
        })
        .collect()
}

#[test]
fn single_node_topic_then_clean_stop() {
    if !kafka_available("single_node_topic_then_clean_stop") {
        return;
    }
    let started = Instant::now();
    let mut kafka = KafkaCluster::start(1).expect("start Kafka");
    eprintln!("1 node serving after {:?}", started.elapsed());
    assert_eq!(kafka.nodes(), 1);
    assert_eq!(
        kafka.bootstrap(),
        format!("127.0.0.1:{}", kafka.client_port(1))
    );

    kafka.create_topic("harness", 3, 1).expect("create topic");
    let text = describe(&kafka, "harness");
    assert!(text.contains("PartitionCount: 3\t"), "{text}");
    let lines = partition_lines(&text);
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(field(line, "Topic"), "harness");
        assert_eq!(field(line, "Partition"), i.to_string(), "{text}");
        assert_eq!(field(line, "Leader"), "1", "{text}");
    }

    let pids = pids(&kafka);
    let ports = all_ports(&kafka);
    let stopping = Instant::now();
    kafka.stop().expect("stop Kafka");
    eprintln!("1 node stopped in {:?}", stopping.elapsed());
    for pid in pids {
        assert_gone(pid);
    }
    for port in ports {
        assert_port_closed(port);
    }
    assert_eq!(kafka.pid(1), None, "kafka.pid left after stop");
    kafka.stop().expect("a second stop is a no-op");
}

#[test]
fn single_node_restart_keeps_topic() {
    if !kafka_available("single_node_restart_keeps_topic") {
        return;
    }
    let mut kafka = KafkaCluster::start(1).expect("start Kafka");
    kafka.create_topic("kept", 2, 1).expect("create topic");
    let before = kafka.pid(1).expect("pid of node 1");

    kafka.stop_node(1).expect("stop node 1");
    assert_gone(before);
    assert_port_closed(kafka.client_port(1));
    assert_eq!(kafka.pid(1), None);

    let restarting = Instant::now();
    kafka.start_node(1).expect("restart node 1");
    eprintln!("node 1 serving again after {:?}", restarting.elapsed());
    let after = kafka.pid(1).expect("pid of restarted node 1");
    assert_ne!(before, after);
    assert!(running(after));

    let text = describe(&kafka, "kept");
    assert!(text.contains("PartitionCount: 2\t"), "{text}");
    assert_eq!(partition_lines(&text).len(), 2, "{text}");
    kafka.stop().expect("stop Kafka");
    assert_gone(after);
}

// Named to sort first: libtest starts tests in name order, and the longest should not start last.
#[test]
fn cluster_of_three_replicates_a_topic() {
    if !kafka_available("cluster_of_three_replicates_a_topic") {
        return;
    }
    let started = Instant::now();
    let mut kafka = KafkaCluster::start(3).expect("start 3 Kafka nodes");
    eprintln!("3 nodes serving after {:?}", started.elapsed());
    assert_eq!(kafka.nodes(), 3);
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.1:{}", kafka.client_port(i)))
        .collect();
    assert_eq!(kafka.bootstrap(), expected.join(","));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("bootstrap")
        .arg(kafka.dir())
        .output()
        .expect("run kafka.sh bootstrap");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        kafka.bootstrap()
    );

    kafka
        .create_topic("replicated", 2, 3)
        .expect("create topic");
    // Every replica joins the ISR at creation; allow a moment in case one is still catching up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = describe(&kafka, "replicated");
        let full = partition_lines(&text)
            .iter()
            .all(|l| ids(field(l, "Isr")) == [1, 2, 3]);
        if full || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(text.contains("PartitionCount: 2\t"), "{text}");
    assert!(text.contains("ReplicationFactor: 3\t"), "{text}");
    assert!(text.contains("min.insync.replicas=2"), "{text}");
    let lines = partition_lines(&text);
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert_eq!(ids(field(line, "Replicas")), [1, 2, 3], "{text}");
        assert_eq!(ids(field(line, "Isr")), [1, 2, 3], "{text}");
    }

    let pids = pids(&kafka);
    let ports = all_ports(&kafka);
    let stopping = Instant::now();
    kafka.stop().expect("stop Kafka");
    eprintln!("3 nodes stopped in {:?}", stopping.elapsed());
    for pid in pids {
        assert_gone(pid);
    }
    for port in ports {
        assert_port_closed(port);
    }
}

/// The child process of [`a_killed_owner_leaves_no_kafka_behind`]: starts a node, prints
/// `KAFKA <dir> <pid> <port>` and waits to be killed (5 minutes at most).
#[test]
#[ignore = "run only as the child process of a_killed_owner_leaves_no_kafka_behind"]
fn kafka_owner_child() {
    let kafka = KafkaCluster::start(1).expect("start Kafka");
    let pid = kafka.pid(1).expect("node 1 runs");
    println!(
        "KAFKA {} {pid} {}",
        kafka.dir().display(),
        kafka.client_port(1)
    );
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn a_killed_owner_leaves_no_kafka_behind() {
    if !kafka_available("a_killed_owner_leaves_no_kafka_behind") {
        return;
    }
    use std::io::BufRead as _;
    // This test binary again, running only the child above.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kafka_owner_child", "--ignored", "--nocapture"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix("KAFKA ") {
                let _ = tx.send(rest.to_string());
                return;
            }
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(200));
    child.kill().unwrap(); // SIGKILL: the child's Drop never runs.
    child.wait().unwrap();
    let started = started.expect("the child started Kafka and said where");
    let mut words = started.split(' ');
    let (dir, pid, port) = (
        Path::new(words.next().unwrap()).to_path_buf(),
        words.next().unwrap().parse::<u32>().unwrap(),
        words.next().unwrap().parse::<u16>().unwrap(),
    );
    assert!(
        running(pid),
        "Kafka pid {pid} should run until its watch acts"
    );
    // The watch polls every second, gives the JVM 10 s after SIGTERM, then removes the data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(pid) || dir.exists() {
        assert!(
            Instant::now() < deadline,
            "60 s after its owner was killed: Kafka pid {pid} running: {}, {} exists: {}",
            running(pid),
            dir.display(),
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_port_closed(port);
    assert_port_closed(port + 1);
}

#[test]
fn fetch_without_java_fails_clearly() {
    let path = tempfile::tempdir().expect("temp dir");
    let libs = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let out = Command::new("/bin/bash")
        .arg(&script)
        .arg("fetch")
        .env("PATH", path.path())
        .env("BROOK_KAFKA_LIBS", libs.path())
        .output()
        .expect("run kafka.sh fetch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("error: java (17 or newer) is needed for Kafka"),
        "stderr: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(libs.path()).unwrap().count(),
        0,
        "fetch wrote into libs"
    );
}

#[test]
fn extra_properties_reach_the_broker_and_survive_a_restart() {
    let err = KafkaCluster::start_with(1, &[("log.flush.interval.messages", "1 2")])
        .err()
        .expect("a value with a space is refused");
    assert!(err.to_string().contains("may not contain spaces"), "{err}");
    if !kafka_available("extra_properties_reach_the_broker_and_survive_a_restart") {
        return;
    }
    let kafka = KafkaCluster::start_with(1, &[("log.flush.interval.messages", "1")])
        .expect("start with extra properties");
    let props = kafka.dir().join("node-1/server.properties");
    let has = || {
        std::fs::read_to_string(&props)
            .unwrap()
            .lines()
            .any(|l| l == "log.flush.interval.messages=1")
    };
    assert!(has(), "server.properties lacks the extra property");
    kafka.stop_node(1).unwrap();
    kafka.start_node(1).unwrap();
    assert!(has(), "the restart dropped the extra property");
    // The broker took it: its startup log prints the effective config.
    let log = std::fs::read_to_string(kafka.dir().join("node-1/kafka.out")).unwrap();
    assert!(
        log.contains("log.flush.interval.messages = 1"),
        "not in the broker's config dump"
    );
}

#[test]
fn bad_start_arguments_are_refused_naming_them() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["start", d, "99999"],
            "PORT must be a number in 1..65530, got '99999'",
        ),
        (&["start", d, "20000", "2"], "NODES must be 1 or 3, got '2'"),
        (
            &["start", d, "port"],
            "PORT must be a number in 1..65530, got 'port'",
        ),
    ];
    for (args, message) in cases {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written for refused arguments"
    );
}
