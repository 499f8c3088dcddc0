#!/usr/bin/env bash
# `make test`: lint, then the whole suite against a real Kafka broker.
# Starts the broker only if none answers, and stops only what it started.
set -uo pipefail
cd "$(dirname "$0")/.."
# A TYMPAN_BROKER given from outside is someone else's broker: use it, never manage it.
external_broker=${TYMPAN_BROKER:-}
export TYMPAN_BROKER=${TYMPAN_BROKER:-127.0.0.1:${TYMPAN_KAFKA_PORT:-9092}}
# Bounded form of the slow/load tests unless told otherwise.
export TYMPAN_TEST_SCALE=${TYMPAN_TEST_SCALE:-ci}

echo "==> lint (ruff, mypy)"
.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || exit 1
.venv/bin/mypy --strict stream exporters || exit 1

state=running
if [ -z "$external_broker" ]; then
  # Prints exactly `started` (we own it: stop it afterwards) or `running` (leave it).
  state=$(scripts/kafka.sh up --porcelain) || exit 1
fi
echo "==> broker at $TYMPAN_BROKER ($state)"
# The secure broker (SASL_SSL + ACLs) for the `security` tests, on its own port.
secure_state=running
if [ -z "${TYMPAN_KAFKA_SECURE_DIR:-}" ]; then
  secure_state=$(scripts/kafka.sh up --secure --porcelain) || exit 1
fi
echo "==> secure broker ($secure_state): environment files in ${TYMPAN_KAFKA_SECURE_DIR:-.tympan/kafka-secure}"
# The three-node cluster (replication, failover) for the `cluster` tests, on ports 9101-9103.
cluster_state=running
if [ -z "${TYMPAN_KAFKA_CLUSTER:-}" ]; then
  cluster_state=$(scripts/kafka.sh up --cluster --porcelain) || exit 1
  TYMPAN_KAFKA_CLUSTER=$(scripts/kafka.sh status --cluster 2>/dev/null) || exit 1
  export TYMPAN_KAFKA_CLUSTER
fi
echo "==> three-node cluster ($cluster_state) at $TYMPAN_KAFKA_CLUSTER"
stop_broker() {
  if [ "$cluster_state" = started ]; then scripts/kafka.sh down --cluster; fi
  if [ "$secure_state" = started ]; then scripts/kafka.sh down --secure; fi
  if [ "$state" = started ]; then scripts/kafka.sh down; fi
}
trap stop_broker EXIT

echo "==> pytest"
.venv/bin/python -m pytest -p no:cacheprovider --durations=15 "$@"
