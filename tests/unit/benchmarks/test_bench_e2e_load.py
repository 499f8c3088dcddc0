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


def test_latency_split_times_every_window_the_last_and_the_summary(bench: ModuleType) -> None:
    """Every window is timed from its end's capture time, the padded last one too;
    the summary from the end of stream (origin + duration); warm-up reported apart."""
    origin = 1000.0
    arrivals = [
        bench.Arrival("label", "a", origin + 1.05, 0, origin + 1.0, 1.0),  # warm-up, 50 ms
        bench.Arrival("label", "a", origin + 5.02, 1, origin + 5.0, 5.0),  # 20 ms
        bench.Arrival("label", "a", origin + 5.7, 2, origin + 5.2, 5.2, padded=True),  # 500 ms
        bench.Arrival("label", "b", origin + 5.53, 0, origin + 5.5, 4.5),  # b starts at +1 s
        bench.Arrival("summary", "a", origin + 5.6, end_s=5.25),  # ends at +5.25: 350 ms
        bench.Arrival("summary", "b", origin + 5.6, end_s=4.5),  # ends at +5.5: 100 ms
    ]
    split = bench.latency_split(arrivals, origin + 4.0)
    assert split["warmup"] == {"n": 1, "p50_ms": 50.0, "p99_ms": 50.0}
    assert split["all"]["n"] == 3
    assert split["all"]["p99_ms"] > 480  # the padded last window counts
    assert split["last"]["n"] == 2
    assert sorted(round(x) for x in (split["last"]["p50_ms"], split["last"]["p99_ms"])) == [
        265,
        495,
    ]
    assert split["summary"]["n"] == 2
    assert round(split["summary"]["p50_ms"]) == 225


def test_arrival_reads_label_and_summary_events(bench: ModuleType) -> None:
    label = b'{"window_index": 3, "end_s": 2.0, "capture_time_s": 12.5, "padded": true}'
    got = bench.arrival("label", b"call-1", label, 13.0, 12_600)
    assert (got.stream, got.index, got.capture_s, got.end_s, got.emitted_s, got.padded) == (
        "call-1",
        3,
        12.5,
        2.0,
        12.6,
        True,
    )
    summary = bench.arrival("summary", b"call-1", b'{"duration_s": 24.0}', 14.0, 0)
    assert (summary.kind, summary.end_s) == ("summary", 24.0)
