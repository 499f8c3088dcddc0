"""A stream id sent again after its stream ended: a new ``instance`` header makes a new
stream (new segment, new event ids); without one the reuse is dead-lettered
``stream_reused``; a replay of the same records stays deduplicated, silently."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stream.errors import FrameError
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record, stream_key, wire_id
from stream.produce import frames_from_array
from stream.wire import AudioFrame, decode_frame, encode_frame
from stream.wire.frame import MAX_INSTANCE_CHARS
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import SyncRun, replay

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
SCHEMAS = Path(__file__).resolve().parents[4] / "docs" / "schemas"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    path = tmp_path_factory.mktemp("model") / "tiny"
    return OnnxModel.load(make_tiny_model_dir(path, spec=SPEC, labels=["quiet", "loud"]))


def _pipeline(model: OnnxModel) -> Pipeline:
    return Pipeline(
        SPEC,
        ModelRef(model.manifest.name, model.manifest.version),
        model.labels,
        FeatureBank(SPEC),
        PipelinePolicy(),
        clock=lambda: 0.0,
    )


def _frames(instance: str | None = None, sid: str = "upload.wav") -> list[AudioFrame]:
    y = (np.random.default_rng(0).standard_normal(16000) * 0.2).astype(np.float32)
    frames = frames_from_array(y, 16000, stream_id=sid, chunk_ms=100, start_us=0)
    return [replace(f, instance=instance) for f in frames]


def _records(frames: Iterable[AudioFrame], first_offset: int = 0) -> list[Record]:
    out = []
    for offset, frame in enumerate(frames, start=first_offset):
        key, value, headers = encode_frame(frame)
        out.append(Record(key, value, tuple(headers), "audio", 0, offset))
    return out


def _run(pipeline: Pipeline, records: Sequence[Record], model: OnnxModel) -> SyncRun:
    return replay(pipeline, records, lambda x: model.run(x).probabilities, close_all=False)


def test_the_instance_header_round_trips_and_is_optional() -> None:
    frame = _frames("run-2")[0]
    key, value, headers = encode_frame(frame)
    assert ("instance", b"run-2") in headers
    assert decode_frame(key, value, headers).instance == "run-2"
    key, value, headers = encode_frame(_frames()[0])
    assert all(name != "instance" for name, _ in headers)
    assert decode_frame(key, value, headers).instance is None


@pytest.mark.parametrize("bad", [b"", b"a b", b"x" * 65, b"\xff"])
def test_a_malformed_instance_header_is_refused(bad: bytes) -> None:
    key, value, headers = encode_frame(_frames()[0])
    with pytest.raises(FrameError) as info:
        decode_frame(key, value, [*headers, ("instance", bad)])
    assert info.value.reason == "invalid_header"


def test_stream_keys_name_the_stream_back() -> None:
    assert stream_key("a", None) == "a"
    assert stream_key("a", "1") != stream_key("a", "2") != "a"
    assert wire_id(stream_key("call\x1d17", "x"), "x") == "call\x1d17"


def test_a_new_instance_of_an_ended_stream_is_a_new_stream(model: OnnxModel) -> None:
    first, second = _records(_frames("run-1")), _records(_frames("run-2"), first_offset=10)
    run = _run(_pipeline(model), [*first, *second], model)
    assert not run.rejected
    assert [(s.stream_id, s.instance, s.closed_by) for s in run.summaries] == [
        ("upload.wav", "run-1", "eos"),
        ("upload.wav", "run-2", "eos"),
    ]
    ids = [e.event_id for e in run.labels]
    assert ids and len(set(ids)) == len(ids)
    assert {e.instance for e in run.labels} == {"run-1", "run-2"}
    assert len({s.event_id for s in run.summaries}) == 2
    # same content, other ids: the instance keys them
    one = [e for e in run.labels if e.instance == "run-1"]
    two = [e for e in run.labels if e.instance == "run-2"]
    assert [e.label for e in one] == [e.label for e in two]


def test_header_less_streams_keep_their_ids_and_json(model: OnnxModel) -> None:
    plain = _run(_pipeline(model), _records(_frames()), model)
    stamped = _run(_pipeline(model), _records(_frames("run-1")), model)
    plain_ids = {e.event_id for e in plain.labels}
    assert plain_ids.isdisjoint(e.event_id for e in stamped.labels)
    assert all("instance" not in json.loads(e.to_json()) for e in plain.labels)
    assert all(json.loads(e.to_json())["instance"] == "run-1" for e in stamped.labels)
    assert json.loads(stamped.summaries[0].to_json())["instance"] == "run-1"


def test_a_header_less_reuse_is_dead_lettered_not_dropped(model: OnnxModel) -> None:
    first = _records(_frames())
    second = _records(_frames(), first_offset=len(first))  # the same upload, sent again
    run = _run(_pipeline(model), [*first, *second], model)
    assert len(run.summaries) == 1
    assert [(r.reason, r.offset) for r in run.rejected] == [
        ("stream_reused", r.offset) for r in second
    ]
    assert "instance" in run.rejected[0].message
    assert run.rejected[0].stream_id == "upload.wav"


def test_a_replay_of_an_ended_stream_stays_silent(model: OnnxModel) -> None:
    pipeline = _pipeline(model)
    records = _records(_frames("run-1"))
    plain = _records(_frames(sid="other"), first_offset=len(records))
    _run(pipeline, [*records, *plain], model)
    again = _run(pipeline, [*records, *plain], model)  # re-read after a rebalance
    assert again.rejected == [] and again.labels == [] and again.summaries == []


def test_a_producer_repeat_after_the_end_stays_silent(model: OnnxModel) -> None:
    records = _records(_frames())
    repeat = replace(records[3], offset=len(records))  # seq 3 written twice
    run = _run(_pipeline(model), [*records, repeat], model)
    assert run.rejected == [] and len(run.summaries) == 1


@pytest.mark.parametrize("kind", ["label", "speaker", "summary"])
def test_the_schemas_declare_the_instance(kind: str) -> None:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    instance = schema["properties"]["instance"]
    assert instance["type"] == "string" and "instance" not in schema.get("required", [])
    assert re.fullmatch(instance["pattern"].strip("^$"), "a" * MAX_INSTANCE_CHARS)
    assert not re.fullmatch(instance["pattern"].strip("^$"), "a" * (MAX_INSTANCE_CHARS + 1))
