"""Music composed with a seed, written as Standard MIDI and rendered with fluidsynth.

A :class:`Piece` is a tempo, a key and one :class:`Part` per instrument; each
instrument plays a role that fits it (bass plays roots, organ holds chords,
guitar arpeggiates, violin/trumpet/flute carry the melody, drums keep time), so
mixtures sound like music rather than random notes.  The MIDI writer is the
~60-line subset of the Standard MIDI File format (format 1) that fluidsynth
needs; no MIDI library is required.

Rendering uses the FluidR3 General MIDI soundfont (``fluid-soundfont-gm``);
without fluidsynth, :func:`hold_music` falls back to :func:`synth.hold_music`.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.corpus import synth
from models.corpus.channel import resample
from models.corpus.synth import SR
from models.corpus.tools import has_tool, run_tool
from stream.errors import ToolError

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

# General MIDI program numbers (0-based); drums are channel 10 (index 9), no program.
GM_PROGRAMS = {
    "piano": 0, "organ": 19, "guitar": 24, "bass": 33,
    "violin": 40, "trumpet": 56, "flute": 73,
}  # fmt: skip
INSTRUMENTS = (*GM_PROGRAMS, "drums")
DRUM_CHANNEL = 9
TICKS_PER_BEAT = 480

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_RANGES = {"violin": (62, 86), "trumpet": (58, 79), "flute": (67, 91), "piano": (64, 84)}


@dataclass(frozen=True, slots=True)
class Note:
    """One note: start and length in beats, MIDI pitch, velocity 1–127."""

    start_beats: float
    duration_beats: float
    pitch: int
    velocity: int = 90


@dataclass(frozen=True, slots=True)
class Part:
    """All notes one instrument plays."""

    instrument: str
    notes: tuple[Note, ...]


@dataclass(frozen=True, slots=True)
class Piece:
    """A short composition: tempo, key (MIDI root pitch, mode) and parts."""

    tempo_bpm: float
    key_root: int
    mode: str
    parts: tuple[Part, ...]

    @property
    def instruments(self) -> tuple[str, ...]:
        """Instrument names in part order (the multi-label tags)."""
        return tuple(p.instrument for p in self.parts)


# --- composing ---------------------------------------------------------------------------


def compose(instruments: Sequence[str], *, rng: np.random.Generator, duration_s: float) -> Piece:
    """A random piece for ``instruments`` lasting at least ``duration_s`` seconds.

    Tempo 70–140 bpm, random key, major or minor, a four-chord progression
    repeated; each instrument gets a part suited to it.
    """
    unknown = [i for i in instruments if i not in INSTRUMENTS]
    if unknown:
        raise ValueError(f"instruments {unknown} are not among {list(INSTRUMENTS)}")
    tempo = float(rng.uniform(70, 140))
    mode = "major" if rng.random() < 0.6 else "minor"
    scale = _MAJOR if mode == "major" else _MINOR
    root = int(rng.integers(0, 12))
    progressions = ([0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4], [5, 3, 0, 4])
    progression = progressions[int(rng.integers(len(progressions)))]
    n_bars = int(np.ceil(duration_s * tempo / 60.0 / 4.0)) + 1
    chords = [progression[b % 4] for b in range(n_bars)]
    parts = []
    for name in instruments:
        notes = _ROLES[_role(name)](name, chords, scale, root, rng)
        parts.append(Part(name, tuple(notes)))
    return Piece(tempo, root, mode, tuple(parts))


def _role(name: str) -> str:
    if name in ("violin", "trumpet", "flute"):
        return "melody"
    return name if name in ("bass", "organ", "guitar", "drums", "piano") else "melody"


def _degree_pitch(scale: Sequence[int], root: int, degree: int, base: int) -> int:
    octave, step = divmod(degree, 7)
    return base + root + scale[step] + 12 * octave


def _triad(scale: Sequence[int], root: int, degree: int, base: int) -> list[int]:
    return [_degree_pitch(scale, root, degree + k, base) for k in (0, 2, 4)]


def _bass(
    _: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    notes = []
    for bar, degree in enumerate(chords):
        for beat in range(4):
            d = degree + (4 if beat == 2 and rng.random() < 0.5 else 0)
            notes.append(Note(bar * 4 + beat, 0.9, _degree_pitch(scale, root, d, 36), 95))
    return notes


def _organ(
    _: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    return [
        Note(bar * 4, 3.95, p, 70)
        for bar, d in enumerate(chords)
        for p in _triad(scale, root, d, 55)
    ]


def _guitar(
    _: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    notes = []
    pattern = (0, 1, 2, 1, 0, 2, 1, 2) if rng.random() < 0.5 else (0, 1, 2, 3, 2, 1, 0, 1)
    for bar, degree in enumerate(chords):
        triad = [*_triad(scale, root, degree, 52), _degree_pitch(scale, root, degree + 7, 52)]
        for k, idx in enumerate(pattern):
            notes.append(Note(bar * 4 + k * 0.5, 0.6, triad[idx], 80))
    return notes


def _melody(
    name: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    low, high = _RANGES.get(name, (60, 84))
    pool = [p for p in range(low, high + 1) if (p - root) % 12 in scale]
    idx = len(pool) // 2
    notes, t = [], 0.0
    end = 4.0 * len(chords)
    while t < end:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(pool) - 1))
        if rng.random() > 0.1:  # an occasional rest
            notes.append(Note(t, length * 0.95, pool[idx], int(rng.integers(70, 110))))
        t += length
    return notes


def _piano(
    name: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    notes = [
        Note(bar * 4 + half * 2, 1.9, p, 65)
        for bar, d in enumerate(chords)
        for half in (0, 1)
        for p in _triad(scale, root, d, 48)
    ]
    return notes + _melody(name, chords, scale, root, rng)


def _drums(
    _: str, chords: list[int], scale: Sequence[int], root: int, rng: np.random.Generator
) -> list[Note]:
    notes = []
    for bar in range(len(chords)):
        for eighth in range(8):
            t = bar * 4 + eighth * 0.5
            notes.append(Note(t, 0.25, 42, 60))  # closed hi-hat
            if eighth in (0, 4) or (eighth == 5 and rng.random() < 0.3):
                notes.append(Note(t, 0.25, 36, 110))  # kick
            if eighth in (2, 6):
                notes.append(Note(t, 0.25, 38, 100))  # snare
    return notes


_ROLES = {
    "bass": _bass,
    "organ": _organ,
    "guitar": _guitar,
    "melody": _melody,
    "piano": _piano,
    "drums": _drums,
}


# --- Standard MIDI File writer -----------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, high bit = more follows."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
    """Encode (tick, order, message) events as an ``MTrk`` chunk (delta times)."""
    body, now = b"", 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - now) + msg
        now = tick
    body += _vlq(0) + b"\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi_bytes(piece: Piece) -> bytes:
    """The piece as a format-1 Standard MIDI File (tempo track + one track per part)."""
    us_per_beat = round(60_000_000 / piece.tempo_bpm)
    tracks = [_track([(0, 0, b"\xff\x51\x03" + us_per_beat.to_bytes(3, "big"))])]
    melodic = iter(c for c in range(16) if c != DRUM_CHANNEL)
    for part in piece.parts:
        ch = DRUM_CHANNEL if part.instrument == "drums" else next(melodic)
        events: list[tuple[int, int, bytes]] = []
        if ch != DRUM_CHANNEL:
            events.append((0, 0, bytes([0xC0 | ch, GM_PROGRAMS[part.instrument]])))
        for n in part.notes:
            on = round(n.start_beats * TICKS_PER_BEAT)
            off = on + max(1, round(n.duration_beats * TICKS_PER_BEAT))
            pitch = int(np.clip(n.pitch, 0, 127))
            events.append((on, 2, bytes([0x90 | ch, pitch, int(np.clip(n.velocity, 1, 127))])))
            events.append((off, 1, bytes([0x80 | ch, pitch, 0])))
        tracks.append(_track(events))
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), TICKS_PER_BEAT)
    return header + b"".join(tracks)


def write_midi(piece: Piece, path: Path) -> Path:
    """Write :func:`midi_bytes` to ``path``."""
    path.write_bytes(midi_bytes(piece))
    return path


# --- rendering --------------------------------------------------------------------------


def render(piece: Piece, *, duration_s: float, sr: int = SR, gain: float = 0.8) -> np.ndarray:
    """Render ``piece`` with fluidsynth; float32 mono at ``sr``, exactly ``duration_s`` long.

    Raises
    ------
    ToolError
        fluidsynth or the FluidR3 soundfont is missing (names the setup script).
    """
    if not SOUNDFONT.is_file():
        raise ToolError(
            f"soundfont {SOUNDFONT} is missing; install it with "
            "scripts/setup-system.sh (package fluid-soundfont-gm)"
        )
    with tempfile.TemporaryDirectory(prefix="tympan-music-") as tmp:
        mid = write_midi(piece, Path(tmp) / "piece.mid")
        wav = Path(tmp) / "piece.wav"
        render_sr = sr if sr >= 16000 else 16000  # fluidsynth's floor is 8 kHz; keep quality
        run_tool(["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(render_sr),
                  "-g", f"{gain}", str(SOUNDFONT), str(mid)])  # fmt: skip
        y, file_sr = sf.read(wav, dtype="float32", always_2d=True)
    y = resample(y.mean(axis=1), orig_sr=file_sr, target_sr=sr)
    return synth.fade(synth.fit_length(y, synth.n_samples(duration_s, sr)), sr=sr, fade_s=0.02)


def hold_music(
    duration_s: float,
    *,
    rng: np.random.Generator,
    sr: int = SR,
    instruments: Sequence[str] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Hold music: solo piano/strings/guitar/organ/flute or a small ensemble.

    Falls back to the numpy synthesizer when fluidsynth is not installed, so
    the ``music`` class never silently disappears; the returned tags say which
    (``("synth",)`` for the fallback).
    """
    if instruments is None:
        choices = (
            ("piano",),
            ("violin",),
            ("guitar",),
            ("organ",),
            ("flute",),
            ("piano", "bass"),
            ("guitar", "flute"),
            ("violin", "piano"),
            ("organ", "bass", "drums"),
            ("trumpet", "bass", "drums"),
        )
        instruments = choices[int(rng.integers(len(choices)))]
    if not has_tool("fluidsynth") or not SOUNDFONT.is_file():
        return synth.hold_music(duration_s, rng=rng, sr=sr), ("synth",)
    piece = compose(instruments, rng=rng, duration_s=duration_s)
    return render(piece, duration_s=duration_s, sr=sr), piece.instruments
