"""Training end to end on generated audio: learns, reports, exports, reproduces."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.masking import MaskConfig
from models.train import TrainConfig, train

pytestmark = pytest.mark.tf

EXPECTED_FILES = {
    "model.onnx",
    "manifest.json",
    "golden.npz",
    "model.keras",
    "report.json",
    "report.md",
    "confusion_matrix.png",
    "training_curves.png",
}


def test_tympan_train_learns_held_out_files_and_exports(make_dataset, tmp_path: Path) -> None:
    from stream.cli import main

    data = make_dataset(files_per_label=8)
    (data / "tone" / "broken.wav").write_bytes(b"not audio")
    repo = tmp_path / "repo"
    argv = ["train", str(data), "--model-repo", str(repo), "--name", "toy", "--epochs", "20"]
    assert main([*argv, "--quiet", "--seed", "1"]) == 0

    model_dir = repo / "toy" / "1"
    assert {p.name for p in model_dir.iterdir()} >= EXPECTED_FILES
    report = json.loads((model_dir / "report.json").read_text())
    assert report["labels"] == ["chirp", "noise", "tone"]
    assert report["macs_per_window"] <= 10_000_000
    assert [s["reason"] for s in report["dataset"]["skipped"]] == ["unreadable_file"]
    # chance is 1/3; held-out files are files the model never saw a window of
    assert report["test"]["files"]["accuracy"] >= 0.8
    assert report["test"]["windows"]["accuracy"] >= 0.7
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["labels"] == report["labels"] and manifest["task"] == "single"


def test_existing_version_is_refused_before_training(make_dataset, tmp_path: Path, capsys) -> None:
    from stream.cli import main

    data = make_dataset(files_per_label=3)
    (tmp_path / "repo" / "toy" / "1").mkdir(parents=True)
    assert main(["train", str(data), "--model-repo", str(tmp_path / "repo"), "--name", "toy"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_single_class_folder_fails_with_a_dataset_message(make_dataset, tmp_path, capsys) -> None:
    from stream.cli import main

    data = make_dataset(files_per_label=3, labels=("tone",))
    assert main(["train", str(data), "--model-repo", str(tmp_path / "repo"), "--no-export"]) == 2
    assert "single class" in capsys.readouterr().err


def _tagged_dataset(root: Path, n_clips: int = 30, seed: int = 0) -> Path:
    """Clips mixing a low tone, a high tone and noise; tags say which are present."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(1.6 * sr)) / sr
    sources = {
        "low": lambda: np.sin(2 * np.pi * rng.uniform(150, 400) * t),
        "high": lambda: np.sin(2 * np.pi * rng.uniform(2500, 5000) * t),
        "noise": lambda: rng.normal(0, 0.5, t.size),
    }
    (root / "clips").mkdir(parents=True)
    rows = []
    for i in range(n_clips):
        tags = sorted(rng.choice(list(sources), size=int(rng.integers(1, 3)), replace=False))
        y = sum(sources[tag]() for tag in tags)
        y = 0.3 * y / np.max(np.abs(y))
        sf.write(root / "clips" / f"{i:03d}.wav", y.astype(np.float32), sr)
        rows.append([f"clips/{i:03d}.wav", ";".join(tags)])
    with (root / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "tags"], *rows])
    return root


def test_multi_label_training_picks_thresholds_and_reports_map(tmp_path: Path) -> None:
    data = _tagged_dataset(tmp_path / "tags")
    trained = train(data, config=TrainConfig(epochs=15, progress=False, seed=0))
    assert trained.task == "multi"
    assert trained.labels == ("high", "low", "noise")
    assert trained.thresholds is not None and len(trained.thresholds) == 3
    assert all(0.0 < t < 1.0 for t in trained.thresholds)
    windows = trained.report["test"]["windows"]
    assert set(windows["per_tag"]) == {"high", "low", "noise"}
    assert {"precision", "recall", "average_precision"} <= set(windows["per_tag"]["low"])
    # a tag is present in about half the clips: random scores give AP ≈ 0.5
    assert windows["mAP"] >= 0.8


def test_masked_training_still_learns_the_tags_and_reproduces(tmp_path: Path) -> None:
    data = _tagged_dataset(tmp_path / "tags")
    masks = MaskConfig(freq_masks=2, freq_width=8, time_masks=2, time_width=10)
    config = TrainConfig(epochs=15, progress=False, seed=0, masks=masks)
    trained = train(data, config=config)
    assert trained.report["training"]["masks"]["freq_masks"] == 2
    assert trained.report["test"]["windows"]["mAP"] >= 0.8
    again = train(data, config=dataclasses.replace(config, epochs=2))
    once_more = train(data, config=dataclasses.replace(config, epochs=2))
    x = trained.golden_x
    np.testing.assert_array_equal(
        again.model.predict(x, verbose=0)["probabilities"],
        once_more.model.predict(x, verbose=0)["probabilities"],
    )


def test_same_seed_gives_the_same_model(make_dataset) -> None:
    data = make_dataset(files_per_label=3)
    config = TrainConfig(epochs=2, progress=False, seed=7)
    first = train(data, config=config)
    second = train(data, config=config)
    x = first.golden_x
    np.testing.assert_array_equal(
        first.model.predict(x, verbose=0)["probabilities"],
        second.model.predict(x, verbose=0)["probabilities"],
    )


def test_init_seed_changes_the_weights_and_keeps_the_held_out_windows(make_dataset) -> None:
    """``init_seed`` reseeds initialization and shuffling only: the held-out files and
    windows stay ``seed``'s, so runs that differ in it compare on the same test set."""
    import dataclasses

    data = make_dataset(files_per_label=3)
    config = TrainConfig(epochs=2, progress=False, seed=7)
    base = train(data, config=config)
    other = train(data, config=dataclasses.replace(config, init_seed=8))
    same = train(data, config=dataclasses.replace(config, init_seed=7))
    assert [c.path for c in other.test_set.clips] == [c.path for c in base.test_set.clips]
    np.testing.assert_array_equal(other.golden_x, base.golden_x)
    x = base.golden_x
    probabilities = [m.model.predict(x, verbose=0)["probabilities"] for m in (base, other, same)]
    assert not np.allclose(probabilities[0], probabilities[1])
    np.testing.assert_array_equal(probabilities[0], probabilities[2])
    assert other.report["training"]["init_seed"] == 8


def test_balanced_validation_weighs_every_label_as_much_as_another() -> None:
    """With ``balanced_validation`` early stopping watches a loss in which 900 speech
    windows count as much as 100 tone windows, as the class-weighted training loss does."""
    from models.train import _sample_weights

    y = np.zeros((1000, 3), np.float32)
    y[:900, 0] = 1.0
    y[900:950, 1] = 1.0
    y[950:, 2] = 1.0
    weights = _sample_weights(y)
    per_label = [float(weights[y[:, k] == 1].sum()) for k in range(3)]
    np.testing.assert_allclose(per_label, [1000 / 3] * 3, rtol=1e-6)
    assert TrainConfig().balanced_validation is False  # older recipes rebuild the same
