"""``tympan evaluate MODEL DATA_DIR [--json] [--out DIR]``: score a model on labelled audio.

``MODEL`` is a model directory, ``name`` or ``name/version`` in the repository
(``--model-repo``, else ``$TYMPAN_MODEL_REPO``, else ``models/zoo``). ``DATA_DIR`` holds one
sub-folder per label, or a ``labels.csv`` (``path,tags``) for a multi-label model.
Scores come at window level and at clip level (the clip's verdict, as ``tympan
classify`` and the worker's summary give it: mean probability per tag thresholded for
multi-label models, the top label of the most windows for single-label ones); see
docs/models.md. ``--out DIR`` writes
``evaluation.json`` and confusion-matrix PNGs there. Unreadable files are listed and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stream.cli.classify import add_model_arguments, load_model
from stream.cli.help import examples
from stream.errors import ContractError
from stream.inference.evaluation import Evaluation, evaluate, save_confusion_png, scan_labelled


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score an ONNX model on a labelled folder (accuracy, P/R/F1, mAP)",
        description=__doc__,
        **examples(
            "tympan evaluate scene data/scenes/                 # latest scene model",
            "tympan evaluate instruments/1 data/tags/ --json --out reports/",
        ),
    )
    parser.add_argument("model_ref", metavar="MODEL", help="model dir, NAME or NAME/VERSION")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="labelled folder or CSV")
    add_model_arguments(parser, model_option=False)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--out", type=Path, default=None, help="write JSON and PNGs here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        model = load_model(args, model_ref=args.model_ref)
        data = scan_labelled(args.data)
        result = evaluate(model, data, batch_size=args.batch_size)
    except ContractError as exc:
        print(f"tympan evaluate: {exc}", file=sys.stderr)
        return 2
    for item in result.skipped:
        print(f"tympan evaluate: skipped {item['error']}", file=sys.stderr)
    if args.out is not None:
        write_outputs(result, args.out)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_summary(result)
    return 0


def write_outputs(result: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    for level, cm in result.confusion.items():
        save_confusion_png(
            cm, result.labels, out / f"confusion_{level}.png", title=f"{result.model} ({level})"
        )


def print_summary(result: Evaluation) -> None:
    s = result.scores
    print(f"model {result.model}: {result.n_files} files, {result.n_windows} windows")
    if result.task == "single":
        print(f"accuracy: window {s['window_accuracy']:.3f}  clip {s['clip_accuracy']:.3f}")
        table, head = s["per_class"], "label"
    else:
        print(f"mAP: window {_fmt(s['window_map'])}  clip {_fmt(s['clip_map'])}")
        table, head = s["per_tag"], "tag"
    width = max(len(head), *(len(k) for k in table))
    print(f"{head:<{width}}  precision  recall     f1  support   (clip level)")
    for label, row in table.items():
        print(
            f"{label:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
            f"{row['f1']:5.3f}  {row['support']:7d}"
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
