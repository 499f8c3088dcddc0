"""The ``solos`` target: instrument clips from sampled and recorded real instruments.

Each clip (1.5–4 s, 16 kHz mono) holds one instrument (a fifth of them a second
one): a phrase from :mod:`models.corpus.phrases` played by

* a General MIDI program of one of three soundfonts sampled from real instruments
  (FluidR3, MuseScore General, TimGM6mb; :mod:`models.corpus.packages`), rendered by
  fluidsynth with its own reverb and chorus off, or (``freepats_share`` of the clips)
  of the Freepats GUS patches, recorded from other real instruments and rendered by
  timidity with its effects off;
* for drums, also a recorded Hydrogen kit (:func:`recorded.play_kit`);
* or a stretch of one of GCompris' recordings of a person playing it,

then put through a random room and microphone (:mod:`models.corpus.room`) over a
noise floor, at a random level. ``labels.csv`` lists each clip's tags and
``manifest.csv`` its source (package, program or kit, style).

fluidsynth takes seconds to load a large soundfont, so clips of one soundfont are
rendered in batches: one MIDI file holds a batch's clips one after another with
gaps for the release tails, and the render is cut back into clips. Item ``i`` draws
from ``item_rng(seed, "solos", i)`` whatever the batching, so a build is the same
for a seed.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from models.corpus import music, packages, phrases, recorded, room, synth
from models.corpus.channel import resample
from models.corpus.music import TICKS_PER_BEAT, Note
from models.corpus.synth import SR
from models.corpus.tools import require_tool, run_tool

DEFAULT_SOLOS = 1600
BATCH = 40
GAP_S = 2.5
# Drum kits (bank 128 programs) every full GM/GS soundfont has: standard, room, power,
# jazz, brush; TimGM6mb has only the standard kit.
_KITS = {
    "fluid-soundfont-gm": (0, 8, 16, 32, 40),
    "musescore-general-soundfont": (0, 8, 16, 32, 40),
}
_SOUNDFONT_WEIGHTS = (0.35, 0.45, 0.2)
_FREEPATS = "freepats"
# The melodic programs Freepats 20060219 has a patch for (Tone_000); a program it lacks
# would render silence, so a Freepats voice draws only among these. Its one kit is 0.
FREEPATS_PROGRAMS = frozenset(
    (0, 1, 2, 4, 5, 16, 19, 24, 25, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37, 40, 56, 59, 72, 73)
)
_DRUM_CHANNEL = 9


@dataclass(frozen=True, slots=True)
class Voice:
    """One instrument of a clip: its tag, GM program (kit for drums) and notes."""

    label: str
    program: int
    notes: tuple[Note, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What clip ``index`` holds and where its audio comes from."""

    index: int
    duration_s: float
    source: str
    voices: tuple[Voice, ...] = ()
    detail: str = ""
    hits: tuple[phrases.Hit, ...] = field(default=())

    @property
    def tags(self) -> tuple[str, ...]:
        """Sorted distinct labels."""
        labels = {v.label for v in self.voices}
        if self.source in (packages.DRUMKITS.package,):
            labels.add("drums")
        if self.source == packages.RECORDINGS.package:
            labels.add(self.detail.split(":", 1)[0])
        return tuple(sorted(labels))


def plan(
    seed: int,
    index: int,
    kits: Sequence[recorded.Kit],
    *,
    recorded_share: float = 0.1,
    duo_share: float = 0.2,
    trio_share: float = 0.0,
    freepats_share: float = 0.0,
) -> Plan:
    """Draw clip ``index``: its label(s), source, program or kit and phrase.

    ``recorded_share`` of the clips of a tag GCompris recorded are cut from that
    recording; ``duo_share`` of the soundfont clips add a second instrument, and
    ``trio_share`` of those a third (an ensemble, as most uploads are);
    ``freepats_share`` of the sampled clips are played by the Freepats patches instead
    of a soundfont (no draw at 0: older builds stay the same).
    """
    from models.corpus.build import item_rng

    rng = item_rng(seed, "solos", index)
    label = phrases.LABELS[index % len(phrases.LABELS)]
    duration_s = round(float(rng.uniform(1.5, 4.0)), 2)
    pick = rng.random()
    if label in recorded.GCOMPRIS_FILES and pick < recorded_share:
        name = str(rng.choice(recorded.GCOMPRIS_FILES[label]))
        return Plan(index, duration_s, packages.RECORDINGS.package, detail=f"{label}:{name}")
    if label == "drums" and pick < max(0.5, recorded_share + 0.4) and kits:  # 0.4 of them
        kit = kits[int(rng.integers(len(kits)))]
        hits = tuple(phrases.drum_hits(rng=rng, duration_s=duration_s))
        return Plan(index, duration_s, packages.DRUMKITS.package, detail=kit.name, hits=hits)
    fonts = [f for f in packages.SOUNDFONTS if f.package != _FREEPATS]
    if freepats_share > 0 and rng.random() < freepats_share:
        font = next(f for f in packages.SOUNDFONTS if f.package == _FREEPATS)
    else:
        font = fonts[int(rng.choice(len(fonts), p=_SOUNDFONT_WEIGHTS))]
    voices = [_voice(label, font.package, rng, duration_s)]
    if rng.random() < duo_share:
        other = str(rng.choice([x for x in phrases.LABELS if x != label]))
        voices.append(_voice(other, font.package, rng, duration_s))
        if trio_share > 0 and rng.random() < trio_share:  # no draw at 0: older builds stay
            third = str(rng.choice([x for x in phrases.LABELS if x not in (label, other)]))
            voices.append(_voice(third, font.package, rng, duration_s))
    detail = " + ".join(f"{v.label}@{v.program}" for v in voices)
    return Plan(index, duration_s, font.package, tuple(voices), detail)


def _voice(label: str, font: str, rng: np.random.Generator, duration_s: float) -> Voice:
    if label == "drums":
        kit = int(rng.choice(_KITS.get(font, (0,))))
        hits = phrases.drum_hits(rng=rng, duration_s=duration_s)
        return Voice(label, kit, tuple(phrases.drum_notes(hits, rng=rng)))
    programs = phrases.PROGRAMS[label]
    if font == _FREEPATS:
        programs = tuple(p for p in programs if p in FREEPATS_PROGRAMS)
    program = int(rng.choice(programs))
    return Voice(label, program, tuple(phrases.phrase(label, rng=rng, duration_s=duration_s)))


# --- fluidsynth batches --------------------------------------------------------------------


def batch_midi(plans: Sequence[Plan]) -> tuple[bytes, list[float]]:
    """One MIDI file (60 bpm: a beat is a second) playing ``plans`` in turn; their starts."""
    events: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x51\x03" + (10**6).to_bytes(3, "big"))]
    starts, t = [], 0.5
    for p in plans:
        starts.append(t)
        melodic = iter(c for c in range(16) if c != _DRUM_CHANNEL)
        for voice in p.voices:
            ch = _DRUM_CHANNEL if voice.label == "drums" else next(melodic)
            events += _voice_events(voice, ch, t, p.duration_s)
        t += p.duration_s + GAP_S
    events.append((_tick(t), 9, b"\xff\x01\x00"))  # an empty text event marks the end
    track = music._track(events)  # same package: the one MIDI track encoder
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT) + track, starts


def _voice_events(
    voice: Voice, ch: int, start: float, duration_s: float
) -> list[tuple[int, int, bytes]]:
    at = _tick(start - 0.2)
    events = [
        (at, 0, bytes([0xB0 | ch, 121, 0])),  # reset controllers
        (at, 0, bytes([0xC0 | ch, voice.program])),
        (at, 0, bytes([0xB0 | ch, 7, 110])),
        (at, 0, bytes([0xB0 | ch, 91, 0])),  # no reverb send
        (at, 0, bytes([0xB0 | ch, 93, 0])),  # no chorus send
    ]
    for n in voice.notes:
        on = _tick(start + n.start_beats)
        off = min(_tick(start + n.start_beats + n.duration_beats), _tick(start + duration_s))
        pitch = int(np.clip(n.pitch, 0, 127))
        events.append((on, 2, bytes([0x90 | ch, pitch, int(np.clip(n.velocity, 1, 127))])))
        events.append((max(off, on + 1), 1, bytes([0x80 | ch, pitch, 0])))
    events.append((_tick(start + duration_s + GAP_S - 0.3), 1, bytes([0xB0 | ch, 120, 0])))
    return events


def _tick(seconds: float) -> int:
    return max(0, round(seconds * TICKS_PER_BEAT))


def render_batch(soundfont: Path, plans: Sequence[Plan]) -> list[np.ndarray]:
    """Render ``plans`` with ``soundfont`` in one run; one float32 clip each.

    A ``.cfg`` is a timidity patch set (Freepats), rendered by timidity; anything else
    a soundfont, rendered by fluidsynth.
    """
    midi, starts = batch_midi(plans)
    with tempfile.TemporaryDirectory(prefix="tympan-solos-") as tmp:
        mid, wav = Path(tmp) / "batch.mid", Path(tmp) / "batch.wav"
        mid.write_bytes(midi)
        if soundfont.suffix == ".cfg":
            _timidity(soundfont, mid, wav)
        else:
            run_tool(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6",
                      "-o", "synth.dynamic-sample-loading=1", "-O", "float",
                      "-F", str(wav), "-r", str(SR), str(soundfont), str(mid)])  # fmt: skip
        y, file_sr = sf.read(wav, dtype="float32", always_2d=True)
    y = resample(y.mean(axis=1), orig_sr=file_sr, target_sr=SR)
    clips = []
    for p, start in zip(plans, starts, strict=True):
        a = int(start * SR)
        clips.append(
            synth.fit_length(
                y[a : a + synth.n_samples(p.duration_s, SR)], synth.n_samples(p.duration_s, SR)
            )
        )
    return clips


def _timidity(config: Path, mid: Path, wav: Path) -> None:
    """Render ``mid`` with the patch set of ``config`` (extracted, not installed).

    The package's config names the patches under ``/usr/share/midi/freepats``; a copy
    pointing at the extracted tree is read instead (``-c`` replaces timidity's default
    config). Reverb and chorus are off and leading silence is kept, so a clip starts
    where :func:`batch_midi` put it.
    """
    patches = config.parents[2] / "usr" / "share" / "midi" / "freepats"
    local = wav.with_suffix(".cfg")
    local.write_text(f"dir {patches}\n" + config.read_text().split("\n", 1)[1])
    run_tool(["timidity", "-c", str(local), "-idq", "-EFreverb=d", "-EFchorus=d",
              "--preserve-silence", "-s", str(SR), "--output-mono", "--output-16bit",
              "-Ow", "-o", str(wav), str(mid)], timeout_s=600.0)  # fmt: skip


# --- the target ----------------------------------------------------------------------------


def finish(y: np.ndarray, *, rng: np.random.Generator) -> np.ndarray | None:
    """Room, microphone, noise floor and level; ``None`` when the render is silent."""
    if synth.rms_dbfs(y) < -65.0:
        return None
    out = room.recording_chain(y, rng=rng)
    floor_db = synth.rms_dbfs(out) - float(rng.uniform(30.0, 60.0))
    out = out + synth.pink_noise(out.size / SR, rng=rng, level_dbfs=floor_db)[: out.size]
    out = synth.set_level(out, float(rng.uniform(-32.0, -14.0)))
    return synth.fade(out, sr=SR, fade_s=0.01)


def build_solos(
    out: Path,
    *,
    seed: int = 0,
    clips: int = DEFAULT_SOLOS,
    jobs: int = 2,
    progress: bool = True,
    cache: Path | None = None,
    recorded_share: float = 0.1,
    duo_share: float = 0.2,
    trio_share: float = 0.0,
    freepats_share: float = 0.0,
) -> Path:
    """Render the ``solos`` dataset into ``out`` (``clips/``, ``labels.csv``, ``manifest.csv``)."""
    from models.corpus.build import _write_csv, _write_wav, item_rng

    require_tool("fluidsynth")
    if freepats_share > 0:
        require_tool("timidity")
    packages.check_disjoint()
    cache = cache or packages.default_cache()
    fonts = {
        f.package: packages.locate(f, cache)
        for f in packages.SOUNDFONTS
        if f.package != _FREEPATS or freepats_share > 0
    }
    kit_list = recorded.kits(packages.locate(packages.DRUMKITS, cache))
    kit_by_name = {k.name: k for k in kit_list}
    rcc = packages.locate(packages.RECORDINGS, cache)
    shares = {
        "recorded_share": recorded_share,
        "duo_share": duo_share,
        "trio_share": trio_share,
        "freepats_share": freepats_share,
    }
    plans = [plan(seed, i, kit_list, **shares) for i in range(clips)]
    audio: dict[int, np.ndarray] = {}
    batches = [
        (fonts[name], group[k : k + BATCH])
        for name in fonts
        for group in [[p for p in plans if p.source == name]]
        for k in range(0, len(group), BATCH)
    ]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done, (group, rendered) in enumerate(
            pool.map(lambda b: (b[1], render_batch(*b)), batches), start=1
        ):
            audio.update({p.index: y for p, y in zip(group, rendered, strict=True)})
            if progress:
                print(f"solos: soundfont batch {done}/{len(batches)}", file=sys.stderr, flush=True)
    for p in plans:
        rng = item_rng(seed, "solos", p.index, 1)
        if p.source == packages.DRUMKITS.package:
            audio[p.index] = recorded.play_kit(
                kit_by_name[p.detail], list(p.hits), rng=rng, duration_s=p.duration_s
            )
        elif p.source == packages.RECORDINGS.package:
            y = recorded.gcompris_recordings(rcc)[p.detail.split(":", 1)[1]]
            audio[p.index] = recorded.excerpt(y, rng=rng, duration_s=p.duration_s)
    rows, manifest = [], []
    for p in plans:
        y = finish(audio[p.index], rng=item_rng(seed, "solos", p.index, 2))
        if y is None:
            continue
        rel = f"clips/{p.index:05d}.wav"
        _write_wav(out / rel, y, SR)
        rows.append([rel, ";".join(p.tags)])
        manifest.append([rel, ";".join(p.tags), p.source, p.detail, f"{p.duration_s:.2f}"])
    _write_csv(out / "labels.csv", ["path", "tags"], rows)
    _write_csv(out / "manifest.csv", ["path", "tags", "source", "detail", "duration_s"], manifest)
    if progress:
        print(
            f"solos: {len(rows)} clips ({clips - len(rows)} silent renders dropped)",
            file=sys.stderr,
        )
    return out
