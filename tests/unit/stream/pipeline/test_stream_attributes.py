"""Stream attributes: ``attr-<name>`` frame headers (a call's custom parameters) reach the
stream's label and summary events; bad attributes never cost a frame its audio."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stream.errors import FrameError
from stream.events import ModelRef
from stream.features.frontend import FeatureBank
from stream.features.spec import FeatureSpec
from stream.inference.session import OnnxModel
from stream.pipeline import Pipeline, PipelinePolicy, Record
from stream.produce import frames_from_array
from stream.wire import decode_frame, encode_frame
from stream.wire.frame import MAX_ATTRIBUTES
from tests.support.onnx_models import make_tiny_model_dir
from tests.support.replay import run_sync

SPEC = FeatureSpec(window_seconds=0.5, hop_seconds=0.25)
SCHEMAS = Path(__file__).resolve().parents[4] / "docs" / "schemas"
ATTRIBUTES = (("queue", "support"), ("caller", "+1 555 0100 ✆"))


def _frames(attributes: tuple[tuple[str, str], ...]) -> list:  # type: ignore[type-arg]
    y = (np.random.default_rng(0).standard_normal(16000) * 0.2).astype(np.float32)
    frames = frames_from_array(y, 16000, stream_id="call-1", chunk_ms=100, start_us=0)
    return [replace(f, attributes=attributes) for f in frames]


def test_tags_round_trip_as_headers() -> None:
    frame = _frames(ATTRIBUTES)[0]
    key, value, headers = encode_frame(frame)
    assert ("attr-queue", b"support") in headers
    assert decode_frame(key, value, headers).attributes == ATTRIBUTES


@pytest.mark.parametrize(
    "attributes",
    [
        (("bad name", "x"),),
        (("", "x"),),
        (("a", "x"), ("a", "y")),
        (("a", "x" * 300),),
        tuple((f"t{i}", "x") for i in range(MAX_ATTRIBUTES + 1)),
    ],
)
def test_bad_attributes_are_refused_where_frames_are_made(
    attributes: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(FrameError) as info:
        encode_frame(_frames(attributes)[0])
    assert info.value.reason == "invalid_header"


def test_bad_tag_headers_are_ignored_by_the_reader() -> None:
    key, value, headers = encode_frame(_frames(())[0])
    headers += [
        ("attr-ok", b"1"),
        ("attr-bad name", b"x"),
        ("attr-bin", b"\xff\xfe"),
        ("attr-ok", b"2"),
    ]
    headers += [("attr-long", b"x" * 1000)]
    assert decode_frame(key, value, headers).attributes == (("ok", "1"),)


def test_events_carry_the_stream_tags(tmp_path: Path) -> None:
    model = OnnxModel.load(make_tiny_model_dir(tmp_path / "m", spec=SPEC, labels=["quiet", "loud"]))
    pipeline = Pipeline(
        SPEC, ModelRef("tiny", "1"), model.labels, FeatureBank(SPEC), PipelinePolicy()
    )
    records = []
    for offset, frame in enumerate(
        _frames(ATTRIBUTES) + [replace(f, stream_id="plain") for f in _frames(())]
    ):
        key, value, headers = encode_frame(frame)
        records.append(Record(key, value, tuple(headers), "audio", 0, offset))
    labels, summaries, _ = run_sync(pipeline, records, lambda x: model.run(x).probabilities)
    tagged = [e.to_dict() for e in labels if e.stream_id == "call-1"]
    assert tagged and all(e["attributes"] == dict(ATTRIBUTES) for e in tagged)
    assert all("attributes" not in e.to_dict() for e in labels if e.stream_id == "plain")
    by_stream = {s.stream_id: s.to_dict() for s in summaries}
    assert (
        by_stream["call-1"]["attributes"] == dict(ATTRIBUTES)
        and "attributes" not in by_stream["plain"]
    )
    for name in ("label", "summary"):
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())["properties"][
            "attributes"
        ]
        pattern = re.compile(schema["propertyNames"]["pattern"])
        assert all(pattern.match(k) for k, _ in ATTRIBUTES)
