"""Held-out metrics of a trained model, and the files that show them.

Single-label models are scored by accuracy, per-class precision/recall/F1 and a
confusion matrix; multi-label taggers by per-tag precision/recall/F1 at the tag's
threshold (chosen on validation data) and average precision, with mAP their mean.
Both are computed per window (what the worker emits) and per file (window
probabilities averaged over the file: what a user uploading a clip sees).

Writes ``report.json`` (machine-readable), ``report.md`` (the same, for people),
``confusion_matrix.png`` and ``training_curves.png``. matplotlib is imported only
to draw, with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exporters.export import json_default

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


# -- metrics ---------------------------------------------------------------------------
def evaluate_single(
    y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-class P/R/F1 and confusion matrix of a softmax classifier.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_labels)]
        One-hot targets.
    probabilities : np.ndarray [shape=(n, n_labels)]
        Model output.
    labels : sequence of str
        Column names.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    truth, pred = np.argmax(y_true, axis=1), np.argmax(probabilities, axis=1)
    index = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pred, labels=index, zero_division=0
    )
    return {
        "n": len(truth),
        "accuracy": float(np.mean(truth == pred)) if len(truth) else math.nan,
        "macro_f1": float(np.mean(f1)),
        "per_class": _per_label(labels, precision, recall, f1, support),
        "confusion_matrix": confusion_matrix(truth, pred, labels=index).tolist(),
    }


def evaluate_multi(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    labels: Sequence[str],
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """Per-tag P/R/F1 at ``thresholds``, per-tag average precision and mAP.

    Tags without a positive example have no average precision (``None``) and are
    left out of mAP rather than counted as 0 or 1.
    """
    from sklearn.metrics import (
        average_precision_score,
        multilabel_confusion_matrix,
        precision_recall_fscore_support,
    )

    truth = y_true.astype(int)
    pred = (probabilities >= np.asarray(thresholds)[None, :]).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, pred, zero_division=0)
    ap = [
        float(average_precision_score(truth[:, i], probabilities[:, i]))
        if truth[:, i].any()
        else None
        for i in range(len(labels))
    ]
    per_tag = _per_label(labels, precision, recall, f1, support)
    for name, value, threshold in zip(labels, ap, thresholds, strict=True):
        per_tag[name]["average_precision"] = value
        per_tag[name]["threshold"] = float(threshold)
    scored = [v for v in ap if v is not None]
    micro = precision_recall_fscore_support(truth, pred, average="micro", zero_division=0)
    return {
        "n": len(truth),
        "mAP": float(np.mean(scored)) if scored else None,
        "micro_f1": float(micro[2]),
        "exact_match": float(np.mean(np.all(truth == pred, axis=1))) if len(truth) else None,
        "per_tag": per_tag,
        # [n_labels, 2, 2]: [[TN, FP], [FN, TP]] per tag
        "confusion_matrix": multilabel_confusion_matrix(truth, pred).tolist(),
    }


def choose_thresholds(y_true: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """Per-tag threshold maximizing F1 on validation data (0.5 for a tag never present).

    Ties go to the threshold nearest 0.5, so a flat F1 curve does not push the
    threshold to an extreme it was not chosen for.
    """
    out = []
    for i in range(y_true.shape[1]):
        truth = y_true[:, i] > 0.5
        if not truth.any():
            out.append(0.5)
            continue
        scores = [_f1(truth, probabilities[:, i] >= t) for t in THRESHOLD_GRID]
        best = max(scores)
        candidates = [t for t, s in zip(THRESHOLD_GRID, scores, strict=True) if s == best]
        out.append(float(min(candidates, key=lambda t: abs(t - 0.5))))
    return out


def per_file(values: np.ndarray, file_index: np.ndarray) -> np.ndarray:
    """Mean of the window rows of each file ``[n_files, k]``, files in index order.

    Files without windows are left out (a usable file always has one).
    """
    n_files = int(file_index.max()) + 1 if file_index.size else 0
    sums = np.zeros((n_files, values.shape[1]), dtype=np.float64)
    np.add.at(sums, file_index, values)
    counts = np.bincount(file_index, minlength=n_files)
    present = counts > 0
    return (sums[present] / counts[present, None]).astype(np.float32)


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum(truth & pred))
    denominator = float(np.sum(truth) + np.sum(pred))
    return 2.0 * tp / denominator if denominator else 0.0


def _per_label(
    labels: Sequence[str],
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    support: np.ndarray,
) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for name, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


# -- files -----------------------------------------------------------------------------
def write_report(out_dir: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / REPORT_JSON, out_dir / REPORT_MD
    json_path.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: data, training, then held-out metrics per window and file."""
    data, training = report["dataset"], report["training"]
    lines = [
        f"# Training report: {report['name']}/{report['version']}",
        "",
        f"Task: **{report['task']}** · labels: {', '.join(report['labels'])} · "
        f"{report['macs_per_window']:,} multiply-adds per window · "
        f"{report['params']:,} parameters",
        "",
        "## Data",
        "",
        f"Source: `{data['root']}` (split by file, seed {training['seed']}).",
        "",
        "| split | files | windows |",
        "|---|---:|---:|",
    ]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | {data['files'][split]} | {data['windows'][split]} |")
    if data["skipped"]:
        lines += ["", f"Skipped {len(data['skipped'])} file(s):", ""]
        lines += [f"- `{s['path']}`: {s['reason']} ({s['detail']})" for s in data["skipped"]]
    lines += [
        "",
        "## Training",
        "",
        f"{training['epochs_run']} epochs (best {training['best_epoch']}, early stopping "
        f"patience {training['patience']}), batch {training['batch_size']}, "
        f"{training['seconds']:.0f} s in all ({training['features_seconds']:.0f} s decoding and "
        "features), augmentation copies per file: "
        f"{training['augment']['copies']} (telephony probability "
        f"{training['augment']['telephony_prob']}).",
        "",
    ]
    for scope in ("windows", "files"):
        lines += metric_lines(report["task"], scope, report["test"][scope])
    lines += comparison_lines(report)
    return "\n".join(lines) + "\n"


def metric_lines(task: str, scope: str, m: Mapping[str, Any]) -> list[str]:
    """Markdown section of one held-out metrics block (per window or per file)."""
    lines = [f"## Held-out test set, per {scope[:-1]} (n = {m['n']})", ""]
    if task == "single":
        lines += [
            f"Accuracy **{m['accuracy']:.3f}**, macro F1 {m['macro_f1']:.3f}.",
            "",
            "| label | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in m["per_class"].items():
            lines.append(
                f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} "
                f"| {r['support']} |"
            )
    else:
        mean_ap = "n/a" if m["mAP"] is None else f"{m['mAP']:.3f}"
        lines += [
            f"mAP **{mean_ap}**, micro F1 {m['micro_f1']:.3f}.",
            "",
            "| tag | threshold | precision | recall | F1 | AP | support |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in m["per_tag"].items():
            ap = "n/a" if r["average_precision"] is None else f"{r['average_precision']:.3f}"
            lines.append(
                f"| {name} | {r['threshold']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
                f"| {r['f1']:.3f} | {ap} | {r['support']} |"
            )
    return [*lines, ""]


def cost_figures(report: Mapping[str, Any]) -> dict[str, float]:
    """What one window costs: multiply-adds, parameters and the measured ONNX latency
    (``report["latency"]``, one entry per batch size, when the zoo measured it)."""
    out = {"multiply-adds per window": report["macs_per_window"], "parameters": report["params"]}
    for item in report.get("latency", []):
        out[f"ONNX ms per window, batch {int(item['batch'])}, 1 thread"] = item["median_ms"]
    return out


def quality_figures(report: Mapping[str, Any]) -> dict[str, float]:
    """The scalar held-out figures, per window and file, and the window accuracy of
    every breakdown group (``by_<column>`` sections, e.g. per telephone channel)."""
    out = {}
    for scope in ("windows", "files"):
        for key, value in report["test"][scope].items():
            if key != "n" and isinstance(value, int | float) and not isinstance(value, bool):
                out[f"{scope[:-1]} {key.replace('_', ' ')}"] = value
    for key, groups in report["test"].items():
        if key.startswith("by_"):
            for value, group in groups.items():
                out[f"window accuracy, {key[3:]} {value}"] = group["window_accuracy"]
    return out


def comparison_lines(report: Mapping[str, Any]) -> list[str]:
    """Markdown section setting this version beside ``report["compared_with"]``.

    Why: a new version of a shipped model is a trade (e.g. fewer multiply-adds for
    some accuracy); its card and report show both sides on the same held-out files.
    Costs change by a factor, held-out figures by points (hundredths). Empty when the
    report has no ``compared_with`` (the first version, or ``tympan train``).
    """
    before = report.get("compared_with")
    if before is None:
        return []
    name = f"{report['name']}/{report['version']}"
    lines = [
        f"## Compared with {before['model']}",
        "",
        _comparison_note(report, before),
        "",
        f"| figure | {before['model']} | {name} | change |",
        "|---|---:|---:|---:|",
    ]
    for figure, value in cost_figures(report).items():
        old = before["cost"].get(figure)
        change = "" if not old else f"×{value / old:.2f}"
        lines.append(f"| {figure} | {_figure(old)} | {_figure(value)} | {change} |")
    for figure, value in quality_figures(report).items():
        old = before["quality"].get(figure)
        change = "" if old is None else f"{100 * (value - old):+.1f} points"
        lines.append(f"| {figure} | {_figure(old)} | {_figure(value)} | {change} |")
    return [*lines, ""]


def _comparison_note(report: Mapping[str, Any], before: Mapping[str, Any]) -> str:
    """Whether the held-out figures below compare: only when both used the same corpus."""
    latency = (
        f"{before['model']}'s latency measured again in the same run, so the two latencies compare."
    )
    corpus = before.get("dataset")  # absent from reports written before it was recorded
    if corpus is None or corpus == report["dataset"]["root"]:
        return f"Same data, seed and held-out files; {latency}"
    return (
        f"Different corpora (`{corpus}` and `{report['dataset']['root']}`): each "
        "version's held-out figures are on its own corpus's test files and do not "
        f"compare across the two; {latency}"
    )


def _figure(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}"


def plot_confusion(path: Path, report: Mapping[str, Any]) -> Path:
    """Row-normalized confusion matrix of the test windows (per tag for multi-label)."""
    plt = _pyplot()
    labels, m = report["labels"], report["test"]["windows"]
    if report["task"] == "single":
        counts = np.asarray(m["confusion_matrix"], dtype=float)
        rows, cols, title = labels, labels, "test windows: true (rows) vs predicted"
    else:  # [tag, [[TN, FP], [FN, TP]]] → one row per tag: TP, FN, FP, TN
        cm = np.asarray(m["confusion_matrix"], dtype=float)
        counts = np.stack([cm[:, 1, 1], cm[:, 1, 0], cm[:, 0, 1], cm[:, 0, 0]], axis=1)
        rows, cols, title = labels, ["TP", "FN", "FP", "TN"], "test windows per tag"
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    size = max(4.0, 0.6 * len(cols) + 2.5)
    fig, ax = plt.subplots(figsize=(size, max(3.0, 0.5 * len(rows) + 2.0)))
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), value in np.ndenumerate(counts):
        color = "white" if shares[i, j] > 0.5 else "black"
        ax.text(j, i, f"{int(value)}", ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(path: Path, history: Mapping[str, Sequence[float]]) -> Path:
    """Loss (and accuracy, when recorded) per epoch, training vs validation."""
    plt = _pyplot()
    metrics = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        epochs = range(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
