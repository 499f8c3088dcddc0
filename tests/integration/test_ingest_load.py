"""Many concurrent RTP calls through one ``tympan ingest rtp`` process (issue 14's load).

Runs ``benchmarks/bench_ingest.py``'s load: real-time 20 ms PCMU packets of every
call to its own port, then BYE. The promise checked is completeness: every frame of
every call reaches the audio topic, in sequence, with its EOS, and nothing is
counted lost. CPU per call and added latency are printed, not asserted (timing goals
live in the benchmark; figures in benchmarks/RESULTS.md).

``TYMPAN_TEST_SCALE=ci`` (``make test``): 20 calls for 3 s; ``full``: 200 calls for 20 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from ingest_harness import scale

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ingest.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_concurrent_rtp_calls_all_arrive_complete(broker: str, tmp_path: Path) -> None:
    calls, seconds = (200, 20.0) if scale() == "full" else (20, 3.0)
    args = argparse.Namespace(
        calls=calls,
        duration_s=seconds,
        chunk_ms=100.0,
        broker=broker,
        log=str(tmp_path / "ingest.log"),
    )
    result = _bench().run(args)
    print(result)
    assert result.frames_received == result.frames_expected
    assert result.complete, "a call lost a frame or its EOS"
    assert result.lost == 0 and result.malformed == 0
