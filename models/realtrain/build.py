"""Cut the training packages' recordings into scene clips, with a manifest.

Speech clips string one voice's recorded words (or phrases) together with pauses drawn at random
(:class:`ClipSettings`: 0.05–0.6 s by default, as people pause between words and turns,
optionally under a room's noise floor); music clips are 6 s excerpts spread over each
track. Every clip is 16 kHz mono 16-bit WAV under
``<cache>/scene/<label>/``. The split into training and validation is by voice and by
track (seeded), so validation measures voices and pieces the model never heard.

``manifest.json`` beside the clips lists every source file (package, version, path,
SHA-256, licence, label) and every clip (its parts, group and split).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from models.augment import noise_floor
from models.datasets import Clip, Split
from models.realset.sources import (
    RealSetError,
    Source,
    fetch_package,
    load_manifest,
    sha256_file,
)
from models.realtrain.sources import SOURCES, TrainSource, check_disjoint
from stream.audio.files import AUDIO_SUFFIXES, load_audio

SR = 16000
WORDS_PER_CLIP = (4, 8)
PAUSE_S = (0.05, 0.6)
EXCERPT_S = 6.0
EXCERPTS_PER_TRACK = 6
VAL_VOICES = 3
VAL_TRACK_FRACTION = 0.15


@dataclass(frozen=True, slots=True)
class ClipSettings:
    """How speech clips are strung together; the default is what scene/3 trained on.

    Attributes
    ----------
    pauses_s: range of the pause drawn between two words or phrases.
    floor_below_db: lay a room's noise floor (:func:`models.augment.noise_floor`:
        rumble, mains hum or pink noise) this far under the clip's active level, drawn
        per clip, or ``None`` for digital silence between words. Why: a voice recorded
        in a room never pauses into digital silence; when its pauses run up to a second,
        a window can hold little but that floor, and it is still the speaker's turn.
    """

    pauses_s: tuple[float, float] = PAUSE_S
    floor_below_db: tuple[float, float] | None = None

    @property
    def tag(self) -> str:
        """``""`` for the default settings, else a suffix naming the clips folder and manifest."""
        if self == ClipSettings():
            return ""
        floor = (
            "" if self.floor_below_db is None else "-floor{:g}-{:g}".format(*self.floor_below_db)
        )
        return "-pauses{:g}-{:g}{}".format(*self.pauses_s, floor)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One audio file of a package: where it is and what it holds."""

    package: str
    version: str
    licence: str
    label: str
    path: str
    group: str
    local: Path
    passes: int = 1


def default_cache() -> Path:
    """``~/.cache/tympan/realtrain``."""
    return Path.home() / ".cache" / "tympan" / "realtrain"


def manifest_path(cache: Path, settings: ClipSettings | None = None) -> Path:
    """``<cache>/manifest<tag>.json``: the manifest of clips cut with ``settings``."""
    return cache / f"manifest{(settings or ClipSettings()).tag}.json"


def build(cache: Path, *, seed: int = 0, settings: ClipSettings | None = None) -> dict[str, Any]:
    """Fetch, check, cut and write the clips; returns the manifest (also written).

    Clips cut with other than the default ``settings`` go to ``<cache>/scene<tag>/``
    with their own manifest (:func:`manifest_path`), so each recipe's clips stay.

    Raises
    ------
    RealSetError
        A source is reserved for evaluation, or a package cannot be fetched.
    """
    check_disjoint(SOURCES, load_manifest())
    files = [f for source in SOURCES for f in _source_files(source, cache)]
    settings = settings or ClipSettings()
    rng = np.random.default_rng(seed)
    out = cache / f"scene{settings.tag}"
    clips = _speech_clips(files, out, rng, settings) + _music_clips(files, out, rng)
    doc = {
        "about": "Real recordings the scene classifier trains on (python -m models.realtrain)",
        "seed": seed,
        "clip_settings": {
            "pauses_s": list(settings.pauses_s),
            "floor_below_db": None
            if settings.floor_below_db is None
            else list(settings.floor_below_db),
        },
        "sources": {
            s.package: {
                "version": s.version,
                "licence": s.licence,
                "label": s.label,
                "content": s.content,
            }
            for s in SOURCES
        },
        "files": [
            {
                "package": f.package,
                "version": f.version,
                "path": f.path,
                "sha256": sha256_file(f.local),
                "licence": f.licence,
                "label": f.label,
                "group": f.group,
            }
            for f in files
        ],
        "clips": clips,
    }
    manifest_path(cache, settings).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


def _source_files(source: TrainSource, cache: Path) -> list[SourceFile]:
    root = fetch_package(
        Source(source.package, source.version, source.licence, "training", source.content),
        cache,
    )
    if source.archive:
        _extract(root / source.archive, root, tuple(g.split("*")[0] for _, g in source.groups))
    out = []
    seen: set[str] = set()
    for name, pattern in source.groups:
        paths = [p for p in sorted(root.glob(pattern)) if p.suffix.lower() in AUDIO_SUFFIXES]
        if source.max_per_group and len(paths) > source.max_per_group:
            pick = np.random.default_rng(zlib.crc32(pattern.encode()))
            chosen = pick.choice(len(paths), source.max_per_group, replace=False)
            paths = [paths[i] for i in sorted(chosen)]
        for path in paths:
            digest = sha256_file(path)
            if digest in seen or not path.is_file():  # the same recording under two names
                continue
            seen.add(digest)
            group = name or path.stem
            out.append(
                SourceFile(
                    source.package,
                    source.version,
                    source.licence,
                    source.label,
                    str(path.relative_to(root)),
                    f"{source.package}:{group}",
                    path,
                    source.passes,
                )
            )
    return out


def _extract(archive: Path, root: Path, folders: tuple[str, ...]) -> None:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.startswith(folders) and not name.endswith("/"):
                target = root / name
                if not target.exists():
                    zf.extract(name, root)


def _split(groups: list[str], n_val: int, rng: np.random.Generator) -> set[str]:
    ordered = sorted(set(groups))
    return {ordered[i] for i in rng.permutation(len(ordered))[:n_val]}


def _speech_clips(
    files: list[SourceFile], out: Path, rng: np.random.Generator, settings: ClipSettings
) -> list[dict]:
    by_voice: dict[str, list[SourceFile]] = {}
    for f in files:
        if f.label == "speech":
            by_voice.setdefault(f.group, []).append(f)
    val = _split(list(by_voice), VAL_VOICES, rng)
    clips = []
    for voice, words in sorted(by_voice.items()):
        audio = [load_audio(w.local, sr=SR)[0] for w in words]
        passes = words[0].passes
        order = np.concatenate([rng.permutation(len(words)) for _ in range(passes)])
        start = 0
        while start < len(order):
            n = int(rng.integers(WORDS_PER_CLIP[0], WORDS_PER_CLIP[1] + 1))
            chosen = order[start : start + n]
            start += n
            pieces = [_silence(rng.uniform(0.0, 0.3))]
            for i in chosen:
                pieces += [audio[i], _silence(rng.uniform(*settings.pauses_s))]
            y = np.concatenate(pieces)
            if settings.floor_below_db is not None:
                below = float(rng.uniform(*settings.floor_below_db))
                y = noise_floor(y, SR, rng, below_db=below)
            clip_id = f"{voice.replace(':', '-')}-{len(clips):04d}"
            _write(out / "speech" / f"{clip_id}.wav", y)
            clips.append(
                {
                    "id": clip_id,
                    "label": "speech",
                    "group": voice,
                    "split": "val" if voice in val else "train",
                    "parts": [words[i].path for i in chosen],
                }
            )
    return clips


def _music_clips(files: list[SourceFile], out: Path, rng: np.random.Generator) -> list[dict]:
    tracks = [f for f in files if f.label == "music"]
    val = _split([t.group for t in tracks], round(VAL_TRACK_FRACTION * len(tracks)), rng)
    clips = []
    n = int(EXCERPT_S * SR)
    for track in tracks:
        y = load_audio(track.local, sr=SR)[0]
        if y.size < n:
            continue
        starts = np.linspace(0, y.size - n, num=min(EXCERPTS_PER_TRACK, y.size // n))
        for k, s in enumerate(starts.astype(int)):
            excerpt = y[s : s + n]
            if float(np.max(np.abs(excerpt))) < 1e-3:  # a silent stretch is not music
                continue
            clip_id = f"{track.group.replace(':', '-')}-{k}"
            _write(out / "music" / f"{clip_id}.wav", excerpt)
            clips.append(
                {
                    "id": clip_id,
                    "label": "music",
                    "group": track.group,
                    "split": "val" if track.group in val else "train",
                    "parts": [track.path],
                    "start_s": round(s / SR, 3),
                    "duration_s": EXCERPT_S,
                }
            )
    return clips


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def _write(path: Path, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(y))) or 1.0
    sf.write(path, y / max(peak, 1.0), SR, subtype="PCM_16")


def scene_split(cache: Path | None = None, settings: ClipSettings | None = None) -> Split:
    """The clips built with ``settings`` as a training/validation split (no test: the
    real set tests).

    Raises
    ------
    RealSetError
        The clips were not built (``python -m models.realtrain build``).
    """
    cache = cache or default_cache()
    settings = settings or ClipSettings()
    manifest = manifest_path(cache, settings)
    if not manifest.is_file():
        raise RealSetError(f"{manifest} is missing: run python -m models.realtrain build")
    clips = json.loads(manifest.read_text(encoding="utf-8"))["clips"]
    folder = cache / f"scene{settings.tag}"

    def listed(split: str) -> tuple[Clip, ...]:
        return tuple(
            Clip(folder / c["label"] / f"{c['id']}.wav", (c["label"],))
            for c in clips
            if c["split"] == split
        )

    return Split(listed("train"), listed("val"), ())
