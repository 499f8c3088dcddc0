"""The open-set threshold of a speaker embedding model, calibrated on real voices.

A registry with one enrolled speaker has no impostors of its own to calibrate
against (``stream/speakers/calibration.py``); it falls back to the model's
``metrics.open_set_threshold``. This script measures that figure on recorded
voices that are neither the real-recording evaluation set's (KLettres, KTuberling,
ALSA) nor its languages' volunteers: the telephone prompts Debian packages for
Asterisk, one professional voice per package, recorded by people (seven voices:
en-US Allison, fr-CA June, it Carlo, ru, es-CO, fr Armelle, it Menardi; the
Spanish core sounds are Allison again and are left out; licences CC-BY-SA-3.0,
GPL-2 and a permissive one, as each package's ``copyright`` says).

For each voice, 60 prompts (every 6th of its sorted files, ``silence/`` left out)
are decoded by ffmpeg to 16 kHz, joined with 0.25 s gaps and cut into the model's
windows; the first 40 windows the voice activity model hears as speech (~20 s,
what ``tympan speakers enroll`` keeps) are that voice's enrollment. The threshold
is :func:`stream.speakers.calibration.calibrate` on those voices (leave-one-out
genuine segments against impostor segments at 1 % false accepts).

``python -m models.speaker_calibration [--model speaker-embed/2]`` prints the
figures as JSON; the model card and ``manifest.json`` → ``metrics`` carry them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.realset.sources import RealSetError, Source, fetch_package
from stream.inference.repository import resolve_model_dir
from stream.roles import Role
from stream.speakers.calibration import calibrate
from stream.speakers.embedder import SpeakerEmbedder, clip_windows
from stream.types import Float32

SR = 16_000
SOURCES = (
    Source("asterisk-core-sounds-en-g722", "1.6.1-1", "CC-BY-SA-3.0", "calibration", "en"),
    Source("asterisk-core-sounds-fr-g722", "1.6.1-1", "CC-BY-SA-3.0", "calibration", "fr"),
    Source("asterisk-core-sounds-it-g722", "1.6.1-1", "CC-BY-SA-3.0", "calibration", "it"),
    Source("asterisk-core-sounds-ru-g722", "1.6.1-1", "CC-BY-SA-3.0", "calibration", "ru"),
    Source("asterisk-prompt-es-co", "0.20070403-2.1", "GPL-2", "calibration", "es-co"),
    Source("asterisk-prompt-fr-armelle", "20070613-2.2", "permissive", "calibration", "fr"),
    Source(
        "asterisk-prompt-it-menardi-wav",
        "1:1.4.22+mm20110907-3.1",
        "CC-BY-SA-3.0",
        "calibration",
        "it",
    ),
)
FORMATS = {".g722": ["-f", "g722"], ".gsm": ["-f", "gsm"], ".wav": []}
PROMPTS = 60
EVERY = 6
WINDOWS = 40


def prompts(root: Path) -> list[Path]:
    """The voice's prompts this calibration reads (fixed rule, no randomness)."""
    files = sorted(
        p
        for p in (root / "usr" / "share" / "asterisk" / "sounds").rglob("*")
        if p.suffix in FORMATS and "silence" not in p.parts
    )
    return files[::EVERY][:PROMPTS]


def decode(path: Path) -> Float32:
    """One prompt as 16 kHz mono float32 (raw G.722 and GSM need their format named)."""
    cmd = ["ffmpeg", "-v", "error", *FORMATS[path.suffix], "-i", str(path)]
    cmd += ["-f", "f32le", "-ac", "1", "-ar", str(SR), "-"]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        raise RealSetError(f"ffmpeg cannot decode {path}: {done.stderr.decode(errors='replace')}")
    return np.frombuffer(done.stdout, dtype=np.float32).copy()


def voice_windows(embedder: SpeakerEmbedder, files: Sequence[Path]) -> Float32:
    """The first ``WINDOWS`` speech-window embeddings of a voice's prompts."""
    gap = np.zeros(SR // 4, np.float32)
    audio = np.concatenate([np.concatenate([decode(p), gap]) for p in files])
    cut = clip_windows(audio, embedder.spec)
    return embedder.embed_windows(cut.features[cut.speech][:WINDOWS])


def measure(model: str, cache: Path) -> dict[str, Any]:
    """The calibration figures of ``model`` on the Asterisk voices."""
    embedder = SpeakerEmbedder(resolve_model_dir(model, role=Role.SPEAKER))
    by_voice = {
        source.package: voice_windows(embedder, prompts(fetch_package(source, cache)))
        for source in SOURCES
    }
    result = calibrate(by_voice)
    return {
        "model": "/".join(embedder.model_id),
        "open_set_threshold": round(result.threshold, 4),
        "calibration": result.to_dict(),
        "voices": {k: int(v.shape[0]) for k, v in by_voice.items()},
        "sources": [
            {"package": s.package, "version": s.version, "licence": s.licence} for s in SOURCES
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.speaker_calibration")
    parser.add_argument("--model", default="speaker-embed/2")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "tympan" / "speaker-calibration"
    )
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.cache), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
