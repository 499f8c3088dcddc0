"""``OnnxModel``: one onnxruntime session for a checked model directory.

Loading refuses anything that could silently give wrong answers: a manifest that does
not validate, files whose sha256 differ, tensor names the graph does not have, a
probabilities output whose width is not the number of labels, a FeatureSpec other
than the worker's, and — when CUDA was asked for — a session that quietly fell back
to the CPU (onnxruntime does that whenever the CUDA/cuDNN libraries fail to load, so
``session.get_providers()`` is checked after creation).

Threads are set explicitly: a worker runs one batch at a time per session, with
``intra_op_threads`` threads for the kernels, one inter-op thread, and spinning off so
idle workers do not burn the cores the feature frontend needs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import ModelError
from stream.features.spec import FeatureSpec
from stream.inference.golden import max_abs_diff, read_golden
from stream.inference.manifest import Manifest, load_manifest
from stream.types import DeviceChoice, Float32

log = logging.getLogger(__name__)


CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# HEURISTIC: cuDNN's exhaustive search re-benchmarks every new batch size, which turns the
# first batches of each size into multi-second stalls under a micro-batcher.
CUDA_OPTIONS: dict[str, str] = {"cudnn_conv_algo_search": "HEURISTIC"}


@dataclass(frozen=True)
class ModelOutput:
    """One batch of results, rows aligned with the input windows.

    Attributes
    ----------
    probabilities: ``[batch, n_labels]`` float32 (softmax or per-tag sigmoid).
    embedding: ``[batch, d]`` float32.
    """

    probabilities: Float32
    embedding: Float32

    def __len__(self) -> int:
        return int(self.probabilities.shape[0])


class OnnxModel:
    """A validated model and its onnxruntime session; ``run`` is thread-safe.

    Build with :meth:`load`.
    """

    def __init__(
        self, session: Any, manifest: Manifest, model_dir: Path, providers: list[str]
    ) -> None:
        self._session = session
        self.manifest = manifest
        self.model_dir = model_dir
        self.providers = providers
        self._input = manifest.input.name
        self._outputs = [manifest.output("probabilities").name, manifest.output("embedding").name]
        self.spec = manifest.feature_spec

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        *,
        device: DeviceChoice = "auto",
        intra_op_threads: int = 1,
        expected_spec: FeatureSpec | None = None,
    ) -> OnnxModel:
        """Validate ``model_dir`` and open its ``model.onnx``.

        Parameters
        ----------
        model_dir:
            A directory with ``manifest.json``, ``model.onnx`` and ``golden.npz``.
        device:
            ``"cpu"``, ``"cuda"`` (fail unless CUDA is really active) or ``"auto"``
            (CUDA when onnxruntime offers it and it activates, else CPU).
        intra_op_threads:
            Threads for one kernel; the worker's budget per session.
        expected_spec:
            The worker's FeatureSpec; a model trained on another one is refused.

        Raises
        ------
        ModelError, FeatureSpecError
            Naming the file, field and values that are wrong.
        """
        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir, expected_spec=expected_spec)
        if intra_op_threads < 1:
            raise ModelError(f"intra_op_threads={intra_op_threads} must be >= 1")
        providers = _providers(device)
        path = model_dir / manifest.model_file
        session = _session(path, manifest.model_sha256, providers, intra_op_threads)
        active = list(session.get_providers())
        if device == "cuda" and (not active or active[0] != CUDA):
            raise ModelError(
                f"{path}: device='cuda' but onnxruntime activated {active}: the CUDA provider "
                "failed to load (check CUDA/cuDNN libraries match onnxruntime-gpu; see the "
                "onnxruntime log above)"
            )
        if device == "auto" and CUDA in providers and active[:1] != [CUDA]:
            log.warning("%s: CUDA provider offered but not active; serving on CPU", path)
        model = cls(session, manifest, model_dir, active)
        model._check_io()
        model._probe()
        return model

    def _check_io(self) -> None:
        path = self.model_dir / self.manifest.model_file
        inputs = {i.name: i for i in self._session.get_inputs()}
        if list(inputs) != [self._input]:
            raise ModelError(
                f"{path}: graph inputs {list(inputs)} != manifest input {self._input!r}"
            )
        outputs = [o.name for o in self._session.get_outputs()]
        missing = [name for name in self._outputs if name not in outputs]
        if missing:
            raise ModelError(
                f"{path}: manifest outputs {missing} are not in the graph (graph has {outputs})"
            )
        graph_shape = inputs[self._input].shape
        want = self.manifest.input.shape
        for axis, (got, expected) in enumerate(zip(graph_shape, want, strict=False)):
            if isinstance(got, int) and expected is not None and got != expected:
                raise ModelError(
                    f"{path}: graph input {self._input!r} has shape {graph_shape}, manifest "
                    f"says {list(want)} (axis {axis})"
                )

    def _probe(self) -> None:
        """One zero window: the real output widths must match labels and manifest."""
        out = self.run(np.zeros((1, *self.spec.input_shape), dtype=np.float32))
        path = self.model_dir / self.manifest.model_file
        n_labels = len(self.manifest.labels)
        if out.probabilities.shape != (1, n_labels):
            raise ModelError(
                f"{path}: output {self._outputs[0]!r} has {out.probabilities.shape[-1]} "
                f"columns but the manifest lists {n_labels} labels"
            )
        want_dim = self.manifest.embedding_dim
        if out.embedding.ndim != 2 or (want_dim is not None and out.embedding.shape[1] != want_dim):
            raise ModelError(
                f"{path}: output {self._outputs[1]!r} has shape {out.embedding.shape}, "
                f"manifest says [batch, {want_dim}]"
            )

    # -- serving --------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def device(self) -> str:
        """``"cuda"`` or ``"cpu"``: where the session really runs."""
        return "cuda" if self.providers[:1] == [CUDA] else "cpu"

    def run(self, x: np.ndarray) -> ModelOutput:
        """Run one batch ``x`` ``[batch, n_features, frames_per_window, 1]`` float32.

        Raises
        ------
        ModelError
            Wrong dtype, rank or window shape (the message has both shapes).
        """
        want = self.spec.input_shape
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise ModelError(
                f"model {self.manifest.name}/{self.manifest.version}: input must be a "
                f"float32 array, got {got}"
            )
        if x.ndim != 4 or x.shape[1:] != want or x.shape[0] < 1:
            raise ModelError(
                f"model {self.manifest.name}/{self.manifest.version}: input shape "
                f"{x.shape} is not (batch>=1, {want[0]}, {want[1]}, {want[2]})"
            )
        probs, emb = self._session.run(self._outputs, {self._input: np.ascontiguousarray(x)})
        return ModelOutput(
            probabilities=np.asarray(probs, dtype=np.float32),
            embedding=np.asarray(emb, dtype=np.float32),
        )

    def warmup(self, batch_sizes: Iterable[int] = (1,)) -> None:
        """Run zeros at each batch size so first real batches pay no allocation cost."""
        for size in batch_sizes:
            self.run(np.zeros((size, *self.spec.input_shape), dtype=np.float32))

    def parity_check(self, golden_path: Path | str | None = None) -> float:
        """Max ``|golden - this session|`` over both outputs on the golden windows.

        Used by the hot-reload gate: a model whose golden replay drifts beyond its
        tolerance on this runtime/provider is not swapped in. Default: the model's own
        ``golden.npz``.
        """
        path = Path(golden_path) if golden_path else self.model_dir / self.manifest.golden_file
        golden = read_golden(path)
        out = self.run(golden.x)
        actual = {"probabilities": out.probabilities, "embedding": out.embedding}
        diff, _ = max_abs_diff(golden.expected(), actual)
        return diff


def available_providers() -> list[str]:
    """Execution providers this onnxruntime build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _providers(device: str) -> list[Any]:
    available = available_providers()
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise ModelError(
                f"device='cuda' but this onnxruntime has no {CUDA} (available: {available}); "
                "install onnxruntime-gpu instead of onnxruntime (not both)"
            )
        return [(CUDA, dict(CUDA_OPTIONS)), CPU]
    if device == "auto":
        return [(CUDA, dict(CUDA_OPTIONS)), CPU] if CUDA in available else [CPU]
    raise ModelError(f"device={device!r} is not 'auto', 'cpu' or 'cuda'")


def _session(path: Path, sha256: str, providers: list[Any], intra_op_threads: int) -> Any:
    """An onnxruntime session made from the very bytes whose digest the manifest names.

    Loading from bytes rather than from the path closes two doors: the file cannot be
    swapped between the checksum and the load, and onnxruntime cannot pull tensors
    from external data files beside it, which the manifest does not checksum (a model
    that needs them is refused, naming why).
    """
    import onnxruntime as ort

    model_bytes = path.read_bytes()
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != sha256:
        raise ModelError(
            f"{path}: sha256 {actual} does not match model_sha256={sha256} in the manifest "
            "(the file changed while it was being loaded?)"
        )

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        if "external" in str(exc).lower():
            raise ModelError(
                f"{path}: the graph keeps tensors in external data files, which the "
                "manifest does not checksum; refused (export with the weights inside "
                f"model.onnx): {exc}"
            ) from exc
        raise ModelError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
