"""Voice activity cost per stream in the worker's pipeline (issue #25).

Runs the domain core the worker runs (``Pipeline.accept_many`` on 100 ms pcm_s16le
records of N streams, one fetched batch per 100 ms tick: decoding, conditioning, the
feature frontend, window jobs) with speaker tracking on, once with Silero VAD
(``SpeakerStage.vad``) and once without; the difference is what the VAD costs. CPU
time (``time.process_time``), onnxruntime and BLAS on one thread; best of
``--repeat`` interleaved rounds (the machine is shared).

Prints µs of CPU per 100 ms frame per stream for both, and the VAD's share.

Run: ``.venv/bin/python benchmarks/bench_vad.py [--streams 1 16 64] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.pipeline import Pipeline, PipelinePolicy, Record, SpeakerStage
from stream.produce import frames_from_array
from stream.speakers.scoring import SpeakerScorer
from stream.speakers.vad import shared_model
from stream.wire import encode_frame

SPEC = FeatureSpec()
LABELS = ("music", "noise", "silence", "speech", "tone")


def _ticks(streams: int, seconds: float) -> list[list[Record]]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SPEC.sr)) / SPEC.sr
    per_stream = []
    for s in range(streams):
        f0 = 120 + 10 * s + 30 * np.sin(2 * np.pi * 0.5 * t)
        y = 0.2 * np.sin(2 * np.pi * np.cumsum(f0) / SPEC.sr) * (np.sin(2 * np.pi * 4 * t) > 0)
        y = (y + 0.01 * rng.normal(size=t.size)).astype(np.float32)
        records = []
        frames = frames_from_array(y, SPEC.sr, stream_id=f"s{s}", chunk_ms=100)
        for offset, frame in enumerate(frames):
            key, value, headers = encode_frame(frame)
            records.append(Record(key, value, tuple(headers), "audio", s % 8, offset))
        per_stream.append(records)
    return [list(batch) for batch in zip(*per_stream, strict=True)]


def _run(ticks: list[list[Record]], *, vad: bool) -> float:
    scorer = SpeakerScorer({"x": np.eye(1, 8, dtype=np.float32)}, threshold=0.8)
    stage = SpeakerStage(ModelRef("e", "1"), lambda: scorer, vad=shared_model() if vad else None)
    pipeline = Pipeline(
        SPEC, ModelRef("scene", "1"), LABELS, FeatureBank(SPEC), PipelinePolicy(), speakers=stage
    )
    start = time.process_time()
    for batch in ticks:
        pipeline.accept_many(batch)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    shared_model()  # loaded once, outside the timing
    with threadpool_limits(1):
        for n in args.streams:
            ticks = _ticks(n, args.seconds)
            frames = n * len(ticks)
            best = {True: float("inf"), False: float("inf")}
            for _ in range(args.repeat):
                for vad in (False, True):
                    best[vad] = min(best[vad], _run(ticks, vad=vad))
            off, on = (1e6 * best[v] / frames for v in (False, True))
            print(
                f"streams={n}: pipeline {off:.0f} us/frame/stream without VAD, {on:.0f} with; "
                f"VAD {on - off:.0f} us per 100 ms frame per stream ({100 * (on - off) / on:.0f}%)"
            )


if __name__ == "__main__":
    main()
