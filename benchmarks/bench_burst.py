"""Where a worker's time goes when its calls start together: the in-process runtime.

One ``WorkerRuntime`` (the worker's own: pipeline, batcher, onnxruntime in its thread;
default model, one intra-op thread) is fed ``N`` real-time calls of 100 ms frames, with
no Kafka: frame ``k`` of call ``j`` becomes readable at ``start + ramp_s * j / N + (k+1)
* 0.1 s`` (when its last sample is captured), and a fetch loop hands the runtime every
frame readable so far in one ``on_records`` call, as ``getmany`` does. The last frame of
each call is its EOS. ``send`` is an in-memory producer whose futures are already done.

With ``--ramp-s 0`` every call's windows fall due in the same fetch (``tympan produce
--streams`` starts its calls within one frame), and so do their EOS frames: the burst
of issue 24. Latency of a window = the moment its event is handed to ``send`` − the
capture time of its last sample; of a summary, from the end of its call. This leaves
out the broker, the producer and the reader (``bench_e2e.py`` has them all) but is
what the worker adds, measured with one process and its CPU time.

Run::

    .venv/bin/python benchmarks/bench_burst.py --streams 500 --ramp-s 0
    .venv/bin/python benchmarks/bench_burst.py --streams 500 --ramp-s 0.1 --encoding mulaw
    .venv/bin/python benchmarks/bench_burst.py --streams 500 --profile /tmp/burst.prof
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_e2e as bench  # the benchmark's audio and default model

FRAME_S = 0.1
T0_US = 1_700_000_000_000_000


def build(n: int, telephony: bool, max_batch: int) -> tuple[Any, list[float], list[float]]:
    """The runtime, and the lists its fake producer fills: label send times, summary
    send times (each ``(perf_counter, capture end s, is_last)``)."""
    from stream.events import ModelRef
    from stream.events.kinds import SUMMARIES
    from stream.features.frontend import FeatureBank
    from stream.inference.session import OnnxModel
    from stream.kafka.topics import Topics
    from stream.pipeline import Pipeline, PipelinePolicy
    from stream.settings import BatchingPolicy
    from stream.worker.build import limit_blas_threads
    from stream.worker.runtime import WorkerRuntime

    limit_blas_threads()  # as the worker does: BLAS threads spinning on 2 cores cost 2.5x CPU
    model = OnnxModel.load(bench.default_model_dir(), device="cpu", intra_op_threads=1)
    ref = ModelRef(model.manifest.name, model.manifest.version)
    pipe = Pipeline(
        model.spec, ref, model.labels, FeatureBank(model.spec), PipelinePolicy(max_streams=n + 1)
    )
    topics = Topics().with_prefix("burst")
    labels: list[Any] = []
    summaries: list[Any] = []
    summaries_topic = topics.of(SUMMARIES)

    async def send(topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        clocks = (time.perf_counter(), time.thread_time(), time.process_time())
        (summaries if topic == summaries_topic else labels).append((clocks, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def infer(x: np.ndarray) -> tuple[np.ndarray, Any]:
        out = model.run(x)
        return out.probabilities, out.embedding

    runtime = WorkerRuntime(
        pipe, infer, topics, send, lambda p, a, b: None, BatchingPolicy(max_batch=max_batch)
    )
    return runtime, labels, summaries


def plan(n: int, seconds: float, ramp_s: float, telephony: bool) -> list[tuple[float, Any]]:
    """``(due s from start, record)`` of every frame, in due order."""
    from stream.pipeline import Record
    from stream.wire.frame import Encoding, frame_headers

    rate, enc = (8000, Encoding.MULAW) if telephony else (16000, Encoding.PCM_S16LE)
    clips = bench.encoded_chunks(8, seconds, round(rate * FRAME_S), telephony=telephony)
    frames = round(seconds / FRAME_S)
    out: list[tuple[float, int, Any]] = []
    offsets = [0] * 8
    for j in range(n):
        start_s = ramp_s * j / n
        for k in range(frames):
            headers = frame_headers(
                seq=k,
                sample_rate=rate,
                encoding=enc,
                channels=1,
                capture_us=T0_US + round((start_s + k * FRAME_S) * 1e6),
                eos=k == frames - 1,
            )
            out.append((start_s + (k + 1) * FRAME_S, j, k, headers, clips[j % 8][k]))
    out.sort(key=lambda row: (row[0], row[2], row[1]))
    records = []
    for due, j, _, headers, value in out:  # offsets in due order per partition
        partition = j % 8
        records.append(
            (
                due,
                Record(
                    f"c{j}".encode(), value, tuple(headers), "audio", partition, offsets[partition]
                ),
            )
        )
        offsets[partition] += 1
    return records


async def play(
    runtime: Any,
    records: list[tuple[float, Any]],
    fetch_ms: float,
    fetches: list[Any],
    *,
    isolated: bool = False,
) -> float:
    """Hand the runtime every frame readable so far, at least every ``fetch_ms``;
    return the wall clock (perf_counter) of the start. ``fetches`` gets the clocks
    (due s from the start, wall, loop thread CPU, process CPU) of each hand-over.

    ``isolated``: no clock; the frames of each due time are handed over at once and
    the runtime is drained (every event sent) before the next, so one fetch's work
    never overlaps another's (the figures are then from the hand-over: what one
    burst costs, whatever the machine's load)."""
    runtime.start()
    start = time.perf_counter()
    if isolated:
        i = 0
        while i < len(records):
            j = i
            while j < len(records) and records[j][0] == records[i][0]:
                j += 1
            clocks = (time.perf_counter(), time.thread_time(), time.process_time())
            fetches.append((records[i][0], *clocks))
            await runtime.on_records([r for _, r in records[i:j]])
            await runtime.drain()
            i = j
        await runtime.stop()
        return start
    i = 0
    while i < len(records):
        now = time.perf_counter() - start
        j = i
        while j < len(records) and records[j][0] <= now:
            j += 1
        if j > i:
            fetches.append((now, start + now, time.thread_time(), time.process_time()))
            await runtime.on_records([r for _, r in records[i:j]])
            i = j
        else:
            await asyncio.sleep(min(fetch_ms / 1000, records[i][0] - now))
    await runtime.drain()
    await runtime.stop()
    return start


def gc_pauses() -> list[list[float]]:
    """Per generation, the wall seconds of each garbage collection from now on."""
    pauses: list[list[float]] = [[], [], []]
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - began[0])

    gc.callbacks.append(timed)
    return pauses


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def figures(
    start: float,
    labels: list[Any],
    summaries: list[Any],
    fetches: list[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Percentiles of every window after the warm-up, of the warm-up's, of each call's
    last window and of the summaries: wall ms (from the due time; ``--isolated``: from
    the hand-over), and CPU ms spent ahead of it since the
    fetch that made it due was handed over (``loop``: the event loop's thread, where
    everything but inference runs; ``proc``: the process, inference included), which
    a loaded machine does not stretch."""
    seconds, ramp_s, n = args.seconds, args.ramp_s, args.streams
    t0 = T0_US / 1e6
    walls = [f[0] for f in fetches]
    rows: dict[str, list[tuple[float, float, float]]] = {"all": [], "warm": [], "sum": []}
    last: dict[str, tuple[float, tuple[float, float, float]]] = {}

    def measure(clocks: tuple[float, float, float], due_s: float) -> tuple[float, float, float]:
        k = min(bisect.bisect_left(walls, due_s - 1e-9), len(fetches) - 1)
        _, wall0, loop0, proc0 = fetches[k]
        return (
            (clocks[0] - (wall0 if args.isolated else start + due_s)) * 1000,
            (clocks[1] - loop0) * 1000,
            (clocks[2] - proc0) * 1000,
        )

    for clocks, value in labels:
        event = json.loads(value)
        row = measure(clocks, event["capture_time_s"] - t0)
        rows["all" if event["end_s"] > args.warmup_s else "warm"].append(row)
        end_s, sid = event["end_s"], event["stream_id"]
        if sid not in last or end_s > last[sid][0]:
            last[sid] = (end_s, row)
    for clocks, value in summaries:
        j = int(json.loads(value)["stream_id"][1:])
        rows["sum"].append(measure(clocks, ramp_s * j / n + seconds))
    rows["last"] = [row for _, row in last.values()]
    out: dict[str, Any] = {"windows": len(labels), "summaries": len(summaries)}
    for name, values in rows.items():
        for i, clock in enumerate(("ms", "loop_cpu_ms", "proc_cpu_ms")):
            column = [v[i] for v in values]
            out[f"{name}_{clock}_p50"] = pct(column, 50)
            out[f"{name}_{clock}_p99"] = pct(column, 99)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--ramp-s", type=float, default=0.0)
    parser.add_argument("--encoding", choices=["pcm_s16le", "mulaw"], default="pcm_s16le")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="timed apart (2)")
    parser.add_argument("--fetch-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--profile", help="cProfile the run into this file")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--log", help="log at INFO to this file, as the worker does (default: warnings only)"
    )
    parser.add_argument(
        "--isolated", action="store_true", help="no clock: drain after each due time's frames"
    )
    args = parser.parse_args(argv)
    telephony = args.encoding == "mulaw"
    if args.log:
        from mode.utils.logging import setup_logging  # what faust.Worker sets up

        setup_logging(loglevel="info", logfile=args.log)
    runtime, labels, summaries = build(args.streams, telephony, args.max_batch)
    records = plan(args.streams, args.seconds, args.ramp_s, telephony)
    profiler = cProfile.Profile() if args.profile else None
    gc.collect()  # as ``tympan worker`` does after start-up (cli/worker.py)
    gc.freeze()
    pauses = gc_pauses()
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    fetches: list[Any] = []
    start = asyncio.run(play(runtime, records, args.fetch_ms, fetches, isolated=args.isolated))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu_s = time.process_time() - cpu
    out = figures(start, labels, summaries, fetches, args)
    out["cpu_s"] = cpu_s
    out["cpu_ms_per_window"] = cpu_s * 1000 / max(1, out["windows"])
    out["wall_s"] = time.perf_counter() - start
    gc.callbacks.clear()
    for gen, times in enumerate(pauses):
        out[f"gc{gen}_count"], out[f"gc{gen}_ms"] = len(times), sum(times) * 1000
    print(
        f"{args.streams} calls {args.encoding} ramp {args.ramp_s:g} s: {out['windows']} windows,"
        f" {out['summaries']} summaries, CPU {cpu_s:.2f} s ({out['cpu_ms_per_window']:.3f} ms"
        " per window); p50/p99 ms: wall | loop CPU ahead | process CPU ahead"
    )
    for name in ("all", "warm", "last", "sum"):
        cells = " | ".join(
            f"{out[f'{name}_{c}_p50']:6.1f} / {out[f'{name}_{c}_p99']:6.1f}"
            for c in ("ms", "loop_cpu_ms", "proc_cpu_ms")
        )
        print(f"  {name:5s} {cells}")
    print(
        "  gc: "
        + ", ".join(f"gen{g} {out[f'gc{g}_count']} x {out[f'gc{g}_ms']:.1f} ms" for g in range(3))
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
