#!/usr/bin/env bash
# Installs, starts, stops and checks the real services for dev and end-to-end tests: a Kafka KRaft
# node and a schema registry (Apicurio, Confluent-compatible API), and with --rest an S3-compatible
# object store (S3Proxy) and Apache Iceberg's REST catalog server on it; plus the Python venv.
#
# usage: dev/services.sh fetch|up [--rest] | down|status|reset|venv|env | kill NAME | tool CLASS [ARGS...]
#
# `kill NAME` (kafka, registry, s3 or rest) is for fault tests: SIGKILL, no clean shutdown; the
# next `up` starts it again on the same data.
#
# Everything lives under .k2/ in the repo (override with K2_STATE_DIR); nothing is installed system-wide.
#   K2_REST=1                 same as --rest
#   K2_KAFKA_PORT             broker port on 127.0.0.1 (default 19092)
#   K2_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 19093)
#   K2_KAFKA_HEAP             broker JVM heap flags (default "-Xms256m -Xmx512m")
#   K2_REGISTRY_PORT          schema registry port on 127.0.0.1 (default 18081)
#   K2_S3_PORT                S3Proxy port on 127.0.0.1 (default 19000)
#   K2_REST_PORT              REST catalog port (default 19181; the server binds every interface)
#   K2_START_TIMEOUT          seconds to wait for a healthy service (default 90)
#   PYTHON                    interpreter that creates the venv (default python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${K2_STATE_DIR:-$ROOT/.k2}
SERVICES=$STATE/services

KAFKA_POM=$ROOT/dev/kafka/pom.xml
KAFKA_TEMPLATE=$ROOT/dev/kafka/server.properties.in
KAFKA_LOG4J=$ROOT/dev/kafka/log4j2.properties
TOOLS_LOG4J=$ROOT/dev/kafka/tools-log4j2.properties
KAFKA_LIB=$STATE/kafka/lib
KAFKA_DIR=$SERVICES/kafka
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_PORT=${K2_KAFKA_PORT:-19092}
CONTROLLER_PORT=${K2_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_HEAP=${K2_KAFKA_HEAP:--Xms256m -Xmx512m}
START_TIMEOUT=${K2_START_TIMEOUT:-${K2_KAFKA_START_TIMEOUT:-90}}

S3_POM=$ROOT/dev/s3/pom.xml
S3_LIB=$STATE/s3/lib
S3_DIR=$SERVICES/s3
S3_PORT=${K2_S3_PORT:-19000}
# Fixed test credentials: the store only listens on loopback and holds test data.
S3_ACCESS_KEY=k2access
S3_SECRET_KEY=k2secretkey
S3_BUCKET=warehouse
S3_REGION=us-east-1

REGISTRY_POM=$ROOT/dev/registry/pom.xml
REGISTRY_HOME=$STATE/registry  # the unpacked distribution: *-runner.jar and lib/
REGISTRY_DIR=$SERVICES/registry
REGISTRY_PORT=${K2_REGISTRY_PORT:-18081}

REST_POM=$ROOT/dev/rest/pom.xml
REST_LIB=$STATE/rest/lib
REST_DIR=$SERVICES/rest
REST_PORT=${K2_REST_PORT:-19181}

VENV=$STATE/venv
REQUIREMENTS=$ROOT/dev/requirements.txt
PYTHON=${PYTHON:-python3}

WITH_REST=${K2_REST:-0}

say() { echo "services: $*"; }
die() { echo "services: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# Kafka 4.x brokers and tools, and Iceberg 1.11, are compiled for Java 17.
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

# ---------------------------------------------------------------- jars from maven central

# fetch_jars NAME POM LIB: copies POM's runtime classpath into LIB, once per POM change.
fetch_jars() {
    local name=$1 pom=$2 lib=$3 marker=$3/.fetched want
    # Keyed by the pom so a version bump refetches instead of mixing two versions on one classpath.
    want=$(hash_of "$pom")
    if [[ -f $marker && $(<"$marker") == "$want" ]]; then
        return 0
    fi
    check_java
    need mvn "install maven"
    say "fetching $name jars from maven central into ${lib#"$ROOT"/}"
    rm -rf "$lib"
    mkdir -p "$lib"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" \
        || die "maven could not resolve the $name jars of ${pom#"$ROOT"/} (output above)"
    echo "$want" >"$marker"
}

# fetch_dist NAME POM DIR: unpacks the tar.gz distribution POM depends on into DIR, once per POM
# change. The archive is not kept: Maven's local repository already holds a copy.
fetch_dist() {
    local name=$1 pom=$2 dir=$3 marker=$3/.fetched want archive
    want=$(hash_of "$pom")
    if [[ -f $marker && $(<"$marker") == "$want" ]]; then
        return 0
    fi
    check_java
    need mvn "install maven"
    need tar "install tar"
    say "fetching $name from maven central into ${dir#"$ROOT"/}"
    # A fresh folder, so a version bump cannot leave the old version's jars in lib/.
    rm -rf "$dir"
    mkdir -p "$dir/.download"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/.download" \
        || die "maven could not resolve the $name archive of ${pom#"$ROOT"/} (output above)"
    for archive in "$dir"/.download/*.tar.gz; do
        [[ -f $archive ]] || die "${pom#"$ROOT"/} resolved no tar.gz archive for $name"
        tar -xzf "$archive" -C "$dir" --no-same-owner || die "could not unpack ${archive##*/} into ${dir#"$ROOT"/}"
    done
    rm -rf "$dir/.download"
    echo "$want" >"$marker"
}

cmd_fetch() {
    fetch_jars kafka "$KAFKA_POM" "$KAFKA_LIB"
    fetch_dist "schema registry" "$REGISTRY_POM" "$REGISTRY_HOME"
    if [[ $WITH_REST == 1 ]]; then
        fetch_jars s3proxy "$S3_POM" "$S3_LIB"
        fetch_jars "iceberg rest catalog" "$REST_POM" "$REST_LIB"
    fi
}

# ---------------------------------------------------------------- processes

# Every service is one java process started by us. Its command line carries
# -Dk2.service=<its folder>, so a pid is only taken for ours if it names that folder: a pid
# recycled after a reboot, or another checkout's service, is never mistaken for it (or killed).
svc_dir() { echo "$SERVICES/$1"; }
svc_pidfile() { echo "$SERVICES/$1/$1.pid"; }
svc_log() { echo "$SERVICES/$1/$1.log"; }
svc_tag() { echo "-Dk2.service=$SERVICES/$1"; }

alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    # Without a reaping init a stopped service lingers as a zombie; that is not running.
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]]
}

# Prints NAME's pid if its pid file names a live process that is that service.
running_pid() {
    local name=$1 file pid
    file=$(svc_pidfile "$name")
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$(svc_tag "$name")" || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_status PORT PATH: the status code of a plain GET on loopback (no curl needed).
http_status() {
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS= read -r -t 10 line <&3 || { exec 3<&-; return 1; }
    exec 3<&-
    line=${line%$'\r'}
    echo "${line#* }" | cut -d' ' -f1
}

# svc_start NAME COMMAND...: starts COMMAND detached, logging to NAME's log.
svc_start() {
    local name=$1 file log i
    shift
    file=$(svc_pidfile "$name")
    log=$(svc_log "$name")
    mkdir -p "$(svc_dir "$name")"
    [[ -f $log ]] && mv -f "$log" "$log.1"
    rm -f "$file"
    # setsid: the service must outlive this script and not die with the caller's process group
    # (make, a test runner). The child writes its own pid before exec'ing java, so the pid file is
    # exact whether or not setsid forks. fd 9 is the lock and must not be inherited by the service.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
    setsid -f bash -c 'echo $$ >"$0" && exec "$@"' "$file" "$@" </dev/null >"$log" 2>&1 9>&-
    for ((i = 0; i < 50; i++)); do
        [[ -s $file ]] && return 0
        sleep 0.1
    done
    die "$name did not write its pid file ${file#"$ROOT"/}"
}

# wait_gone PID TRIES PAUSE: succeeds once PID has exited, fails after TRIES checks PAUSE apart.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        alive "$1" || return 0
        sleep "$3"
    done
    ! alive "$1"
}

svc_stop() {
    local name=$1 file pid
    file=$(svc_pidfile "$name")
    if ! pid=$(running_pid "$name"); then
        rm -f "$file"
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    # A clean KRaft shutdown takes a few seconds; give every service 20 s before forcing.
    if ! wait_gone "$pid" 40 0.5; then
        say "$name (pid $pid) did not stop within 20s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 20 0.25 || die "could not kill $name (pid $pid)"
    fi
    rm -f "$file"
}

svc_fail() {
    local name=$1 log
    shift
    log=$(svc_log "$name")
    echo "services: $*" >&2
    echo "services: last 40 lines of ${log#"$ROOT"/}:" >&2
    tail -n 40 "$log" >&2 2>/dev/null || true
    # Leave nothing half-started behind for the next `up` to trip over.
    svc_stop "$name" >&2
    exit 1
}

# svc_wait NAME PORT CHECK...: waits until PORT opens and the command CHECK succeeds.
svc_wait() {
    local name=$1 port=$2 deadline=$((SECONDS + START_TIMEOUT))
    shift 2
    until port_open "$port"; do
        running_pid "$name" >/dev/null || svc_fail "$name" "$name exited during startup"
        ((SECONDS < deadline)) || svc_fail "$name" "$name did not open 127.0.0.1:$port within ${START_TIMEOUT}s"
        sleep 0.5
    done
    until "$@" >/dev/null 2>&1; do
        running_pid "$name" >/dev/null || svc_fail "$name" "$name exited during startup"
        ((SECONDS < deadline)) || svc_fail "$name" "$name on 127.0.0.1:$port did not answer within ${START_TIMEOUT}s"
        sleep 1
    done
}

# svc_up NAME PORT START_FN CHECK...: starts NAME unless it runs, then waits until it is healthy.
svc_up() {
    local name=$1 port=$2 start=$3 pid
    shift 3
    if pid=$(running_pid "$name"); then
        if port_open "$port"; then
            say "$name already running (pid $pid) on 127.0.0.1:$port"
            return 0
        fi
        say "$name (pid $pid) is still starting; waiting for it"
    else
        # Another checkout's service (or anything else) on our port would make the tests talk to it.
        ! port_open "$port" || die "port 127.0.0.1:$port is taken by another process; set its K2_*_PORT"
        "$start"
        pid=$(<"$(svc_pidfile "$name")")
    fi
    svc_wait "$name" "$port" "$@"
    say "$name ready (pid $pid) on 127.0.0.1:$port"
}

# ---------------------------------------------------------------- kafka

# Runs one Kafka command-line class on the fetched classpath; small heap and C1 only, as these are short-lived.
kafka_tool() {
    local class=$1
    shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
        -cp "$KAFKA_LIB/*" "$class" "$@"
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
    local heap
    read -ra heap <<<"$KAFKA_HEAP"
    ! port_open "$CONTROLLER_PORT" || die "port 127.0.0.1:$CONTROLLER_PORT is taken by another process; set K2_KAFKA_CONTROLLER_PORT"
    mkdir -p "$KAFKA_DIR"
    render_props
    format_storage
    say "starting kafka on 127.0.0.1:$KAFKA_PORT (log ${KAFKA_DIR#"$ROOT"/}/kafka.log)"
    svc_start kafka java "${heap[@]}" "$(svc_tag kafka)" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS"
}

# Healthy = the broker answers a metadata request.
kafka_healthy() {
    local client=$KAFKA_DIR/health-client.properties
    # Short admin timeouts so a not-yet-ready broker fails one attempt fast instead of blocking for 60 s.
    printf '%s\n' request.timeout.ms=5000 default.api.timeout.ms=8000 >"$client"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --command-config "$client" --list
}

# ---------------------------------------------------------------- schema registry

# The distribution's Quarkus runner jar; its name carries the version the pom pins.
registry_jar() {
    local jars=("$REGISTRY_HOME"/*-runner.jar)
    [[ ${#jars[@]} -eq 1 && -f ${jars[0]} ]] || die "no single *-runner.jar in ${REGISTRY_HOME#"$ROOT"/}; run dev/services.sh fetch"
    echo "${jars[0]}"
}

# Apicurio Registry on its default storage, an in-memory H2 database: schemas live as long as the
# process, so every test registers the schemas it uses. Apicurio reads many unprefixed environment
# variables (AUTH_ENABLED, KEYCLOAK_URL, KAFKA_BOOTSTRAP_SERVERS, LOG_LEVEL, QUARKUS_PROFILE...), so
# it starts with an empty environment: a developer's shell cannot switch on auth (which calls
# Keycloak), the Kafka event sink or another profile. auth is pinned off for the same reason.
# C1 only: next to an idle broker on 2 cores it is ready in ~7 s instead of ~13 s, and it only
# serves a few requests per test. Its temp folder (Vert.x's file cache) stays under .k2, so reset
# clears it.
start_registry() {
    local jar
    jar=$(registry_jar)
    mkdir -p "$REGISTRY_DIR/tmp"
    say "starting schema registry on 127.0.0.1:$REGISTRY_PORT (log ${REGISTRY_DIR#"$ROOT"/}/registry.log)"
    svc_start registry env -i PATH="$PATH" HOME="$HOME" \
        java -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "$(svc_tag registry)" -Djava.awt.headless=true \
        -Dfile.encoding=UTF-8 -Djava.io.tmpdir="$REGISTRY_DIR/tmp" \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dregistry.auth.enabled=false -jar "$jar"
}

# Ready = storage and the REST layer answer (Quarkus' readiness checks all pass).
registry_healthy() {
    [[ $(http_status "$REGISTRY_PORT" /health/ready) == 200 ]]
}

# ---------------------------------------------------------------- s3 store and rest catalog

# S3Proxy on its filesystem backend: objects are plain files under .k2/services/s3/data, so they
# outlive a restart just as the REST catalog's SQLite file does.
start_s3() {
    local conf=$S3_DIR/s3proxy.properties
    mkdir -p "$S3_DIR/data/$S3_BUCKET"  # a bucket is a folder on this backend
    cat >"$conf" <<CONF
s3proxy.endpoint=http://127.0.0.1:$S3_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$S3_ACCESS_KEY
s3proxy.credential=$S3_SECRET_KEY
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir=$S3_DIR/data
CONF
    say "starting s3proxy on 127.0.0.1:$S3_PORT (log ${S3_DIR#"$ROOT"/}/s3.log)"
    svc_start s3 java -Xmx256m -XX:+UseSerialGC "$(svc_tag s3)" -cp "$S3_LIB/*" org.gaul.s3proxy.Main --properties "$conf"
}

# Any S3 answer (an anonymous request is refused with 403) means the store is up.
s3_healthy() {
    [[ $(http_status "$S3_PORT" /) =~ ^[0-9]{3}$ ]]
}

# Iceberg's RESTCatalogServer takes its catalog properties from CATALOG_* variables
# (CATALOG_S3_ENDPOINT is s3.endpoint; a double underscore is a dash).
start_rest() {
    mkdir -p "$REST_DIR"
    say "starting iceberg rest catalog on 127.0.0.1:$REST_PORT (log ${REST_DIR#"$ROOT"/}/rest.log)"
    CATALOG_REST_PORT=$REST_PORT \
        CATALOG_URI="jdbc:sqlite:file:$REST_DIR/catalog.db" \
        CATALOG_WAREHOUSE="s3://$S3_BUCKET/" \
        CATALOG_IO__IMPL=org.apache.iceberg.aws.s3.S3FileIO \
        CATALOG_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" \
        CATALOG_S3_PATH__STYLE__ACCESS=true \
        CATALOG_S3_ACCESS__KEY__ID=$S3_ACCESS_KEY \
        CATALOG_S3_SECRET__ACCESS__KEY=$S3_SECRET_KEY \
        CATALOG_CLIENT_REGION=$S3_REGION \
        svc_start rest java -Xmx512m -XX:+UseSerialGC "$(svc_tag rest)" -cp "$REST_LIB/*" \
        org.apache.iceberg.rest.RESTCatalogServer
}

rest_healthy() {
    [[ $(http_status "$REST_PORT" /v1/config) == 200 ]]
}

# ---------------------------------------------------------------- commands

cmd_up() {
    cmd_fetch
    check_java
    svc_up kafka "$KAFKA_PORT" start_kafka kafka_healthy
    svc_up registry "$REGISTRY_PORT" start_registry registry_healthy
    if [[ $WITH_REST == 1 ]]; then
        svc_up s3 "$S3_PORT" start_s3 s3_healthy
        svc_up rest "$REST_PORT" start_rest rest_healthy
    fi
}

cmd_down() {
    # The catalog first: it writes to the store.
    local name
    for name in rest s3 registry kafka; do
        svc_stop "$name"
    done
    say "services stopped"
}

cmd_status() {
    local name port pid down=0
    for name in kafka registry s3 rest; do
        case $name in
        kafka) port=$KAFKA_PORT ;;
        registry) port=$REGISTRY_PORT ;;
        s3) port=$S3_PORT ;;
        rest) port=$REST_PORT ;;
        esac
        if pid=$(running_pid "$name"); then
            if port_open "$port"; then
                echo "$name: running (pid $pid) on 127.0.0.1:$port"
            else
                echo "$name: starting (pid $pid), 127.0.0.1:$port not open yet"
            fi
        else
            echo "$name: stopped"
            # Only what `up` always starts counts; s3 and rest run with --rest alone.
            [[ $name == kafka || $name == registry ]] && down=1
        fi
    done
    ((down == 0)) || return 3
}

cmd_reset() {
    cmd_down
    say "deleting ${SERVICES#"$ROOT"/} (kafka data, objects, catalog and logs)"
    rm -rf "$SERVICES"
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
    # The base URL a Confluent client takes (it appends /subjects/..., /schemas/ids/...).
    echo "export K2_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
    echo "export K2_PYTHON=$VENV/bin/python"
    echo "export K2_REST_URI=http://127.0.0.1:$REST_PORT"
    echo "export K2_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "export K2_S3_BUCKET=$S3_BUCKET"
    echo "export K2_S3_REGION=$S3_REGION"
    echo "export K2_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY"
    echo "export K2_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
}

# A service dying as in a crash or an OOM kill, for fault tests.
cmd_kill() {
    local name=${1:-} pid
    [[ $name =~ ^(kafka|registry|s3|rest)$ ]] || die "usage: dev/services.sh kill kafka|registry|s3|rest"
    pid=$(running_pid "$name") || die "$name is not running"
    kill -KILL "$pid"
    wait_gone "$pid" 40 0.25 || die "$name (pid $pid) survived SIGKILL"
    rm -f "$(svc_pidfile "$name")"
    say "$name (pid $pid) killed"
}

cmd_tool() {
    [[ $# -ge 1 ]] || die "usage: dev/services.sh tool CLASS [ARGS...]"
    [[ -f $KAFKA_LIB/.fetched ]] || die "kafka jars not fetched; run dev/services.sh fetch"
    kafka_tool "$@"
}

USAGE="usage: dev/services.sh fetch|up [--rest] | down|status|reset|venv|env | kill NAME | tool CLASS [ARGS...]"

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    if [[ $cmd == fetch || $cmd == up ]]; then
        while [[ $# -gt 0 ]]; do
            case $1 in
            --rest) WITH_REST=1 ;;
            *) die "$USAGE" ;;
            esac
            shift
        done
    fi
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
        cmd_down
        ;;
    reset)
        take_lock
        cmd_reset
        ;;
    venv)
        take_lock
        cmd_venv
        ;;
    kill)
        take_lock
        cmd_kill "$@"
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    tool) cmd_tool "$@" ;;
    *) die "$USAGE" ;;
    esac
}

main "$@"
