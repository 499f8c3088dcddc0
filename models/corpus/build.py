"""Render the training, test and demo datasets on disk.

Four targets, each a plain folder of 16 kHz mono PCM WAV files plus a manifest:

``scene``
    ``<label>/<nnnn>.wav`` for speech / music / silence / tone / noise, and
    ``manifest.csv`` (path, label, channel, source, duration_s).
``instruments``
    ``clips/<nnnn>.wav`` and ``labels.csv`` (``path,tags``; ``;``-separated tags).
``speakers``
    ``<identity>/<nn>.wav`` and ``speakers.json`` (rendering settings per identity);
    ``heldout=True`` renders identities whose settings never occur in the
    training set, for open-set tests.
``demo``
    ``call-<nn>.wav`` (25–40 s, some 8 kHz after a μ-law round trip) and
    ``music-<nn>.wav`` (~30 s), each with a ``.json`` timeline of ground truth.

Determinism: item ``i`` of a target draws from ``default_rng([seed, target, i])``,
so a build is identical for a seed whatever ``jobs`` is and in whatever order the
threads finish; the external tools are deterministic too.  Threads (not
processes) run the items: the time goes into espeak-ng/festival/fluidsynth/sox
subprocesses and numpy, both of which release the GIL.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile as sf

from models.corpus import channel, music, speech, synth
from models.corpus.speech import Voice
from models.corpus.synth import SR
from models.corpus.tools import has_tool, require_tool

T = TypeVar("T")

SCENE_LABELS = ("speech", "music", "silence", "tone", "noise")
DEFAULT_PER_CLASS = 60
DEFAULT_CLIPS = 300
DEFAULT_IDENTITIES = 40
DEFAULT_UTTERANCES = 12
DEFAULT_CALLS = 6
DEFAULT_MUSIC_TRACKS = 2

_TARGET_CODES = {
    "scene": 1,
    "instruments": 2,
    "speakers": 3,
    "speakers-heldout": 4,
    "demo": 5,
    "demo-enroll": 6,
    "solos": 7,
}


def item_rng(seed: int, target: str, index: int, sub: int = 0) -> np.random.Generator:
    """The generator for item ``index`` of ``target``: independent of build order."""
    return np.random.default_rng([seed, _TARGET_CODES[target], index, sub])


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")


def _run(name: str, tasks: Sequence[Callable[[], T]], *, jobs: int, progress: bool) -> list[T]:
    """Run ``tasks`` on ``jobs`` threads; results in task order; progress lines on stderr."""
    results: list[T | None] = [None] * len(tasks)
    step = max(1, len(tasks) // 10)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress and (done % step == 0 or done == len(tasks)):
                print(f"{name}: {done}/{len(tasks)}", file=sys.stderr, flush=True)
    return [r for r in results if r is not None]


def check_tools(*, need_festival: bool = False) -> None:
    """Fail before rendering anything when a tool the build needs is missing."""
    for tool in ("espeak-ng", "sox"):
        require_tool(tool)
    if need_festival:
        require_tool("text2wave")


# --- voices -------------------------------------------------------------------------------

_TRAIN_LANGS = ("en-us", "en-gb", "en-gb-x-rp", "en-029")
_HELDOUT_LANGS = ("en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "de", "es")
_TRAIN_PITCHES = (30, 40, 50, 60, 70)
_HELDOUT_PITCHES = (25, 35, 45, 55, 65, 75)
_TRAIN_SPEEDS = (140, 160, 180)
_HELDOUT_SPEEDS = (130, 150, 170, 190)
_TRAIN_FESTIVAL = (
    ("kal_diphone", 0, 1.0),
    ("cmu_us_slt_arctic_hts", 0, 1.0),
    ("kal_diphone", 300, 1.0),
    ("cmu_us_slt_arctic_hts", -300, 1.0),
)
_HELDOUT_FESTIVAL = (
    ("ked_diphone", 0, 1.0),
    ("ked_diphone", 250, 1.0),
    ("kal_diphone", -250, 1.0),
    ("cmu_us_slt_arctic_hts", 200, 1.1),
)


def speaker_voices(
    *, seed: int = 0, n: int = DEFAULT_IDENTITIES, heldout: bool = False
) -> list[Voice]:
    """The ``n`` identities of the ``speakers`` set (or of its held-out twin).

    Training and held-out sets share no setting that identifies a speaker:
    espeak-ng variants are split alternately between them, and they use
    disjoint accents, pitches and speeds; festival identities use different
    voices or sox pitch shifts.  So an open-set test really meets strangers.
    """
    rng = np.random.default_rng([seed, _TARGET_CODES["speakers"], 999])
    variants = speech.available_variants()[1 if heldout else 0 :: 2]
    langs = _HELDOUT_LANGS if heldout else _TRAIN_LANGS
    pitches = _HELDOUT_PITCHES if heldout else _TRAIN_PITCHES
    speeds = _HELDOUT_SPEEDS if heldout else _TRAIN_SPEEDS
    festival_specs = _HELDOUT_FESTIVAL if heldout else _TRAIN_FESTIVAL
    installed = speech.festival_voices() if has_tool("text2wave") else ()
    voices = [
        Voice("festival", name, pitch_cents=c, tempo=t)
        for name, c, t in festival_specs
        if name in installed
    ][: max(0, n // 8)]
    seen = {v.identity for v in voices}
    order = list(rng.permutation(len(variants)))
    k = 0
    while len(voices) < n and k < 50 * n:
        variant = variants[order[k % len(order)]]
        k += 1
        v = Voice(
            "espeak",
            str(rng.choice(langs)),
            variant,
            int(rng.choice(pitches)),
            int(rng.choice(speeds)),
        )
        if v.identity not in seen:
            seen.add(v.identity)
            voices.append(v)
    return voices


def random_voice(rng: np.random.Generator) -> Voice:
    """A voice for the ``scene`` speech class: any engine, language, variant, pitch, speed."""
    r = rng.random()
    if r < 0.25 and has_tool("text2wave") and speech.festival_voices():
        name = str(rng.choice(speech.festival_voices()))
        cents = int(rng.choice([0, 0, -200, 200, 350]))
        return Voice("festival", name, pitch_cents=cents, tempo=float(rng.choice([1.0, 0.9, 1.1])))
    langs = speech.ENGLISH_VOICES if r < 0.85 else tuple(speech.FOREIGN_SENTENCES)
    variants = speech.available_variants()
    variant = None if rng.random() < 0.1 else str(rng.choice(variants))
    return Voice(
        "espeak",
        str(rng.choice(langs)),
        variant,
        int(rng.integers(15, 86)),
        int(rng.integers(120, 211)),
    )


# --- scene --------------------------------------------------------------------------------


@dataclass
class Clip:
    """One rendered clip and what made it (manifest row)."""

    audio: np.ndarray
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


def _speech_clip(rng: np.random.Generator, duration_s: float) -> Clip:
    voice = random_voice(rng)
    y, texts = speech.utterance(voice, rng, min_s=duration_s)
    y = synth.fit_length(y, synth.n_samples(duration_s, SR))
    return Clip(synth.fade(y), voice.identity, {"text": " ".join(texts)})


def _music_clip(rng: np.random.Generator, duration_s: float) -> Clip:
    y, tags = music.hold_music(duration_s, rng=rng)
    return Clip(y, "+".join(tags))


def _silence_clip(rng: np.random.Generator, duration_s: float) -> Clip:
    level = float(rng.uniform(-70, -50))
    hum = float(rng.choice([50.0, 60.0])) if rng.random() < 0.3 else None
    y = synth.near_silence(duration_s, rng=rng, level_dbfs=level, hum_hz=hum)
    return Clip(y, f"floor{level:.0f}dB" + (f"+hum{hum:.0f}" if hum else ""))


def _tone_clip(rng: np.random.Generator, duration_s: float) -> Clip:
    kind = str(
        rng.choice(
            [
                "dtmf",
                "dtmf",
                "us_ringback",
                "us_busy",
                "eu_ringback",
                "eu_busy",
                "fax_cng",
                "tone",
                "beeps",
                "chirp",
            ]
        )
    )
    amp = float(rng.uniform(0.2, 0.7))
    if kind == "dtmf":
        keys = "".join(rng.choice(list("0123456789*#"), size=40))
        y = synth.dtmf_sequence(
            keys,
            tone_s=float(rng.uniform(0.06, 0.25)),
            gap_s=float(rng.uniform(0.05, 0.2)),
            amplitude=amp,
        )
        source = f"dtmf:{keys[:12]}"
    elif kind in synth.CADENCES:
        c = synth.CADENCES[kind]
        offset = (c.on_s + c.off_s) - float(rng.uniform(0.0, 0.3))
        y = synth.cadence_tone(c, duration_s, amplitude=amp, offset_s=offset)
        source = kind
    elif kind == "tone":
        f = float(rng.uniform(300, 3000))
        y, source = synth.tone(f, duration_s, amplitude=amp), f"tone:{f:.0f}Hz"
    elif kind == "beeps":
        f = float(rng.choice([440.0, 800.0, 1000.0, 1400.0]))
        c = synth.Cadence("beep", (f,), float(rng.uniform(0.1, 0.5)), float(rng.uniform(0.2, 1)))
        y, source = synth.cadence_tone(c, duration_s, amplitude=amp), f"beeps:{f:.0f}Hz"
    else:
        f0, f1 = float(rng.uniform(200, 1000)), float(rng.uniform(1000, 3500))
        y, source = synth.chirp(f0, f1, duration_s, amplitude=amp), "chirp"
    y = synth.fit_length(y, synth.n_samples(duration_s, SR))
    floor = synth.white_noise(duration_s, rng=rng, level_dbfs=float(rng.uniform(-75, -60)))
    return Clip(synth.fade(y + floor), source)


def _noise(
    rng: np.random.Generator, duration_s: float, level_dbfs: float
) -> tuple[np.ndarray, str]:
    kind = str(rng.choice(["white", "pink", "brown", "babble"]))
    make = {
        "white": synth.white_noise,
        "pink": synth.pink_noise,
        "brown": synth.brown_noise,
        "babble": synth.babble_noise,
    }[kind]
    return make(duration_s, rng=rng, level_dbfs=level_dbfs), kind


def _noise_clip(rng: np.random.Generator, duration_s: float) -> Clip:
    y, kind = _noise(rng, duration_s, float(rng.uniform(-35, -15)))
    return Clip(synth.fade(y), kind)


_SCENE_MAKERS: dict[str, Callable[[np.random.Generator, float], Clip]] = {
    "speech": _speech_clip, "music": _music_clip, "silence": _silence_clip,
    "tone": _tone_clip, "noise": _noise_clip,
}  # fmt: skip


def _with_floor(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add a noise floor 45–65 dB under the signal: no real line is ever digital zero."""
    floor_db = synth.rms_dbfs(y) - float(rng.uniform(45, 65))
    if not np.isfinite(floor_db):
        return y
    noise = synth.white_noise(y.size / SR, rng=rng, level_dbfs=floor_db)[: y.size]
    return np.asarray(y + noise, dtype=np.float32)


def _scene_item(out: Path, seed: int, label: str, index: int) -> list[str]:
    rng = item_rng(seed, "scene", SCENE_LABELS.index(label) * 1_000_000 + index)
    duration_s = round(float(rng.uniform(2.0, 6.0)), 2)
    clip = _SCENE_MAKERS[label](rng, duration_s)
    y = clip.audio
    noisy = ""
    level = float(rng.uniform(-32, -16))
    if label in ("speech", "music", "tone"):
        y = synth.set_level(_with_floor(y, rng), level)
        if rng.random() < 0.25:
            snr = float(rng.uniform(5, 25))
            bg, kind = _noise(rng, duration_s, -40.0)
            y, noisy = channel.add_noise(y, bg, snr_db=snr), f"{kind}@{snr:.0f}dB"
    # Every other file goes through the telephone: the classes must not be told
    # apart by bandwidth.
    tel = "clean16k"
    if index % 2 == 1:
        law: channel.Law = "mulaw" if rng.random() < 0.75 else "alaw"
        y, tel = channel.telephone(y, law=law), f"{law}8k"
        if label != "silence":
            # The band-pass removes what lies below 300 Hz (brown noise, bass);
            # re-level so a filtered clip is not mistaken for a quiet line.
            y = synth.set_level(y, level if label != "noise" else synth.rms_dbfs(clip.audio))
    rel = f"{label}/{index:04d}.wav"
    _write_wav(out / rel, y, SR)
    source = clip.source + (f"|noise:{noisy}" if noisy else "")
    return [rel, label, tel, source, f"{y.size / SR:.2f}"]


def build_scene(
    out: Path,
    *,
    seed: int = 0,
    per_class: int = DEFAULT_PER_CLASS,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render the ``scene`` dataset (see module docstring); returns ``out``."""
    check_tools()
    music_ok = has_tool("fluidsynth") and music.SOUNDFONT.is_file()
    if progress and not music_ok:
        print(
            "scene: fluidsynth/soundfont missing, music falls back to the numpy synth "
            "(install with scripts/setup-system.sh)",
            file=sys.stderr,
        )
    tasks = [
        partial(_scene_item, out, seed, label, i)
        for label in SCENE_LABELS for i in range(per_class)
    ]  # fmt: skip
    rows = _run("scene", tasks, jobs=jobs, progress=progress)
    _write_csv(out / "manifest.csv", ["path", "label", "channel", "source", "duration_s"], rows)
    return out


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# --- instruments --------------------------------------------------------------------------


def _instrument_item(out: Path, seed: int, index: int, duration_s: float) -> list[str]:
    rng = item_rng(seed, "instruments", index)
    k = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    chosen = [str(x) for x in rng.choice(music.INSTRUMENTS, size=k, replace=False)]
    piece = music.compose(chosen, rng=rng, duration_s=duration_s)
    y = music.render(piece, duration_s=duration_s)
    y = synth.set_level(_with_floor(y, rng), float(rng.uniform(-30, -16)))
    rel = f"clips/{index:04d}.wav"
    _write_wav(out / rel, y, SR)
    return [rel, ";".join(sorted(chosen))]


def build_instruments(
    out: Path,
    *,
    seed: int = 0,
    clips: int = DEFAULT_CLIPS,
    duration_s: float = 4.0,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render the multi-label ``instruments`` dataset with fluidsynth; returns ``out``."""
    require_tool("fluidsynth")
    tasks = [partial(_instrument_item, out, seed, i, duration_s) for i in range(clips)]
    rows = _run("instruments", tasks, jobs=jobs, progress=progress)
    _write_csv(out / "labels.csv", ["path", "tags"], rows)
    return out


# --- speakers -----------------------------------------------------------------------------


def _speaker_item(
    out: Path, seed: int, target: str, voice: Voice, v_index: int, u_index: int
) -> dict[str, Any]:
    rng = item_rng(seed, target, v_index, u_index)
    duration_s = float(rng.uniform(2.0, 4.0))
    y, texts = speech.utterance(voice, rng, min_s=duration_s)
    y = synth.fade(y[: synth.n_samples(duration_s, SR)])
    y = synth.set_level(_with_floor(y, rng), float(rng.uniform(-28, -18)))
    tel = "clean16k"
    if u_index % 4 == 3:  # a quarter of each speaker's clips come over the phone
        y, tel = channel.telephone(y, law="mulaw"), "mulaw8k"
    rel = f"{voice.identity}/{u_index:02d}.wav"
    _write_wav(out / rel, y, SR)
    return {
        "file": rel,
        "text": " ".join(texts),
        "channel": tel,
        "duration_s": round(y.size / SR, 3),
    }


def build_speakers(
    out: Path,
    *,
    seed: int = 0,
    identities: int = DEFAULT_IDENTITIES,
    utterances: int = DEFAULT_UTTERANCES,
    heldout: bool = False,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render the ``speakers`` dataset (or its held-out twin) and ``speakers.json``."""
    check_tools()
    target = "speakers-heldout" if heldout else "speakers"
    voices = speaker_voices(seed=seed, n=identities, heldout=heldout)
    tasks = [
        partial(_speaker_item, out, seed, target, v, vi, u)
        for vi, v in enumerate(voices) for u in range(utterances)
    ]  # fmt: skip
    items = _run(target, tasks, jobs=jobs, progress=progress)
    described = []
    for vi, v in enumerate(voices):
        described.append(
            {**v.to_json(), "utterances": items[vi * utterances : (vi + 1) * utterances]}
        )
    doc = {"target": target, "seed": seed, "sr": SR, "identities": described}
    (out / "speakers.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return out


# --- demo ---------------------------------------------------------------------------------


def _segment(label: str, start_s: float, y: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "start_s": round(start_s, 3),
        "end_s": round(start_s + y.size / SR, 3),
        "label": label,
        **extra,
    }


def _demo_cast(seed: int, index: int) -> tuple[Voice, Voice, np.random.Generator]:
    """Agent and caller of demo call ``index``, and the rng that renders the call."""
    rng = item_rng(seed, "demo", index)
    agents = speaker_voices(seed=seed, n=DEFAULT_IDENTITIES)
    strangers = speaker_voices(seed=seed, n=DEFAULT_IDENTITIES, heldout=True)
    agent = agents[int(rng.integers(len(agents)))]
    # Odd calls have a caller nobody enrolled: the open-set case.
    caller_pool = strangers if index % 2 == 1 else agents
    caller = caller_pool[int(rng.integers(len(caller_pool)))]
    return agent, caller, rng


def _demo_enrollment(out: Path, seed: int, voice: Voice, clips: int = 3) -> str:
    """``enroll/<identity>/NN.wav``: fresh sentences (≈5 s each) to enroll ``voice``."""
    # Seeded by the identity, so the clips do not depend on which calls name the voice.
    key = int.from_bytes(voice.identity.encode()[:8].ljust(8, b"\0"), "little")
    rng = item_rng(seed, "demo-enroll", key % (2**31))
    for n in range(clips):
        y, _ = speech.utterance(voice, rng, min_s=4.0)
        _write_wav(out / "enroll" / voice.identity / f"{n:02d}.wav", synth.set_level(y, -20.0), SR)
    return voice.identity


def _demo_call(out: Path, seed: int, index: int, scale: float = 1.0) -> str:
    agent, caller, rng = _demo_cast(seed, index)
    target_s = float(rng.uniform(25, 39)) * scale
    us = rng.random() < 0.5
    plan = [("tone", "us_ringback" if us else "eu_ringback", rng.uniform(3, 7)),
            ("speech", "agent", rng.uniform(3, 6)), ("silence", "pause", rng.uniform(0.5, 1.5)),
            ("speech", "caller", rng.uniform(3, 6)), ("tone", "dtmf", rng.uniform(1, 2.5)),
            ("speech", "agent", rng.uniform(2, 4)), ("music", "hold", rng.uniform(5, 10)),
            ("speech", "agent", rng.uniform(2, 4)), ("silence", "pause", rng.uniform(0.5, 2)),
            ("speech", "caller", 3.0)]  # fmt: skip
    parts: list[np.ndarray] = []
    segments: list[dict[str, Any]] = []
    t = 0.0
    for n, (label, what, dur) in enumerate(plan):
        dur *= scale  # after every draw: scale 1 renders exactly the default calls
        if n == len(plan) - 1:
            dur = max(2.0, target_s - t)
        y, extra = _demo_part(label, what, float(dur), rng, agent if what == "agent" else caller)
        if what in synth.CADENCES:
            segments += _cadence_segments(synth.CADENCES[what], t, y.size / SR)
        else:
            segments.append(_segment(label, t, y, detail=what, **extra))
        parts.append(y)
        t += y.size / SR
    call = np.concatenate(parts)
    call = call + synth.white_noise(call.size / SR, rng=rng, level_dbfs=-66.0)[: call.size]
    telephone = index % 2 == 0
    name = f"call-{index:02d}"
    if telephone:
        call, sr, ch = channel.telephone(call, law="mulaw", out_sr=8000), 8000, "mulaw8k"
    else:
        sr, ch = SR, "pcm16k"
    _write_wav(out / f"{name}.wav", call, sr)
    sidecar = {
        "file": f"{name}.wav",
        "sr": sr,
        "channel": ch,
        "duration_s": round(call.size / sr, 3),
        "agent": agent.identity,
        "caller": caller.identity,
        "caller_enrolled": index % 2 == 0,
        "segments": segments,
    }
    _write_json(out / f"{name}.json", sidecar)
    return name


def _cadence_segments(c: synth.Cadence, start_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Ground truth of a ringback/busy tone: ``tone`` while on, ``silence`` while off."""
    out: list[dict[str, Any]] = []
    t = 0.0
    while t < duration_s - 1e-9:
        for label, length in (("tone", c.on_s), ("silence", c.off_s)):
            end = min(t + length, duration_s)
            if end > t:
                out.append(
                    {
                        "start_s": round(start_s + t, 3),
                        "end_s": round(start_s + end, 3),
                        "label": label,
                        "detail": c.name,
                    }
                )
            t = end
    return out


def _demo_part(
    label: str, what: str, dur: float, rng: np.random.Generator, voice: Voice
) -> tuple[np.ndarray, dict[str, Any]]:
    n = synth.n_samples(dur, SR)
    if label == "speech":
        y, texts = speech.utterance(voice, rng, min_s=dur)
        y = synth.set_level(synth.fade(y[: n + SR]), -20.0)  # keep up to 1 s over: whole words
        return y, {"voice": voice.to_json(), "text": " ".join(texts)}
    if label == "music":
        y, tags = music.hold_music(dur, rng=rng)
        return synth.set_level(y, -24.0), {"instruments": list(tags)}
    if label == "tone" and what == "dtmf":
        keys = "".join(rng.choice(list("0123456789#"), size=int(dur / 0.2) + 1))
        y = synth.fit_length(synth.dtmf_sequence(keys, tone_s=0.1, gap_s=0.1), n)
        return y, {"keys": keys}
    if label == "tone":
        return synth.cadence_tone(what, dur, amplitude=0.3), {}
    return np.zeros(n, dtype=np.float32), {}


def _demo_music(out: Path, seed: int, index: int, duration_s: float = 30.0) -> str:
    rng = item_rng(seed, "demo", 100 + index)
    ensembles = (
        ("piano", "bass", "drums"),
        ("violin", "guitar", "flute"),
        ("organ", "trumpet", "bass"),
        ("guitar", "bass", "drums"),
    )
    chosen = ensembles[(index + int(rng.integers(len(ensembles)))) % len(ensembles)]
    piece = music.compose(chosen, rng=rng, duration_s=duration_s)
    y = synth.set_level(music.render(piece, duration_s=duration_s), -20.0)
    name = f"music-{index:02d}"
    _write_wav(out / f"{name}.wav", y, SR)
    _write_json(out / f"{name}.json", {
        "file": f"{name}.wav", "sr": SR, "channel": "pcm16k", "duration_s": duration_s,
        "instruments": sorted(chosen), "tempo_bpm": round(piece.tempo_bpm, 1),
        "segments": [{"start_s": 0.0, "end_s": duration_s, "label": "music",
                      "instruments": sorted(chosen)}],
    })  # fmt: skip
    return name


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def demo_enrolled_voices(*, seed: int = 0, calls: int = DEFAULT_CALLS) -> dict[str, Voice]:
    """The voices the demo registry should know, by identity: the agents and the
    callers of even-numbered calls (odd-numbered calls have strangers)."""
    enrolled: dict[str, Voice] = {}
    for i in range(calls):
        agent, caller, _ = _demo_cast(seed, i)
        enrolled[agent.identity] = agent
        if i % 2 == 0:
            enrolled[caller.identity] = caller
    return enrolled


def build_demo(
    out: Path,
    *,
    seed: int = 0,
    calls: int = DEFAULT_CALLS,
    music_tracks: int = DEFAULT_MUSIC_TRACKS,
    scale: float = 1.0,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render demo calls and music tracks with ground-truth timelines; returns ``out``.

    ``scale`` multiplies every part of a call and the music tracks' length (a quick
    demo for tests: ``scale=0.5`` gives 13–21 s calls and 15 s tracks, with the
    same voices and structure); enrollment clips keep their length.

    Speech in the calls uses the identities of ``speakers`` (same ``seed``,
    default size) for agents and enrolled callers, and the held-out identities
    for callers of odd-numbered calls, so a registry enrolled from ``speakers``
    should name the former and reject the latter.
    """
    check_tools()
    require_tool("fluidsynth")
    if not scale > 0:
        raise ValueError(f"demo scale {scale!r} must be > 0")
    tasks = [partial(_demo_call, out, seed, i, scale) for i in range(calls)]
    tasks += [partial(_demo_music, out, seed, i, 30.0 * scale) for i in range(music_tracks)]
    enrolled = demo_enrolled_voices(seed=seed, calls=calls)
    tasks += [partial(_demo_enrollment, out, seed, v) for v in enrolled.values()]
    _run("demo", tasks, jobs=jobs, progress=progress)
    return out
