"""``tympan classify FILE... [--model REF] [--json]``: label audio files offline, no Kafka.

Each file is decoded, resampled to the model's rate, cut into the model's windows
and scored. The file's verdict is the one the worker's summary event gives for the same
audio: the top label of the most windows for a single-label
model; for a multi-label model every tag whose mean probability reaches its threshold,
best first, with the share of windows where it was active and its segments.
``--json`` records carry that verdict under ``verdict``. ``--model`` takes a
model directory, ``name`` or ``name/version`` in the repository (``--model-repo``, else
``$TYMPAN_MODEL_REPO``, else ``models/zoo``); without it the latest ``scene`` model is
used. A file that cannot be read is reported by path and the others are still
classified; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO, get_args

from stream.cli.help import examples, renamed
from stream.errors import ContractError, ModelError, TympanError
from stream.events.verdict import TrackVerdict, track_verdict
from stream.inference.clips import DEFAULT_BATCH, ClipPrediction, decide, predict_file
from stream.inference.manifest import Manifest
from stream.inference.repository import REPO_ENV, default_repo, list_models, resolve_model_dir
from stream.inference.session import OnnxModel
from stream.roles import DEFAULT_MODELS, Role
from stream.types import DeviceChoice


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="label audio files with an ONNX model (offline, no Kafka)",
        description=__doc__,
        **examples(
            "tympan classify street.wav                  # latest scene model, per window",
            "tympan classify --model instruments --no-windows song.flac",
            "tympan classify --json clips/*.wav | jq .label",
        ),
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="WAV/FLAC files")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON record per file")
    parser.add_argument(
        "--no-windows", action="store_true", help="table: clip labels only, no window rows"
    )
    parser.set_defaults(func=run)


def add_model_arguments(parser: argparse.ArgumentParser, *, model_option: bool = True) -> None:
    """``[--model] --model-repo --device --threads --batch-size``, shared with
    ``tympan evaluate``."""
    if model_option:
        parser.add_argument(
            "--model", default=None, help="model dir, NAME or NAME/VERSION (default: latest scene)"
        )
    parser.add_argument(
        "--model-repo",
        dest="repo",
        metavar="DIR",
        type=Path,
        default=None,
        help=f"model repository the model names refer to (default: ${REPO_ENV}, else models/zoo)",
    )
    renamed(parser, "--repo", new="--model-repo")
    parser.add_argument(
        "--device",
        choices=get_args(DeviceChoice),
        default="auto",
        help="onnxruntime provider (auto: CUDA when onnxruntime-gpu has it, else CPU)",
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per run")


def load_model(args: argparse.Namespace, *, model_ref: str | Path | None) -> OnnxModel:
    """Resolve and load the model named by the arguments (repository from the env)."""
    repo = args.repo
    if repo is None and os.environ.get(REPO_ENV):
        repo = Path(os.environ[REPO_ENV])
    model_dir = resolve_model_dir(model_ref, repo=repo, role=Role.LABEL)
    model = OnnxModel.load(model_dir, device=args.device, intra_op_threads=args.threads)
    _require_label_model(model.manifest, repo)
    return model


def _require_label_model(manifest: Manifest, repo: Path | None) -> None:
    """Refuse a speaker encoder: its labels are training voices, not classes.

    Raises
    ------
    ModelError
        Naming the model and the two things the user may have meant.
    """
    if not manifest.is_speaker_encoder:
        return
    models = list_models(repo if repo is not None else default_repo())
    labels = [
        name
        for name, versions in models.items()
        if versions and name != manifest.name and name != DEFAULT_MODELS[Role.SPEAKER]
    ]
    raise ModelError(
        f"model {manifest.name}/{manifest.version} is a speaker model: its "
        f"{len(manifest.labels)} labels are the voices it was trained on, not classes to "
        "report. To name speakers, enroll them and identify: `tympan speakers enroll NAME "
        "FILES...` then `tympan speakers identify FILE`; to label audio, give a label "
        f"model (--model {' / '.join(labels) or DEFAULT_MODELS[Role.LABEL]})"
    )


def run(args: argparse.Namespace) -> int:
    try:
        model = load_model(args, model_ref=args.model)
    except ContractError as exc:
        print(f"tympan classify: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            pred = predict_file(model, path, batch_size=args.batch_size)
        except (TympanError, OSError) as exc:
            failed += 1
            _report_error(path, exc, as_json=args.json)
            continue
        record = clip_record(model, pred)
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print_table(record, sys.stdout, windows=not args.no_windows)
    return 1 if failed else 0


def file_verdict(model: OnnxModel, pred: ClipPrediction) -> TrackVerdict:
    """The verdict of one scored file: the summary event's aggregation
    (``stream.events.verdict``)."""
    m = model.manifest
    return track_verdict(pred.output.probabilities, pred.times_s(), m.labels, m.thresholds)


def clip_record(model: OnnxModel, pred: ClipPrediction) -> dict[str, Any]:
    """The JSON record of one file: verdict, mean probabilities, window rows."""
    m = model.manifest
    verdict = file_verdict(model, pred)
    clip_p = [s for _, s in verdict.scores]
    rows = []
    for i, (p, (start_s, end_s)) in enumerate(
        zip(pred.output.probabilities, pred.times_s(), strict=True)
    ):
        chosen = decide(p, m.labels, m.thresholds)
        rows.append(
            {
                "index": i,
                "start_s": round(float(start_s), 4),
                "end_s": round(float(end_s), 4),
                "labels": chosen,
                "probability": _top(p, m.labels, chosen),
                "padded": bool(pred.windows.padded[i]),
            }
        )
    chosen = verdict.labels
    return {
        "path": str(pred.path),
        "model": f"{m.name}/{m.version}",
        "task": m.task,
        "labels": chosen,
        "label": chosen[0] if m.task == "single" else None,
        "probability": _top(clip_p, m.labels, chosen),
        "probabilities": {lab: round(float(p), 6) for lab, p in zip(m.labels, clip_p, strict=True)},
        "n_windows": len(rows),
        "verdict": verdict.to_dict(),
        "windows": rows,
    }


def _top(p: Any, labels: tuple[str, ...], chosen: list[str]) -> float | None:
    if not chosen:
        return None
    return round(float(p[labels.index(chosen[0])]), 6)


def print_table(record: dict[str, Any], out: TextIO, *, windows: bool = True) -> None:
    chosen = ", ".join(record["labels"]) or "(no tag)"
    prob = record["probability"]
    shown = f"{chosen} ({prob:.2f})" if prob is not None and record["task"] == "single" else chosen
    print(
        f"{record['path']}: {shown}  [{record['n_windows']} windows, {record['model']}]", file=out
    )
    if not windows:
        return
    for row in record["windows"]:
        tags = ", ".join(row["labels"]) or "-"
        p = "" if row["probability"] is None else f"{row['probability']:.2f}"
        pad = "  (padded)" if row["padded"] else ""
        span = f"{row['start_s']:8.2f} -{row['end_s']:8.2f} s"
        print(f"  {span}  {tags:<24} {p}{pad}", file=out)


def _report_error(path: Path, exc: BaseException, *, as_json: bool) -> None:
    message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    if as_json:
        print(json.dumps({"path": str(path), "error": message}), flush=True)
    print(f"tympan classify: {message}", file=sys.stderr)
