"""What closing calls costs the worker: one fetched batch of N end-of-stream frames
against one of N mid-call frames, each batch releasing one window per call.

``Pipeline.accept_many`` (the worker's domain code, default model's spec, no Kafka),
process CPU time of the one call. 2N streams are fed 2.4 s of 100 ms frames; then
streams 0..N-1 get frame 24 (releases window 3) and streams N..2N-1 get frame 24 as
their EOS frame (releases window 3, then closes). See docs/delivery.md, "What the
worker waits for at end of stream".

Run::

    .venv/bin/python benchmarks/bench_eos_close.py 200 pcm
    .venv/bin/python benchmarks/bench_eos_close.py 200 mulaw
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_e2e as bench  # the benchmark's audio and default model

T0_US = 1_700_000_000_000_000
FRAMES = 24


def main(argv: list[str]) -> int:
    from stream.events import ModelRef
    from stream.features.frontend import FeatureBank
    from stream.inference.session import OnnxModel
    from stream.pipeline import Pipeline, PipelinePolicy, Record
    from stream.wire.frame import Encoding, frame_headers

    n, telephony = int(argv[0]), argv[1:2] == ["mulaw"]
    model = OnnxModel.load(bench.default_model_dir(), device="cpu", intra_op_threads=1)
    ref = ModelRef(model.manifest.name, model.manifest.version)
    policy = PipelinePolicy(max_streams=2 * n + 1)
    pipe = Pipeline(model.spec, ref, model.labels, FeatureBank(model.spec), policy)
    rate, enc = (8000, Encoding.MULAW) if telephony else (16000, Encoding.PCM_S16LE)
    clip = bench.encoded_chunks(1, 3.0, rate // 10, telephony=telephony)[0]
    offsets = iter(range(1 << 30))

    def record(j: int, seq: int, eos: bool) -> Record:
        headers = frame_headers(
            seq=seq,
            sample_rate=rate,
            encoding=enc,
            channels=1,
            capture_us=T0_US + seq * 100_000,
            eos=eos,
        )
        value = clip[seq % len(clip)]
        return Record(f"s{j}".encode(), value, tuple(headers), "audio", j % 8, next(offsets))

    def timed(records: list[Record]) -> tuple[float, int]:
        cpu = time.process_time()
        step = pipe.accept_many(records)
        return (time.process_time() - cpu) * 1000, len(step.jobs)

    for seq in range(FRAMES):
        pipe.accept_many([record(j, seq, False) for j in range(2 * n)])
    mid_ms, mid_windows = timed([record(j, FRAMES, False) for j in range(n)])
    eos_ms, eos_windows = timed([record(j, FRAMES, True) for j in range(n, 2 * n)])
    print(
        f"{n} streams {'mulaw' if telephony else 'pcm'}: mid-call batch {mid_ms:.1f} ms "
        f"({mid_windows} windows); EOS batch {eos_ms:.1f} ms ({eos_windows} windows)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
