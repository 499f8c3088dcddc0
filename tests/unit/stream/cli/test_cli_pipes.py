"""Every ``tympan`` command exits quietly when its reader closes the pipe (``| head``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from stream.features.spec import FeatureSpec
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(n_mels=16, window_seconds=0.5, hop_seconds=0.25)
MAIN = "import sys; from stream.cli import main; sys.exit(main())"


def _head_one(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``tympan ARGS | head -1`` with Python pipes: read a line, close, wait."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=300), err


def test_classify_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    model = make_tiny_model_dir(tmp_path / "scene" / "1", spec=SPEC, labels=["quiet", "loud"])
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # ~300 KB of JSON lines: far more than a pipe buffer, so writes hit the closed pipe
    rc, err = _head_one(["classify", "--model", str(model), "--json", *[str(wav)] * 500], env)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert rc == 0
