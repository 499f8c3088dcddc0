"""Windows for the parity gate and ``golden.npz`` when no held-out data is at hand.

Training passes held-out test windows to :func:`exporters.export.export_model`. The
``tympan export`` command, given only a ``.keras`` file, needs inputs too: random
numbers would exercise the graph but not in the range real features live in (log-mel
dB around −100..+20), so these are the real frontend's features of synthetic audio —
noise, tones and chirps at levels from −60 dBFS to −6 dBFS.
"""

from __future__ import annotations

import numpy as np

from stream.features.offline import features, windows
from stream.features.spec import FeatureSpec
from stream.features.windows import stack_windows
from stream.types import Float32


def synthetic_windows(spec: FeatureSpec, n: int = 32, *, seed: int = 0) -> Float32:
    """``n`` model windows ``[n, *spec.input_shape]`` of synthetic audio through ``spec``."""
    rng = np.random.default_rng(seed)
    t = np.arange(spec.window_samples) / spec.sr
    out = []
    for i in range(n):
        level = 10 ** (rng.uniform(-60, -6) / 20)
        kind = i % 3
        if kind == 0:
            y = rng.standard_normal(t.size)
        elif kind == 1:
            f0 = rng.uniform(80, spec.sr / 4)
            y = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(2 * np.pi * 2 * f0 * t)
        else:
            f0, f1 = rng.uniform(50, spec.sr / 8), rng.uniform(spec.sr / 8, spec.sr / 2.5)
            y = np.sin(2 * np.pi * (f0 + (f1 - f0) * t / (2 * t[-1])) * t)
        y = (level * y / (np.max(np.abs(y)) + 1e-12)).astype(np.float32)
        cut = windows(features(y, spec), spec)
        out.append(stack_windows(cut[:1], spec))
    return np.concatenate(out).astype(np.float32)
