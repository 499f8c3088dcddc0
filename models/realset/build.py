"""Assemble the real-recording set from the fetched packages into evaluation folders.

Layout under ``OUT`` (default ``~/.cache/tympan/realset/set``), one tree per rate:
``16k/`` holds 16 kHz PCM, ``8k-ulaw/`` the same clips at 8 kHz G.711 μ-law (what a
telephone line delivers; the tools resample it back as the worker does)::

    <rate>/scene/<label>/<id>.wav          tympan evaluate scene <rate>/scene
    <rate>/conversation/<id>.wav           + <id>.turns.json (speech turns, seconds)
    <rate>/speakers/enroll/<speaker>/*.wav tympan speakers evaluate <rate>/speakers
    <rate>/speakers/test/<speaker>/*.wav
    16k/instruments/labels.csv + *.wav      tympan evaluate instruments 16k/instruments
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from models.realset.sources import Item, Manifest, RealSetError, fetch_package, sha256_file
from stream.audio.g711 import mulaw_decode, mulaw_encode
from stream.audio.resample import resample
from stream.types import Float32

SR = 16_000
PHONE_SR = 8_000
RATES = ("16k", "8k-ulaw")


def default_cache() -> Path:
    """``~/.cache/tympan/realset``: packages, extracted trees and the built set."""
    return Path.home() / ".cache" / "tympan" / "realset"


def build(manifest: Manifest, cache: Path, out: Path) -> dict[str, int]:
    """Fetch the packages, check every part's hash and write every clip; counts by task."""
    roots = {name: fetch_package(src, cache) for name, src in manifest.sources.items()}
    counts: dict[str, int] = {}
    instrument_rows: list[tuple[str, str]] = []
    for item in manifest.items:
        audio, turns = assemble(item, roots)
        for rate in RATES:
            if item.task == "instrument" and rate != "16k":
                continue
            path = out / rate / _relative(item)
            write_clip(path, audio, phone=rate == "8k-ulaw")
            if turns:
                path.with_suffix(".turns.json").write_text(json.dumps(turns))
        if item.task == "instrument":
            instrument_rows.append((f"{item.id}.wav", item.label))
        counts[item.task] = counts.get(item.task, 0) + 1
    labels = out / "16k" / "instruments" / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "tags"])
        writer.writerows(instrument_rows)
    return counts


def _relative(item: Item) -> Path:
    if item.task == "scene":
        return Path("scene") / item.label / f"{item.id}.wav"
    if item.task == "conversation":
        return Path("conversation") / f"{item.id}.wav"
    if item.task in ("speaker-enroll", "speaker-test"):
        role = item.task.removeprefix("speaker-")
        return Path("speakers") / role / item.speaker / f"{item.id}.wav"
    if item.task == "instrument":
        return Path("instruments") / f"{item.id}.wav"
    raise RealSetError(f"item {item.id!r}: unknown task {item.task!r}")


def assemble(item: Item, roots: dict[str, Path]) -> tuple[Float32, list[list[float]]]:
    """The clip's 16 kHz samples and, for conversations, its speech turns in seconds."""
    pieces: list[Float32] = []
    turns: list[list[float]] = []
    at = 0
    previous = None
    for k, part in enumerate(item.parts):
        if k:
            gap = item.turn_gap_s if part.speaker != previous and item.turn_gap_s else item.gap_s
            pieces.append(np.zeros(round(gap * SR), np.float32))
            at += pieces[-1].size
        y = decode(roots[part.source] / part.path, expected_sha=part.sha256)
        if part.speaker and part.speaker == previous:
            turns[-1][1] = (at + y.size) / SR
        elif part.speaker:
            turns.append([at / SR, (at + y.size) / SR])
        previous = part.speaker
        pieces.append(y)
        at += y.size
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return _excerpt(audio, item), turns


def _excerpt(audio: Float32, item: Item) -> Float32:
    if item.duration_s <= 0:
        return audio
    n = round(item.duration_s * SR)
    start = min(round(item.start_s * SR), max(0, audio.size - n))
    return audio[start : start + n]


def decode(path: Path, *, expected_sha: str) -> Float32:
    """A package file as 16 kHz mono float32 (ffmpeg), after checking its SHA-256."""
    if not path.is_file():
        raise RealSetError(f"{path}: missing from the extracted package")
    sha = sha256_file(path)
    if sha != expected_sha:
        raise RealSetError(f"{path}: SHA-256 {sha} is not the manifest's {expected_sha}")
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SR), "-"]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        raise RealSetError(f"ffmpeg cannot decode {path}: {done.stderr.decode(errors='replace')}")
    return np.frombuffer(done.stdout, dtype=np.float32).copy()


def write_clip(path: Path, audio: Float32, *, phone: bool) -> None:
    """16 kHz PCM, or 8 kHz μ-law (band-limited, companded) for the telephone tree."""
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    y = audio / peak * 0.9 if peak > 1.0 else audio
    if not phone:
        sf.write(path, y, SR, subtype="PCM_16")
        return
    narrow = resample(y, SR, PHONE_SR)
    pcm = np.clip(np.round(narrow * 32767.0), -32768, 32767).astype(np.int16)
    companded = mulaw_decode(mulaw_encode(pcm)).astype(np.float32) / 32768.0
    sf.write(path, companded, PHONE_SR, subtype="ULAW")
