#!/usr/bin/env bash
# A real Apache Kafka on demand, from Maven Central jars (no tarball, no Docker): one KRaft node
# or a 3-node cluster on loopback ports, for the Kafka interop tests (brook-tests' kafka
# harness) and brook-bench's side-by-side runs.
#
#   scripts/kafka.sh fetch                   jars into $BROOK_KAFKA_LIBS (default target/kafka/libs);
#                                            needs Java 17+ and Maven; cached (.complete marker),
#                                            so a second fetch downloads nothing
#   scripts/kafka.sh start DIR [PORT [NODES]]
#                                            starts NODES (1 or 3, default 1) broker+controller
#                                            nodes; node i (1-based) serves clients on
#                                            127.0.0.1:PORT+2(i-1) (PORT default 9092) and its
#                                            controller on the next port, and lives in DIR/node-i
#                                            (server.properties, logs/, kafka.out, kafka.pid).
#                                            Formats each node's logs/ only once (so a start after
#                                            a stop keeps the data), waits until every node logs
#                                            "Kafka Server started" and accepts TCP (90 s at most,
#                                            else kills what it started and fails), prints the
#                                            pids, one a line. 3 nodes: replication factor 3,
#                                            min.insync.replicas 2 (internal topics too); 1 node:
#                                            replication factor 1. Brokers log to kafka.out with
#                                            timestamps; their session is 4 s (9 s by default),
#                                            so a restarted node re-registers soon.
#   scripts/kafka.sh stop DIR                stops every node under DIR (SIGTERM, SIGKILL after
#                                            30 s) and waits until all are gone
#   scripts/kafka.sh start-node DIR I        restarts node I of the cluster in DIR, waits until it
#                                            serves, prints its pid
#   scripts/kafka.sh stop-node DIR I         stops node I (SIGTERM, SIGKILL after 30 s), waits
#                                            until it is gone
#   scripts/kafka.sh bootstrap DIR           prints 127.0.0.1:P1,127.0.0.1:P2,... for DIR's nodes
#   scripts/kafka.sh tool CLASS ARGS...      runs a Kafka tool, e.g. org.apache.kafka.tools.TopicCommand
#                                            (logging at WARN, so stderr holds its errors)
#
# Environment: BROOK_KAFKA_LIBS (jar directory), KAFKA_HEAP_OPTS (JVM heap flags, default
# "-Xms256m -Xmx1g"), KAFKA_EXTRA_PROPERTIES (space-separated key=value broker settings added
# to every node's server.properties at `start`, e.g. "log.flush.interval.messages=1"; kept in
# DIR/extra.properties for restarts), BROOK_KAFKA_OWNER_PID (at `start` and `start-node`: the
# pid of the process the nodes belong to, such as a test or brook-bench; should it end without
# stopping them, killed or interrupted, each node stops within seconds and DIR is removed, so no
# JVM or data outlives it). DIR also holds cluster.id (one id for all nodes) and cluster.conf (PORT
# and NODES, for bootstrap and start-node). The Kafka version is pinned in
# scripts/kafka/pom.xml (all Kafka artifacts at one version).
set -euo pipefail

# No dirname: `fetch` must be able to say "java is needed" even with an empty PATH.
case "$0" in
    */*) here="${0%/*}" ;;
    *) here=. ;;
esac
root="$(cd "$here/.." && pwd)"
libs="${BROOK_KAFKA_LIBS:-$root/target/kafka/libs}"
started_line="Kafka Server started"
start_timeout=90
stop_timeout=30

die() {
    echo "error: $*" >&2
    exit 1
}

# Java 17 or newer on PATH, else a clear error.
need_java() {
    command -v java >/dev/null 2>&1 ||
        die "java (17 or newer) is needed for Kafka; install a JDK 17+ (e.g. openjdk-17-jre-headless) and put java on PATH"
    local out major
    out="$(java -version 2>&1)" || die "java (17 or newer) is needed for Kafka; \`java -version\` failed: $out"
    if [[ $out =~ version\ \"([0-9]+)(\.([0-9]+))? ]]; then
        major="${BASH_REMATCH[1]}"
        if [ "$major" = 1 ]; then
            major="${BASH_REMATCH[3]:-0}"
        fi
    else
        die "java (17 or newer) is needed for Kafka; cannot read the version from \`java -version\`: $out"
    fi
    if [ "$major" -lt 17 ]; then
        die "java (17 or newer) is needed for Kafka; $(command -v java) is Java $major"
    fi
}

fetch() {
    need_java
    if [ -f "$libs/.complete" ]; then
        return
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn is needed to fetch Kafka's jars (install Maven)"
    mkdir -p "$libs"
    mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs"
    touch "$libs/.complete"
}

heap_opts() {
    # Word splitting is wanted: KAFKA_HEAP_OPTS holds several flags.
    # shellcheck disable=SC2086
    printf '%s\n' ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
}

java_run() {
    local heap
    mapfile -t heap < <(heap_opts)
    # Tools log at WARN so that their stderr holds errors, not the client configuration.
    java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$libs/*" "$@"
}

# For StorageTool: a short-lived JVM starts faster with C1 only and the serial GC.
java_quick() {
    java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$libs/*" "$@"
}

# Whether PID is a process that has not exited (a zombie awaiting its reaping has).
running() {
    local stat rest
    if [ ! -d /proc/self ]; then
        kill -0 "$1" 2>/dev/null
        return
    fi
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest="${stat##*) }"
    [ "${rest%% *}" != Z ]
}

# Pids this invocation launched, by node: trusted as the node's broker even before the
# background shell has exec'd java (when the command line is still the shell's).
declare -A launched=()

# Whether PID is node I's running broker. A pid this invocation did not launch must also have
# the node's command line, so that a recycled pid is not taken for the broker.
node_running() {
    local dir="$1" i="$2" pid="$3" cmd
    running "$pid" || return 1
    [ "${launched[$i]:-}" != "$pid" ] || return 0
    [ -d /proc/self ] || return 0
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmd == *kafka.Kafka\ "$dir/node-$i/server.properties"* ]]
}

# Reads DIR/cluster.conf into the globals port and nodes; sets the global dir to DIR's
# absolute path (the path the nodes' command lines hold).
read_conf() {
    [ -f "$1/cluster.conf" ] || die "no Kafka cluster in $1 (no $1/cluster.conf); run start first"
    dir="$(cd "$1" && pwd)"
    read -r port nodes <"$dir/cluster.conf"
}

client_port() { echo $((port + 2 * ($1 - 1))); }

check_node_arg() {
    local i="$1"
    if ! [[ $i =~ ^[0-9]+$ ]] || [ "$i" -lt 1 ] || [ "$i" -gt "$nodes" ]; then
        die "node must be 1..$nodes, got '$i'"
    fi
}

write_props() {
    local dir="$1" i="$2" nd="$1/node-$2" voters="" j rf=1 isr=1 cport ctrl
    for j in $(seq 1 "$nodes"); do
        voters="${voters:+$voters,}$j@127.0.0.1:$(($(client_port "$j") + 1))"
    done
    if [ "$nodes" = 3 ]; then
        rf=3
        isr=2
    fi
    cport="$(client_port "$i")"
    ctrl=$((cport + 1))
    # A short broker session: a restarted node re-registers once its old session expired
    # (DUPLICATE_BROKER_REGISTRATION until then; 9 s by default), and a killed node is fenced
    # sooner.
    cat >"$nd/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$cport,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$nd/logs
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
PROPS
    # Extra broker settings given at `start` (KAFKA_EXTRA_PROPERTIES), kept for restarts.
    if [ -f "$1/extra.properties" ]; then
        cat "$1/extra.properties" >>"$nd/server.properties"
    fi
}

# Fails (returns 1, with a message) when node I cannot be launched: it runs already, or one of
# its ports accepts connections.
check_launchable() {
    local dir="$1" i="$2" nd="$1/node-$2" p
    if [ -f "$nd/kafka.pid" ] && node_running "$dir" "$i" "$(cat "$nd/kafka.pid")"; then
        echo "error: node $i in $dir is already running (pid $(cat "$nd/kafka.pid"))" >&2
        return 1
    fi
    for p in "$(client_port "$i")" $(($(client_port "$i") + 1)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "error: port 127.0.0.1:$p (node $i) is already in use" >&2
            return 1
        fi
    done
}

# Launches node I's JVM in the background, immune to SIGHUP like nohup (config written, log
# dir formatted); its pid goes to DIR/node-I/kafka.pid, its output to DIR/node-I/kafka.out
# (the previous one is kept as kafka.out.prev).
launch() {
    local dir="$1" i="$2" nd="$1/node-$2" heap
    [ ! -f "$nd/kafka.out" ] || mv -f "$nd/kafka.out" "$nd/kafka.out.prev"
    mapfile -t heap < <(heap_opts)
    (
        trap '' HUP
        exec java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -Dorg.slf4j.simpleLogger.showDateTime=true \
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS" \
            -cp "$libs/*" kafka.Kafka "$nd/server.properties"
    ) </dev/null >"$nd/kafka.out" 2>&1 &
    launched[$i]=$!
    echo "$!" >"$nd/kafka.pid"
    if [ -n "${BROOK_KAFKA_OWNER_PID:-}" ]; then
        # Detached from the caller's pipes, or the caller would wait for the watch to end.
        watch_owner "$dir" "$i" "$!" "$BROOK_KAFKA_OWNER_PID" </dev/null >/dev/null 2>&1 &
    fi
}

# The start time of process PID (field 22 of /proc/PID/stat), empty when there is none: a pid
# plus its start time names one process, even after the pid is reused.
start_time() {
    local stat rest fields
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    rest="${stat##*) }"
    read -r -a fields <<<"$rest"
    echo "${fields[19]}"
}

# Runs in the background beside node I's broker JVM (pid JVM) while process OWNER lives. Ends
# when the broker stops. When OWNER ends first, stops the broker (SIGTERM, SIGKILL after 10 s),
# removes the node's directory, and the last node's watch removes DIR. Both pids are checked
# with their start times, so a reused pid is neither watched nor killed.
watch_owner() {
    local dir="$1" i="$2" jvm="$3" owner="$4" born jvm_born
    [[ $owner =~ ^[0-9]+$ ]] || return 0
    born="$(start_time "$owner")"
    [ -n "$born" ] || born=gone
    jvm_born="$(start_time "$jvm")"
    [ -n "$jvm_born" ] || return 0
    # Whether the JVM (not a process that took its pid since) has not exited.
    jvm_alive() { running "$jvm" && [ "$(start_time "$jvm")" = "$jvm_born" ]; }
    while jvm_alive; do
        if [ "$(start_time "$owner")" != "$born" ] || ! running "$owner"; then
            kill -TERM "$jvm" 2>/dev/null || true
            local deadline=$((SECONDS + 10))
            while jvm_alive && [ "$SECONDS" -lt "$deadline" ]; do
                sleep 0.2
            done
            if jvm_alive; then
                kill -KILL "$jvm" 2>/dev/null || true
            fi
            while jvm_alive; do
                sleep 0.1
            done
            rm -rf "$dir/node-$i"
            if ! compgen -G "$dir/node-*" >/dev/null; then
                rm -rf "$dir"
            fi
            return 0
        fi
        sleep 1
    done
}

# Waits until none of the nodes in the caller's arrays pids/idx runs; returns 1 if some still
# do after SECS seconds.
wait_gone() {
    local deadline=$((SECONDS + $1)) j left
    while :; do
        left=0
        for j in "${!pids[@]}"; do
            if node_running "$dir" "${idx[$j]}" "${pids[$j]}"; then
                left=1
            fi
        done
        [ "$left" = 1 ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# Stops the given nodes together: SIGTERM, SIGKILL after GRACE seconds, then waits until all
# are gone. Usage: kill_nodes DIR GRACE I...
kill_nodes() {
    local dir="$1" grace="$2" i j pid
    shift 2
    local -a pids=() idx=()
    for i in "$@"; do
        pid="$(cat "$dir/node-$i/kafka.pid" 2>/dev/null)" || continue
        if node_running "$dir" "$i" "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            idx+=("$i")
        fi
    done
    if ! wait_gone "$grace"; then
        for j in "${!pids[@]}"; do
            if node_running "$dir" "${idx[$j]}" "${pids[$j]}"; then
                echo "warning: Kafka node ${idx[$j]} (pid ${pids[$j]}) still running $grace s after SIGTERM; sending SIGKILL" >&2
                kill -KILL "${pids[$j]}" 2>/dev/null || true
            fi
        done
        wait_gone 10 || die "Kafka pids ${pids[*]} still running 10 s after SIGKILL"
    fi
    for i in "$@"; do
        rm -f "$dir/node-$i/kafka.pid"
    done
}

# Waits until every given node serves: kafka.out holds the started line and the client port
# accepts TCP. On a JVM exit or after start_timeout seconds, kills these nodes and fails.
# Usage: wait_serving DIR I...
wait_serving() {
    local dir="$1" i nd pid deadline
    local -a pending
    shift
    deadline=$((SECONDS + start_timeout))
    while :; do
        pending=()
        for i in "$@"; do
            nd="$dir/node-$i"
            pid="$(cat "$nd/kafka.pid")"
            if ! node_running "$dir" "$i" "$pid"; then
                echo "error: Kafka node $i (pid $pid) exited while starting; last lines of $nd/kafka.out:" >&2
                tail -n 30 "$nd/kafka.out" >&2 || true
                kill_nodes "$dir" 5 "$@"
                exit 1
            fi
            if ! grep -qF "$started_line" "$nd/kafka.out" 2>/dev/null ||
                ! (exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$i")") 2>/dev/null; then
                pending+=("$i")
            fi
        done
        [ "${#pending[@]}" -gt 0 ] || return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            for i in "${pending[@]}"; do
                nd="$dir/node-$i"
                echo "error: Kafka node $i did not serve on 127.0.0.1:$(client_port "$i") within $start_timeout s; last lines of $nd/kafka.out:" >&2
                tail -n 30 "$nd/kafka.out" >&2 || true
            done
            kill_nodes "$dir" 5 "$@"
            exit 1
        fi
        sleep 0.2
    done
}

start() {
    local dir="${1:?usage: start DIR [PORT [NODES]]}" want_port="${2:-9092}" want_nodes="${3:-1}"
    local i nd id failed=0
    if ! [[ $want_port =~ ^[0-9]+$ ]] || [ "$want_port" -lt 1 ] || [ "$want_port" -gt 65530 ]; then
        die "PORT must be a number in 1..65530, got '$want_port'"
    fi
    [ "$want_nodes" = 1 ] || [ "$want_nodes" = 3 ] || die "NODES must be 1 or 3, got '$want_nodes'"
    fetch
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ -f "$dir/cluster.conf" ]; then
        read_conf "$dir"
        if [ "$port" != "$want_port" ] || [ "$nodes" != "$want_nodes" ]; then
            die "$dir holds a cluster of $nodes node(s) on port $port; start it with those or use a fresh DIR"
        fi
    fi
    port="$want_port"
    nodes="$want_nodes"
    for i in $(seq 1 "$nodes"); do
        check_launchable "$dir" "$i" || exit 1
    done
    echo "$port $nodes" >"$dir/cluster.conf"
    if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
        # Space-separated key=value pairs (no spaces inside a value).
        # shellcheck disable=SC2086 # word splitting is the point
        printf '%s\n' $KAFKA_EXTRA_PROPERTIES >"$dir/extra.properties"
    fi
    if [ ! -s "$dir/cluster.id" ]; then
        java_quick kafka.tools.StorageTool random-uuid >"$dir/cluster.id.tmp"
        mv "$dir/cluster.id.tmp" "$dir/cluster.id"
    fi
    id="$(cat "$dir/cluster.id")"
    local -a fmt=()
    for i in $(seq 1 "$nodes"); do
        nd="$dir/node-$i"
        mkdir -p "$nd/logs"
        write_props "$dir" "$i"
        if [ ! -f "$nd/logs/meta.properties" ]; then
            java_quick kafka.tools.StorageTool format -t "$id" -c "$nd/server.properties" \
                >"$nd/format.log" 2>&1 &
            fmt+=("$!:$i")
        fi
    done
    for f in "${fmt[@]}"; do
        if ! wait "${f%%:*}"; then
            echo "error: formatting node ${f#*:} failed; $dir/node-${f#*:}/format.log:" >&2
            cat "$dir/node-${f#*:}/format.log" >&2
            failed=1
        fi
    done
    [ "$failed" = 0 ] || exit 1
    for i in $(seq 1 "$nodes"); do
        launch "$dir" "$i"
    done
    wait_serving "$dir" $(seq 1 "$nodes")
    for i in $(seq 1 "$nodes"); do
        cat "$dir/node-$i/kafka.pid"
    done
}

start_node() {
    local dir="${1:?usage: start-node DIR I}" i="${2:?usage: start-node DIR I}"
    fetch
    read_conf "$dir"
    check_node_arg "$i"
    [ -f "$dir/node-$i/logs/meta.properties" ] || die "node $i in $dir was never started; use start"
    check_launchable "$dir" "$i" || exit 1
    launch "$dir" "$i"
    wait_serving "$dir" "$i"
    cat "$dir/node-$i/kafka.pid"
}

stop_node() {
    local dir="${1:?usage: stop-node DIR I}" i="${2:?usage: stop-node DIR I}"
    read_conf "$dir"
    check_node_arg "$i"
    kill_nodes "$dir" "$stop_timeout" "$i"
}

stop() {
    local dir="${1:?usage: stop DIR}"
    read_conf "$dir"
    kill_nodes "$dir" "$stop_timeout" $(seq 1 "$nodes")
}

bootstrap() {
    local dir="${1:?usage: bootstrap DIR}" i out=""
    read_conf "$dir"
    for i in $(seq 1 "$nodes"); do
        out="${out:+$out,}127.0.0.1:$(client_port "$i")"
    done
    echo "$out"
}

case "${1:-}" in
    fetch) fetch ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    start-node) shift; start_node "$@" ;;
    stop-node) shift; stop_node "$@" ;;
    bootstrap) shift; bootstrap "$@" ;;
    tool) shift; fetch; java_run "$@" ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" >&2; exit 2 ;;
esac
