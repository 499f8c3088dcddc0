"""The one safe decoder for JSON records read from Kafka topics.

Every JSON value tympan reads from a topic (control announcements and statuses,
speaker enrollments, the events the dashboard folds) comes from another process and
is untrusted. :func:`decode_json` bounds it before the parser sees it:

* its size (``max_bytes``), checked first;
* its nesting depth (``max_depth``), found by a linear scan of the brackets outside
  strings (:func:`nesting_depth`: numpy prefix sums, no recursion, no regular
  expression, no Python loop per byte), because :func:`json.loads` recurses once per
  level and a record of ``[`` x 100,000 raises ``RecursionError``;
* then UTF-8 and JSON themselves (``NaN``/``Infinity`` refused: they are not JSON).

Anything the parser still raises is caught at this boundary and re-raised as
:class:`JsonRecordError`, an :class:`~stream.errors.InputError` whose ``reason`` is
one of :data:`REASONS` and whose message names the topic, partition, offset and key.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from stream.errors import InputError

TOO_LARGE = "record_too_large"
TOO_DEEP = "json_too_deep"
NOT_JSON = "not_json"
REASONS = (TOO_LARGE, TOO_DEEP, NOT_JSON)

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN_BYTE, _CLOSE_BYTE = ord("{"), ord("}")  # byte | 0x20: "[" -> "{", "]" -> "}"
_EVEN = np.uint64(0x5555_5555_5555_5555)
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_SHIFTS = tuple(np.uint64(k) for k in (1, 2, 4, 8, 16, 32))
_ONE = np.uint64(1)


def _depth_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each byte of open-bracket bits and byte of close-bracket bits (index
    ``open << 8 | close``): the net change of depth over those 8 positions, and the
    highest running depth reached within them (0 if none)."""
    opens = np.arange(256, dtype=np.int16)[:, None]
    closes = np.arange(256, dtype=np.int16)[None, :]
    depth = np.zeros((256, 256), dtype=np.int16)
    top = np.zeros((256, 256), dtype=np.int16)
    for bit in range(8):
        depth = depth + ((opens >> bit) & 1) - ((closes >> bit) & 1)
        top = np.maximum(top, depth)
    return depth.astype(np.int8).ravel(), top.astype(np.int8).ravel()


_NET, _BEST = _depth_tables()
# both in one int16 per index, for one gather: net in the high byte, best in the low one
_STEPS = (_NET.astype(np.int16) << 8) | _BEST.astype(np.int16)
_CHUNK = 1 << 16  # bytes scanned at a time (a multiple of 64)


class JsonRecordError(InputError):
    """A topic record that is not a bounded JSON document; ``reason`` says which bound."""


def where(topic: str, partition: int | None, offset: int | None, key: bytes | None) -> str:
    """``topic 't' partition 0 offset 42 key b'model/scene'``: how errors name a record."""
    shown = key if key is None or len(key) <= 80 else key[:80] + b"..."
    return f"topic {topic!r} partition {partition} offset {offset} key {shown!r}"


def nesting_depth(value: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``value``, strings excluded: linear time.

    Whatever the bytes, a fixed number of numpy passes over them, most on one bit per
    byte (worst case at the registry's 8 MiB limit: ``benchmarks/bench_json_guard.py``).
    A quote is escaped when an odd run of backslashes precedes it; the unescaped
    quotes open and close strings in turn; the brackets outside strings count +1
    (open) and -1 (close), and the highest running sum is the depth. This is how
    :mod:`json` reads strings, so for a JSON document the depth is exact, and for any
    other bytes it is at least the depth the parser reaches before it fails, since
    the parser reads the same strings up to its first error (an unterminated string
    runs to the end, as the parser would read it). UTF-8 bytes of non-ASCII
    characters are all >= 0x80: never quotes, backslashes or brackets.

    The bit-parallel scan is simdjson's (Langdale & Lemire, "Parsing Gigabytes of
    JSON per Second", 2019): per 64-byte word, escapes from the backslash runs and
    strings from a prefix XOR of the quotes, with the carries between words (an odd
    backslash run, an open string) found for all words at once.
    """
    opens, closes, quotes, backslashes = _bits(np.frombuffer(value, dtype=np.uint8))
    if not opens.any():
        return 0
    if quotes.any():
        quotes &= ~_escaped(backslashes)
        outside = ~_inside_strings(quotes)
        opens &= outside
        closes &= outside
    steps = _STEPS[(opens.view(np.uint8).astype(np.uint16) << 8) | closes.view(np.uint8)]
    net = (steps >> 8).astype(np.int32)  # arithmetic shift: the signed high byte
    reached = np.cumsum(net, dtype=np.int32) - net + (steps & 0xFF)
    return int(max(0, reached.max()))


def _bits(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where ``data`` holds ``[``/``{``, ``]``/``}``, ``"`` and ``\\``: four bit masks as
    64-bit words, bit ``i % 64`` of word ``i // 64`` (zero-padded).

    In chunks that stay in the CPU's cache, into buffers made once: the only passes
    over the whole record are one read of it and the writes of one bit per byte.
    """
    packed = np.zeros((4, -(-data.size // 64) * 8), dtype=np.uint8)
    folded = np.empty(min(data.size, _CHUNK), dtype=np.uint8)
    hits = np.empty(folded.size, dtype=np.bool_)
    for start in range(0, data.size, _CHUNK):
        part = data[start : start + _CHUNK]
        f, h = folded[: part.size], hits[: part.size]
        at = slice(start // 8, start // 8 + -(-part.size // 8))
        np.bitwise_or(part, 0x20, out=f)
        for row, (source, byte) in enumerate(
            ((f, _OPEN_BYTE), (f, _CLOSE_BYTE), (part, _QUOTE), (part, _BACKSLASH))
        ):
            np.equal(source, byte, out=h)
            packed[row, at] = np.packbits(h, bitorder="little")
    words = packed.view("<u8")
    return words[0], words[1], words[2], words[3]


def _escaped(backslashes: np.ndarray) -> np.ndarray:
    """The bits of the bytes that an odd run of backslashes precedes (escaped bytes)."""
    if not backslashes.any():
        return backslashes
    # carry: does the backslash run ending a word have odd length? A word of only
    # backslashes passes on its predecessor's answer (64 is even).
    top = 64 - _highest_bit_count(~backslashes)  # length of the run ending the word
    full = top == 64
    index = np.arange(backslashes.size)
    last = np.maximum.accumulate(np.where(full, -1, index))
    odd_end = np.where(last >= 0, (top[np.maximum(last, 0)] & 1).astype(np.uint64), 0)
    carry = np.concatenate(([np.uint64(0)], odd_end[:-1])).astype(np.uint64)
    # simdjson's find_escaped, with each word's carry known in advance
    runs = backslashes & ~carry
    follows = (runs << _ONE) | carry
    odd_starts = runs & ~_EVEN & ~follows
    even_started = odd_starts + runs  # wraps, as in C
    escaped: np.ndarray = (_EVEN ^ (even_started << _ONE)) & follows
    return escaped


def _highest_bit_count(words: np.ndarray) -> np.ndarray:
    """1 + the index of each word's highest set bit (0 for a zero word)."""
    smeared = words.copy()
    for shift in _SHIFTS:
        smeared |= smeared >> shift
    counts: np.ndarray = np.bitwise_count(smeared).astype(np.int64)
    return counts


def _inside_strings(quotes: np.ndarray) -> np.ndarray:
    """Bits from each opening quote up to (not including) its closing one."""
    inside = quotes.copy()
    for shift in _SHIFTS:
        inside ^= inside << shift  # prefix XOR within the word
    odd = np.bitwise_xor.accumulate(np.bitwise_count(quotes) & 1)
    open_before = np.concatenate(([0], odd[:-1])).astype(bool)
    inside[open_before] ^= _ALL
    return inside


def decode_json(value: bytes, *, what: str, max_bytes: int, max_depth: int) -> Any:
    """Parse one record value as JSON within bounds, or raise :class:`JsonRecordError`.

    Parameters
    ----------
    value : bytes
        The record value (not ``None``: a tombstone is the caller's case).
    what : str
        Where the record is from, for the message (:func:`where`).
    max_bytes, max_depth : int
        Bounds checked before parsing (``stream.settings.ControlLimits``).

    Raises
    ------
    JsonRecordError
        ``record_too_large``, ``json_too_deep`` or ``not_json``; never anything else.
    """
    if len(value) > max_bytes:
        raise JsonRecordError(TOO_LARGE, f"{what}: {len(value)} bytes > limit {max_bytes}")
    depth = nesting_depth(value)
    if depth > max_depth:
        raise JsonRecordError(
            TOO_DEEP, f"{what}: JSON nested {depth} deep, deeper than {max_depth}"
        )
    try:
        return json.loads(value.decode("utf-8"), parse_constant=_refuse_constant)
    except Exception as exc:  # the boundary: whatever the parser raises is this record's fault
        raise JsonRecordError(
            NOT_JSON, f"{what}: not JSON: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def decode_object(value: bytes, *, what: str, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """:func:`decode_json`, and the document must be a JSON object."""
    data = decode_json(value, what=what, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(data, dict):
        raise JsonRecordError(
            NOT_JSON, f"{what}: value must be a JSON object, got {type(data).__name__}"
        )
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
