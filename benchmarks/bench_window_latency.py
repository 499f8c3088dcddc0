"""How long a model window waits beyond its last sample, per input format and frame size.

A window of the stream (``FeatureSpec()``: 1 s every 0.5 s at 16 kHz) can be emitted once
its last sample is known. The worker learns samples a frame at a time, and an input at
another rate goes through the resampler first, whose filter needs some samples *after*
an output sample before it can compute it. This replays the worker's path
(``StreamResampler`` → ``FeatureBank``, as ``stream.pipeline.conditioning``'s
``Conditioner.push``/``drain`` do) over frames of 20, 100 and 500 ms and reports, per
window, the wait = end of the frame that released it − time of the window's last sample:

* ``16k pcm``: no resampling; the wait is only where the window ends inside a frame;
* ``8k low-delay``: 8 kHz telephony through the low-delay FIR (lookahead 64 samples);
* ``8k soxr HQ``: the same through ``soxr.ResampleStream`` (the resampler before it).

``added`` is the wait beyond the 16 kHz PCM one (what the resampler costs). No wall
clock is involved: the figures are exact for the given frame sizes, not measurements.

Run: ``.venv/bin/python benchmarks/bench_window_latency.py [--seconds 12]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import soxr

from stream.audio.resample import StreamResampler
from stream.features import FeatureBank, FeatureSpec

Resampler = Callable[[np.ndarray], np.ndarray]


def soxr_stream(in_rate: int, out_rate: int) -> Resampler:
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
    return lambda chunk: np.asarray(stream.resample_chunk(chunk), dtype=np.float32)


def low_delay(in_rate: int, out_rate: int) -> Resampler:
    return StreamResampler(in_rate, out_rate).process


def window_waits_ms(
    in_rate: int, frame_ms: int, make: Callable[[int, int], Resampler], seconds: float
) -> np.ndarray:
    """Per window: release time − time of its last sample, in ms (frames end-aligned)."""
    spec = FeatureSpec()
    bank = FeatureBank(spec)
    step = in_rate * frame_ms // 1000
    x = (0.1 * np.random.default_rng(0).standard_normal(int(in_rate * seconds))).astype(np.float32)
    resampler = make(in_rate, spec.sr)
    waits = []
    for k, start in enumerate(range(0, len(x) - step + 1, step)):
        released_s = (k + 1) * frame_ms / 1000
        y = resampler(x[start : start + step])
        for w in bank.push({"s": y}).windows:
            waits.append(1000 * (released_s - w.end_sample / spec.sr))
    return np.asarray(waits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)
    rows = [
        ("16k pcm", 16000, low_delay),
        ("8k low-delay", 8000, low_delay),
        ("8k soxr HQ", 8000, soxr_stream),
    ]
    print(f"{'frame':>6} {'input':<13} {'windows':>7} {'wait ms (mean/max)':>19} {'added ms':>9}")
    for frame_ms in (20, 100, 500):
        base = window_waits_ms(16000, frame_ms, low_delay, args.seconds)
        for name, rate, make in rows:
            waits = window_waits_ms(rate, frame_ms, make, args.seconds)
            n = min(len(waits), len(base))
            added = waits[:n] - base[:n]
            print(
                f"{frame_ms:>4}ms {name:<13} {len(waits):>7} "
                f"{waits.mean():>9.1f} / {waits.max():>6.1f} {added.mean():>9.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
