"""Real-time calls fed to the cluster by ``tympan produce``, and what landed of them.

``tympan produce --realtime --streams N`` plays one WAV file as ``N`` concurrent calls
(8 kHz μ-law by default here, as a telephony front end sends them); :func:`landed`
reads the audio topic back and groups the frames by stream, so a test can say "every
frame of every call is in the topic, once, in order" and replay exactly those frames
through the pipeline for the expected events.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf
from aiokafka import ConsumerRecord
from kafka_helpers import consume_all

from stream.wire import decode_frame

REPO = Path(__file__).resolve().parents[2]
TYMPAN = Path(sys.executable).with_name("tympan")


def call_wav(path: Path, *, seconds: float, sr: int = 8000, seed: int = 0) -> Path:
    """A call: noise whose loudness changes every second (loud and quiet windows)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    amp = np.repeat(rng.choice([0.2, 1e-4], size=int(seconds) + 1), sr)[:n]
    y = np.clip(rng.standard_normal(n) * amp, -1, 1).astype(np.float32)
    sf.write(path, y, sr)
    return path


@dataclass
class Producer:
    """One ``tympan produce --realtime`` subprocess, its output in a file."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls, bootstrap: str, prefix: str, wav: Path, streams: int, log_path: Path, *extra: str
    ) -> Producer:
        log: IO[bytes] = log_path.open("wb")
        proc = subprocess.Popen(
            [
                str(TYMPAN),
                "produce",
                "--realtime",
                "--streams",
                str(streams),
                "--encoding",
                "mulaw",
                "--rate",
                "8000",
                "--topic-prefix",
                prefix,
                "--no-progress",
                *extra,
                str(wav),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "TYMPAN_BROKER": bootstrap, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return cls(proc, log_path)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def landed(
    bootstrap: str, topic: str, min_count: int | None = None
) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
    """The records of ``topic``, by stream id, each stream's in offset order."""
    by_stream: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    for record in consume_all(bootstrap, topic, min_count=min_count, timeout_s=60):
        assert record.key is not None
        by_stream[record.key.decode()].append(record)
    return dict(by_stream)


def seqs(records: list[ConsumerRecord[bytes, bytes]]) -> list[int]:
    return [int(dict(r.headers)["seq"]) for r in records]


def assert_whole(by_stream: dict[str, list[ConsumerRecord[bytes, bytes]]], calls: int) -> None:
    """Every call is in the topic whole: seqs 0..n once each, in order, the last an EOS."""
    assert len(by_stream) == calls, f"{len(by_stream)} streams landed, not {calls}"
    for stream, records in by_stream.items():
        got = seqs(records)
        assert got == list(range(len(got))), (
            f"stream {stream!r}: seqs are not 0..{len(got) - 1} once each in order "
            f"(missing {sorted(set(range(max(got) + 1)) - set(got))[:10]}, "
            f"{len(got) - len(set(got))} duplicated)"
        )
        assert _is_eos(records[-1]), (
            f"stream {stream!r}: its last frame (seq {got[-1]}) is not an end of stream"
        )


def _is_eos(record: ConsumerRecord[bytes, bytes]) -> bool:
    return bool(decode_frame(record.key, record.value, list(record.headers)).eos)
