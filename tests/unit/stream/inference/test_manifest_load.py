"""Manifest validation: every tampering or mismatch is refused with a specific error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from stream.errors import FeatureSpecError, ModelError
from stream.features.spec import FeatureSpec
from stream.inference.manifest import MANIFEST_FILE, Manifest, load_manifest
from stream.inference.session import OnnxModel
from tests.support.onnx_models import make_tiny_model_dir, resign


def _edit(model_dir: Path, **changes: Any) -> None:
    path = model_dir / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_valid_manifest_round_trips(tiny_dir: Path, spec: FeatureSpec) -> None:
    m = load_manifest(tiny_dir, expected_spec=spec)
    assert m.labels == ("quiet", "loud")
    assert m.feature_spec == spec
    assert m.input.shape == (None, *spec.input_shape)
    assert m.output("probabilities").shape == (None, 2)
    assert Manifest.from_dict(json.loads(m.to_json())) == m


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ModelError, match=r"manifest\.json is missing"):
        load_manifest(tmp_path)


def test_manifest_not_json(tiny_dir: Path) -> None:
    (tiny_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read manifest"):
        load_manifest(tiny_dir)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": 3}, "field 'name' must be str, got int 3"),
        ({"task": "regression"}, "task='regression'"),
        ({"schema_version": 2}, "schema_version=2 is not supported"),
        ({"extra": 1}, r"unknown field\(s\) extra"),
        ({"labels": ["quiet", "quiet"]}, "duplicates"),
        ({"labels": ["quiet", "loud", "music"]}, "3 labels but output 'probabilities' has 2"),
        ({"model_sha256": "abc"}, "not a hex sha256"),
        ({"task": "multi"}, "needs 'thresholds'"),
        ({"thresholds": [0.5]}, "only meaningful|must be 2 numbers"),
        ({"input": {"name": "features", "shape": [None, 16, 99, 1]}}, "does not match the Feat"),
    ],
)
def test_schema_errors_name_field_and_value(
    tiny_dir: Path, changes: dict[str, Any], message: str
) -> None:
    _edit(tiny_dir, **changes)
    with pytest.raises(ModelError, match=message) as info:
        load_manifest(tiny_dir)
    assert str(tiny_dir / MANIFEST_FILE) in str(info.value)


def test_missing_required_field(tiny_dir: Path) -> None:
    data = json.loads((tiny_dir / MANIFEST_FILE).read_text())
    del data["spec_hash"]
    (tiny_dir / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"missing field\(s\) spec_hash"):
        load_manifest(tiny_dir)


def test_edited_spec_fails_its_hash(tiny_dir: Path, spec: FeatureSpec) -> None:
    _edit(tiny_dir, spec={**spec.to_dict(), "fmin": 40.0})
    with pytest.raises(FeatureSpecError, match=r"hashes to .* but spec_hash="):
        load_manifest(tiny_dir)


def test_spec_with_unknown_field_is_refused(tiny_dir: Path, spec: FeatureSpec) -> None:
    _edit(tiny_dir, spec={**spec.to_dict(), "colour": "blue"})
    with pytest.raises(FeatureSpecError, match="colour"):
        load_manifest(tiny_dir)


def test_spec_differing_from_worker_names_fields(tiny_dir: Path, spec: FeatureSpec) -> None:
    worker = dataclasses.replace(spec, n_fft=1024, fmin=0.0)
    with pytest.raises(FeatureSpecError) as info:
        load_manifest(tiny_dir, expected_spec=worker)
    text = str(info.value)
    assert "n_fft: model=512 worker=1024" in text
    assert "fmin: model=20.0 worker=0.0" in text
    assert "tiny/1" in text


def test_tampered_onnx_fails_sha(tiny_dir: Path) -> None:
    model = tiny_dir / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 .* does not match model_sha256"):
        load_manifest(tiny_dir)


def test_tampered_golden_fails_sha(tiny_dir: Path) -> None:
    golden = tiny_dir / "golden.npz"
    golden.write_bytes(golden.read_bytes()[:-10])
    with pytest.raises(ModelError, match="golden_sha256"):
        load_manifest(tiny_dir)


@pytest.mark.parametrize("name", ["model.onnx", "golden.npz"])
def test_missing_file_is_named(tiny_dir: Path, name: str) -> None:
    (tiny_dir / name).unlink()
    with pytest.raises(ModelError, match=rf"{name}: file named by .* is missing"):
        load_manifest(tiny_dir)


def test_garbage_onnx_with_matching_sha_is_wrapped(tiny_dir: Path) -> None:
    (tiny_dir / "model.onnx").write_bytes(b"this is not a protobuf" * 10)
    resign(tiny_dir)
    load_manifest(tiny_dir)  # digests match now ...
    with pytest.raises(ModelError, match="onnxruntime cannot load the model"):
        OnnxModel.load(tiny_dir)  # ... but onnxruntime refuses the bytes


def test_labels_count_differs_from_graph_output(tmp_path: Path, spec: FeatureSpec) -> None:
    model_dir = make_tiny_model_dir(tmp_path / "m", spec=spec, labels=["a", "b", "c"], n_outputs=2)
    with pytest.raises(ModelError, match="has 2 columns but the manifest lists 3 labels"):
        OnnxModel.load(model_dir)


def test_manifest_io_names_must_exist_in_graph(tiny_dir: Path, spec: FeatureSpec) -> None:
    _edit(tiny_dir, input={"name": "mel", "shape": [None, *spec.input_shape]})
    with pytest.raises(ModelError, match=r"graph inputs \['features'\] != manifest input 'mel'"):
        OnnxModel.load(tiny_dir)
