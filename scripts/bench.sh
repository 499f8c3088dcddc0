#!/usr/bin/env bash
# The benchmarks, quick versions by default (what `make bench` runs).
#
#   scripts/bench.sh [--quick|--full]
#
# --quick (default): features, inference and end-to-end, each short; the e2e part
#   starts the broker if needed (scripts/kafka.sh up) and ends with
#   `max_streams=<K> p99_ms=<x>`.
# --full: the longer sweeps behind benchmarks/RESULTS.md (JSON next to it, and the
#   latency-vs-streams plot).
# Horizontal scale (several workers in one consumer group) is not in either mode:
#   .venv/bin/python benchmarks/bench_e2e.py --workers 2 --streams 300 400 500 600
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mode="${1:---quick}"
case "$mode" in
    --quick | --full) ;;
    *) echo "usage: scripts/bench.sh [--quick|--full]" >&2; exit 2 ;;
esac
# Start the broker only if none answers; stop it afterwards only if we started it.
state=$(scripts/kafka.sh up --porcelain)
trap '[[ $state == started ]] && scripts/kafka.sh down >/dev/null' EXIT
if [[ "$mode" == --quick ]]; then
    echo "== features"; $PY benchmarks/bench_features.py --quick
    echo "== inference"; $PY benchmarks/bench_inference.py --quick
    echo "== end to end"; $PY benchmarks/bench_e2e.py --quick
else
    out=benchmarks/results
    mkdir -p "$out"
    echo "== features"; $PY benchmarks/bench_features.py
    echo "== inference"; $PY benchmarks/bench_inference.py --json "$out/inference.json"
    echo "== end to end"; $PY benchmarks/bench_e2e.py --json "$out/e2e.json" || true
    $PY benchmarks/plot.py benchmarks/latency_vs_streams.png "$out/e2e.json"
fi
