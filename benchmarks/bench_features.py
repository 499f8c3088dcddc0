"""Feature frontend throughput: per-window librosa vs tympan's FeatureBank.

Measures audio-seconds processed per CPU-second (``time.process_time``, all threads
of this process) on the same synthetic audio:

(a) ``librosa``: the seed's path, one stream; every 0.5 s recompute
    ``melspectrogram`` + ``power_to_db`` for the last 1 s window;
(b) ``FeatureBank`` with 1, 100 and 1000 concurrent streams fed 100 ms chunks, all
    streams pushed in one call per 100 ms tick.

BLAS is limited to one thread for both (``threadpoolctl``) so the CPU time is the
work, not spinning helper threads. The last line is ``ratio_vs_librosa=<x>``
(1000 streams over (a)).

Each figure is the best of ``--repeat`` interleaved rounds (the machine is shared;
the best round is the least disturbed one, for both paths alike).

Run: ``.venv/bin/python benchmarks/bench_features.py [--quick] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import time

import librosa
import numpy as np
from threadpoolctl import threadpool_limits

from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec

SPEC = FeatureSpec()
TICK_S = 0.1


def base_audio(seconds: float, sr: int) -> np.ndarray:
    """Speech-like test audio: harmonic tones with a moving pitch plus noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 150 + 50 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.1
    return (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def bench_librosa(y: np.ndarray, spec: FeatureSpec) -> float:
    """Audio-seconds per CPU-second of the per-window librosa path."""
    win, hop = spec.window_samples, round(spec.hop_seconds * spec.sr)
    kwargs = spec.librosa_mel_kwargs()
    librosa.power_to_db(librosa.feature.melspectrogram(y=y[:win], **kwargs))  # warm-up
    t0 = time.process_time()
    for start in range(0, len(y) - win + 1, hop):
        s = librosa.feature.melspectrogram(y=y[start : start + win], **kwargs)
        librosa.power_to_db(s, ref=spec.ref, amin=spec.amin, top_db=None)
    cpu = time.process_time() - t0
    audio_s = (len(y) - win) / spec.sr + spec.hop_seconds
    return audio_s / cpu


def bench_bank(
    base: np.ndarray, spec: FeatureSpec, n_streams: int, seconds: float
) -> tuple[float, int]:
    """Audio-seconds per CPU-second of FeatureBank; also state bytes per stream."""
    chunk = round(TICK_S * spec.sr)
    n_ticks = round(seconds / TICK_S)
    rng = np.random.default_rng(n_streams)
    offsets = rng.integers(0, len(base) - n_ticks * chunk, size=n_streams)
    ids = [f"call-{i}" for i in range(n_streams)]
    bank = FeatureBank(spec, max_streams=n_streams)
    bank.push({sid: base[:chunk] for sid in ids})  # warm-up; opens every stream
    for sid in ids:
        bank.close(sid)
    n_windows = 0
    t0 = time.process_time()
    for tick in range(n_ticks):
        at = tick * chunk
        result = bank.push(
            {sid: base[o + at : o + at + chunk] for sid, o in zip(ids, offsets, strict=True)}
        )
        n_windows += len(result.windows)
    cpu = time.process_time() - t0
    assert n_windows > 0
    return n_streams * n_ticks * TICK_S / cpu, bank.state_bytes(ids[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 1 minute)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    args = parser.parse_args()
    seconds = {1: 30.0, 100: 10.0, 1000: 3.0} if args.quick else {1: 120.0, 100: 30.0, 1000: 10.0}
    base = base_audio(150.0, SPEC.sr)
    best: dict[int, float] = {}
    state = 0
    with threadpool_limits(limits=1):
        for _ in range(args.repeat):  # interleaved rounds: load on a shared box hits all alike
            best[0] = max(best.get(0, 0.0), bench_librosa(base[: int(seconds[1] * SPEC.sr)], SPEC))
            for n, dur in seconds.items():
                speed, state = bench_bank(base, SPEC, n, dur)
                best[n] = max(best.get(n, 0.0), speed)
    ref = best[0]
    rows: list[tuple[str, int, float, int | None]] = [("librosa per-window (a)", 1, ref, None)]
    rows += [(f"FeatureBank {n} streams (b)", n, best[n], state) for n in seconds]
    print(
        f"spec: sr={SPEC.sr} n_fft={SPEC.n_fft} hop_length={SPEC.hop_length} "
        f"n_mels={SPEC.n_mels} window={SPEC.window_seconds}s/{SPEC.hop_seconds}s"
    )
    print(f"{'path':<30}{'streams':>8}{'audio-s/CPU-s':>15}{'x librosa':>11}{'state B/stream':>16}")
    for name, n, speed, state in rows:
        print(f"{name:<30}{n:>8}{speed:>15.0f}{speed / ref:>11.1f}{state if state else '-':>16}")
    print(f"ratio_vs_librosa={rows[-1][2] / ref:.1f}")


if __name__ == "__main__":
    main()
