"""``tympan train DATA_DIR --model-repo REPO``: train, evaluate and export a model.

Writes ``REPO/<name>/<version>/``: ``model.onnx``, ``manifest.json`` and
``golden.npz`` (after the Keras/ONNX
parity gate), plus ``model.keras``, ``report.json``, ``report.md``,
``confusion_matrix.png`` and ``training_curves.png``. ``--no-export`` skips the
ONNX step (``tympan export`` can do it later from ``model.keras`` + ``report.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stream.cli.help import examples, renamed
from stream.errors import ContractError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a CNN on a labelled audio folder and export it for serving",
        description=__doc__,
        **examples(
            "tympan train data/scenes/ --model-repo models/zoo --name scene --version 3",
            "tympan train data/calls/ --model-repo my-models --telephony 0.5 --augment-copies 2",
        ),
    )
    parser.add_argument(
        "data_dir",
        type=Path,
        metavar="DATA_DIR",
        help="one sub-folder per label, or a folder with labels.csv (path,tags)",
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
    parser.add_argument("--name", help="model name (default: DATA_DIR's folder name)")
    parser.add_argument("--version", default="1", help="model version (default: 1)")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs (early stopping)")
    parser.add_argument(
        "--batch-size", type=int, default=32, help="training batch size (default: 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="fixes split, init and shuffling")
    parser.add_argument(
        "--task",
        choices=("auto", "single", "multi"),
        default="auto",
        help="auto: multi-label when DATA_DIR holds labels.csv",
    )
    parser.add_argument("--spec", type=Path, help="FeatureSpec JSON (default: FeatureSpec())")
    parser.add_argument(
        "--augment-copies",
        type=int,
        default=0,
        help="augmented copies per training file (gain, noise, shift)",
    )
    parser.add_argument(
        "--telephony",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that an augmented copy goes through 8 kHz G.711 μ-law "
        "(implies --augment-copies 1 at least)",
    )
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        target = train_and_export(args)
    except ContractError as exc:
        print(f"tympan train: {exc}", file=sys.stderr)
        return 2
    print(target)
    return 0


def train_and_export(args: argparse.Namespace) -> Path:
    """Run the command; returns the model directory. Raises ``ContractError``."""
    from models.augment import AugmentConfig
    from models.train import TrainConfig, save_outputs, train

    name = args.name or args.data_dir.resolve().name
    target: Path = args.out / name / args.version
    if target.exists() and not args.overwrite:
        raise ContractError(f"{target}: model version already exists (pass --overwrite)")
    config = TrainConfig(
        task=args.task,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        augment=AugmentConfig(
            # telephony happens on augmented copies: asking for it implies one
            copies=max(args.augment_copies, 1 if args.telephony > 0 else 0),
            telephony_prob=args.telephony,
        ),
        progress=not args.quiet,
    )
    trained = train(
        args.data_dir, spec=_spec(args.spec), config=config, name=name, version=args.version
    )
    if not args.no_export:
        target = trained.export(args.out, name=name, version=args.version, overwrite=args.overwrite)
    save_outputs(trained, target)
    _print_summary(trained.report, file=sys.stderr)
    return target


def _spec(path: Path | None) -> Any:
    from stream.features.spec import FeatureSpec, read_spec

    return FeatureSpec() if path is None else read_spec(path)


def _print_summary(report: dict[str, Any], *, file: Any) -> None:
    data, test = report["dataset"], report["test"]
    files = ", ".join(f"{k} {v}" for k, v in data["files"].items())
    print(f"files: {files}; skipped {len(data['skipped'])}", file=file)
    for skipped in data["skipped"]:
        print(f"  skipped {skipped['path']}: {skipped['reason']}", file=file)
    key = "accuracy" if report["task"] == "single" else "mAP"
    for level in ("windows", "files"):
        value = test[level][key]
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"test {key} per {level[:-1]}: {shown}", file=file)
