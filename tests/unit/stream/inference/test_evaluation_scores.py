"""Dataset walking and the metrics of ``tympan evaluate`` (checked against scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn import metrics

from stream.errors import DatasetError
from stream.inference.evaluation import (
    average_precision,
    confusion_matrix,
    per_class_scores,
    per_tag_scores,
    scan_labelled,
)


def test_confusion_and_per_class_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    pred[:5] = 3  # some class never true in a slice, never predicted elsewhere: no NaN
    np.testing.assert_array_equal(
        confusion_matrix(true, pred, 4), metrics.confusion_matrix(true, pred, labels=range(4))
    )
    scores = per_class_scores(true, pred, ("a", "b", "c", "d"))
    p, r, f, s = metrics.precision_recall_fscore_support(
        true, pred, labels=range(4), zero_division=0
    )
    for i, label in enumerate("abcd"):
        assert scores[label]["precision"] == pytest.approx(p[i])
        assert scores[label]["recall"] == pytest.approx(r[i])
        assert scores[label]["f1"] == pytest.approx(f[i])
        assert scores[label]["support"] == s[i]


def test_undefined_scores_are_zero_not_nan() -> None:
    scores = per_class_scores(np.array([0, 0]), np.array([0, 0]), ("a", "b"))
    assert scores["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_per_tag_thresholds_and_ap() -> None:
    true = np.array([[1, 0], [0, 0], [1, 0]])
    prob = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1]], dtype=np.float32)
    tags = per_tag_scores(true, prob, np.array([0.5, 0.5]), ("x", "y"))
    assert tags["x"]["precision"] == 1.0 and tags["x"]["recall"] == 1.0
    assert tags["x"]["ap"] == 1.0
    assert tags["y"]["ap"] is None and tags["y"]["precision"] == 0.0
    assert average_precision(np.array([False, True]), np.array([0.9, 0.1])) == 0.5


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800), 8000)


def test_scan_folder_and_csv(tmp_path: Path) -> None:
    _wav(tmp_path / "f" / "dog" / "1.wav")
    _wav(tmp_path / "f" / "cat" / "sub" / "2.flac")
    (tmp_path / "f" / ".hidden").mkdir()
    data = scan_labelled(tmp_path / "f")
    assert data.task == "single" and data.labels == ("cat", "dog")
    assert [f.labels for f in data.files] == [("cat",), ("dog",)]

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "labels.csv").write_text("path,tags\na.wav,x; y\nb.wav,\n")
    data = scan_labelled(tmp_path / "c" / "labels.csv")
    assert data.task == "multi" and data.labels == ("x", "y")
    assert data.files[0].path == tmp_path / "c" / "a.wav"
    assert data.files[1].labels == ()


def test_scan_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_labelled(tmp_path / "nope")
    with pytest.raises(DatasetError, match="has no audio files"):
        scan_labelled(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.wav,x\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: columns must be exactly 'path,tags'"):
        scan_labelled(tmp_path)
