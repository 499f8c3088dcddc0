"""Fetched record batches, screened before the client library parses them.

aiokafka parses a fetch response lazily, inside ``getmany``: a batch it cannot read
(an unknown or unavailable codec, a header name that is not UTF-8, a bad CRC, a
framing error, whatever the next one is) raises there, for the whole partition,
before any record of the batch is returned, and the position does not move. The
same fetch comes back after a restart, so one record crash-loops every worker that
inherits its partition. And what it can read it reads without bounds: a 1 MiB gzip
batch inflates to a gigabyte, a 1 MB record with 330,000 headers becomes 21 MB of
Python objects.

So the guard sits one step earlier, on the raw bytes of each fetch response, and
hands the client only batches it has read to the end itself:

* :class:`FetchGuard` wraps ``send`` of *one* consumer's client (an instance
  attribute, nothing global), and for each fetch response screens each partition's
  record set with :func:`screen`;
* :func:`screen` walks the batches by their framing (base offset and length, the
  same for every message format), and per batch, inside one ``try`` that catches
  *any* exception: checks the CRC, decompresses a compressed batch into a buffer of
  ``max_inflated_batch_bytes`` at most (:class:`Inflater`) and hands the client the
  uncompressed batch, reads every record (aiokafka's own C reader), and checks each
  record's headers against :class:`~stream.settings.RecordLimits`;
* a batch it cannot read is replaced by an *empty batch over the same offsets*
  (what log compaction leaves behind, which every client skips), and becomes one
  :class:`SkippedRecords` (reason ``unparseable`` or ``batch_too_large``, its raw
  bytes as payload); a record it cannot use (a header name that is not UTF-8, too
  many or too large headers) is dropped from a rebuilt batch that keeps the good
  records around it with their offsets, and becomes one :class:`SkippedRecords` with
  its key, value and headers. When aiokafka's reader fails mid-batch, a tolerant
  reader of the record format (:func:`read_records`) finds which record it was.

The partition keeps flowing: the client's position moves past the skipped offsets as
past any other batch. The consumer asks :meth:`FetchGuard.take` after each
``getmany`` for the skipped offsets its position has passed, in offset order, and
dead-letters them (the worker) or logs them (followers, ``tympan tail``, the
dashboard). A response the guard itself fails on is passed through unchanged and
logged (it never loses records to a bug of its own).

Private aiokafka details relied on, pinned by ``aiokafka==0.14.0`` and checked by
``tests/unit/stream/kafka/test_fetch_internals.py``: the consumer's client is
``AIOKafkaConsumer._client`` and the fetcher sends through its ``send(node_id,
request)``; a fetch request has ``API_KEY`` 1 and ``topics`` as ``(topic,
[(partition, offset, max_bytes)])``; a fetch response's ``topics`` holds ``(topic,
[(partition, error_code, highwater, ..., records)])`` with the record set last.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import cramjam
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from stream.errors import InputError
from stream.events import RejectedRecord
from stream.settings import MAX_DEAD_LETTER_BYTES, RecordLimits

log = logging.getLogger(__name__)

# dead-letter reasons of the fetch guard (docs/delivery.md, "Below the record format")
UNPARSEABLE = "unparseable"
BATCH_TOO_LARGE = "batch_too_large"
INVALID_HEADER_NAME = "invalid_header_name"
TOO_MANY_HEADERS = "too_many_headers"
HEADERS_TOO_LARGE = "headers_too_large"
REASONS = (UNPARSEABLE, BATCH_TOO_LARGE, INVALID_HEADER_NAME, TOO_MANY_HEADERS, HEADERS_TOO_LARGE)

FETCH_API_KEY = 1
CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2, 3, 4
CODEC_NAMES = {CODEC_GZIP: "gzip", CODEC_SNAPPY: "snappy", CODEC_LZ4: "lz4", CODEC_ZSTD: "zstd"}

# record batch v2 (KIP-98): baseOffset, batchLength, partitionLeaderEpoch, magic, crc,
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, recordsCount; the CRC covers everything from the attributes on
_V2 = struct.Struct(">qiibIhiqqqhii")
V2_HEADER_BYTES = _V2.size  # 61
_LOG_OVERHEAD = 12  # offset and length: the framing every message format shares
_MAGIC_AT = 16
_CRC_AT = 17
_ATTRIBUTES_AT = 21
_LAST_DELTA_AT = 23
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_TRANSACTIONAL = 0x10
_CONTROL = 0x20
_LEGACY_MIN_BYTES = 14  # crc, magic, attributes, key and value lengths (message v0)
_NO_LIMIT = 2**31 - 1
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16


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


class BatchTooLargeError(InputError):
    """A compressed batch inflates past ``max_inflated_batch_bytes`` (reason
    ``batch_too_large``): the batch is skipped whole."""

    def __init__(self, message: str) -> None:
        super().__init__(BATCH_TOO_LARGE, message)


@dataclass(slots=True)
class Inflater:
    """Bounded decompression of Kafka's codecs into one reusable buffer.

    ``cramjam``'s ``decompress_into`` writes into a buffer of fixed size and stops with
    an error when the output does not fit, so a decompression bomb costs at most
    ``max_bytes`` of memory and the time to fill it. The buffer is allocated once, on
    the first compressed batch (its pages are only touched as far as a batch fills it).
    """

    max_bytes: int
    _buffer: bytearray | None = field(default=None, repr=False)

    def inflate(self, codec: int, data: bytes) -> bytes:
        """The decompressed bytes of ``data``.

        Raises
        ------
        BatchTooLargeError
            They would be more than ``max_bytes``.
        ValueError, cramjam.DecompressionError
            ``data`` is not valid for ``codec`` (or the codec is unknown).
        """
        if codec == CODEC_SNAPPY:
            return self._snappy(data)
        inflate = _INTO.get(codec)
        if inflate is None:
            raise ValueError(f"unknown compression codec {codec}")
        out = self._out()
        try:
            n = inflate(data, out)
        except cramjam.DecompressionError as exc:
            if "whole buffer" in str(exc):  # the output did not fit
                raise self._too_large(codec, len(data)) from None
            raise
        if n > self.max_bytes:
            raise self._too_large(codec, len(data))
        return bytes(memoryview(out)[:n])

    def _snappy(self, data: bytes) -> bytes:
        """Raw snappy, or the xerial framing Java clients write (blocks of raw snappy):
        each block declares its size before it is decompressed."""
        if data[: len(_XERIAL_MAGIC)] != _XERIAL_MAGIC:
            blocks = [memoryview(data)]
        else:
            blocks = list(_xerial_blocks(memoryview(data)[_XERIAL_HEADER_BYTES:]))
        sizes = [cramjam.snappy.decompress_raw_len(block) for block in blocks]
        if sum(sizes) > self.max_bytes:
            raise self._too_large(CODEC_SNAPPY, len(data))
        out = memoryview(self._out())
        at = 0
        for block, size in zip(blocks, sizes, strict=True):
            at += cramjam.snappy.decompress_raw_into(block, out[at : at + size])
        return bytes(out[:at])

    def _out(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray(self.max_bytes + 1)
        return self._buffer

    def _too_large(self, codec: int, size: int) -> BatchTooLargeError:
        return BatchTooLargeError(
            f"a {CODEC_NAMES.get(codec, codec)} batch of {size} bytes inflates past "
            f"max_inflated_batch_bytes={self.max_bytes}"
        )


_INTO: dict[int, Callable[[Any, bytearray], int]] = {
    CODEC_GZIP: cramjam.gzip.decompress_into,
    CODEC_LZ4: cramjam.lz4.decompress_into,
    CODEC_ZSTD: cramjam.zstd.decompress_into,
}


def _xerial_blocks(data: memoryview) -> Iterable[memoryview]:
    at = 0
    while at < len(data):
        (size,) = struct.unpack_from(">i", data, at)
        if size < 0 or at + 4 + size > len(data):
            raise ValueError(f"xerial snappy block of {size} bytes past the batch's end")
        yield data[at + 4 : at + 4 + size]
        at += 4 + size


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The fields of a v2 record batch header that a rebuilt batch keeps."""

    base_offset: int
    leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    count: int

    @classmethod
    def parse(cls, batch: bytes) -> BatchHeader:
        (base, _, epoch, _, _, attrs, delta, ts, max_ts, pid, pepoch, seq, count) = _V2.unpack_from(
            batch
        )
        return cls(base, epoch, attrs, delta, ts, max_ts, pid, pepoch, seq, count)

    @property
    def last_offset(self) -> int:
        return self.base_offset + max(self.last_offset_delta, 0)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as :func:`read_records` reads it: header names may be bytes."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str | bytes, bytes | None], ...]


@dataclass(slots=True)
class _Screened:
    """What screening one partition's record set gave."""

    data: bytes
    skipped: list[SkippedRecords]


class _Aborts:
    """The client's ``read_committed`` bookkeeping, replayed on the raw batches in
    order (aiokafka's ``PartitionRecords``): which batches it will skip as aborted."""

    def __init__(self, aborted: Sequence[tuple[int, int]]) -> None:
        self._pending = sorted(aborted or (), key=lambda entry: entry[1])
        self._producers: set[int] = set()

    def skips(self, batch: bytes) -> bool:
        try:
            return self._skips(batch)
        except Exception:  # an unreadable header: the batch is screened as any other
            return False

    def _skips(self, batch: bytes) -> bool:
        if not self._pending and not self._producers:
            return False
        if len(batch) < V2_HEADER_BYTES or batch[_MAGIC_AT] != 2:
            return False
        head = BatchHeader.parse(batch)
        if head.producer_id < 0:
            return False
        while self._pending and self._pending[0][1] <= head.base_offset:
            self._producers.add(self._pending.pop(0)[0])
        if head.attributes & _CONTROL:
            marker = next(iter(DefaultRecordBatch(batch)))
            if ControlRecord.parse(marker.key) == ABORT_MARKER:
                self._producers.discard(head.producer_id)
            return False
        return bool(head.attributes & _TRANSACTIONAL) and head.producer_id in self._producers


def screen(
    raw: bytes,
    *,
    topic: str,
    partition: int,
    fetch_offset: int,
    limits: RecordLimits,
    inflater: Inflater,
    aborted: Sequence[tuple[int, int]] = (),
) -> tuple[bytes, list[SkippedRecords]]:
    """The record set to hand the client, and what was taken out of it.

    Parameters
    ----------
    raw: one partition's record set from a fetch response.
    topic, partition: where it was fetched (for messages and dead letters).
    fetch_offset: the offset fetched from; what lies below it was handled before
        (the first batch may start earlier) and is not reported again.
    limits: decompression and header bounds.
    inflater: the consumer's bounded decompressor.
    aborted: the response's aborted transactions ``(producer_id, first_offset)``
        (``read_committed``): a batch the client will skip as aborted is still
        screened, but what is taken out of it is not reported (it never counted).

    Returns
    -------
    ``raw`` itself when every batch is readable, uncompressed and within the limits;
    else a record set where compressed batches are uncompressed, unreadable batches
    are empty batches over the same offsets and unusable records are left out. And
    the :class:`SkippedRecords`, in offset order.
    """
    out = _Screened(b"", [])
    parts: list[bytes] = []
    changed = False
    at = 0
    aborts = _Aborts(aborted)
    floor: int | None = None  # the offset the batches so far reach: none may go back
    while len(raw) - at >= _LOG_OVERHEAD:
        base, length = struct.unpack_from(">qi", raw, at)
        end = at + _LOG_OVERHEAD + length
        if end > len(raw):
            break  # a partial batch at the end of the response: the client refetches it
        batch = raw[at:end]
        where = f"topic {topic!r} partition {partition}"
        next_base = struct.unpack_from(">q", raw, end)[0] if len(raw) - end >= 8 else None
        if length < 0:  # no framing to go on past it: skip one offset, drop the rest
            last = max(base, fetch_offset)
            parts.append(empty_batch(last, last))
            _skip_batch(
                out,
                topic,
                partition,
                last,
                last,
                fetch_offset,
                b"",
                UNPARSEABLE,
                f"{where}: a batch at offset {base} declares a length of {length} bytes",
            )
            return b"".join(parts), out.skipped
        reported = len(out.skipped)
        was_aborted = aborts.skips(batch)
        try:
            if length < _LEGACY_MIN_BYTES:
                raise ValueError(f"{length} bytes is too few for any message format")
            if floor is not None and base < floor:  # the client's position would go back
                raise ValueError(f"its base offset {base} is below the previous batch's end")
            if next_base is not None and batch[_MAGIC_AT] == 2:
                last = BatchHeader.parse(batch).last_offset
                if base < next_base <= last:  # (a next batch that goes back is its fault)
                    raise ValueError(
                        f"its last offset {last} overlaps the next batch's {next_base}"
                    )
            found = _Screened(b"", [])  # merged only when the batch is kept
            kept = _screen_batch(batch, topic, partition, fetch_offset, limits, inflater, found)
        except Exception as exc:
            first, last = _batch_span(batch, fetch_offset, next_base, floor)
            reason = BATCH_TOO_LARGE if isinstance(exc, BatchTooLargeError) else UNPARSEABLE
            parts.append(empty_batch(first, last, like=batch))
            _skip_batch(
                out,
                topic,
                partition,
                first,
                last,
                fetch_offset,
                batch,
                reason,
                f"{where} offsets {first}..{last}: the record batch cannot be read: "
                f"{type(exc).__name__}: {exc}"[:1000],
            )
            changed = True
        else:
            changed = changed or kept is not batch
            parts.append(kept)
            out.skipped.extend(found.skipped)
        if was_aborted:
            del out.skipped[reported:]
        floor = _end_of(parts[-1], floor)
        at = end
    if not changed:
        return raw, out.skipped
    parts.append(raw[at:])
    return b"".join(parts), out.skipped


def _screen_batch(
    batch: bytes,
    topic: str,
    partition: int,
    fetch_offset: int,
    limits: RecordLimits,
    inflater: Inflater,
    out: _Screened,
) -> bytes:
    """``batch`` itself, or its readable replacement; raises for a batch to skip whole."""
    magic = batch[_MAGIC_AT]
    if magic < 2:
        legacy = LegacyRecordBatch(batch, magic)
        if not legacy.validate_crc():
            raise ValueError("CRC mismatch (message format v0/v1)")
        for _ in legacy:
            pass
        return batch
    if magic != 2:
        raise ValueError(f"unknown message format (magic {magic})")
    head = BatchHeader.parse(batch)
    reader = DefaultRecordBatch(batch)
    if not reader.validate_crc():
        raise ValueError(f"CRC mismatch (stored {reader.crc:#010x})")
    if head.attributes & _CONTROL:  # a transaction marker: the client reads its key
        markers = list(reader)
        if not markers:
            raise ValueError("a control batch without a record")
        for marker in markers:
            ControlRecord.parse(marker.key)
        return batch
    codec = head.attributes & _CODEC_MASK
    readable = batch
    if codec != CODEC_NONE:
        body = inflater.inflate(codec, batch[V2_HEADER_BYTES:])
        readable = uncompressed_batch(batch, body)
        reader = DefaultRecordBatch(readable)
    try:
        records = list(reader)
    except Exception as exc:  # aiokafka's reader stops at a record: find which, keep the rest
        return _salvage(readable, head, exc, topic, partition, fetch_offset, limits, out)
    bad: dict[int, tuple[str, str]] = {}
    previous, last = head.base_offset - 1, head.last_offset
    for r in records:
        offset, headers = r.offset, r.headers
        if not previous < offset <= last:  # the client would move its position there
            raise ValueError(f"record offset {offset} is out of order or outside its batch")
        previous = offset
        if headers and (problem := header_problem(headers, limits)) is not None:
            bad[offset] = problem
    if not bad:
        return readable
    for record in records:
        if record.offset in bad:
            _skip_record(out, topic, partition, fetch_offset, _raw(record), *bad[record.offset])
    return rebuilt_batch(head, [_raw(r) for r in records if r.offset not in bad])


def _salvage(
    batch: bytes,
    head: BatchHeader,
    error: Exception,
    topic: str,
    partition: int,
    fetch_offset: int,
    limits: RecordLimits,
    out: _Screened,
) -> bytes:
    """The batch without the records the client cannot read (found by reading the
    record format tolerantly); what cannot be read at all is skipped to the end."""
    records, stopped_at, why = read_records(batch[V2_HEADER_BYTES:], head)
    kept: list[RawRecord] = []
    for record in records:
        problem = record_problem(record, limits)
        if problem is None:
            kept.append(_named(record))
        else:
            _skip_record(out, topic, partition, fetch_offset, record, *problem)
    if stopped_at is not None and stopped_at <= head.last_offset:
        first = max(stopped_at, head.base_offset)
        _skip_batch(
            out,
            topic,
            partition,
            first,
            head.last_offset,
            fetch_offset,
            batch,
            UNPARSEABLE,
            f"topic {topic!r} partition {partition} offsets {first}..{head.last_offset}: "
            f"records cannot be read ({why}; the client said "
            f"{type(error).__name__}: {error})"[:1000],
        )
    return rebuilt_batch(head, kept)


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


def read_records(body: bytes, head: BatchHeader) -> tuple[list[RawRecord], int | None, str | None]:
    """The records of an uncompressed v2 batch body, read tolerantly.

    Header names are kept as bytes, so a name that is not UTF-8 is one bad record
    rather than an unreadable batch.

    Returns
    -------
    The records read, the offset of the first one that cannot be read (``None`` when
    all were), and why.
    """
    records: list[RawRecord] = []
    at = 0
    next_offset = head.base_offset
    for _ in range(max(head.count, 0)):
        if at >= len(body):
            return records, next_offset, f"{head.count} records declared, {len(records)} present"
        try:
            record, at = _read_record(body, at, head)
            if not next_offset <= record.offset <= head.last_offset:
                raise ValueError(f"offset {record.offset} is out of order or outside its batch")
        except (ValueError, IndexError, struct.error) as exc:
            return records, next_offset, f"record at byte {at} of the batch: {exc}"
        records.append(record)
        next_offset = record.offset + 1
    return records, None, None


def _read_record(body: bytes, at: int, head: BatchHeader) -> tuple[RawRecord, int]:
    length, at = _varint(body, at)
    stop = at + length
    if length < 0 or stop > len(body):
        raise ValueError(f"record length {length} runs past the batch")
    at += 1  # record attributes (unused)
    timestamp_delta, at = _varint(body, at)
    offset_delta, at = _varint(body, at)
    key, at = _bytes(body, at, stop)
    value, at = _bytes(body, at, stop)
    count, at = _varint(body, at)
    if count < 0 or count > stop - at:
        raise ValueError(f"{count} headers do not fit the record")
    headers: list[tuple[str | bytes, bytes | None]] = []
    for _ in range(count):
        name, at = _bytes(body, at, stop)
        if name is None:
            raise ValueError("a header name is null")
        header_value, at = _bytes(body, at, stop)
        headers.append((name, header_value))
    if at != stop:
        raise ValueError(f"record declares {length} bytes, holds {length - (stop - at)}")
    log_append = head.attributes & _LOG_APPEND_TIME
    timestamp = head.max_timestamp if log_append else head.base_timestamp + timestamp_delta
    offset = head.base_offset + offset_delta
    return RawRecord(offset, timestamp, key, value, tuple(headers)), stop


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A zigzag varint (the record format's signed integers)."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), at
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _bytes(data: bytes, at: int, stop: int) -> tuple[bytes | None, int]:
    size, at = _varint(data, at)
    if size < 0:
        return None, at
    if at + size > stop:
        raise ValueError(f"a field of {size} bytes runs past its record")
    return bytes(data[at : at + size]), at + size


def uncompressed_batch(batch: bytes, body: bytes) -> bytes:
    """``batch`` (v2, compressed) with ``body`` as its records, uncompressed, CRC fixed."""
    head = bytearray(batch[:V2_HEADER_BYTES])
    struct.pack_into(">i", head, 8, V2_HEADER_BYTES - _LOG_OVERHEAD + len(body))
    (attributes,) = struct.unpack_from(">h", head, _ATTRIBUTES_AT)
    struct.pack_into(">h", head, _ATTRIBUTES_AT, attributes & ~_CODEC_MASK)
    crc = calc_crc32c(bytes(head[_ATTRIBUTES_AT:]) + body)
    struct.pack_into(">I", head, _CRC_AT, crc)
    return bytes(head) + body


def rebuilt_batch(head: BatchHeader, records: Sequence[RawRecord]) -> bytes:
    """An uncompressed v2 batch over the same offsets as ``head``'s, with ``records``
    (names decoded) only; producer id, epoch, sequence and the transactional flag kept,
    so the client's handling of transactions sees the same batch."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(bool(head.attributes & _TRANSACTIONAL)),
        producer_id=head.producer_id,
        producer_epoch=head.producer_epoch,
        base_sequence=head.base_sequence,
        batch_size=_NO_LIMIT,
    )
    for r in records:
        headers = [(str(name), value) for name, value in r.headers]
        builder.append(r.offset - head.base_offset, r.timestamp, r.key, r.value, headers)
    return _placed(
        bytearray(builder.build()), head.base_offset, head.last_offset, head.leader_epoch
    )


def empty_batch(first: int, last: int, *, like: bytes = b"") -> bytes:
    """A v2 batch with no records over offsets ``first..last``: the client moves its
    position past it as past a batch that log compaction emptied. When ``like`` has a
    readable v2 header, its producer id, epoch and transactional flag are kept."""
    transactional, producer_id, producer_epoch = 0, -1, -1
    if len(like) >= V2_HEADER_BYTES and like[_MAGIC_AT] == 2:
        head = BatchHeader.parse(like)
        transactional = int(bool(head.attributes & _TRANSACTIONAL))
        producer_id, producer_epoch = head.producer_id, head.producer_epoch
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=-1,
        batch_size=_NO_LIMIT,
    )
    return _placed(bytearray(builder.build()), first, last, -1)


def _placed(batch: bytearray, base: int, last: int, leader_epoch: int) -> bytes:
    """``batch`` moved to ``base`` with its last offset at ``last`` (CRC recomputed)."""
    struct.pack_into(">q", batch, 0, base)
    struct.pack_into(">i", batch, 12, leader_epoch)
    struct.pack_into(">i", batch, _LAST_DELTA_AT, last - base)
    struct.pack_into(">I", batch, _CRC_AT, calc_crc32c(bytes(batch[_ATTRIBUTES_AT:])))
    return bytes(batch)


def _batch_span(
    batch: bytes, fetch_offset: int, next_base: int | None, floor: int | None
) -> tuple[int, int]:
    """The offsets a batch covers as far as its header can be read: never below where
    the batches before it reach (``floor``), never into the next batch
    (``next_base``), and when none follows, never below ``fetch_offset`` (the broker
    returned the batch for that offset, so skipping it moves on)."""
    (base,) = struct.unpack_from(">q", batch)
    if floor is not None:
        base = max(base, floor)
    last = base
    if len(batch) >= V2_HEADER_BYTES and batch[_MAGIC_AT] == 2:
        (delta,) = struct.unpack_from(">i", batch, _LAST_DELTA_AT)
        last = max(base, struct.unpack_from(">q", batch)[0] + max(delta, 0))
    if next_base is None:
        last = max(last, fetch_offset)
    elif base < next_base:
        last = min(last, next_base - 1)
    return max(min(base, last), 0), last


def _end_of(batch: bytes, floor: int | None) -> int | None:
    """The offset after ``batch`` (a v2 batch: its header's last offset), else ``floor``."""
    if len(batch) < V2_HEADER_BYTES or batch[_MAGIC_AT] != 2:
        return floor
    return BatchHeader.parse(batch).last_offset + 1


def _raw(record: Any) -> RawRecord:
    return RawRecord(
        record.offset, record.timestamp, record.key, record.value, tuple(record.headers)
    )


def _named(record: RawRecord) -> RawRecord:
    """``record`` with its (UTF-8) header names as text."""
    headers = tuple(
        (name.decode("utf-8") if isinstance(name, bytes) else name, value)
        for name, value in record.headers
    )
    return RawRecord(record.offset, record.timestamp, record.key, record.value, headers)


def _text_headers(
    headers: Sequence[tuple[str | bytes, bytes | None]],
) -> tuple[tuple[str, bytes | None], ...]:
    return tuple(
        (name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name, value)
        for name, value in headers
    )


def _skip_record(
    out: _Screened,
    topic: str,
    partition: int,
    fetch_offset: int,
    record: RawRecord,
    reason: str,
    problem: str,
) -> None:
    if record.offset < fetch_offset:
        return
    value = record.value or b""
    out.skipped.append(
        SkippedRecords(
            topic,
            partition,
            record.offset,
            record.offset,
            reason,
            f"topic {topic!r} partition {partition} offset {record.offset}: {problem}",
            key=record.key,
            payload=value[:MAX_DEAD_LETTER_BYTES],
            payload_bytes=len(value),
            headers=_text_headers(record.headers[:64]),
        )
    )


def _skip_batch(
    out: _Screened,
    topic: str,
    partition: int,
    first: int,
    last: int,
    fetch_offset: int,
    batch: bytes,
    reason: str,
    message: str,
) -> None:
    if last < fetch_offset:
        return
    first = max(first, fetch_offset)
    out.skipped.append(
        SkippedRecords(
            topic,
            partition,
            first,
            last,
            reason,
            message,
            payload=bytes(batch[:MAX_DEAD_LETTER_BYTES]),
            payload_bytes=len(batch),
        )
    )


_ClientSend = Callable[..., Awaitable[Any]]  # the Kafka client's request sender


class FetchGuard:
    """Screens one consumer's fetch responses and keeps what it skipped until the
    consumer's position has passed it.

    Parameters
    ----------
    limits: decompression and header bounds.
    read_committed: the consumer reads ``read_committed`` (every tympan reader does):
        nothing is reported of the batches it skips as aborted.
    """

    def __init__(self, limits: RecordLimits | None = None, *, read_committed: bool = True) -> None:
        self.limits = limits or RecordLimits()
        self.read_committed = read_committed
        self.inflater = Inflater(self.limits.max_inflated_batch_bytes)
        self._pending: dict[TopicPartition, dict[int, SkippedRecords]] = {}

    def install(self, consumer: Any) -> None:
        """Screen every fetch response of ``consumer`` (before its ``start``, or before
        it is assigned partitions; its other requests pass untouched)."""
        client = consumer._client
        send: _ClientSend = client.send

        async def screened_send(node_id: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = await send(node_id, request, *args, **kwargs)
            if getattr(request, "API_KEY", None) == FETCH_API_KEY:
                self.screen_response(request, response)
            return response

        client.send = screened_send

    def screen_response(self, request: Any, response: Any) -> None:
        """Replace each partition's record set in ``response`` by its screened form."""
        fetched_at = {
            (topic, p[0]): p[1] for topic, partitions in request.topics for p in partitions
        }
        topics = []
        changed = False
        for topic, partitions in response.topics:
            kept = []
            for entry in partitions:
                data = entry[-1]
                offset = fetched_at.get((topic, entry[0]))
                if entry[1] == 0 and data and offset is not None:
                    aborted = (
                        _aborted_of(entry, response.API_VERSION) if self.read_committed else ()
                    )
                    screened = self._screen(topic, entry[0], offset, data, aborted)
                    if screened is not data:
                        entry = (*entry[:-1], screened)
                        changed = True
                kept.append(entry)
            topics.append((topic, kept))
        if changed:
            response.topics = topics

    def _screen(
        self,
        topic: str,
        partition: int,
        offset: int,
        data: bytes,
        aborted: Sequence[tuple[int, int]],
    ) -> bytes:
        try:
            screened, skipped = screen(
                bytes(data),
                topic=topic,
                partition=partition,
                fetch_offset=offset,
                limits=self.limits,
                inflater=self.inflater,
                aborted=aborted,
            )
        except Exception:  # a bug of the guard's own: never lose records to it
            log.exception(
                "topic %s partition %d: fetch screening failed at offset %d; passed as fetched",
                topic,
                partition,
                offset,
            )
            return data
        if skipped:
            pending = self._pending.setdefault(TopicPartition(topic, partition), {})
            for item in skipped:
                pending[item.offset] = item
        return screened

    async def take(self, consumer: Any) -> list[SkippedRecords]:
        """The skipped offsets ``consumer``'s position has passed (so every record
        before them was returned by ``getmany``), in offset order per partition;
        those of partitions no longer assigned are forgotten (their next owner
        fetches them again)."""
        if not self._pending:
            return []
        owned = consumer.assignment()
        due: list[SkippedRecords] = []
        for tp in list(self._pending):
            if tp not in owned:
                del self._pending[tp]
                continue
            try:
                position = await consumer.position(tp)
            except Exception as exc:  # no valid position just now: ask again next time
                log.debug("%s: no position yet (%r)", tp, exc)
                continue
            items = self._pending[tp]
            ready = sorted(o for o, item in items.items() if item.last_offset < position)
            due.extend(items.pop(o) for o in ready)
            if not items:
                del self._pending[tp]
        return due

    @property
    def pending(self) -> int:
        """Skipped offset ranges not yet taken."""
        return sum(len(items) for items in self._pending.values())


def _aborted_of(entry: Sequence[Any], api_version: int) -> Sequence[tuple[int, int]]:
    """A fetch response partition's aborted transactions (v4: after the last stable
    offset; v5 and later: after the log start offset too)."""
    aborted = entry[4] if api_version < 5 else entry[5]
    return [(int(pid), int(first)) for pid, first in aborted or ()]


def log_skipped(skipped: Iterable[SkippedRecords], *, what: str) -> None:
    """For readers without a dead-letter topic (followers, tail, dashboard): one
    warning per skipped range, naming where and why."""
    for item in skipped:
        log.warning("%s: skipped (%s): %s", what, item.reason, item.message)
