"""Each shipped model's figures on the built real-recording set.

* scene (the default label model), at 16 kHz and at 8 kHz μ-law: the share of 1 s
  windows lying wholly inside a conversation's speech turns that come out ``speech``;
  spoken clips whose verdict (top label of most windows) is ``speech``; music pieces
  whose verdict is ``music``.
* speaker (the default embedding model, with the enrollment gate ``tympan speakers
  enroll`` uses, scene veto included): voices that enroll from their first 20 s of speech,
  identification accuracy among the enrolled, never-enrolled clips rejected.
* instruments: top-1 of the mean window probabilities on solo recordings, and the tags
  over the model's thresholds on those means (own tag, wrong tags).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from stream.audio.files import audio_files, load_audio
from stream.errors import RegistryError
from stream.inference.clips import predict_file
from stream.inference.evaluation import files_from_csv
from stream.inference.repository import resolve_model_dir
from stream.inference.session import OnnxModel
from stream.roles import Role
from stream.speakers.calibration import unit
from stream.speakers.embedder import SceneVeto, SpeakerEmbedder
from stream.speakers.evaluation import binding, enrollment_embeddings
from stream.speakers.registry import SpeakerRegistry
from stream.speakers.scoring import UNKNOWN

RATES = ("16k", "8k-ulaw")
ENROLL_SECONDS = 20.0  # `tympan speakers enroll --max-seconds` default (seconds of speech)


def evaluate_all(root: Path) -> dict[str, Any]:
    """Figures of the default scene, speaker and instrument models on ``root``."""
    scene_dir = resolve_model_dir(None, role=Role.LABEL)
    scene = OnnxModel.load(scene_dir)
    embedder = SpeakerEmbedder(resolve_model_dir(None, role=Role.SPEAKER))
    instruments = OnnxModel.load(resolve_model_dir("instruments"))
    veto = SceneVeto(scene_dir)
    report: dict[str, Any] = {"models": {}, "set": str(root)}
    for rate in RATES:
        base = root / rate
        report[f"scene@{rate}"] = scene_figures(scene, base)
        report[f"speaker@{rate}"] = speaker_figures(embedder, base / "speakers", veto)
    report["instruments"] = instrument_figures(instruments, root / "16k" / "instruments")
    for key, model in (("scene", scene), ("instruments", instruments)):
        report["models"][key] = f"{model.manifest.name}/{model.manifest.version}"
    report["models"]["speaker"] = "/".join(embedder.model_id)
    return report


def scene_figures(model: OnnxModel, base: Path) -> dict[str, Any]:
    """Conversation windows inside turns → speech; spoken clips → speech; music → music."""
    inside = hits = 0
    missed_as: Counter[str] = Counter()
    missed_in: Counter[str] = Counter()
    for wav in audio_files(base / "conversation"):
        turns = json.loads(wav.with_suffix(".turns.json").read_text())
        pred = predict_file(model, wav)
        labels = np.asarray(model.labels)[np.argmax(pred.output.probabilities, axis=1)]
        for (start, end), label, padded in zip(
            pred.times_s(), labels, pred.windows.padded, strict=True
        ):
            if not padded and any(a <= start and end <= b for a, b in turns):
                inside += 1
                hits += label == "speech"
                if label != "speech":
                    missed_as[str(label)] += 1
                    missed_in[wav.name] += 1
    out: dict[str, Any] = {"conversation_windows": inside}
    out["conversation_speech_rate"] = round(hits / inside, 4) if inside else None
    out["conversation_missed_as"] = dict(missed_as)  # what the missed windows were heard as
    out["conversation_missed_in"] = dict(missed_in)  # and in which conversation
    for label in ("speech", "music"):
        verdicts = [_clip_top(model, p) for p in audio_files(base / "scene" / label)]
        out[f"{label}_clips"] = len(verdicts)
        out[f"{label}_clips_right"] = sum(v == label for v in verdicts)
        out[f"{label}_clips_heard"] = dict(Counter(verdicts))
    return out


def _clip_top(model: OnnxModel, path: Path) -> str:
    """The top label of most windows (the verdict ``tympan classify`` gives)."""
    pred = predict_file(model, path)
    tops = np.argmax(pred.output.probabilities, axis=1)
    return str(model.labels[int(np.bincount(tops, minlength=len(model.labels)).argmax())])


def speaker_figures(
    embedder: SpeakerEmbedder, speakers: Path, veto: SceneVeto | None
) -> dict[str, Any]:
    """Enroll every ``enroll/<speaker>``, identify every ``test/<speaker>`` clip."""
    registry = SpeakerRegistry.empty(binding(embedder), config=embedder.calibration)
    refused: dict[str, str] = {}
    folders = sorted(p for p in (speakers / "enroll").iterdir() if p.is_dir())
    for folder in folders:
        try:
            emb = enrollment_embeddings(
                embedder, audio_files(folder), max_seconds=ENROLL_SECONDS, scene_veto=veto
            )
        except RegistryError as exc:
            refused[folder.name] = str(exc).split(": ", 1)[-1][:160]
            continue
        registry = registry.with_speaker(folder.name, emb, model=registry.model)
    enrolled = set(registry.speakers)
    known = right = unknown = rejected = 0
    mistakes: list[str] = []
    scorer = registry.scorer() if enrolled else None
    for folder in sorted(p for p in (speakers / "test").iterdir() if p.is_dir()):
        if folder.name in refused:
            continue  # its voice could not enroll: counted under enroll_rate
        for path in audio_files(folder):
            who = _identify(embedder, scorer, path)
            if folder.name in enrolled:
                known += 1
                right += who == folder.name
            else:
                unknown += 1
                rejected += who == UNKNOWN
            if who != (folder.name if folder.name in enrolled else UNKNOWN):
                mistakes.append(f"{path.name} → {who}")
    return {
        "voices": len(folders),
        "enrolled": len(enrolled),
        "enroll_rate": round(len(enrolled) / len(folders), 4) if folders else None,
        "refused": refused,
        "identification": round(right / known, 4) if known else None,
        "identification_clips": known,
        "unknown_rejection": round(rejected / unknown, 4) if unknown else None,
        "unknown_clips": unknown,
        "mistakes": mistakes,
    }


def _identify(embedder: SpeakerEmbedder, scorer: Any, path: Path) -> str:
    if scorer is None:
        return UNKNOWN
    y, _ = load_audio(path, sr=embedder.spec.sr)
    emb = embedder.embed_clip(y)
    if emb.shape[0] == 0:
        return UNKNOWN
    verdict = scorer.identify(unit(emb.mean(axis=0))[None, :])[0]
    return str(verdict.speaker)


def instrument_figures(model: OnnxModel, folder: Path) -> dict[str, Any]:
    """Top-1 of the clip's mean window probabilities against its one label, and the tags
    over the model's thresholds on those means.

    Why the tags too: a worker emits every tag over its threshold, not the top one, so a
    model that ranks as well but puts fewer wrong tags over threshold serves better.
    ``own_over``: solos whose own tag is over its threshold; ``others_over``: wrong tags
    over theirs, summed over the solos. ``heard`` gives ``label → top (tags over)``.
    """
    rows = files_from_csv(folder / "labels.csv")
    thresholds = np.asarray(model.manifest.thresholds or [0.5] * len(model.labels))
    right = own_over = others_over = 0
    heard: dict[str, str] = {}
    for row in rows:
        mean = predict_file(model, row.path).output.probabilities.mean(axis=0)
        top = model.labels[int(np.argmax(mean))]
        over = [label for label, on in zip(model.labels, mean >= thresholds, strict=True) if on]
        right += top in row.labels
        own_over += any(label in row.labels for label in over)
        others_over += sum(label not in row.labels for label in over)
        heard[row.path.name] = f"{'/'.join(row.labels)} → {top} ({', '.join(over) or '—'})"
    return {
        "clips": len(rows),
        "top1": round(right / len(rows), 4) if rows else None,
        "own_over": own_over,
        "others_over": others_over,
        "heard": heard,
    }


def print_report(report: dict[str, Any]) -> str:
    """The figures as a short table (what ``make eval-real`` prints)."""
    lines = [f"real-recording set {report['set']}; models {report['models']}"]
    for rate in RATES:
        s = report[f"scene@{rate}"]
        lines.append(
            f"scene @{rate}: conversation windows → speech {s['conversation_speech_rate']} "
            f"(n={s['conversation_windows']}); spoken clips → speech "
            f"{s['speech_clips_right']}/{s['speech_clips']}; music pieces → music "
            f"{s['music_clips_right']}/{s['music_clips']} (heard {s['music_clips_heard']})"
        )
    for rate in RATES:
        k = report[f"speaker@{rate}"]
        lines.append(
            f"speaker @{rate}: enrolled {k['enrolled']}/{k['voices']}; identification "
            f"{k['identification']} (n={k['identification_clips']}); never-enrolled rejected "
            f"{k['unknown_rejection']} (n={k['unknown_clips']})"
        )
        lines += [f"  refused {name}: {why}" for name, why in k["refused"].items()]
    i = report["instruments"]
    lines.append(
        f"instruments: top-1 {i['top1']} on {i['clips']} solos; own tag over its threshold "
        f"{i['own_over']}/{i['clips']}, other tags over theirs {i['others_over']}"
    )
    lines += [f"  {name}: {what}" for name, what in i["heard"].items()]
    return "\n".join(lines)
