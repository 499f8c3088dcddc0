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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.legacy_records import LegacyRecordBatch
from aiokafka.structs import TopicPartition

from stream.kafka.batches import (
    CODEC_MASK,
    CODEC_NONE,
    CONTROL,
    LEGACY_MIN_BYTES,
    LOG_OVERHEAD,
    MAGIC_AT,
    TRANSACTIONAL,
    V2_HEADER_BYTES,
    BatchHeader,
    RawRecord,
    batch_span,
    empty_batch,
    end_of,
    read_records,
    rebuilt_batch,
    uncompressed_batch,
)
from stream.kafka.inflate import BatchTooLargeError, Inflater
from stream.kafka.skipped import (
    BATCH_TOO_LARGE,
    UNPARSEABLE,
    SkippedRecords,
    batch_skipped,
    header_problem,
    record_problem,
    record_skipped,
)
from stream.settings import RecordLimits

log = logging.getLogger(__name__)


FETCH_API_KEY = 1
_ClientSend = Callable[..., Awaitable[Any]]  # the Kafka client's request sender


@dataclass(slots=True)
class _Screened:
    """What screening one partition's record set gave."""

    data: bytes
    skipped: list[SkippedRecords]

    def add(self, item: SkippedRecords | None) -> None:
        if item is not None:
            self.skipped.append(item)


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
        if len(batch) < V2_HEADER_BYTES or batch[MAGIC_AT] != 2:
            return False
        head = BatchHeader.parse(batch)
        if head.producer_id < 0:
            return False
        while self._pending and self._pending[0][1] <= head.base_offset:
            self._producers.add(self._pending.pop(0)[0])
        if head.attributes & CONTROL:
            marker = next(iter(DefaultRecordBatch(batch)))
            if ControlRecord.parse(marker.key) == ABORT_MARKER:
                self._producers.discard(head.producer_id)
            return False
        return bool(head.attributes & TRANSACTIONAL) and head.producer_id in self._producers


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
    while len(raw) - at >= LOG_OVERHEAD:
        base, length = struct.unpack_from(">qi", raw, at)
        end = at + LOG_OVERHEAD + length
        if end > len(raw):
            break  # a partial batch at the end of the response: the client refetches it
        batch = raw[at:end]
        where = f"topic {topic!r} partition {partition}"
        next_base = struct.unpack_from(">q", raw, end)[0] if len(raw) - end >= 8 else None
        if length < 0:  # no framing to go on past it: skip one offset, drop the rest
            last = max(base, fetch_offset)
            parts.append(empty_batch(last, last))
            out.add(
                batch_skipped(
                    topic,
                    partition,
                    last,
                    last,
                    fetch_offset,
                    b"",
                    UNPARSEABLE,
                    f"{where}: a batch at offset {base} declares a length of {length} bytes",
                )
            )
            return b"".join(parts), out.skipped
        reported = len(out.skipped)
        was_aborted = aborts.skips(batch)
        try:
            if length < LEGACY_MIN_BYTES:
                raise ValueError(f"{length} bytes is too few for any message format")
            if floor is not None and base < floor:  # the client's position would go back
                raise ValueError(f"its base offset {base} is below the previous batch's end")
            if next_base is not None and batch[MAGIC_AT] == 2:
                last = BatchHeader.parse(batch).last_offset
                if base < next_base <= last:  # (a next batch that goes back is its fault)
                    raise ValueError(
                        f"its last offset {last} overlaps the next batch's {next_base}"
                    )
            found = _Screened(b"", [])  # merged only when the batch is kept
            kept = _screen_batch(batch, topic, partition, fetch_offset, limits, inflater, found)
        except Exception as exc:
            first, last = batch_span(batch, fetch_offset, next_base, floor)
            reason = BATCH_TOO_LARGE if isinstance(exc, BatchTooLargeError) else UNPARSEABLE
            parts.append(empty_batch(first, last, like=batch))
            out.add(
                batch_skipped(
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
            )
            changed = True
        else:
            changed = changed or kept is not batch
            parts.append(kept)
            out.skipped.extend(found.skipped)
        if was_aborted:
            del out.skipped[reported:]
        floor = end_of(parts[-1], floor)
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
    magic = batch[MAGIC_AT]
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
    if head.attributes & CONTROL:  # a transaction marker: the client reads its key
        markers = list(reader)
        if not markers:
            raise ValueError("a control batch without a record")
        for marker in markers:
            ControlRecord.parse(marker.key)
        return batch
    codec = head.attributes & CODEC_MASK
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
            out.add(
                record_skipped(topic, partition, fetch_offset, _raw(record), *bad[record.offset])
            )
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
            out.add(record_skipped(topic, partition, fetch_offset, record, *problem))
    if stopped_at is not None and stopped_at <= head.last_offset:
        first = max(stopped_at, head.base_offset)
        out.add(
            batch_skipped(
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
        )
    return rebuilt_batch(head, kept)


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
