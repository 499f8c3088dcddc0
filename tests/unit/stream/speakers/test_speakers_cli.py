"""``tympan speakers`` end to end with the shipped embedding model (no TensorFlow)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream.cli import main
from stream.inference.repository import default_repo
from stream.speakers.registry import EMBEDDINGS_FILE, INDEX_FILE

SR = 16000
MODEL_DIR = default_repo() / "speaker-embed"

TEXTS = [
    "thank you for calling my name is and I would like to check my order status today",
    "the weather in the mountain city was cold and the train to the airport was late",
    "please transfer me to billing because my card payment did not go through this month",
    "seven eight nine ten my account number is four five six and my password needs a reset",
]


def _say(voice: str, text: str, path: Path) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is needed (apt install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("voices")
    voices = {"anna": "en+f4", "omar": "en-us+m6", "zed": "en+Tweaky"}
    return {
        who: [_say(v, t, root / who / f"{i}.wav") for i, t in enumerate(TEXTS)]
        for who, v in voices.items()
    }


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["speakers", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_enroll_list_identify_remove(
    clips: dict[str, list[Path]], registry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = ["--registry", str(registry_dir)]
    for who in ("anna", "omar"):
        code, out, err = run(capsys, *reg, "enroll", who, *map(str, clips[who][:3]))
        assert code == 0, err
        assert f"enrolled {who!r}" in out
    assert (registry_dir / INDEX_FILE).is_file() and (registry_dir / EMBEDDINGS_FILE).is_file()

    code, out, _ = run(capsys, *reg, "list", "--json")
    listing = json.loads(out)
    assert [s["name"] for s in listing["speakers"]] == ["anna", "omar"]
    assert listing["model"]["name"] == "speaker-embed"

    probes = [clips["anna"][3], clips["omar"][3], clips["zed"][0]]
    code, out, _ = run(capsys, *reg, "identify", "--json", *map(str, probes))
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["path"] for r in records] == [str(p) for p in probes]
    assert [r["speaker"] for r in records] == ["anna", "omar", "unknown"]
    assert all({"score", "margin", "threshold", "nearest"} <= set(r) for r in records)

    code, out, _ = run(capsys, *reg, "remove", "omar")
    assert code == 0 and "removed 'omar'" in out
    code, out, err = run(capsys, *reg, "remove", "omar")
    assert code == 1 and "'omar' is not enrolled (enrolled: anna)" in err


def test_identifying_against_an_empty_registry_says_how_to_enroll(
    clips: dict[str, list[Path]], registry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--registry", str(registry_dir), "identify", "--json", str(clips["anna"][0])
    )
    assert code == 1 and out == ""
    assert f"no speakers enrolled in {registry_dir}" in err and "tympan speakers enroll" in err
    code, out, _ = run(capsys, "--registry", str(registry_dir), "list")
    assert code == 0 and "no speakers enrolled" in out


def test_shared_options_work_before_or_after_the_subcommand(
    clips: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    after, before = tmp_path / "after", tmp_path / "before"
    code, _, err = run(
        capsys, "enroll", "anna", *map(str, clips["anna"][:2]), "--registry", str(after)
    )
    assert code == 0, err
    assert (after / INDEX_FILE).is_file()
    probe = str(clips["anna"][3])
    code, out, err = run(capsys, "identify", "--json", "--registry", str(after), probe)
    assert code == 0, err
    assert json.loads(out)["speaker"] == "anna"
    # a subcommand that is not given the option keeps the one given before it
    code, out, err = run(capsys, "--registry", str(before), "identify", probe)
    assert code == 1 and str(before) in err
    code, out, _ = run(capsys, "--registry", str(before), "list", "--registry", str(after))
    assert code == 0 and str(after) in out and "anna" in out


@pytest.mark.parametrize("kind", ["silence", "tone"])
def test_enrolling_non_speech_is_refused_with_a_reason(
    tmp_path: Path, registry_dir: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    t = np.arange(10 * SR) / SR
    y = np.zeros_like(t) if kind == "silence" else 0.3 * np.sin(2 * np.pi * 300 * t)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, y, SR)
    code, _, err = run(capsys, "--registry", str(registry_dir), "enroll", "bob", str(path))
    assert code == 1
    assert str(path) in err and "no usable speech" in err
    assert "talks for 10-20 s" in err and "--max-seconds" in err
    assert not (registry_dir / INDEX_FILE).exists()


def _in_long_silences(paths: list[Path], *, gap_s: float) -> np.ndarray:
    """The speech of ``paths`` cut into half-second words, each followed by ``gap_s``
    of silence: a voice recorded as isolated letters or words."""
    from stream.audio.files import load_audio

    speech = np.concatenate([load_audio(p, sr=SR)[0] for p in paths])
    words = [speech[i : i + SR // 2] for i in range(0, speech.size - SR // 2, SR // 2)]
    silence = np.zeros(round(gap_s * SR), np.float32)
    return np.concatenate([np.concatenate([w, silence]) for w in words])


def test_a_voice_in_long_silences_enrolls_from_its_speech(
    clips: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Words 7 s apart hold ~1.5 s of speech in their first 20 s: enrollment reads on
    until it has its speech instead of refusing the voice."""
    path = tmp_path / "anna-words.wav"
    sf.write(path, _in_long_silences(clips["anna"][:3], gap_s=7.0), SR)
    reg = ["--registry", str(tmp_path / "registry")]
    code, out, err = run(capsys, *reg, "enroll", "anna", str(path), "--max-seconds", "6")
    assert code == 0, err
    windows = int(out.split(" from ")[1].split()[0])
    assert windows >= 6  # one speech window per word at least: not a second of audio


@pytest.mark.parametrize("kind", ["hum-and-hiss", "melody"])
def test_minutes_of_non_speech_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Reading on past silences must not let long non-speech add up to enough."""
    rng = np.random.default_rng(7)
    t = np.arange(120 * SR) / SR
    if kind == "hum-and-hiss":
        y = 0.2 * np.sin(2 * np.pi * 50 * t) + 0.02 * rng.normal(size=t.size)
    else:
        f0 = 220 * 2 ** (rng.integers(0, 12, size=t.size // (SR // 2) + 1) / 12)
        y = 0.3 * np.sin(2 * np.pi * np.repeat(f0, SR // 2)[: t.size] * t)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, y.astype(np.float32), SR)
    reg = ["--registry", str(tmp_path / "registry")]
    code, _, err = run(capsys, *reg, "enroll", "bob", str(path), "--scene-model", "none")
    assert code == 1
    assert "no usable speech" in err and "of speech in 120.0 s of audio" in err


def test_corrupt_registry_is_a_clear_error(
    clips: dict[str, list[Path]], registry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_dir.mkdir()
    (registry_dir / INDEX_FILE).write_text("{ definitely not json")
    code, _, err = run(capsys, "--registry", str(registry_dir), "identify", str(clips["anna"][0]))
    assert code == 1 and str(registry_dir / INDEX_FILE) in err


def test_registry_from_env(
    clips: dict[str, list[Path]],
    registry_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TYMPAN_SPEAKER_REGISTRY", str(registry_dir))
    code, _, err = run(capsys, "enroll", "anna", *map(str, clips["anna"][:2]))
    assert code == 0, err
    assert (registry_dir / INDEX_FILE).is_file()


def test_shipped_model_exists() -> None:
    assert any(MODEL_DIR.glob("*/manifest.json")), f"no speaker-embed model under {MODEL_DIR}"


@pytest.mark.parametrize(
    ("labels", "accepted"),
    [(("quiet", "speech"), True), (("quiet", "noise"), True), (("quiet", "music"), False)],
)
def test_label_model_vetoes_only_non_voice_sounds(
    clips: dict[str, list[Path]],
    registry_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    labels: tuple[str, str],
    accepted: bool,
) -> None:
    """The tiny label model calls loud windows ``labels[1]``: the voice is loud.

    A model that hears the voice as ``noise`` (as scene/2 heard a whisper) does not
    refuse it; only a non-voice label (music, tone) in most windows does.
    """
    from stream.features.spec import FeatureSpec
    from tests.support.onnx_models import make_tiny_model_dir

    repo = tmp_path / "repo"
    make_tiny_model_dir(repo / "scene" / "1", spec=FeatureSpec(), labels=labels, name="scene")
    monkeypatch.setenv("TYMPAN_MODEL_REPO", str(repo))
    speaker_model = str(next(MODEL_DIR.glob("*/manifest.json")).parent)
    argv = ["--registry", str(registry_dir), "--model", speaker_model, "enroll", "anna"]
    code, _, err = run(capsys, *argv, *map(str, clips["anna"][:2]))  # --scene-model auto
    if accepted:
        assert code == 0, err
    else:
        assert code == 1
        assert "no usable speech to enroll: label model scene/1 hears music (not a voice)" in err
        assert "--scene-model none" in err and "--max-seconds" in err
    code, _, err = run(capsys, *argv, "--scene-model", "none", *map(str, clips["anna"][:2]))
    assert code == 0, err


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A whispered espeak voice (the demo enrolls one): scene/2 (the default before scene/4)
    heard noise."""
    root = tmp_path_factory.mktemp("whisper")
    return [_say("en-gb-x-rp+whisper", t, root / f"{i}.wav") for i, t in enumerate(TEXTS)]


def test_a_whispered_voice_enrolls_with_the_shipped_label_model(
    whisper: list[Path], registry_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--registry", str(registry_dir), "enroll", "w", *map(str, whisper))
    assert code == 0, err
    assert "enrolled 'w'" in out


def _ringback(seconds: float) -> np.ndarray:
    """A US ringback cadence (440+480 Hz, 2 s on, 4 s off) over a faint noise floor:
    its on/off edges look like syllables to the energy gate."""
    t = np.arange(int(seconds * SR)) / SR
    on = (t % 6.0) < 2.0
    tone = 0.15 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * on
    noise = np.random.default_rng(0).normal(0, 5e-4, t.size)
    return (tone + noise).astype(np.float32)


def _hold_music(seconds: float) -> np.ndarray:
    from models.corpus import music

    y, _ = music.hold_music(seconds, rng=np.random.default_rng(3))
    return np.asarray(y, dtype=np.float32)


@pytest.mark.parametrize("kind", ["ringback", "hold_music"])
def test_enrolling_tones_and_music_is_refused_with_the_shipped_label_model(
    tmp_path: Path, registry_dir: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    y = _ringback(20.0) if kind == "ringback" else _hold_music(20.0)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, y, SR)
    code, _, err = run(capsys, "--registry", str(registry_dir), "enroll", "bob", str(path))
    assert code == 1, err
    assert str(path) in err and "no usable speech to enroll" in err
    assert "talks for 10-20 s" in err
    assert not (registry_dir / INDEX_FILE).exists()
