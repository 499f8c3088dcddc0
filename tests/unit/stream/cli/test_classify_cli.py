"""``tympan classify`` and ``tympan evaluate`` on the tiny energy model (no Kafka, no TF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream.cli import main
from stream.features.spec import FeatureSpec
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(n_mels=16, window_seconds=0.5, hop_seconds=0.25)


def _noise(path: Path, amplitude: float, seconds: float, sr: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, amplitude * rng.standard_normal(int(seconds * sr)), sr)
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "zoo"
    make_tiny_model_dir(root / "scene" / "1", spec=SPEC, labels=["quiet", "loud"], name="scene")
    make_tiny_model_dir(
        root / "tags" / "1", spec=SPEC, labels=["a", "b", "c"], name="tags", task="multi"
    )
    monkeypatch.setenv("TYMPAN_MODEL_REPO", str(root))
    return root


def test_json_records_label_each_file(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = _noise(tmp_path / "quiet.wav", 1e-3, 1.0, 16000)
    loud = _noise(tmp_path / "loud.flac", 0.1, 1.3, 44100)  # resampled to 16 kHz
    assert main(["classify", str(quiet), str(loud), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records] == ["quiet", "loud"]
    assert records[0]["model"] == "scene/1"
    first = records[1]["windows"][0]
    assert (first["start_s"], first["end_s"]) == (0.0, pytest.approx(0.5, abs=0.02))
    assert records[1]["windows"][-1]["padded"] is True  # 1.3 s leaves a partial window
    assert sum(records[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_clip_label_is_mean_over_windows(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    y = np.concatenate([1e-3 * rng.standard_normal(8000), 0.2 * rng.standard_normal(24000)])
    sf.write(tmp_path / "mixed.wav", y, 16000)
    assert main(["classify", str(tmp_path / "mixed.wav"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    window_labels = [w["labels"][0] for w in record["windows"]]
    assert window_labels[0] == "quiet" and window_labels[-1] == "loud"
    assert record["label"] == "loud"


def test_bad_files_are_named_and_others_still_processed(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.wav"
    good = _noise(tmp_path / "good.wav", 0.1, 1.0, 16000)
    assert main(["classify", str(bad), str(missing), str(good)]) == 1
    captured = capsys.readouterr()
    assert "bad.wav" in captured.err and "missing.wav" in captured.err
    assert f"{good}: loud" in captured.out


def test_table_output_and_model_reference(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = _noise(tmp_path / "loud.wav", 0.1, 1.0, 8000)
    assert main(["classify", str(loud), "--model", "tags", "--no-windows"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{loud}: a, b")
    assert "tags/1" in out


def test_unknown_model_is_a_clear_error(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = _noise(tmp_path / "loud.wav", 0.1, 1.0, 8000)
    assert main(["classify", str(loud), "--model", "nope"]) == 2
    assert "model 'nope'" in capsys.readouterr().err


def test_evaluate_folder_json_and_pngs(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for i in range(2):
        _noise(data / "quiet" / f"q{i}.wav", 1e-3, 1.0, 16000, seed=i)
        _noise(data / "loud" / f"l{i}.wav", 0.1, 1.0, 16000, seed=i)
    (data / "loud" / "broken.wav").write_text("x")
    out_dir = tmp_path / "eval"
    assert main(["evaluate", "scene", str(data), "--json", "--out", str(out_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["window_accuracy"] == 1.0 and doc["clip_accuracy"] == 1.0
    assert doc["n_files"] == 4 and doc["n_windows"] == 4 * 3
    assert doc["per_class"]["loud"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert [s["path"] for s in doc["skipped"]] == [str(data / "loud" / "broken.wav")]
    assert {p.name for p in out_dir.iterdir()} == {
        "evaluation.json",
        "confusion_clip.png",
        "confusion_window.png",
    }


def test_evaluate_multi_label_csv(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tagged"
    _noise(data / "soft.wav", 1e-3, 1.0, 16000)
    _noise(data / "loud.wav", 0.3, 1.0, 16000)
    (data / "labels.csv").write_text("path,tags\nsoft.wav,\nloud.wav,a;b;c\n")
    assert main(["evaluate", "tags", str(data), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["clip_map"] == 1.0 and doc["window_map"] == 1.0
    assert doc["per_tag"]["a"]["support"] == 1
    assert set(doc["per_tag"]["a"]) == {"precision", "recall", "f1", "support", "ap"}


def test_evaluate_refuses_labels_the_model_lacks(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _noise(tmp_path / "data" / "music" / "m.wav", 0.1, 1.0, 16000)
    assert main(["evaluate", "scene", str(tmp_path / "data")]) == 2
    assert "['music'] are not among the model's labels" in capsys.readouterr().err


def test_a_speaker_model_is_refused_with_what_to_do_instead(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its labels are training voices: printing them as labels would mislead."""
    voices = make_tiny_model_dir(
        repo / "voices" / "1", spec=SPEC, labels=["alex-p25", "annie-p70"], name="voices"
    )
    manifest = json.loads((voices / "manifest.json").read_text())
    manifest["training"] = {"recipe": "models.speaker"}
    (voices / "manifest.json").write_text(json.dumps(manifest))
    clip = _noise(tmp_path / "x.wav", 0.1, 1.0, 16000)

    assert main(["classify", "--model", "voices", str(clip)]) == 2

    out, err = capsys.readouterr()
    assert out == ""  # no voice printed as a label
    assert "voices/1 is a speaker model" in err
    assert "tympan speakers identify" in err and "--model scene / tags" in err


def test_a_missing_file_says_it_does_not_exist(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.wav"
    assert main(["classify", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"audio file '{missing}' does not exist" in err
    assert "System error" not in err
