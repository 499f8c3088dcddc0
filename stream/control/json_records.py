"""The one safe decoder for JSON records read from Kafka topics.

Every JSON value tympan reads from a topic (control announcements and statuses,
speaker enrollments, the events the dashboard folds) comes from another process and
is untrusted. :func:`decode_json` bounds it before the parser sees it:

* its size (``max_bytes``), checked first;
* its nesting depth (``max_depth``), found by a linear scan of the brackets outside
  strings (regular expressions and a numpy cumulative sum: no recursion, no Python
  loop per byte), because :func:`json.loads` recurses once per level and a record of
  ``[`` x 100,000 raises ``RecursionError``, which no ``except ValueError`` catches;
* then UTF-8 and JSON themselves (``NaN``/``Infinity`` refused: they are not JSON).

Anything the parser still raises is caught at this boundary and re-raised as
:class:`JsonRecordError`, an :class:`~stream.errors.InputError` whose ``reason`` is
one of :data:`REASONS` and whose message names the topic, partition, offset and key.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from stream.errors import InputError

TOO_LARGE = "record_too_large"
TOO_DEEP = "json_too_deep"
NOT_JSON = "not_json"
REASONS = (TOO_LARGE, TOO_DEEP, NOT_JSON)

# A JSON string: quote, then any run of non-quote non-backslash bytes or escapes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class JsonRecordError(InputError):
    """A topic record that is not a bounded JSON document; ``reason`` says which bound."""


def where(topic: str, partition: int | None, offset: int | None, key: bytes | None) -> str:
    """``topic 't' partition 0 offset 42 key b'model/scene'``: how errors name a record."""
    shown = key if key is None or len(key) <= 80 else key[:80] + b"..."
    return f"topic {topic!r} partition {partition} offset {offset} key {shown!r}"


def nesting_depth(value: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``value``, strings excluded (linear time).

    An unterminated string is scanned as if it were not a string: the count can then
    only be too high, and such a document is not JSON anyway.
    """
    bare = _STRING.sub(b"", value)
    if not bare:
        return 0
    steps = _OPEN[np.frombuffer(bare, dtype=np.uint8)]
    return int(max(0, np.cumsum(steps, dtype=np.int64).max()))


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
