"""The fetch guard on real record-batch bytes: what aiokafka's own reader makes of them.

Batches are built with aiokafka's ``DefaultRecordBatchBuilder`` (the producer's
encoder) in every codec, then damaged the ways the broker lets through or a disk
does: a header name that is not UTF-8, a flipped byte, an unknown codec, a
decompression bomb, thousands of headers. Each check reads the screened bytes with
aiokafka's consumer-side reader (``PartitionRecords`` over ``MemoryRecords``, what
``getmany`` runs) and asserts that the good records come out, the bad ones are
accounted for by offset and reason, and the position moves past them; the raw bytes
are read the same way first, to show the fault is real.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.events import RejectedRecord
from stream.kafka.batches import CODEC_GZIP, CODEC_LZ4, CODEC_SNAPPY, CODEC_ZSTD
from stream.kafka.fetch import screen
from stream.kafka.inflate import Inflater
from stream.kafka.skipped import (
    BATCH_TOO_LARGE,
    HEADERS_TOO_LARGE,
    INVALID_HEADER_NAME,
    TOO_MANY_HEADERS,
    UNPARSEABLE,
    SkippedRecords,
)
from stream.settings import RecordLimits
from tests.support.record_batches import (
    BAD_NAME_MARK,
    CODECS,
    Header,
    batch,
    build_batch,
    compress,
    fix_crc,
    record_headers,
    with_bad_name,
)

TOPIC = "tympan.audio.v1"
TP = TopicPartition(TOPIC, 3)
LIMITS = RecordLimits(max_inflated_batch_bytes=1 << 20, max_record_headers=64)


def read(data: bytes, fetch_offset: int = 0) -> tuple[list[Any], int]:
    """What aiokafka's consumer makes of a partition's record set: its records and
    the position it moves to."""
    records = PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, None, True, READ_COMMITTED
    )
    out = list(records)
    return out, records.next_fetch_offset


def screened(
    data: bytes, fetch_offset: int = 0, limits: RecordLimits = LIMITS
) -> tuple[list[Any], int, list[SkippedRecords]]:
    clean, skipped = screen(
        data,
        topic=TOPIC,
        partition=TP.partition,
        fetch_offset=fetch_offset,
        limits=limits,
        inflater=Inflater(limits.max_inflated_batch_bytes),
    )
    records, position = read(clean, fetch_offset)
    return records, position, skipped


def offsets(records: Sequence[Any]) -> list[int]:
    return [r.offset for r in records]


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_is_read_with_the_same_records(codec: int) -> None:
    data = batch(0, 5, codec=codec) + batch(5, 3, codec=codec)
    records, position, skipped = screened(data)
    assert skipped == []
    assert offsets(records) == list(range(8))
    assert [r.value for r in records] == [b"pcm-%d" % i for i in range(8)]
    assert [r.headers for r in records] == [tuple(record_headers(i)) for i in range(8)]
    assert position == 8


def test_an_uncompressed_clean_record_set_is_passed_through_untouched() -> None:
    data = batch(0, 4) + batch(4, 4)
    clean, skipped = screen(
        data, topic=TOPIC, partition=3, fetch_offset=0, limits=LIMITS, inflater=Inflater(1 << 20)
    )
    assert clean is data and skipped == []


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD])
def test_a_decompression_bomb_is_skipped_whole_and_the_next_batch_served(codec: int) -> None:
    bomb = batch(0, 4, codec=codec, value=lambda i: bytes(512 * 1024))  # 2 MiB of zeros
    assert len(bomb) < 128 * 1024  # snappy is the weakest: about 21x
    records, position, skipped = screened(bomb + batch(4, 2, codec=codec))
    assert offsets(records) == [4, 5]
    assert position == 6
    [bad] = skipped
    assert (bad.reason, bad.offset, bad.last_offset) == (BATCH_TOO_LARGE, 0, 3)
    assert "inflates past max_inflated_batch_bytes=1048576" in bad.message
    assert bad.payload == bomb and bad.payload_bytes == len(bomb)


def test_a_batch_that_inflates_to_exactly_the_limit_is_read() -> None:
    limit = 1 << 20
    limits = RecordLimits(max_inflated_batch_bytes=limit)

    def body_bytes(size: int) -> int:
        return len(batch(0, 1, value=lambda i: bytes(size))) - 61

    room = limit
    for _ in range(4):  # the record's length varints grow with the value
        room += limit - body_bytes(room)
    assert body_bytes(room) == limit
    fits = batch(0, 1, codec=CODEC_ZSTD, value=lambda i: bytes(room))
    records, _, skipped = screened(fits, limits=limits)
    assert skipped == [] and offsets(records) == [0]
    over = batch(0, 1, codec=CODEC_ZSTD, value=lambda i: bytes(room + 1))
    assert screened(over, limits=limits)[2][0].reason == BATCH_TOO_LARGE


@pytest.mark.parametrize("codec", CODECS)
def test_a_header_name_that_is_not_utf8_skips_that_record_only(codec: int) -> None:
    def headers(i: int) -> list[Header]:
        return [*record_headers(i), (BAD_NAME_MARK, b"x")] if i == 2 else record_headers(i)

    bad = compress(with_bad_name(batch(0, 5, headers=headers)), codec)
    with pytest.raises(UnicodeDecodeError):
        read(bad)  # what getmany raised, fetch after fetch
    records, position, skipped = screened(bad + batch(5, 1))
    assert offsets(records) == [0, 1, 3, 4, 5]
    assert position == 6
    [rec] = skipped
    assert (rec.reason, rec.offset, rec.last_offset) == (INVALID_HEADER_NAME, 2, 2)
    assert rec.key == b"call-2" and rec.payload == b"pcm-2"
    assert ("\\xff\\xfe\\xfdNAME!", b"x") in rec.headers
    assert "offset 2" in rec.message and "is not UTF-8" in rec.message


def test_a_flipped_byte_skips_the_batch_by_offset_and_keeps_the_others() -> None:
    good, damaged, after = batch(0, 3), bytearray(batch(3, 4)), batch(7, 2)
    damaged[70] ^= 0xFF
    data = good + bytes(damaged) + after
    with pytest.raises(Exception, match="CRC"):
        read(data)
    records, position, skipped = screened(data)
    assert offsets(records) == [0, 1, 2, 7, 8]
    assert position == 9
    [bad] = skipped
    assert (bad.reason, bad.offset, bad.last_offset) == (UNPARSEABLE, 3, 6)
    assert "CRC mismatch" in bad.message and bad.payload == bytes(damaged)


@pytest.mark.parametrize("codec_bits", [5, 6, 7])
def test_an_unknown_codec_is_unparseable(codec_bits: int) -> None:
    raw = bytearray(batch(0, 2))
    struct.pack_into(">h", raw, 21, codec_bits)
    data = fix_crc(bytes(raw)) + batch(2, 1)
    with pytest.raises(Exception):  # noqa: B017 - whatever aiokafka raises, it raises
        read(data)
    records, position, skipped = screened(data)
    assert offsets(records) == [2] and position == 3
    assert [(s.reason, s.offset, s.last_offset) for s in skipped] == [(UNPARSEABLE, 0, 1)]


def test_too_many_headers_and_too_many_header_bytes_are_dead_lettered() -> None:
    def headers(i: int) -> list[Header]:
        if i == 1:
            return [("h", b"")] * 10_000
        if i == 3:
            return [("big", bytes(20_000))]
        return record_headers(i)

    records, position, skipped = screened(batch(0, 5, headers=headers, codec=CODEC_LZ4))
    assert offsets(records) == [0, 2, 4] and position == 5
    assert [(s.reason, s.offset) for s in skipped] == [
        (TOO_MANY_HEADERS, 1),
        (HEADERS_TOO_LARGE, 3),
    ]
    assert len(skipped[0].headers) == 64  # what a dead letter carries is bounded


def test_null_header_values_and_duplicate_names_pass_to_the_format_checks() -> None:
    def headers(i: int) -> list[Header]:
        return [("tympan-seq", None), ("dup", b"1"), ("dup", b"2")]

    records, _, skipped = screened(batch(0, 2, headers=headers))
    assert skipped == [] and records[0].headers == (
        ("tympan-seq", None),
        ("dup", b"1"),
        ("dup", b"2"),
    )


def test_the_dead_letter_of_any_header_renders() -> None:
    rejected = RejectedRecord(
        stream_id=None,
        reason=UNPARSEABLE,
        message="m",
        topic=TOPIC,
        partition=0,
        offset=0,
        headers=(("n", None), (b"\xff" + b"x", b"v")),  # type: ignore[arg-type]
    )
    out = rejected.bounded(1024).to_dict()["headers"]
    assert out == [{"key": "n", "value_b64": None}, {"key": "\\xffx", "value_b64": "dg=="}]


def test_what_lies_below_the_fetch_offset_is_not_reported_again() -> None:
    damaged = bytearray(batch(0, 4))
    damaged[70] ^= 0xFF
    records, position, skipped = screened(bytes(damaged) + batch(4, 2), fetch_offset=2)
    assert offsets(records) == [4, 5] and position == 6
    assert [(s.offset, s.last_offset) for s in skipped] == [(2, 3)]
    _, _, before = screened(bytes(damaged) + batch(4, 2), fetch_offset=4)
    assert before == []


def test_a_batch_too_short_for_any_format_is_skipped_and_the_next_one_served() -> None:
    data = struct.pack(">qi", 10, 3) + b"abc" + batch(11, 1)
    records, position, skipped = screened(data, fetch_offset=10)
    assert offsets(records) == [11] and position == 12
    assert [(s.reason, s.offset, s.last_offset) for s in skipped] == [(UNPARSEABLE, 10, 10)]


def test_a_negative_batch_length_skips_one_offset() -> None:
    data = struct.pack(">qi", 10, -7) + batch(11, 1)
    records, position, skipped = screened(data, fetch_offset=10)
    assert records == [] and position == 11  # the framing is lost: 11 is fetched next
    assert [(s.reason, s.offset, s.last_offset) for s in skipped] == [(UNPARSEABLE, 10, 10)]


def test_a_record_offset_outside_its_batch_is_unparseable() -> None:
    raw = bytearray(batch(0, 3))
    struct.pack_into(">i", raw, 23, 1)  # the batch claims offsets 0..1 but holds 0..2
    records, position, skipped = screened(fix_crc(bytes(raw)) + batch(100, 1))
    assert offsets(records) == [100] and position == 101
    assert [(s.reason, s.offset, s.last_offset) for s in skipped] == [(UNPARSEABLE, 0, 1)]


def test_a_truncated_record_keeps_the_records_before_it() -> None:
    raw = bytearray(batch(0, 4))
    struct.pack_into(">i", raw, 57, 6)  # declares 6 records, holds 4
    records, position, skipped = screened(fix_crc(bytes(raw)) + batch(4, 1))
    assert offsets(records) == [0, 1, 2, 3, 4] and position == 5
    assert skipped == []  # offsets 0..3 are all there: nothing is missing but a count


def test_a_skipped_range_becomes_one_dead_letter_naming_it() -> None:
    damaged = bytearray(batch(0, 4))
    damaged[70] ^= 0xFF
    _, _, [bad] = screened(bytes(damaged))
    rejected = bad.rejected()
    assert (rejected.reason, rejected.topic, rejected.partition, rejected.offset) == (
        UNPARSEABLE,
        TOPIC,
        3,
        0,
    )
    assert rejected.payload == bytes(damaged) and rejected.to_json()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(CODECS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10_000),
    keep_crc=st.booleans(),
)
def test_no_damage_makes_the_client_raise_after_screening(
    codec: int, edits: list[tuple[int, int]], cut: int, keep_crc: bool
) -> None:
    """Whatever a byte of a batch becomes, the screened record set is read without an
    exception, the position moves past the damaged batch, and the batch after it is
    served whole."""
    damaged = bytearray(batch(0, 6, codec=codec, headers=lambda i: [("h", b"v"), ("k", None)]))
    for at, byte in edits:
        damaged[12 + at % (len(damaged) - 12)] = byte  # the framing's offset kept
    if cut % 5 == 0:
        damaged = damaged[: 12 + cut % (len(damaged) - 12)]
    if keep_crc and len(damaged) > 61:
        damaged = bytearray(fix_crc(bytes(damaged)))
    struct.pack_into(">i", damaged, 8, len(damaged) - 12)
    records, position, skipped = screened(bytes(damaged) + batch(100, 2))
    served_ranges = [(s.offset, s.last_offset) for s in skipped]
    assert offsets(records)[-2:] == [100, 101]
    assert position == 102
    served = set(offsets(records)) - {100, 101}
    assert all(0 <= o < 100 for o in served)
    assert not any(lo <= o <= hi for lo, hi in served_ranges for o in served)


def _transactional(raw: bytes, *, producer_id: int, control: bool = False) -> bytes:
    """``raw`` (uncompressed) as a transactional batch of ``producer_id`` (a control
    batch: a transaction marker)."""
    out = bytearray(raw)
    (attributes,) = struct.unpack_from(">h", out, 21)
    struct.pack_into(">h", out, 21, attributes | 0x10 | (0x20 if control else 0))
    struct.pack_into(">qhi", out, 43, producer_id, 0, 0)
    return fix_crc(bytes(out))


def test_what_an_aborted_transaction_held_is_not_reported() -> None:
    """``read_committed``: the client skips an aborted transaction's batches whole, so
    a record the guard takes out of one is not dead-lettered (it never counted)."""

    def headers(i: int) -> list[Header]:
        return [(BAD_NAME_MARK, b"x")] if i == 1 else record_headers(i)

    bad = _transactional(with_bad_name(batch(0, 3, headers=headers)), producer_id=7)
    abort = _transactional(
        build_batch(3, [(struct.pack(">hh", 0, 0), struct.pack(">hi", 0, 0), [])]),
        producer_id=7,
        control=True,
    )
    data = bad + abort + batch(4, 1)
    clean, skipped = screen(
        data,
        topic=TOPIC,
        partition=3,
        fetch_offset=0,
        limits=LIMITS,
        inflater=Inflater(1 << 20),
        aborted=[(7, 0)],
    )
    assert skipped == []
    records = PartitionRecords(
        TP, MemoryRecords(clean), [(7, 0)], 0, None, None, True, READ_COMMITTED
    )
    assert offsets(list(records)) == [4] and records.next_fetch_offset == 5
    # the same batches, committed: the record is reported
    _, committed = screen(
        data, topic=TOPIC, partition=3, fetch_offset=0, limits=LIMITS, inflater=Inflater(1 << 20)
    )
    assert [(s.reason, s.offset) for s in committed] == [(INVALID_HEADER_NAME, 1)]


def test_a_base_offset_that_goes_back_is_unparseable_and_never_moves_the_position_back() -> None:
    """The base offset is outside the CRC: a batch claiming offsets already passed
    would send the client's position back (a refetch loop); it is skipped instead."""
    back = bytearray(batch(10, 2))
    struct.pack_into(">q", back, 0, 3)  # claims 3..4 after a batch that reached 9
    data = batch(5, 5) + bytes(back) + batch(12, 1)
    records, position, skipped = screened(data, fetch_offset=5)
    assert offsets(records) == [5, 6, 7, 8, 9, 12] and position == 13
    assert [(s.reason, s.offset, s.last_offset) for s in skipped] == [(UNPARSEABLE, 10, 10)]
