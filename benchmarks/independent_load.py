"""Latency as a user measures it: ``tympan worker`` + ``tympan produce --realtime``.

An independent check of ``bench_e2e.py`` built only from the shipped commands and a
plain consumer, so anyone can reproduce it:

1. a fresh topic set (unique prefix) and one ``tympan worker`` (its defaults: a
   process per core, the default model), started once its partitions are assigned;
2. one call of ``--duration-s`` (speech-like audio, ``bench_e2e.call_audio``) written
   to a WAV file and played by ``tympan produce --realtime --streams N`` as
   ``--encoding`` (16 kHz PCM, or 8 kHz μ-law: ``--encoding mulaw``). ``--streams``
   fans the file out into N calls whose starts are spread over one frame (100 ms),
   so all N end within that frame too;
3. a plain group-less consumer (``stream.kafka.readers.event_reader``, positioned at
   the end before the load starts) of the labels and summaries topics stamps each
   event with the wall clock when ``getmany`` hands it over: the consumer's receive
   time, the moment the event is readable for a user. (The result topics keep
   ``CreateTime``, the worker's send time, which leaves out the broker and fetch.)

Figures (``bench_e2e.latency_split``, the same code the benchmark reports with):
latency of a window = receive time − capture time of its last sample
(``capture_time_s``: the stream's first ``capture-us`` + ``end_s``), every window
counted, the padded last one too; ``all`` leaves out windows captured in the first
``--warmup-s`` (4 s) after the first call started and ``warmup`` reports those apart;
``last``: each call's last window; ``summary``: from the end of stream (the EOS
frame's capture time + its duration) to the summary's arrival.

Run::

    .venv/bin/python benchmarks/independent_load.py --streams 50 --duration-s 24
    .venv/bin/python benchmarks/independent_load.py --streams 1000 --encoding mulaw

It prints one JSON object and ends with the line ``streams=<N> p99_ms=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_e2e as bench  # the benchmark's figures, one definition

REPO = bench.REPO
TYMPAN = bench.TYMPAN


def write_call(path: Path, seconds: float) -> int:
    """A 16 kHz PCM WAV of ``seconds`` of speech-like audio; its sample count."""
    import soundfile as sf

    audio = np.clip(bench.call_audio(seconds, 0), -1, 1)
    sf.write(path, audio, bench.SR, subtype="PCM_16")
    return len(audio)


def start_worker(args: argparse.Namespace, prefix: str, tmp: Path) -> subprocess.Popen[bytes]:
    """``tympan worker`` with its defaults, its output in ``tmp/worker.log``."""
    cmd = [str(TYMPAN), "worker", "--broker", args.broker, "--topic-prefix", prefix]
    cmd += ["--data-dir", str(tmp / "worker-data"), "--web-port", "0", "--no-create-topics"]
    cmd += ["--model", args.model] if args.model else []
    log = (tmp / "worker.log").open("ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_assigned(worker: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Until the worker's processes together hold every audio partition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        held = {int(p) for m in bench.ASSIGNED.findall(text) for p in m.replace(",", " ").split()}
        if len(held) >= 8:
            time.sleep(2.0)  # a rebalance among the worker's processes settles
            return
        if worker.poll() is not None:
            raise RuntimeError(f"tympan worker exited ({worker.returncode}):\n{text[-3000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"tympan worker held no partitions in {timeout_s} s: see {log}")


async def measure(
    args: argparse.Namespace, topics: Any, wav: Path, stem: str, want: int
) -> tuple[list[bench.Arrival], dict[str, Any]]:
    """Play the load with ``tympan produce`` while reading the result topics."""
    rows: list[bench.Arrival] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(
        bench.read_results(args.broker, topics, stem, want, args.streams, stop, 15.0, rows)
    )
    await asyncio.sleep(1.0)  # the reader is at the end of the topics
    rate = ["--rate", "8000"] if args.encoding == "mulaw" else []
    cmd = [str(TYMPAN), "produce", "--realtime", "--streams", str(args.streams)]
    cmd += ["--encoding", args.encoding, *rate, "--broker", args.broker]
    cmd += ["--topic-prefix", topics.prefix, "--no-progress", "--json", str(wav)]
    producer = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, cwd=str(REPO)
    )
    stdout, _ = await producer.communicate()
    stop.set()
    await reader
    lines = stdout.decode().strip().splitlines()
    return rows, json.loads(lines[-1]) if lines else {"exit": producer.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("TYMPAN_BROKER", "127.0.0.1:9092"))
    parser.add_argument("--model", help="model directory (default: the worker's)")
    parser.add_argument("--streams", type=int, default=50, help="concurrent calls (50)")
    parser.add_argument("--duration-s", type=float, default=24.0, help="call length (24)")
    parser.add_argument("--encoding", choices=["pcm_s16le", "mulaw"], default="pcm_s16le")
    parser.add_argument("--warmup-s", type=float, default=4.0, help="reported apart (4)")
    parser.add_argument("--tmp", default="/tmp/tympan-independent")
    parser.add_argument("--json", help="also write the figures and every arrival here")
    args = parser.parse_args(argv)
    from stream.inference.manifest import load_manifest

    model_dir = Path(args.model) if args.model else bench.default_model_dir()
    spec = load_manifest(model_dir).feature_spec
    prefix = f"indep{uuid.uuid4().hex[:8]}"
    tmp = Path(args.tmp) / prefix
    tmp.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}-call"
    wav = tmp / f"{stem}.wav"
    n_samples = write_call(wav, args.duration_s)
    want = args.streams * bench.expected_windows(spec, n_samples)
    topics = asyncio.run(bench.make_topics(args.broker, prefix))
    worker = start_worker(args, prefix, tmp)
    try:
        wait_assigned(worker, tmp / "worker.log", 120.0)
        rows, produced = asyncio.run(measure(args, topics, wav, stem, want))
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        asyncio.run(bench.delete_topics(args.broker, topics))
    labels = [a for a in rows if a.kind == "label"]
    origins = [a.capture_s - a.end_s for a in labels if a.capture_s == a.capture_s]
    first = min(origins) if origins else 0.0
    split = bench.latency_split(rows, first + args.warmup_s)
    report = {
        "streams": args.streams,
        "encoding": args.encoding,
        "duration_s": args.duration_s,
        "windows": {"expected": want, "received": len({(a.stream, a.index) for a in labels})},
        "summaries": {"expected": args.streams, "received": split["summary"]["n"]},
        "latency": split,
        "produce": produced,
        "log": str(tmp),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"streams={args.streams} p99_ms={split['all']['p99_ms']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
