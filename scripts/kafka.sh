#!/usr/bin/env bash
# The single-node Apache Kafka broker (KRaft) that tympan uses for dev, tests and CI.
#
#   scripts/kafka.sh up [--porcelain]   start it (no-op if it already runs); wait until it answers
#   scripts/kafka.sh down                stop it (SIGTERM, then SIGKILL after a timeout)
#   scripts/kafka.sh status              say whether it runs; exit 0 if it answers, 1 if not
#   scripts/kafka.sh logs [-f]           the end of its log
#   ... --secure                         the same for the SASL_SSL broker with ACLs (below)
#   ... --cluster [--node N]             the same for a three-node KRaft cluster (below), or
#                                        one node of it (kill/restart it in failover tests)
#
# `up --porcelain` prints exactly one word on stdout -- `started` (this call started the
# broker: whoever asked should stop it afterwards) or `running` (it was already up: leave
# it running) -- and sends every human message to stderr. See docs/kafka.md.
#
# Only Maven downloads anything: the jars named by scripts/kafka/pom.xml go into
# ${TYMPAN_CACHE:-$HOME/.cache/tympan}/kafka-<version>/libs, once.
#
# Environment:
#   TYMPAN_KAFKA_PORT             PLAINTEXT listener port on 127.0.0.1        (9092)
#   TYMPAN_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1      (PORT + 1)
#   TYMPAN_KAFKA_DIR              config, data, pid and log     (<repo>/.tympan/kafka)
#   TYMPAN_CACHE                  where the jars are cached    ($HOME/.cache/tympan)
#   TYMPAN_KAFKA_HEAP             JVM heap flags                (-Xms256m -Xmx768m)
#   TYMPAN_KAFKA_START_TIMEOUT    seconds to wait for the broker to answer         (90)
#   TYMPAN_KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL              (30)
#   TYMPAN_PYTHON                 python with aiokafka            (<repo>/.venv/bin/python)
#   JAVA_HOME                     JDK 17+ (else the `java` on PATH)
#
# With --secure (docs/security.md): a second broker whose only client listener is
# SASL_SSL (SCRAM-SHA-512, a test CA made with openssl), StandardAuthorizer with
# allow.everyone.if.no.acl.found=false, and one principal per role with its ACLs:
# tympan-worker, tympan-producer, tympan-dashboard, tympan-admin. It creates tympan's
# topics (prefix $TYMPAN_TOPIC_PREFIX, default `tympan`) and writes one environment file
# per principal, <dir>/<principal>.env, holding TYMPAN_BROKER and TYMPAN_KAFKA_*.
#   TYMPAN_KAFKA_SECURE_PORT             SASL_SSL listener port on 127.0.0.1   (9094)
#   TYMPAN_KAFKA_SECURE_CONTROLLER_PORT  its KRaft controller port          (PORT + 1)
#   TYMPAN_KAFKA_SECURE_DIR              config, data, secrets  (<repo>/.tympan/kafka-secure)
#
# With --cluster (docs/kafka.md, "A local cluster"): three KRaft nodes on 127.0.0.1, each
# broker and controller, with replicated internal topics, default.replication.factor=3 and
# min.insync.replicas=2 -- what a production cluster looks like, for the failover tests.
# Each node has its own data folder and ports; the bootstrap list is printed by `status`.
#   TYMPAN_KAFKA_CLUSTER_PORT   node 1's PLAINTEXT port; nodes 2, 3 take the next ones   (9101)
#                               controllers listen 100 above (9201, 9202, 9203)
#   TYMPAN_KAFKA_CLUSTER_DIR    node-N/ folders and the cluster id   (<repo>/.tympan/kafka-cluster)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO/scripts/kafka/pom.xml"
TEMPLATES="$REPO/scripts/kafka"

SECURE=0
CLUSTER=0
NODE=
CLUSTER_NODES=(1 2 3)
PORCELAIN=0
TEMPLATE=server.properties.in
PRINCIPALS=(tympan-broker tympan-admin tympan-worker tympan-producer tympan-dashboard)
# Bump when grant_acls or tympan's topics change (update_acls re-applies them).
# 2: workers write their statuses to control-status and no longer the control topic.
ACL_VERSION=3

# Ports, directories and files of the plain broker, or of the secure one (--secure).
configure() {
    if [[ "$CLUSTER" == 1 ]]; then
        configure_node "${NODE:-1}"
        return
    fi
    if [[ "$SECURE" == 1 ]]; then
        PORT="${TYMPAN_KAFKA_SECURE_PORT:-9094}"
        CONTROLLER_PORT="${TYMPAN_KAFKA_SECURE_CONTROLLER_PORT:-$((PORT + 1))}"
        KAFKA_DIR="${TYMPAN_KAFKA_SECURE_DIR:-$REPO/.tympan/kafka-secure}"
        TEMPLATE=server-secure.properties.in
    else
        PORT="${TYMPAN_KAFKA_PORT:-9092}"
        CONTROLLER_PORT="${TYMPAN_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
        KAFKA_DIR="${TYMPAN_KAFKA_DIR:-$REPO/.tympan/kafka}"
    fi
    BROKER="$HOST:$PORT"
    CONFIG_DIR="$KAFKA_DIR/config"
    DATA_DIR="$KAFKA_DIR/data"
    PID_FILE="$KAFKA_DIR/kafka.pid"
    LOG_FILE="$KAFKA_DIR/kafka.log"
    TLS_DIR="$KAFKA_DIR/tls"
    SECRETS_DIR="$KAFKA_DIR/secrets"
}

# Node $1 of the three-node cluster: its ports, folder and the quorum it belongs to.
configure_node() {
    local base="${TYMPAN_KAFKA_CLUSTER_PORT:-9101}" i
    NODE_ID="$1"
    CLUSTER_DIR="${TYMPAN_KAFKA_CLUSTER_DIR:-$REPO/.tympan/kafka-cluster}"
    PORT=$((base + NODE_ID - 1))
    CONTROLLER_PORT=$((base + 100 + NODE_ID - 1))
    KAFKA_DIR="$CLUSTER_DIR/node-$NODE_ID"
    TEMPLATE=server-cluster.properties.in
    VOTERS=
    BOOTSTRAP=
    for i in "${CLUSTER_NODES[@]}"; do
        VOTERS+="${VOTERS:+,}$i@$HOST:$((base + 100 + i - 1))"
        BOOTSTRAP+="${BOOTSTRAP:+,}$HOST:$((base + i - 1))"
    done
    BROKER="$HOST:$PORT"
    CONFIG_DIR="$KAFKA_DIR/config"
    DATA_DIR="$KAFKA_DIR/data"
    PID_FILE="$KAFKA_DIR/kafka.pid"
    LOG_FILE="$KAFKA_DIR/kafka.log"
    TLS_DIR="$KAFKA_DIR/tls"
    SECRETS_DIR="$KAFKA_DIR/secrets"
}

CACHE="${TYMPAN_CACHE:-$HOME/.cache/tympan}"
HEAP="${TYMPAN_KAFKA_HEAP:--Xms256m -Xmx768m}"
START_TIMEOUT="${TYMPAN_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${TYMPAN_KAFKA_STOP_TIMEOUT:-30}"
HOST=127.0.0.1


say() { echo "kafka: $*" >&2; }
die() {
    echo "kafka: error: $*" >&2
    exit 1
}

kafka_version() {
    local version
    version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
    [[ -n "$version" ]] || die "cannot read <kafka.version> from $POM"
    echo "$version"
}

libs_dir() { echo "$CACHE/kafka-$(kafka_version)/libs"; }

find_python() {
    if [[ -n "${TYMPAN_PYTHON:-}" ]]; then
        echo "$TYMPAN_PYTHON"
    elif [[ -x "$REPO/.venv/bin/python" ]]; then
        echo "$REPO/.venv/bin/python"
    else
        command -v python3 || die "no python found: set TYMPAN_PYTHON to a python with aiokafka"
    fi
}

find_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
        return
    fi
    local java
    java="$(command -v java)" ||
        die "no Java found: install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    readlink -f "$java"
}

check_java_version() {
    local java="$1" major
    major="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    [[ -n "$major" && "$major" -ge 17 ]] ||
        die "$java is Java '${major:-unknown}'; Kafka $(kafka_version) needs Java 17 or newer"
}

# Resolve the broker's jars with Maven, once per version.
ensure_libs() {
    local libs want
    libs="$(libs_dir)"
    # The marker holds the pom's checksum: a dependency added to the pom (kafka-tools
    # for the ACL command) resolves again instead of trusting an older cache.
    want="$(sha256sum "$POM" | cut -c1-16)"
    if [[ -f "$libs/.complete" && "$(cat "$libs/.complete")" == "$want" ]]; then
        return
    fi
    command -v mvn >/dev/null ||
        die "Maven (mvn) is not installed; it fetches the Kafka jars: apt-get install maven"
    say "resolving Kafka $(kafka_version) jars with Maven into $libs"
    # Resolve beside the cache and swap it in whole: brokers that run from the old jars
    # keep their open files, and a failed resolve leaves the old cache as it was.
    local fresh="$libs.new.$$"
    rm -rf "$fresh"
    mkdir -p "$fresh"
    if [[ -z "${JAVA_HOME:-}" ]]; then
        JAVA_HOME="$(dirname "$(dirname "$(find_java)")")"
        export JAVA_HOME
    fi
    local mvn_log="$CACHE/kafka-$(kafka_version)/maven.log"
    mvn -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$fresh" >"$mvn_log" 2>&1 ||
        die "Maven could not resolve the jars of $POM (is Maven Central reachable?); last lines of $mvn_log:
$(tail -n 30 "$mvn_log")"
    ls "$fresh"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven ran but $fresh has no kafka_2.13 jar"
    echo "$want" >"$fresh/.complete"
    rm -rf "$libs"
    mv "$fresh" "$libs"
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Pid of the broker this script started, if that process is alive.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid belongs to some other program: make sure it is our broker.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $CONFIG_DIR/server.properties" ||
        return 1
    echo "$pid"
}

answers() {
    local timeout="$1"
    if [[ "$SECURE" == 1 ]]; then
        [[ -f "$KAFKA_DIR/tympan-admin.env" ]] || return 1
        (cd "$REPO" && set -a && . "$KAFKA_DIR/tympan-admin.env" && set +a &&
            "$(find_python)" -m stream.cli.topics wait --broker "$BROKER" --timeout "$timeout") \
            >/dev/null 2>&1
        return
    fi
    (cd "$REPO" && "$(find_python)" -m stream.cli.topics wait --broker "$BROKER" --timeout "$timeout") \
        >/dev/null 2>&1
}

render() {
    local template="$1" out="$2"
    sed -e "s|@HOST@|$HOST|g" \
        -e "s|@PORT@|$PORT|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" \
        -e "s|@NODE_ID@|${NODE_ID:-1}|g" \
        -e "s|@VOTERS@|${VOTERS:-}|g" \
        -e "s|@TLS_DIR@|$TLS_DIR|g" \
        -e "s|@BROKER_PASSWORD@|$(secret tympan-broker 2>/dev/null || true)|g" \
        "$template" >"$out"
}

write_config() {
    mkdir -p "$CONFIG_DIR" "$DATA_DIR"
    render "$TEMPLATES/$TEMPLATE" "$CONFIG_DIR/server.properties"
    if [[ "$SECURE" == 1 ]]; then chmod 600 "$CONFIG_DIR/server.properties"; fi
    cp "$TEMPLATES/log4j2.properties" "$CONFIG_DIR/log4j2.properties"
}

# Format the KRaft storage once; a formatted data dir is never formatted again.
format_storage() {
    local java="$1" libs cluster_id
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return
    fi
    libs="$(libs_dir)"
    # The nodes of a cluster share one id, made by the first node formatted.
    cluster_id="${CLUSTER_ID:-}"
    [[ -n "$cluster_id" ]] ||
        cluster_id="$("$java" -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
    say "formatting storage in $DATA_DIR (cluster id $cluster_id)"
    local scram=() principal
    if [[ "$SECURE" == 1 ]]; then
        for principal in "${PRINCIPALS[@]}"; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$principal,password=$(secret "$principal")]")
        done
    fi
    "$java" -cp "$libs/*" \
        -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG_DIR/server.properties" \
        "${scram[@]}" \
        >>"$LOG_FILE" 2>&1 ||
        die "formatting storage failed; see $LOG_FILE:
$(tail -n 20 "$LOG_FILE")"
}

# -- the secure broker (--secure) ---------------------------------------------------

# One random password per principal, made once and kept (mode 600) in $SECRETS_DIR.
secret() {
    cat "$SECRETS_DIR/$1.password"
}

make_secrets() {
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    local principal
    for principal in "${PRINCIPALS[@]}"; do
        if [[ ! -s "$SECRETS_DIR/$principal.password" ]]; then
            (umask 077 && openssl rand -hex 24 >"$SECRETS_DIR/$principal.password")
        fi
    done
}

# A test CA and the broker's certificate (for 127.0.0.1 and localhost), made once.
make_tls() {
    command -v openssl >/dev/null || die "openssl is not installed: apt-get install openssl"
    mkdir -p "$TLS_DIR"
    [[ -s "$TLS_DIR/broker.pem" ]] && return
    say "making a test CA and the broker's certificate in $TLS_DIR (openssl)"
    (
        umask 077
        cd "$TLS_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=tympan test CA" \
            -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout broker.key.pkcs8 -out broker.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
            -extfile broker.ext -out broker.crt 2>/dev/null
        # Kafka's PEM keystore: an unencrypted PKCS#8 key followed by the certificate chain.
        openssl pkcs8 -topk8 -nocrypt -in broker.key.pkcs8 -out broker.key
        cat broker.key broker.crt ca.pem >broker.pem
        rm -f broker.csr broker.ext broker.key.pkcs8 ca.srl
        chmod 644 ca.pem
    ) || die "openssl could not make the test certificates in $TLS_DIR"
}

# <principal>.env: what tympan's commands read (TYMPAN_BROKER, TYMPAN_KAFKA_*).
write_env_files() {
    local principal
    mkdir -p "$CONFIG_DIR"
    for principal in "${PRINCIPALS[@]}"; do
        [[ "$principal" == tympan-broker ]] && continue
        (
            umask 077
            cat >"$KAFKA_DIR/$principal.env" <<ENV
# tympan's client settings for principal $principal on the secure dev broker (scripts/kafka.sh up --secure)
TYMPAN_BROKER=$BROKER
TYMPAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL
TYMPAN_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
TYMPAN_KAFKA_SASL_USERNAME=$principal
TYMPAN_KAFKA_SASL_PASSWORD=$(secret "$principal")
TYMPAN_KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem
ENV
        )
    done
    # The Java ACL tool logs in as the broker's own (super user) principal.
    (
        umask 077
        cat >"$CONFIG_DIR/acl-client.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="tympan-broker" password="$(secret tympan-broker)";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
PROPS
    )
}

acl() {
    local java="$1"
    shift
    "$java" -cp "$(libs_dir)/*" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" \
        org.apache.kafka.tools.AclCommand --bootstrap-server "$BROKER" \
        --command-config "$CONFIG_DIR/acl-client.properties" --add --force "$@" >>"$LOG_FILE" 2>&1 ||
        die "adding ACL ($*) failed; see $LOG_FILE"
}

revoke_acl() {
    local java="$1"
    shift
    "$java" -cp "$(libs_dir)/*" -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" \
        org.apache.kafka.tools.AclCommand --bootstrap-server "$BROKER" \
        --command-config "$CONFIG_DIR/acl-client.properties" --remove --force "$@" >>"$LOG_FILE" 2>&1 ||
        die "removing ACL ($*) failed; see $LOG_FILE"
}

# Least privilege per role (docs/security.md has the table). Idempotent: re-adding an
# ACL that exists changes nothing, removing one that does not exist neither.
grant_acls() {
    local java="$1" p="${TYMPAN_TOPIC_PREFIX:-tympan}"
    local audio="$p.audio.v1" labels="$p.labels.v1" speakers="$p.speakers.v1"
    local summaries="$p.summaries.v1" rejected="$p.rejected.v1"
    local control="$p.control.v1" registry="$p.speaker-registry.v1"
    local status="$p.control-status.v1" progress="$p.progress.v1"
    say "granting ACLs for prefix $p"
    write_env_files
    # worker: reads audio, control, registry and control-status (its last-good records);
    # writes results, dead letters and its status records (control-status), never the
    # control topic, which only the admin writes; its consumer group is the app id, by
    # default <prefix>-worker (tympan-worker…). Revoked first: brokers set up by earlier versions of this script
    # let workers write the control topic.
    revoke_acl "$java" --allow-principal User:tympan-worker --operation Write --topic "$control"
    acl "$java" --allow-principal User:tympan-worker --operation Read --operation Describe \
        --operation DescribeConfigs --topic "$audio" --topic "$control" --topic "$registry" \
        --topic "$status"
    acl "$java" --allow-principal User:tympan-worker --operation Write --operation Describe \
        --operation DescribeConfigs --topic "$labels" --topic "$speakers" --topic "$summaries" \
        --topic "$rejected" --topic "$status"
    acl "$java" --allow-principal User:tympan-worker --operation Read --operation Describe \
        --resource-pattern-type prefixed --group "$p-worker"
    # worker with --guarantee exactly-once: its progress records (read on assignment,
    # written in its transactions) and one transactional id per audio partition,
    # <group>.<audio topic>.<n> (docs/delivery.md)
    acl "$java" --allow-principal User:tympan-worker --operation Read --operation Write \
        --operation Describe --operation DescribeConfigs --topic "$progress"
    acl "$java" --allow-principal User:tympan-worker --operation Write --operation Describe \
        --resource-pattern-type prefixed --transactional-id "$p-worker"
    # producer: writes audio, nothing else
    acl "$java" --allow-principal User:tympan-producer --operation Write --operation Describe \
        --operation DescribeConfigs --topic "$audio"
    # dashboard (and tympan tail): reads results and dead letters, writes nothing
    acl "$java" --allow-principal User:tympan-dashboard --operation Read --operation Describe \
        --operation DescribeConfigs --topic "$labels" --topic "$speakers" --topic "$summaries" \
        --topic "$rejected"
    acl "$java" --allow-principal User:tympan-dashboard --operation Read --operation Describe \
        --resource-pattern-type prefixed --group tympan-dashboard
    # admin: creates and inspects every tympan topic, publishes models and enrollments
    acl "$java" --allow-principal User:tympan-admin --operation All \
        --resource-pattern-type prefixed --topic "$p."
    acl "$java" --allow-principal User:tympan-admin --operation Describe --cluster
}

# A secure broker that runs already gets this script's ACLs and topics when they
# changed since it was set up (ACL_VERSION, noted in <dir>/acl-version): `up --secure`
# brings a long-running dev broker up to date without a restart.
update_acls() {
    [[ "$(cat "$KAFKA_DIR/acl-version" 2>/dev/null)" == "$ACL_VERSION" ]] && return 0
    prepare_tools
    say "updating ACLs and topics to version $ACL_VERSION"
    grant_acls "$JAVA"
    create_topics
    echo "$ACL_VERSION" >"$KAFKA_DIR/acl-version"
}

create_topics() {
    say "creating tympan's topics (prefix ${TYMPAN_TOPIC_PREFIX:-tympan}) as tympan-admin"
    (cd "$REPO" && set -a && . "$KAFKA_DIR/tympan-admin.env" && set +a &&
        "$(find_python)" -m stream.cli.topics create --topic-prefix "${TYMPAN_TOPIC_PREFIX:-tympan}") \
        >>"$LOG_FILE" 2>&1 || die "creating topics as tympan-admin failed; see $LOG_FILE"
}

report() {
    # $1: started|running; the one word `--porcelain` callers read.
    if [[ "$PORCELAIN" == 1 ]]; then
        echo "$1"
    fi
}

# Refuse ports that something else holds (another checkout's broker, any program).
check_ports_free() {
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            local what="a process not started by $0 with TYMPAN_KAFKA_DIR=$KAFKA_DIR"
            if [[ "$p" == "$PORT" ]] && answers 5; then
                what="a Kafka broker not started by $0 with TYMPAN_KAFKA_DIR=$KAFKA_DIR"
            fi
            die "port $HOST:$p is taken by $what; stop it, or choose other ports with TYMPAN_KAFKA_PORT / TYMPAN_KAFKA_CONTROLLER_PORT (TYMPAN_KAFKA_CLUSTER_PORT for --cluster)"
        fi
    done
}

# Java, Python and the jars, checked once before any node starts.
prepare_tools() {
    JAVA="$(find_java)"
    check_java_version "$JAVA"
    local python
    python="$(find_python)"
    "$python" -c "import aiokafka" 2>/dev/null ||
        die "$python cannot import aiokafka, which is needed to check the broker answers; run make setup (or set TYMPAN_PYTHON)"
    ensure_libs
}

# Write the configuration, format the storage once and start the JVM of the configured
# node; its pid goes to $PID_FILE.
launch() {
    local pid
    if [[ -f "$PID_FILE" ]]; then
        say "removing stale pid file $PID_FILE"
        rm -f "$PID_FILE"
    fi
    check_ports_free
    if [[ "$SECURE" == 1 ]]; then
        make_secrets
        make_tls
        write_env_files
    fi
    write_config
    if [[ -f "$LOG_FILE" ]]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; fi
    format_storage "$JAVA"

    say "starting Kafka $(kafka_version) at $BROKER (controller $HOST:$CONTROLLER_PORT, dir $KAFKA_DIR)"
    # shellcheck disable=SC2086 # HEAP holds several flags
    setsid nohup "$JAVA" $HEAP \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CONFIG_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$KAFKA_DIR" \
        -cp "$(libs_dir)/*" kafka.Kafka "$CONFIG_DIR/server.properties" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
}

# Wait until the configured node answers; die (leaving it running) when it does not.
await_answer() {
    local pid
    pid="$(cat "$PID_FILE")"
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers 5; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            die "the broker exited during start-up; last lines of $LOG_FILE:
$(tail -n 30 "$LOG_FILE")"
        fi
        if ((SECONDS >= deadline)); then
            die "the broker (pid $pid) did not answer at $BROKER within ${START_TIMEOUT}s; it is left running for inspection ($0 down stops it); last lines of $LOG_FILE:
$(tail -n 30 "$LOG_FILE")"
        fi
        sleep 1
    done
}

cmd_up() {
    if [[ "$CLUSTER" == 1 ]]; then
        cluster_up
        return
    fi
    local pid
    if pid="$(running_pid)"; then
        if answers 10; then
            say "already running at $BROKER (pid $pid, dir $KAFKA_DIR)"
            if [[ "$SECURE" == 1 ]]; then update_acls; fi
            report running
            return 0
        fi
        die "broker pid $pid is alive but $BROKER does not answer; try: $0 down && $0 up"
    fi
    prepare_tools
    launch
    await_answer
    if [[ "$SECURE" == 1 ]]; then
        grant_acls "$JAVA"
        create_topics
        echo "$ACL_VERSION" >"$KAFKA_DIR/acl-version"
        say "environment files of the principals (source one before a tympan command):"
        local principal
        for principal in "${PRINCIPALS[@]:1}"; do say "  $KAFKA_DIR/$principal.env"; done
    fi
    say "started at $BROKER (pid $(cat "$PID_FILE")); log: $LOG_FILE"
    report started
}

# The nodes `--cluster` acts on: the one given with --node, else all three.
cluster_targets() {
    if [[ -n "$NODE" ]]; then echo "$NODE"; else echo "${CLUSTER_NODES[@]}"; fi
}

# Start every node of the cluster that is not running (all at once: a KRaft quorum answers
# only when a majority of its controllers run), then wait until each answers.
cluster_up() {
    local i started=()
    configure_node 1
    mkdir -p "$CLUSTER_DIR"
    for i in $(cluster_targets); do
        configure_node "$i"
        running_pid >/dev/null && continue
        if [[ ${#started[@]} -eq 0 ]]; then
            prepare_tools
            [[ -s "$CLUSTER_DIR/cluster.id" ]] ||
                "$JAVA" -cp "$(libs_dir)/*" kafka.tools.StorageTool random-uuid 2>/dev/null |
                tail -n1 >"$CLUSTER_DIR/cluster.id"
            CLUSTER_ID="$(cat "$CLUSTER_DIR/cluster.id")"
            [[ -n "$CLUSTER_ID" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
        fi
        launch
        started+=("$i")
    done
    for i in $(cluster_targets); do
        configure_node "$i"
        [[ -f "$PID_FILE" ]] || die "node $i of the cluster is not running (dir $KAFKA_DIR)"
        await_answer
    done
    if [[ ${#started[@]} -eq 0 ]]; then
        say "already running: $BOOTSTRAP (dir $CLUSTER_DIR)"
        report running
        return 0
    fi
    say "started node(s) ${started[*]}; the cluster answers at $BOOTSTRAP (dir $CLUSTER_DIR)"
    report started
}

cmd_down() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        say "not running (dir $KAFKA_DIR)"
        return 0
    fi
    say "stopping broker at $BROKER (pid $pid)"
    kill -TERM "$pid"
    await_exit "$pid"
    rm -f "$PID_FILE"
    say "stopped"
}

# Wait until every pid given has exited; SIGKILL those still alive STOP_TIMEOUT seconds
# after the call (one deadline for all of them).
await_exit() {
    local pid deadline=$((SECONDS + STOP_TIMEOUT))
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                say "pid $pid still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.5
        done
    done
}

# Stop the cluster's nodes (or the one given with --node) all at once: the last
# controller of a quorum that stops alone waits for the others until it is killed.
cluster_down() {
    local i pid pids=()
    for i in $(cluster_targets); do
        configure_node "$i"
        if pid="$(running_pid)"; then
            say "stopping node $i at $BROKER (pid $pid)"
            kill -TERM "$pid"
            pids+=("$pid")
        else
            say "node $i not running (dir $KAFKA_DIR)"
        fi
        rm -f "$PID_FILE"
    done
    await_exit "${pids[@]+"${pids[@]}"}"
    say "stopped"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if answers 5; then
            say "running at $BROKER (pid $pid, dir $KAFKA_DIR)"
            echo "$BROKER"
            return 0
        fi
        say "pid $pid is alive but $BROKER does not answer (starting, or stuck: see $LOG_FILE)"
        return 1
    fi
    if port_open "$PORT"; then
        say "not started by this script (dir $KAFKA_DIR), but something listens on $BROKER"
    else
        say "not running (dir $KAFKA_DIR)"
    fi
    return 1
}

cmd_logs() {
    [[ -f "$LOG_FILE" ]] || die "no log yet at $LOG_FILE"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 50 -f "$LOG_FILE"
    fi
    tail -n "${1:-100}" "$LOG_FILE"
}

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}" rest=() arg
    [[ $# -gt 0 ]] && shift
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --secure) SECURE=1 ;;
        --cluster) CLUSTER=1 ;;
        --node)
            [[ $# -ge 2 && " ${CLUSTER_NODES[*]} " == *" $2 "* ]] ||
                die "--node takes one of ${CLUSTER_NODES[*]}"
            NODE="$2"
            shift
            ;;
        --porcelain) PORCELAIN=1 ;;
        *) rest+=("$1") ;;
        esac
        shift
    done
    [[ "$SECURE" == 1 && "$CLUSTER" == 1 ]] && die "--secure and --cluster are separate brokers: pick one"
    [[ -n "$NODE" && "$CLUSTER" != 1 ]] && die "--node needs --cluster"
    set -- "${rest[@]+"${rest[@]}"}"
    configure
    if [[ "$CLUSTER" == 1 && "$cmd" != up && "$cmd" != logs ]]; then
        local i rc=0 pid
        if [[ "$cmd" == down ]]; then
            cluster_down
            return
        fi
        for i in $(cluster_targets); do
            configure_node "$i"
            case "$cmd" in
            down) cmd_down ;;
            status) cmd_status >/dev/null || rc=1 ;;
            *) usage ;;
            esac
        done
        [[ "$cmd" == status && "$rc" == 0 && -z "$NODE" ]] && echo "$BOOTSTRAP"
        return "$rc"
    fi
    case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    *) usage ;;
    esac
}

main "$@"
