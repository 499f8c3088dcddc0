"""The seed-style serving path, measured: librosa per window + Keras ``predict`` per window.

This is how the seed code served a stream: every 0.5 s it took the last 1 s of
audio, computed ``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` on it
from scratch, and called ``model.predict`` on that one window. The network is the
default model's architecture (``models.architectures.build_cnn`` with the layer sizes
recorded in the model's manifest, or the model's own ``.keras`` file when the
directory ships one), so the comparison with tympan is the serving path, not the
network. Weights do not change the cost; a built, untrained model is used when no
``.keras`` is shipped.

Figure: windows per CPU-second of this process (``time.process_time``: all threads,
TensorFlow's included), and streams per core = that / 2 (a real-time stream makes
2 windows per second).

BLAS runs one thread here, as in the worker (``stream.worker.build.limit_blas_threads``).
With OpenBLAS's default (a thread per core) its idle threads spin after every small
product and the process's CPU doubles: 92–102 CPU-ms per window instead of 46–48 on the
2-core host (benchmarks/RESULTS.md). That spin is an environment setting, not the
serving path, so the baseline is measured without it; ``--default-blas`` measures the
seed as a default environment runs it.

Run: ``.venv/bin/python benchmarks/seed_baseline.py [--quick] [--model DIR] [--json]``
(``--json``: the last line is the figures as JSON, for ``bench_e2e.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WINDOWS_PER_STREAM_S = 2.0


def default_model_dir() -> Path:
    from stream.inference.repository import resolve_model_dir
    from stream.roles import Role

    return resolve_model_dir(None, role=Role.LABEL)


def keras_model(model_dir: Path) -> Any:
    """The model's ``.keras`` if shipped, else its architecture rebuilt from the manifest."""
    import keras

    from models.architectures import CnnConfig, build_cnn
    from stream.inference.manifest import load_manifest

    shipped = sorted(model_dir.glob("*.keras"))
    if shipped:
        return keras.models.load_model(shipped[0], compile=False)
    manifest = load_manifest(model_dir)
    cnn = dict(manifest.training.get("cnn") or manifest.training.get("config") or {})
    fields = {f for f in CnnConfig.__dataclass_fields__}
    kwargs: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in cnn.items() if k in fields
    }
    spec = manifest.feature_spec
    return build_cnn(
        spec.input_shape, len(manifest.labels), task=manifest.task, config=CnnConfig(**kwargs)
    )


def seed_window_features(y: np.ndarray, spec: Any) -> np.ndarray:
    """Log-mel of one window from scratch, as the seed did (librosa, no state)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, **spec.librosa_mel_kwargs())
    return librosa.power_to_db(mel, ref=spec.ref, amin=spec.amin, top_db=None)


def measure(model_dir: Path, seconds: float) -> dict[str, Any]:
    """Serve one ``seconds``-long stream the seed's way; CPU time split features/predict."""
    from stream.inference.manifest import load_manifest

    spec = load_manifest(model_dir).feature_spec
    model = keras_model(model_dir)
    rng = np.random.default_rng(0)
    t = np.arange(int((seconds + spec.window_seconds) * spec.sr)) / spec.sr
    y = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    win = int(spec.window_seconds * spec.sr)
    hop = int(spec.hop_seconds * spec.sr)
    frames = spec.frames_per_window
    starts = range(0, len(y) - win + 1, hop)

    def one(start: int) -> tuple[float, float]:
        c0 = time.process_time()
        feats = seed_window_features(y[start : start + win], spec)[:, :frames]
        c1 = time.process_time()
        model.predict(feats[None, :, :, None].astype(np.float32), verbose=0)
        return c1 - c0, time.process_time() - c1

    for start in list(starts)[:3]:  # graph tracing and first-call allocation
        one(start)
    feat_s = pred_s = 0.0
    wall0 = time.perf_counter()
    n = 0
    for start in starts:
        f, p = one(start)
        feat_s += f
        pred_s += p
        n += 1
    wall = time.perf_counter() - wall0
    cpu = feat_s + pred_s
    import tensorflow as tf

    return {
        "model_dir": str(model_dir),
        "windows": n,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "features_cpu_s": round(feat_s, 3),
        "predict_cpu_s": round(pred_s, 3),
        "windows_per_cpu_s": round(n / cpu, 2),
        "windows_per_wall_s": round(n / wall, 2),
        "streams_per_core": round(n / cpu / WINDOWS_PER_STREAM_S, 3),
        "ms_per_window_cpu": round(1000 * cpu / n, 2),
        "tensorflow": tf.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s of audio instead of 60 s")
    parser.add_argument("--model", help="model directory (default: the scene model)")
    parser.add_argument("--seconds", type=float, help="audio seconds to serve")
    parser.add_argument("--json", action="store_true", help="last line: figures as JSON")
    parser.add_argument(
        "--default-blas",
        action="store_true",
        help="keep BLAS's default threads (its idle threads spin: about 2x the CPU)",
    )
    args = parser.parse_args(argv)
    if not args.default_blas:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model_dir = Path(args.model) if args.model else default_model_dir()
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    result = measure(model_dir, seconds)
    result["blas_threads"] = "default" if args.default_blas else 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"seed-style path ({model_dir}): {result['windows']} windows, "
        f"{result['ms_per_window_cpu']:.1f} CPU-ms per window "
        f"(librosa {result['features_cpu_s']:.2f} s, predict {result['predict_cpu_s']:.2f} s)"
    )
    print(f"streams_per_core={result['streams_per_core']:.2f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
