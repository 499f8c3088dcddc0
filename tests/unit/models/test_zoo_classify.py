"""The shipped scene model, through the real CLI, on audio generated here.

Fresh audio (other seeds and voices than its training set): DTMF and ringback from
numpy, a quiet line, white noise, espeak-ng speech, fluidsynth hold music — and the
same speech through the 8 kHz μ-law telephone channel the call-center feeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.corpus import channel, music, speech, synth
from stream.cli import main

SR = 16000


def _write(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(y, -1, 1), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("scene-clips")
    rng = np.random.default_rng(90210)
    voice = speech.Voice(engine="espeak", name="en-us", variant="m2", pitch=55, speed_wpm=165)
    talk, _ = speech.utterance(voice, rng, min_s=4.0)
    talk = synth.set_level(talk, -20.0)
    hold, _ = music.hold_music(5.0, rng=rng)
    return {
        "tone": [
            _write(out / "tone" / "dtmf.wav", synth.dtmf_sequence("2580#147", tone_s=0.15)),
            _write(out / "tone" / "ringback.wav", synth.cadence_tone("us_ringback", 4.0)),
        ],
        "silence": [_write(out / "silence" / "line.wav", synth.near_silence(4.0, rng=rng))],
        "noise": [_write(out / "noise" / "white.wav", synth.white_noise(4.0, rng=rng))],
        "speech": [
            _write(out / "speech" / "wide.wav", talk),
            _write(
                out / "speech" / "phone.wav",
                channel.telephone(talk, law="mulaw", out_sr=8000),
                8000,
            ),
        ],
        "music": [_write(out / "music" / "hold.wav", synth.set_level(hold, -20.0))],
    }


def test_classify_names_each_generated_clip(
    clips: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    files = [p for paths in clips.values() for p in paths]
    assert main(["classify", "--model", "scene", "--json", *map(str, files)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    got = {Path(r["path"]).name: r["label"] for r in records}
    want = {p.name: label for label, paths in clips.items() for p in paths}
    assert got == want


def test_evaluate_reports_window_and_clip_accuracy(
    clips: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root = clips["speech"][0].parents[1]
    assert main(["evaluate", "scene", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_files"] == 7
    assert report["clip_accuracy"] == 1.0
    assert report["window_accuracy"] >= 0.8
    assert set(report["per_class"]) == {"speech", "music", "silence", "tone", "noise"}
