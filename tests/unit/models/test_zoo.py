"""The shipped default models: they load, replay their golden windows, and are cheap.

No TensorFlow: this is what a worker checks before serving them.
"""

from __future__ import annotations

import json

import pytest

from models.zoo import ZOO_DIR
from models.zoo.recipes import RECIPES
from stream.features.spec import FeatureSpec
from stream.inference.golden import GOLDEN_TOLERANCE
from stream.inference.session import OnnxModel

MAX_MACS_PER_WINDOW = 10_000_000
MAX_ONNX_BYTES = 1_000_000


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_model_loads_and_replays_its_golden_windows(name: str) -> None:
    recipe = RECIPES[name]
    model_dir = ZOO_DIR / recipe.name / recipe.version
    model = OnnxModel.load(model_dir, device="cpu", expected_spec=FeatureSpec())
    assert model.parity_check() <= GOLDEN_TOLERANCE
    assert (model_dir / "model.onnx").stat().st_size < MAX_ONNX_BYTES
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert 0 < manifest["macs_per_window"] <= MAX_MACS_PER_WINDOW
    for companion in ("MODEL_CARD.md", "report.json", "report.md", "confusion_matrix.png"):
        assert (model_dir / companion).is_file()


def test_scene_model_has_the_call_center_labels() -> None:
    manifest = json.loads((ZOO_DIR / "scene" / "1" / "manifest.json").read_text())
    assert manifest["task"] == "single"
    assert sorted(manifest["labels"]) == ["music", "noise", "silence", "speech", "tone"]


def test_instrument_tagger_is_multi_label_with_a_threshold_per_tag() -> None:
    manifest = json.loads((ZOO_DIR / "instruments" / "1" / "manifest.json").read_text())
    assert manifest["task"] == "multi"
    assert len(manifest["thresholds"]) == len(manifest["labels"]) >= 2
