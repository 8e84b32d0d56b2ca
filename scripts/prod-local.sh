#!/usr/bin/env bash
# The production shape on one machine, each service its own process:
#   etcd -> interlock controlplane -> N x interlock dataplane (usage sink: kafka)
#   -> Kafka (KRaft, one node) -> interlock ingest -> ClickHouse (embedded chDB directory)
#
#   scripts/prod-local.sh up [--data-planes N] [--fake-provider]
#   scripts/prod-local.sh status
#   scripts/prod-local.sh down [--purge]
#
# State, logs, secrets and pid files live in $INTERLOCK_LOCAL_DIR (default .interlock/prod-local);
# `up` writes $INTERLOCK_LOCAL_DIR/env to `source` (admin URL + token, gateway URLs). All ports move
# by $INTERLOCK_LOCAL_PORT_OFFSET (default 0): etcd 2379/2380, Kafka 9092/9093, admin API 8081,
# gRPC 50051, ingest health 8090, fake provider 9099, data planes 8100, 8101, ...
# Needs: interlock on PATH (or in .venv), etcd (scripts/install-etcd.sh), a JDK 17+ and Maven
# for Kafka (scripts/install-kafka.sh runs on first `up`).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(mkdir -p "${INTERLOCK_LOCAL_DIR:-$ROOT/.interlock/prod-local}" && cd "${INTERLOCK_LOCAL_DIR:-$ROOT/.interlock/prod-local}" && pwd)"
OFF="${INTERLOCK_LOCAL_PORT_OFFSET:-0}"
ETCD_PORT=$((2379 + OFF)); ETCD_PEER=$((2380 + OFF)); KAFKA_PORT=$((9092 + OFF)); KAFKA_CTRL=$((9093 + OFF))
ADMIN_PORT=$((8081 + OFF)); GRPC_PORT=$((50051 + OFF)); INGEST_PORT=$((8090 + OFF)); FAKE_PORT=$((9099 + OFF))
DP_BASE=$((8100 + OFF))
TOPIC="${INTERLOCK_KAFKA_TOPIC:-interlock.usage.v1}"
RUN="$DIR/run"; LOGS="$DIR/logs"

die() { echo "prod-local: $*" >&2; exit 1; }
say() { echo "prod-local: $*"; }

interlock_bin() {
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/interlock" ]; then echo "$ROOT/.venv/bin/interlock"
    elif command -v interlock >/dev/null 2>&1; then command -v interlock
    else die "interlock is not installed: run scripts/dev.sh once (it creates .venv), or pip install -e ."; fi
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

wait_for() {  # name, seconds, command...: poll until the command succeeds; fail with the log tail
    local name=$1 secs=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        alive "$name" || { tail -n 40 "$LOGS/$name.log" >&2; die "$name exited during start-up (log: $LOGS/$name.log)"; }
        [ $SECONDS -lt $end ] || { tail -n 40 "$LOGS/$name.log" >&2; die "$name not ready after ${secs}s (log: $LOGS/$name.log)"; }
        sleep 0.3
    done
}

start() {  # name, command... (environment already exported by the caller's subshell)
    local name=$1; shift
    if alive "$name"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
    setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}

secret() {  # file: create once with 48 random bytes (base64), owner-only
    [ -s "$1" ] || { umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > "$1"; }
}

kafka_up() {
    command -v java >/dev/null 2>&1 || die "java is not installed: Kafka needs a JDK 17+ (apt-get install openjdk-17-jre-headless)"
    local libs="${KAFKA_LIBS:-$ROOT/.cache/kafka/libs}"
    [ -n "${KAFKA_LIBS:-}" ] || sh "$ROOT/scripts/install-kafka.sh" >/dev/null
    mkdir -p "$DIR/kafka"
    cat > "$DIR/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CTRL
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/kafka/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    cp "$ROOT/scripts/kafka/log4j2.properties" "$DIR/kafka/log4j2.properties"  # shared with the test broker
    local java=(java -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true
                "-Dlog4j2.configurationFile=$DIR/kafka/log4j2.properties" "-Dkafka.logs.dir=$LOGS" -cp "$libs/*")
    if [ ! -f "$DIR/kafka/data/meta.properties" ]; then
        local cid; cid="$(python3 -c 'import base64,uuid
while (c := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(c)')"
        "${java[@]}" kafka.tools.StorageTool format -t "$cid" -c "$DIR/kafka/server.properties" >>"$LOGS/kafka.log" 2>&1 \
            || { tail -n 20 "$LOGS/kafka.log" >&2; die "kafka storage format failed"; }
    fi
    start kafka "${java[@]}" kafka.Kafka "$DIR/kafka/server.properties"
}

up() {
    local dps=2 fake=0
    while [ $# -gt 0 ]; do
        case $1 in
            --data-planes) dps=$2; shift 2 ;;
            --fake-provider) fake=1; shift ;;
            *) die "unknown option $1 (up [--data-planes N] [--fake-provider])" ;;
        esac
    done
    [[ $dps =~ ^[1-9][0-9]?$ ]] || die "--data-planes must be 1..99"
    command -v etcd >/dev/null 2>&1 || die "etcd is not installed: run scripts/install-etcd.sh"
    command -v curl >/dev/null 2>&1 || die "curl is required"
    local il; il="$(interlock_bin)"
    mkdir -p "$RUN" "$LOGS" "$DIR/secrets"
    secret "$DIR/secrets/admin-token"; secret "$DIR/secrets/key-pepper"; secret "$DIR/secrets/fake-provider-key"
    secret "$DIR/secrets/ingest-query-token"  # the control plane's read-only usage queries to ingest
    echo "$dps" > "$RUN/data-planes"

    say "etcd on 127.0.0.1:$ETCD_PORT"
    start etcd etcd --name prod-local --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "prod-local=http://127.0.0.1:$ETCD_PEER" --logger zap --log-level warn
    say "Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT"
    kafka_up
    wait_for etcd 30 http_ok "http://127.0.0.1:$ETCD_PORT/health"
    # the topics belong to the product: `interlock kafka init` creates them (and doubles as the readiness probe)
    kafka_init() { "$il" kafka init --bootstrap "127.0.0.1:$KAFKA_PORT" --topic "$TOPIC" --timeout 3 \
        --partitions "${INTERLOCK_KAFKA_PARTITIONS:-4}" --replication-factor 1 > "$RUN/kafka-init.out"; }
    wait_for kafka 90 kafka_init
    cat "$RUN/kafka-init.out"

    export INTERLOCK_KEY_PEPPER_FILE="$DIR/secrets/key-pepper" PYTHONUNBUFFERED=1
    if [ $fake = 1 ]; then
        say "fake provider on 127.0.0.1:$FAKE_PORT"
        start fake-provider "$il" fake-provider --port "$FAKE_PORT" --api-key "$(cat "$DIR/secrets/fake-provider-key")"
        write_fake_policy
    fi
    say "control plane: admin http://127.0.0.1:$ADMIN_PORT, gRPC 127.0.0.1:$GRPC_PORT"
    # usage queries (interlock spend/top/cost/audit, the console) go to ingest, which owns the chDB directory
    INTERLOCK_STORE="etcd://127.0.0.1:$ETCD_PORT" INTERLOCK_ADMIN_TOKEN_FILE="$DIR/secrets/admin-token" \
        INTERLOCK_USAGE_STORE="ingest+http://127.0.0.1:$INGEST_PORT" \
        INTERLOCK_USAGE_STORE_TOKEN_FILE="$DIR/secrets/ingest-query-token" \
        INTERLOCK_ADMIN_PORT=$ADMIN_PORT INTERLOCK_GRPC_PORT=$GRPC_PORT start controlplane "$il" controlplane
    say "ingest: $TOPIC -> chdb://$DIR/clickhouse"
    INTERLOCK_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" INTERLOCK_KAFKA_TOPIC="$TOPIC" INTERLOCK_INGEST_BATCH_MS=500 \
        INTERLOCK_CLICKHOUSE_DSN="chdb://$DIR/clickhouse" INTERLOCK_INGEST_HEALTH_PORT=$INGEST_PORT \
        INTERLOCK_INGEST_QUERY_TOKEN_FILE="$DIR/secrets/ingest-query-token" \
        start ingest "$il" ingest
    wait_for controlplane 60 http_ok "http://127.0.0.1:$ADMIN_PORT/healthz"
    local i
    for ((i = 0; i < dps; i++)); do
        say "data plane dp-$i on http://127.0.0.1:$((DP_BASE + i)) (usage -> Kafka)"
        FAKE_PROVIDER_KEY="$(cat "$DIR/secrets/fake-provider-key")" INTERLOCK_NODE_ID="dp-$i" \
            INTERLOCK_DP_PORT=$((DP_BASE + i)) INTERLOCK_CONTROL_PLANE="127.0.0.1:$GRPC_PORT" \
            INTERLOCK_DP_STATE_DIR="$DIR/dp-$i" INTERLOCK_USAGE_SINK=kafka INTERLOCK_KAFKA_TOPIC="$TOPIC" \
            INTERLOCK_KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" INTERLOCK_SPOOL_DIR="$DIR/dp-$i/usage-spool" \
            start "dp-$i" "$il" dataplane
    done
    for ((i = 0; i < dps; i++)); do wait_for "dp-$i" 60 http_ok "http://127.0.0.1:$((DP_BASE + i))/healthz"; done
    wait_for ingest 90 http_ok "http://127.0.0.1:$INGEST_PORT/healthz"
    write_env "$dps"
    say "up. Next: source $DIR/env && interlock apply -f <policy.yaml>   (data planes report ready once a policy exists)"
}

write_fake_policy() {
    cat > "$DIR/policy.yaml" <<EOF
# Written by scripts/prod-local.sh up --fake-provider: the bundled fake provider (no real API key needed).
providers:
  - {name: fake, kind: openai_compatible, base_url: "http://127.0.0.1:$FAKE_PORT/v1", credential: "env:FAKE_PROVIDER_KEY"}
models:
  - {name: fake-small, provider: fake, price: {input: 1.00, output: 2.00}}
aliases:
  - {name: fast, target: fake-small}
teams:
  - {id: local, name: Local test team, allowed_models: [fast, fake-small]}
EOF
}

write_env() {
    local i urls=""
    for ((i = 0; i < $1; i++)); do urls="$urls http://127.0.0.1:$((DP_BASE + i))"; done
    umask 077
    {
        echo "# source me: the admin CLI and the gateways of scripts/prod-local.sh"
        echo "export INTERLOCK_ADMIN_URL=http://127.0.0.1:$ADMIN_PORT"
        echo "export INTERLOCK_ADMIN_TOKEN=\"\$(cat '$DIR/secrets/admin-token')\""
        echo "export INTERLOCK_GATEWAYS=\"${urls# }\""
        echo "export ETCDCTL_ENDPOINTS=127.0.0.1:$ETCD_PORT INTERLOCK_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
        echo "export INTERLOCK_INGEST_URL=http://127.0.0.1:$INGEST_PORT INTERLOCK_CLICKHOUSE_DSN=chdb://$DIR/clickhouse"
    } > "$DIR/env"
}

stop_one() {  # SIGTERM the process group we started, SIGKILL after 30 s
    local name=$1 pid
    [ -f "$RUN/$name.pid" ] || return 0
    pid="$(cat "$RUN/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        local end=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
        say "stopped $name"
    fi
    rm -f "$RUN/$name.pid"
}

components() {  # start order
    local n=0 i
    [ -f "$RUN/data-planes" ] && n="$(cat "$RUN/data-planes")"
    printf '%s\n' etcd kafka fake-provider controlplane ingest
    for ((i = 0; i < n; i++)); do echo "dp-$i"; done
}

down() {
    local purge=0
    [ "${1:-}" = --purge ] && purge=1
    # data planes first (they flush usage to Kafka on SIGTERM), then ingest (commits what it read)
    local name
    for name in $(components | tac); do stop_one "$name"; done
    if [ $purge = 1 ]; then rm -rf "$DIR"; say "removed $DIR"; else say "down (state kept in $DIR; --purge deletes it)"; fi
}

status() {
    [ -d "$RUN" ] || die "nothing started in $DIR (scripts/prod-local.sh up)"
    local name bad=0 n=0 i
    [ -f "$RUN/data-planes" ] && n="$(cat "$RUN/data-planes")"
    printf '%-14s %-8s %-8s %s\n' COMPONENT PID STATE CHECK
    for name in $(components); do
        [ -f "$RUN/$name.pid" ] || { [ "$name" = fake-provider ] && continue; }
        local state=down check="" pid="-"
        [ -f "$RUN/$name.pid" ] && pid="$(cat "$RUN/$name.pid")"
        if alive "$name"; then
            state=running
            case $name in
                etcd) check="http://127.0.0.1:$ETCD_PORT/health" ;;
                controlplane) check="http://127.0.0.1:$ADMIN_PORT/healthz" ;;
                ingest) check="http://127.0.0.1:$INGEST_PORT/healthz" ;;
                fake-provider) check="http://127.0.0.1:$FAKE_PORT/_fake/stats" ;;
                dp-*) check="http://127.0.0.1:$((DP_BASE + ${name#dp-}))/readyz" ;;
            esac
            if [ -n "$check" ]; then http_ok "$check" && check="ok  $check" || { check="NOT READY $check"; bad=1; }; fi
            [[ $name == dp-* && $check == NOT* ]] && check="$check (no policy yet? interlock apply -f ...)"
            [ "$name" = kafka ] && check="127.0.0.1:$KAFKA_PORT"
        else
            bad=1
        fi
        printf '%-14s %-8s %-8s %s\n' "$name" "$pid" "$state" "$check"
    done
    echo "logs: $LOGS   env: $DIR/env"
    return $bad
}

cmd="${1:-}"; [ $# -gt 0 ] && shift
case "$cmd" in
    up) up "$@" ;;
    down) down "$@" ;;
    status) status ;;
    *) echo "usage: scripts/prod-local.sh up [--data-planes N] [--fake-provider] | status | down [--purge]" >&2; exit 2 ;;
esac
