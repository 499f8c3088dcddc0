"""The aiokafka internals the fetch guard leans on (stream/kafka/fetch.py's docstring).

The guard wraps ``send`` of one consumer's client and rewrites the record set of each
fetch response before aiokafka's fetcher reads it. A new aiokafka release that moves
any of this must fail here, loudly, rather than leave workers unguarded.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.protocol import fetch as fetch_protocol
from aiokafka.protocol.fetch import FetchRequest

from stream.kafka.fetch import FETCH_API_KEY, FetchGuard

VERIFIED_AIOKAFKA = "0.14.0"


def test_aiokafka_is_the_verified_release() -> None:
    assert md.version("aiokafka") == VERIFIED_AIOKAFKA


def test_the_codecs_are_available() -> None:
    from aiokafka import codec

    assert codec.has_snappy() and codec.has_lz4() and codec.has_zstd()


def test_the_fetcher_sends_through_the_consumers_client_and_reads_the_last_field() -> None:
    source = inspect.getsource(Fetcher._proc_fetch_request)
    assert "await self._client.send(node_id, request)" in source
    assert "MemoryRecords(part_data[-1])" in source
    assert "for partition, offset, _ in partitions" in source
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "self._fetcher = Fetcher(\n            self._client," in start
    assert list(inspect.signature(AIOKafkaClient.send).parameters)[:3] == [
        "self",
        "node_id",
        "request",
    ]


def test_fetch_requests_and_responses_have_the_shape_the_guard_reads() -> None:
    assert FetchRequest.API_KEY == FETCH_API_KEY
    request = FetchRequest(500, 1, 1 << 20, 1, [("t", [(0, 42, 1 << 20)])])
    assert request.topics == [("t", [(0, 42, 1 << 20)])]
    responses = [
        cls
        for name, cls in vars(fetch_protocol).items()
        if name.startswith("FetchResponse_v") and int(name.rsplit("v", 1)[1]) >= 4
    ]
    assert responses
    for cls in responses:
        names = list(cls.SCHEMA.names)
        assert "topics" in names, cls
        array = cls.SCHEMA.fields[names.index("topics")]
        partitions = array.array_of.fields[-1].array_of  # (topic, partitions)
        assert partitions.names[:3] == ("partition", "error_code", "highwater_offset"), cls
        assert partitions.names[-1] in ("message_set", "records"), cls
        aborted_at = 4 if cls.API_VERSION < 5 else 5  # stream.kafka.fetch._aborted_of
        assert partitions.names[aborted_at] == "aborted_transactions", cls


def test_the_guard_wraps_send_of_one_consumer_only() -> None:
    import asyncio

    async def build() -> tuple[AIOKafkaConsumer, AIOKafkaConsumer]:
        return AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1"), AIOKafkaConsumer(
            bootstrap_servers="127.0.0.1:1"
        )

    guarded, plain = asyncio.run(build())
    FetchGuard().install(guarded)
    assert "send" in vars(guarded._client)
    assert "send" not in vars(plain._client)
    assert AIOKafkaClient.send is not guarded._client.send
