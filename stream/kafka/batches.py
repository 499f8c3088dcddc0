"""The Kafka record batch format, as the fetch guard reads and rewrites it.

A fetch response's record set is a run of batches, each framed by its base offset and
length (the same for every message format). Record batch v2 (KIP-98) is read here
field by field: :class:`BatchHeader` (what a rebuilt batch keeps), :func:`read_records`
(a tolerant reader that says where a batch stops being readable), and the batches the
guard hands the client instead of one it cannot use: :func:`uncompressed_batch`,
:func:`rebuilt_batch` (bad records cut out, offsets kept) and :func:`empty_batch` (what
log compaction leaves behind). aiokafka's own builder writes them, so its reader reads
them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2, 3, 4
CODEC_NAMES = {CODEC_GZIP: "gzip", CODEC_SNAPPY: "snappy", CODEC_LZ4: "lz4", CODEC_ZSTD: "zstd"}

# record batch v2 (KIP-98): baseOffset, batchLength, partitionLeaderEpoch, magic, crc,
# attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
# baseSequence, recordsCount; the CRC covers everything from the attributes on
_V2 = struct.Struct(">qiibIhiqqqhii")
V2_HEADER_BYTES = _V2.size  # 61
LOG_OVERHEAD = 12  # offset and length: the framing every message format shares
MAGIC_AT = 16
CRC_AT = 17
ATTRIBUTES_AT = 21
_LAST_DELTA_AT = 23
CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
LEGACY_MIN_BYTES = 14  # crc, magic, attributes, key and value lengths (message v0)
_NO_LIMIT = 2**31 - 1


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
    struct.pack_into(">i", head, 8, V2_HEADER_BYTES - LOG_OVERHEAD + len(body))
    (attributes,) = struct.unpack_from(">h", head, ATTRIBUTES_AT)
    struct.pack_into(">h", head, ATTRIBUTES_AT, attributes & ~CODEC_MASK)
    crc = calc_crc32c(bytes(head[ATTRIBUTES_AT:]) + body)
    struct.pack_into(">I", head, CRC_AT, crc)
    return bytes(head) + body


def rebuilt_batch(head: BatchHeader, records: Sequence[RawRecord]) -> bytes:
    """An uncompressed v2 batch over the same offsets as ``head``'s, with ``records``
    (names decoded) only; producer id, epoch, sequence and the transactional flag kept,
    so the client's handling of transactions sees the same batch."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(bool(head.attributes & TRANSACTIONAL)),
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
    if len(like) >= V2_HEADER_BYTES and like[MAGIC_AT] == 2:
        head = BatchHeader.parse(like)
        transactional = int(bool(head.attributes & TRANSACTIONAL))
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
    struct.pack_into(">I", batch, CRC_AT, calc_crc32c(bytes(batch[ATTRIBUTES_AT:])))
    return bytes(batch)


def batch_span(
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
    if len(batch) >= V2_HEADER_BYTES and batch[MAGIC_AT] == 2:
        (delta,) = struct.unpack_from(">i", batch, _LAST_DELTA_AT)
        last = max(base, struct.unpack_from(">q", batch)[0] + max(delta, 0))
    if next_base is None:
        last = max(last, fetch_offset)
    elif base < next_base:
        last = min(last, next_base - 1)
    return max(min(base, last), 0), last


def end_of(batch: bytes, floor: int | None) -> int | None:
    """The offset after ``batch`` (a v2 batch: its header's last offset), else ``floor``."""
    if len(batch) < V2_HEADER_BYTES or batch[MAGIC_AT] != 2:
        return floor
    return BatchHeader.parse(batch).last_offset + 1
