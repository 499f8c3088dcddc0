"""Variants of scene/4's recipe, each measured as its card would list it (issue #25).

Why a driver and not ``python -m models.zoo build``: the runs share one prepared data
set (scene/4's split and augmentation draws, seed 0; features once per process), differ
in the network, learning rate or initialization seed, and each is exported to ONNX
(``.tympan/exp/models/<run>``) and measured on the synthetic hold-out, on the real
*validation* clips (scene/3's and scene/4's kinds, 16 kHz and through the 8 kHz μ-law
round trip of ``models.realset.build.write_clip``) and on the real evaluation set
(conversation windows inside speech turns, with the labels the missed ones got; music
and spoken clips). The real-set figures are reported, never selected on.

usage: PYTHONPATH=. python scripts/scene_runs.py RUN [RUN ...]
RUN: ``name:key=value,...``; keys: ``init`` (TrainConfig.init_seed), ``filters``
(``stem/b1/b2/b3``), ``lr``, ``patience``, ``epochs``, ``avg`` (TrainConfig.average_from:
ship the mean of the weights from that epoch on; ``epochs`` is then the budget and
``best_epoch`` only says where the validation loss was lowest), ``ema``
(TrainConfig.ema_momentum: ship the per-step moving average); the augmentation keys ``tel``
(telephony_prob), ``band`` (phone_band_prob), ``copies`` are read from the first RUN and
hold for all. One JSON line per run is appended to ``.tympan/exp/results.jsonl``.
Needs the rendered corpus ``.tympan/corpus/scene-seed0`` (``python -m models.corpus scene
--seed 0 --per-class 100 --out .tympan/corpus/scene-seed0``), the real training clips
(``python -m models.realtrain build``) and the built real set (``make real-set``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from models.architectures import CnnConfig, build_cnn, count_macs
from models.realset.build import write_clip
from models.realset.evaluate import scene_figures
from models.realtrain.build import ClipSettings, default_cache, manifest_path
from models.train import (
    GOLDEN_WINDOWS,
    TrainedModel,
    _evaluate,
    _fit,
    _probabilities,
    configure_tensorflow,
    prepare_data,
)
from models.zoo.recipes import SCENE_V4, breakdown, real_training_split
from stream.audio.files import load_audio
from stream.inference.clips import predict_file
from stream.inference.session import OnnxModel

OUT = Path(".tympan/exp")
REALSET = Path.home() / ".cache/tympan/realset/set"
DATA = Path(".tympan/corpus/scene-seed0")


def parse(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition(":")
    return name, dict(kv.split("=") for kv in rest.split(",") if kv)


def val_clip_sets() -> dict[str, list[tuple[Path, str]]]:
    """Real validation clips (never the eval set): default (scene/3) and floored (scene/4)."""
    out = {}
    for tag, settings in (("plain", ClipSettings()), ("floored", SCENE_V4.real_clips)):
        doc = json.loads(manifest_path(default_cache(), settings).read_text())
        folder = default_cache() / f"scene{settings.tag}"
        out[tag] = [
            (folder / c["label"] / f"{c['id']}.wav", c["label"])
            for c in doc["clips"]
            if c["split"] == "val"
        ]
    return out


def phone_copies(clips: list[tuple[Path, str]], tmp: Path) -> list[tuple[Path, str]]:
    out = []
    for path, label in clips:
        target = tmp / path.parent.parent.name / label / path.name
        if not target.exists():
            y, _ = load_audio(path, sr=16000)
            write_clip(target, y, phone=True)
        out.append((target, label))
    return out


def window_accuracy(model: OnnxModel, clips: list[tuple[Path, str]]) -> dict[str, float]:
    hits = Counter()
    total = Counter()
    for path, label in clips:
        pred = predict_file(model, path)
        top = np.asarray(model.labels)[np.argmax(pred.output.probabilities, axis=1)]
        hits[label] += int((top == label).sum())
        total[label] += top.size
    out = {k: round(hits[k] / total[k], 4) for k in total}
    out["all"] = round(sum(hits.values()) / sum(total.values()), 4)
    return out


def conversation(model: OnnxModel, base: Path) -> dict[str, object]:
    """The real set's scene figures (``models.realset.evaluate.scene_figures``) in
    this driver's row format."""
    f = scene_figures(model, base)
    return {
        "conv": f["conversation_speech_rate"],
        "n": f["conversation_windows"],
        "missed_as": f["conversation_missed_as"],
        "missed_in": f["conversation_missed_in"],
        "music": f"{f['music_clips_right']}/{f['music_clips']}",
        "music_heard": f["music_clips_heard"],
        "spoken": f"{f['speech_clips_right']}/{f['speech_clips']}",
    }


def main(specs: list[str]) -> None:
    runs = [parse(s) for s in specs]
    aug = runs[0][1]
    base_aug = SCENE_V4.train.augment
    augment = dataclasses.replace(
        base_aug,
        telephony_prob=float(aug.get("tel", base_aug.telephony_prob)),
        phone_band_prob=float(aug.get("band", base_aug.phone_band_prob)),
        copies=int(aug.get("copies", base_aug.copies)),
    )
    base = dataclasses.replace(SCENE_V4.train, seed=0, progress=False, augment=augment)
    t0 = time.monotonic()
    data = prepare_data(
        DATA, spec=SCENE_V4.spec, config=base, extra=real_training_split(SCENE_V4.real_clips)
    )
    prep_s = time.monotonic() - t0
    print(f"prepared in {prep_s:.0f} s; windows {[len(v) for v in data.sets.values()]}", flush=True)
    vals = val_clip_sets()
    tmp = OUT / "phone-val"
    vals_phone = {k: phone_copies(v, tmp) for k, v in vals.items()}
    for name, kv in runs:
        filters = [int(f) for f in kv.get("filters", "8/16/32/64").split("/")]
        config = dataclasses.replace(
            base,
            learning_rate=float(kv.get("lr", base.learning_rate)),
            patience=int(kv.get("patience", base.patience)),
            epochs=int(kv.get("epochs", base.epochs)),
            average_from=int(kv["avg"]) if "avg" in kv else None,
            ema_momentum=float(kv["ema"]) if "ema" in kv else None,
            cnn=CnnConfig(stem_filters=filters[0], block_filters=tuple(filters[1:])),
        )
        init = int(kv.get("init", "0"))
        t1 = time.monotonic()
        configure_tensorflow(seed=init, threads=config.threads)
        sets = data.sets
        model = build_cnn(
            SCENE_V4.spec.input_shape, len(data.labels), task="single", config=config.cnn
        )
        history = _fit(model, sets["train"], sets["val"], task="single", config=config)
        train_s = time.monotonic() - t1
        test = sets["test"]
        probs = _probabilities(model, test.x)
        report = {
            "test": _evaluate("single", test, probs, data.labels, None),
            "dataset": {"files": {k: len(v.clips) for k, v in sets.items()}, "skipped": []},
            "training": {},
        }
        trained = TrainedModel(
            model=model,
            spec=SCENE_V4.spec,
            labels=data.labels,
            task="single",
            thresholds=None,
            golden_x=test.x[:GOLDEN_WINDOWS],
            macs=count_macs(model),
            report=report,
            history=history,
            test_set=test,
            test_probabilities=probs,
        )
        repo = OUT / "models" / name
        target = trained.export(repo, name="scene", version="1", overwrite=True)
        onnx = OnnxModel.load(target)
        val_loss = history["val_loss"]
        row = {
            "run": name,
            "spec": kv,
            "augment": {
                "tel": augment.telephony_prob,
                "band": augment.phone_band_prob,
                "copies": augment.copies,
            },
            "macs": trained.macs,
            "params": int(model.count_params()),
            "best_epoch": int(np.argmin(val_loss)) + 1,
            "epochs_run": len(val_loss),
            "average_from": config.average_from,
            "ema_momentum": config.ema_momentum,
            "train_s": round(train_s),
            "holdout_win": round(report["test"]["windows"]["accuracy"], 4),
            "holdout_f1": round(report["test"]["windows"]["macro_f1"], 4),
            "holdout_file": round(report["test"]["files"]["accuracy"], 4),
            "holdout_recall": {
                k: round(v["recall"], 3) for k, v in report["test"]["windows"]["per_class"].items()
            },
            "by_channel": {
                k: v["window_accuracy"] for k, v in breakdown(trained, DATA, "channel").items()
            },
        }
        for kind in ("plain", "floored"):
            row[f"val_{kind}_16k"] = window_accuracy(onnx, vals[kind])
            row[f"val_{kind}_8k"] = window_accuracy(onnx, vals_phone[kind])
        row["rule_mean"] = round(
            (row["val_floored_16k"]["all"] + row["val_floored_8k"]["all"]) / 2, 4
        )
        for rate in ("16k", "8k-ulaw"):
            row[f"real_{rate}"] = conversation(onnx, REALSET / rate)
        with open("/proc/loadavg") as fh:
            row["load"] = fh.read().split()[:3]
        row["finished"] = time.strftime("%H:%M:%S")
        print(json.dumps(row), flush=True)
        with (OUT / "results.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
