#!/usr/bin/env bash
# `make demo`: the main job end to end on the shipped default models.
#   broker (if none runs) → worker → sample calls played in real time → live events
#   → end-of-stream summaries → everything shut down. Exits non-zero when a step fails
#   or a stream ends without its summary.
#   Beside the rendered calls and tracks it plays a real call and a real music track
#   (recorded, not synthesised: models/realset/demo.py, Debian packages fetched once with
#   apt-get download into ~/.cache/tympan/realset, nothing installed) and ends by saying
#   what the shipped models made of them, right or wrong.
# Environment (defaults in brackets; tests/integration/test_demo.py runs a short demo):
#   TYMPAN_DEMO_CALLS [6], TYMPAN_DEMO_MUSIC [2]   how many sample calls and music tracks
#   TYMPAN_DEMO_SCALE [1]        their length relative to the default (25-39 s calls, 30 s tracks;
#                                the real call up to 30 s, cut at a turn's end, the real track 20 s)
#   TYMPAN_DEMO_DIR [var/demo]   rendered audio (re-rendered when the three above change)
#   TYMPAN_DEMO_LOG_DIR [var/demo-logs]   each run's logs and registry in a RUN_ID folder
#   TYMPAN_DEMO_RUN_ID [seconds since the epoch]   names the topics (demo-RUN_ID.*)
#   TYMPAN_DEMO_EXTERNAL_BROKER  set: use the broker at TYMPAN_BROKER, never start/stop one
#   TYMPAN_DEMO_RTP_PORT         the RTP listener's port [a free even port]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export TYMPAN_BROKER=${TYMPAN_BROKER:-127.0.0.1:${TYMPAN_KAFKA_PORT:-9092}}
RUN_ID=${TYMPAN_DEMO_RUN_ID:-$(date +%s)}
PREFIX="demo-$RUN_ID"                # fresh topics: this run's events only
DEMO_DIR=${TYMPAN_DEMO_DIR:-var/demo}
LOG_DIR="${TYMPAN_DEMO_LOG_DIR:-var/demo-logs}/$RUN_ID"
RENDER="calls=${TYMPAN_DEMO_CALLS:-6} music=${TYMPAN_DEMO_MUSIC:-2} scale=${TYMPAN_DEMO_SCALE:-1}"
mkdir -p "$LOG_DIR" || exit 1

state=running
if [ -z "${TYMPAN_DEMO_EXTERNAL_BROKER:-}" ]; then
  state=$(scripts/kafka.sh up --porcelain) || exit 1
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [ "$state" = started ]; then scripts/kafka.sh down >/dev/null; fi
}
trap cleanup EXIT INT TERM

# .complete holds the settings of the rendering it marks: other settings render again.
if [ "$(cat "$DEMO_DIR/.complete" 2>/dev/null)" != "$RENDER" ]; then
  echo "==> rendering sample calls and music into $DEMO_DIR (espeak-ng, festival, fluidsynth, sox)"
  rm -rf "$DEMO_DIR"
  $BIN/python -m models.corpus demo --out "$DEMO_DIR" --quiet --calls "${TYMPAN_DEMO_CALLS:-6}" \
    --music "${TYMPAN_DEMO_MUSIC:-2}" --scale "${TYMPAN_DEMO_SCALE:-1}" || exit 1
  echo "$RENDER" >"$DEMO_DIR/.complete"
fi
echo "==> adding real recordings (people and instruments, not synthesised; Debian packages via apt-get download, nothing installed)"
real_clips() { $BIN/python -m models.realset.demo clips --out "$DEMO_DIR" --scale "${TYMPAN_DEMO_SCALE:-1}"; }
if ! real_clips 2>"$LOG_DIR/real-clips.log"; then
  # A machine set up earlier may have no package lists (or stale ones): refresh them once.
  apt_sudo=(); [ "$(id -u)" -eq 0 ] || apt_sudo=(sudo -n)
  echo "    (that failed: refreshing the package lists with apt-get update, then once more)"
  { "${apt_sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update >"$LOG_DIR/apt-update.log" 2>&1 \
    && real_clips 2>"$LOG_DIR/real-clips.log"; } || {
    echo "fetching the real recordings failed:"; tail -5 "$LOG_DIR/real-clips.log"; exit 1; }
fi

echo "==> creating topics with prefix $PREFIX"
$BIN/tympan topics create --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" >/dev/null || exit 1

REGISTRY="$LOG_DIR/speakers"
# Pinned: the README's excerpt was recorded with it, and the demo's cast are the rendered
# voices speaker-embed/1 was trained on; the default (speaker-embed/2, real voices) is
# what `tympan speakers` and the worker pick without a pin.
SPEAKER_MODEL=speaker-embed/1
echo "==> enrolling the call-center agents' voices (tympan speakers enroll, ≤ 20 s each)"
for dir in "$DEMO_DIR"/enroll/*/; do
  name=$(basename "$dir")
  $BIN/tympan speakers --speaker-registry "$REGISTRY" --speaker-model "$SPEAKER_MODEL" \
    enroll "$name" "$dir"*.wav >>"$LOG_DIR/enroll.log" 2>&1 \
    || { echo "enrolling $name failed:"; tail -5 "$LOG_DIR/enroll.log"; exit 1; }
done
$BIN/tympan speakers --speaker-registry "$REGISTRY" --speaker-model "$SPEAKER_MODEL" list || exit 1

echo "==> starting the worker (models: scene, speaker-embed) — log: $LOG_DIR/worker.log"
$BIN/tympan worker --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" \
  --data-dir "$LOG_DIR/worker-data" \
  --speaker-model "$SPEAKER_MODEL" --speaker-registry "$REGISTRY" \
  --idle-timeout-s 10 --web-port 0 --no-create-topics \
  >"$LOG_DIR/worker.log" 2>&1 &
pids+=($!)
# Faust logs "[^Worker]: Ready" once partitions are assigned and agents run.
for _ in $(seq 1 240); do
  grep -q "Ready" "$LOG_DIR/worker.log" 2>/dev/null && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the worker exited; last lines of its log:"; tail -20 "$LOG_DIR/worker.log"; exit 1
  fi
  sleep 0.5
done
grep -q "Ready" "$LOG_DIR/worker.log" || {
  echo "worker not ready after 120 s; last lines of its log:"; tail -20 "$LOG_DIR/worker.log"; exit 1; }
# A process per core: wait until every process holds partitions, so no rebalance moves the
# calls once they play (a moved call is replayed by its new owner: its first windows
# would show twice below, as at-least-once allows).
want=$(sed -n 's/^tympan worker: \([0-9]*\) worker processes.*/\1/p' "$LOG_DIR/worker.log" | head -1)
for _ in $(seq 1 120); do
  have=$(grep -o '\[[0-9]*\] \[INFO\] partitions assigned: \[[^]]*\]' "$LOG_DIR/worker.log" \
    | awk '{pid = $1; sub(/.*: \[/, ""); sub(/\]$/, ""); last[pid] = $0}
           END {n = 0; for (p in last) if (last[p] != "") n++; print n}')
  [ "${have:-0}" -ge "${want:-1}" ] && break
  sleep 0.5
done

echo "==> live label events (tympan tail)"
$BIN/tympan tail --topic labels --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" &
pids+=($!)

echo "==> playing the sample calls in real time (tympan produce --realtime)"
# The renderer's JSON sidecars say which calls went through the 8 kHz μ-law channel.
mapfile -t tel < <($BIN/python - "$DEMO_DIR" <<'PY'
import json, pathlib, sys
for side in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if json.loads(side.read_text()).get("channel") == "mulaw8k":
        print(side.with_suffix(".wav"))
PY
)
mapfile -t wide < <(for f in "$DEMO_DIR"/*.wav; do
  case " ${tel[*]} " in *" $f "*) ;; *) echo "$f" ;; esac; done)
music=()
producers=()
if [ ${#tel[@]} -gt 0 ]; then
  $BIN/tympan produce --realtime --encoding mulaw --rate 8000 --broker "$TYMPAN_BROKER" \
    --topic "$PREFIX.audio.v1" --no-progress "${tel[@]}" 2>>"$LOG_DIR/produce.log" &
  producers+=($!)
fi
if [ ${#wide[@]} -gt 0 ] || [ ${#music[@]} -gt 0 ]; then
  $BIN/tympan produce --realtime --broker "$TYMPAN_BROKER" \
    --topic "$PREFIX.audio.v1" --no-progress "${wide[@]}" "${music[@]}" 2>>"$LOG_DIR/produce.log" &
  producers+=($!)
fi
for pid in "${producers[@]}"; do
  wait "$pid" || { echo "tympan produce failed; last lines of its log:"; tail -20 "$LOG_DIR/produce.log"; exit 1; }
done
n_streams=$(( ${#tel[@]} + ${#wide[@]} + ${#music[@]} ))

# One live call over RTP, as a session border controller would fork it: ffmpeg sends
# 20 ms PCMU packets to `tympan ingest rtp`, which puts them on the audio topic.
rtp_call=${tel[0]:-${wide[0]:-}}
if [ -n "$rtp_call" ] && command -v ffmpeg >/dev/null; then
  RTP_PORT=${TYMPAN_DEMO_RTP_PORT:-$($BIN/python -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1] & ~1)')}
  echo "==> one call over RTP: ffmpeg -> udp 127.0.0.1:$RTP_PORT -> tympan ingest rtp (log: $LOG_DIR/ingest.log)"
  $BIN/tympan -v ingest rtp --listen "127.0.0.1:$RTP_PORT" --broker "$TYMPAN_BROKER" \
    --topic "$PREFIX.audio.v1" --stream-id-template "rtp-call-{ssrc:08x}" --idle-timeout-s 2 \
    >"$LOG_DIR/ingest.log" 2>&1 &
  ingest_pid=$!
  pids+=($ingest_pid)
  for _ in $(seq 1 60); do grep -q listening "$LOG_DIR/ingest.log" && break; sleep 0.5; done
  grep -q listening "$LOG_DIR/ingest.log" || {
    echo "tympan ingest rtp is not listening after 30 s; last lines of its log:"; tail -20 "$LOG_DIR/ingest.log"; exit 1; }
  ffmpeg -hide_banner -loglevel error -re -i "$rtp_call" -ar 8000 -acodec pcm_mulaw \
    -packetsize 172 -f rtp "rtp://127.0.0.1:$RTP_PORT" >/dev/null || { echo "ffmpeg failed"; exit 1; }
  sleep 3   # the ingest ends the call after 2 s without packets (ffmpeg sends no BYE)
  grep -E "stream '|ended" "$LOG_DIR/ingest.log" | sed 's/^.* INFO [^ ]* /    ingest: /'
  n_streams=$((n_streams + 1))
elif [ -n "$rtp_call" ]; then
  echo "==> (no ffmpeg: skipping the RTP call; scripts/setup-system.sh installs it)"
fi

sleep 2
kill -TERM "${pids[1]}" 2>/dev/null   # the live tail: the calls are over
echo
echo "==> speaker decisions (an event when a voice becomes confident or changes)"
$BIN/tympan tail --topic speakers --from-beginning --idle-exit 3 \
  --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" || exit 1
echo
echo "==> end-of-stream summaries"
$BIN/tympan tail --topic summaries --from-beginning --max "$n_streams" --idle-exit 30 \
  --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" | tee "$LOG_DIR/summaries.txt" || exit 1
n_summaries=$(( $(wc -l <"$LOG_DIR/summaries.txt") - 1 ))   # less the header
if [ "$n_summaries" -lt "$n_streams" ]; then
  echo "only $n_summaries of $n_streams streams ended with a summary; last lines of the worker's log:"
  tail -20 "$LOG_DIR/worker.log"; exit 1
fi
echo
echo "==> real recordings: what the shipped models made of them (not tuned to these files)"
$BIN/tympan tail --topic summaries --from-beginning --json --max "$n_streams" --idle-exit 30 \
  --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" >"$LOG_DIR/summaries.jsonl" || exit 1
$BIN/tympan tail --topic speakers --from-beginning --json --idle-exit 3 \
  --broker "$TYMPAN_BROKER" --topic-prefix "$PREFIX" >"$LOG_DIR/speakers.jsonl" || exit 1
$BIN/python -m models.realset.demo report --out "$DEMO_DIR" --summaries "$LOG_DIR/summaries.jsonl" \
  --speakers "$LOG_DIR/speakers.jsonl" || exit 1
echo "==> demo done: $n_streams streams; logs in $LOG_DIR"
