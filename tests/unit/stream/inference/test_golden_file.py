"""golden.npz: plain arrays only, round trip, and the max-difference rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.errors import ModelError
from stream.inference.golden import Golden, max_abs_diff, read_golden, write_golden


def _golden() -> Golden:
    rng = np.random.default_rng(0)
    return Golden(
        x=rng.standard_normal((3, 4, 5, 1)).astype(np.float32),
        probabilities=rng.random((3, 2)).astype(np.float32),
        embedding=rng.random((3, 6)).astype(np.float32),
    )


def test_round_trip(tmp_path: Path) -> None:
    g = _golden()
    back = read_golden(write_golden(tmp_path / "g.npz", g))
    for key in ("x", "probabilities", "embedding"):
        np.testing.assert_array_equal(getattr(back, key), getattr(g, key))


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    objects = np.array([{"evil": 1}], dtype=object)
    np.savez(path, x=objects, probabilities=objects, embedding=objects)
    with pytest.raises(ModelError, match="cannot read golden file"):
        read_golden(path)


def test_incomplete_or_inconsistent(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    np.savez(path, x=np.zeros((2, 1, 1, 1), np.float32))
    with pytest.raises(ModelError, match="lacks array"):
        read_golden(path)
    np.savez(
        path,
        x=np.zeros((2, 1, 1, 1), np.float32),
        probabilities=np.zeros((3, 2), np.float32),
        embedding=np.zeros((2, 2), np.float32),
    )
    with pytest.raises(ModelError, match="inconsistent shapes"):
        read_golden(path)


def test_max_abs_diff_names_worst_output() -> None:
    a = {"probabilities": np.zeros((2, 2), np.float32), "embedding": np.zeros((2, 3), np.float32)}
    b = {"probabilities": a["probabilities"] + 1e-3, "embedding": a["embedding"] - 0.5}
    assert max_abs_diff(a, b) == (0.5, "embedding")
    assert max_abs_diff(a, a) == (0.0, "probabilities")
    c = {**b, "probabilities": np.zeros((2, 3), np.float32)}
    assert max_abs_diff(a, c) == (float("inf"), "probabilities")
    d = {**a, "embedding": np.full((2, 3), np.nan, np.float32)}
    assert max_abs_diff(a, d) == (float("inf"), "embedding")


def test_input_may_be_stored_under_its_name(tmp_path: Path) -> None:
    g = _golden()
    path = tmp_path / "g.npz"
    np.savez(path, features=g.x, probabilities=g.probabilities, embedding=g.embedding)
    np.testing.assert_array_equal(read_golden(path).x, g.x)
