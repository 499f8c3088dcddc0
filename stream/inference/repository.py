"""Where models live: ``<repo>/<name>/<version>/`` and how a reference picks one.

A reference is a model directory, ``name/version``, or ``name`` (the latest version
by natural sort: ``2 < 10``, ``1.2.0 < 1.10.0``, unless ``<repo>/<name>/DEFAULT``
names the version to serve), resolved against a repository. Why a ``DEFAULT`` file: a
new version can be published beside the served one, pinnable by ``name/version``,
before it has earned being the default. The
default repository is ``models/zoo`` in this checkout; command-line modules pass the
value of ``TYMPAN_MODEL_REPO`` (leaf modules never read the environment).
"""

from __future__ import annotations

import re
from pathlib import Path

import stream
from stream.errors import ModelError
from stream.inference.manifest import MANIFEST_FILE
from stream.roles import DEFAULT_MODELS, Role

REPO_ENV = "TYMPAN_MODEL_REPO"
DEFAULT_FILE = "DEFAULT"
"""A file in ``<repo>/<name>/`` whose one line names the version ``name`` resolves to."""


def default_repo() -> Path:
    """``models/zoo`` next to the ``stream`` package (this checkout's model zoo)."""
    return Path(stream.__file__).resolve().parents[1] / "models" / "zoo"


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural sort key: digit runs compare as numbers, so ``"10"`` sorts after ``"9"``."""
    parts = re.findall(r"\d+|[^\d]+", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST_FILE).is_file()


def list_versions(repo: Path, name: str) -> list[str]:
    """Versions of ``name`` in ``repo`` that hold a manifest, oldest first."""
    base = Path(repo) / name
    if not base.is_dir():
        return []
    found = [p.name for p in base.iterdir() if not p.name.startswith(".") and is_model_dir(p)]
    return sorted(found, key=version_key)


def list_models(repo: Path) -> dict[str, list[str]]:
    """Every ``name`` in ``repo`` with its versions (oldest first)."""
    repo = Path(repo)
    if not repo.is_dir():
        return {}
    names = sorted(p.name for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {n: v for n in names if (v := list_versions(repo, n))}


def resolve_model_dir(
    ref: str | Path | None, *, repo: Path | None = None, role: Role = Role.LABEL
) -> Path:
    """Turn a model reference into a model directory that holds ``manifest.json``.

    Parameters
    ----------
    ref:
        ``None`` (the latest version of ``role``'s default model in the repository,
        :data:`~stream.roles.DEFAULT_MODELS`), a path to a model
        directory, a path to a ``<name>`` directory (latest version), or ``name`` /
        ``name/version`` inside the repository.
    repo:
        The repository; default :func:`default_repo`.
    role:
        What the model is for; picks the default model when ``ref`` is ``None``.

    Raises
    ------
    ModelError
        Nothing matches; the message lists what was tried and what exists.
    """
    repo = Path(repo) if repo is not None else default_repo()
    if ref is None:
        role = Role.parse(role)  # a plain "scene" or "label" too
        name = DEFAULT_MODELS[role]
        return _latest(repo / name, f"default {role.name.lower()} model {name!r}", repo)
    path = Path(ref)
    tried = [path] if path.is_absolute() else [path, repo / path]
    for candidate in tried:
        if is_model_dir(candidate):
            return candidate
        if candidate.is_dir() and list_versions(candidate.parent, candidate.name):
            return _latest(candidate, f"model {str(ref)!r}", repo)
    raise ModelError(
        f"model {str(ref)!r}: no manifest.json in {', '.join(str(t) for t in tried)}; "
        f"repository {repo} has {_inventory(repo)}"
    )


def _latest(name_dir: Path, what: str, repo: Path) -> Path:
    versions = list_versions(name_dir.parent, name_dir.name)
    if not versions:
        raise ModelError(
            f"{what}: no versions under {name_dir} (repository {repo} has {_inventory(repo)}); "
            f"pass --model or set {REPO_ENV}"
        )
    return name_dir / (_pinned(name_dir, versions, what) or versions[-1])


def _pinned(name_dir: Path, versions: list[str], what: str) -> str | None:
    """The version ``name_dir/DEFAULT`` names, ``None`` without one; raises when it is
    not one of ``versions``."""
    marker = name_dir / DEFAULT_FILE
    if not marker.is_file():
        return None
    pinned = marker.read_text(encoding="utf-8").strip()
    if pinned not in versions:
        raise ModelError(
            f"{what}: {marker} names version {pinned!r}, but {name_dir} holds {versions}"
        )
    return pinned


def _inventory(repo: Path) -> str:
    models = list_models(repo)
    if not models:
        return "no models"
    return ", ".join(f"{n} ({', '.join(v)})" for n, v in models.items())
