"""Calls that end in the same fetched batch are closed after the batch's one drain:
their last samples go through one feature-kernel call with everyone's, not one call
per ending stream (docs/delivery.md, "What the worker waits for at end of stream"),
and what they emit is what closing each at its EOS frame gave."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record, WindowJob
from stream.produce import frames_from_array
from stream.wire import AudioFrame, Encoding, encode_frame
from tests.support.onnx_models import make_tiny_model_dir

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
T0_US = 1_700_000_000_000_000


class CountingBank(FeatureBank):
    """The real bank, remembering which streams each push carried."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self.pushes: list[set[str]] = []

    def push(self, chunks: Mapping[str, np.ndarray]) -> object:  # type: ignore[override]
        self.pushes.append(set(chunks))
        return super().push(chunks)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


def _pipeline(model: OnnxModel, bank: FeatureBank) -> Pipeline:
    ref = ModelRef(model.manifest.name, model.manifest.version)
    return Pipeline(SPEC, ref, model.labels, bank, PipelinePolicy())


def _calls(n: int, sr: int, enc: Encoding, seconds: float) -> list[list[AudioFrame]]:
    rng = np.random.default_rng(7)
    calls = []
    for j in range(n):
        y = (rng.standard_normal(round(seconds * sr)) * 0.2).astype(np.float32)
        frames = frames_from_array(
            y, sr, stream_id=f"call-{j}", encoding=enc, chunk_ms=100, start_us=T0_US
        )
        calls.append(list(frames))
    return calls


def _by_tick(calls: list[list[AudioFrame]]) -> list[list[Record]]:
    """Each tick: frame ``s`` of every call, as one fetched batch."""
    ticks: list[list[Record]] = []
    offset = 0
    for s in range(len(calls[0])):
        tick = []
        for call in calls:
            key, value, headers = encode_frame(call[s])
            tick.append(Record(key, value, tuple(headers), "audio", 0, offset))
            offset += 1
        ticks.append(tick)
    return ticks


def _jobs(job: WindowJob) -> tuple[str, int, int, int, bool]:
    span = job.span
    return (job.stream_id, span.index, span.start_sample, span.end_sample, job.window.padded)


@pytest.mark.parametrize(("sr", "enc"), [(16000, Encoding.PCM_S16LE), (8000, Encoding.MULAW)])
def test_calls_ending_together_share_one_kernel_call(
    model: OnnxModel, sr: int, enc: Encoding
) -> None:
    calls = _calls(6, sr, enc, seconds=1.23)  # a padded last window too
    ticks = _by_tick(calls)
    bank = CountingBank(SPEC)
    batched = _pipeline(model, bank)
    jobs = []
    for tick in ticks[:-1]:
        jobs += batched.accept_many(tick).jobs
    bank.pushes.clear()
    last = batched.accept_many(ticks[-1])
    jobs += last.jobs
    ids = {f"call-{j}" for j in range(6)}
    assert [p for p in bank.pushes if p] == [ids]  # one push carried every ending call
    assert {job.stream_id for job in last.jobs} == ids
    assert batched.active_streams == 0

    one_by_one = _pipeline(model, FeatureBank(SPEC))
    reference = []
    for tick in ticks:
        for record in tick:
            reference += one_by_one.accept(record).jobs
    assert sorted(map(_jobs, jobs)) == sorted(map(_jobs, reference))
    assert any(job.window.padded for job in last.jobs)


def test_a_stream_id_sent_again_after_eos_in_the_same_batch_is_judged_as_before(
    model: OnnxModel,
) -> None:
    (call,) = _calls(1, 16000, Encoding.PCM_S16LE, seconds=0.6)
    records = []
    for offset, frame in enumerate([*call, *call]):  # the id ends, then starts again
        key, value, headers = encode_frame(frame)
        records.append(Record(key, value, tuple(headers), "audio", 0, offset))
    batched = _pipeline(model, FeatureBank(SPEC))
    step = batched.accept_many(records)
    one_by_one = _pipeline(model, FeatureBank(SPEC))
    steps = [one_by_one.accept(r) for r in records]
    reference = [j for s in steps for j in s.jobs]
    assert sorted(map(_jobs, step.jobs)) == sorted(map(_jobs, reference))
    assert [r.reason for r in step.rejected] == [r.reason for s in steps for r in s.rejected]
