"""The model manifest: what a model directory promises, checked before serving.

A model directory holds ``model.onnx``, ``manifest.json`` and ``golden.npz``. The
manifest names the FeatureSpec the model was trained on (and its ``spec_hash``), the
labels, the input/output tensor names and shapes, and sha256 digests of the files, so
a worker refuses a model whose bytes, labels or features are not what it was exported
with. It is plain JSON read with :func:`json.loads` (never pickle), validated field by
field; every error names the file, the field and the values.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "name": "scene", "version": "3",
      "task": "single" | "multi",
      "labels": ["speech", "music", ...],
      "thresholds": [0.5, ...] | null,          # multi only, one per label
      "spec": {FeatureSpec.to_dict()}, "spec_hash": "<sha256>",
      "input": {"name": "features", "shape": [null, n_features, frames, 1]},
      "outputs": [{"name": "probabilities", "shape": [null, n_labels], "role": "probabilities"},
                  {"name": "embedding", "shape": [null, d], "role": "embedding"}],
      "opset": 17,
      "files": {"model": "model.onnx", "golden": "golden.npz"},
      "model_sha256": "<sha256 of model.onnx>", "golden_sha256": "<sha256 of golden.npz>",
      "training": {...}, "metrics": {...}, "macs_per_window": 123456 | null,
      "created_at": "2026-11-25T15:00:00Z", "tympan_version": "0.1.0"
    }
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from stream.errors import FeatureSpecError, ModelError
from stream.features.spec import FeatureSpec

SPEAKER_RECIPE = "models.speaker"
"""The ``training.recipe`` of a speaker encoder's manifest (written by ``models.speaker``)."""

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
GOLDEN_FILE = "golden.npz"

Task = Literal["single", "multi"]
OutputRole = Literal["probabilities", "embedding"]
Shape = tuple[int | None, ...]

_TASKS = ("single", "multi")
_ROLES = ("probabilities", "embedding")


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A graph input or output: its name, shape (``None`` = dynamic) and role."""

    name: str
    shape: Shape
    role: str = "input"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape)}
        if self.role != "input":
            out["role"] = self.role
        return out


@dataclass(frozen=True)
class Manifest:
    """Everything a worker must know about a model before it feeds it features.

    Attributes
    ----------
    name, version: where the model lives in a repository (``<repo>/<name>/<version>``).
    task: ``"single"`` (softmax, argmax label) or ``"multi"`` (sigmoid, tags above
        ``thresholds``).
    labels: one per column of the probabilities output.
    spec, spec_hash: the FeatureSpec (as a dict) the model was trained on and its hash.
    input: the graph input, shape ``(None, n_features, frames_per_window, 1)``.
    outputs: the graph outputs with roles ``probabilities`` and ``embedding``.
    model_sha256, golden_sha256: digests of ``model.onnx`` and ``golden.npz``.
    """

    name: str
    version: str
    task: Task
    labels: tuple[str, ...]
    spec: dict[str, Any]
    spec_hash: str
    input: TensorInfo
    outputs: tuple[TensorInfo, ...]
    opset: int
    model_sha256: str
    golden_sha256: str
    thresholds: tuple[float, ...] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    macs_per_window: int | None = None
    created_at: str = ""
    tympan_version: str = ""
    model_file: str = MODEL_FILE
    golden_file: str = GOLDEN_FILE
    schema_version: int = SCHEMA_VERSION

    @property
    def is_speaker_encoder(self) -> bool:
        """Whether the model was trained to tell voices apart (``models.speaker``): its
        labels are the identities it was trained on, never classes to report, and only
        its embedding is used (``tympan speakers``, the worker's ``--speaker-model``)."""
        return self.training.get("recipe") == SPEAKER_RECIPE

    @property
    def feature_spec(self) -> FeatureSpec:
        """The FeatureSpec object (validated when the manifest was loaded)."""
        return FeatureSpec.from_dict(self.spec)

    @property
    def embedding_dim(self) -> int | None:
        """Size of the embedding output, or ``None`` when the shape is dynamic."""
        return self.output("embedding").shape[-1]

    def output(self, role: OutputRole) -> TensorInfo:
        """The output with ``role`` (``probabilities`` or ``embedding``)."""
        for info in self.outputs:
            if info.role == role:
                return info
        raise ModelError(f"model {self.name}/{self.version}: no output with role {role!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            "spec": dict(self.spec),
            "spec_hash": self.spec_hash,
            "input": self.input.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
            "opset": self.opset,
            "files": {"model": self.model_file, "golden": self.golden_file},
            "model_sha256": self.model_sha256,
            "golden_sha256": self.golden_sha256,
            "training": self.training,
            "metrics": self.metrics,
            "macs_per_window": self.macs_per_window,
            "created_at": self.created_at,
            "tympan_version": self.tympan_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "manifest") -> Manifest:
        """Validate ``data`` against the schema; errors name ``source`` and the field."""
        return _parse(data, source)


# -- reading and checking -----------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(manifest: Manifest, model_dir: Path) -> Path:
    """Write ``manifest.json`` into ``model_dir``; returns its path."""
    path = Path(model_dir) / MANIFEST_FILE
    path.write_text(manifest.to_json(), encoding="utf-8")
    return path


def load_manifest(
    model_dir: Path | str,
    *,
    expected_spec: FeatureSpec | None = None,
    verify_files: bool = True,
) -> Manifest:
    """Read and validate ``<model_dir>/manifest.json``.

    Checks the schema, that the FeatureSpec round-trips to ``spec_hash``, that labels
    match the probabilities output, that ``model.onnx``/``golden.npz`` have the recorded
    sha256 (``verify_files``), and that the spec equals ``expected_spec`` when given —
    the worker's own spec — so a model never meets features it was not trained on.

    Raises
    ------
    ModelError
        Missing/unreadable/invalid manifest, missing file, checksum mismatch.
    FeatureSpecError
        Invalid spec, ``spec_hash`` mismatch, or a spec that differs from ``expected_spec``.
    """
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_FILE
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory does not exist")
    if not path.is_file():
        raise ModelError(f"{path}: manifest.json is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: manifest must be a JSON object, got {type(data).__name__}")
    manifest = _parse(data, str(path))
    if verify_files:
        _verify_file(model_dir / manifest.model_file, manifest.model_sha256, "model_sha256", path)
        _verify_file(
            model_dir / manifest.golden_file, manifest.golden_sha256, "golden_sha256", path
        )
    if expected_spec is not None:
        check_spec(manifest, expected_spec, source=str(path))
    return manifest


def check_spec(manifest: Manifest, expected: FeatureSpec, *, source: str) -> None:
    """Refuse a model whose FeatureSpec differs from ``expected``; name each field."""
    if manifest.spec_hash == expected.spec_hash:
        return
    mine = manifest.spec
    theirs = expected.to_dict()
    diffs = [
        f"{key}: model={mine.get(key)!r} worker={theirs.get(key)!r}"
        for key in sorted(set(mine) | set(theirs))
        if mine.get(key) != theirs.get(key)
    ]
    raise FeatureSpecError(
        f"{source}: model {manifest.name}/{manifest.version} was trained on a different "
        f"FeatureSpec (spec_hash {manifest.spec_hash[:12]} != {expected.spec_hash[:12]}): "
        + "; ".join(diffs)
    )


def _verify_file(path: Path, expected: str, field_name: str, source: Path) -> None:
    if not path.is_file():
        raise ModelError(f"{path}: file named by {source} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{path}: sha256 {actual} does not match {field_name}={expected} in {source} "
            "(file modified or corrupted after export)"
        )


# -- schema ------------------------------------------------------------------------------

_REQUIRED = (
    "schema_version",
    "name",
    "version",
    "task",
    "labels",
    "spec",
    "spec_hash",
    "input",
    "outputs",
    "opset",
    "model_sha256",
    "golden_sha256",
)
_OPTIONAL = (
    "thresholds",
    "files",
    "training",
    "metrics",
    "macs_per_window",
    "created_at",
    "tympan_version",
)


def _parse(data: Mapping[str, Any], source: str) -> Manifest:
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ModelError(f"{source}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ModelError(f"{source}: unknown field(s) {', '.join(unknown)}")
    version = _typed(data, "schema_version", int, source)
    if version != SCHEMA_VERSION:
        raise ModelError(
            f"{source}: schema_version={version} is not supported (this tympan reads "
            f"{SCHEMA_VERSION})"
        )
    task = _typed(data, "task", str, source)
    if task not in _TASKS:
        raise ModelError(f"{source}: task={task!r} is not 'single' or 'multi'")
    labels = _labels(data, source)
    spec, spec_hash = _spec(data, source)
    inp = _tensor(data["input"], "input", source, role="input")
    outputs = _outputs(data, source)
    thresholds = _thresholds(data, task, len(labels), source)
    files = _optional(data, "files", dict, source) or {}
    _check_shapes(inp, outputs, spec, len(labels), source)
    return Manifest(
        name=_nonempty(data, "name", source),
        version=_nonempty(data, "version", source),
        task=cast(Task, task),
        labels=labels,
        spec=spec,
        spec_hash=spec_hash,
        input=inp,
        outputs=outputs,
        opset=_typed(data, "opset", int, source),
        model_sha256=_digest(data, "model_sha256", source),
        golden_sha256=_digest(data, "golden_sha256", source),
        thresholds=thresholds,
        training=_optional(data, "training", dict, source) or {},
        metrics=_optional(data, "metrics", dict, source) or {},
        macs_per_window=_optional(data, "macs_per_window", int, source),
        created_at=_optional(data, "created_at", str, source) or "",
        tympan_version=_optional(data, "tympan_version", str, source) or "",
        model_file=_filename(files, "model", MODEL_FILE, source),
        golden_file=_filename(files, "golden", GOLDEN_FILE, source),
        schema_version=version,
    )


def _typed(data: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelError(
            f"{source}: field {key!r} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    if data.get(key) is None:
        return None
    return _typed(data, key, kind, source)


def _nonempty(data: Mapping[str, Any], key: str, source: str) -> str:
    value = cast(str, _typed(data, key, str, source))
    if not value or "/" in value or value in (".", ".."):
        raise ModelError(f"{source}: field {key!r}={value!r} must be a non-empty path segment")
    return value


def _digest(data: Mapping[str, Any], key: str, source: str) -> str:
    value = cast(str, _typed(data, key, str, source))
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ModelError(f"{source}: field {key!r}={value!r} is not a hex sha256")
    return value


def _filename(files: Mapping[str, Any], key: str, default: str, source: str) -> str:
    value = files.get(key, default)
    if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
        raise ModelError(f"{source}: files.{key}={value!r} must be a plain file name")
    return value


def _labels(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    labels = data["labels"]
    if not isinstance(labels, list) or not labels:
        raise ModelError(f"{source}: field 'labels' must be a non-empty list, got {labels!r}")
    if not all(isinstance(x, str) and x for x in labels):
        raise ModelError(f"{source}: field 'labels' must hold non-empty strings: {labels!r}")
    if len(set(labels)) != len(labels):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        raise ModelError(f"{source}: field 'labels' has duplicates: {dupes}")
    return tuple(labels)


def _spec(data: Mapping[str, Any], source: str) -> tuple[dict[str, Any], str]:
    spec = _typed(data, "spec", dict, source)
    spec_hash = _digest(data, "spec_hash", source)
    try:
        parsed = FeatureSpec.from_dict(spec)
    except (FeatureSpecError, TypeError) as exc:
        raise FeatureSpecError(f"{source}: field 'spec' is not a valid FeatureSpec: {exc}") from exc
    if parsed.spec_hash != spec_hash:
        raise FeatureSpecError(
            f"{source}: field 'spec' hashes to {parsed.spec_hash} but spec_hash={spec_hash} "
            "(spec edited after export?)"
        )
    return parsed.to_dict(), spec_hash


def _tensor(value: Any, where: str, source: str, *, role: str) -> TensorInfo:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ModelError(f"{source}: {where} must be an object with a 'name', got {value!r}")
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape
    ):
        raise ModelError(
            f"{source}: {where}.shape must be a list of positive ints or null, got {shape!r}"
        )
    return TensorInfo(name=value["name"], shape=tuple(shape), role=role)


def _outputs(data: Mapping[str, Any], source: str) -> tuple[TensorInfo, ...]:
    raw = data["outputs"]
    if not isinstance(raw, list):
        raise ModelError(f"{source}: field 'outputs' must be a list, got {raw!r}")
    outputs = []
    for i, item in enumerate(raw):
        role = item.get("role") if isinstance(item, dict) else None
        if role not in _ROLES:
            raise ModelError(
                f"{source}: outputs[{i}].role={role!r} is not 'probabilities' or 'embedding'"
            )
        outputs.append(_tensor(item, f"outputs[{i}]", source, role=role))
    roles = sorted(o.role for o in outputs)
    if roles != sorted(_ROLES):
        raise ModelError(
            f"{source}: outputs must have exactly one 'probabilities' and one 'embedding', "
            f"got roles {roles}"
        )
    return tuple(outputs)


def _thresholds(
    data: Mapping[str, Any], task: str, n_labels: int, source: str
) -> tuple[float, ...] | None:
    raw = data.get("thresholds")
    if raw is None:
        if task == "multi":
            raise ModelError(f"{source}: task='multi' needs 'thresholds' (one per label)")
        return None
    ok = isinstance(raw, list) and all(
        isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in raw
    )
    if not ok or len(raw) != n_labels or not all(0.0 <= t <= 1.0 for t in raw):
        raise ModelError(
            f"{source}: 'thresholds' must be {n_labels} numbers in [0, 1] (one per label), "
            f"got {raw!r}"
        )
    return tuple(float(t) for t in raw)


def _check_shapes(
    inp: TensorInfo,
    outputs: Sequence[TensorInfo],
    spec: dict[str, Any],
    n_labels: int,
    source: str,
) -> None:
    expected = (None, *FeatureSpec.from_dict(spec).input_shape)
    if len(inp.shape) != 4 or tuple(inp.shape[1:]) != expected[1:]:
        raise ModelError(
            f"{source}: input.shape={list(inp.shape)} does not match the FeatureSpec's "
            f"{list(expected)} (batch, n_features, frames_per_window, 1)"
        )
    for out in outputs:
        if len(out.shape) != 2:
            raise ModelError(f"{source}: output {out.name!r} shape {list(out.shape)} is not 2-D")
    probs = next(o for o in outputs if o.role == "probabilities")
    if probs.shape[1] is not None and probs.shape[1] != n_labels:
        raise ModelError(
            f"{source}: {n_labels} labels but output {probs.name!r} has {probs.shape[1]} columns"
        )
