"""A tiny real ONNX model directory (no TensorFlow) for the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.features.spec import FeatureSpec
from tests.support.onnx_models import make_tiny_model_dir

SMALL_SPEC = FeatureSpec(n_mels=16, window_seconds=0.25, hop_seconds=0.125)


@pytest.fixture
def spec() -> FeatureSpec:
    return SMALL_SPEC


@pytest.fixture
def tiny_dir(tmp_path: Path, spec: FeatureSpec) -> Path:
    return make_tiny_model_dir(tmp_path / "tiny" / "1", spec=spec, labels=["quiet", "loud"])
