"""End-to-end capacity: K concurrent real-time calls through Kafka and ``tympan worker``.

What one level of the sweep does (all on this machine, the broker included):

1. a fresh topic set (unique prefix) and ``--workers N`` (default 1)
   ``.venv/bin/tympan worker`` subprocesses are started once for the whole sweep:
   one consumer group (same app id), separate data dirs, ``--web-port 0``; the
   levels start once every worker's latest assignment is non-empty and together
   they cover every audio partition (the audio topic has 8);
2. for each of ``--encodings`` (default both: 16 kHz PCM, then 8 kHz μ-law) a
   producer subprocess (this file, ``_produce`` mode) plays ``K`` calls in real time:
   100 ms chunks (``--frame-ms``), each call starting at a different moment of the
   first ``ramp_s`` (default one frame, as ``tympan produce --streams`` spreads
   them; so sends are spread evenly over every 100 ms), for ``duration_s``; then
   each call ends with ``eos``. It runs ``tympan produce``'s own engine
   (``stream.produce.produce_frames``: one process, one asyncio loop, payloads
   encoded once, one ``send_batch`` per partition per round) and reports its send-lag percentiles;
3. this process reads the labels and summaries topics (``stream.kafka.readers``, no
   group, from the end) and stamps each event when it becomes readable here (the
   consumer's receive time, not the record's timestamp: the result topics keep
   ``CreateTime``, the worker's send time, which leaves out the broker and the fetch).
   Latency of a window = that stamp minus the capture time of the window's last
   sample (``capture_time_s`` in the label event: the stream's first ``capture-us``
   + ``end_s``). Every window is timed, the padded last one too (it ends at its last
   real audio, not at its nominal end). :func:`latency_split` also reports the
   warm-up (windows captured before ``ramp_s + warmup_s``), each call's last window,
   and the summary from the end of stream (the EOS frame's capture time + its
   duration = the stream's origin + ``duration_s``); ``independent_load.py`` computes
   the same figures around ``tympan produce --realtime --streams N``. ``emit``
   latency uses the event record's Kafka ``CreateTime`` (when the worker sent it);
4. CPU time of the workers, producer, broker and this reader comes from
   ``/proc/<pid>/stat`` over the measured interval, and whole-machine busy time from
   ``/proc/stat`` (other people's jobs on the shared cores show up as "other");
   ``worker`` is the sum over the worker processes (each one is in ``cpu_cores`` as
   ``worker0``, ``worker1``, … when ``N`` > 1); ``str/core`` is the workers' cost:
   windows they emitted while metered per CPU-second they used, ÷ 2 (a real-time
   stream makes 2 windows per second).

A level *keeps up* when every expected window's event arrives and latency does not
drift up over the run (median of the last quarter of windows within ``drift_ms`` of
the first quarter's); it *passes* when it also has p99 <= ``p99_budget_ms``. The sweep
stops at the first failing level (unless ``--keep-going``); the answer is the largest
passing ``K``. Then the seed-style baseline (``seed_baseline.py``, a subprocess since
it imports TensorFlow) and the in-process pipeline (``_pipeline`` mode: the worker's
domain objects without Kafka or Faust) give streams per core and tympan's ratio.

Run::

    .venv/bin/python benchmarks/bench_e2e.py --quick          # PCM and μ-law, 12 s and 24 s calls
    .venv/bin/python benchmarks/bench_e2e.py --quick --telephony   # 8 kHz μ-law calls only
    .venv/bin/python benchmarks/bench_e2e.py --streams 100 300 600 1000 --duration-s 30
    .venv/bin/python benchmarks/bench_e2e.py --streams 400 --profile /tmp/w.txt  # py-spy
    .venv/bin/python benchmarks/bench_e2e.py --workers 2 --streams 300 400 500 600
    .venv/bin/python benchmarks/bench_e2e.py _pipeline models/zoo/scene/2 1000 8
    .venv/bin/python benchmarks/bench_e2e.py _pipeline models/zoo/scene/2 500 8 mulaw 20

The last line is ``max_streams=<K> p99_ms=<x>`` (``max_streams=0`` and the smallest
level's p99 when none passes). ``--json PATH`` keeps every figure;
``benchmarks/plot.py`` draws latency percentiles against ``K`` from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TYMPAN = REPO / ".venv" / "bin" / "tympan"
PYTHON = sys.executable
KAFKA_PID = REPO / ".tympan" / "kafka" / "kafka.pid"
SR = 16000
CHUNK_MS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
ASSIGNED = re.compile(r"partitions assigned: \[([0-9, ]*)\]")


# -- CPU accounting ----------------------------------------------------------------------


def proc_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); 0 if gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def broker_pid() -> int | None:
    try:
        return int(KAFKA_PID.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class CpuMeter:
    """CPU seconds of named processes and of the machine between ``start`` and ``stop``."""

    pids: dict[str, int | None]
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0
    started_s: float = 0.0
    stopped_s: float = 0.0

    def start(self) -> None:
        self._start = {name: proc_cpu_s(pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu_s()
        self._wall = time.monotonic()
        self.started_s = time.time()

    def stop(self) -> dict[str, float]:
        """Cores used (CPU-s per wall-s) by each process, ``machine`` and ``other``."""
        wall = max(time.monotonic() - self._wall, 1e-9)
        self.stopped_s = time.time()
        busy, total = machine_cpu_s()
        out = {
            name: (proc_cpu_s(pid) - self._start[name]) / wall for name, pid in self.pids.items()
        }
        out["machine"] = (busy - self._machine[0]) / wall
        out["cores"] = (total - self._machine[1]) / wall
        out["other"] = max(0.0, out["machine"] - sum(v for k, v in out.items() if k in self.pids))
        return {k: round(v, 3) for k, v in out.items()}


# -- the producer subprocess ---------------------------------------------------------------


def call_audio(seconds: float, seed: int) -> np.ndarray:
    """Speech-like audio (gliding harmonics + noise) so features and model do real work."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + (60 * seed) % 100 + 40 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.08
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return (y + rng.standard_normal(len(t)) * 0.01).astype(np.float32)


TELEPHONY_SR = 8000


def encoded_chunks(
    n_clips: int, seconds: float, chunk_samples: int, *, telephony: bool = False
) -> list[list[bytes]]:
    """``n_clips`` looping clips, each cut once into chunk payloads: little-endian
    int16 at 16 kHz, or (``telephony``) G.711 μ-law at 8 kHz (``chunk_samples`` is
    then counted at 8 kHz)."""
    from stream.audio.g711 import mulaw_encode

    clips = []
    for c in range(n_clips):
        audio = np.clip(call_audio(seconds, c), -1, 1)
        if telephony:  # a telephone channel: every other sample of the 16 kHz clip
            pcm = mulaw_encode((audio[::2] * 32767).astype(np.int16)).tobytes()
            step = chunk_samples
        else:
            pcm = (audio * 32767).astype("<i2").tobytes()
            step = chunk_samples * 2
        clips.append([pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)])
    return clips


async def produce_load(
    broker: str,
    topic: str,
    n_streams: int,
    duration_s: float,
    ramp_s: float,
    prefix: str,
    encoding: str = "pcm_s16le",
    rate: int = SR,
    frame_ms: int = CHUNK_MS,
    linger_ms: int | None = None,
) -> dict[str, Any]:
    """Play ``n_streams`` real-time calls with ``tympan produce``'s engine; return its figures.

    The same code as ``tympan produce --realtime`` (``stream.produce``: frames cut
    from payloads encoded once, a heap merge by due time, one batch per partition
    per round): stream ``j`` plays clip ``j % 8`` encoded as ``encoding`` at ``rate``
    (8 kHz μ-law: telephony), starts ``ramp_s * j / n_streams`` after the first and
    sends chunk ``s`` when its last sample is due, stamped with the capture time of
    its first sample, exactly what a telephony gateway would send.
    """
    import soxr

    from stream.audio.convert import float32_to_payload
    from stream.produce import (
        ProducerTuning,
        Source,
        StreamPlan,
        now_us,
        plan_frames,
        produce_frames,
    )
    from stream.wire.frame import Encoding

    enc = Encoding(encoding)
    clips = []
    for c in range(8):
        y = call_audio(duration_s, c)
        y = y if rate == SR else soxr.resample(y, SR, rate).astype(np.float32)
        clips.append(Source(f"clip{c}", f"clip{c}", float32_to_payload(y, enc), rate, enc))
    plans = [
        StreamPlan(f"{prefix}-{j:05d}", clips[j % len(clips)], round(ramp_s * 1e6 * j / n_streams))
        for j in range(n_streams)
    ]
    started: list[int] = []

    def frames() -> Any:  # the clock starts once the producer is connected
        started.append(now_us())
        yield from plan_frames(plans, chunk_ms=frame_ms, realtime=True, start_us=started[0])

    linger_ms = ProducerTuning().linger_ms if linger_ms is None else linger_ms
    tuning = ProducerTuning(linger_ms=linger_ms, max_batch_size=1 << 20, max_request_size=8 << 20)
    stats = await produce_frames(broker, topic, frames(), realtime=True, tuning=tuning)
    return {**stats.to_dict(), "first_start_s": started[0] / 1e6 if started else 0.0}


# -- the worker -----------------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path
    profiled: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assignment(self) -> list[int] | None:
        """Audio partitions of the worker's latest ``partitions assigned: [...]`` line."""
        found = ASSIGNED.findall(self.log())
        if not found:
            return None
        return [int(p) for p in found[-1].replace(",", " ").split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            # py-spy writes its profile on SIGINT (it forwards it to the worker)
            self.proc.send_signal(signal.SIGINT if self.profiled else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_assigned(workers: list[Worker], n_partitions: int, timeout_s: float) -> None:
    """Return once every worker's latest assignment is non-empty, no partition is in
    two of them and together they hold all ``n_partitions`` (a rebalance is over)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = [w.assignment() for w in workers]
        held = [p for parts in latest if parts for p in parts]
        if all(latest) and sorted(held) == list(range(n_partitions)):
            return
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(
                    f"worker {w.log_path.name} exited ({w.proc.returncode}):\n{w.log()[-3000:]}"
                )
        time.sleep(0.3)
    state = ", ".join(f"{w.log_path.name}: {w.assignment()}" for w in workers)
    raise RuntimeError(
        f"workers did not share the {n_partitions} audio partitions in {timeout_s} s "
        f"({state}):\n{workers[-1].log()[-3000:]}"
    )


def start_worker(
    broker: str,
    prefix: str,
    model_dir: Path,
    tmp: Path,
    extra: list[str],
    profile: Path | None,
    extra_env: dict[str, str],
    index: int = 0,
) -> Worker:
    args = [
        str(TYMPAN),
        "worker",
        "--model",
        str(model_dir),
        "--broker",
        broker,
        "--topic-prefix",
        prefix,
        "--app-id",
        f"{prefix}-worker",
        "--data-dir",
        str(tmp / f"worker-data-{index}"),
        "--web-port",
        "0",
        "--no-create-topics",
        "--processes",  # one process per worker: --workers N meters each one's CPU
        "1",
        "--loglevel",
        "info",
        *extra,
    ]
    if profile is not None:  # py-spy: sampling profiler, the worker runs unmodified
        spy = Path(sys.executable).parent / "py-spy"
        args = [
            str(spy),
            "record",
            "-o",
            str(profile),
            "-f",
            "raw",
            "-r",
            "100",
            "--nonblocking",
            "--",
            *args,
        ]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        **extra_env,
    }
    log_path = tmp / f"worker-{index}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return Worker(proc, log_path, profiled=profile is not None)


def worker_python_pid(worker: Worker, profiled: bool) -> int:
    """The pid doing the work (py-spy's child when profiling)."""
    if not profiled:
        return worker.pid
    for _ in range(50):
        try:
            children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.1)
    return worker.pid


# -- one level ------------------------------------------------------------------------------


def worker_key(index: int, n_workers: int) -> str:
    """CPU-meter name of worker ``index``: ``worker`` alone, else ``worker0``, ``worker1``…"""
    return "worker" if n_workers == 1 else f"worker{index}"


def with_worker_sum(cores: dict[str, float]) -> dict[str, float]:
    """Add ``worker`` = the sum of ``worker0``, ``worker1``, … when there are several."""
    parts = [v for k, v in cores.items() if re.fullmatch(r"worker\d+", k)]
    if parts:
        cores["worker"] = round(sum(parts), 3)
    return cores


@dataclass
class Level:
    """What one level measured."""

    streams: int
    duration_s: float
    encoding: str
    expected_windows: int
    received_windows: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    drift_ms: float
    worker_streams_per_core: float
    emit_p50_ms: float
    emit_p99_ms: float
    keeps_up: bool
    passes: bool
    cpu_cores: dict[str, float]
    producer: dict[str, Any]
    split: dict[str, Any] = field(default_factory=dict)
    """:func:`latency_split`: every window, warm-up, last window, summary."""
    guarantee: str = "at-least-once"
    """The workers' ``--guarantee`` (``--guarantees`` measures several side by side)."""

    @property
    def end_p99_ms(self) -> float:
        """The worse p99 of the last windows and the summaries (end of call)."""
        return max(self.split["last"]["p99_ms"], self.split["summary"]["p99_ms"])


def expected_windows(spec: Any, n_samples: int) -> int:
    from stream.features.windows import full_windows, partial_window_start

    n_frames = 0 if n_samples < spec.n_fft else 1 + (n_samples - spec.n_fft) // spec.hop_length
    extra = partial_window_start(n_frames, spec) is not None and spec.partial_window == "pad"
    return full_windows(n_frames, spec) + int(extra)


@dataclass(frozen=True)
class Arrival:
    """One result event as the reader saw it.

    ``received_s``: when it became readable here (wall clock after ``getmany``);
    ``kind``: ``"label"`` or ``"summary"``. Labels: ``capture_s`` is the capture time
    of the window's last sample, ``end_s`` its end in the stream, ``emitted_s`` the
    record's ``CreateTime``. Summaries: ``end_s`` is the stream's ``duration_s``.
    """

    kind: str
    stream: str
    received_s: float
    index: int = -1
    capture_s: float = float("nan")
    end_s: float = float("nan")
    emitted_s: float = float("nan")
    padded: bool = False


def arrival(kind: str, key: bytes, value: bytes, received_s: float, timestamp_ms: int) -> Arrival:
    """Parse a label or summary record into an :class:`Arrival` (no capture time: NaN)."""
    event = json.loads(value)
    stream = key.decode(errors="replace")
    if kind == "summary":
        return Arrival("summary", stream, received_s, end_s=float(event["duration_s"]))
    capture = event.get("capture_time_s")
    return Arrival(
        "label",
        stream,
        received_s,
        index=int(event["window_index"]),
        capture_s=float("nan") if capture is None else float(capture),
        end_s=float(event["end_s"]),
        emitted_s=timestamp_ms / 1000,  # CreateTime: when the worker sent it
        padded=bool(event.get("padded")),
    )


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def latency_split(arrivals: list[Arrival], timed_from_s: float) -> dict[str, Any]:
    """What users see, the same way for the benchmark and the independent load.

    Latency of a window = ``received_s`` − the capture time of its last sample (the
    worker's ``capture_time_s``: the stream's first ``capture-us`` + ``end_s``; a
    padded window ends at its last real audio, so it is timed like any other).
    ``all``: every window whose end was captured at or after ``timed_from_s``;
    ``warmup``: those before it. ``last``: each stream's last window (the one the end
    of stream releases), from the end of its audio. ``summary``: from the end of
    stream (the stream's origin + ``duration_s``: the EOS frame's capture time + its
    duration) to the summary's arrival. The origin of a stream is ``capture_s −
    end_s`` of any of its windows.
    """
    labels = [a for a in arrivals if a.kind == "label" and a.capture_s == a.capture_s]
    origin = {a.stream: a.capture_s - a.end_s for a in labels}
    last: dict[str, Arrival] = {}
    for a in labels:
        if a.stream not in last or a.index > last[a.stream].index:
            last[a.stream] = a

    def ms(a: Arrival) -> float:
        return (a.received_s - a.capture_s) * 1000

    steady = [ms(a) for a in labels if a.capture_s >= timed_from_s]
    warm = [ms(a) for a in labels if a.capture_s < timed_from_s]
    ends = [ms(a) for a in last.values() if a.capture_s >= timed_from_s]
    summary = [
        (a.received_s - origin[a.stream] - a.end_s) * 1000
        for a in arrivals
        if a.kind == "summary" and a.stream in origin
    ]
    out: dict[str, Any] = {}
    for name, values in (("all", steady), ("warmup", warm), ("last", ends), ("summary", summary)):
        out[name] = {"n": len(values), "p50_ms": _pct(values, 50), "p99_ms": _pct(values, 99)}
    return out


async def read_results(
    broker: str,
    topics: Any,
    prefix: str,
    want: int,
    want_summaries: int,
    stop_at: asyncio.Event,
    grace_s: float,
    out: list[Arrival],
) -> None:
    """Collect this level's label and summary events (keys starting with ``prefix``)
    until all ``want`` windows and ``want_summaries`` summaries arrived, or ``grace_s``
    after ``stop_at`` is set."""
    from stream.kafka.config import KafkaClientConfig
    from stream.kafka.readers import event_reader

    kinds = {topics.labels: "label", topics.summaries: "summary"}
    mark = prefix.encode()
    reader = event_reader(
        KafkaClientConfig(bootstrap_servers=broker), list(kinds), from_beginning=False
    )
    await reader.start()
    try:
        windows = summaries = 0
        deadline = None
        while windows < want or summaries < want_summaries:
            batches = await reader.getmany(timeout_ms=20, max_records=5000)
            now = time.time()
            for tp, records in batches.items():
                for r in records:
                    if not r.key or not r.key.startswith(mark):
                        continue
                    got = arrival(kinds[tp.topic], r.key, r.value, now, r.timestamp)
                    out.append(got)
                    windows += got.kind == "label"
                    summaries += got.kind == "summary"
            if stop_at.is_set():
                deadline = deadline or time.monotonic() + grace_s
                if time.monotonic() > deadline:
                    break
    finally:
        await reader.stop()


def run_level(
    broker: str,
    topics: Any,
    spec: Any,
    k: int,
    duration_s: float,
    ramp_s: float,
    warmup_s: float,
    budget_ms: float,
    drift_budget_ms: float,
    pids: dict[str, int | None],
    telephony: bool = False,
    frame_ms: int = CHUNK_MS,
    linger_ms: int | None = None,
    phase_profile: Path | None = None,
) -> Level:
    prefix = f"k{k}-{uuid.uuid4().hex[:6]}"
    n_samples = round(duration_s / (frame_ms / 1000)) * SR * frame_ms // 1000
    want = k * expected_windows(spec, n_samples)
    rows: list[Arrival] = []

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        reader = asyncio.create_task(
            read_results(broker, topics, prefix, want, k, stop, 10.0, rows)
        )
        await asyncio.sleep(1.0)  # the reader is positioned at the end of the topic
        producer = await asyncio.create_subprocess_exec(
            PYTHON,
            str(Path(__file__).resolve()),
            "_produce",
            broker,
            topics.audio,
            str(k),
            str(duration_s),
            str(ramp_s),
            prefix,
            *(["mulaw", str(TELEPHONY_SR)] if telephony else ["pcm_s16le", str(SR)]),
            str(frame_ms),
            "default" if linger_ms is None else str(linger_ms),
            stdout=asyncio.subprocess.PIPE,
            cwd=str(REPO),
        )
        meter = CpuMeter({**pids, "producer": producer.pid, "reader": os.getpid()})
        await asyncio.sleep(0.5 + ramp_s + warmup_s)
        sampler = start_phase_sampler(phase_profile, meter.pids)
        meter.start()
        await asyncio.sleep(max(1.0, duration_s - ramp_s - warmup_s - 0.5))
        cpu = with_worker_sum(meter.stop())
        if sampler is not None:
            sampler.terminate()
            await asyncio.to_thread(sampler.wait)
        stdout, _ = await producer.communicate()
        stop.set()
        await reader
        stats = json.loads(stdout.decode().strip().splitlines()[-1]) if stdout else {}
        return {"cpu": cpu, "producer": stats, "window": (meter.started_s, meter.stopped_s)}

    result = asyncio.run(go())
    start = result["producer"].get("first_start_s", 0.0)
    if phase_profile is not None:
        report_phases(phase_profile, origin_s=start, period_s=spec.hop_seconds, k=k)
    labels = [a for a in rows if a.kind == "label"]
    split = latency_split(rows, start + ramp_s + warmup_s)
    timed = sorted(  # every window, padded ones included, by capture time
        (a.capture_s, (a.received_s - a.capture_s) * 1000, (a.emitted_s - a.capture_s) * 1000)
        for a in labels
        if a.capture_s >= start + ramp_s + warmup_s
    )
    received = len({(a.stream, a.index) for a in labels})
    lat = np.array([ms for _, ms, _ in timed] or [float("inf")])
    worker_lat = np.array([w for _, _, w in timed] or [float("inf")])
    # the worker's cost: windows it emitted while metered per CPU-second it used then
    t_a, t_b = result["window"]
    emitted = sum(1 for a in labels if t_a <= a.emitted_s < t_b)
    worker_cpu_s = result["cpu"].get("worker", 0.0) * (t_b - t_a)
    per_core = emitted / worker_cpu_s / 2 if worker_cpu_s else 0.0
    quarter = max(1, lat.size // 4)
    with np.errstate(invalid="ignore"):  # no timed window at all: inf - inf
        drift = float(np.median(lat[-quarter:]) - np.median(lat[:quarter]))
        p50, p95, p99 = (float(np.percentile(lat, q)) for q in (50, 95, 99))
    complete = received >= want and split["summary"]["n"] >= k
    keeps_up = complete and drift <= drift_budget_ms  # NaN drift: not kept up
    return Level(
        streams=k,
        duration_s=duration_s,
        encoding="mulaw" if telephony else "pcm_s16le",
        expected_windows=want,
        received_windows=received,
        p50_ms=round(p50, 1),
        p95_ms=round(p95, 1),
        p99_ms=round(p99, 1),
        max_ms=round(float(lat.max()), 1),
        drift_ms=round(drift, 1),
        worker_streams_per_core=round(per_core, 1),
        emit_p50_ms=round(float(np.percentile(worker_lat, 50)), 1),
        emit_p99_ms=round(float(np.percentile(worker_lat, 99)), 1),
        keeps_up=keeps_up,
        passes=keeps_up and p99 <= budget_ms,
        cpu_cores=result["cpu"],
        producer=result["producer"],
        split=split,
    )


def start_phase_sampler(
    out: Path | None, pids: dict[str, int | None]
) -> subprocess.Popen[bytes] | None:
    """``cpu_phase.py sample`` over ``pids`` into ``out`` (None: no profile)."""
    if out is None:
        return None
    named = [f"{name}={pid}" for name, pid in pids.items() if pid is not None]
    return subprocess.Popen(
        [PYTHON, str(Path(__file__).with_name("cpu_phase.py")), "sample", str(out), *named]
    )


def report_phases(path: Path, *, origin_s: float, period_s: float, k: int) -> None:
    """Print the phase-folded CPU profile of a level and keep it beside the samples."""
    sys.path.insert(0, str(Path(__file__).parent))
    from cpu_phase import fold, table

    folded = fold(json.loads(path.read_text()), origin_s=origin_s, period_s=period_s)
    path.with_suffix(".folded.json").write_text(json.dumps(folded))
    print(f"CPU by phase of the {period_s:g} s window cycle, {k} calls ({path}):")
    print(table(folded), flush=True)


# -- in-process pipeline (no Kafka, no Faust) -------------------------------------------


def pipeline_capacity(
    model_dir: Path,
    n_streams: int,
    seconds: float,
    max_batch: int = 32,
    *,
    telephony: bool = False,
    frame_ms: int = CHUNK_MS,
) -> dict[str, float]:
    """Streams per core of the worker's domain code alone, by process CPU time.

    The same objects ``stream.worker.build.build_worker`` wires (Pipeline, FeatureBank, OnnxModel
    with one thread), fed pre-encoded records in real-time order as fast as they go;
    records go to ``Pipeline.accept_many`` in groups of what arrives in 5 ms (as the
    worker's inbox gathers them), and windows are inferred in batches of up to
    ``max_batch`` at every 100 ms tick, as the batcher does under load. It leaves out
    Faust, aiokafka and JSON/Kafka I/O, so ``e2e streams per core / this`` is the share
    the runtime keeps. ``telephony``: 8 kHz μ-law calls; ``frame_ms``: 20 for RTP packets.
    """
    from stream.events import ModelRef
    from stream.features.frontend import FeatureBank
    from stream.features.windows import stack_windows
    from stream.inference.session import OnnxModel
    from stream.pipeline import Pipeline, PipelinePolicy, Record
    from stream.wire.frame import Encoding, frame_headers
    from stream.worker.build import limit_blas_threads

    limit_blas_threads()
    model = OnnxModel.load(model_dir, device="cpu", intra_op_threads=1)
    spec = model.spec
    pipeline = Pipeline(
        spec,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(spec),
        PipelinePolicy(max_streams=n_streams + 1),
    )
    rate, encoding = (TELEPHONY_SR, Encoding.MULAW) if telephony else (SR, Encoding.PCM_S16LE)
    clips = encoded_chunks(8, 10.0, rate * frame_ms // 1000, telephony=telephony)
    n_frames = round(seconds * 1000 / frame_ms)
    keys = [f"p-{j:05d}".encode() for j in range(n_streams)]
    t0_us = 1_700_000_000_000_000
    ticks = []
    for s in range(n_frames):
        tick = []
        for j in range(n_streams):
            headers = frame_headers(
                seq=s,
                sample_rate=rate,
                encoding=encoding,
                channels=1,
                capture_us=t0_us + s * frame_ms * 1000,
                eos=s == n_frames - 1,
            )
            clip = clips[j % len(clips)]
            value = clip[(s + j) % len(clip)]
            tick.append(Record(keys[j], value, tuple(headers), "audio", j % 8, s * n_streams + j))
        ticks.append(tick)
    # the worker gathers what arrives in 5 ms (at most 256 records) into one call
    group = max(1, min(256, n_streams // 20))
    accept_many = getattr(pipeline, "accept_many", None)

    def accept(records: list[Any]) -> Any:
        if accept_many is not None:
            return accept_many(records)
        step = pipeline.accept(records[0])
        for record in records[1:]:
            step.extend(pipeline.accept(record))
        return step

    windows = 0
    cpu0 = time.process_time()
    for tick in ticks:
        jobs = []
        for i in range(0, len(tick), group):
            jobs.extend(accept(tick[i : i + group]).jobs)
        for i in range(0, len(jobs), max_batch):
            part = jobs[i : i + max_batch]
            out = model.run(stack_windows([job.window for job in part], spec))
            pipeline.complete(part, out.probabilities)
            windows += len(part)
        pipeline.take_summaries()
    cpu = time.process_time() - cpu0
    stream_seconds = n_streams * seconds
    return {
        "streams": n_streams,
        "seconds": seconds,
        "windows": windows,
        "cpu_s": round(cpu, 3),
        "windows_per_cpu_s": round(windows / cpu, 1),
        "streams_per_core": round(stream_seconds / cpu, 1),
        "records_per_cpu_s": round(n_streams * n_frames / cpu, 1),
        "records_per_call": group,
    }


# -- the sweep ------------------------------------------------------------------------------


def default_model_dir() -> Path:
    from stream.inference.repository import resolve_model_dir
    from stream.roles import Role

    try:
        return resolve_model_dir(None, role=Role.LABEL)
    except Exception:  # no label model yet: the speaker model has the same frontend
        return resolve_model_dir(None, role=Role.SPEAKER)


async def make_topics(broker: str, prefix: str) -> Any:
    from stream.kafka.admin import ensure_topics
    from stream.kafka.config import KafkaClientConfig
    from stream.kafka.topics import Topics

    topics = Topics().with_prefix(prefix)
    await ensure_topics(KafkaClientConfig(bootstrap_servers=broker), topics)
    return topics


async def delete_topics(broker: str, topics: Any) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.delete_topics(list(topics.names()))
    finally:
        await admin.close()


def sweep(args: argparse.Namespace) -> tuple[list[Level], dict[str, Any]]:
    """Run the levels. With several ``--guarantees`` each has its own topics and
    workers, all started before the first level, and each level is run under every
    guarantee in turn (same K, same calls, minutes apart on the same machine), so
    their figures compare side by side."""
    from stream.inference.manifest import load_manifest

    model_dir = Path(args.model) if args.model else default_model_dir()
    spec = load_manifest(model_dir).feature_spec
    env = dict(item.split("=", 1) for item in args.worker_env or [])
    profile = Path(args.profile).resolve() if args.profile else None
    if args.phase_profile:
        Path(args.phase_profile).mkdir(parents=True, exist_ok=True)
    setups: list[tuple[str, Any, list[Worker], dict[str, int | None]]] = []
    levels: list[Level] = []
    logs: list[str] = []
    try:
        for guarantee in args.guarantees:
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            tmp = Path(args.tmp) / prefix
            tmp.mkdir(parents=True, exist_ok=True)
            logs.append(str(tmp))
            topics = asyncio.run(make_topics(args.broker, prefix))
            workers: list[Worker] = []
            setups.append((guarantee, topics, workers, {}))
            extra = [*(args.worker_arg or []), "--guarantee", guarantee]
            for i in range(args.workers):  # py-spy records the first one only
                spy = profile if i == 0 and not setups[:-1] else None
                workers.append(
                    start_worker(args.broker, prefix, model_dir, tmp, extra, spy, env, index=i)
                )
        for _, topics, workers, pids in setups:
            wait_assigned(workers, topics.audio_partitions, 60 + 30 * args.workers)
            pids.update(
                {
                    worker_key(i, len(workers)): worker_python_pid(w, w.profiled)
                    for i, w in enumerate(workers)
                }
            )
            pids["broker"] = broker_pid()
        for k, duration_s in zip(args.streams, args.duration_s, strict=True):
            passed = True
            for encoding in args.encodings:
                for guarantee, topics, _, pids in setups:
                    level = run_level(
                        args.broker,
                        topics,
                        spec,
                        k,
                        duration_s,
                        args.ramp_s,
                        args.warmup_s,
                        args.p99_budget_ms,
                        args.drift_ms,
                        pids,
                        telephony=encoding == "mulaw",
                        frame_ms=args.frame_ms,
                        linger_ms=args.linger_ms,
                        phase_profile=(
                            Path(args.phase_profile).resolve() / f"{k}-{encoding}-{guarantee}.json"
                            if args.phase_profile
                            else None
                        ),
                    )
                    level.guarantee = guarantee
                    levels.append(level)
                    print(row(level, tagged=len(setups) > 1), flush=True)
                    passed = passed and level.passes
            if not passed and not args.keep_going:
                break
    finally:
        for _, topics, workers, _ in setups:
            for w in workers:
                w.stop()
            asyncio.run(delete_topics(args.broker, topics))
    meta = {
        "model_dir": str(model_dir),
        "worker_args": args.worker_arg or [],
        "worker_env": env,
        "worker": "tympan worker",
        "guarantees": args.guarantees,
        "encodings": args.encodings,
        "durations_s": args.duration_s,
        "frame_ms": args.frame_ms,
        "linger_ms": args.linger_ms,
        "workers": args.workers,
        "log": logs,
    }
    return levels, meta


def compare_guarantees(levels: list[Level]) -> list[str]:
    """Per level, each guarantee's worker streams per core and p99 as a ratio of the
    first guarantee's (the lines ``--guarantees`` ends with)."""
    by_level: dict[tuple[int, str, float], dict[str, Level]] = {}
    for level in levels:
        key = (level.streams, level.encoding, level.duration_s)
        by_level.setdefault(key, {})[level.guarantee] = level
    lines = []
    for (k, encoding, duration_s), runs in by_level.items():
        base_name, base = next(iter(runs.items()))
        for name, level in list(runs.items())[1:]:
            per_core = level.worker_streams_per_core / base.worker_streams_per_core
            p99 = level.p99_ms / base.p99_ms if base.p99_ms else float("nan")
            lines.append(
                f"{k} {encoding} {duration_s:.0f}s calls: {name} "
                f"{level.worker_streams_per_core:.0f} streams/worker-core, p99 "
                f"{level.p99_ms:.0f} ms; {base_name} {base.worker_streams_per_core:.0f}, "
                f"{base.p99_ms:.0f} ms: streams per core x{per_core:.2f}, p99 x{p99:.2f}"
            )
    return lines


HEADER = (
    f"{'streams':>8}{'calls':>10}{'windows':>10}{'recv':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
    f"{'drift':>7}{'warm99':>7}{'last50':>7}{'last99':>7}{'sum50':>7}{'sum99':>7}"
    f"{'emit99':>7}{'worker':>8}{'prod':>6}{'broker':>7}{'reader':>7}{'other':>6}"
    f"{'str/core':>9}  verdict"
)


def row(level: Level, *, tagged: bool = False) -> str:
    c = level.cpu_cores
    verdict = "pass" if level.passes else ("slow" if level.keeps_up else "falls behind")
    split = [f"{v:.2f}" for k, v in c.items() if re.fullmatch(r"worker\d+", k)]
    each = f" (workers {' + '.join(split)})" if split else ""
    sp = level.split
    calls = f"{'mulaw' if level.encoding == 'mulaw' else 'pcm'} {level.duration_s:.0f}s"
    return (
        f"{level.streams:>8}{calls:>10}{level.expected_windows:>10}{level.received_windows:>8}"
        f"{level.p50_ms:>8.0f}{level.p95_ms:>8.0f}{level.p99_ms:>8.0f}{level.max_ms:>8.0f}"
        f"{level.drift_ms:>7.0f}{sp['warmup']['p99_ms']:>7.0f}"
        f"{sp['last']['p50_ms']:>7.0f}{sp['last']['p99_ms']:>7.0f}"
        f"{sp['summary']['p50_ms']:>7.0f}{sp['summary']['p99_ms']:>7.0f}"
        f"{level.emit_p99_ms:>7.0f}{c.get('worker', 0):>8.2f}"
        f"{c.get('producer', 0):>6.2f}{c.get('broker', 0):>7.2f}{c.get('reader', 0):>7.2f}"
        f"{c.get('other', 0):>6.2f}{level.worker_streams_per_core:>9.0f}  {verdict}"
        + (f" [{level.guarantee}]" if tagged else "")
        + each
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_pipeline"]:  # MODEL K SECONDS [pcm_s16le|mulaw [FRAME_MS]]
        telephony = argv[4:5] == ["mulaw"]
        frame_ms = int(argv[5]) if len(argv) > 5 else CHUNK_MS
        result = pipeline_capacity(
            Path(argv[1]), int(argv[2]), float(argv[3]), telephony=telephony, frame_ms=frame_ms
        )
        print(json.dumps(result), flush=True)
        return 0
    if argv[:1] == [
        "_produce"
    ]:  # BROKER TOPIC K DURATION RAMP PREFIX ENCODING RATE FRAME_MS LINGER
        broker, topic, k, duration, ramp, prefix, encoding, rate, frame_ms, linger = argv[1:11]
        stats = asyncio.run(
            produce_load(
                broker,
                topic,
                int(k),
                float(duration),
                float(ramp),
                prefix,
                encoding,
                int(rate),
                int(frame_ms),
                None if linger == "default" else int(linger),
            )
        )
        print(json.dumps(stats), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short levels, < 3 minutes")
    parser.add_argument("--broker", default=os.environ.get("TYMPAN_BROKER", "127.0.0.1:9092"))
    parser.add_argument("--model", help="model directory (default: scene, else speaker-embed)")
    parser.add_argument("--streams", type=int, nargs="+", help="levels of K to try, ascending")
    parser.add_argument(
        "--duration-s",
        type=float,
        nargs="+",
        help="seconds each call lasts: one value for every level, or one per level "
        "(default: 30; --quick: 12 12 12 24, the last level's calls 24 s)",
    )
    parser.add_argument(
        "--ramp-s",
        type=float,
        help="starts spread over this (default one frame, as tympan produce --streams)",
    )
    parser.add_argument(
        "--warmup-s", type=float, default=4.0, help="timed apart as the warm-up (4 s)"
    )
    parser.add_argument("--p99-budget-ms", type=float, default=150.0)
    parser.add_argument("--drift-ms", type=float, default=50.0, help="allowed latency drift")
    parser.add_argument("--keep-going", action="store_true", help="run levels after a failure")
    parser.add_argument("--worker-arg", action="append", help="extra worker flag (repeat)")
    parser.add_argument("--worker-env", action="append", help="KEY=VALUE for the worker")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes in one consumer group (default: one per core, as "
        "`tympan worker --processes`)",
    )
    parser.add_argument(
        "--frame-ms", type=int, default=CHUNK_MS, help="audio per record (20: an RTP packet)"
    )
    parser.add_argument(
        "--linger-ms", type=int, help="the producer's batching delay (default: tympan produce's)"
    )
    parser.add_argument(
        "--encodings",
        nargs="+",
        choices=["pcm_s16le", "mulaw"],
        default=["pcm_s16le", "mulaw"],
        help="calls of each level: 16 kHz PCM and/or 8 kHz G.711 mu-law (default both); "
        "a level passes when every one passes",
    )
    parser.add_argument(
        "--telephony", action="store_true", help="8 kHz mu-law calls only (= --encodings mulaw)"
    )
    parser.add_argument(
        "--guarantees",
        nargs="+",
        choices=["at-least-once", "exactly-once"],
        default=["at-least-once"],
        help="the workers' --guarantee; several: each level runs under each, side by side, "
        "and the run ends with their ratios",
    )
    parser.add_argument("--profile", help="record the (first) worker with py-spy into this file")
    parser.add_argument(
        "--phase-profile",
        help="folder: per level, CPU of every process folded by phase of the window cycle "
        "(benchmarks/cpu_phase.py)",
    )
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--tmp", default="/tmp/tympan-bench")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed-style baseline")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.streams is None:
        args.streams = [50, 200, 500, 1000] if args.quick else [50, 100, 200, 400, 700, 1000]
    if args.telephony:
        args.encodings = ["mulaw"]
    if args.ramp_s is None:
        args.ramp_s = args.frame_ms / 1000
    if args.duration_s is None:
        args.duration_s = [12.0] * (len(args.streams) - 1) + [24.0] if args.quick else [30.0]
    if len(args.duration_s) == 1:
        args.duration_s = args.duration_s * len(args.streams)
    if len(args.duration_s) != len(args.streams):
        parser.error(
            f"--duration-s needs one value or one per level ({len(args.streams)}), "
            f"got {len(args.duration_s)}"
        )
    who = "worker" if args.workers == 1 else f"{args.workers} workers"
    names = {"pcm_s16le": "16 kHz PCM", "mulaw": "8 kHz mu-law"}
    print(f"machine: {os.cpu_count()} cores shared by {who}, producer, broker and reader")
    print(f"calls: {' and '.join(names[e] for e in args.encodings)}, {args.frame_ms} ms frames")
    print(HEADER, flush=True)
    levels, meta = sweep(args)
    if len(args.guarantees) > 1:
        print("\n".join(compare_guarantees(levels)))
    first = [lv for lv in levels if lv.guarantee == args.guarantees[0]]
    best = best_level(first)  # the figures below are the first guarantee's
    seed: dict[str, Any] | None = None
    if not args.no_seed:
        seed = seed_figures(meta["model_dir"], quick=args.quick, best=best, levels=first)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"levels": [asdict(lv) for lv in levels], "meta": meta, "seed": seed}, indent=2
            )
        )
    if best is None:  # nothing passed: the smallest level's p99 says by how much
        print(
            f"max_streams=0 p99_ms={levels[0].p99_ms:.1f}" if levels else "max_streams=0 p99_ms=nan"
        )
        return 0
    print(f"max_streams={best.streams} p99_ms={best.p99_ms:.1f}")
    return 0


def best_level(levels: list[Level]) -> Level | None:
    """The largest ``K`` whose every encoding passed, as its worst-p99 level."""
    by_k: dict[int, list[Level]] = {}
    for level in levels:
        by_k.setdefault(level.streams, []).append(level)
    passing = [group for group in by_k.values() if all(lv.passes for lv in group)]
    if not passing:
        return None
    group = max(passing, key=lambda g: g[0].streams)
    return max(group, key=lambda lv: lv.p99_ms)


def seed_figures(
    model_dir: str, *, quick: bool, best: Level | None, levels: list[Level]
) -> dict[str, Any]:
    """The seed-style path's streams per core (a subprocess: it imports TensorFlow) and
    tympan's ratio over it, two ways: the worker process's CPU at the best e2e level,
    and the in-process pipeline (``pipeline_capacity``, steadier on a shared host)."""
    cmd = [PYTHON, str(Path(__file__).with_name("seed_baseline.py")), "--model", model_dir]
    cmd += ["--json", "--seconds", "30" if quick else "60"]  # 10 s (21 windows) was too noisy
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0:
        print(f"seed baseline failed:\n{out.stderr[-2000:]}")
        return {"error": out.stderr[-2000:]}
    seed: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    per_core = seed["streams_per_core"]
    print(
        f"seed-style path (librosa + Keras predict per window, one BLAS thread as the worker): "
        f"{seed['ms_per_window_cpu']:.1f} CPU-ms per window = {per_core:.2f} streams per core"
    )
    # the same path with BLAS's default threads, for comparison with earlier figures
    blas_vars = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in blas_vars}  # the library's default
    out = subprocess.run(
        [*cmd, "--default-blas"], capture_output=True, text=True, cwd=REPO, env=env
    )
    if out.returncode == 0:
        spin = json.loads(out.stdout.strip().splitlines()[-1])
        seed["default_blas"] = spin
        print(
            f"  (with BLAS's default threads, whose idle threads spin: "
            f"{spin['ms_per_window_cpu']:.1f} CPU-ms per window = "
            f"{spin['streams_per_core']:.2f} streams per core; not used for the ratios)"
        )
    k, secs = (500, 3) if quick else (1000, 8)
    cmd = [PYTHON, str(Path(__file__).resolve()), "_pipeline", model_dir, str(k), str(secs)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode == 0:
        pipe = json.loads(out.stdout.strip().splitlines()[-1])
        seed["pipeline"] = pipe
        seed["ratio_pipeline"] = pipe["streams_per_core"] / per_core
        print(
            f"tympan in-process pipeline ({k} streams, no Kafka/Faust): "
            f"{pipe['streams_per_core']:.0f} streams per core = "
            f"{seed['ratio_pipeline']:.0f}x the seed-style path"
        )
    if best is not None:
        cores = best.cpu_cores.get("worker", 0.0)
        tympan = best.streams / cores if cores else float("nan")
        seed["e2e_streams_per_core"] = tympan
        seed["ratio_e2e"] = tympan / per_core
        print(
            f"tympan worker end to end: {best.streams} streams on {cores:.2f} worker cores = "
            f"{tympan:.0f} streams per core = {seed['ratio_e2e']:.0f}x the seed-style path"
        )
        if "default_blas" in seed:
            spin_core = seed["default_blas"]["streams_per_core"]
            seed["ratio_e2e_default_blas"] = tympan / spin_core
            print(f"  ({tympan / spin_core:.0f}x its default-BLAS figure)")
    if levels:  # the worker's cost at the most loaded level (fixed costs amortized)
        top = max(levels, key=lambda lv: lv.worker_streams_per_core)
        seed["ratio_worker_cost"] = top.worker_streams_per_core / per_core
        print(
            f"tympan worker cost at {top.streams} streams: {top.worker_streams_per_core:.0f} "
            f"streams per worker core = {seed['ratio_worker_cost']:.0f}x the seed-style path"
        )
    return seed


if __name__ == "__main__":
    raise SystemExit(main())
