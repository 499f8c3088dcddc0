"""Regenerate ``manifest.json`` from the extracted packages (a maintainer's step).

``python -m models.realset curate`` fetches every source, picks the clips by fixed
rules (sorted file names, no randomness) and writes each part's SHA-256. Run it only
when a pinned package version changes; ``build`` then checks the hashes.

Reserved for **evaluation** (never train on these): KLettres (every language),
KTuberling in the languages KLettres also has (the same volunteers may have recorded
both), ALSA's test voice, Drascula and ASC music, the LMMS and Sonic Pi instrument
samples. Reserved for **training**: KTuberling's other languages and the packages
listed under ``reserved_for_training``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.realset.sources import MANIFEST, Source, fetch_package, sha256_file

SOURCES: dict[str, dict[str, str]] = {
    "klettres-data": {
        "version": "4:22.12.3-1",
        "licence": "GPL-2+",
        "role": "evaluation",
        "content": "letters and syllables spoken by one native speaker per language",
    },
    "ktuberling-data": {
        "version": "4:22.12.3-1",
        "licence": "GPL-2+",
        "role": "evaluation (languages KLettres also has); training (the others)",
        "content": "object names spoken by native speakers, one voice per language",
    },
    "alsa-utils": {
        "version": "1.2.8-1",
        "licence": "GPL-2",
        "role": "evaluation",
        "content": "speaker-test's recorded English voice naming the channels",
    },
    "drascula-music": {
        "version": "1.0+ds4-2",
        "licence": "Drascula-License (free redistribution, Debian main)",
        "role": "evaluation",
        "content": "produced game soundtrack (Ogg Vorbis)",
    },
    "asc-music": {
        "version": "1.3-6",
        "licence": "GPL-2+",
        "role": "evaluation",
        "content": "produced game soundtrack (MP3)",
    },
    "lmms-common": {
        "version": "1.2.2+dfsg1-6",
        "licence": "GPL-2+",
        "role": "evaluation",
        "content": "recorded instrument samples (piano, organ, guitar, violin, flute, trumpet...)",
    },
    "sonic-pi-samples": {
        "version": "3.2.2~repack-8",
        "licence": "CC0-1.0 (freesound recordings)",
        "role": "evaluation",
        "content": "recorded instrument samples and drum loops",
    },
}

KLETTRES = "usr/share/klettres"
KTUBERLING = "usr/share/ktuberling/sounds"
ENROLLED = [
    "cs",
    "da",
    "de",
    "en",
    "en_GB",
    "es",
    "fr",
    "he",
    "hu",
    "it",
    "lt",
    "ml",
    "nds",
    "nl",
    "pt_BR",
    "ru",
    "uk",
]  # both alpha/ and syllab/
NEVER_ENROLLED = ("ar", "nb", "tn")
KTUBERLING_EVAL = ["da", "de", "en", "es", "fr", "it", "lt", "nds", "nl", "nn", "pt", "ru", "uk"]
KTUBERLING_TRAIN = [
    "ca",
    "el",
    "fi",
    "ga",
    "gl",
    "ro",
    "sl",
    "sr",
    "sr@ijekavian",
    "sr@ijekavianlatin",
    "sr@latin",
    "sv",
    "wa",
]
CONVERSATIONS = (("fr", "ru"), ("da", "uk"), ("nn", "lt"), ("de", "en"))
INSTRUMENTS = {
    "piano": [
        "lmms-common:usr/share/lmms/samples/instruments/piano02.ogg",
        "lmms-common:usr/share/lmms/samples/instruments/e_piano_accord02.ogg",
        "sonic-pi-samples:usr/share/sonic-pi/samples/ambi_piano.flac",
    ],
    "organ": [
        f"lmms-common:usr/share/lmms/samples/instruments/church_organ0{i}.ogg" for i in (1, 2, 3, 4)
    ]
    + ["lmms-common:usr/share/lmms/samples/instruments/e_organ01.ogg"],
    "guitar": [
        "lmms-common:usr/share/lmms/samples/instruments/steel_guitar01.ogg",
        "lmms-common:usr/share/lmms/samples/latin/latin_guitar01.ogg",
        "lmms-common:usr/share/lmms/samples/latin/latin_guitar03.ogg",
        "sonic-pi-samples:usr/share/sonic-pi/samples/guit_e_fifths.flac",
        "sonic-pi-samples:usr/share/sonic-pi/samples/guit_em9.flac",
        "sonic-pi-samples:usr/share/sonic-pi/samples/guit_harmonics.flac",
    ],
    "bass": ["lmms-common:usr/share/lmms/samples/instruments/bassslap02.ogg"],
    "violin": [
        "lmms-common:usr/share/lmms/samples/instruments/violin_fingered01.ogg",
        "lmms-common:usr/share/lmms/samples/instruments/violin_double_stop01.ogg",
    ],
    "trumpet": ["lmms-common:usr/share/lmms/samples/instruments/trumpet01.ogg"],
    "flute": ["lmms-common:usr/share/lmms/samples/instruments/flute01.ogg"],
    "drums": [
        "sonic-pi-samples:usr/share/sonic-pi/samples/loop_amen_full.flac",
        "sonic-pi-samples:usr/share/sonic-pi/samples/loop_breakbeat.flac",
        "lmms-common:usr/share/lmms/samples/beats/break01.ogg",
    ],
}
RESERVED_FOR_TRAINING: list[dict[str, Any]] = [
    {"package": "ktuberling-data", "languages": KTUBERLING_TRAIN},
    {"package": "hyperrogue-music", "content": "produced game music"},
    {"package": "nexuiz-music", "content": "produced game music"},
    {"package": "planetblupi-music-ogg", "content": "produced game music"},
    {"package": "fb-music-high", "content": "produced game music"},
    {"package": "hydrogen-drumkits", "content": "recorded drum kits"},
    {"package": "musescore-general-soundfont", "content": "sampled instruments"},
    {"package": "fluid-soundfont-gm", "content": "sampled instruments (instruments/2)"},
    {"package": "timgm6mb-soundfont", "content": "sampled instruments (instruments/2)"},
    {"package": "gcompris-qt-data", "content": "recorded instrument phrases (instruments/2)"},
]


def curate(cache: Path, out: Path = MANIFEST) -> dict[str, Any]:
    """Fetch every source, pick the clips and write the manifest; returns it."""
    roots = {
        name: fetch_package(Source(package=name, **meta), cache) for name, meta in SOURCES.items()
    }

    def part(source: str, path: str, speaker: str = "") -> dict[str, str]:
        sha = sha256_file(roots[source] / path)
        entry = {"source": source, "path": path, "sha256": sha}
        return {**entry, "speaker": speaker} if speaker else entry

    def files(source: str, folder: str) -> list[str]:
        root = roots[source]
        return sorted(str(p.relative_to(root)) for p in (root / folder).glob("*") if p.is_file())

    items: list[dict[str, Any]] = []
    items += _speaker_items(files, part)
    items += _scene_items(files, part)
    items += _instrument_items(part)
    doc = {
        "about": "Real-recording evaluation set (issue #25): python -m models.realset build",
        "sources": SOURCES,
        "reserved_for_training": RESERVED_FOR_TRAINING,
        "items": items,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def _chunks(paths: list[str], size: int) -> list[list[str]]:
    return [paths[i : i + size] for i in range(0, len(paths), size) if paths[i : i + size]]


def _speaker_items(files: Any, part: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for lang in ENROLLED:
        speaker = f"klettres-{lang}"
        syllab = files("klettres-data", f"{KLETTRES}/{lang}/syllab")
        half = len(syllab) // 2
        enroll = files("klettres-data", f"{KLETTRES}/{lang}/alpha") + syllab[:half]
        items.append(_voice("speaker-enroll", f"{speaker}-enroll", speaker, lang, enroll, part))
        for k, chunk in enumerate(_chunks(syllab[half:], 6)[:3]):
            items.append(_voice("speaker-test", f"{speaker}-test{k}", speaker, lang, chunk, part))
    for lang in NEVER_ENROLLED:
        speaker = f"klettres-{lang}"
        sub = "syllab" if files("klettres-data", f"{KLETTRES}/{lang}/syllab") else "alpha"
        clips = files("klettres-data", f"{KLETTRES}/{lang}/{sub}")
        for k, chunk in enumerate(_chunks(clips, 6)[:3]):
            items.append(_voice("speaker-test", f"{speaker}-test{k}", speaker, lang, chunk, part))
    alsa = files("alsa-utils", "usr/share/sounds/alsa")
    items.append(_voice("speaker-test", "alsa-en-test0", "alsa-en", "en", alsa, part))
    return items


def _voice(
    task: str, item_id: str, speaker: str, lang: str, paths: list[str], part: Any
) -> dict[str, Any]:
    source = "alsa-utils" if speaker.startswith("alsa") else "klettres-data"
    return {
        "id": item_id,
        "task": task,
        "label": "speech",
        "speaker": speaker,
        "language": lang,
        "gap_s": 0.25,
        "parts": [part(source, p) for p in paths],
    }


def _scene_items(files: Any, part: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for lang in KTUBERLING_EVAL:
        words = files("ktuberling-data", f"{KTUBERLING}/{lang}")[:12]
        items.append(
            {
                "id": f"ktuberling-{lang}-words",
                "task": "scene",
                "label": "speech",
                "speaker": f"ktuberling-{lang}",
                "language": lang,
                "gap_s": 0.15,
                "parts": [part("ktuberling-data", w) for w in words],
            }
        )
    for a, b in CONVERSATIONS:
        wa = files("ktuberling-data", f"{KTUBERLING}/{a}")[12:]
        wb = files("ktuberling-data", f"{KTUBERLING}/{b}")[12:]
        turns = min(len(wa), len(wb)) // 3
        parts = []
        for t in range(min(turns, 8)):
            parts += [part("ktuberling-data", w, f"ktuberling-{a}") for w in wa[3 * t : 3 * t + 3]]
            parts += [part("ktuberling-data", w, f"ktuberling-{b}") for w in wb[3 * t : 3 * t + 3]]
        items.append(
            {
                "id": f"conversation-{a}-{b}",
                "task": "conversation",
                "label": "speech",
                "speaker": "",
                "language": f"{a}+{b}",
                "gap_s": 0.1,
                "turn_gap_s": 0.5,
                "parts": parts,
            }
        )
    for source, folder in (
        ("drascula-music", "usr/share/scummvm/drascula/audio"),
        ("asc-music", "usr/share/games/asc/music"),
    ):
        for path in files(source, folder):
            stem = Path(path).stem
            items.append(
                {
                    "id": f"{source}-{stem}",
                    "task": "scene",
                    "label": "music",
                    "speaker": "",
                    "language": "",
                    "start_s": 10.0,
                    "duration_s": 20.0,
                    "parts": [part(source, path)],
                }
            )
    return items


def _instrument_items(part: Any) -> list[dict[str, Any]]:
    items = []
    for label, refs in INSTRUMENTS.items():
        for ref in refs:
            source, path = ref.split(":", 1)
            items.append(
                {
                    "id": f"{label}-{Path(path).stem}",
                    "task": "instrument",
                    "label": label,
                    "speaker": "",
                    "language": "",
                    "parts": [part(source, path)],
                }
            )
    return items
