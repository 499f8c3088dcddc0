"""MODEL_CARD.md for a shipped model, and the latency figure it quotes.

The card says what the model is for, where its data came from, what it costs per
window (multiply-adds, parameters, ONNX file size, measured CPU latency) and how it
did on held-out files, then what it is known to get wrong. The metric tables are
the ones in ``report.md``, so the two never disagree. A later version of a model
is set beside the previous one in the repository (cost, held-out figures), with the
previous model's latency measured again on the same machine in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models import report as reporting
from stream.features.spec import FeatureSpec
from stream.inference.repository import list_versions, version_key

if TYPE_CHECKING:
    from models.train import TrainedModel

CARD_FILE = "MODEL_CARD.md"
SYNTHETIC = "Synthetic, rendered locally; no recordings of people or third-party audio."
"""The provenance line of a recipe whose corpus is rendered from nothing but our code."""
LATENCY_BATCHES = (1, 32)
"""Batch sizes the card quotes: one window (a lone call), and a worker's full batch."""


def measure_latency_ms(
    model_path: Path, spec: FeatureSpec, *, batch: int = 1, runs: int = 200
) -> dict[str, float]:
    """Median and 90th-percentile ms per window of ``model.onnx`` on this CPU.

    One onnxruntime thread (what a worker gives each model by default), random
    windows of ``spec.input_shape``, after 20 warm-up runs.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(-40, 15, (batch, *spec.input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(20):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0 / batch)
    return {
        "batch": float(batch),
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
    }


def measure_latencies(model_path: Path, spec: FeatureSpec) -> list[dict[str, float]]:
    """:func:`measure_latency_ms` at each of :data:`LATENCY_BATCHES`."""
    return [measure_latency_ms(model_path, spec, batch=batch) for batch in LATENCY_BATCHES]


def previous_version(repo: Path, name: str, version: str) -> Path | None:
    """The newest version of ``name`` in ``repo`` older than ``version``, if any."""
    older = [v for v in list_versions(repo, name) if version_key(v) < version_key(version)]
    return repo / name / older[-1] if older else None


def baseline(model_dir: Path, spec: FeatureSpec) -> dict[str, Any]:
    """A shipped version's figures for ``report["compared_with"]``.

    Cost and held-out figures come from its ``report.json``; its latency is measured
    now, because a figure from another day on a shared machine would not compare.
    """
    report = json.loads((model_dir / reporting.REPORT_JSON).read_text())
    report["latency"] = measure_latencies(model_dir / "model.onnx", spec)
    return {
        "model": f"{report['name']}/{report['version']}",
        "cost": reporting.cost_figures(report),
        "quality": reporting.quality_figures(report),
        "dataset": report["dataset"]["root"],
    }


REAL_AND_SYNTHETIC = (
    "The synthetic corpus below, rendered locally, and real recordings from Debian "
    "packages (their licences allow it; every file listed in `training_sources.json`)."
)


def write_card(
    model_dir: Path,
    recipe: Mapping[str, Any],
    trained: TrainedModel,
    *,
    previous_card: str | None = None,
) -> Path:
    """Write ``MODEL_CARD.md`` into ``model_dir`` and return its path.

    The latency rows come from ``trained.report["latency"]``
    (:func:`measure_latencies`), the comparison from ``trained.report["compared_with"]``.
    ``previous_card``: the card this build replaces; its hand-written sections
    (:func:`hand_written_sections`) are kept after the generated ones.
    """
    path = model_dir / CARD_FILE
    text = render_card(model_dir, recipe, trained)
    kept = hand_written_sections(previous_card, text) if previous_card else ""
    path.write_text(text.rstrip("\n") + "\n\n" + kept if kept else text)
    return path


def hand_written_sections(card: str, generated: str) -> str:
    """The ``## `` sections of ``card`` whose heading ``generated`` does not have, in
    their order, or ``""``.

    Why: a card's real-set figures, the reasons a version was chosen and the runs
    measured after it are written by hand below the generated sections; a rebuild (or
    a re-render) used to drop them. A section whose heading the generator writes is
    the generator's and is replaced.
    """
    ours = {line for line in generated.splitlines() if line.startswith("## ")}
    kept: list[str] = []
    keep = False
    for line in card.splitlines():
        if line.startswith("## "):
            keep = line not in ours
        if keep:
            kept.append(line)
    return "\n".join(kept).strip("\n") + "\n" if kept else ""


def render_card(model_dir: Path, recipe: Mapping[str, Any], trained: TrainedModel) -> str:
    report, spec = trained.report, trained.spec
    onnx_kib = (model_dir / "model.onnx").stat().st_size / 1024
    lines = [
        f"# Model card: {recipe['name']}/{recipe['version']}",
        "",
        recipe["summary"],
        "",
        "## Interface",
        "",
        f"- Task: `{trained.task}` ({'softmax, argmax label' if trained.task == 'single' else 'sigmoid per tag, per-tag thresholds'}).",  # noqa: E501
        f"- Labels: {', '.join(f'`{label}`' for label in trained.labels)}.",
        f"- Input `features`: float32 `[batch, {', '.join(map(str, spec.input_shape))}]` — "
        f"{spec.kind} ({spec.n_features} bands, sr {spec.sr} Hz, n_fft {spec.n_fft}, "
        f"hop {spec.hop_length}), {spec.window_seconds:g} s windows every "
        f"{spec.hop_seconds:g} s; spec_hash `{spec.spec_hash[:16]}…`. Raw frontend "
        "output: normalization is inside the network.",
        "- Outputs: `probabilities` and `embedding` "
        f"(`[batch, {trained.model.output['embedding'].shape[-1]}]`).",
    ]
    if trained.thresholds is not None:
        pairs = ", ".join(
            f"{label} {t:.2f}" for label, t in zip(trained.labels, trained.thresholds, strict=True)
        )
        lines.append(f"- Thresholds (chosen for F1 on validation files): {pairs}.")
    lines += [
        "",
        "## Cost",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| multiply-adds per window | {trained.macs:,} |",
        f"| parameters | {report['params']:,} |",
        f"| model.onnx | {onnx_kib:.0f} KiB |",
    ]
    for latency in report["latency"]:
        lines += [
            f"| ONNX latency per window, batch {int(latency['batch'])}, 1 thread (median) "
            f"| {latency['median_ms']:.3f} ms |",
            f"| same, 90th percentile | {latency['p90_ms']:.3f} ms |",
        ]
    lines += [
        "",
        f"Latency measured with onnxruntime on this build machine "
        f"({platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}), "
        "which other jobs shared; treat it as an order of magnitude.",
        "",
        "## Data provenance",
        "",
        f"{recipe.get('provenance', SYNTHETIC)} {recipe['data_note']}",
        "",
        *source_lines(recipe.get("sources", ())),
        f"Rebuild: `{recipe['rebuild']}` (renders with `{recipe['corpus']}`, trains with "
        f"seed {report['training']['seed']}, exports, writes this card).",
        "",
        "| split (by file) | files | windows |",
        "|---|---:|---:|",
    ]
    data = report["dataset"]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | {data['files'][split]} | {data['windows'][split]} |")
    training = report["training"]
    cnn = training["cnn"]
    blocks = cnn["block_filters"]
    lines += [
        "",
        "## Training",
        "",
        f"Keras CNN (strided conv stem with {cnn['stem_filters']} filters, {len(blocks)} × "
        f"[max-pool → conv 3×3] with {'/'.join(map(str, blocks))} filters, "
        f"global average pooling, dense {trained.model.output['embedding'].shape[-1]} "
        f"→ dropout → {'softmax' if trained.task == 'single' else 'sigmoid'}); Adam "
        f"(lr {training['learning_rate']}), batch {training['batch_size']}, "
        f"{_epochs_line(training)}, "
        f"{'balanced class weights, ' if trained.task == 'single' else ''}"
        f"{training['seconds']:.0f} s on this machine.",
        "",
        *masks_lines(training.get("masks")),
    ]
    for scope in ("windows", "files"):
        lines += reporting.metric_lines(trained.task, scope, report["test"][scope])
    for key, groups in report["test"].items():
        if key.startswith("by_"):
            lines += _breakdown_lines(key[3:], groups)
    lines += reporting.comparison_lines(report)
    lines += ["## Limitations", ""]
    lines += [f"- {item}" for item in recipe["limitations"]]
    lines += [
        "",
        "See `report.md`, `confusion_matrix.png` and `training_curves.png` beside this card.",
    ]
    return "\n".join(lines) + "\n"


def source_lines(sources: Sequence[Mapping[str, str]]) -> list[str]:
    """The card's table of the packages a corpus reads: package, version, licence, what.

    Why a table beside the data note: the note says how each source is used; the table
    is the list a reader checks against an evaluation set or a licence policy.
    """
    if not sources:
        return []
    lines = ["| training source (Debian package) | version | licence | what |", "|---|---|---|---|"]
    lines += [
        f"| {s['package']} | {s['version']} | {s['licence']} | {s['content']} |" for s in sources
    ]
    return [*lines, ""]


def masks_lines(masks: Mapping[str, Any] | None) -> list[str]:
    """What the SpecAugment masks of a run were (``report["training"]["masks"]``), if any.

    Why in the card: masking changes what the network learnt from the same data; a
    rebuild without it would not reproduce the model, and a reader comparing two
    versions on one corpus needs to know that it is the difference.
    """
    if not masks or masks["prob"] <= 0 or not (masks["freq_masks"] or masks["time_masks"]):
        return []
    share = "every" if masks["prob"] >= 1 else f"with probability {masks['prob']:g} a"
    bands = f"{masks['freq_masks']} band{'s' if masks['freq_masks'] != 1 else ''}"
    stretches = f"{masks['time_masks']} stretch{'es' if masks['time_masks'] != 1 else ''}"
    return [
        f"SpecAugment masks (Park et al., 2019; `models/masking.py`): {share} training "
        f"window gets {bands} of 0–{masks['freq_width']} mel bins and {stretches} of "
        f"0–{masks['time_width']} frames set to the window's mean, drawn afresh for every "
        "batch from the run's seed, so each epoch shows the network different windows at "
        "no feature-extraction cost and it cannot rest on one band or one instant to name "
        "a label. Training only: serving and the held-out figures below never mask.",
        "",
    ]


def _epochs_line(training: Mapping[str, Any]) -> str:
    """How the shipped weights were chosen: the best epoch, or the mean of epochs."""
    run, start = training["epochs_run"], training.get("average_from")
    if training.get("ema_momentum") is not None:
        return (
            f"{run} epochs of {training['max_epochs']}, shipping the exponential moving "
            f"average of the weights (momentum {training['ema_momentum']} per step; early "
            f"stopping on validation loss, patience {training['patience']}, only as a "
            "safety net)"
        )
    if start is None:
        return (
            f"{run} epochs with early stopping on validation loss (best "
            f"epoch {training['best_epoch']} restored)"
        )
    return (
        f"{run} epochs of {training['max_epochs']}, the weights averaged over epochs "
        f"{start}–{run} (stochastic weight averaging; early stopping on validation loss, "
        f"patience {training['patience']}, only as a safety net)"
    )


def _breakdown_lines(column: str, groups: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines = [
        f"## Held-out accuracy by {column}",
        "",
        f"| {column} | files | file accuracy | windows | window accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for value, g in groups.items():
        lines.append(
            f"| {value} | {g['files']} | {g['file_accuracy']:.3f} | {g['windows']} "
            f"| {g['window_accuracy']:.3f} |"
        )
    return [*lines, ""]
