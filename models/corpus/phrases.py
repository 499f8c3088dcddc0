"""Solo phrases as real players play them: what one instrument does in a few seconds.

A phrase is a list of :class:`~models.corpus.music.Note` timed in **seconds** (the
MIDI writer runs at 60 bpm, so a beat is a second). Each instrument gets the
articulations it is recorded with — held single notes (the one-shot samples of
sample libraries), staccato, scales, arpeggios, block or strummed chords, double
stops, melodies — over a register drawn inside its real range and a dynamic level
from pianissimo to fortissimo. Drums get a groove (rock, half-time, breakbeat,
sixteenths, ride swing) with ghost notes, crashes and tom fills, as hits that a
soundfont's drum kit or a recorded kit can play.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.corpus.music import Note

LABELS = ("bass", "drums", "flute", "guitar", "organ", "piano", "trumpet", "violin")
MELODIC = tuple(label for label in LABELS if label != "drums")

# General MIDI programs (0-based) that are each instrument, as recorded: pianos and
# electric pianos, drawbar/percussive/rock/church/reed organs, nylon/steel/jazz/clean/
# muted/overdriven guitars, acoustic/finger/pick/fretless/slap basses, violin and
# fiddle, open and muted trumpet, flute and piccolo (repeats weight the common ones).
PROGRAMS = {
    "piano": (0, 0, 1, 2, 4, 5),
    "organ": (16, 17, 18, 19, 19, 20),
    "guitar": (24, 24, 25, 25, 26, 27, 28, 29, 30),
    "bass": (32, 33, 33, 34, 35, 36, 37),
    "violin": (40, 40, 40, 110),
    "trumpet": (56, 56, 56, 59),
    "flute": (73, 73, 73, 72),
}
RANGES = {
    "piano": (21, 103),
    "organ": (24, 96),
    "guitar": (40, 84),
    "bass": (28, 60),
    "violin": (55, 96),
    "trumpet": (52, 84),
    "flute": (60, 96),
}
STYLES = {
    "piano": ("held", "melody", "scale", "arpeggio", "chords", "hands", "hands"),
    "organ": ("held", "melody", "chords", "hands", "hands"),
    "guitar": ("held", "arpeggio", "chords", "melody", "scale", "strum", "strum", "strum"),
    "bass": ("held", "melody", "staccato", "scale"),
    "violin": ("held", "melody", "scale", "double", "staccato"),
    "trumpet": ("held", "melody", "staccato", "scale"),
    "flute": ("held", "melody", "scale", "staccato"),
}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
Hit = tuple[float, str, int]
"""A drum hit: time in seconds, role (kick, snare, hat, open-hat, tom, crash, ride), velocity."""


def phrase(label: str, *, rng: np.random.Generator, duration_s: float) -> list[Note]:
    """A solo phrase for melodic ``label`` filling ``duration_s`` seconds."""
    if label not in STYLES:
        raise ValueError(f"no phrases for {label!r}; melodic labels are {list(STYLES)}")
    style = str(rng.choice(STYLES[label]))
    pool = _register(label, rng)
    level = int(rng.integers(40, 125))
    notes = _STYLES[style](pool, rng, duration_s, label)
    played = [Note(n.start_beats, n.duration_beats, n.pitch, _velocity(level, rng)) for n in notes]
    return [n for n in played if n.start_beats < duration_s]  # a chord cycle may run over


def _register(label: str, rng: np.random.Generator) -> list[int]:
    """Scale pitches inside a random 1–1.6 octave window of the instrument's range."""
    low, high = RANGES[label]
    span = min(high - low, int(rng.integers(12, 20)))
    start = int(rng.integers(low, high - span + 1))
    root = int(rng.integers(0, 12))
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    return [p for p in range(start, start + span + 1) if (p - root) % 12 in scale]


def _velocity(level: int, rng: np.random.Generator) -> int:
    return int(np.clip(level + rng.integers(-12, 13), 1, 127))


def _walk(pool: list[int], rng: np.random.Generator, idx: int) -> int:
    return int(np.clip(idx + rng.integers(-2, 3), 0, len(pool) - 1))


def _held(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    k = int(rng.integers(1, 4))
    step = duration_s / k
    return [
        Note(i * step, step * float(rng.uniform(0.7, 1.0)), int(rng.choice(pool))) for i in range(k)
    ]


def _sequence(
    pool: list[int],
    rng: np.random.Generator,
    duration_s: float,
    *,
    steps: Callable[[], float],
    hold: tuple[float, float],
    next_index: Callable[[int], int],
) -> list[Note]:
    notes, t, idx = [], 0.0, int(rng.integers(len(pool)))
    while t < duration_s:
        step = steps()
        if rng.random() > 0.08:  # an occasional rest
            notes.append(Note(t, step * float(rng.uniform(*hold)), pool[idx]))
        idx = next_index(idx)
        t += step
    return notes


def _melody(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    lengths = (0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
    return _sequence(
        pool,
        rng,
        duration_s,
        steps=lambda: float(rng.choice(lengths)),
        hold=(0.8, 1.0),
        next_index=lambda i: _walk(pool, rng, i),
    )


def _staccato(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    step = float(rng.uniform(0.12, 0.4))
    return _sequence(
        pool,
        rng,
        duration_s,
        steps=lambda: step,
        hold=(0.25, 0.55),
        next_index=lambda i: _walk(pool, rng, i),
    )


def _scale(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    step = float(rng.uniform(0.1, 0.35))
    direction = [1 if rng.random() < 0.5 else -1]

    def advance(i: int) -> int:
        if not 0 <= i + direction[0] < len(pool):
            direction[0] = -direction[0]
        return i + direction[0]

    return _sequence(
        pool, rng, duration_s, steps=lambda: step, hold=(0.85, 1.0), next_index=advance
    )


def _chord_tones(pool: list[int], rng: np.random.Generator) -> list[int]:
    base = int(rng.integers(max(1, len(pool) - 4)))
    tones = [pool[min(base + k, len(pool) - 1)] for k in (0, 2, 4)]
    return [*tones, tones[0] + 12] if rng.random() < 0.5 else tones


def _arpeggio(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    step = float(rng.uniform(0.12, 0.4))
    notes, t = [], 0.0
    while t < duration_s:
        tones = _chord_tones(pool, rng)
        for pitch in tones + tones[-2:0:-1]:
            notes.append(Note(t, step * float(rng.uniform(1.0, 3.0)), pitch))
            t += step
    return notes


def _chords(pool: list[int], rng: np.random.Generator, duration_s: float, label: str) -> list[Note]:
    notes, t = [], 0.0
    while t < duration_s:
        length = float(rng.uniform(0.5, 2.0))
        strum = float(rng.uniform(0.008, 0.03)) if label == "guitar" else 0.0
        for k, pitch in enumerate(_chord_tones(pool, rng)):
            notes.append(Note(t + k * strum, length * float(rng.uniform(0.8, 1.0)), pitch))
        t += length
    return notes


def _double(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    notes = []
    for n in _melody(pool, rng, duration_s, _):
        notes += [n, Note(n.start_beats, n.duration_beats, n.pitch + int(rng.choice((5, 7, 8, 9))))]
    return notes


def _triad_of(root: int, pool: list[int]) -> tuple[int, int]:
    """Third and fifth above ``root`` that fit the key of ``pool``."""
    classes = {p % 12 for p in pool}
    third = 4 if (root + 4) % 12 in classes else 3
    fifth = 7 if (root + 7) % 12 in classes or (root + 6) % 12 not in classes else 6
    return third, fifth


def _strum(pool: list[int], rng: np.random.Generator, duration_s: float, _: str) -> list[Note]:
    """Strummed open-position chords: 4–6 strings spread over two octaves, down and up
    strokes on a beat grid, each string ringing until the next stroke."""
    beat = 60.0 / float(rng.uniform(70.0, 150.0)) / 2.0
    pattern = str(rng.choice(["DDDD", "DDUD", "D.DU", "DUDU", "D..U"]))
    notes: list[Note] = []
    t, step = 0.0, 0
    while t < duration_s:
        if step % 8 == 0:
            root = int(rng.integers(40, 53))
            third, fifth = _triad_of(root, pool)
            strings = [
                root,
                root + fifth,
                root + 12,
                root + 12 + third,
                root + 12 + fifth,
                root + 24,
            ]
            strings = strings[: int(rng.integers(4, 7))]
        stroke = pattern[step % len(pattern)]
        if stroke != ".":
            order = strings if stroke == "D" else strings[::-1][: int(rng.integers(2, 5))]
            gap = float(rng.uniform(0.008, 0.035))
            for k, pitch in enumerate(order):
                notes.append(Note(t + k * gap, beat * float(rng.uniform(0.9, 2.0)), pitch))
        t += beat
        step += 1
    return notes


def _hands(pool: list[int], rng: np.random.Generator, duration_s: float, label: str) -> list[Note]:
    """Two hands (or manuals and pedals): a bass line low down, chords or a tune above."""
    low = [p for p in range(24, 52) if p % 12 in {q % 12 for q in pool}]
    bar = float(rng.uniform(0.8, 2.4))
    notes: list[Note] = []
    t = 0.0
    while t < duration_s:
        root = int(rng.choice(low))
        third, fifth = _triad_of(root, pool)
        held = bar if label == "organ" else bar * float(rng.uniform(0.5, 1.0))
        notes.append(Note(t, held, root))
        if rng.random() < 0.5:
            notes.append(Note(t, held, root + 12))
        top = root + 12 * int(rng.integers(2, 4))
        for interval in (0, third, fifth):
            notes.append(Note(t + float(rng.uniform(0, 0.02)), held * 0.95, top + interval))
        t += bar
    if rng.random() < 0.5:
        notes += _melody([p + 12 for p in pool if p + 12 <= 96] or pool, rng, duration_s, label)
    return notes


_STYLES = {
    "strum": _strum,
    "hands": _hands,
    "held": _held,
    "melody": _melody,
    "staccato": _staccato,
    "scale": _scale,
    "arpeggio": _arpeggio,
    "chords": _chords,
    "double": _double,
}

# --- drums -------------------------------------------------------------------------------

_KICKS = ("x.........x.....", "x.....x...x.....", "x.x.......x..x..", "x......x..x.....")
_SNARES = ("....x.......x...", "....x..g.g..x..g", "....x.......x.g.", "........x.......")
_HATS = ("x.x.x.x.x.x.x.x.", "xxxxxxxxxxxxxxxx", "x...x...x...x...", "x.x.x.x.x.x.x.o.")
_RIDE = "x..x..x..x..x..x"


def drum_hits(*, rng: np.random.Generator, duration_s: float) -> list[Hit]:
    """A groove of ``duration_s`` seconds: 16-step bars at 75–175 bpm, humanized."""
    sixteenth = 60.0 / float(rng.uniform(75.0, 175.0)) / 4.0
    kick, snare = str(rng.choice(_KICKS)), str(rng.choice(_SNARES))
    top, top_role = (_RIDE, "ride") if rng.random() < 0.2 else (str(rng.choice(_HATS)), "hat")
    level = int(rng.integers(55, 125))
    hits: list[Hit] = []
    n_steps = int(np.ceil(duration_s / sixteenth))
    fill_from = n_steps - int(rng.integers(4, 9)) if rng.random() < 0.3 else n_steps
    for step in range(n_steps):
        t = step * sixteenth + float(rng.normal(0.0, 0.006))
        bar_step = step % 16
        if step >= fill_from:
            hits.append((t, "tom" if rng.random() < 0.7 else "snare", _velocity(level, rng)))
            continue
        if bar_step == 0 and rng.random() < 0.3:
            hits.append((t, "crash", _velocity(level, rng)))
        if kick[bar_step] == "x":
            hits.append((t, "kick", _velocity(level, rng)))
        if snare[bar_step] in "xg":
            ghost = snare[bar_step] == "g"
            hits.append((t, "snare", _velocity(level // 3 if ghost else level, rng)))
        if top[bar_step] in "xo":
            role = "open-hat" if top[bar_step] == "o" else top_role
            hits.append((t, role, _velocity(level - 15, rng)))
    return [(max(t, 0.0), role, vel) for t, role, vel in hits if t < duration_s]


GM_DRUM_NOTES = {
    "kick": (35, 36),
    "snare": (38, 40),
    "hat": (42, 44),
    "open-hat": (46,),
    "ride": (51, 59),
    "crash": (49, 57),
    "tom": (41, 43, 45, 47, 48, 50),
}


def drum_notes(hits: list[Hit], *, rng: np.random.Generator) -> list[Note]:
    """The hits on a General MIDI drum channel (one note choice per role per groove)."""
    chosen = {role: int(rng.choice(notes)) for role, notes in GM_DRUM_NOTES.items()}
    return [
        Note(t, 0.2, int(rng.choice(GM_DRUM_NOTES["tom"])) if role == "tom" else chosen[role], v)
        for t, role, v in hits
    ]
