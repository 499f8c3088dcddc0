"""What fusing scene/4 with Silero VAD would do (issue #25 point 4): a measurement, not a feature.

The rule measured: a window whose scene top label is ``noise`` or ``silence`` becomes
``speech`` when the voice activity model's speech share over the window reaches
``VadConfig.min_active`` (chunks at or over ``VadConfig.threshold``), the share computed
as the worker's conditioning stage computes ``job.speech`` (:meth:`VadContext.speech_share`
over the window's 16 kHz sample span). ``music`` and ``tone`` are never overridden. The
VAD settings are ``stream.speakers.vad.DEFAULT_VAD`` (Silero's threshold 0.5, min_active
0.3), fixed before any figure was seen; nothing here is tuned.

Stages, in the order they are meant to be run (the real set only after the others):

* ``holdout``: scene/4's synthetic hold-out (seed-0 split of the rendered corpus, the
  75 files / 553 windows of its card): window accuracy and per-class recall without and
  with fusion, and how many windows of each true class the fusion turns into ``speech``.
* ``val``: the real *validation* clips of the training sources (``scene_runs.val_clip_sets``,
  plain and floored; 16 kHz and through ``write_clip``'s 8 kHz μ-law round trip): window
  accuracy per label without and with fusion.
* ``real``: the real evaluation set's scene figures (``models.realset.evaluate.scene_figures``
  recomputed with and without fusion; the plain figures are checked against it).
* ``timing``: one thread, the VAD's cost per 1 s window of one stream (31.25 chunks of
  512 samples, as conditioning pushes them) beside scene/4's cost per window, alternated.

usage: PYTHONPATH=. python scripts/fusion_study.py STAGE [STAGE ...]
  [--corpus .tympan/corpus/scene-seed0]; one JSON line per stage on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from stream.audio.files import audio_files, load_audio
from stream.inference.clips import predict_file
from stream.inference.session import OnnxModel
from stream.speakers.vad import DEFAULT_VAD, SR, SileroVad, VadBank

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = Path("models/zoo/scene/4")
REALSET = Path.home() / ".cache/tympan/realset/set"
OVERRIDABLE = ("noise", "silence")


def vad_speech(vad: SileroVad, path: Path, spans: np.ndarray, sr: int) -> np.ndarray:
    """``job.speech`` of each window ``[start, end)`` (samples at ``sr`` = 16 kHz), as the
    conditioning stage decides it: share of the window's chunks over the threshold
    reaches ``min_active``; a window with no scored chunk is not speech."""
    assert sr == SR, f"spans at {sr} Hz, the VAD counts at {SR} Hz"
    y, _ = load_audio(path, sr=SR)
    bank = VadBank(vad, history_chunks=None)
    bank.push({"clip": y}, last=True)
    ctx = bank.context("clip")
    out = np.zeros(len(spans), dtype=bool)
    for i, (start, end) in enumerate(spans):
        share = ctx.speech_share(int(start), int(end), DEFAULT_VAD.threshold)
        out[i] = share is not None and share >= DEFAULT_VAD.min_active
    return out


def scored(model: OnnxModel, vad: SileroVad, path: Path) -> dict[str, Any]:
    """Top labels of ``path``'s windows, plain and fused, with spans and padding."""
    pred = predict_file(model, path)
    top = np.asarray(model.labels)[np.argmax(pred.output.probabilities, axis=1)]
    speech = vad_speech(vad, path, pred.windows.spans, pred.sr)
    fused = np.where(np.isin(top, OVERRIDABLE) & speech, "speech", top)
    return {"top": top, "fused": fused, "vad": speech, "pred": pred}


def accuracy(rows: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Per-label and overall window accuracy of ``(truth, tops)`` pairs."""
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for label, tops in rows:
        hits[label] += int((tops == label).sum())
        total[label] += tops.size
    out = {k: round(hits[k] / total[k], 4) for k in sorted(total)}
    out["all"] = round(sum(hits.values()) / sum(total.values()), 4)
    out["n"] = sum(total.values())
    return out


def holdout(model: OnnxModel, vad: SileroVad, corpus: Path) -> dict[str, Any]:
    """scene/4's synthetic hold-out without and with fusion."""
    from models.datasets import AudioCache, load_clips, scan_dataset, split_by_file
    from models.zoo.recipes import SCENE_V4

    cfg = SCENE_V4.train
    index = scan_dataset(corpus, task="single")
    usable, _ = load_clips(index.clips, AudioCache(SCENE_V4.spec))
    test = split_by_file(
        usable, seed=0, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction
    ).test
    plain, fused = [], []
    to_speech: Counter[str] = Counter()
    vad_on: Counter[str] = Counter()
    for clip in test:
        (label,) = clip.labels
        s = scored(model, vad, clip.path)
        plain.append((label, s["top"]))
        fused.append((label, s["fused"]))
        to_speech[label] += int(((s["fused"] == "speech") & (s["top"] != "speech")).sum())
        vad_on[label] += int(s["vad"].sum())
    return {
        "stage": "holdout",
        "files": len(test),
        "plain": accuracy(plain),
        "fused": accuracy(fused),
        "turned_to_speech_by_true_class": dict(to_speech),
        "vad_speech_windows_by_true_class": dict(vad_on),
    }


def validation(model: OnnxModel, vad: SileroVad) -> dict[str, Any]:
    """Real validation clips (plain and floored; 16 kHz and 8 kHz μ-law)."""
    from scene_runs import phone_copies, val_clip_sets

    out: dict[str, Any] = {"stage": "val"}
    tmp = Path(".tympan/exp/phone-val")
    for kind, clips in val_clip_sets().items():
        for rate, files in (("16k", clips), ("8k", phone_copies(clips, tmp))):
            plain, fused = [], []
            missed: Counter[str] = Counter()  # speech windows missed, by what they were heard as
            missed_vad: Counter[str] = Counter()  # ... of which the VAD calls speech
            for path, label in files:
                s = scored(model, vad, path)
                plain.append((label, s["top"]))
                fused.append((label, s["fused"]))
                if label == "speech":
                    wrong = s["top"] != "speech"
                    missed.update(s["top"][wrong].tolist())
                    missed_vad.update(s["top"][wrong & s["vad"]].tolist())
            out[f"{kind}_{rate}"] = {
                "plain": accuracy(plain),
                "fused": accuracy(fused),
                "speech_missed_as": dict(missed),
                "speech_missed_vad_on": dict(missed_vad),
            }
    return out


def real_set(model: OnnxModel, vad: SileroVad) -> dict[str, Any]:
    """``scene_figures``' conversation / music / spoken figures, plain and fused."""
    from models.realset.evaluate import scene_figures

    out: dict[str, Any] = {"stage": "real"}
    for rate in ("16k", "8k-ulaw"):
        base = REALSET / rate
        figures = _real(model, vad, base)
        check = scene_figures(model, base)
        assert check["conversation_speech_rate"] == figures["plain"]["conversation"], check
        out[rate] = figures
    return out


def _real(model: OnnxModel, vad: SileroVad, base: Path) -> dict[str, dict[str, Any]]:
    keys = {"plain": "top", "fused": "fused"}
    inside = 0
    hits: Counter[str] = Counter()
    missed_as: dict[str, Counter[str]] = {k: Counter() for k in keys}
    missed_in: dict[str, Counter[str]] = {k: Counter() for k in keys}
    for wav in audio_files(base / "conversation"):
        turns = json.loads(wav.with_suffix(".turns.json").read_text())
        s = scored(model, vad, wav)
        pred = s["pred"]
        for i, ((start, end), padded) in enumerate(
            zip(pred.times_s(), pred.windows.padded, strict=True)
        ):
            if padded or not any(a <= start and end <= b for a, b in turns):
                continue
            inside += 1
            for name, key in keys.items():
                label = str(s[key][i])
                hits[name] += label == "speech"
                if label != "speech":
                    missed_as[name][label] += 1
                    missed_in[name][wav.name] += 1
    out: dict[str, dict[str, Any]] = {
        name: {
            "conversation": round(hits[name] / inside, 4),
            "n": inside,
            "missed_as": dict(missed_as[name]),
            "missed_in": dict(missed_in[name]),
        }
        for name in keys
    }
    for label in ("speech", "music"):
        verdicts: dict[str, list[str]] = {k: [] for k in keys}
        for path in audio_files(base / "scene" / label):
            s = scored(model, vad, path)
            for name, key in keys.items():
                verdicts[name].append(_verdict(model, s[key]))
        for name in keys:
            v = verdicts[name]
            out[name][f"{label}_clips"] = f"{sum(x == label for x in v)}/{len(v)}"
            out[name][f"{label}_heard"] = dict(Counter(v))
    return out


def _verdict(model: OnnxModel, tops: np.ndarray) -> str:
    """The label of most windows, ties to the first in ``model.labels`` (``_clip_top``)."""
    index = [model.labels.index(str(t)) for t in tops]
    return str(model.labels[int(np.bincount(index, minlength=len(model.labels)).argmax())])


def timing(model: OnnxModel, vad: SileroVad, rounds: int = 7, windows: int = 200) -> dict[str, Any]:
    """Seconds per 1 s window (hop 0.5 s: a stream makes two windows a second): scene/4
    on one window, and the VAD on the 0.5 s of new audio each window brings (as
    conditioning pushes each stream's samples), alternated in rounds, one thread."""
    rng = np.random.default_rng(0)
    hop = SR // 2
    audio = (0.1 * rng.standard_normal(hop * windows)).astype(np.float32)
    x = rng.standard_normal((1, *model.spec.input_shape)).astype(np.float32)
    scene_s, vad_s, vad16_s = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(windows):
            model.run(x)
        scene_s.append((time.perf_counter() - t) / windows)
        bank = VadBank(vad)
        t = time.perf_counter()
        for k in range(windows):
            bank.push({"s": audio[k * hop : (k + 1) * hop]})
        vad_s.append((time.perf_counter() - t) / windows)
        bank = VadBank(vad)
        t = time.perf_counter()
        for k in range(windows // 16):
            bank.push({f"s{j}": audio[k * hop : (k + 1) * hop] for j in range(16)})
        vad16_s.append((time.perf_counter() - t) / (windows // 16 * 16))
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    return {
        "stage": "timing",
        "scene_ms_per_window": round(1e3 * float(np.median(scene_s)), 3),
        "vad_ms_per_window_1_stream": round(1e3 * float(np.median(vad_s)), 3),
        "vad_ms_per_window_16_streams_batched": round(1e3 * float(np.median(vad16_s)), 3),
        "rounds": rounds,
        "windows_per_round": windows,
        "load_after": load,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="+", choices=("holdout", "val", "real", "timing"))
    parser.add_argument("--corpus", type=Path, default=Path(".tympan/corpus/scene-seed0"))
    args = parser.parse_args(argv)
    model = OnnxModel.load(MODEL, device="cpu", intra_op_threads=1)
    vad = SileroVad(intra_op_threads=1)
    for stage in args.stages:
        t = time.monotonic()
        if stage == "holdout":
            row = holdout(model, vad, args.corpus)
        elif stage == "val":
            row = validation(model, vad)
        elif stage == "real":
            row = real_set(model, vad)
        else:
            row = timing(model, vad)
        row["seconds"] = round(time.monotonic() - t)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
