#!/usr/bin/env bash
# Installs, starts, stops and checks the real services for dev and end-to-end tests (Kafka KRaft node, Python venv).
#
# usage: dev/services.sh fetch|up|down|status|reset|venv|env|tool CLASS [ARGS...]
#
# Everything lives under .k2/ in the repo (override with K2_STATE_DIR); nothing is installed system-wide.
#   K2_KAFKA_PORT             broker port on 127.0.0.1 (default 19092)
#   K2_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 19093)
#   K2_KAFKA_HEAP             broker JVM heap flags (default "-Xms256m -Xmx512m")
#   K2_KAFKA_START_TIMEOUT    seconds to wait for a healthy broker (default 90)
#   PYTHON                    interpreter that creates the venv (default python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${K2_STATE_DIR:-$ROOT/.k2}

KAFKA_POM=$ROOT/dev/kafka/pom.xml
KAFKA_TEMPLATE=$ROOT/dev/kafka/server.properties.in
KAFKA_LOG4J=$ROOT/dev/kafka/log4j2.properties
TOOLS_LOG4J=$ROOT/dev/kafka/tools-log4j2.properties
KAFKA_LIB=$STATE/kafka/lib
KAFKA_DIR=$STATE/services/kafka
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_PORT=${K2_KAFKA_PORT:-19092}
CONTROLLER_PORT=${K2_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${K2_KAFKA_HEAP:--Xms256m -Xmx512m}
START_TIMEOUT=${K2_KAFKA_START_TIMEOUT:-90}

VENV=$STATE/venv
REQUIREMENTS=$ROOT/dev/requirements.txt
PYTHON=${PYTHON:-python3}

say() { echo "services: $*"; }
die() { echo "services: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Kafka 4.x brokers and tools are compiled for Java 17.
check_java() {
    need java "install a JDK 17 or newer"
    local spec
    spec=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [[ ${spec%%.*} =~ ^[0-9]+$ && ${spec%%.*} -ge 17 ]] || die "java $spec is too old: kafka 4.x needs java 17 or newer"
}

# Serialises fetch/up/down/venv so parallel `make` runs or test processes do not race on .k2.
take_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.services.lock"
    flock -w 600 9 || die "timed out waiting for $STATE/.services.lock"
}

# ---------------------------------------------------------------- kafka jars

cmd_fetch() {
    local marker=$KAFKA_LIB/.fetched want
    # Keyed by the pom so a version bump refetches instead of mixing two Kafka versions on one classpath.
    want=$(hash_of "$KAFKA_POM")
    if [[ -f $marker && $(<"$marker") == "$want" ]]; then
        return 0
    fi
    check_java
    need mvn "install maven"
    say "fetching kafka jars from maven central into ${KAFKA_LIB#"$ROOT"/}"
    rm -rf "$KAFKA_LIB"
    mkdir -p "$KAFKA_LIB"
    mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB" \
        || die "maven could not resolve the kafka jars of dev/kafka/pom.xml (output above)"
    echo "$want" >"$marker"
}

# ---------------------------------------------------------------- kafka process

# Runs one Kafka command-line class on the fetched classpath; small heap and C1 only, as these are short-lived.
kafka_tool() {
    local class=$1
    shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$KAFKA_LIB/*" "$class" "$@"
}

alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    # Without a reaping init a stopped broker lingers as a zombie; that is not running.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# Prints the broker's pid if the pid file names a live process that is our broker.
running_pid() {
    local pid
    [[ -f $KAFKA_PID ]] || return 1
    pid=$(<"$KAFKA_PID")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # A pid recycled after a reboot must not be taken for the broker (and later killed).
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_PROPS" || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

render_props() {
    local text
    text=$(<"$KAFKA_TEMPLATE")
    text=${text//@BROKER_PORT@/$KAFKA_PORT}
    text=${text//@CONTROLLER_PORT@/$CONTROLLER_PORT}
    text=${text//@DATA_DIR@/$KAFKA_DATA}
    # Comments may mention placeholders; only a setting line with one left over is an error.
    ! grep -qE '^[^#]*@[A-Z_]+@' <<<"$text" || die "unfilled placeholder left in ${KAFKA_TEMPLATE#"$ROOT"/}"
    printf '%s\n' "$text" >"$KAFKA_PROPS.tmp"
    mv -f "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

# KRaft refuses to start on an unformatted log dir; formatting twice would fail, so only the first up formats.
format_storage() {
    [[ -f $KAFKA_DATA/meta.properties ]] && return 0
    local cluster_id
    mkdir -p "$KAFKA_DATA"
    cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid) || die "kafka StorageTool random-uuid failed"
    say "formatting kafka storage (cluster id $cluster_id)"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" >/dev/null \
        || die "kafka StorageTool format failed for ${KAFKA_DATA#"$ROOT"/}"
}

start_kafka() {
    local heap i
    read -ra heap <<<"$KAFKA_HEAP"
    [[ -f $KAFKA_LOG ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    rm -f "$KAFKA_PID"
    say "starting kafka on 127.0.0.1:$KAFKA_PORT (log ${KAFKA_LOG#"$ROOT"/})"
    # setsid: the broker must outlive this script and not die with the caller's process group
    # (make, a test runner). The child writes its own pid before exec'ing java, so the pid file is
    # exact whether or not setsid forks. fd 9 is the lock and must not be inherited by the broker.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
    setsid -f bash -c 'echo $$ >"$0" && exec "$@"' "$KAFKA_PID" \
        java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&-
    for ((i = 0; i < 50; i++)); do
        [[ -s $KAFKA_PID ]] && return 0
        sleep 0.1
    done
    die "kafka did not write its pid file ${KAFKA_PID#"$ROOT"/}"
}

fail_start() {
    echo "services: $*" >&2
    echo "services: last 40 lines of ${KAFKA_LOG#"$ROOT"/}:" >&2
    tail -n 40 "$KAFKA_LOG" >&2 2>/dev/null || true
    # Leave nothing half-started behind for the next `up` to trip over.
    stop_kafka >&2
    exit 1
}

# Healthy = the listener accepts connections and the broker answers a metadata request.
wait_healthy() {
    local deadline=$((SECONDS + START_TIMEOUT)) client=$KAFKA_DIR/health-client.properties
    # Short admin timeouts so a not-yet-ready broker fails one attempt fast instead of blocking for 60 s.
    printf '%s\n' request.timeout.ms=5000 default.api.timeout.ms=8000 >"$client"
    until port_open "$KAFKA_PORT"; do
        running_pid >/dev/null || fail_start "kafka exited during startup"
        ((SECONDS < deadline)) || fail_start "kafka did not open 127.0.0.1:$KAFKA_PORT within ${START_TIMEOUT}s"
        sleep 0.5
    done
    until kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --command-config "$client" --list >/dev/null 2>&1; do
        running_pid >/dev/null || fail_start "kafka exited during startup"
        ((SECONDS < deadline)) || fail_start "kafka on 127.0.0.1:$KAFKA_PORT did not answer a metadata request within ${START_TIMEOUT}s"
        sleep 1
    done
}

cmd_up() {
    local pid
    cmd_fetch
    check_java
    mkdir -p "$KAFKA_DIR"
    if pid=$(running_pid); then
        if port_open "$KAFKA_PORT"; then
            say "kafka already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
            return 0
        fi
        say "kafka (pid $pid) is still starting; waiting for it"
    else
        # Another checkout's broker (or anything else) on our ports would make the tests talk to it.
        ! port_open "$KAFKA_PORT" || die "port 127.0.0.1:$KAFKA_PORT is taken by another process; set K2_KAFKA_PORT"
        ! port_open "$CONTROLLER_PORT" || die "port 127.0.0.1:$CONTROLLER_PORT is taken by another process; set K2_KAFKA_CONTROLLER_PORT"
        render_props
        format_storage
        start_kafka
        pid=$(<"$KAFKA_PID")
    fi
    wait_healthy
    say "kafka ready (pid $pid) on 127.0.0.1:$KAFKA_PORT"
}

stop_kafka() {
    local pid i
    if ! pid=$(running_pid); then
        rm -f "$KAFKA_PID"
        say "kafka not running"
        return 0
    fi
    say "stopping kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    # A clean KRaft shutdown takes a few seconds; give it 20 s before forcing.
    for ((i = 0; i < 40; i++)); do
        alive "$pid" || break
        sleep 0.5
    done
    if alive "$pid"; then
        say "kafka (pid $pid) did not stop within 20s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            alive "$pid" || break
            sleep 0.25
        done
        ! alive "$pid" || die "could not kill kafka (pid $pid)"
    fi
    rm -f "$KAFKA_PID"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        if port_open "$KAFKA_PORT"; then
            echo "kafka: running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
        else
            echo "kafka: starting (pid $pid), 127.0.0.1:$KAFKA_PORT not open yet"
        fi
    else
        echo "kafka: stopped"
        return 3
    fi
}

cmd_reset() {
    stop_kafka
    say "deleting ${STATE#"$ROOT"/}/services (kafka data and logs)"
    rm -rf "$STATE/services"
}

# ---------------------------------------------------------------- python venv

cmd_venv() {
    local marker=$VENV/.requirements.sha256 want
    need "$PYTHON" "set PYTHON to a python 3.10+ interpreter"
    # Keyed by the requirements and the interpreter, so either changing rebuilds.
    want=$( (cat "$REQUIREMENTS"; "$PYTHON" --version 2>&1) | sha256sum | cut -d' ' -f1)
    if [[ -f $marker && $(<"$marker") == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
        return 0
    fi
    # A venv whose interpreter vanished (pyenv upgrade) cannot be repaired in place.
    "$VENV/bin/python" -c '' 2>/dev/null || rm -rf "$VENV"
    if [[ ! -x $VENV/bin/python ]]; then
        say "creating ${VENV#"$ROOT"/}"
        "$PYTHON" -m venv "$VENV" || die "$PYTHON -m venv failed (on debian install python3-venv)"
    fi
    say "installing ${REQUIREMENTS#"$ROOT"/} into ${VENV#"$ROOT"/}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" \
        || die "pip could not install ${REQUIREMENTS#"$ROOT"/} (output above)"
    echo "$want" >"$marker"
}

# Where the tests find the services; `eval "$(dev/services.sh env)"`.
cmd_env() {
    echo "export K2_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
    echo "export K2_KAFKA_LIB=$KAFKA_LIB"
    echo "export K2_PYTHON=$VENV/bin/python"
}

cmd_tool() {
    [[ $# -ge 1 ]] || die "usage: dev/services.sh tool CLASS [ARGS...]"
    [[ -f $KAFKA_LIB/.fetched ]] || die "kafka jars not fetched; run dev/services.sh fetch"
    kafka_tool "$@"
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    fetch)
        take_lock
        cmd_fetch
        ;;
    up)
        take_lock
        cmd_up
        ;;
    down)
        take_lock
        stop_kafka
        ;;
    reset)
        take_lock
        cmd_reset
        ;;
    venv)
        take_lock
        cmd_venv
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    tool) cmd_tool "$@" ;;
    *) die "usage: dev/services.sh fetch|up|down|status|reset|venv|env|tool CLASS [ARGS...]" ;;
    esac
}

main "$@"
