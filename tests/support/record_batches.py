"""Kafka record batches (message format v2) as bytes, built with aiokafka's own encoder,
and the damage a producer, the broker or a disk can leave in them.

The unit tests of ``stream.kafka.fetch`` read these with aiokafka's consumer-side
reader; the integration tests hand them to the broker with :func:`produce_batch`
(a plain ProduceRequest: how a client that is not aiokafka writes a header name
aiokafka cannot decode, which the broker stores as it is).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence

from aiokafka import codec as kcodec
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

from stream.kafka.batches import CODEC_GZIP, CODEC_LZ4, CODEC_SNAPPY, CODEC_ZSTD

Header = tuple[str, bytes | None]
ENCODE: dict[int, Callable[[bytes], bytes]] = {
    CODEC_GZIP: kcodec.gzip_encode,
    CODEC_SNAPPY: kcodec.snappy_encode,  # xerial framing, as Java clients write
    CODEC_LZ4: kcodec.lz4_encode,
    CODEC_ZSTD: kcodec.zstd_encode,
}
CODECS = [0, *ENCODE]
BAD_NAME_MARK = "BADNAME!"
NOT_LEADER = 6


def record_headers(i: int) -> list[Header]:
    return [("tympan-seq", str(i).encode()), ("tympan-v", b"1")]


def build_batch(
    base: int,
    records: Sequence[tuple[bytes | None, bytes | None, Sequence[Header]]],
    *,
    codec: int = 0,
    timestamp_ms: int = 1_700_000_000_000,
) -> bytes:
    """A v2 batch of ``records`` ``(key, value, headers)`` at offsets ``base, base+1...``,
    compressed with ``codec`` the way a producer does (the records section only)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp_ms + i, key, value, list(headers))
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    return compress(bytes(raw), codec)


def batch(
    base: int,
    n: int,
    *,
    codec: int = 0,
    headers: Callable[[int], Sequence[Header]] = record_headers,
    value: Callable[[int], bytes] = lambda i: b"pcm-%d" % i,
) -> bytes:
    """``n`` records ``call-<i>`` / ``pcm-<offset>`` at offsets ``base..base+n-1``."""
    return build_batch(
        base,
        [(b"call-%d" % i, value(base + i), headers(base + i)) for i in range(n)],
        codec=codec,
    )


def compress(raw: bytes, codec: int) -> bytes:
    """An uncompressed v2 batch compressed with ``codec`` (attributes, length, CRC set)."""
    if not codec:
        return fix_crc(raw)
    body = ENCODE[codec](raw[61:])
    head = bytearray(raw[:61])
    struct.pack_into(">i", head, 8, 49 + len(body))
    (attributes,) = struct.unpack_from(">h", head, 21)
    struct.pack_into(">h", head, 21, attributes | codec)
    return fix_crc(bytes(head) + body)


def fix_crc(raw: bytes) -> bytes:
    out = bytearray(raw)
    struct.pack_into(">I", out, 17, calc_crc32c(bytes(out[21:])))
    return bytes(out)


def with_bad_name(raw: bytes) -> bytes:
    """``raw`` (uncompressed) with the header name ``BADNAME!`` made invalid UTF-8."""
    mark = BAD_NAME_MARK.encode()
    assert raw.count(mark) == 1
    return fix_crc(raw.replace(mark, b"\xff\xfe\xfdNAME!"))


async def produce_batch(bootstrap: str, topic: str, partition: int, raw: bytes) -> int:
    """Append the batch ``raw`` to ``topic``/``partition`` as it is (acks=all);
    return the base offset the broker gave it.

    Raises
    ------
    AssertionError
        The broker refused the batch (its error code is in the message).
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.produce import ProduceRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="tympan-tests-raw")
    await client.bootstrap()
    try:
        for _ in range(20):  # a new topic's leader may not be known at once (error 6)
            await client._wait_on_metadata(topic)
            leader = client.cluster.leader_for_partition(_tp(topic, partition))
            request = ProduceRequest(None, -1, 30_000, [(topic, [(partition, raw)])])
            response = await client.send(leader, request)
            [(_, [(_, error_code, base_offset, *_)])] = response.topics
            if error_code != NOT_LEADER:
                break
            await client.force_metadata_update()
            await asyncio.sleep(0.5)
        assert error_code == 0, f"the broker refused the batch: error code {error_code}"
        return int(base_offset)
    finally:
        await client.close()


def _tp(topic: str, partition: int) -> object:
    from aiokafka.structs import TopicPartition

    return TopicPartition(topic, partition)
