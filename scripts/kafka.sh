#!/usr/bin/env bash
# A real Apache Kafka broker on demand, from Maven Central jars (no tarball, no Docker): the
# groundwork for the Kafka interop tests and brook-bench's side-by-side runs.
#
#   scripts/kafka.sh fetch                 jars into target/kafka/libs (cached; needs Java 17+, Maven)
#   scripts/kafka.sh start DIR [PORT]      format DIR and start a single-node KRaft broker on
#                                          127.0.0.1:PORT (default 9092; controller on PORT+1);
#                                          waits until it serves, prints its pid
#   scripts/kafka.sh stop DIR              stops the broker started in DIR (SIGTERM, then SIGKILL)
#   scripts/kafka.sh tool CLASS ARGS...    runs a Kafka tool, e.g. org.apache.kafka.tools.TopicCommand
#
# The Kafka version is pinned in scripts/kafka/pom.xml (all Kafka artifacts at one version).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
libs="$root/target/kafka/libs"

fetch() {
    if [ -f "$libs/.complete" ]; then
        return
    fi
    command -v java >/dev/null || { echo "error: java (17 or newer) is needed for Kafka" >&2; exit 1; }
    command -v mvn >/dev/null || { echo "error: mvn is needed to fetch Kafka's jars" >&2; exit 1; }
    mkdir -p "$libs"
    mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs"
    touch "$libs/.complete"
}

java_run() {
    java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -cp "$libs/*" "$@"
}

start() {
    local dir="$1" port="${2:-9092}"
    local ctrl=$((port + 1))
    fetch
    mkdir -p "$dir/logs"
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/logs
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    if [ ! -f "$dir/logs/meta.properties" ]; then
        local id
        id=$(java_run kafka.tools.StorageTool random-uuid)
        java_run kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >"$dir/format.log" 2>&1
    fi
    nohup java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -cp "$libs/*" \
        kafka.Kafka "$dir/server.properties" >"$dir/kafka.out" 2>&1 &
    local pid=$!
    echo "$pid" > "$dir/kafka.pid"
    for _ in $(seq 1 120); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: kafka exited; see $dir/kafka.out" >&2
            tail -20 "$dir/kafka.out" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$pid"
            return
        fi
        sleep 0.5
    done
    echo "error: kafka did not listen on 127.0.0.1:$port within 60 s; see $dir/kafka.out" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
}

stop() {
    local dir="$1" pid
    pid=$(cat "$dir/kafka.pid" 2>/dev/null) || { echo "no kafka.pid in $dir" >&2; exit 1; }
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/kafka.pid"; return 0; }
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/kafka.pid"
}

case "${1:-}" in
    fetch) fetch ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    tool) shift; fetch; java_run "$@" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
