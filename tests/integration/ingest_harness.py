"""Run ``tympan ingest`` as a subprocess, real telephony clients against it, and compare
its calls' label events with ``tympan classify`` of the same file.

Used by ``test_ingest_*.py``. The clients are Debian's ``ffmpeg`` and GStreamer's
``gst-launch-1.0`` (installed by ``scripts/setup-system.sh``); a missing one fails the
test with the package to install, it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from worker_harness import REPO, TYMPAN, noise

SR = 16000
SEGMENT_S = 2.0


def scale() -> str:
    return os.environ.get("TYMPAN_TEST_SCALE", "ci")


def need(command: str, package: str) -> str:
    path = shutil.which(command)
    assert path, f"{command!r} is missing: apt-get install {package} (scripts/setup-system.sh)"
    return path


def call_wav(path: Path, pattern: Sequence[bool], *, seed: int = 0) -> Path:
    """A 16 kHz call: ``SEGMENT_S`` of loud noise or near silence per ``pattern`` entry."""
    y = np.concatenate(
        [noise(SEGMENT_S, SR, 0.2 if loud else 1e-5, seed + i) for i, loud in enumerate(pattern)]
    )
    sf.write(path, y, SR, subtype="PCM_16")
    return path


@dataclass
class IngestProcess:
    """One ``tympan ingest`` subprocess, its log and its ``/metrics``."""

    args: list[str]
    log_path: Path
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_s: float = 60) -> IngestProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(TYMPAN), "-v", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        deadline = time.monotonic() + ready_s
        while "listening" not in self.log():
            assert self.proc.poll() is None, f"tympan ingest exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"tympan ingest not listening:\n{self.log()}"
            time.sleep(0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}``."""
        assert self.metrics_port is not None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def classify(model_dir: Path, wav: Path) -> list[str]:
    """``tympan classify --json`` of ``wav``: the label of each window, in order."""
    out = subprocess.run(
        [str(TYMPAN), "classify", "--model", str(model_dir), "--json", str(wav)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    record = json.loads(out.stdout.splitlines()[0])
    return [row["labels"][0] for row in record["windows"]]


def compare_labels(events: list[dict[str, Any]], expected: list[str]) -> int:
    """Assert a call's label events say what ``tympan classify`` says, per window.

    Tolerance (chunking and gaps move a window's content by up to a frame): a window
    may differ only when it is flagged ``gap`` or ``padded``, or when classify's labels
    of it and its neighbours are not all the same (a loud/quiet boundary); the number
    of windows may differ by one (the last, padded one). Returns the windows compared.
    """
    got = {e["window_index"]: e for e in events}
    assert abs(len(got) - len(expected)) <= 1, (len(got), len(expected))
    compared = 0
    for i, label in enumerate(expected):
        event = got.get(i)
        if event is None:
            continue
        around = set(expected[max(0, i - 1) : i + 2])
        if event["gap"] or event["padded"] or len(around) > 1:
            continue
        assert event["label"] == label, (i, event, expected)
        compared += 1
    return compared


@dataclass
class LossyProxy:
    """A UDP proxy between a sender and the ingest that drops, swaps and repeats packets.

    Every ``drop_every``-th datagram is dropped, every ``swap_every``-th is held and
    sent after the next one, every ``dup_every``-th is sent twice. Deterministic.
    """

    target: tuple[str, int]
    drop_every: int = 23
    swap_every: int = 7
    dup_every: int = 11
    counts: dict[str, int] = field(
        default_factory=lambda: {"in": 0, "dropped": 0, "swapped": 0, "dup": 0}
    )

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held: bytes | None = None
        n = 0
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            n += 1
            self.counts["in"] += 1
            if data[1] in range(192, 224):  # RTCP passes untouched
                out.sendto(data, self.target)
                continue
            if n % self.drop_every == 0:
                self.counts["dropped"] += 1
                continue
            if held is None and n % self.swap_every == 0:
                held = data
                self.counts["swapped"] += 1
                continue
            out.sendto(data, self.target)
            if n % self.dup_every == 0:
                out.sendto(data, self.target)
                self.counts["dup"] += 1
            if held is not None:
                out.sendto(held, self.target)
                held = None
        out.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
