"""The end-to-end benchmark's load generator speaks the wire format, and its count of
expected windows is the pipeline's: otherwise "every event arrived" means nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from stream.features.offline import features, windows
from stream.features.spec import FeatureSpec
from stream.wire import Encoding, decode_frame
from stream.wire.frame import frame_headers

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_e2e.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_e2e_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_producer_records_decode_as_the_frames_meant(bench: ModuleType) -> None:
    chunk = bench.SR * bench.CHUNK_MS // 1000
    clips = bench.encoded_chunks(2, 1.0, chunk)
    assert all(len(payload) == 2 * chunk for clip in clips for payload in clip)
    headers = frame_headers(
        seq=7,
        sample_rate=bench.SR,
        encoding=Encoding.PCM_S16LE,
        channels=1,
        capture_us=1_700_000_000_123_456,
        eos=True,
    )
    frame = decode_frame(b"k1-00003", clips[1][3], headers)
    assert (frame.stream_id, frame.seq, frame.eos) == ("k1-00003", 7, True)
    assert frame.capture_us == 1_700_000_000_123_456
    assert frame.n_samples == chunk


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.5, 12.0])
def test_expected_windows_match_the_offline_cut(bench: ModuleType, seconds: float) -> None:
    spec = FeatureSpec()
    n = round(seconds * spec.sr)
    y = np.zeros(n, dtype=np.float32)
    assert bench.expected_windows(spec, n) == len(windows(features(y, spec), spec))


def test_cpu_meter_reports_every_process_and_the_rest(bench: ModuleType) -> None:
    import os

    meter = bench.CpuMeter({"me": os.getpid()})
    meter.start()
    sum(i * i for i in range(200_000))
    cores = meter.stop()
    assert set(cores) == {"me", "machine", "cores", "other"}
    assert cores["me"] >= 0 and cores["other"] >= 0
