"""Scoring an exported model on a labelled folder: what ``tympan evaluate`` reports.

Two layouts, the same as training reads (``models.datasets`` may import this)::

    DATA_DIR/<label>/*.wav|*.flac     one label per file       → single-label scores
    DATA_DIR/labels.csv               ``path,tags`` (``;``-separated, paths relative
                                      to the CSV)               → multi-label scores

Every file is scored window by window through the ONNX model (no TensorFlow), exactly
as ``tympan classify`` does, and judged by the same track verdict (:mod:`stream.events.verdict`,
also the worker's summary): the clip scores are the aggregated (mean) probabilities, the
single-label clip prediction is the verdict's dominant label (the top label of the most
windows) and the multi-label clip decisions are the verdict's tags.

Single-label: ``window_accuracy``, ``clip_accuracy``, ``per_class`` (clip level:
precision/recall/F1/support in files) and ``window_per_class`` (support in windows),
confusion matrices at both levels. Multi-label: ``window_map``/``clip_map`` (mean
average precision over tags that have a positive) and ``per_tag`` (clip level:
AP, and precision/recall/F1 at the manifest's thresholds).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from stream.audio.files import audio_files
from stream.errors import DatasetError, TympanError
from stream.events.verdict import track_verdict
from stream.inference.clips import DEFAULT_BATCH, predict_file
from stream.inference.session import OnnxModel

LABELS_CSV = "labels.csv"
CSV_COLUMNS = ("path", "tags")
Task = Literal["single", "multi"]


@dataclass(frozen=True, slots=True)
class LabelledFile:
    """One audio file and its label (single) or tags (multi; may be empty: a negative
    for every tag). Training (``models.datasets.Clip``) lists files as these too."""

    path: Path
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelledSet:
    """A scanned dataset: its task, sorted label names and files."""

    root: Path
    task: Task
    labels: tuple[str, ...]
    files: tuple[LabelledFile, ...]


def scan_labelled(path: str | Path) -> LabelledSet:
    """List a labelled folder (one sub-folder per label) or a ``labels.csv``.

    Raises
    ------
    DatasetError
        Missing path, no audio files, or a CSV whose columns are not ``path,tags``.
    """
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset {str(root)!r} does not exist")
    csv_path = root if root.suffix.lower() == ".csv" else root / LABELS_CSV
    if csv_path.is_file():
        files, task = files_from_csv(csv_path), "multi"
        root = csv_path.parent
    elif root.is_dir():
        files, task = files_from_folders(root), "single"
    else:
        raise DatasetError(f"dataset {str(root)!r} is neither a folder nor a CSV")
    if not files:
        raise DatasetError(
            f"dataset {str(root)!r} has no audio files (expected <label>/*.wav|*.flac "
            f"or {LABELS_CSV})"
        )
    labels = tuple(sorted({t for f in files for t in f.labels}))
    return LabelledSet(root, task, labels, tuple(files))  # type: ignore[arg-type]


def files_from_folders(root: Path) -> list[LabelledFile]:
    """Audio files of ``root/<label>/``, labelled by their folder (hidden ones skipped)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [LabelledFile(f, (d.name,)) for d in folders for f in audio_files(d)]


def files_from_csv(csv_path: Path) -> list[LabelledFile]:
    """Rows of a ``path,tags`` CSV; paths are relative to the CSV, tags ``;``-separated.

    Raises
    ------
    DatasetError
        Columns other than exactly ``path,tags``, or a row with an empty path; the
        message names the CSV (and the line).
    """
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        unknown = sorted(set(columns) - set(CSV_COLUMNS))
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if unknown or missing:
            raise DatasetError(
                f"{csv_path}: columns must be exactly 'path,tags' (unknown: "
                f"{', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'})"
            )
        out = []
        for line, row in enumerate(reader, start=2):
            if not row["path"]:
                raise DatasetError(f"{csv_path} line {line}: empty 'path'")
            tags = tuple(sorted({t.strip() for t in (row["tags"] or "").split(";") if t.strip()}))
            out.append(LabelledFile(csv_path.parent / row["path"], tags))
    return out


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Scores of one model on one dataset; :meth:`to_dict` is the ``--json`` document."""

    model: str
    task: Task
    labels: tuple[str, ...]
    n_files: int
    n_windows: int
    scores: dict[str, Any]
    confusion: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "task": self.task,
            "labels": list(self.labels),
            "n_files": self.n_files,
            "n_windows": self.n_windows,
            **self.scores,
            "skipped": self.skipped,
        }
        for level, cm in self.confusion.items():
            out[f"{level}_confusion"] = cm.tolist()
        return out


def evaluate(model: OnnxModel, data: LabelledSet, *, batch_size: int = DEFAULT_BATCH) -> Evaluation:
    """Score ``model`` on every file of ``data``; unreadable files are skipped and listed.

    Raises
    ------
    DatasetError
        The dataset's task differs from the model's, a dataset label is not one of the
        model's labels, or no file could be scored.
    """
    m = model.manifest
    _check_compatible(m.task, m.labels, data)
    index = {lab: i for i, lab in enumerate(m.labels)}
    win_p: list[npt.NDArray[np.float32]] = []
    win_file: list[npt.NDArray[np.int64]] = []
    clip_p: list[npt.NDArray[np.float64]] = []
    clip_pred: list[int] = []
    targets: list[npt.NDArray[np.int64]] = []
    skipped: list[dict[str, str]] = []
    for f in data.files:
        try:
            pred = predict_file(model, f.path, batch_size=batch_size)
        except (TympanError, OSError) as exc:
            skipped.append({"path": str(f.path), "error": str(exc)})
            continue
        y = np.zeros(len(m.labels), dtype=np.int64)
        y[[index[t] for t in f.labels]] = 1
        verdict = track_verdict(pred.output.probabilities, pred.times_s(), m.labels, m.thresholds)
        win_p.append(pred.output.probabilities)
        win_file.append(np.full(len(pred.output.probabilities), len(targets), dtype=np.int64))
        clip_p.append(np.array([s for _, s in verdict.scores], dtype=np.float64))
        clip_pred.append(index[verdict.dominant_label] if verdict.dominant_label else 0)
        targets.append(y)
    if not targets:
        shown = "; ".join(s["error"] for s in skipped[:3])
        raise DatasetError(f"dataset {str(data.root)!r}: no file could be scored ({shown})")
    clip_true = np.stack(targets)
    wp = np.concatenate(win_p)
    win_true = clip_true[np.concatenate(win_file)]
    result = Evaluation(
        model=f"{m.name}/{m.version}",
        task=m.task,
        labels=m.labels,
        n_files=len(targets),
        n_windows=len(wp),
        scores={},
        skipped=skipped,
    )
    if m.task == "single":
        _single(result, wp, win_true, np.asarray(clip_pred, dtype=np.int64), clip_true)
    else:
        assert m.thresholds is not None
        _multi(result, wp, win_true, np.stack(clip_p), clip_true, np.asarray(m.thresholds))
    return result


def _check_compatible(task: str, labels: tuple[str, ...], data: LabelledSet) -> None:
    if task != data.task:
        raise DatasetError(
            f"dataset {str(data.root)!r} is {data.task}-label but the model is {task}-label"
            + (f" (multi-label data needs {LABELS_CSV})" if task == "multi" else "")
        )
    unknown = sorted(set(data.labels) - set(labels))
    if unknown:
        raise DatasetError(
            f"dataset {str(data.root)!r}: label(s) {unknown} are not among the model's "
            f"labels {list(labels)}"
        )


def _single(
    result: Evaluation,
    win_p: npt.NDArray[np.float32],
    win_true: npt.NDArray[np.int64],
    clip_pred: npt.NDArray[np.int64],
    clip_true: npt.NDArray[np.int64],
) -> None:
    n = len(result.labels)
    levels = {
        "window": (win_true.argmax(1), win_p.argmax(1)),
        "clip": (clip_true.argmax(1), clip_pred),
    }
    for level, (t, p) in levels.items():
        result.scores[f"{level}_accuracy"] = float(np.mean(t == p))
        key = "per_class" if level == "clip" else "window_per_class"
        result.scores[key] = per_class_scores(t, p, result.labels)
        result.confusion[level] = confusion_matrix(t, p, n)


def _multi(
    result: Evaluation,
    win_p: npt.NDArray[np.float32],
    win_true: npt.NDArray[np.int64],
    clip_p: npt.NDArray[np.float64],
    clip_true: npt.NDArray[np.int64],
    thresholds: npt.NDArray[np.float64],
) -> None:
    levels: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.floating[Any]]]] = {
        "window": (win_true, win_p),
        "clip": (clip_true, clip_p),
    }
    for level, (t, p) in levels.items():
        per_tag = per_tag_scores(t, p, thresholds, result.labels)
        aps = [s["ap"] for s in per_tag.values() if s["ap"] is not None]
        result.scores[f"{level}_map"] = float(np.mean(aps)) if aps else None
        result.scores["per_tag" if level == "clip" else "window_per_tag"] = per_tag


def confusion_matrix(
    true: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.int64]:
    """``cm[i, j]`` = items of true class ``i`` predicted as ``j``."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def per_class_scores(
    true: npt.NDArray[np.int64], pred: npt.NDArray[np.int64], labels: tuple[str, ...]
) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 (0 where undefined) and support for each label index."""
    out: dict[str, dict[str, float | int]] = {}
    for i, label in enumerate(labels):
        out[label] = _prf(
            int(np.sum((pred == i) & (true == i))), int(np.sum(pred == i)), int(np.sum(true == i))
        )
    return out


def per_tag_scores(
    true: npt.NDArray[np.int64],
    prob: npt.NDArray[np.floating[Any]],
    thresholds: npt.NDArray[np.float64],
    labels: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """Per tag: average precision (``None`` without positives) and P/R/F1 at threshold."""
    out: dict[str, dict[str, Any]] = {}
    decided = prob >= thresholds[None, :]
    for i, tag in enumerate(labels):
        t, d = true[:, i] == 1, decided[:, i]
        scores: dict[str, Any] = _prf(int(np.sum(t & d)), int(np.sum(d)), int(np.sum(t)))
        scores["ap"] = average_precision(t, prob[:, i])
        out[tag] = scores
    return out


def average_precision(true: npt.NDArray[np.bool_], score: npt.NDArray[np.float32]) -> float | None:
    """Average precision (scikit-learn's step-wise PR area); ``None`` without positives."""
    if not true.any():
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(true, score))


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float | int]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_true}


def save_confusion_png(
    cm: npt.NDArray[np.int64], labels: tuple[str, ...], path: Path, *, title: str
) -> Path:
    """Draw ``cm`` (rows: true, columns: predicted) with counts; matplotlib loaded lazily."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        peak = cm.max() if cm.size else 0
        for (i, j), v in np.ndenumerate(cm):
            ax.text(
                j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black"
            )
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
