"""What a produce run says it could not deliver (issue #26, point 4): every stream with
unacknowledged frames, its partition and seqs, merged across batches; no broker needed
(a batch that was never handed over is as unacknowledged as one a dead broker holds)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from stream.errors import BrokerError
from stream.kafka.lanes import PartitionLanes, Undelivered
from stream.kafka.producer import DeliveryError


def _sender() -> PartitionLanes:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=4096)
    return PartitionLanes(producer, "t.audio.v1", list(range(8)), delivery_timeout_s=5.0)


def test_every_frame_not_acknowledged_is_named_by_stream_with_its_seqs() -> None:
    async def run() -> list[Undelivered]:
        sender = _sender()
        for seq in range(40):  # 40 x 800 bytes: several full batches per stream
            for stream in (b"call-a", b"call-b"):
                sender.add(stream, bytes(800), [("seq", str(seq).encode())], seq)
        return sender.undelivered()

    got = asyncio.run(run())

    assert [(u.stream_id, u.frames, u.first_seq, u.last_seq) for u in got] == [
        ("call-a", 40, 0, 39),
        ("call-b", 40, 0, 39),
    ]
    assert all(0 <= u.partition < 8 for u in got)


def test_the_error_names_the_streams_and_counts_the_rest() -> None:
    lost = [Undelivered(f"call-{i}", i % 8, 3, 10, 12) for i in range(25)]

    error = DeliveryError("t.audio.v1", "no broker took it", lost)

    assert isinstance(error, BrokerError)  # exit 3 (BROKER), as every broker failure
    text = str(error)
    assert text.startswith("75 frame(s) of 25 stream(s) were not delivered to topic 't.audio.v1'")
    assert "stream 'call-0': 3 frame(s), seq 10..12, not acknowledged by topic" in text
    assert "stream 'call-19'" in text and "stream 'call-20'" not in text
    assert text.endswith("; and 5 more stream(s)")


def test_frames_never_handed_to_the_producer_say_so() -> None:
    queued = Undelivered("call-q", -1, 7, 3, 9)

    assert queued.sentence("t.audio.v1") == (
        "stream 'call-q': 7 frame(s), seq 3..9, still queued for topic 't.audio.v1', never sent"
    )
