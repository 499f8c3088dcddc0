"""The enrollment registry: who is enrolled, with which embeddings, from which model.

An embedding only means something to the model that made it, so a registry is
bound to one embedding model (``name`` + ``version`` + dimension) and refuses
embeddings, files and topic records from any other with a :class:`RegistryError`
that names both models. The open-set threshold (:mod:`.calibration`) is recomputed
on every change and stored with the registry.

On disk (``docs/speakers.md``) a registry is a directory with two files, written
atomically (temporary file + ``os.replace``), never pickled::

    registry.json     {"format": "tympan-speaker-registry", "format_version": 1,
                       "model": {"name", "version", "embedding_dim"},
                       "calibration": {"threshold", "method", "eer", ...},
                       "speakers": [{"name", "key", "windows", "updated_at"}, ...]}
    embeddings.npz    one float32 array [windows, embedding_dim] per speaker, under
                      its "key"; read with ``np.load(allow_pickle=False)``

:class:`SpeakerRegistry` is immutable: ``with_speaker``/``without`` return a new
registry, so a live worker can swap snapshots between batches without locks.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.errors import RegistryError
from stream.speakers.calibration import (
    DEFAULT_CALIBRATION,
    Calibration,
    CalibrationConfig,
    calibrate,
    unit,
)
from stream.speakers.scoring import DEFAULT_SCORING, UNKNOWN, ScoringConfig, SpeakerScorer
from stream.types import Float32

FORMAT = "tympan-speaker-registry"
FORMAT_VERSION = 1
INDEX_FILE = "registry.json"
EMBEDDINGS_FILE = "embeddings.npz"

_NAME = re.compile(r"^[\w][\w .'@+-]{0,63}$")


def utc_now() -> str:
    """ISO 8601 UTC timestamp with a ``Z`` suffix (seconds resolution)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_name(name: str) -> str:
    """Validate a speaker name: 1–64 characters, word characters first, not ``unknown``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(
            f"speaker name {name!r} is invalid: use 1-64 letters, digits, spaces or . ' @ + - _ "
            "starting with a letter or digit"
        )
    if name.lower() == UNKNOWN:
        raise RegistryError(f"speaker name {name!r} is reserved for unrecognized voices")
    return name


@dataclass(frozen=True, slots=True)
class ModelBinding:
    """The embedding model a registry belongs to."""

    name: str
    version: str
    embedding_dim: int

    def describe(self) -> str:
        return f"{self.name}/{self.version} ({self.embedding_dim}-d)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "embedding_dim": self.embedding_dim}


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One speaker: unit-length window embeddings ``[n, d]`` and when they were set."""

    name: str
    embeddings: Float32
    updated_at: str


@dataclass(frozen=True)
class SpeakerRegistry:
    """Enrolled speakers bound to one embedding model, plus the calibrated threshold.

    Build with :meth:`empty` and :meth:`with_speaker`; read with :func:`load_registry`.
    """

    model: ModelBinding
    speakers: Mapping[str, Enrollment] = field(default_factory=dict)
    calibration: Calibration = field(
        default_factory=lambda: calibrate({}, config=DEFAULT_CALIBRATION)
    )
    config: CalibrationConfig = DEFAULT_CALIBRATION

    @classmethod
    def empty(
        cls, model: ModelBinding, *, config: CalibrationConfig = DEFAULT_CALIBRATION
    ) -> SpeakerRegistry:
        """No speakers; ``config`` (e.g. :func:`~stream.speakers.calibration.config_for_model`)
        calibrates every registry derived from this one."""
        return cls(
            model=model,
            speakers=MappingProxyType({}),
            calibration=calibrate({}, config=config),
            config=config,
        )

    def __len__(self) -> int:
        return len(self.speakers)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.speakers))

    def __contains__(self, name: object) -> bool:
        return name in self.speakers

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def check_model(self, model: ModelBinding, *, source: str = "embeddings") -> None:
        """Refuse anything made by another embedding model than this registry's."""
        if model != self.model:
            raise RegistryError(
                f"{source} come from embedding model {model.describe()} but the registry is "
                f"bound to {self.model.describe()}; re-enroll the speakers with "
                f"{model.name}/{model.version} in a new registry"
            )

    def with_speaker(
        self,
        name: str,
        embeddings: npt.ArrayLike,
        *,
        model: ModelBinding,
        updated_at: str | None = None,
        config: CalibrationConfig | None = None,
    ) -> SpeakerRegistry:
        """A registry where ``name`` has exactly ``embeddings`` (replacing any before),
        calibrated with ``config`` (default: this registry's)."""
        check_name(name)
        self.check_model(model, source=f"embeddings for {name!r}")
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] != self.model.embedding_dim:
            raise RegistryError(
                f"embeddings for {name!r} have shape {emb.shape}; expected "
                f"[n >= 1, {self.model.embedding_dim}]"
            )
        if not np.all(np.isfinite(emb)):
            raise RegistryError(f"embeddings for {name!r} contain NaN or Inf")
        entry = Enrollment(name, unit(emb), updated_at or utc_now())
        return self._with({**self.speakers, name: entry}, config)

    def without(self, name: str, *, config: CalibrationConfig | None = None) -> SpeakerRegistry:
        """A registry without ``name``; :class:`RegistryError` when it is not enrolled."""
        if name not in self.speakers:
            known = ", ".join(sorted(self.speakers)) or "none"
            raise RegistryError(f"speaker {name!r} is not enrolled (enrolled: {known})")
        rest = {k: v for k, v in self.speakers.items() if k != name}
        return self._with(rest, config)

    def _with(
        self, speakers: Mapping[str, Enrollment], config: CalibrationConfig | None
    ) -> SpeakerRegistry:
        by = {k: v.embeddings for k, v in speakers.items()}
        chosen = self.config if config is None else config
        return SpeakerRegistry(
            model=self.model,
            speakers=MappingProxyType(dict(speakers)),
            calibration=calibrate(by, config=chosen),
            config=chosen,
        )

    def by_speaker(self) -> dict[str, Float32]:
        """Name → window embeddings ``[n, d]``."""
        return {k: v.embeddings for k, v in self.speakers.items()}

    def scorer(
        self, *, config: ScoringConfig = DEFAULT_SCORING, threshold: float | None = None
    ) -> SpeakerScorer:
        """A :class:`SpeakerScorer` over this snapshot (the calibrated threshold by default)."""
        return SpeakerScorer(
            self.by_speaker(),
            threshold=self.threshold if threshold is None else threshold,
            config=config,
        )


# -- files --------------------------------------------------------------------------------


def load_registry(
    path: Path | str,
    *,
    model: ModelBinding | None = None,
    config: CalibrationConfig = DEFAULT_CALIBRATION,
) -> SpeakerRegistry:
    """Read a registry directory; an absent directory is an empty registry for ``model``.
    ``config`` calibrates the threshold (the embedding model's,
    :func:`~stream.speakers.calibration.config_for_model`).

    Raises
    ------
    RegistryError
        A file that is unreadable, not the documented format, inconsistent between
        ``registry.json`` and ``embeddings.npz``, or bound to another model than
        ``model``. The message names the file.
    """
    root = Path(path)
    index = root / INDEX_FILE
    if not index.exists():
        if model is None:
            raise RegistryError(f"{index}: no registry here and no model to start one for")
        return SpeakerRegistry.empty(model, config=config)
    data = _read_index(index)
    bound = _binding(data, index)
    registry = _read_embeddings(root / EMBEDDINGS_FILE, data, bound, index, config)
    if model is not None:
        registry.check_model(model, source=f"the worker's model (registry {index})")
    return registry


def _read_index(index: Path) -> dict[str, Any]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{index}: cannot read speaker registry: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RegistryError(f"{index}: not a tympan speaker registry (missing format={FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise RegistryError(
            f"{index}: format_version={data.get('format_version')!r} is not supported "
            f"(this tympan reads {FORMAT_VERSION})"
        )
    if not isinstance(data.get("speakers"), list):
        raise RegistryError(f"{index}: field 'speakers' must be a list")
    return data


def _binding(data: Mapping[str, Any], index: Path) -> ModelBinding:
    raw = data.get("model")
    try:
        assert isinstance(raw, dict)
        binding = ModelBinding(str(raw["name"]), str(raw["version"]), int(raw["embedding_dim"]))
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise RegistryError(
            f"{index}: field 'model' must be {{name, version, embedding_dim}}, got {raw!r}"
        ) from exc
    return binding


def _read_embeddings(
    npz: Path,
    data: Mapping[str, Any],
    model: ModelBinding,
    index: Path,
    config: CalibrationConfig,
) -> SpeakerRegistry:
    speakers: dict[str, Enrollment] = {}
    entries = data["speakers"]
    if entries and not npz.is_file():
        raise RegistryError(f"{npz}: missing, but {index} lists {len(entries)} speaker(s)")
    try:
        arrays = _load_npz(npz) if entries else {}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise RegistryError(f"{npz}: cannot read speaker embeddings: {exc}") from exc
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise RegistryError(f"{index}: speakers[{i}] must be an object with a 'key'")
        name = str(entry.get("name"))
        emb = arrays.get(entry["key"])
        if emb is None or emb.ndim != 2 or emb.shape[1] != model.embedding_dim or not len(emb):
            raise RegistryError(
                f"{npz}: embeddings of speaker {name!r} (key {entry['key']!r}) are missing or "
                f"not [n, {model.embedding_dim}]"
            )
        speakers[check_name(name)] = Enrollment(
            name, unit(emb.astype(np.float32)), str(entry.get("updated_at", ""))
        )
    calibration = calibrate({k: v.embeddings for k, v in speakers.items()}, config=config)
    return SpeakerRegistry(model, MappingProxyType(speakers), calibration, config)


def _load_npz(npz: Path) -> dict[str, Float32]:
    with np.load(npz, allow_pickle=False) as data:
        return {key: np.asarray(data[key]) for key in data.files}


def save_registry(registry: SpeakerRegistry, path: Path | str) -> Path:
    """Write ``registry.json`` + ``embeddings.npz`` atomically into directory ``path``."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    names = sorted(registry.speakers)
    keys = {name: f"s{i}" for i, name in enumerate(names)}
    arrays = {keys[n]: registry.speakers[n].embeddings for n in names}
    index = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": registry.model.to_dict(),
        "calibration": registry.calibration.to_dict(),
        "speakers": [
            {
                "name": n,
                "key": keys[n],
                "windows": int(registry.speakers[n].embeddings.shape[0]),
                "updated_at": registry.speakers[n].updated_at,
            }
            for n in names
        ],
    }
    _atomic_write(root / EMBEDDINGS_FILE, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
    text = json.dumps(index, indent=2) + "\n"
    _atomic_write(root / INDEX_FILE, lambda fh: fh.write(text.encode()))
    return root


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
