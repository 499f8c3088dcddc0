"""Keras → ONNX export: parity within 1e-4, a valid manifest, and a gate that bites."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.errors import ModelError, ParityError
from stream.features.spec import FeatureSpec
from stream.inference import OnnxModel, load_manifest

pytestmark = pytest.mark.tf

SPEC = FeatureSpec(n_mels=16, window_seconds=0.25, hop_seconds=0.125)
LABELS = ["speech", "music", "noise"]


def _keras_model(n_labels: int, *, seed: int, activation: str = "softmax") -> Any:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(seed)
    inp = keras.Input(SPEC.input_shape, name="features")
    x = keras.layers.Rescaling(1 / 40.0, offset=1.0)(inp)  # log-mel dB → about [-1.5, 1.5]
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    emb = keras.layers.Dense(8, name="embedding_dense")(x)
    probs = keras.layers.Dense(n_labels, activation=activation, name="head")(emb)
    return keras.Model(inp, [probs, emb])


def _windows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-100.0, 10.0, (n, *SPEC.input_shape)).astype(np.float32)


@pytest.fixture(scope="module")
def keras_model() -> Any:
    return _keras_model(len(LABELS), seed=0)


@pytest.fixture(scope="module")
def exported(keras_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from exporters.export import export_model

    return export_model(
        keras_model,
        spec=SPEC,
        labels=LABELS,
        out_dir=tmp_path_factory.mktemp("zoo"),
        name="scene",
        version="3",
        golden_x=_windows(24, seed=1),
        training_summary={"files": np.int64(12)},
        metrics={"test_accuracy": np.float32(0.5)},
        macs=1234,
    )


def test_layout_and_manifest(exported: Path) -> None:
    assert exported.parts[-2:] == ("scene", "3")
    assert {p.name for p in exported.iterdir()} == {"model.onnx", "manifest.json", "golden.npz"}
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no staging
    m = load_manifest(exported, expected_spec=SPEC)
    assert (m.name, m.version, m.task, m.labels) == ("scene", "3", "single", tuple(LABELS))
    assert m.opset == 17 and m.macs_per_window == 1234
    assert m.input.name == "features" and m.input.shape == (None, *SPEC.input_shape)
    assert [(o.name, o.shape) for o in m.outputs] == [
        ("probabilities", (None, 3)),
        ("embedding", (None, 8)),
    ]
    assert m.training == {"files": 12}
    assert m.metrics["test_accuracy"] == pytest.approx(0.5)
    assert 0 <= m.metrics["parity_max_abs_diff"] <= 1e-4
    assert m.created_at.endswith("Z")


def test_onnx_metadata_carries_key_fields(exported: Path) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported / "model.onnx")).metadata_props}
    assert props["tympan.name"] == "scene"
    assert json.loads(props["tympan.labels"]) == LABELS
    assert props["tympan.spec_hash"] == SPEC.spec_hash
    assert FeatureSpec.from_json(props["tympan.spec"]) == SPEC


def test_onnx_matches_keras_on_fresh_windows(exported: Path, keras_model: Any) -> None:
    model = OnnxModel.load(exported, expected_spec=SPEC)
    x = _windows(37, seed=7)  # not the windows the gate saw; odd batch size
    out = model.run(x)
    probs, emb = (t.numpy() for t in keras_model(x, training=False))
    np.testing.assert_allclose(out.probabilities, probs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.embedding, emb, atol=1e-4, rtol=0)
    assert model.parity_check() < 1e-5


def test_gate_fails_against_perturbed_weights(exported: Path, keras_model: Any) -> None:
    from exporters.parity import check_parity, keras_outputs

    other = _keras_model(len(LABELS), seed=0)
    other.set_weights([w + np.float32(0.05) for w in keras_model.get_weights()])
    x = _windows(8, seed=3)
    with pytest.raises(ParityError, match=r"max \|keras - onnx\| = .* on output") as info:
        check_parity(keras_outputs(other, x), exported / "model.onnx", x)
    assert info.value.max_abs_diff > 1e-4
    assert info.value.output in ("probabilities", "embedding")
    assert f"{info.value.max_abs_diff:.3g}" in str(info.value)


def test_failed_gate_leaves_no_model(keras_model: Any, tmp_path: Path) -> None:
    from exporters.export import export_model

    with pytest.raises(ParityError, match="exceeds tolerance 1e-12"):
        export_model(
            keras_model,
            spec=SPEC,
            labels=LABELS,
            out_dir=tmp_path,
            name="scene",
            version="1",
            golden_x=_windows(8, seed=2) * 1000,  # large values: float32 rounding differs
            tolerance=1e-12,
        )
    assert list((tmp_path / "scene").iterdir()) == []


def test_refuses_existing_version_and_bad_arguments(exported: Path, keras_model: Any) -> None:
    from exporters.export import export_model

    common: dict[str, Any] = {"spec": SPEC, "name": "scene", "golden_x": _windows(4, seed=0)}
    with pytest.raises(ModelError, match="already exists"):
        export_model(keras_model, labels=LABELS, out_dir=exported.parents[1], version="3", **common)
    with pytest.raises(ModelError, match=r"2 labels but the model's probabilities output"):
        export_model(
            keras_model, labels=["a", "b"], out_dir=exported.parents[2] / "x", version="1", **common
        )
    with pytest.raises(ModelError, match="golden_x has shape"):
        export_model(
            keras_model,
            spec=SPEC,
            labels=LABELS,
            name="scene",
            version="9",
            out_dir=exported.parents[2] / "y",
            golden_x=np.zeros((2, 3, 3, 1), np.float32),
        )


def test_multi_label_export(tmp_path: Path) -> None:
    from exporters.export import export_model

    model = _keras_model(2, seed=4, activation="sigmoid")
    path = export_model(
        model,
        spec=SPEC,
        labels=["drums", "vocals"],
        out_dir=tmp_path,
        name="tags",
        version="1",
        golden_x=_windows(6, seed=5),
        task="multi",
        thresholds=[0.3, 0.6],
    )
    m = load_manifest(path)
    assert m.task == "multi" and m.thresholds == (0.3, 0.6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside keras.Model.save
def test_export_command(
    keras_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream.cli import main

    src = tmp_path / "run"
    src.mkdir()
    keras_model.save(src / "model.keras")
    (src / "spec.json").write_text(SPEC.to_json())
    (src / "report.json").write_text(
        json.dumps(
            {
                "name": "scene",
                "version": "5",
                "task": "single",
                "labels": LABELS,
                "spec_hash": SPEC.spec_hash,
                "macs_per_window": 99,
                "test": {"windows": {"accuracy": 0.75}, "files": {"accuracy": 1.0}},
            }
        )
    )
    repo = tmp_path / "zoo"
    assert main(["export", str(src / "model.keras"), "--model-repo", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == str(repo / "scene" / "5")
    m = load_manifest(repo / "scene" / "5", expected_spec=SPEC)
    assert m.labels == tuple(LABELS) and m.macs_per_window == 99
    assert m.metrics["test_windows_accuracy"] == 0.75

    (src / "spec.json").write_text(FeatureSpec(n_mels=20).to_json())
    assert (
        main(["export", str(src / "model.keras"), "--model-repo", str(repo), "--version", "6"]) == 2
    )
    assert "spec_hash" in capsys.readouterr().err


def test_exports_into_a_training_folder_and_overwrite_keeps_reports(
    keras_model: Any, tmp_path: Path
) -> None:
    from exporters.export import export_model

    target = tmp_path / "scene" / "1"
    target.mkdir(parents=True)
    (target / "report.json").write_text("{}")  # what `tympan train --no-export` leaves
    kwargs: dict[str, Any] = {
        "spec": SPEC,
        "labels": LABELS,
        "out_dir": tmp_path,
        "name": "scene",
        "version": "1",
        "golden_x": _windows(4, seed=0),
    }
    assert export_model(keras_model, **kwargs) == target
    first = load_manifest(target)
    export_model(keras_model, overwrite=True, **{**kwargs, "golden_x": _windows(4, seed=9)})
    second = load_manifest(target)
    assert first.golden_sha256 != second.golden_sha256
    assert (target / "report.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.joinpath("scene").iterdir()) == ["1"]
