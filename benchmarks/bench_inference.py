"""onnxruntime throughput and latency of the default models against batch size.

For each model (default: every model in the repository, latest version) and each
batch size (1, 8, 32, 128, 512) it runs the session on random windows of the
model's input shape and reports:

* latency of one ``run`` call (median and p99 over the timed calls, ms);
* throughput in windows per second, and the inference capacity that gives in
  real-time streams (a stream makes 2 windows per second: windows/s ÷ 2);
* multiply-adds per window (``macs_per_window`` in the manifest) and the achieved
  FLOP rate, ``2 × MACs × windows/s``.

CPU: sessions with 1 and 2 intra-op threads, built like the worker's
(``stream.inference.session``: sequential, spinning off). CUDA, when this
onnxruntime offers ``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` wheel):
``cudnn_conv_algo_search=HEURISTIC``, the provider checked to be *active*
(``session.get_providers()``; onnxruntime silently falls back to the CPU when the
CUDA/cuDNN libraries do not load), and each batch size measured twice: plain
``run`` (host arrays in and out) and with I/O binding (the input copied to the GPU
once, outputs left on the device), which isolates the kernels from the PCIe copies.
Without a GPU it says so and measures the CPU only.

Run: ``.venv/bin/python benchmarks/bench_inference.py [--quick] [--model DIR ...]
[--device cpu|cuda|auto] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 32, 128, 512)
WINDOWS_PER_STREAM_S = 2.0


@dataclass
class Row:
    model: str
    device: str
    threads: int
    mode: str  # "run" or "iobinding"
    batch: int
    calls: int
    p50_ms: float
    p99_ms: float
    windows_per_s: float
    streams: float
    gflops: float | None


def default_models() -> list[Path]:
    from stream.inference.repository import default_repo, list_models, resolve_model_dir

    repo = default_repo()
    return [resolve_model_dir(name, repo=repo) for name in sorted(list_models(repo))]


def session(model_path: Path, device: str, threads: int) -> Any:
    """A session built like the worker's; for CUDA, refuse a silent CPU fallback."""
    import onnxruntime as ort

    from stream.inference.session import CPU, CUDA, CUDA_OPTIONS

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = [CPU] if device == "cpu" else [(CUDA, dict(CUDA_OPTIONS)), CPU]
    sess = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    if device == "cuda" and sess.get_providers()[:1] != [CUDA]:
        raise RuntimeError(
            f"{model_path}: CUDA asked for but onnxruntime activated {sess.get_providers()}"
        )
    return sess


def time_calls(call: Any, budget_s: float, min_calls: int = 3) -> list[float]:
    """Seconds per call: warm up twice, then call until ``budget_s`` has passed."""
    call()
    call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def bench_model(
    model_dir: Path, device: str, threads: int, batches: tuple[int, ...], budget_s: float
) -> list[Row]:
    from stream.inference.manifest import load_manifest

    manifest = load_manifest(model_dir)
    sess = session(model_dir / manifest.model_file, device, threads)
    name = f"{manifest.name}/{manifest.version}"
    in_name = manifest.input.name
    outs = [manifest.output("probabilities").name, manifest.output("embedding").name]
    macs = manifest.macs_per_window
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        x = rng.normal(-40, 15, (batch, *manifest.feature_spec.input_shape)).astype(np.float32)
        modes = [("run", lambda x=x: sess.run(outs, {in_name: x}))]
        if device == "cuda":
            modes.append(("iobinding", io_bound_call(sess, in_name, outs, x)))
        for mode, call in modes:
            times = np.array(time_calls(call, budget_s))
            wps = batch / float(np.median(times))
            rows.append(
                Row(
                    model=name,
                    device=device,
                    threads=threads,
                    mode=mode,
                    batch=batch,
                    calls=len(times),
                    p50_ms=round(float(np.median(times)) * 1000, 3),
                    p99_ms=round(float(np.percentile(times, 99)) * 1000, 3),
                    windows_per_s=round(wps, 1),
                    streams=round(wps / WINDOWS_PER_STREAM_S, 1),
                    gflops=round(2 * macs * wps / 1e9, 2) if macs else None,
                )
            )
    return rows


def io_bound_call(sess: Any, in_name: str, outs: list[str], x: np.ndarray) -> Any:
    """A ``run_with_iobinding`` call: input already on the GPU, outputs left there."""
    import onnxruntime as ort

    x_gpu = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(in_name, x_gpu)
    for out in outs:
        binding.bind_output(out, "cuda", 0)

    def call() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return call


def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA provider is offered, with the reason when not."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return False, (
            f"no GPU path: this onnxruntime {ort.__version__} offers {available} "
            "(install onnxruntime-gpu in place of onnxruntime on a machine with CUDA)"
        )
    return True, f"CUDAExecutionProvider offered by onnxruntime {ort.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per configuration")
    parser.add_argument("--model", action="append", help="model directory (repeat)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--budget-s", type=float, help="timed seconds per configuration")
    parser.add_argument("--json", help="write all rows here")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    budget = args.budget_s or (0.3 if args.quick else 2.0)
    models = [Path(m) for m in args.model] if args.model else default_models()
    has_cuda, why = cuda_status()
    print(why)
    if args.device == "cuda" and not has_cuda:
        print("--device cuda: no CUDA provider; nothing measured", file=sys.stderr)
        return 2
    plan = []
    if args.device in ("auto", "cpu"):
        plan += [("cpu", t) for t in args.threads]
    if args.device == "cuda" or (args.device == "auto" and has_cuda):
        plan.append(("cuda", 1))
    rows: list[Row] = []
    print(
        f"{'model':<18}{'device':>7}{'thr':>4}{'mode':>10}{'batch':>6}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'windows/s':>11}{'streams':>9}{'GFLOP/s':>9}"
    )
    for model_dir in models:
        from stream.inference.manifest import load_manifest

        macs = load_manifest(model_dir).macs_per_window
        print(f"# {model_dir}: {macs if macs else 'unknown'} multiply-adds per window")
        for device, threads in plan:
            for r in bench_model(model_dir, device, threads, tuple(args.batches), budget):
                rows.append(r)
                gf = f"{r.gflops:.2f}" if r.gflops is not None else "n/a"
                print(
                    f"{r.model:<18}{r.device:>7}{r.threads:>4}{r.mode:>10}{r.batch:>6}"
                    f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.windows_per_s:>11.0f}{r.streams:>9.0f}"
                    f"{gf:>9}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    for device in sorted({r.device for r in rows}):
        best = max((r for r in rows if r.device == device), key=lambda r: r.windows_per_s)
        print(
            f"capacity_{device}: {best.model} {best.windows_per_s:.0f} windows/s = "
            f"{best.streams:.0f} streams of inference (batch {best.batch}, "
            f"{best.threads} thread(s), {best.mode})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
