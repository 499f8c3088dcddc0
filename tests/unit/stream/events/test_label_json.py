"""The label event's direct JSON (``stream.events.label_json``) against the encoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.events import LabelEvent, ModelRef, WindowSpan
from stream.events.label_json import label_json
from stream.events.records import compact_json as _dumps

_text = st.text(max_size=12)  # any code point: quotes, controls, surrogates, non-ASCII
_floats = st.floats() | st.sampled_from([0.0, -0.0, 1e16, 1e-7, 0.1234565, 2.5e-324])
_ints = st.integers(-(2**70), 2**70)
_number = _floats | _ints  # an int where a float belongs goes through the encoder


@st.composite
def label_events(draw: st.DrawFn) -> LabelEvent:
    span = WindowSpan(
        draw(_ints),
        draw(_ints),
        draw(_ints),
        draw(st.integers(0, 48000) | _ints),
        draw(st.none() | _floats | _ints),
    )
    return LabelEvent(
        event_id=draw(_text),
        stream_id=draw(_text),
        span=span,
        label=draw(_text),
        score=draw(_number),
        top_k=tuple(draw(st.lists(st.tuples(_text, _number), max_size=4))),
        model=ModelRef(draw(_text), draw(_text)),
        gap=draw(st.booleans()),
        padded=draw(st.booleans()),
        latency_ms=draw(_number),
        tags=draw(st.none() | st.just((("speech", 0.5),))),
        attributes=draw(st.sampled_from([(), (("lang", "fr"),)])),
        instance=draw(st.none() | st.just("run-2")),
    )


def _encoded(event: LabelEvent) -> bytes | str:
    try:
        return _dumps(event.to_dict()).encode()
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        return type(exc).__name__


@settings(max_examples=3000, deadline=None)
@given(label_events())
def test_the_direct_json_is_the_encoders_byte_for_byte(event: LabelEvent) -> None:
    """Where the direct path writes an event, it writes the encoder's bytes; where the
    encoder refuses one (non-finite numbers, ``sr`` 0), it steps aside."""
    direct = label_json(event)
    assert direct is None or direct == _encoded(event)
    assert event.to_json() == direct if direct is not None else True


def test_a_usual_event_takes_the_direct_path() -> None:
    span = WindowSpan(4, 32000, 48000, 16000, 1_700_000_003.0)
    event = LabelEvent(
        "0" * 32,
        "call-1",
        span,
        "music",
        0.7,
        (("music", 0.7), ("speech", 0.2)),
        ModelRef("m", "1"),
    )
    direct = label_json(event)
    assert direct is not None and direct == _dumps(event.to_dict()).encode()
    assert json.loads(direct)["top_k"][1] == {"label": "speech", "score": 0.2}


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_non_finite_score_is_left_to_the_encoder_which_refuses_it(score: float) -> None:
    event = LabelEvent(
        "0" * 32, "s", WindowSpan(0, 0, 1, 16000), "x", score, (), ModelRef("m", "1")
    )
    assert label_json(event) is None
    with pytest.raises(ValueError):
        event.to_json()
