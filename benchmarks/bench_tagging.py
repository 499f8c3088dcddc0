"""Bulk music tagging: uploads through ``tympan worker`` against ``tympan classify``.

A music platform tags uploads by streaming them as fast as the broker takes them
(``tympan produce --fast``) through a worker serving the multi-label instruments model.
This measures, on this machine (the broker included):

1. ``N`` tracks rendered with our corpus tools (``models.corpus.music``: composed MIDI
   through fluidsynth, 16 kHz 16-bit WAV; cached in ``--tracks``, rendering is not
   timed), each with a random ensemble of one to three instruments;
2. a ``tympan worker --model models/zoo/instruments/1`` subprocess on a fresh topic
   set, warmed up with one short track (model loaded, partitions assigned);
3. **worker**: ``tympan produce --fast`` of every track, until every track's summary
   is on the summaries topic. Wall time from the producer's start to the last
   summary read; worker CPU from ``/proc/<pid>/stat`` over the same interval;
4. **classify**: ``tympan classify --json`` on the same files (one process, its
   start-up and model load included), wall and CPU time (``RUSAGE_CHILDREN``);
5. how many summaries equal ``classify``'s verdict for the same file (they must all).

Figures: audio-seconds tagged per worker CPU-second and per wall-second (and the same
for ``classify``). The machine is shared: wall figures depend on what else runs.

Run::

    .venv/bin/python benchmarks/bench_tagging.py --quick          # 8 tracks x 10 s
    .venv/bin/python benchmarks/bench_tagging.py --tracks-n 40 --seconds 30

The broker is ``$TYMPAN_BROKER`` (``scripts/kafka.sh up``). The last line is
``worker_audio_s_per_cpu_s=<x> worker_audio_s_per_wall_s=<y>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from bench_e2e import machine_cpu_s, proc_cpu_s

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.corpus import music  # noqa: E402
from stream.kafka.admin import delete_topics, ensure_topics  # noqa: E402
from stream.kafka.config import KafkaClientConfig  # noqa: E402
from stream.kafka.topics import Topics  # noqa: E402

TYMPAN = REPO / ".venv" / "bin" / "tympan"
MODEL = REPO / "models" / "zoo" / "instruments" / "1"
SR = 16000
VERDICT_KEYS = ("task", "windows", "dominant_label", "tags", "timeline")


def render_tracks(out: Path, n: int, seconds: float, seed: int) -> list[Path]:
    """``n`` rendered tracks of ``seconds`` (reused when already there)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = out / f"track-{i:03d}.wav"
        k = int(rng.integers(1, 4))
        instruments = tuple(rng.choice(music.INSTRUMENTS, size=k, replace=False).tolist())
        piece = music.compose(instruments, rng=rng, duration_s=seconds)
        if not path.exists():
            sf.write(path, music.render(piece, duration_s=seconds, sr=SR), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def audio_seconds(paths: list[Path]) -> float:
    return float(sum(sf.info(p).frames / sf.info(p).samplerate for p in paths))


async def _read_summaries(
    client: KafkaClientConfig, topic: str, prefix: str, n: int, timeout_s: float
) -> dict[str, dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, **client.aiokafka_kwargs(), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for record in (r for part in batch.values() for r in part):
                event = json.loads(record.value)
                if str(event.get("stream_id", "")).startswith(prefix):
                    found[event["stream_id"]] = event
    finally:
        await consumer.stop()
    return found


def summaries(
    client: KafkaClientConfig, topics: Topics, prefix: str, n: int, timeout_s: float = 900
) -> dict[str, dict[str, Any]]:
    found = asyncio.run(_read_summaries(client, topics.summaries, prefix, n, timeout_s))
    if len(found) < n:
        raise SystemExit(f"only {len(found)} of {n} summaries arrived in {timeout_s} s")
    return found


def produce(broker: str, topics: Topics, paths: list[Path], prefix: str) -> None:
    subprocess.run(
        [str(TYMPAN), "produce", "--fast", "--no-progress", *map(str, paths),
         "--broker", broker, "--topic-prefix", topics.prefix, "--stream-id-prefix", prefix],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip


def start_worker(broker: str, topics: Topics, tmp: Path) -> subprocess.Popen[bytes]:
    args = [str(TYMPAN), "worker", "--model", str(MODEL), "--broker", broker,
            "--topic-prefix", topics.prefix, "--app-id", f"{topics.prefix}-worker",
            "--data-dir", str(tmp / "worker-data"), "--web-port", "0",
            "--no-create-topics", "--loglevel", "warning"]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    log = (tmp / "worker.log").open("ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def through_worker(
    broker: str, client: KafkaClientConfig, paths: list[Path], tmp: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    topics = Topics().with_prefix(f"bench-tagging-{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_topics(client, topics))
    worker = start_worker(broker, topics, tmp)
    try:
        produce(broker, topics, paths[:1], "warmup-")  # model loaded, partitions assigned
        summaries(client, topics, "warmup-", 1, timeout_s=300)
        cpu0, machine0, wall0 = proc_cpu_s(worker.pid), machine_cpu_s()[0], time.monotonic()
        produce(broker, topics, paths, "run-")
        got = summaries(client, topics, "run-", len(paths))
        wall = time.monotonic() - wall0
        cpu = proc_cpu_s(worker.pid) - cpu0
        machine = machine_cpu_s()[0] - machine0
    finally:
        worker.terminate()
        worker.wait(60)
        asyncio.run(delete_topics(client, list(topics.names())))
    figures = {"wall_s": wall, "cpu_s": cpu, "machine_busy_cores": machine / wall}
    return figures, {sid.removeprefix("run-"): event for sid, event in got.items()}


def through_classify(paths: list[Path]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    done = subprocess.run(
        [str(TYMPAN), "classify", "--model", str(MODEL), "--json", *map(str, paths)],
        check=True, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    wall = time.monotonic() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    return {"wall_s": wall, "cpu_s": cpu}, {Path(r["path"]).stem: r for r in records}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks-n", type=int, default=24, help="tracks (%(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="track length (%(default)s)")
    parser.add_argument("--quick", action="store_true", help="8 tracks of 10 s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracks", type=Path, default=None, help="render/cache tracks here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    n, seconds = (8, 10.0) if args.quick else (args.tracks_n, args.seconds)
    tracks_dir = args.tracks or REPO / ".tympan" / f"bench-tracks-{n}x{seconds:g}s-{args.seed}"
    broker = os.environ.get("TYMPAN_BROKER", "127.0.0.1:9092")
    client = KafkaClientConfig.from_environ(os.environ, bootstrap_servers=broker)
    paths = render_tracks(tracks_dir, n, seconds, args.seed)
    total_s = audio_seconds(paths)
    tmp = tracks_dir / "run"
    tmp.mkdir(exist_ok=True)
    worker, streamed = through_worker(broker, client, paths, tmp)
    classify, offline = through_classify(paths)
    same = sum(
        {k: streamed[stem][k] for k in VERDICT_KEYS} == offline[stem]["verdict"] for stem in offline
    )
    tagged = sum(bool(offline[stem]["verdict"]["tags"]) for stem in offline)
    print(f"machine: {os.cpu_count()} cores (shared: other jobs run; wall figures vary)")
    print(f"tracks: {n} x {seconds:g} s = {total_s:.0f} audio-s, model {MODEL.relative_to(REPO)}")
    print(f"{'path':<34} {'wall_s':>8} {'cpu_s':>8} {'audio-s/cpu-s':>14} {'audio-s/wall-s':>15}")
    for name, fig in (("worker (produce --fast)", worker), ("classify (one process)", classify)):
        print(
            f"{name:<34} {fig['wall_s']:>8.1f} {fig['cpu_s']:>8.1f} "
            f"{total_s / fig['cpu_s']:>14.0f} {total_s / fig['wall_s']:>15.0f}"
        )
    print(f"machine busy during the worker run: {worker['machine_busy_cores']:.2f} cores")
    print(f"summaries equal to classify's verdict: {same}/{n}; tracks with a tag: {tagged}/{n}")
    result = {
        "tracks": n,
        "seconds": seconds,
        "audio_s": total_s,
        "worker": worker,
        "classify": classify,
        "same_verdict": same,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"worker_audio_s_per_cpu_s={total_s / worker['cpu_s']:.0f} "
        f"worker_audio_s_per_wall_s={total_s / worker['wall_s']:.0f}"
    )
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
