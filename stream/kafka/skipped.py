"""What the fetch guard takes out of a fetch, and why: one :class:`SkippedRecords`
per skipped batch or record, which the worker dead-letters by offset and the followers
log (:func:`log_skipped`). Reasons: docs/delivery.md, "Below the record format".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

from stream.events import RejectedRecord
from stream.kafka.batches import RawRecord
from stream.settings import MAX_DEAD_LETTER_BYTES, RecordLimits

log = logging.getLogger(__name__)

# dead-letter reasons of the fetch guard (docs/delivery.md, "Below the record format")
UNPARSEABLE = "unparseable"
BATCH_TOO_LARGE = "batch_too_large"
INVALID_HEADER_NAME = "invalid_header_name"
TOO_MANY_HEADERS = "too_many_headers"
HEADERS_TOO_LARGE = "headers_too_large"
REASONS = (UNPARSEABLE, BATCH_TOO_LARGE, INVALID_HEADER_NAME, TOO_MANY_HEADERS, HEADERS_TOO_LARGE)


@dataclass(frozen=True, slots=True)
class SkippedRecords:
    """Offsets ``[offset, last_offset]`` of one partition the guard took out, and why.

    Attributes
    ----------
    reason: one of :data:`REASONS`.
    message: a sentence naming the topic, partition, offsets and the bad value.
    key, payload, headers: the record's, when one record was skipped; the batch's raw
        bytes as ``payload`` when a batch was (its first ``MAX_DEAD_LETTER_BYTES``).
    payload_bytes: the payload's size before it was cut.
    """

    topic: str
    partition: int
    offset: int
    last_offset: int
    reason: str
    message: str
    key: bytes | None = None
    payload: bytes = b""
    payload_bytes: int = 0
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def rejected(self) -> RejectedRecord:
        """The dead letter (``RejectedRecord``) that accounts for these offsets."""
        cut = self.payload_bytes > len(self.payload)
        return RejectedRecord(
            stream_id=None if self.key is None else self.key.decode("utf-8", "replace"),
            reason=self.reason,
            message=self.message,
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            headers=self.headers,
            payload=self.payload,
            original_bytes=self.payload_bytes if cut else None,
            truncated=cut,
        )


def text_headers(
    headers: Sequence[tuple[str | bytes, bytes | None]],
) -> tuple[tuple[str, bytes | None], ...]:
    """Header names as text, whatever their bytes (a dead letter must be writable)."""
    return tuple(
        (name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name, value)
        for name, value in headers
    )


def record_skipped(
    topic: str,
    partition: int,
    fetch_offset: int,
    record: RawRecord,
    reason: str,
    problem: str,
) -> SkippedRecords | None:
    """One record taken out of a batch (None: it lies below the fetch offset, so the
    client would not have returned it either)."""
    if record.offset < fetch_offset:
        return None
    value = record.value or b""
    return SkippedRecords(
        topic,
        partition,
        record.offset,
        record.offset,
        reason,
        f"topic {topic!r} partition {partition} offset {record.offset}: {problem}",
        key=record.key,
        payload=value[:MAX_DEAD_LETTER_BYTES],
        payload_bytes=len(value),
        headers=text_headers(record.headers[:64]),
    )


def batch_skipped(
    topic: str,
    partition: int,
    first: int,
    last: int,
    fetch_offset: int,
    batch: bytes,
    reason: str,
    message: str,
) -> SkippedRecords | None:
    """Offsets ``first..last`` of one unusable batch, its raw bytes as the payload (None:
    they lie below the fetch offset)."""
    if last < fetch_offset:
        return None
    first = max(first, fetch_offset)
    return SkippedRecords(
        topic,
        partition,
        first,
        last,
        reason,
        message,
        payload=bytes(batch[:MAX_DEAD_LETTER_BYTES]),
        payload_bytes=len(batch),
    )


def header_problem(
    headers: Sequence[tuple[str | bytes, bytes | None]], limits: RecordLimits
) -> tuple[str, str] | None:
    """``(reason, message)`` when a record's headers pass a bound, else ``None``."""
    if not headers:
        return None
    if len(headers) > limits.max_record_headers:
        return (
            TOO_MANY_HEADERS,
            f"{len(headers)} headers, more than max_record_headers={limits.max_record_headers}",
        )
    size = header_bytes(headers)
    if size > limits.max_header_bytes:
        return (
            HEADERS_TOO_LARGE,
            f"{size} bytes of headers, more than max_header_bytes={limits.max_header_bytes}",
        )
    return None


def header_bytes(headers: Sequence[tuple[str | bytes, bytes | None]]) -> int:
    """Names and values of ``headers``, summed (a name counted in characters when it
    is text), in one pass at C speed: this runs for every record read."""
    return sum(map(len, filter(None, chain.from_iterable(headers))))


def record_problem(record: RawRecord, limits: RecordLimits) -> tuple[str, str] | None:
    """:func:`header_problem`, and a header name that is not UTF-8."""
    for name, _ in record.headers:
        if isinstance(name, bytes):
            try:
                name.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (INVALID_HEADER_NAME, f"header name {name[:64]!r} is not UTF-8 ({exc})")
    return header_problem(record.headers, limits)


def log_skipped(skipped: Iterable[SkippedRecords], *, what: str) -> None:
    """For readers without a dead-letter topic (followers, tail, dashboard): one
    warning per skipped range, naming where and why."""
    for item in skipped:
        log.warning("%s: skipped (%s): %s", what, item.reason, item.message)
