"""The safe decoder for JSON topic records: bounds before parsing, never a stray
exception, whatever the bytes (hypothesis-generated mutations of real records)."""

from __future__ import annotations

import json

import numpy as np
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


# -- the guard against a reference: adversarial quotes, escapes, brackets, nesting ---------

REGISTRY_MAX_BYTES = 8 * 1024 * 1024  # ControlLimits.registry_max_bytes


def _reference_depth(value: bytes) -> tuple[int, bool]:
    """A byte-at-a-time reading of brackets and strings as :mod:`json` reads them, and
    whether it read to the end: it stops at a backslash outside a string, where the
    parser fails (after it, nothing the parser does depends on the bytes)."""
    depth = top = 0
    inside = escape = False
    for byte in value:
        if inside:
            if escape:
                escape = False
            elif byte == ord("\\"):
                escape = True
            elif byte == ord('"'):
                inside = False
        elif byte == ord('"'):
            inside = True
        elif byte == ord("\\"):
            return top, False
        elif byte in b"[{":
            depth += 1
            top = max(top, depth)
        elif byte in b"]}":
            depth -= 1
    return top, True


def _doc_depth(doc: object) -> int:
    if isinstance(doc, list):
        return 1 + max((_doc_depth(v) for v in doc), default=0)
    if isinstance(doc, dict):
        return 1 + max((_doc_depth(v) for v in doc.values()), default=0)
    return 0


# Tokens that make the scan's hard cases: runs of backslashes of every parity, quotes,
# brackets, UTF-8 bytes, and long fillers that push them across 64-byte words.
_TOKENS = st.sampled_from(
    [
        *(b'"', b"\\", b"\\\\", b"\\\\\\", b'\\"', b"[", b"]", b"{", b"}", b"a", b" ", b",", b":"),
        *(b"\xc3\xa9", "\U0001f600".encode(), b"x" * 61, b"\\" * 63, b"[" * 64, b'"' * 65),
    ]
)
_ADVERSARIAL = st.lists(_TOKENS, max_size=120).map(b"".join)
_STRINGS = st.text(alphabet=st.sampled_from('"\\[]{}/aé\U0001f600\n\t\x00 '), max_size=80)
_DOCS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_STRINGS, children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(_ADVERSARIAL)
def test_the_depth_scan_agrees_with_a_byte_at_a_time_reading(value: bytes) -> None:
    depth, read_to_end = _reference_depth(value)
    if read_to_end:
        assert nesting_depth(value) == depth
    else:  # never below what the parser reaches before its first error
        assert nesting_depth(value) >= depth


@settings(max_examples=300, deadline=None)
@given(_DOCS, st.booleans(), st.sampled_from([None, 0, 2]))
def test_the_depth_of_documents_with_hostile_strings_is_exact(
    doc: object, ascii_only: bool, indent: int | None
) -> None:
    value = json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode()
    assert nesting_depth(value) == _doc_depth(doc)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_ADVERSARIAL, _DOCS.map(lambda d: json.dumps(d).encode())), st.integers(0, 6))
def test_the_guards_verdict_is_the_references(value: bytes, max_depth: int) -> None:
    """Accepted exactly when json parses it within the depth; too deep exactly when the
    document is; anything else not JSON."""
    try:
        expected = json.loads(value.decode("utf-8"))
    except (ValueError, RecursionError):
        with pytest.raises(JsonRecordError) as info:
            _decode(value, max_bytes=len(value) + 1, max_depth=max_depth)
        assert info.value.reason in (NOT_JSON, TOO_DEEP)
        return
    if _doc_depth(expected) > max_depth:
        with pytest.raises(JsonRecordError) as info:
            _decode(value, max_bytes=len(value) + 1, max_depth=max_depth)
        assert info.value.reason == TOO_DEEP
    else:
        assert _decode(value, max_bytes=len(value) + 1, max_depth=max_depth) == expected


# The named worst cases, at the registry's size limit: a regular expression that
# backtracks on an unterminated string took 13 s for 64 KiB of \" (quadratic: days
# at 8 MiB). The time is measured in benchmarks/bench_json_guard.py; here, the verdict.
WORST_CASES = {
    "escaped quotes": (b'\\"' * (REGISTRY_MAX_BYTES // 2), 0, NOT_JSON),
    "string of escaped quotes": (b'"' + b'\\"' * (REGISTRY_MAX_BYTES // 2 - 1), 0, NOT_JSON),
    "backslash runs": (b'["' + b"\\\\" * (REGISTRY_MAX_BYTES // 2 - 2) + b'"]', 1, None),
    "quotes": (b'"' * REGISTRY_MAX_BYTES, 0, NOT_JSON),
    "brackets": (b"[" * REGISTRY_MAX_BYTES, REGISTRY_MAX_BYTES, TOO_DEEP),
    "strings and brackets": (b'"["' * (REGISTRY_MAX_BYTES // 3), 0, NOT_JSON),
    "open and close": (b"[]" * (REGISTRY_MAX_BYTES // 2), 1, NOT_JSON),
}


@pytest.mark.parametrize("case", list(WORST_CASES))
def test_the_worst_cases_at_the_registry_limit_get_their_verdict(case: str) -> None:
    value, depth, reason = WORST_CASES[case]
    assert nesting_depth(value) == depth
    if reason is None:
        assert _decode(value, max_bytes=REGISTRY_MAX_BYTES, max_depth=1) == [
            "\\" * (REGISTRY_MAX_BYTES // 2 - 2)
        ]
        return
    with pytest.raises(JsonRecordError) as info:
        _decode(value, max_bytes=REGISTRY_MAX_BYTES, max_depth=8)
    assert info.value.reason == reason


@pytest.mark.parametrize("seed", range(3))
def test_the_depth_scan_agrees_with_the_reference_across_scan_chunks(seed: int) -> None:
    """Records longer than the scan's chunk (escape runs and strings across chunks)."""
    rng = np.random.default_rng(seed)
    tokens = [b'"', b"\\", b"\\\\\\", b"[", b"]", b"{", b"}", b"a", b"[" * 7, b"\\" * 65]
    value = b"".join(tokens[i] for i in rng.integers(0, len(tokens), 60_000))
    assert len(value) > 3 * 2**16
    depth, read_to_end = _reference_depth(value)
    assert nesting_depth(value) == depth if read_to_end else nesting_depth(value) >= depth
    inside = b'["' + value.replace(b'"', b"").replace(b"\\", b"") + b'"]'  # one long string
    assert nesting_depth(inside) == 1


def test_the_depth_of_a_large_document_with_hostile_strings_is_exact() -> None:
    rng = np.random.default_rng(7)
    alphabet = list('"\\[]{}a')

    def text() -> str:
        return "".join(rng.choice(alphabet, int(rng.integers(0, 90))))

    doc: list[object] = []
    node = doc
    for level in range(1, 40):
        node.extend(text() for _ in range(300))
        child: list[object] = []
        node.append({text(): child} if level % 2 else child)
        node = child
    value = json.dumps(doc).encode()
    assert len(value) > 3 * 2**16
    assert nesting_depth(value) == _doc_depth(doc)
