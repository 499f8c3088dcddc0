"""``tympan export MODEL.keras --model-repo REPO ...``: convert a trained Keras model for serving.

Writes ``REPO/<name>/<version>/{model.onnx, manifest.json, golden.npz}`` after the
parity gate (Keras vs onnxruntime within 1e-4) passed. Defaults come from the
``report.json`` that ``tympan train`` writes next to the ``.keras`` file (name,
version, task, labels, thresholds, MACs, metrics); the FeatureSpec from ``--spec``,
else a ``spec.json`` beside the model, else the default FeatureSpec — which must then
hash to the report's ``spec_hash``. Parity windows come from ``--golden`` (``.npy``, or
``.npz`` with ``x``), else from synthetic audio through the FeatureSpec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np

from stream.cli.help import examples, renamed
from stream.errors import ContractError, FeatureSpecError, ModelError
from stream.features.spec import FeatureSpec, read_spec
from stream.roles import LABEL_MODEL


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="Keras → ONNX with parity gate, golden windows and manifest",
        description=__doc__,
        **examples(
            "tympan export runs/scene.keras --model-repo models/zoo  # report.json beside it",
            "tympan export m.keras --model-repo models/zoo --name calls --version 2 "
            "--labels speech,music,noise",
        ),
    )
    parser.add_argument(
        "keras_file", type=Path, metavar="MODEL.keras", help="the trained Keras model"
    )
    parser.add_argument(
        "--model-repo",
        dest="out",
        metavar="DIR",
        type=Path,
        required=True,
        help="model repository to write the model into (e.g. models/zoo)",
    )
    renamed(parser, "--out", new="--model-repo")
    parser.add_argument("--name", help=f"model name (default: report.json's, else {LABEL_MODEL!r})")
    parser.add_argument("--version", help="model version (default: report.json's, else '1')")
    parser.add_argument("--spec", type=Path, help="FeatureSpec JSON file")
    parser.add_argument("--labels", help="comma-separated labels (default: report.json's)")
    parser.add_argument("--task", choices=("single", "multi"), help="default: report.json's")
    parser.add_argument("--thresholds", help="comma-separated per-tag thresholds (multi)")
    parser.add_argument("--golden", type=Path, help="held-out windows: .npy or .npz with 'x'")
    parser.add_argument("--report", type=Path, help="report.json (default: beside the model)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        path = export_from_file(args)
    except ContractError as exc:
        print(f"tympan export: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def export_from_file(args: argparse.Namespace) -> Path:
    from exporters.export import DEFAULT_OPSET, export_model
    from exporters.golden import synthetic_windows

    if not args.keras_file.is_file():
        raise ModelError(f"{args.keras_file}: Keras model file does not exist")
    report = _report(args)
    spec = _spec(args, report)
    labels = args.labels.split(",") if args.labels else report.get("labels")
    if not labels:
        raise ModelError(f"{args.keras_file}: no labels (pass --labels or a report.json)")
    task = args.task or report.get("task") or "single"
    if task not in ("single", "multi"):
        raise ModelError(f"task={task!r} is not 'single' or 'multi'")
    thresholds = (
        [float(t) for t in args.thresholds.split(",")]
        if args.thresholds
        else report.get("thresholds")
    )
    golden = _golden(args.golden) if args.golden else synthetic_windows(spec)
    model = _load_keras(args.keras_file)
    return export_model(
        model,
        spec=spec,
        labels=labels,
        out_dir=args.out,
        name=args.name or report.get("name") or LABEL_MODEL,
        version=str(args.version or report.get("version") or "1"),
        golden_x=golden,
        task=cast(Any, task),
        thresholds=thresholds if task == "multi" else None,
        training_summary=_training(args.keras_file, report),
        metrics=_metrics(report),
        macs=report.get("macs_per_window"),
        opset=args.opset or DEFAULT_OPSET,
        overwrite=args.overwrite,
    )


def _report(args: argparse.Namespace) -> dict[str, Any]:
    path = args.report or args.keras_file.parent / "report.json"
    if not path.is_file():
        if args.report:
            raise ModelError(f"{path}: report file does not exist")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read report: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _spec(args: argparse.Namespace, report: dict[str, Any]) -> FeatureSpec:
    beside = args.keras_file.parent / "spec.json"
    if args.spec or beside.is_file():
        spec = read_spec(args.spec or beside)
    elif isinstance(report.get("spec"), dict):
        spec = FeatureSpec.from_dict(report["spec"])
    else:
        spec = FeatureSpec()
    want = report.get("spec_hash")
    if want and want != spec.spec_hash:
        raise FeatureSpecError(
            f"{args.keras_file}: report.json says spec_hash={want} but the FeatureSpec used "
            f"hashes to {spec.spec_hash}; pass --spec with the training FeatureSpec"
        )
    return spec


def _golden(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read golden windows: {exc}") from exc
    if isinstance(data, np.ndarray):
        return data
    with data:
        if "x" not in data.files:
            raise ModelError(f"{path}: .npz has no array 'x' (has {data.files})")
        return np.asarray(data["x"])


def _load_keras(path: Path) -> Any:
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError/OSError/TypeError variously
        raise ModelError(f"{path}: Keras cannot load the model: {exc}") from exc


def _training(keras_file: Path, report: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"source": str(keras_file)}
    for key in ("dataset", "training", "params"):
        if report.get(key) is not None:
            summary[key] = report[key]
    return summary


def _metrics(report: dict[str, Any]) -> dict[str, Any]:
    test = report.get("test")
    if not isinstance(test, dict):
        return {}
    out: dict[str, Any] = {}
    for level in ("windows", "files"):
        for key, value in (test.get(level) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[f"test_{level}_{key}"] = value
    return out
