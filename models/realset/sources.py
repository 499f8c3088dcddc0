"""The manifest of the real-recording set and fetching its Debian packages.

``manifest.json`` names, for every source package, the exact version, its licence and
whether it is reserved for **evaluation** (never train on it) or for **training**
(never evaluate on it); for every clip, its label, speaker and the package files it is
cut from, each with its SHA-256 so that a rebuilt set is bit-for-bit the same audio.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("manifest.json")


class RealSetError(RuntimeError):
    """The set cannot be built: a package is missing, a file changed, a tool failed."""


@dataclass(frozen=True, slots=True)
class Source:
    """One Debian package the set reads, with the role its audio is reserved for."""

    package: str
    version: str
    licence: str
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Part:
    """One file inside a source package (path relative to the extracted package root)."""

    source: str
    path: str
    sha256: str
    speaker: str = ""


@dataclass(frozen=True, slots=True)
class Item:
    """One clip of the set: the parts it is assembled from and what it holds.

    Attributes
    ----------
    id: file stem, unique in the set.
    task: ``scene``, ``conversation``, ``speaker-enroll``, ``speaker-test`` or ``instrument``.
    label: scene label, instrument label or ``speech`` for voices.
    speaker: the voice (``<package>-<language>``), empty for music.
    parts: files concatenated in order with ``gap_s`` of silence between them.
    start_s, duration_s: excerpt of a single long part (music); ``duration_s`` 0 keeps all.
    gap_s: silence between parts.
    turn_gap_s: silence where the part's speaker changes (conversations).
    """

    id: str
    task: str
    label: str
    speaker: str
    language: str
    parts: tuple[Part, ...]
    start_s: float = 0.0
    duration_s: float = 0.0
    gap_s: float = 0.0
    turn_gap_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Manifest:
    """The whole manifest: sources, reserved-for-training notes and items."""

    sources: dict[str, Source]
    items: tuple[Item, ...]
    training: tuple[dict[str, Any], ...]


def load_manifest(path: Path = MANIFEST) -> Manifest:
    """Read ``manifest.json`` (raises :class:`RealSetError` naming the file when unreadable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        sources = {name: Source(package=name, **s) for name, s in doc["sources"].items()}
        items = tuple(_item(raw) for raw in doc["items"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RealSetError(f"{path}: not a readable real-set manifest: {exc}") from exc
    unknown = {p.source for it in items for p in it.parts} - set(sources)
    if unknown:
        raise RealSetError(f"{path}: items use undeclared sources {sorted(unknown)}")
    return Manifest(sources, items, tuple(doc.get("reserved_for_training", [])))


def _item(raw: dict[str, Any]) -> Item:
    parts = tuple(Part(**p) for p in raw.pop("parts"))
    return Item(parts=parts, **raw)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_package(source: Source, cache: Path) -> Path:
    """Download and extract one package into ``cache/pkg/<package>`` (once).

    ``apt-get download NAME=VERSION`` needs no root and installs nothing;
    ``dpkg-deb -x`` unpacks the data. An archive that no longer serves the pinned
    version fails with the apt message: pin the new version and refresh the hashes
    (``python -m models.realset curate``).
    """
    root = cache / "pkg" / source.package
    stamp = root / ".extracted"
    if stamp.exists() and stamp.read_text() == source.version:
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", f"{source.package}={source.version}"], cwd=debs)
    except RealSetError as exc:
        raise RealSetError(
            f"{exc} (are the package lists current? run apt-get update once)"
        ) from exc
    deb = _deb_path(debs, source)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(root)], cwd=debs)
    stamp.write_text(source.version)
    return root


def _deb_path(debs: Path, source: Source) -> Path:
    upstream = source.version.split(":", 1)[-1]
    found = [p for p in debs.glob(f"{source.package}_*.deb") if upstream in p.name]
    if not found:
        raise RealSetError(
            f"apt-get download {source.package}={source.version} left no .deb in {debs}"
        )
    return found[0]


def _run(cmd: list[str], *, cwd: Path) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RealSetError(f"cannot run {cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        raise RealSetError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
