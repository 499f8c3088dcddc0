"""The safe decoder for JSON topic records: bounds before parsing, never a stray
exception, whatever the bytes (hypothesis-generated mutations of real records)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.control.json_records import (
    NOT_JSON,
    REASONS,
    TOO_DEEP,
    TOO_LARGE,
    JsonRecordError,
    decode_json,
    decode_object,
    nesting_depth,
    where,
)

ANNOUNCEMENT = json.dumps(
    {
        "role": "scene",
        "name": "scene",
        "version": "4",
        "path": "scene/4",
        "sha256": "ab" * 32,
        "spec_hash": "cd" * 32,
        "published_at": "2026-11-25T16:00:00Z",
    }
).encode()
ENROLLMENT = json.dumps(
    {
        "model": "speaker-embed",
        "model_version": "1",
        "embeddings": [[0.5, 0.5]] * 3,
        "updated_at": "2026-11-25T15:00:00Z",
    }
).encode()
WHERE = where("tympan.control.v1", 0, 42, b"model/scene")


def _decode(value: bytes, *, max_bytes: int = 64 * 1024, max_depth: int = 32) -> object:
    return decode_json(value, what=WHERE, max_bytes=max_bytes, max_depth=max_depth)


def test_errors_name_topic_partition_offset_and_key() -> None:
    with pytest.raises(JsonRecordError) as info:
        _decode(b"{nope")
    assert info.value.reason == NOT_JSON
    for part in ("tympan.control.v1", "partition 0", "offset 42", "model/scene"):
        assert part in str(info.value)


def test_size_is_checked_before_anything_else() -> None:
    with pytest.raises(JsonRecordError) as info:
        _decode(b"[" * 100_000)
    assert info.value.reason == TOO_LARGE


@pytest.mark.parametrize("n", [33, 1000, 100_000])
def test_depth_is_found_without_recursion(n: int) -> None:
    with pytest.raises(JsonRecordError) as info:
        _decode(b"[" * n + b"]" * n, max_bytes=10**6)
    assert info.value.reason == TOO_DEEP and f"{n} deep" in str(info.value)


def test_brackets_inside_strings_do_not_count() -> None:
    doc = json.dumps({"a": "[[[[{{{{" * 100, "b": ['\\"[[[' * 10]}).encode()
    assert nesting_depth(doc) == 2
    assert _decode(doc, max_depth=2) == json.loads(doc)


def test_real_records_pass_and_non_objects_are_refused() -> None:
    assert decode_object(ANNOUNCEMENT, what=WHERE, max_bytes=1024, max_depth=2)["version"] == "4"
    assert nesting_depth(ENROLLMENT) == 3
    with pytest.raises(JsonRecordError, match="JSON object"):
        decode_object(b"[1]", what=WHERE, max_bytes=1024, max_depth=2)


@pytest.mark.parametrize(
    "value", [b"NaN", b'{"a": Infinity}', b"\xff\xfe", b"1" * 5000, b"", b'"\\ud800"x']
)
def test_odd_values_are_not_json(value: bytes) -> None:
    with pytest.raises(JsonRecordError) as info:
        _decode(value)
    assert info.value.reason == NOT_JSON


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Byte-level mutations of a real record: flips, cuts, splices of brackets."""
    inserts = st.sampled_from([b"[", b"{", b"]", b"}", b'"', b"\\", b"\xff", b"[" * 200, b"NaN"])

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["insert", "delete", "flip", "cut"]))
            if op == "insert":
                data[at:at] = draw(inserts)
            elif op == "delete":
                del data[at : at + draw(st.integers(1, 8))]
            elif op == "flip" and at < len(data):
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del data[at:]
        return bytes(data)

    return mutate()


@settings(max_examples=300, deadline=None)
@given(st.one_of(_mutations(ANNOUNCEMENT), _mutations(ENROLLMENT), st.binary(max_size=512)))
def test_any_bytes_decode_or_raise_only_a_json_record_error(value: bytes) -> None:
    try:
        data = _decode(value, max_bytes=4096, max_depth=8)
    except JsonRecordError as exc:
        assert exc.reason in REASONS
        return
    assert data == json.loads(value)  # what it accepts is what json would parse


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_the_depth_scan_agrees_with_the_document(doc: object) -> None:
    def depth(x: object) -> int:
        if isinstance(x, list):
            return 1 + max((depth(v) for v in x), default=0)
        if isinstance(x, dict):
            return 1 + max((depth(v) for v in x.values()), default=0)
        return 0

    assert nesting_depth(json.dumps(doc).encode()) == depth(doc)
