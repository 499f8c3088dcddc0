"""Instruments from recordings: Hydrogen's recorded drum kits and GCompris' phrases.

A Hydrogen kit is a folder of recorded hits (one file per drum and velocity layer)
described by ``drumkit.xml``; :func:`play_kit` sequences a groove from
:mod:`models.corpus.phrases` with a kit's kick, snare, hats, toms and cymbals.
GCompris' *instruments* activity holds a few seconds of each instrument played by a
person; :func:`excerpt` cuts a random stretch of one, slightly retuned.
"""

from __future__ import annotations

import functools
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.corpus.channel import resample
from models.corpus.phrases import Hit
from models.corpus.qtresource import read_resource
from models.corpus.synth import SR

# Instrument names → groove roles; the first pattern that matches wins.
_ROLE_PATTERNS = (
    ("open-hat", re.compile(r"(open|semi|\bop\b).*(hat|hh)|(hat|hh).*(open|semi|\bop\b)")),
    ("hat", re.compile(r"hat|\bhh\b|closed hh")),
    ("kick", re.compile(r"kick|bass ?drum")),
    ("snare", re.compile(r"snare")),
    ("tom", re.compile(r"tom")),
    ("crash", re.compile(r"crash|splash|china")),
    ("ride", re.compile(r"ride")),
)
_NEEDED = ("kick", "snare", "hat")
# GCompris recordings per tag (files of its instruments activity).
GCOMPRIS_FILES = {
    "piano": ("piano.ogg",),
    "organ": ("organ.ogg",),
    "guitar": ("guitar.ogg", "electric_guitar.ogg"),
    "violin": ("violin.ogg",),
    "trumpet": ("trumpet.ogg",),
    "flute": ("flute_traversiere.ogg",),
    "drums": ("drum_kit.ogg", "snare_drum.ogg"),
}


@dataclass(frozen=True, slots=True)
class Layer:
    """One recorded hit: the velocity range (0–1) it answers and its file."""

    low: float
    high: float
    path: Path


@dataclass(frozen=True, slots=True)
class Kit:
    """A recorded drum kit: per role, the instruments, each a list of velocity layers."""

    name: str
    roles: dict[str, tuple[tuple[Layer, ...], ...]]


def kits(drumkits: Path) -> list[Kit]:
    """Every kit under ``drumkits`` with a kick, a snare and a hi-hat (sorted by name)."""
    found = []
    for xml in sorted(drumkits.glob("*/drumkit.xml")):
        kit = _read_kit(xml)
        if all(kit.roles.get(role) for role in _NEEDED):
            found.append(kit)
    return found


def _read_kit(xml: Path) -> Kit:
    roles: dict[str, list[tuple[Layer, ...]]] = {}
    root = ET.parse(xml).getroot()  # a file of a pinned Debian package
    for inst in root.iter("instrument"):
        name = (inst.findtext("name") or "").lower()
        role = next((r for r, pattern in _ROLE_PATTERNS if pattern.search(name)), None)
        layers = tuple(
            Layer(
                float(layer.findtext("min") or 0.0),
                float(layer.findtext("max") or 1.0),
                xml.parent / (layer.findtext("filename") or ""),
            )
            for layer in inst.iter("layer")
            if (xml.parent / (layer.findtext("filename") or "")).is_file()
        )
        if role is not None and layers:
            roles.setdefault(role, []).append(layers)
    return Kit(xml.parent.name, {role: tuple(v) for role, v in roles.items()})


@functools.lru_cache(maxsize=512)
def _sample(path: Path) -> np.ndarray:
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(y.mean(axis=1), orig_sr=sr, target_sr=SR)


def play_kit(
    kit: Kit, hits: list[Hit], *, rng: np.random.Generator, duration_s: float
) -> np.ndarray:
    """The groove ``hits`` played on ``kit``: float32 mono at 16 kHz, ``duration_s`` long."""
    n = round(duration_s * SR)
    out = np.zeros(n + SR * 2, dtype=np.float32)
    fixed = {role: _pick(kit.roles[role], rng) for role in kit.roles}
    for t, role, velocity in hits:
        role = role if role in kit.roles else _fallback(role, kit)
        instrument = _pick(kit.roles[role], rng) if role == "tom" else fixed[role]
        v = velocity / 127.0
        layer = next((x for x in instrument if x.low <= v <= x.high), instrument[-1])
        hit = _sample(layer.path)[: out.size]
        at = int(t * SR)
        end = min(out.size, at + hit.size)
        out[at:end] += hit[: end - at] * np.float32(v**1.5)
    return out[:n]


def _pick(
    instruments: tuple[tuple[Layer, ...], ...], rng: np.random.Generator
) -> tuple[Layer, ...]:
    return instruments[int(rng.integers(len(instruments)))]


def _fallback(role: str, kit: Kit) -> str:
    """A kit without toms or cymbals plays that hit on what it has."""
    for other in {"tom": ("snare",), "crash": ("ride", "open-hat", "hat"),
                  "ride": ("hat",), "open-hat": ("hat",)}.get(role, ()):  # fmt: skip
        if other in kit.roles:
            return other
    return "snare"


@functools.lru_cache(maxsize=4)
def gcompris_recordings(rcc: Path) -> dict[str, np.ndarray]:
    """GCompris' instrument recordings by file name, mono float32 at 16 kHz."""
    files = read_resource(rcc)
    out = {}
    for path, blob in files.items():
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".ogg"):
            y, sr = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
            out[name] = resample(y.mean(axis=1), orig_sr=sr, target_sr=SR)
    return out


def excerpt(y: np.ndarray, *, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """A loud ``duration_s`` stretch of ``y`` (best of five draws), retuned by ±0.8 semitone."""
    ratio = 2.0 ** (float(rng.uniform(-0.8, 0.8)) / 12.0)
    shifted = resample(y, orig_sr=round(SR * ratio), target_sr=SR)
    n = round(duration_s * SR)
    if shifted.size <= n:
        return np.pad(shifted, (0, n - shifted.size)).astype(np.float32)
    starts = rng.integers(0, shifted.size - n, size=5)
    best = max(starts, key=lambda s: float(np.mean(np.square(shifted[s : s + n]))))
    return np.asarray(shifted[best : best + n], dtype=np.float32)
