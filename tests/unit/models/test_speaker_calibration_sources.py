"""``models/speaker_calibration.py``: which prompts it reads and how it decodes them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from models import speaker_calibration as cal


def test_prompts_are_every_sixth_sorted_file_without_silence(tmp_path: Path) -> None:
    sounds = tmp_path / "usr" / "share" / "asterisk" / "sounds" / "xx"
    for i in range(400):
        folder = sounds / ("silence" if i % 50 == 0 else "digits")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"p{i:03d}.g722").touch()
    (sounds / "README.txt").touch()
    got = cal.prompts(tmp_path)
    assert len(got) == cal.PROMPTS
    assert all("silence" not in p.parts and p.suffix == ".g722" for p in got)
    every = sorted(p for p in sounds.rglob("*.g722") if "silence" not in p.parts)
    assert got == every[:: cal.EVERY][: cal.PROMPTS]


def test_raw_g722_prompts_decode_at_16k(tmp_path: Path) -> None:
    """Asterisk's ``.g722`` files are raw G.722 with no header: ffmpeg must be told."""
    path = tmp_path / "tone.g722"
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-ar", "16000", "-ac", "1"]
    made = subprocess.run(
        ["ffmpeg", "-v", "error", *tone, "-c:a", "g722", "-f", "g722", str(path)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"ffmpeg cannot write G.722: {made.stderr.decode(errors='replace')}")
    y = cal.decode(path)
    assert abs(y.size - cal.SR) <= cal.SR // 50
    spectrum = np.abs(np.fft.rfft(y[: cal.SR // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 4  # 2 Hz bins over half a second
