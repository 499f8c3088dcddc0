"""Held-out metrics: thresholds, per-file aggregation, multi-label scores, report files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.report import (
    choose_thresholds,
    comparison_lines,
    cost_figures,
    evaluate_multi,
    evaluate_single,
    per_file,
    plot_confusion,
    plot_history,
    quality_figures,
    write_report,
)


def test_thresholds_separate_a_separable_tag_and_default_for_absent_tags() -> None:
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.1], [0.7, 0.2], [0.3, 0.1], [0.2, 0.3]], dtype=np.float32)
    low, absent = choose_thresholds(truth, probs)
    assert 0.3 < low <= 0.7
    assert absent == 0.5


def test_per_file_means_window_rows_in_file_order() -> None:
    values = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    means = per_file(values, np.array([1, 0, 1]))
    np.testing.assert_allclose(means, [[0.0, 1.0], [1.0, 0.5]])


def test_multi_label_scores_leave_tags_without_positives_out_of_map() -> None:
    truth = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.float32)
    probs = np.array([[0.8, 0.2], [0.1, 0.1], [0.6, 0.9]], dtype=np.float32)
    m = evaluate_multi(truth, probs, ["a", "b"], [0.5, 0.5])
    assert m["per_tag"]["a"]["average_precision"] == 1.0
    assert m["per_tag"]["b"]["average_precision"] is None
    assert m["mAP"] == 1.0
    assert m["per_tag"]["b"]["precision"] == 0.0  # one false positive


def test_single_label_scores_and_files_are_written(tmp_path: Path) -> None:
    truth = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    probs = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    m = evaluate_single(truth, probs, ["x", "y", "z"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    report = {
        "name": "toy",
        "version": "1",
        "task": "single",
        "labels": ["x", "y", "z"],
        "macs_per_window": 1000,
        "params": 10,
        "dataset": {
            "root": "data",
            "files": {"train": 3, "val": 1, "test": 1},
            "windows": {"train": 9, "val": 3, "test": 4},
            "skipped": [{"path": "data/x/bad.wav", "reason": "unreadable_file", "detail": "?"}],
        },
        "training": {
            "epochs_run": 2,
            "best_epoch": 1,
            "patience": 1,
            "batch_size": 4,
            "seconds": 1.0,
            "features_seconds": 0.5,
            "seed": 0,
            "augment": {"copies": 0, "telephony_prob": 0.0},
        },
        "test": {"windows": m, "files": m},
    }
    json_path, md_path = write_report(tmp_path, report)
    assert json.loads(json_path.read_text())["test"]["windows"]["accuracy"] == 0.75
    assert "data/x/bad.wav" in md_path.read_text()
    assert plot_confusion(tmp_path / "cm.png", report).stat().st_size > 0
    curves = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    assert plot_history(tmp_path / "curves.png", curves).stat().st_size > 0


def test_a_version_is_set_beside_the_one_it_replaces() -> None:
    truth = np.eye(2, dtype=np.float32)[[0, 1, 1, 1]]
    m = evaluate_single(truth, np.eye(2, dtype=np.float32)[[0, 1, 1, 0]], ["x", "y"])
    old = {
        "macs_per_window": 4000,
        "params": 40,
        "latency": [{"batch": 1.0, "median_ms": 0.2, "p90_ms": 0.3}],
        "test": {"windows": {**m, "accuracy": 0.8}, "files": m, "by_channel": {}},
    }
    new = {
        "name": "toy",
        "version": "2",
        "macs_per_window": 1000,
        "params": 10,
        "latency": [{"batch": 1.0, "median_ms": 0.05, "p90_ms": 0.1}],
        "test": {"windows": m, "files": m, "by_channel": {"phone": {"window_accuracy": 0.5}}},
        "compared_with": {
            "model": "toy/1",
            "cost": cost_figures(old),
            "quality": quality_figures(old),
        },
    }
    lines = comparison_lines(new)
    assert lines[0] == "## Compared with toy/1"
    assert "| multiply-adds per window | 4,000 | 1,000 | ×0.25 |" in lines
    assert "| ONNX ms per window, batch 1, 1 thread | 0.200 | 0.050 | ×0.25 |" in lines
    assert "| window accuracy | 0.800 | 0.750 | -5.0 points |" in lines
    assert "| window accuracy, channel phone | n/a | 0.500 |  |" in lines
    assert comparison_lines({k: v for k, v in new.items() if k != "compared_with"}) == []


def test_a_version_trained_on_another_corpus_says_its_held_out_figures_do_not_compare() -> None:
    m = evaluate_single(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), ["x", "y"])
    report = {
        "macs_per_window": 4000,
        "params": 40,
        "latency": [],
        "test": {"windows": m, "files": m},
    }
    before = {"model": "toy/1", "cost": cost_figures(report), "quality": quality_figures(report)}
    new = {**report, "name": "toy", "version": "2", "dataset": {"root": "corpus/b"}}
    same = comparison_lines({**new, "compared_with": {**before, "dataset": "corpus/b"}})
    other = comparison_lines({**new, "compared_with": {**before, "dataset": "corpus/a"}})
    assert same[2].startswith("Same data, seed and held-out files")
    assert other[2].startswith("Different corpora (`corpus/a` and `corpus/b`)")
