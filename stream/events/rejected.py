"""A Kafka record the worker could not use, as a dead letter on the rejected topic.

Every input the worker refuses ends here with a documented reason
(``docs/wire-format.md``), the record's place (topic, partition, offset) and, bounded
to fit a produce request, its key, headers and value, so the record can be replayed
once its producer is fixed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from stream.events.records import compact_json

REJECTED_SCHEMA = "tympan.rejected.v1"
# what a dead letter keeps of a rejected record (RejectedRecord.bounded): its JSON
# stays far below the producer's 1 MB request limit whatever the record held
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
DEAD_LETTER_HEADER_BYTES = 1024
DEAD_LETTER_HEADERS = 32
DEAD_LETTER_TEXT_CHARS = 1024


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A Kafka record the worker could not use, with everything needed to replay it.

    Attributes
    ----------
    stream_id: the record's key as text (``None`` without a key).
    reason: the ``InputError.reason`` code (``bad_payload_length``, ``late_frame``...).
    message: the human sentence naming the bad value.
    topic, partition, offset: where the record was read.
    headers: the original headers, values base64-encoded (``None`` for a null value).
    payload: the original value (or its first bytes, see :meth:`bounded`).
    original_bytes: the original value's size when ``payload`` was truncated.
    truncated: the payload, a header, the key or the message was cut to fit.
    """

    stream_id: str | None
    reason: str
    message: str
    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes | None], ...] = ()  # Kafka allows null values
    payload: bytes = b""
    seq: int | None = None
    original_bytes: int | None = None
    truncated: bool = False
    SCHEMA: ClassVar[str] = REJECTED_SCHEMA

    def bounded(self, max_payload_bytes: int) -> RejectedRecord:
        """A copy small enough to produce: the payload cut to ``max_payload_bytes``,
        each header value to ``DEAD_LETTER_HEADER_BYTES`` (at most
        ``DEAD_LETTER_HEADERS`` headers), the key and the message to
        ``DEAD_LETTER_TEXT_CHARS``.

        Why: a record near the broker's 1 MB limit grows by a third in base64, so
        its dead letter would be refused by the producer; ``topic``, ``partition``
        and ``offset`` still point at the original, which stays in the audio topic
        for its retention.
        """
        headers = tuple(
            (
                _header_name(k)[:DEAD_LETTER_TEXT_CHARS],
                None if v is None else v[:DEAD_LETTER_HEADER_BYTES],
            )
            for k, v in self.headers[:DEAD_LETTER_HEADERS]
        )
        sid = None if self.stream_id is None else self.stream_id[:DEAD_LETTER_TEXT_CHARS]
        message = self.message[:DEAD_LETTER_TEXT_CHARS]
        payload = self.payload[:max_payload_bytes]
        cut = (
            headers != self.headers
            or sid != self.stream_id
            or message != self.message
            or len(payload) < len(self.payload)
        )
        if not cut:
            return self
        return replace(
            self,
            stream_id=sid,
            message=message,
            headers=headers,
            payload=payload,
            original_bytes=self.payload_bytes,
            truncated=True,
        )

    @property
    def payload_bytes(self) -> int:
        """The original value's size, truncated or not."""
        return len(self.payload) if self.original_bytes is None else self.original_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "stream_id": self.stream_id,
            "reason": self.reason,
            "message": self.message,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "seq": self.seq,
            "headers": [
                {
                    "key": _header_name(k),
                    "value_b64": None if v is None else base64.b64encode(v).decode("ascii"),
                }
                for k, v in self.headers
            ],
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
            "payload_bytes": self.payload_bytes,
            "truncated": self.truncated,
        }

    def to_json(self) -> bytes:
        return compact_json(self.to_dict()).encode()


def _header_name(name: object) -> str:
    """A header name as text, whatever a client handed over (bytes that are not UTF-8
    keep their bytes as ``\\xNN`` escapes)."""
    if isinstance(name, str):
        return name
    if isinstance(name, bytes | bytearray | memoryview):
        return bytes(name).decode("utf-8", "backslashreplace")
    return repr(name)
