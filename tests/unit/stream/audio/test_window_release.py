"""A window of an 8 kHz call is emitted by the frame that brings its last needed sample.

The worker's path (``StreamResampler`` → ``FeatureBank``, as ``Conditioner.push`` and
``drain`` run it), replayed frame by frame: window ``k`` needs the 16 kHz samples up to
its ``end_sample``, i.e. the 8 kHz samples up to ``(end_sample - 1) // 2 + lookahead``,
and must come out of the push of the frame holding that sample, not a later one. For
the default spec (windows end 8 ms before a 20/100/500 ms frame boundary) that is the
same frame that releases the window of a 16 kHz PCM stream: no added latency
(``benchmarks/bench_window_latency.py`` prints the waits; soxr's resampler added a
frame).
"""

from __future__ import annotations

import numpy as np
import pytest

from stream.audio import StreamResampler
from stream.events import ModelRef
from stream.features import FeatureBank, FeatureSpec
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array
from stream.wire import Encoding, encode_frame

SPEC = FeatureSpec()


def release_frames(in_rate: int, frame_ms: int, seconds: float = 4.0) -> dict[int, int]:
    """Window index → number of the frame whose push emitted it."""
    bank = FeatureBank(SPEC)
    resampler = StreamResampler(in_rate, SPEC.sr)
    step = in_rate * frame_ms // 1000
    x = (0.1 * np.random.default_rng(frame_ms).standard_normal(int(in_rate * seconds))).astype(
        np.float32
    )
    released: dict[int, int] = {}
    for k, start in enumerate(range(0, len(x) - step + 1, step)):
        for window in bank.push({"call": resampler.process(x[start : start + step])}).windows:
            released[window.index] = k
    return released


@pytest.mark.parametrize("frame_ms", [20, 30, 37, 100, 500])
def test_each_window_leaves_with_the_frame_that_completes_it(frame_ms: int) -> None:
    lookahead = StreamResampler(8000, SPEC.sr).lookahead
    assert lookahead == 64
    step = 8000 * frame_ms // 1000
    released = release_frames(8000, frame_ms)
    assert released
    for index, frame in released.items():
        last_needed = (SPEC.window_span(index)[1] - 1) // 2 + lookahead
        assert frame == last_needed // step, (index, frame)


@pytest.mark.parametrize("frame_ms", [20, 100, 500])
def test_8k_telephony_adds_no_frame_over_16k_pcm(frame_ms: int) -> None:
    assert release_frames(8000, frame_ms) == release_frames(16000, frame_ms)


def pipeline_release_frames(sr: int, encoding: Encoding, frame_ms: int) -> dict[int, int]:
    """The same through the worker's domain core: window index → the record whose
    ``Pipeline.accept`` returned its job."""
    pipeline = Pipeline(SPEC, ModelRef("m", "1"), ("a", "b"), FeatureBank(SPEC), PipelinePolicy())
    y = (0.1 * np.random.default_rng(1).standard_normal(3 * sr)).astype(np.float32)
    frames = frames_from_array(
        y,
        sr,
        stream_id="call",
        encoding=encoding,
        chunk_ms=frame_ms,
        start_us=1_700_000_000_000_000,
    )
    released: dict[int, int] = {}
    for offset, frame in enumerate(frames):
        key, value, headers = encode_frame(frame)
        step = pipeline.accept(Record(key, value, tuple(headers), "audio", 0, offset))
        for job in step.jobs:
            released[job.span.index] = offset
    return released


@pytest.mark.parametrize("frame_ms", [20, 100, 500])
def test_the_pipeline_releases_8k_mulaw_windows_with_the_16k_pcm_frame(frame_ms: int) -> None:
    mulaw = pipeline_release_frames(8000, Encoding.MULAW, frame_ms)
    assert mulaw
    assert mulaw == pipeline_release_frames(16000, Encoding.PCM_S16LE, frame_ms)
